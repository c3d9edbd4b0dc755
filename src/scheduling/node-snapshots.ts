/**
 * The placer's view of every online node, kept across the leader's cycles and
 * rebuilt only where something it is built from changed.
 *
 * A node's snapshot is a function of its row, its liveness, its reliability,
 * the units held on it and the waiting units' datasets it holds. Rows come
 * from FleetCache and liveness from NodeLiveness, reliability from
 * NodeHistory: each says which nodes changed since it was last asked. Units
 * held and datasets held are read every cycle, but only for the few nodes
 * that have any, so the nodes to look at again are those named now or last
 * cycle. At 10,000 nodes a cycle then touches a handful of nodes instead of
 * walking all of them (~10 ms of the leader's event loop under heartbeat
 * load), and hands the placer the same array when nothing changed.
 */
import type { NodeIsolation, NodeSnapshot } from "../placer/index.ts";
import type { IsolationMechanism, NodeRow } from "../store/nodes.ts";
import type { HeldRow } from "../store/placement.ts";

export type { HeldRow };

/** What a node's snapshot is built from, besides its row. */
export interface NodeInputs {
  /** Held resources of the nodes that hold any. */
  held: ReadonlyMap<string, readonly HeldRow[]>;
  /** Datasets (of the waiting units) held by the nodes that hold any. */
  datasets: ReadonlyMap<string, ReadonlySet<string>>;
  isLive(nodeId: string): boolean;
  reliability(nodeId: string): number;
  /** The cycle's time: a node whose busy hold (`busy_until`) is later counts as full. Absent: no node is held. */
  nowMs?: number | undefined;
}

/** Whether the node answered an assignment busy and is still held full at `nowMs` (schema-0013.ts). */
export function heldBusy(n: NodeRow, nowMs: number | undefined): boolean {
  return nowMs !== undefined && n.busy_until !== null && n.busy_until !== undefined && n.busy_until.getTime() > nowMs;
}

/** The online rows, and one row by id. */
export interface FleetRows {
  readonly rows: readonly NodeRow[];
  row(nodeId: string): NodeRow | undefined;
}

const noneHeld: readonly HeldRow[] = [];
const noDatasets: ReadonlySet<string> = new Set();

/** What each isolation mechanism means to the placer. */
const placerIsolation: Record<IsolationMechanism, NodeIsolation> = { bubblewrap: "sandboxed", none: "none", unavailable: "unavailable" };

/**
 * A node's snapshot from its row and inputs: capacity less what assigned and running units hold,
 * with its isolation and its owner's controls (pause, window, reserved VRAM), what each GPU is, and
 * the unit slots its agent has left (`max_units` less the units on it; absent when it told no limit;
 * none while `busy`: its agent just turned a unit down as full, src/agent-streams/busy-nodes.ts).
 */
export function buildNodeSnapshot(
  n: NodeRow,
  held: readonly HeldRow[],
  live: boolean,
  reliability: number,
  datasets: ReadonlySet<string>,
  busy = false,
): NodeSnapshot {
  const sum = (f: (h: HeldRow) => number) => held.reduce((acc, h) => acc + f(h), 0);
  const c = n.capabilities;
  const maxUnits = n.max_units ?? 0;
  return {
    id: n.id,
    trustLevel: n.trust_level,
    schedulable: live,
    cpuCores: c.cpuCores ?? 0,
    freeCpuCores: (c.cpuCores ?? 0) - sum((h) => h.cpu),
    memoryMb: c.memoryMb ?? 0,
    freeMemoryMb: (c.memoryMb ?? 0) - sum((h) => h.memory),
    diskFreeMb: (c.diskFreeMb ?? 0) - sum((h) => h.disk),
    gpus: (c.gpus ?? []).map((g) => ({
      index: g.index ?? 0,
      name: g.name ?? "",
      vramMb: g.vramMb ?? 0,
      freeVramMb: (g.vramMb ?? 0) - held.filter((h) => h.gpu_index === (g.index ?? 0)).reduce((a, h) => a + h.vram, 0),
      ...(g.uuid ? { uuid: g.uuid } : {}),
      ...(g.computeCapability ? { computeCapability: g.computeCapability } : {}),
      ...(g.cudaVersion ? { cudaVersion: g.cudaVersion } : {}),
    })),
    cachedDatasetIds: datasets,
    reliability,
    // A mechanism this control plane does not know contains nothing it can vouch for.
    isolation: placerIsolation[n.isolation] ?? "none",
    owner: { paused: n.owner_paused, withinWindow: n.owner_within_window, reservedVramMb: n.reserved_vram_mb },
    ...(busy ? { freeUnitSlots: 0 } : maxUnits > 0 ? { freeUnitSlots: Math.max(0, maxUnits - sum((h) => h.units)) } : {}),
  };
}

/** Every node's snapshot from scratch: for callers without a memo (tests, one-off reads). */
export function buildNodeSnapshots(rows: readonly NodeRow[], inputs: NodeInputs): NodeSnapshot[] {
  return rows.map((n) =>
    buildNodeSnapshot(
      n,
      inputs.held.get(n.id) ?? noneHeld,
      inputs.isLive(n.id),
      inputs.reliability(n.id),
      inputs.datasets.get(n.id) ?? noDatasets,
      heldBusy(n, inputs.nowMs),
    ),
  );
}

interface MemoEntry {
  row: NodeRow;
  live: boolean;
  reliability: number;
  heldKey: string;
  datasetKey: string;
  busy: boolean;
  snapshot: NodeSnapshot;
  /** Where the snapshot sits in the memo's array. */
  index: number;
}

/** Node snapshots kept across cycles (see the file's header). */
export class NodeSnapshotMemo {
  private entries = new Map<string, MemoEntry>();
  private nodes: readonly NodeSnapshot[] = [];
  private heldBefore: readonly string[] = [];
  private datasetsBefore: readonly string[] = [];
  /** Nodes whose snapshot was built held busy: looked at every call, as their hold runs out with time alone. */
  private readonly busy = new Set<string>();
  private built = false;
  /** Nodes looked at again by the last call (for tests and diagnostics). */
  lastVisited = 0;

  /**
   * Every online node's snapshot. `changed` names the nodes whose row, liveness or reliability may have
   * changed since the previous call ("all": look at every node); nodes holding units or datasets now
   * or at the previous call are looked at too. A node whose inputs are all as before keeps its object,
   * and with no node changed the same array comes back. The order is the memo's own (a node that left
   * and came back between two calls keeps its place); a plan is valid in any order.
   */
  snapshots(fleet: FleetRows, changed: ReadonlySet<string> | "all", inputs: NodeInputs): readonly NodeSnapshot[] {
    const heldNow = [...inputs.held.keys()];
    const datasetsNow = [...inputs.datasets.keys()];
    const busyBefore = [...this.busy];
    const result =
      this.built && changed !== "all" ? this.patch(fleet, [changed, this.heldBefore, heldNow, this.datasetsBefore, datasetsNow, busyBefore], inputs) : undefined;
    this.heldBefore = heldNow;
    this.datasetsBefore = datasetsNow;
    if (result !== undefined) return result;
    this.rebuild(fleet, inputs);
    return this.nodes;
  }

  /** Re-looks at the named nodes only; undefined when a node joined or left (the caller rebuilds). */
  private patch(fleet: FleetRows, named: readonly Iterable<string>[], inputs: NodeInputs): readonly NodeSnapshot[] | undefined {
    let next: NodeSnapshot[] | undefined;
    const visited = new Set<string>();
    for (const ids of named) {
      for (const id of ids) {
        if (visited.has(id)) continue;
        visited.add(id);
        const row = fleet.row(id);
        const entry = this.entries.get(id);
        if (row === undefined) {
          if (entry === undefined) continue; // gone before it was ever seen
          return undefined;
        }
        if (entry === undefined) return undefined;
        const snapshot = this.refresh(entry, row, inputs);
        if (snapshot !== this.nodes[entry.index]) {
          next ??= [...this.nodes];
          next[entry.index] = snapshot;
        }
      }
    }
    this.lastVisited = visited.size;
    if (next !== undefined) this.nodes = next;
    return this.nodes;
  }

  /** Looks at every node, keeping the objects of those whose inputs are as before. */
  private rebuild(fleet: FleetRows, inputs: NodeInputs): void {
    const entries = new Map<string, MemoEntry>();
    const nodes: NodeSnapshot[] = [];
    for (const row of fleet.rows) {
      const previous = this.entries.get(row.id);
      const entry: MemoEntry = previous ?? {
        row,
        live: false,
        reliability: Number.NaN,
        heldKey: "",
        datasetKey: "",
        busy: false,
        snapshot: undefined as never,
        index: 0,
      };
      entry.index = nodes.length;
      nodes.push(this.refresh(entry, row, inputs, previous === undefined));
      entries.set(row.id, entry);
    }
    this.entries = entries;
    for (const id of this.busy) if (!entries.has(id)) this.busy.delete(id);
    this.nodes = nodes;
    this.built = true;
    this.lastVisited = nodes.length;
  }

  /** The entry's snapshot, rebuilt (and the entry updated) when any input differs from what it was built from. */
  private refresh(entry: MemoEntry, row: NodeRow, inputs: NodeInputs, fresh = false): NodeSnapshot {
    const held = inputs.held.get(row.id) ?? noneHeld;
    const datasets = inputs.datasets.get(row.id) ?? noDatasets;
    const live = inputs.isLive(row.id);
    const reliability = inputs.reliability(row.id);
    // Most nodes hold nothing and no dataset: their keys are "" and cost no allocation.
    const heldKey = held.length === 0 ? "" : held.map((h) => `${h.gpu_index}:${h.vram}:${h.disk}:${h.cpu}:${h.memory}:${h.units}`).join(",");
    const datasetKey = datasets.size === 0 ? "" : [...datasets].sort().join(",");
    const busy = heldBusy(row, inputs.nowMs);
    if (busy) this.busy.add(row.id);
    else this.busy.delete(row.id);
    if (
      !fresh &&
      entry.row === row &&
      entry.live === live &&
      entry.reliability === reliability &&
      entry.heldKey === heldKey &&
      entry.datasetKey === datasetKey &&
      entry.busy === busy
    ) {
      return entry.snapshot;
    }
    entry.row = row;
    entry.live = live;
    entry.reliability = reliability;
    entry.heldKey = heldKey;
    entry.datasetKey = datasetKey;
    entry.busy = busy;
    entry.snapshot = buildNodeSnapshot(row, held, live, reliability, datasets, busy);
    return entry.snapshot;
  }
}
