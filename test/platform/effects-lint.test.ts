/**
 * The effects rule (eslint.config.js): clock, environment and randomness reads fail lint outside
 * src/platform/, and what the rule must not catch passes.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";

const root = fileURLToPath(new URL("../..", import.meta.url));
const eslint = new ESLint({ cwd: root });

/** Rule ids reported for `code` as if it were `filePath`. */
async function violations(code: string, filePath = "src/jobs/probe.ts"): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  assert.ok(result !== undefined);
  return result.messages.map((m) => m.ruleId ?? `fatal: ${m.message}`);
}

describe("the effects lint", () => {
  const forbidden: { name: string; code: string; rule: string }[] = [
    { name: "Date.now()", code: "export const t = Date.now();", rule: "no-restricted-properties" },
    { name: "Date.now passed as a function", code: "export const now = Date.now;", rule: "no-restricted-properties" },
    { name: "new Date() without arguments", code: "export const d = new Date();", rule: "no-restricted-syntax" },
    { name: "Date() called as a function", code: "export const s = Date();", rule: "no-restricted-syntax" },
    { name: "performance.now()", code: "export const t = performance.now();", rule: "no-restricted-properties" },
    { name: "process.hrtime", code: "export const t = process.hrtime.bigint();", rule: "no-restricted-properties" },
    { name: "Math.random()", code: "export const r = Math.random();", rule: "no-restricted-properties" },
    { name: "the global crypto.randomUUID()", code: "export const id = crypto.randomUUID();", rule: "no-restricted-properties" },
    { name: "randomUUID from node:crypto", code: 'import { randomUUID } from "node:crypto";\nexport const id = randomUUID();', rule: "no-restricted-imports" },
    { name: "randomBytes from crypto", code: 'import { randomBytes } from "crypto";\nexport const b = randomBytes(8);', rule: "no-restricted-imports" },
    { name: "randomInt from node:crypto", code: 'import { randomInt } from "node:crypto";\nexport const n = randomInt(8);', rule: "no-restricted-imports" },
    { name: "performance from node:perf_hooks", code: 'import { performance } from "node:perf_hooks";\nexport const p = performance;', rule: "no-restricted-imports" },
    { name: "env from node:process", code: 'import { env } from "node:process";\nexport const e = env;', rule: "no-restricted-imports" },
    { name: "process.env", code: 'export const v = process.env["GPU_AGENT_X"];', rule: "no-restricted-properties" },
    { name: "process.argv", code: "export const a = process.argv;", rule: "no-restricted-properties" },
    { name: "a destructured Date.now", code: "const { now } = Date;\nexport const t = now();", rule: "no-restricted-properties" },
  ];
  for (const c of forbidden) {
    it(`fails ${c.name} in a domain module`, async () => {
      assert.deepEqual(await violations(c.code), [c.rule]);
    });
  }

  const allowed: { name: string; code: string }[] = [
    { name: "a Date built from a given time", code: "export const d = (ms: number) => new Date(ms);" },
    { name: "Date.parse and Date.UTC", code: 'export const t = Date.parse("2026-01-01") + Date.UTC(2026, 0, 1);' },
    { name: "the injected clock", code: "export const at = (clock: { now(): number }) => new Date(clock.now());" },
    { name: "hashing from node:crypto", code: 'import { createHash } from "node:crypto";\nexport const h = createHash("sha256");' },
    { name: "TypeScript syntax", code: "export interface A { readonly n: number }\nexport const a = (x: unknown) => x as A;" },
  ];
  for (const c of allowed) {
    it(`passes ${c.name}`, async () => {
      assert.deepEqual(await violations(c.code), []);
    });
  }

  it("leaves src/platform/ and src/gen/ to read the clock, and does not lint cmd/", async () => {
    for (const path of ["src/platform/clock.ts", "src/gen/gpuagent/agent/v1/agent_pb.ts", "cmd/agent.ts"]) {
      assert.equal(await eslint.isPathIgnored(path), true, path);
    }
    assert.equal(await eslint.isPathIgnored("src/jobs/lifecycle.ts"), false);
  });
});
