/**
 * The owner's controls on their own (pause kept across restarts, the window's refusals and edges on a
 * FakeClock) and the control socket they are reached through (a real Unix socket in a temporary data
 * directory). The whole agent with them is in owner-agent.test.ts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { UnitRefSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { UnitRef } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import {
  ControlClientError,
  controlSocketPath,
  formatAgentStatus,
  listenControlSocket,
  parseControlRequest,
  sendControlCommand,
} from "../../src/node-agent/control-socket.ts";
import type { ControlSocket } from "../../src/node-agent/control-socket.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { OWNER_FILE, createOwnerCommandHandler, openOwnerControls } from "../../src/node-agent/owner-controls.ts";
import { FakeClock } from "../../src/platform/clock.ts";

/** Monday 2026-01-05 at the given UTC time. */
const monday = (h: number, m: number) => Date.UTC(2026, 0, 5, h, m);
const utc = () => 0;

describe("owner controls", () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-owner-"));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it("keeps a pause across a restart of the agent, in a file only the agent's user reads", async () => {
    const clock = new FakeClock();
    const first = await openOwnerControls({ dataDir, clock, logger: silentLogger });
    assert.equal(await first.setPaused(true), true);
    assert.equal((await stat(path.join(dataDir, OWNER_FILE))).mode & 0o777, 0o600);
    const second = await openOwnerControls({ dataDir, clock, logger: silentLogger });
    assert.equal(second.paused, true);
    assert.equal(second.policy().paused, true);
    await second.setPaused(false);
    assert.equal((await openOwnerControls({ dataDir, clock, logger: silentLogger })).paused, false);
  });

  it("refuses to start on a pause file it cannot read, rather than forget the pause", async () => {
    await writeFile(path.join(dataDir, OWNER_FILE), "paused");
    await assert.rejects(openOwnerControls({ dataDir, clock: new FakeClock(), logger: silentLogger }), /owner\.json is not \{"paused": true\|false\}: fix it, or delete it/);
  });

  it("refuses a bad window at start, with the parser's reason", async () => {
    await assert.rejects(
      openOwnerControls({ dataDir, available: "Mon-Fri 18:00-25:00", clock: new FakeClock(), logger: silentLogger }),
      /bad time "25:00"/,
    );
  });

  describe("says why a new unit may not start", () => {
    const cases: { name: string; paused: boolean; available?: string; at: number; refusal: string | undefined }[] = [
      { name: "nothing, when neither paused nor windowed", paused: false, at: monday(12, 0), refusal: undefined },
      { name: "paused", paused: true, at: monday(12, 0), refusal: "node is paused by its owner (gpu-agent pause)" },
      { name: "outside the window", paused: false, available: "Mon-Fri 18:00-08:00", at: monday(12, 0), refusal: "node is outside its owner's availability window (Mon-Fri 18:00-08:00)" },
      { name: "nothing, inside the window", paused: false, available: "Mon-Fri 18:00-08:00", at: monday(19, 0), refusal: undefined },
      { name: "paused, inside the window too", paused: true, available: "Mon-Fri 18:00-08:00", at: monday(19, 0), refusal: "node is paused by its owner (gpu-agent pause)" },
    ];
    for (const tc of cases) {
      it(tc.name, async () => {
        const controls = await openOwnerControls({ dataDir, clock: new FakeClock(tc.at), utcOffset: utc, logger: silentLogger, ...(tc.available !== undefined ? { available: tc.available } : {}) });
        await controls.setPaused(tc.paused);
        assert.equal(controls.refusal(), tc.refusal);
      });
    }
  });

  it("reports the policy as OwnerPolicy: the window as written, whether inside it, the VRAM reserve", async () => {
    const controls = await openOwnerControls({ dataDir, available: "Mon-Fri 18:00-08:00", reservedVramMb: 2048, clock: new FakeClock(monday(19, 0)), utcOffset: utc, logger: silentLogger });
    const policy = controls.policy();
    assert.deepEqual(
      { paused: policy.paused, available: policy.available, withinWindow: policy.withinWindow, reservedVramMb: policy.reservedVramMb },
      { paused: false, available: "Mon-Fri 18:00-08:00", withinWindow: true, reservedVramMb: 2048 },
    );
  });

  it("tells its listeners once per real change of the pause", async () => {
    const controls = await openOwnerControls({ dataDir, clock: new FakeClock(), logger: silentLogger });
    let changes = 0;
    controls.onChange(() => changes++);
    await Promise.all([controls.setPaused(true), controls.setPaused(true)]);
    await controls.setPaused(false);
    assert.equal(changes, 2);
  });

  it("tells its listeners at the window's edge, on the injected clock", async () => {
    const clock = new FakeClock(monday(17, 59));
    const controls = await openOwnerControls({ dataDir, available: "Mon-Fri 18:00-08:00", clock, utcOffset: utc, logger: silentLogger });
    const seen: boolean[] = [];
    const changed = new Promise<void>((resolve) =>
      controls.onChange(() => {
        seen.push(controls.policy().withinWindow);
        resolve();
      }),
    );
    const stop = new AbortController();
    const watching = controls.watchWindow(stop.signal);
    assert.equal(controls.nextWindowChange(), monday(18, 0));
    clock.advance(59_999);
    await Promise.resolve();
    assert.deepEqual(seen, [], "nothing changes a millisecond before the edge");
    clock.advance(1);
    await changed;
    assert.deepEqual(seen, [true]);
    stop.abort();
    await watching;
  });
});

describe("control socket", () => {
  let dataDir: string;
  let socket: ControlSocket | undefined;
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-ctl-"));
  });
  afterEach(async () => {
    await socket?.close();
    socket = undefined;
    await rm(dataDir, { recursive: true, force: true });
  });

  /** The real owner command handler over real controls and a stand-in for the runner's three members it uses. */
  const listenWithControls = async (running: UnitRef[] = []) => {
    const controls = await openOwnerControls({ dataDir, available: "Mon-Fri 18:00-08:00", reservedVramMb: 1024, clock: new FakeClock(monday(12, 0)), utcOffset: utc, logger: silentLogger });
    let handedBack = false;
    const runner = {
      draining: false,
      running: () => (handedBack ? [] : running),
      handBack: async () => {
        handedBack = true;
        return running;
      },
    };
    socket = await listenControlSocket(
      dataDir,
      createOwnerCommandHandler({ controls, runner, nodeId: "node-1", isolation: () => undefined, clock: new FakeClock(monday(12, 0)) }),
      silentLogger,
    );
    return controls;
  };

  it("is a socket only the agent's user can open", async () => {
    await listenWithControls();
    const st = await stat(controlSocketPath(dataDir));
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  it("answers status with the policy, the next window change in local time, and the running units", async () => {
    await listenWithControls([create(UnitRefSchema, { unitId: "u-1", attempt: 2 })]);
    const reply = await sendControlCommand(dataDir, { command: "status" });
    assert.ok(reply.ok);
    assert.deepEqual(reply.status, {
      node_id: "node-1",
      paused: false,
      available: "Mon-Fri 18:00-08:00",
      within_window: false,
      next_window_change: { at: "2026-01-05T18:00:00.000Z", local: "Mon 18:00" },
      reserved_vram_mb: 1024,
      draining: false,
      running: [{ unit_id: "u-1", attempt: 2 }],
      isolation: { mechanism: "", reason: "" },
    });
    assert.match(formatAgentStatus(reply.status), /^available: +Mon-Fri 18:00-08:00 \(outside it now; opens Mon 18:00\)$/m);
  });

  it("pauses and resumes, and the pause is on disk when the answer comes", async () => {
    const controls = await listenWithControls();
    const paused = await sendControlCommand(dataDir, { command: "pause", now: false });
    assert.ok(paused.ok && paused.status.paused && paused.handed_back === undefined);
    assert.equal(JSON.parse(await readFile(path.join(dataDir, OWNER_FILE), "utf8")).paused, true);
    const resumed = await sendControlCommand(dataDir, { command: "resume" });
    assert.ok(resumed.ok && !resumed.status.paused);
    assert.equal(controls.paused, false);
  });

  it("hands the running units back on pause --now and lists them", async () => {
    await listenWithControls([create(UnitRefSchema, { unitId: "u-1", attempt: 1 })]);
    const reply = await sendControlCommand(dataDir, { command: "pause", now: true });
    assert.ok(reply.ok);
    assert.deepEqual(reply.handed_back, [{ unit_id: "u-1", attempt: 1 }]);
    assert.deepEqual(reply.status.running, []);
  });

  describe("refuses a request that is not a command", () => {
    const cases: { line: string; error: RegExp }[] = [
      { line: "pause", error: /not JSON/ },
      { line: "[1]", error: /unknown command undefined/ },
      { line: '{"command": "reboot"}', error: /unknown command "reboot": use pause, resume or status/ },
      { line: '{"command": "pause", "now": "yes"}', error: /"now" must be true or false/ },
    ];
    for (const tc of cases) {
      it(tc.line, () => assert.throws(() => parseControlRequest(tc.line), tc.error));
    }
  });

  it("answers a bad line with ok false over the socket, and stays up", async () => {
    await listenWithControls();
    const raw = await new Promise<string>((resolve, reject) => {
      const c = net.connect(controlSocketPath(dataDir));
      let got = "";
      c.on("data", (d: Buffer) => (got += d.toString()));
      c.on("end", () => resolve(got));
      c.on("error", reject);
      c.write('{"command": "reboot"}\n');
    });
    assert.deepEqual(JSON.parse(raw), { ok: false, error: 'unknown command "reboot": use pause, resume or status' });
    assert.ok((await sendControlCommand(dataDir, { command: "status" })).ok);
  });

  it("replaces a socket file left by an agent that was killed", async () => {
    // A real process listens on the path and is SIGKILLed: it leaves the socket file behind, unanswered.
    const script = `require("node:net").createServer().listen(${JSON.stringify(controlSocketPath(dataDir))}, () => console.log("up"))`;
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    await once(child.stdout, "data");
    child.kill("SIGKILL");
    await once(child, "exit");
    assert.ok((await stat(controlSocketPath(dataDir))).isSocket());
    await listenWithControls();
    assert.ok((await sendControlCommand(dataDir, { command: "status" })).ok);
  });

  it("will not start a second agent on a data directory another one is running with", async () => {
    await listenWithControls();
    await assert.rejects(
      listenControlSocket(dataDir, async () => ({ ok: false, error: "unused" }), silentLogger),
      /another gpu-agent is already running with the data directory/,
    );
  });

  it("leaves the agent running without a socket when the data directory's path is too long for one, and says so to the owner", async () => {
    const deep = path.join(dataDir, "d".repeat(120));
    const errors: string[] = [];
    const logger = { ...silentLogger, error: (_: object, msg?: string) => void errors.push(msg ?? "") };
    socket = await listenControlSocket(deep, async () => ({ ok: false, error: "unused" }), logger);
    assert.match(errors.join("\n"), /no owner control socket: its path .* is longer than the 107 bytes a Unix socket allows: run the agent with a shorter --data-dir/);
    await assert.rejects(sendControlCommand(deep, { command: "status" }), /cannot reach the agent: its path .* is longer than the 107 bytes/);
  });

  it("tells the owner when no agent runs with that data directory", async () => {
    await assert.rejects(
      sendControlCommand(dataDir, { command: "status" }),
      (err: unknown) => err instanceof ControlClientError && /no gpu-agent is running with the data directory .*pass the right --data-dir/.test(err.message),
    );
  });
});
