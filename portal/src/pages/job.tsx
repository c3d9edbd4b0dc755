/**
 * One training job: status and live progress, the DAG of compute units, the
 * loss curve, the live tail of each unit's log, artifacts with download
 * buttons, and cancel. Nothing is polled: the page follows the job's live
 * events (api/job-events.ts, an EventSource) and reads the job, its units,
 * metrics and artifacts again only when a status changes.
 *
 * The loss curve is each unit's history of progress reports as the server
 * keeps it (GET …/metrics: every report, thinned evenly past 500), so a job
 * opened after it finished has its whole curve; while the job runs, each
 * unit event with new metrics adds a point. Logs are the server's tail of each
 * unit, then the lines its log events bring (components/unit-log.tsx).
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { api, sameOrigin, triggerDownload } from "../api/client.ts";
import type { LogEvent, UnitChange } from "../api/job-events.ts";
import { watchJobEvents } from "../api/job-events.ts";
import type { Artifact, ComputeUnit, DownloadUrl, JobMetrics, List, TrainingJob, UnitAttempt, UnitCheckpoint } from "../api/types.ts";
import { LineChart } from "../components/charts.tsx";
import { DagView } from "../components/dag.tsx";
import { ErrorBox, Loading, Page, ProgressBar, StatusBadge } from "../components/ui.tsx";
import { UnitLog } from "../components/unit-log.tsx";
import { formatBytes, formatDate, formatDuration, formatMetric, formatNumber, humanize } from "../format.ts";
import { useAction } from "../hooks.ts";
import { Link } from "../router.tsx";

const terminal = new Set(["completed", "failed", "cancelled", "expired"]);

/** The environment's time, said apart from the run because the customer is billed for the run only. */
function envBuildNote(u: ComputeUnit): string {
  const took = formatDuration(u.env_build_seconds);
  return u.env_built ? `Python environment built in ${took} (not billed)` : `${took} preparing the Python environment (not billed)`;
}

/** Metrics in words, epoch first: "epoch 3, loss 0.25". */
function metricWords(metrics: Record<string, number> | undefined): string {
  const order = (k: string) => (k === "epoch" ? 0 : k === "loss" ? 1 : 2);
  return Object.entries(metrics ?? {})
    .sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b))
    .map(([k, v]) => `${k} ${formatMetric(v)}`)
    .join(", ");
}

/** What an attempt started from: "resumed from attempt 1 (epoch 3)"; "" for a fresh start. */
function resumedFrom(a: UnitAttempt | undefined): string {
  if (a === undefined || a.resumed_from_attempt === 0) return "";
  const at = metricWords(a.resumed_from_metrics);
  return `resumed from attempt ${a.resumed_from_attempt}${at === "" ? "" : ` (${at})`}`;
}

/** A unit's latest checkpoint: "ckpt-3.pt from attempt 1 (epoch 3), 1.2 MiB". */
function checkpointWords(c: UnitCheckpoint): string {
  const at = metricWords(c.metrics);
  return `${c.name} from attempt ${c.attempt}${at === "" ? "" : ` (${at})`}, ${formatBytes(c.size_bytes)}`;
}

/** One attempt in a line: "1 on node 1a2b3c4d: lost — node went offline". */
function attemptWords(a: UnitAttempt): string {
  const resumed = resumedFrom(a);
  return `${a.attempt} on node ${a.node_id.slice(0, 8)}: ${humanize(a.status)}${resumed === "" ? "" : `, ${resumed}`}${a.error === "" ? "" : ` — ${a.error}`}`;
}

/** A unit's GPUs: "2 (GPUs 0, 1)" once placed, "2" before; "—" for a cpu unit. */
function unitGpus(u: ComputeUnit): string {
  if (u.kind !== "gpu") return "—";
  const count = String(Math.max(1, u.required_gpu_count ?? 1));
  const indexes = u.gpu_indexes ?? [];
  return indexes.length === 0 ? count : `${count} (GPU ${indexes.join(", ")})`;
}

/** What a job or unit asks of its GPUs beyond count and memory, in words; "" for nothing. */
function constraintWords(c: Pick<TrainingJob, "gpu_models" | "min_compute_capability" | "min_cuda_version">): string {
  return [
    (c.gpu_models ?? []).length === 0 ? "" : `model ${c.gpu_models.join(" or ")}`,
    (c.min_compute_capability ?? "") === "" ? "" : `compute capability ≥ ${c.min_compute_capability}`,
    (c.min_cuda_version ?? "") === "" ? "" : `CUDA ≥ ${c.min_cuda_version}`,
  ]
    .filter((part) => part !== "")
    .join(" · ");
}

/** A unit's loss curve: by epoch when every report with a loss names its epoch, else by report. */
interface LossCurve {
  readonly unit: string;
  readonly xLabel: string;
  readonly points: Array<{ x: number; y: number }>;
}

/** The loss curves of the units that reported a loss at least twice. */
function lossCurves(metrics: JobMetrics | undefined): LossCurve[] {
  return (metrics?.units ?? []).flatMap((u) => {
    const reports = u.points.filter((p) => Number.isFinite(p.metrics["loss"]));
    if (reports.length < 2) return [];
    const byEpoch = reports.every((p) => Number.isFinite(p.metrics["epoch"]));
    // One point per x (a report repeated for the same epoch replaces the earlier one).
    const points = new Map<number, number>();
    reports.forEach((p, i) => points.set(byEpoch ? p.metrics["epoch"]! : i + 1, p.metrics["loss"]!));
    return [{ unit: u.name, xLabel: byEpoch ? "epoch" : "report", points: [...points].sort((a, b) => a[0] - b[0]).map(([x, y]) => ({ x, y })) }];
  });
}

/** Wait before watching again after the stream was refused or broke for good (401, 429 …). */
const rewatchMs = 5000;

/** A unit's history with one more point when the unit's change brings metrics its last point lacks. */
function withReport(metrics: JobMetrics | undefined, change: UnitChange): JobMetrics | undefined {
  if (metrics === undefined) return metrics;
  return {
    ...metrics,
    units: metrics.units.map((u) => {
      const last = u.points.at(-1);
      if (u.unit_id !== change.id || Object.keys(change.metrics).length === 0 || JSON.stringify(last?.metrics) === JSON.stringify(change.metrics)) return u;
      return { ...u, points: [...u.points, { progress: change.progress, metrics: change.metrics }] };
    }),
  };
}

function downloadUrl(jobId: string, artifactId: string): Promise<DownloadUrl> {
  return api<DownloadUrl>("POST", `/api/v1/customer/training-jobs/${encodeURIComponent(jobId)}/artifacts/${encodeURIComponent(artifactId)}/download-url`, { body: {} });
}

/**
 * What a unit asks of its GPUs, what its current attempt resumed from, its latest checkpoint and, when it
 * was placed more than once, each attempt: in its row's notes, so a phone shows it in the unit's card.
 */
function UnitHistory({ unit: u }: { unit: ComputeUnit }) {
  const attempts = u.attempts ?? [];
  const resumed = resumedFrom(attempts.at(-1));
  const constraints = u.kind === "gpu" ? constraintWords(u) : "";
  return (
    <>
      {constraints === "" ? null : <div className="unit-note">Needs {constraints}</div>}
      {resumed === "" ? null : (
        <div className="unit-note" data-testid={`resumed-${u.name}`}>
          Attempt {attempts.at(-1)?.attempt} {resumed}
        </div>
      )}
      {u.latest_checkpoint === undefined ? null : (
        <div className="unit-note" data-testid={`checkpoint-${u.name}`}>
          Latest checkpoint: {checkpointWords(u.latest_checkpoint)}
        </div>
      )}
      {attempts.length < 2 ? null : (
        <details className="unit-note" data-testid={`attempts-${u.name}`}>
          <summary>{attempts.length} attempts</summary>
          <ol>
            {attempts.map((a) => (
              <li key={a.attempt}>{attemptWords(a)}</li>
            ))}
          </ol>
        </details>
      )}
    </>
  );
}

/** The job page. */
export function JobPage({ id }: { id: string }) {
  const [job, setJob] = useState<TrainingJob | undefined>(undefined);
  const [units, setUnits] = useState<ComputeUnit[]>([]);
  const [artifacts, setArtifacts] = useState<Artifact[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [metrics, setMetrics] = useState<JobMetrics | undefined>(undefined);
  const [logEvents, setLogEvents] = useState<Record<string, LogEvent>>({});
  const [watches, setWatches] = useState(0);
  const busy = useRef(false);
  const again = useRef(false);
  /** Job and unit events applied so far: a read that overlapped one may be older than what the page shows. */
  const eventsApplied = useRef(0);
  const completedSeen = useRef(-1);
  const statuses = useRef(new Map<string, string>());
  const base = `/api/v1/customer/training-jobs/${encodeURIComponent(id)}`;

  const refresh = useCallback(async () => {
    // A change that comes while a read runs is read after it, so the last read is never older than the last change.
    if (busy.current) {
      again.current = true;
      return;
    }
    busy.current = true;
    try {
      again.current = false;
      const eventsBefore = eventsApplied.current;
      const [j, u] = await Promise.all([api<TrainingJob>("GET", base), api<List<ComputeUnit>>("GET", `${base}/compute-units?limit=100`)]);
      // Read after the job: once it has ended, this answer holds every report (a unit's last ones are written before it ends).
      const m = await api<JobMetrics>("GET", `${base}/metrics`);
      if (eventsApplied.current !== eventsBefore) {
        // An event came while this read ran: the answer may predate it (a unit's progress would fall back to an
        // older figure, and no later event would correct it). Read again instead; that read follows the event's commit.
        again.current = true;
        return;
      }
      setJob(j);
      setUnits(u.data);
      setMetrics(m);
      setError(undefined);
      // Artifacts appear as units finish: re-read them when that count moves or the job ends.
      const finished = u.data.filter((x) => terminal.has(x.status)).length + (terminal.has(j.status) ? 1000 : 0);
      if (finished !== completedSeen.current) {
        completedSeen.current = finished;
        const a = await api<List<Artifact>>("GET", `${base}/artifacts?limit=100`);
        setArtifacts(a.data);
      }
    } catch (e) {
      setError(e);
    } finally {
      busy.current = false;
      if (again.current) void refresh();
    }
  }, [base]);

  /** True when the job or a unit (`key`) reached another status than the page last saw. */
  const moved = (key: string, status: string): boolean => {
    const before = statuses.current.get(key);
    statuses.current.set(key, status);
    return before !== status;
  };

  useEffect(
    () =>
      watchJobEvents(base, {
        snapshot(s) {
          setJob(s.training_job);
          setUnits(s.compute_units);
          moved(id, s.training_job.status);
          for (const u of s.compute_units) moved(u.id, u.status);
          void refresh();
        },
        job(change) {
          eventsApplied.current++;
          setJob((j) => (j === undefined ? j : { ...j, ...change }));
          if (moved(id, change.status)) void refresh();
        },
        unit(change) {
          eventsApplied.current++;
          setUnits((us) => us.map((u) => (u.id === change.id ? { ...u, ...change } : u)));
          setMetrics((m) => withReport(m, change));
          // Credits, counts and artifacts follow a unit's end: read them then.
          if (moved(change.id, change.status)) void refresh();
        },
        log(event) {
          setLogEvents((all) => ({ ...all, [event.compute_unit_id]: event }));
        },
        onClosed() {
          // Refused (signed out, not found, too many watches) or ended: the read shows which; a job known to be active is watched again.
          void refresh();
          const status = statuses.current.get(id);
          if (status !== undefined && !terminal.has(status)) window.setTimeout(() => setWatches((n) => n + 1), rewatchMs);
        },
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [base, watches],
  );

  const cancel = useAction(async () => {
    if (!window.confirm("Cancel this training job? Units that are running are stopped; completed units stay billed.")) return;
    setJob(await api<TrainingJob>("POST", `${base}/cancel`, { body: {} }));
    await refresh();
  });
  const download = useAction(async (a: Artifact) => {
    const url = await downloadUrl(id, a.id);
    triggerDownload(sameOrigin(url.download_url), a.name);
  });

  if (job === undefined) {
    return (
      <Page title="Training job">
        <ErrorBox error={error} />
        {error === undefined ? <Loading what="the job" /> : <Link to="/jobs">Back to your training jobs</Link>}
      </Page>
    );
  }

  const curves = lossCurves(metrics);
  const latest = Object.entries(job.metrics);
  // Units that ever ran have a log; plan order.
  const logged = units.filter((u) => u.attempt > 0);

  return (
    <Page
      title={job.name || "Training job"}
      actions={
        terminal.has(job.status) ? null : (
          <button type="button" className="danger" onClick={() => void cancel.run()} disabled={cancel.busy}>
            {cancel.busy ? "Cancelling…" : "Cancel job"}
          </button>
        )
      }
    >
      <ErrorBox error={cancel.error} />
      <ErrorBox error={error} />
      <section className="job-status" aria-labelledby="status-title">
        <h2 id="status-title" className="visually-hidden">
          Status
        </h2>
        <p className="status-line">
          <StatusBadge status={job.status} testId="job-status" />
          <span>
            {job.compute_units_completed} of {job.compute_unit_count} compute units done
          </span>
        </p>
        <ProgressBar label="Job progress" value={job.progress} testId="job-progress" />
        <div aria-live="polite" className="visually-hidden">
          {terminal.has(job.status) ? `The job is ${humanize(job.status)}.` : ""}
        </div>
        {job.error === "" ? null : (
          <p className="job-error" role="alert">
            {job.error}
          </p>
        )}
        {job.status === "queued" && (job.pending_reason ?? "") !== "" ? (
          <p className="pending-reason" data-testid="pending-reason">
            Waiting: {job.pending_reason}
          </p>
        ) : null}
        <dl className="facts">
          <dt>Job ID</dt>
          <dd>
            <code className="id">{job.id}</code>
          </dd>
          <dt>Dataset</dt>
          <dd>
            <code className="id">{job.dataset_id}</code>
          </dd>
          <dt>Training package</dt>
          <dd>
            <code className="id">{job.training_package_id}</code>
          </dd>
          <dt>GPUs</dt>
          <dd data-testid="job-gpus">
            {Math.max(1, job.required_gpu_count ?? 1)} of one machine, each with {formatNumber(job.required_vram_mb)} MB of GPU memory free
          </dd>
          <dt>GPU constraints</dt>
          <dd data-testid="job-gpu-constraints">{constraintWords(job) || "none"}</dd>
          <dt>Disk</dt>
          <dd>{formatNumber(job.required_disk_mb)} MB</dd>
          <dt>Maximum run time</dt>
          <dd>{formatDuration(job.max_runtime_seconds)}</dd>
          {(job.queue_timeout_seconds ?? 0) > 0 ? (
            <>
              <dt>Queue timeout</dt>
              <dd>{formatDuration(job.queue_timeout_seconds)}</dd>
            </>
          ) : null}
          <dt>Sensitivity</dt>
          <dd>{humanize(job.sensitivity)}</dd>
          <dt>Credits</dt>
          <dd>
            {formatNumber(job.credits_debited)} debited of {formatNumber(job.projected_cost_credits)} projected
          </dd>
          <dt>Created</dt>
          <dd>{formatDate(job.created_at)}</dd>
          <dt>Started</dt>
          <dd>{formatDate(job.started_at)}</dd>
          <dt>Finished</dt>
          <dd>{formatDate(job.finished_at)}</dd>
        </dl>
      </section>

      <section aria-labelledby="dag-title">
        <h2 id="dag-title">Compute units</h2>
        <DagView units={units} />
        <div className="table-scroll">
          <table data-testid="units-table" className="stack-on-phone">
            <thead>
              <tr>
                <th scope="col">Unit</th>
                <th scope="col">Kind</th>
                <th scope="col">GPUs</th>
                <th scope="col">After</th>
                <th scope="col">State</th>
                <th scope="col">Progress</th>
                <th scope="col">Attempt</th>
                <th scope="col">Node</th>
                <th scope="col">Credits</th>
                <th scope="col">Notes</th>
              </tr>
            </thead>
            <tbody>
              {units.map((u) => (
                <tr key={u.id}>
                  <th scope="row">{u.name}</th>
                  <td data-label="Kind">{u.kind.toUpperCase()}</td>
                  <td data-label="GPUs" data-testid={`gpus-${u.name}`}>
                    {unitGpus(u)}
                  </td>
                  <td data-label="After">{u.depends_on.join(", ") || "—"}</td>
                  <td data-label="State">
                    <StatusBadge status={u.status} />
                  </td>
                  <td data-label="Progress">
                    <ProgressBar label={`Progress of ${u.name}`} value={u.status === "completed" ? 1 : u.progress} />
                  </td>
                  <td className="num" data-label="Attempt">
                    {u.attempt}
                  </td>
                  <td data-label="Node">{u.node_id === "" ? "—" : <code className="id">{u.node_id.slice(0, 8)}</code>}</td>
                  <td className="num" data-label="Credits">
                    {formatNumber(u.credits_debited)}
                  </td>
                  <td data-label="Notes">
                    {u.error || u.unschedulable_reason || null}
                    {u.env_build_seconds > 0 ? <div data-testid="env-build">{envBuildNote(u)}</div> : null}
                    <UnitHistory unit={u} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>

      <section aria-labelledby="metrics-title">
        <h2 id="metrics-title">Training metrics</h2>
        {latest.length === 0 ? (
          <p className="empty">No metrics reported yet.</p>
        ) : (
          <dl className="facts metrics" data-testid="metrics">
            {latest.map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{formatMetric(v)}</dd>
              </div>
            ))}
          </dl>
        )}
        {curves.map((c) => (
          <LineChart
            key={c.unit}
            title={curves.length === 1 ? `Loss by ${c.xLabel}` : `Loss by ${c.xLabel}: ${c.unit}`}
            xLabel={c.xLabel}
            yLabel="loss"
            points={c.points}
            testId={`loss-chart-${c.unit}`}
          />
        ))}
      </section>

      <section aria-labelledby="artifacts-title">
        <h2 id="artifacts-title">Artifacts</h2>
        <ErrorBox error={download.error} />
        {artifacts.length === 0 ? (
          <p className="empty">{terminal.has(job.status) ? "This job produced no artifacts." : "Artifacts appear here as compute units finish."}</p>
        ) : (
          <div className="table-scroll">
            <table data-testid="artifacts-table" className="stack-on-phone">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Size</th>
                  <th scope="col">SHA-256</th>
                  <th scope="col">
                    <span className="visually-hidden">Download</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {artifacts.map((a) => (
                  <tr key={a.id}>
                    <th scope="row">{a.name}</th>
                    <td data-label="Kind">{a.kind}</td>
                    <td className="num" data-label="Size">
                      {formatBytes(a.size_bytes)}
                    </td>
                    <td data-label="SHA-256">
                      <code title={a.sha256}>{a.sha256.slice(0, 12)}…</code>
                    </td>
                    <td className="actions">
                      <button type="button" onClick={() => void download.run(a)} aria-label={`Download ${a.name}`}>
                        Download
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section aria-labelledby="logs-title">
        <h2 id="logs-title">Logs</h2>
        {logged.length === 0 ? (
          <p className="empty">Each compute unit’s output appears here, live, once it starts.</p>
        ) : (
          logged.map((u) => <UnitLog key={u.id} jobId={id} unit={u} pushed={logEvents[u.id]} />)
        )}
      </section>
    </Page>
  );
}
