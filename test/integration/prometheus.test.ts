/**
 * /metrics against the real thing: a Prometheus server (Debian's package,
 * installed by scripts/ensure-system.ts) scrapes a running control plane every
 * second, and its HTTP API must report the target up and the placement
 * metrics present; `promtool check metrics` must accept the exposition
 * (exit 0: parse and lint clean).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, poll } from "../ha/cluster.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { request, startTestControlPlane } from "../support/control-plane.ts";

describe("Prometheus scrapes /metrics", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let prometheus: ChildProcess | undefined;
  let promUrl: string;
  let dir: string;
  const logs: Buffer[] = [];

  before(async () => {
    cp = await startTestControlPlane();
    dir = await mkdtemp(join(tmpdir(), "gpu-agent-prom-"));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const target = new URL(cp.url).host;
    await writeFile(
      join(dir, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: gpuagent",
        "    static_configs:",
        `      - targets: ["${target}"]`,
        "",
      ].join("\n"),
    );
    prometheus = spawn(
      "prometheus",
      [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    prometheus.stdout?.on("data", (c: Buffer) => logs.push(c));
    prometheus.stderr?.on("data", (c: Buffer) => logs.push(c));
  });

  after(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      const exited = once(prometheus, "exit");
      prometheus.kill("SIGKILL");
      await exited;
    }
    await cp?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("reports the target up and placement metrics with values", async () => {
    // Some traffic, so the HTTP histogram has series too.
    assert.equal((await request(cp, "GET", "/healthz")).status, 200);
    const fail = () => Buffer.concat(logs).toString("utf8");
    const up = await poll(
      "the scrape target to be up",
      async () => {
        const res = await fetch(`${promUrl}/api/v1/targets`);
        const body = (await res.json()) as { data: { activeTargets: { health: string; lastError: string }[] } };
        const t = body.data.activeTargets[0];
        return t?.health === "up" ? t : undefined;
      },
      20_000,
      250,
    ).catch((error: unknown) => assert.fail(`${(error as Error).message}\n${fail()}`));
    assert.equal(up.lastError, "");

    const query = async (expr: string) => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      assert.equal(body.status, "success");
      return body.data.result;
    };
    const placed = await poll("gpuagent_placements_total in Prometheus", async () => {
      const r = await query(`gpuagent_placements_total{result="placed"}`);
      return r.length > 0 ? r : undefined;
    }, 20_000, 250);
    assert.ok(Number.isFinite(Number(placed[0]?.value[1])));
    // The embedded replica leads alone; the cluster-wide gauges are collected at scrape.
    const leader = await query("gpuagent_leader_is_leader");
    assert.equal(leader[0]?.value[1], "1");
    assert.ok((await query("gpuagent_pending_units")).length >= 2, "pending units by kind");
    assert.ok((await query("gpuagent_credits_debited_total")).length === 1);
    assert.ok((await query("gpuagent_http_request_duration_seconds_count")).length > 0);
  });

  it("passes `promtool check metrics` (exit 0)", async () => {
    const exposition = await (await fetch(`${cp.url}/metrics`)).text();
    assert.ok(!/^gpuagent_nodejs_active_\w+_total /m.test(exposition), "the misnamed default gauges are not exposed");
    const child = spawn("promtool", ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => out.push(c));
    child.stdin.end(exposition);
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 0, `promtool check metrics:\n${Buffer.concat(out).toString("utf8")}`);
  });
});
