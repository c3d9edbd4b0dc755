/**
 * One training job: status and live progress, the DAG of compute units, the
 * loss curve, the tail of each stage's log, artifacts with download buttons,
 * and cancel. While the job is queued or running the page polls every second.
 *
 * The loss curve gathers (epoch, loss) from the training unit's reported
 * metrics as the page watches, and from "epoch N … loss=X" lines of the
 * stages' logs, so a job opened after it finished still has its curve.
 * Logs are the `*.log` artifacts each stage uploads when it ends (the API has
 * no live log stream yet).
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { api, sameOrigin, triggerDownload } from "../api/client.ts";
import type { Artifact, ComputeUnit, DownloadUrl, List, TrainingJob } from "../api/types.ts";
import { LineChart } from "../components/charts.tsx";
import { DagView } from "../components/dag.tsx";
import { ErrorBox, Loading, Page, ProgressBar, StatusBadge } from "../components/ui.tsx";
import { formatBytes, formatDate, formatDuration, formatMetric, formatNumber, humanize } from "../format.ts";
import { useAction, useInterval } from "../hooks.ts";
import { Link } from "../router.tsx";

const terminal = new Set(["completed", "failed", "cancelled", "expired"]);
const logTailLines = 40;
const logFetchMaxBytes = 2 * 1024 * 1024;
const epochLoss = /\bepoch\D{0,3}(\d+)(?:\s*\/\s*\d+)?\b.*?\bloss\s*[=:]\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)/i;

interface LogTail {
  readonly name: string;
  readonly lines: string[];
  readonly truncated: boolean;
  readonly error?: unknown;
}

function downloadUrl(jobId: string, artifactId: string): Promise<DownloadUrl> {
  return api<DownloadUrl>("POST", `/api/v1/customer/training-jobs/${encodeURIComponent(jobId)}/artifacts/${encodeURIComponent(artifactId)}/download-url`, { body: {} });
}

/** The job page. */
export function JobPage({ id }: { id: string }) {
  const [job, setJob] = useState<TrainingJob | undefined>(undefined);
  const [units, setUnits] = useState<ComputeUnit[]>([]);
  const [artifacts, setArtifacts] = useState<Artifact[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [loss, setLoss] = useState<Map<number, number>>(new Map());
  const [logs, setLogs] = useState<Map<string, LogTail>>(new Map());
  const busy = useRef(false);
  const completedSeen = useRef(-1);
  const base = `/api/v1/customer/training-jobs/${encodeURIComponent(id)}`;

  const addLoss = useCallback((points: ReadonlyArray<[number, number]>) => {
    if (points.length === 0) return;
    setLoss((old) => {
      let changed = false;
      const next = new Map(old);
      for (const [epoch, value] of points) {
        if (Number.isFinite(epoch) && Number.isFinite(value) && next.get(epoch) !== value) {
          next.set(epoch, value);
          changed = true;
        }
      }
      return changed ? next : old;
    });
  }, []);

  const refresh = useCallback(async () => {
    if (busy.current) return;
    busy.current = true;
    try {
      const [j, u] = await Promise.all([api<TrainingJob>("GET", base), api<List<ComputeUnit>>("GET", `${base}/compute-units?limit=100`)]);
      setJob(j);
      setUnits(u.data);
      setError(undefined);
      addLoss(u.data.filter((x) => x.metrics["epoch"] !== undefined && x.metrics["loss"] !== undefined).map((x) => [x.metrics["epoch"]!, x.metrics["loss"]!]));
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
    }
  }, [base, addLoss]);

  useEffect(() => {
    void refresh();
  }, [refresh]);
  const active = job === undefined ? error === undefined : !terminal.has(job.status);
  useInterval(() => void refresh(), 1000, active && job !== undefined);

  // Each log artifact is read once; its epoch/loss lines fill in the curve.
  useEffect(() => {
    for (const a of artifacts) {
      if (a.kind !== "logs" || logs.has(a.id)) continue;
      setLogs((m) => new Map(m).set(a.id, { name: a.name, lines: [], truncated: false }));
      void (async () => {
        try {
          if (Number(a.size_bytes) > logFetchMaxBytes) {
            setLogs((m) => new Map(m).set(a.id, { name: a.name, lines: [], truncated: true }));
            return;
          }
          const url = await downloadUrl(id, a.id);
          const res = await fetch(sameOrigin(url.download_url), { credentials: "same-origin", cache: "no-store" });
          const text = res.ok ? await res.text() : "";
          const all = text.split("\n").filter((l, i, arr) => l !== "" || i < arr.length - 1);
          addLoss(
            all.flatMap((line) => {
              const m = epochLoss.exec(line);
              return m === null ? [] : [[Number(m[1]), Number(m[2])] as [number, number]];
            }),
          );
          setLogs((m) => new Map(m).set(a.id, { name: a.name, lines: all.slice(-logTailLines), truncated: all.length > logTailLines }));
        } catch (e) {
          setLogs((m) => new Map(m).set(a.id, { name: a.name, lines: [], truncated: false, error: e }));
        }
      })();
    }
  }, [artifacts, logs, id, addLoss]);

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

  const points = [...loss.entries()].sort((a, b) => a[0] - b[0]).map(([x, y]) => ({ x, y }));
  const metrics = Object.entries(job.metrics);
  const logTails = [...logs.values()].sort((a, b) => a.name.localeCompare(b.name));

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
          <dt>GPU memory</dt>
          <dd>{formatNumber(job.required_vram_mb)} MB</dd>
          <dt>Disk</dt>
          <dd>{formatNumber(job.required_disk_mb)} MB</dd>
          <dt>Maximum run time</dt>
          <dd>{formatDuration(job.max_runtime_seconds)}</dd>
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
          <table data-testid="units-table">
            <thead>
              <tr>
                <th scope="col">Unit</th>
                <th scope="col">Kind</th>
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
                  <td>{u.kind.toUpperCase()}</td>
                  <td>{u.depends_on.join(", ") || "—"}</td>
                  <td>
                    <StatusBadge status={u.status} />
                  </td>
                  <td>
                    <ProgressBar label={`Progress of ${u.name}`} value={u.status === "completed" ? 1 : u.progress} />
                  </td>
                  <td className="num">{u.attempt}</td>
                  <td>{u.node_id === "" ? "—" : <code className="id">{u.node_id.slice(0, 8)}</code>}</td>
                  <td className="num">{formatNumber(u.credits_debited)}</td>
                  <td>{u.error || u.unschedulable_reason || ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>

      <section aria-labelledby="metrics-title">
        <h2 id="metrics-title">Training metrics</h2>
        {metrics.length === 0 ? (
          <p className="empty">No metrics reported yet.</p>
        ) : (
          <dl className="facts metrics" data-testid="metrics">
            {metrics.map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{formatMetric(v)}</dd>
              </div>
            ))}
          </dl>
        )}
        {points.length === 0 ? null : <LineChart title="Loss by epoch" xLabel="epoch" yLabel="loss" points={points} testId="loss-chart" />}
      </section>

      <section aria-labelledby="artifacts-title">
        <h2 id="artifacts-title">Artifacts</h2>
        <ErrorBox error={download.error} />
        {artifacts.length === 0 ? (
          <p className="empty">{terminal.has(job.status) ? "This job produced no artifacts." : "Artifacts appear here as compute units finish."}</p>
        ) : (
          <div className="table-scroll">
            <table data-testid="artifacts-table">
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
                    <td>{a.kind}</td>
                    <td className="num">{formatBytes(a.size_bytes)}</td>
                    <td>
                      <code title={a.sha256}>{a.sha256.slice(0, 12)}…</code>
                    </td>
                    <td>
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
        {logTails.length === 0 ? (
          <p className="empty">Each stage's log appears here when the stage ends.</p>
        ) : (
          logTails.map((log) => (
            <div className="log" key={log.name}>
              <h3>{log.name}</h3>
              <ErrorBox error={log.error} />
              {log.truncated && log.lines.length === 0 ? (
                <p className="hint">This log is large: download it from the artifacts above.</p>
              ) : (
                <>
                  {log.truncated ? <p className="hint">The last {logTailLines} lines:</p> : null}
                  <pre tabIndex={0} aria-label={`Log ${log.name}`}>
                    {log.lines.join("\n")}
                  </pre>
                </>
              )}
            </div>
          ))
        )}
      </section>
    </Page>
  );
}
