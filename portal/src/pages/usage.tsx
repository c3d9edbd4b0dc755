/** Usage: totals, daily credits and GPU-seconds charts, the credit ledger, CSV exports. */
import type { FormEvent } from "react";
import { useState } from "react";
import { api, query, request, saveBlob } from "../api/client.ts";
import type { DailyUsage, LedgerEntry, UsageSummary } from "../api/types.ts";
import { BarChart } from "../components/charts.tsx";
import { ErrorBox, ListBody, Loading, Page, Pager } from "../components/ui.tsx";
import { formatDate, formatDuration, formatNumber } from "../format.ts";
import { useAction, useLoad, usePagedList } from "../hooks.ts";
import { Link } from "../router.tsx";

function isoDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** The usage page. */
export function UsagePage() {
  const [days, setDays] = useState(30);
  const summary = useLoad((signal) => api<UsageSummary>("GET", "/api/v1/customer/usage/summary", { signal }), []);
  const daily = useLoad((signal) => api<{ data: DailyUsage[] }>("GET", `/api/v1/customer/usage/daily${query({ days })}`, { signal }), [days]);
  const { list: ledger, pagerProps } = usePagedList<LedgerEntry>((cursor) => `/api/v1/customer/credits/ledger${query({ limit: 20, cursor })}`, []);
  const today = new Date();
  const [from, setFrom] = useState(isoDay(new Date(today.getTime() - 29 * 86_400_000)));
  const [to, setTo] = useState(isoDay(today));
  const exportCsv = useAction(async (what: "usage" | "statement") => {
    const path = what === "usage" ? "/api/v1/customer/usage/export.csv" : "/api/v1/customer/credits/statement.csv";
    const res = await request("GET", `${path}${query({ date_from: from, date_to: to })}`, { headers: { accept: "text/csv" } });
    saveBlob(await res.blob(), `${what === "usage" ? "usage" : "credit-statement"}-${from}-to-${to}.csv`);
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void exportCsv.run("usage");
  };
  const s = summary.data;
  const rows = daily.data?.data ?? [];

  return (
    <Page title="Usage">
      <ErrorBox error={summary.error} />
      {s === undefined ? (
        summary.error === undefined ? <Loading what="usage" /> : null
      ) : (
        <dl className="cards" data-testid="usage-summary">
          <div className="card">
            <dt>Credit balance</dt>
            <dd>{formatNumber(s.credits_balance)}</dd>
          </div>
          <div className="card">
            <dt>Credits used</dt>
            <dd>{formatNumber(s.credits_debited_total)}</dd>
          </div>
          <div className="card">
            <dt>Credits granted</dt>
            <dd>{formatNumber(s.credits_granted_total)}</dd>
          </div>
          <div className="card">
            <dt>GPU time</dt>
            <dd>{formatDuration(s.gpu_seconds)}</dd>
          </div>
          <div className="card">
            <dt>CPU time</dt>
            <dd>{formatDuration(s.cpu_seconds)}</dd>
          </div>
          <div className="card">
            <dt>Compute units done</dt>
            <dd>{formatNumber(s.compute_units_completed)}</dd>
          </div>
          <div className="card">
            <dt>Jobs (active)</dt>
            <dd>
              {formatNumber(s.jobs_total)} ({formatNumber(s.jobs_active)})
            </dd>
          </div>
        </dl>
      )}

      <section aria-labelledby="daily-title">
        <div className="section-head">
          <h2 id="daily-title">Daily usage (UTC)</h2>
          <div className="filters">
            <label htmlFor="usage-days">Period</label>
            <select id="usage-days" value={days} onChange={(e) => setDays(Number(e.target.value))}>
              <option value={7}>Last 7 days</option>
              <option value={30}>Last 30 days</option>
              <option value={90}>Last 90 days</option>
            </select>
          </div>
        </div>
        <ErrorBox error={daily.error} />
        {daily.data === undefined ? (
          daily.error === undefined ? <Loading what="daily usage" /> : null
        ) : (
          <div className="charts">
            <BarChart title="Credits used per day" unit="credits" data={rows.map((r) => ({ label: r.date, value: Number(r.credits_debited) }))} testId="credits-chart" />
            <BarChart title="GPU-seconds per day" unit="GPU-seconds" data={rows.map((r) => ({ label: r.date, value: Number(r.gpu_seconds) }))} testId="gpu-chart" />
          </div>
        )}
      </section>

      <section aria-labelledby="export-title">
        <h2 id="export-title">Export as CSV</h2>
        <form className="form inline" onSubmit={submit}>
          <div className="field">
            <label htmlFor="export-from">From</label>
            <input id="export-from" type="date" required value={from} onChange={(e) => setFrom(e.target.value)} />
          </div>
          <div className="field">
            <label htmlFor="export-to">To</label>
            <input id="export-to" type="date" required value={to} onChange={(e) => setTo(e.target.value)} />
          </div>
          <div className="buttons">
            <button type="submit" disabled={exportCsv.busy}>
              Download usage CSV
            </button>
            <button type="button" disabled={exportCsv.busy} onClick={() => void exportCsv.run("statement")}>
              Download credit statement CSV
            </button>
          </div>
        </form>
        <p className="hint">At most 90 days per file; days are UTC.</p>
        <ErrorBox error={exportCsv.error} />
      </section>

      <section aria-labelledby="ledger-title">
        <h2 id="ledger-title">Credit ledger</h2>
        <ListBody state={ledger} what="the ledger" empty="No credit movements yet.">
          {(rows) => (
            <div className="table-scroll">
              <table className="stack-on-phone">
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">What</th>
                    <th scope="col">Job</th>
                    <th scope="col" className="num">
                      Credits
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((e) => (
                    <tr key={e.id}>
                      <td data-label="When">{formatDate(e.created_at)}</td>
                      <td data-label="What">{e.description || e.kind}</td>
                      <td data-label="Job">{e.job_id === "" ? "—" : <Link to={`/jobs/${e.job_id}`}>{e.job_id.slice(0, 8)}</Link>}</td>
                      <td className="num" data-label="Credits">
                        {Number(e.amount) > 0 ? `+${formatNumber(e.amount)}` : formatNumber(e.amount)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </ListBody>
        <Pager {...pagerProps} />
      </section>
    </Page>
  );
}
