/** Training jobs: list with a status filter and paging; each job's GPU count, and while queued why it waits. */
import { query } from "../api/client.ts";
import type { TrainingJob } from "../api/types.ts";
import { jobStatuses } from "../api/types.ts";
import { ListBody, Page, Pager, ProgressBar, StatusBadge } from "../components/ui.tsx";
import { formatDate, humanize } from "../format.ts";
import { useInterval, usePagedList } from "../hooks.ts";
import { Link, useRouter } from "../router.tsx";

/** The jobs list page. */
export function JobsPage() {
  const { location, navigate } = useRouter();
  const status = location.search.get("status") ?? "";
  const { list: jobs, pager, pagerProps } = usePagedList<TrainingJob>((cursor) => `/api/v1/customer/training-jobs${query({ limit: 20, cursor, status })}`, [status]);
  const active = jobs.data?.data.some((j) => j.status === "queued" || j.status === "running") ?? false;
  useInterval(() => void jobs.reload(), 3000, active);

  return (
    <Page
      title="Training jobs"
      actions={
        <Link to="/jobs/new" className="button primary">
          New training job
        </Link>
      }
    >
      <div className="filters">
        <label htmlFor="status-filter">Status</label>
        <select
          id="status-filter"
          value={status}
          onChange={(e) => {
            pager.reset();
            navigate(`/jobs${query({ status: e.target.value })}`, { replace: true });
          }}
        >
          <option value="">All</option>
          {jobStatuses.map((s) => (
            <option key={s} value={s}>
              {humanize(s)}
            </option>
          ))}
        </select>
      </div>
      <ListBody
        state={jobs}
        what="training jobs"
        empty={
          status === "" ? (
            <>
              No training jobs yet. Upload a <Link to="/datasets">dataset</Link> and a <Link to="/packages">training package</Link>, then create one.
            </>
          ) : (
            `No ${humanize(status)} jobs.`
          )
        }
      >
        {(rows) => (
          <div className="table-scroll">
            <table data-testid="jobs-table" className="stack-on-phone">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Status</th>
                  <th scope="col">GPUs</th>
                  <th scope="col">Progress</th>
                  <th scope="col">Sensitivity</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((job) => (
                  <tr key={job.id}>
                    <th scope="row">
                      <Link to={`/jobs/${job.id}`}>{job.name || job.id}</Link>
                    </th>
                    <td data-label="Status">
                      <StatusBadge status={job.status} />
                      {job.status === "queued" && (job.pending_reason ?? "") !== "" ? (
                        <span className="pending-reason" data-testid="job-pending-reason">
                          Waiting: {job.pending_reason}
                        </span>
                      ) : null}
                    </td>
                    <td data-label="GPUs" data-testid="job-gpu-count">
                      {Math.max(1, job.required_gpu_count ?? 1)}
                    </td>
                    <td data-label="Progress">
                      <ProgressBar label={`Progress of ${job.name || job.id}`} value={job.progress} />
                    </td>
                    <td data-label="Sensitivity">{humanize(job.sensitivity)}</td>
                    <td data-label="Created">{formatDate(job.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </ListBody>
      <Pager {...pagerProps} />
    </Page>
  );
}
