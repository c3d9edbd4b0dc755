import assert from "node:assert/strict";
import type { AttemptRow } from "../../src/store/checkpoints.ts";
import { unitAttempts } from "../../src/jobs/unit-attempts.ts";

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
const record = (attempt: number, fields: Partial<AttemptRow>): AttemptRow => ({
  unit_id: "u",
  attempt,
  node_id: null,
  status: null,
  assigned_at: null,
  started_at: null,
  finished_at: null,
  error: "",
  run_seconds: 0,
  resumed_from_attempt: null,
  resumed_from_checkpoint: null,
  resumed_from_metrics: null,
  resume_blob_key: null,
  resume_sha256: null,
  resume_size_bytes: null,
  ...fields,
});
const lost = record(1, { node_id: "n1", status: "lost", assigned_at: at(1), started_at: at(2), finished_at: at(9), error: "the node stopped sending heartbeats" });
const resume = { resumed_from_attempt: 1, resumed_from_checkpoint: "epoch-3.ckpt", resumed_from_metrics: { epoch: 3 } };

describe("a compute unit's attempts as its customer reads them", () => {
  const cases: {
    name: string;
    unit: { attempt: number; status: "ready" | "assigned" | "running" | "completed"; node_id: string | null; assigned_at: Date | null };
    records: AttemptRow[];
    want: [number, string, string, number | undefined][];
  }[] = [
    { name: "a unit never placed has none", unit: { attempt: 1, status: "ready", node_id: null, assigned_at: null }, records: [], want: [] },
    {
      name: "the attempt on a node now comes from the unit's row before any record of it exists",
      unit: { attempt: 1, status: "assigned", node_id: "n1", assigned_at: at(1) },
      records: [],
      want: [[1, "assigned", "n1", undefined]],
    },
    {
      name: "a lost attempt, then a planned resume not yet placed: only the lost one shows",
      unit: { attempt: 2, status: "ready", node_id: null, assigned_at: null },
      records: [lost, record(2, resume)],
      want: [[1, "lost", "n1", undefined]],
    },
    {
      name: "the resumed attempt running on another node shows what it resumed from",
      unit: { attempt: 2, status: "running", node_id: "n2", assigned_at: at(10) },
      records: [lost, record(2, { ...resume, node_id: "n2", started_at: at(11) })],
      want: [
        [1, "lost", "n1", undefined],
        [2, "running", "n2", 1],
      ],
    },
    {
      name: "a completed resumed attempt keeps its resume and its end",
      unit: { attempt: 2, status: "completed", node_id: "n2", assigned_at: at(10) },
      records: [record(2, { ...resume, node_id: "n2", status: "completed", finished_at: at(20), run_seconds: 4 }), lost],
      want: [
        [1, "lost", "n1", undefined],
        [2, "completed", "n2", 1],
      ],
    },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const views = unitAttempts(tc.unit, tc.records);
      assert.deepEqual(
        views.map((v) => [v.attempt, v.status, v.nodeId, v.resumedFrom?.attempt]),
        tc.want,
      );
    });
  }

  it("the running attempt has no end time yet, and its resume names the checkpoint and its metrics", () => {
    const [, running] = unitAttempts({ attempt: 2, status: "running", node_id: "n2", assigned_at: at(10) }, [lost, record(2, { ...resume, node_id: "n2", started_at: at(11) })]);
    assert.deepEqual([running?.finishedAt, running?.startedAt, running?.assignedAt, running?.resumedFrom], [null, at(11), at(10), { attempt: 1, name: "epoch-3.ckpt", metrics: { epoch: 3 } }]);
  });
});
