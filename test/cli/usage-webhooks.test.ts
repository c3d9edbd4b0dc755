import assert from "node:assert/strict";
import { runCli } from "../../src/cli/program.ts";
import { callsOf, captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl usage and webhooks", () => {
  let api: FakeApi;
  beforeEach(async () => {
    api = await startFakeApi();
  });
  afterEach(async () => {
    await api.close();
  });

  const run = async (...args: string[]) => {
    const cap = captureIo();
    const code = await runCli(args, depsFor(api, cap));
    return { code, out: cap.out(), err: cap.err() };
  };

  it("usage summary shows the balance for humans and as the REST JSON", async () => {
    const human = await run("usage", "summary");
    assert.equal(human.code, 0, human.err);
    assert.match(human.out, /^credits_balance\s+900$/m);
    const json = await run("usage", "summary", "--json");
    assert.equal((JSON.parse(json.out) as { credits_balance: string }).credits_balance, "900");
  });

  it("usage daily passes --days and prints a row per day", async () => {
    const r = await run("usage", "daily", "--days", "7");
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(callsOf(api, "GetDailyUsage")[0]?.body, { days: 7 });
    assert.match(r.out, /^2026-01-01\s+3\s+120\s+30\s+7$/m);
  });

  it("creates, lists, tests, rotates, redelivers and deletes a webhook", async () => {
    const created = await run("webhooks", "create", "https://example.com/hook", "--json", "--event", "job.completed", "job.failed");
    assert.equal(created.code, 0, created.err);
    const { webhook, secret } = JSON.parse(created.out) as { webhook: { id: string; events: string[] }; secret: string };
    assert.equal(secret, "whsec_first");
    assert.deepEqual(webhook.events, ["job.completed", "job.failed"]);

    const human = await run("webhooks", "create", "https://example.com/other", "--event", "job.completed", "--description", "second");
    assert.match(human.out, /^secret\s+whsec_first$/m);
    assert.match(human.err, /not shown again/);

    const listed = await run("webhooks", "list");
    assert.match(listed.out, new RegExp(`^${webhook.id}\\s+https://example\\.com/hook\\s+job\\.completed,job\\.failed`, "m"));
    assert.match((await run("webhooks", "test", webhook.id)).out, /^delivery_id\s+dlv_wh_1$/m);
    assert.match((await run("webhooks", "rotate", webhook.id)).out, /^secret\s+whsec_second$/m);
    assert.match((await run("webhooks", "deliveries", webhook.id)).out, /^dlv_1\s+webhook\.test\s+pending/m);
    assert.match((await run("webhooks", "redeliver", webhook.id, "dlv_1")).out, /^id\s+dlv_1_again$/m);
    const deleted = await run("webhooks", "delete", webhook.id, "--json");
    assert.deepEqual(JSON.parse(deleted.out), { id: webhook.id, deleted: true });
    const missing = await run("webhooks", "test", webhook.id);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /code RESOURCE_NOT_FOUND/);
  });
});
