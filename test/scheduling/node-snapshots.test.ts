/** The placer's view of the nodes kept across cycles (src/scheduling/node-snapshots.ts). */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { FleetRows, HeldRow, NodeInputs } from "../../src/scheduling/node-snapshots.ts";
import { buildNodeSnapshot, buildNodeSnapshots, NodeSnapshotMemo } from "../../src/scheduling/node-snapshots.ts";
import type { NodeSnapshot } from "../../src/placer/index.ts";
import type { NodeRow } from "../../src/store/nodes.ts";

const row = (id: string, cpuCores = 8) =>
  ({ id, trust_level: "verified", state: "online", capabilities: { cpuCores, memoryMb: 16384, diskFreeMb: 1000, gpus: [{ index: 0, vramMb: 24576 }] } }) as unknown as NodeRow;

function fleetOf(rows: NodeRow[]): FleetRows {
  return { rows, row: (id) => rows.find((r) => r.id === id) };
}

interface Inputs {
  held: Map<string, HeldRow[]>;
  datasets: Map<string, Set<string>>;
  live: Set<string>;
  reliability: Map<string, number>;
}

function inputsOf(i: Inputs): NodeInputs {
  return { held: i.held, datasets: i.datasets, isLive: (id) => i.live.has(id), reliability: (id) => i.reliability.get(id) ?? 0.9 };
}

const ids = ["a", "b", "c", "d"];
const fresh = (): Inputs => ({ held: new Map(), datasets: new Map(), live: new Set(ids), reliability: new Map() });
const unitOn = (nodeId: string): HeldRow => ({ node_id: nodeId, gpu_index: 0, vram: 8000, disk: 10, cpu: 1, memory: 100, units: 1 });
const none = new Set<string>();

describe("a node's snapshot: its GPUs and its unit slots", () => {
  const twoGpus = {
    id: "n",
    trust_level: "verified",
    state: "online",
    owner_paused: false,
    owner_within_window: true,
    reserved_vram_mb: 0,
    isolation: "bubblewrap",
    capabilities: {
      cpuCores: 16,
      memoryMb: 65536,
      diskFreeMb: 100_000,
      gpus: [
        { index: 0, name: "NVIDIA GeForce RTX 4090", vramMb: 24564, uuid: "GPU-a", computeCapability: "8.9", driverVersion: "550.54.15", cudaVersion: "12.4" },
        // An agent older than the GPU details reports none of them.
        { index: 1, name: "NVIDIA GeForce RTX 3060", vramMb: 12288 },
      ],
    },
  };
  // A unit on both GPUs (8000 MB each) is one unit: counted on its first GPU's row.
  const twoGpuUnit: HeldRow[] = [
    { node_id: "n", gpu_index: 0, vram: 8000, disk: 100, cpu: 2, memory: 1000, units: 1 },
    { node_id: "n", gpu_index: 1, vram: 8000, disk: 0, cpu: 0, memory: 0, units: 0 },
  ];

  it("shows each GPU's UUID, compute capability and CUDA version where the agent reported them, and its VRAM less what units hold on it", () => {
    const snapshot = buildNodeSnapshot({ ...twoGpus, max_units: 0 } as unknown as NodeRow, twoGpuUnit, true, 0.9, new Set());
    assert.deepEqual(snapshot.gpus, [
      { index: 0, name: "NVIDIA GeForce RTX 4090", vramMb: 24564, freeVramMb: 16564, uuid: "GPU-a", computeCapability: "8.9", cudaVersion: "12.4" },
      { index: 1, name: "NVIDIA GeForce RTX 3060", vramMb: 12288, freeVramMb: 4288 },
    ]);
    assert.equal(snapshot.freeCpuCores, 14);
  });

  const slots: { name: string; maxUnits: number; held: HeldRow[]; want: number | undefined }[] = [
    { name: "an agent that told no limit has no slot count", maxUnits: 0, held: twoGpuUnit, want: undefined },
    { name: "an idle node has all of its slots", maxUnits: 2, held: [], want: 2 },
    { name: "a unit on two GPUs takes one slot", maxUnits: 2, held: twoGpuUnit, want: 1 },
    { name: "a node at its limit has none (busy, not broken)", maxUnits: 1, held: twoGpuUnit, want: 0 },
  ];
  for (const c of slots) {
    it(`counts free unit slots: ${c.name}`, () => {
      const snapshot = buildNodeSnapshot({ ...twoGpus, max_units: c.maxUnits } as unknown as NodeRow, c.held, true, 0.9, new Set());
      assert.equal(snapshot.freeUnitSlots, c.want);
    });
  }
});

describe("NodeSnapshotMemo: node snapshots kept across cycles, rebuilt where their inputs moved", () => {
  it("builds every node the first time, as buildNodeSnapshots would", () => {
    const memo = new NodeSnapshotMemo();
    const rows = ids.map((id) => row(id));
    const inputs = { ...fresh(), held: new Map([["b", [unitOn("b")]]]) };
    assert.deepEqual(memo.snapshots(fleetOf(rows), none, inputsOf(inputs)), buildNodeSnapshots(rows, inputsOf(inputs)));
    assert.equal(memo.lastVisited, 4);
  });

  it("hands back the same array, visiting no node, when nothing changed", () => {
    const memo = new NodeSnapshotMemo();
    const fleet = fleetOf(ids.map((id) => row(id)));
    const first = memo.snapshots(fleet, "all", inputsOf(fresh()));
    assert.equal(memo.snapshots(fleet, none, inputsOf(fresh())), first);
    assert.equal(memo.lastVisited, 0);
  });

  const changes: { what: string; change: (i: Inputs, rows: NodeRow[]) => Set<string> }[] = [
    { what: "a unit is held on it", change: (i) => (i.held.set("c", [unitOn("c")]), none) },
    { what: "it holds a waiting unit's dataset", change: (i) => (i.datasets.set("c", new Set(["d1"])), none) },
    { what: "its liveness changed (named by the liveness source)", change: (i) => (i.live.delete("c"), new Set(["c"])) },
    { what: "its reliability changed (named by the history)", change: (i) => (i.reliability.set("c", 0.5), new Set(["c"])) },
    { what: "its row changed (named by the fleet cache)", change: (_i, rows) => ((rows[2] = row("c", 16)), new Set(["c"])) },
  ];
  for (const c of changes) {
    it(`rebuilds only the node whose input moved when ${c.what}, as buildNodeSnapshots would`, () => {
      const memo = new NodeSnapshotMemo();
      const rows = ids.map((id) => row(id));
      const inputs = fresh();
      const first = memo.snapshots(fleetOf(rows), "all", inputsOf(inputs));
      const changed = c.change(inputs, rows);
      const next = memo.snapshots(fleetOf(rows), changed, inputsOf(inputs));
      assert.notEqual(next, first);
      assert.deepEqual(next, buildNodeSnapshots(rows, inputsOf(inputs)));
      assert.deepEqual(
        next.map((n, k) => n === first[k]),
        [true, true, false, true],
        "the other nodes keep their objects",
      );
      assert.ok(memo.lastVisited <= 1);
    });
  }

  it("looks again at a node that held units last cycle and holds none now", () => {
    const memo = new NodeSnapshotMemo();
    const fleet = fleetOf(ids.map((id) => row(id)));
    const holding = { ...fresh(), held: new Map([["a", [unitOn("a")]]]) };
    memo.snapshots(fleet, "all", inputsOf(holding));
    const freed = memo.snapshots(fleet, none, inputsOf(fresh()));
    assert.equal(freed[0]?.freeCpuCores, 8, "the unit's resources are free again");
    assert.equal(memo.lastVisited, 1);
  });

  it("keeps unchanged objects even when told to look at every node", () => {
    const memo = new NodeSnapshotMemo();
    const fleet = fleetOf(ids.map((id) => row(id)));
    const first = memo.snapshots(fleet, "all", inputsOf(fresh()));
    const again = memo.snapshots(fleet, "all", inputsOf(fresh()));
    assert.deepEqual(
      again.map((n, k) => n === first[k]),
      [true, true, true, true],
    );
  });

  it("follows nodes joining and leaving the fleet", () => {
    const memo = new NodeSnapshotMemo();
    const rows = ids.map((id) => row(id));
    memo.snapshots(fleetOf(rows), "all", inputsOf(fresh()));
    const joined = [...rows, row("e")];
    const inputs = { ...fresh(), live: new Set([...ids, "e"]) };
    assert.deepEqual(memo.snapshots(fleetOf(joined), new Set(["e"]), inputsOf(inputs)).map((n) => n.id), ["a", "b", "c", "d", "e"]);
    const left = joined.filter((r) => r.id !== "b");
    assert.deepEqual(memo.snapshots(fleetOf(left), new Set(["b"]), inputsOf(inputs)).map((n) => n.id), ["a", "c", "d", "e"]);
  });

  it("ignores a change named for a node that is not online", () => {
    const memo = new NodeSnapshotMemo();
    const fleet = fleetOf(ids.map((id) => row(id)));
    const first = memo.snapshots(fleet, "all", inputsOf(fresh()));
    assert.equal(memo.snapshots(fleet, new Set(["offline"]), inputsOf(fresh())), first);
  });
});

describe("NodeSnapshotMemo under any sequence of changes", () => {
  it("hands out exactly what buildNodeSnapshots builds from the same rows and inputs, when each source names what it changed", () => {
    const pool = ["a", "b", "c", "d", "e", "f"];
    const step = fc.record({
      node: fc.constantFrom(...pool),
      kind: fc.constantFrom("hold", "free", "dataset", "no-dataset", "live", "dead", "reliability", "row", "join", "leave"),
      value: fc.integer({ min: 1, max: 4 }),
    });
    fc.assert(
      fc.property(fc.array(fc.array(step, { maxLength: 4 }), { minLength: 1, maxLength: 12 }), (cycles) => {
        const memo = new NodeSnapshotMemo();
        let rows = pool.slice(0, 4).map((id) => row(id));
        const inputs: Inputs = { held: new Map(), datasets: new Map(), live: new Set(pool), reliability: new Map() };
        let changed: Set<string> | "all" = "all";
        for (const steps of cycles) {
          for (const s of steps) {
            const at = rows.findIndex((r) => r.id === s.node);
            // Held units and datasets are read afresh each cycle and need no naming; the others do.
            if (s.kind === "hold") inputs.held.set(s.node, [{ ...unitOn(s.node), cpu: s.value }]);
            else if (s.kind === "free") inputs.held.delete(s.node);
            else if (s.kind === "dataset") inputs.datasets.set(s.node, new Set([`d${s.value}`]));
            else if (s.kind === "no-dataset") inputs.datasets.delete(s.node);
            else {
              if (s.kind === "live") inputs.live.add(s.node);
              else if (s.kind === "dead") inputs.live.delete(s.node);
              else if (s.kind === "reliability") inputs.reliability.set(s.node, s.value / 4);
              else if (s.kind === "row" && at >= 0) rows[at] = row(s.node, s.value * 4);
              else if (s.kind === "join" && at < 0) rows = [...rows, row(s.node)];
              else if (s.kind === "leave" && at >= 0) rows = rows.filter((r) => r.id !== s.node);
              if (changed !== "all") changed.add(s.node);
            }
          }
          // The fleet's rows only list online nodes: units or datasets on others are not in the snapshot.
          // In an order of its own: a node that left and came back within one cycle keeps its old place.
          const byId = (nodes: readonly NodeSnapshot[]) => [...nodes].sort((x, y) => (x.id < y.id ? -1 : 1));
          const got = memo.snapshots(fleetOf(rows), changed, inputsOf(inputs));
          assert.deepEqual(byId(got), byId(buildNodeSnapshots(rows, inputsOf(inputs))));
          changed = new Set();
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("buildNodeSnapshots: a node's isolation and its owner's controls", () => {
  const owned = (change: Partial<NodeRow>): NodeRow =>
    ({ ...row("a"), isolation: "bubblewrap", owner_paused: false, owner_within_window: true, reserved_vram_mb: 0, ...change }) as NodeRow;
  const cases: { what: string; change: Partial<NodeRow>; expected: Pick<NodeSnapshot, "isolation" | "owner"> }[] = [
    { what: "a sandboxed node its owner lets work", change: {}, expected: { isolation: "sandboxed", owner: { paused: false, withinWindow: true, reservedVramMb: 0 } } },
    { what: "a node without a sandbox", change: { isolation: "none" }, expected: { isolation: "none", owner: { paused: false, withinWindow: true, reservedVramMb: 0 } } },
    { what: "a node whose sandbox is unavailable", change: { isolation: "unavailable" }, expected: { isolation: "unavailable", owner: { paused: false, withinWindow: true, reservedVramMb: 0 } } },
    {
      what: "a paused node outside its window that keeps 4 GB per GPU",
      change: { owner_paused: true, owner_within_window: false, reserved_vram_mb: 4096 },
      expected: { isolation: "sandboxed", owner: { paused: true, withinWindow: false, reservedVramMb: 4096 } },
    },
  ];
  for (const c of cases) {
    it(`carries ${c.what} to the placer`, () => {
      const [snapshot] = buildNodeSnapshots([owned(c.change)], inputsOf(fresh()));
      assert.deepEqual({ isolation: snapshot?.isolation, owner: snapshot?.owner }, c.expected);
    });
  }
});
