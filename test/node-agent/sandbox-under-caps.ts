/**
 * Runs the agent's real unit path once and prints, as one JSON line, what the process's capabilities let it
 * do: systemd-unit.test.ts starts it as root under exactly the capability bounding set the installed
 * service names (and under that set less one capability), so the list in the unit file is checked against
 * the code that needs it, not against a memory of it.
 *
 * Each observation stands for one capability the sandbox needs; most of them fail silently in the agent
 * (a sandbox that does not start reports the node `unavailable`, a SIGTERM that is not allowed is
 * followed by the SIGKILL, a work directory that cannot be removed is left behind), so they are observed
 * here rather than inferred from a unit's outcome:
 * - `isolation`: the trial sandbox started (bubblewrap's namespaces, mounts and loopback; setpriv's uid
 *   drop; the work directory given to the unit's uid);
 * - `unitCaps`: the unit's own capability sets, all of them empty (setpriv empties the bounding set);
 * - `artifacts`: the agent read a unit's output that the unit made private (0600 in a 0700 directory);
 * - `workLeft`: what was left of the units' work directories after they ended (the agent removed them);
 * - `sigterm`: a cancelled unit got its SIGTERM (a process of another uid) and could save its work.
 */
import { randomUUID } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { AssignSchema, CancelSchema, InputFileSchema, UnitRefSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { prepareIsolation } from "../../src/node-agent/capabilities.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { createUnitRunner } from "../../src/node-agent/runner.ts";
import type { AgentMessageBody } from "../../src/node-agent/session.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { sha256, startBlobServer, zipOf } from "./helpers.ts";

/** What a run under some capability set could do; printed as one JSON line. */
export interface SandboxUnderCaps {
  isolation: string;
  unitUid?: number;
  unitCaps?: Record<string, string>;
  artifacts?: string[];
  workLeft?: string[];
  sigterm?: boolean;
}

/** Reports its capabilities and uid, then writes an output only its own user may read, in a home only it may enter. */
const PRIVATE_OUTPUT_PY = `
import json, os
caps = {k: v.strip() for k, v in (l.split(":", 1) for l in open("/proc/self/status") if l.startswith("Cap"))}
print("caps " + json.dumps(caps), flush=True)
print(f"uid {os.getuid()}", flush=True)
os.makedirs("/unit/output/kept", mode=0o700)
open("/unit/output/kept/notes.txt", "w").write("x")
fd = os.open("/unit/output/result.txt", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"42")
os.close(fd)
os.chmod("/unit/output", 0o700)
os.chmod("/unit", 0o700)
`;

/** Waits to be cancelled; on SIGTERM says so and ends, as a training script saving a checkpoint would. */
const WAITS_FOR_SIGTERM_PY = `
import signal, sys, time
def on_term(*_):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
`;

/** Runs in `parent` (the caller's, removed by the caller, who has the capabilities this run may lack). */
async function main(parent: string): Promise<SandboxUnderCaps> {
  const dataDir = path.join(parent, "data");
  await mkdir(dataDir, { mode: 0o700 });
  await writeFile(path.join(dataDir, "node.json"), "{}", { mode: 0o600 });
  const server = await startBlobServer();
  try {
    const isolation = (await prepareIsolation({ requested: "bubblewrap", dataDir, manageCgroups: false, logger: silentLogger })).runner;
    if (isolation.mechanism !== "bubblewrap") return { isolation: isolation.mechanism === "unavailable" ? `unavailable: ${isolation.reason}` : isolation.mechanism };

    const messages: AgentMessageBody[] = [];
    const lines = (unitId: string) => messages.flatMap((m) => (m.case === "log" && m.value.unit?.unitId === unitId ? m.value.lines : []));
    const waiting = randomUUID();
    const runner = createUnitRunner({
      dataDir,
      nodeCredential: "nc_caps",
      send: (body) => {
        messages.push(body);
        // Cancelled as soon as it has said it is ready: its SIGTERM handler is in place.
        if (body.case === "log" && body.value.unit?.unitId === waiting && body.value.lines.includes("ready")) {
          runner.cancel(create(CancelSchema, { unit: create(UnitRefSchema, { unitId: waiting, attempt: 1 }) }));
        }
      },
      gpuIndexes: () => [],
      maxConcurrentUnits: 2,
      clock: systemClock,
      logger: silentLogger,
      killGraceMs: 3000,
      isolation,
    });
    /** A CPU unit whose package is `train.py` alone. */
    const assignFor = async (unitId: string, script: string) => {
      const zip = await zipOf({ "train.py": script });
      server.blobs.set(unitId, zip);
      const pkg = create(InputFileSchema, { role: "package", name: "package.zip", url: `${server.url}/blobs/${unitId}`, sha256: sha256(zip), sizeBytes: BigInt(zip.length) });
      const unit = create(UnitRefSchema, { unitId, attempt: 1 });
      return create(AssignSchema, { unit, stage: "train", kind: "cpu", gpuIndex: -1, entrypoint: "train.py", artifactUploadUrl: `${server.url}/artifacts/${unitId}`, inputs: [pkg] });
    };
    const writer = randomUUID();
    await runner.assign(await assignFor(writer, PRIVATE_OUTPUT_PY));
    await runner.assign(await assignFor(waiting, WAITS_FOR_SIGTERM_PY));
    const prefixed = (prefix: string) => lines(writer).find((l) => l.startsWith(prefix))?.slice(prefix.length);
    return {
      isolation: "bubblewrap",
      unitUid: Number(prefixed("uid ")),
      unitCaps: JSON.parse(prefixed("caps ") ?? "{}") as Record<string, string>,
      artifacts: messages.flatMap((m) => (m.case === "artifactReady" && m.value.unit?.unitId === writer ? [m.value.name] : [])).sort(),
      workLeft: (await readdir(path.join(dataDir, "work"))).sort(),
      sigterm: lines(waiting).includes("got SIGTERM"),
    };
  } finally {
    await server.close();
  }
}

const parent = process.argv[2];
if (parent === undefined) throw new Error("usage: sandbox-under-caps.ts DIR (an empty directory, private to root)");
process.stdout.write(`${JSON.stringify(await main(parent))}\n`);
