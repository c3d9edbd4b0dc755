/**
 * The create form with seed 001's fields and the GPU ones (count, models, minimums, queue timeout); retries
 * are safe through an Idempotency-Key per form. The GPU fields are checked here against the API's rules
 * first, each message beside its field; what only the server can tell (VALIDATION_FAILED with
 * `details.field`) is put beside the field it names as well.
 */
import type { FormEvent } from "react";
import { useState } from "react";
import { api, PortalApiError, randomHex } from "../api/client.ts";
import type { List, TrainingJob, Upload } from "../api/types.ts";
import { sensitivities } from "../api/types.ts";
import { ErrorBox, Loading, Page } from "../components/ui.tsx";
import { formatBytes, formatNumber } from "../format.ts";
import { useAction, useLoad } from "../hooks.ts";
import { Link, useRouter } from "../router.tsx";

const sensitivityWords: Record<(typeof sensitivities)[number], string> = {
  public: "Public — may run on any node",
  low_sensitive: "Low sensitivity — verified or controlled nodes only",
  high_sensitive: "High sensitivity — controlled nodes only",
};

/** The API's bounds of the GPU fields (customer.proto, CreateTrainingJobRequest). */
const maxGpus = 8;
const maxGpuModels = 16;
const maxGpuModelLength = 100;
const queueTimeoutBounds = { min: 60, max: 2_592_000, default: 86_400 } as const;
const majorMinor = /^\d{1,4}\.\d{1,4}$/;

interface JobForm {
  name: string;
  dataset_id: string;
  training_package_id: string;
  required_vram_mb: string;
  required_disk_mb: string;
  max_runtime_seconds: string;
  sensitivity: string;
  required_gpu_count: string;
  gpu_models: string;
  min_compute_capability: string;
  min_cuda_version: string;
  queue_timeout_seconds: string;
}

type GpuField = "required_gpu_count" | "gpu_models" | "min_compute_capability" | "min_cuda_version" | "queue_timeout_seconds";

/** The models as the API takes them: the comma-separated names, trimmed, empty ones left out. */
function gpuModelList(text: string): string[] {
  return text
    .split(",")
    .map((m) => m.trim())
    .filter((m) => m !== "");
}

/** What is wrong with the GPU fields, by field; empty when nothing is. */
function gpuFieldProblems(form: JobForm): Partial<Record<GpuField, string>> {
  const problems: Partial<Record<GpuField, string>> = {};
  const gpus = Number(form.required_gpu_count);
  if (!Number.isInteger(gpus) || gpus < 1 || gpus > maxGpus) problems.required_gpu_count = `Ask for 1 to ${maxGpus} GPUs (all on one machine).`;
  const models = gpuModelList(form.gpu_models);
  if (models.length > maxGpuModels) problems.gpu_models = `Name at most ${maxGpuModels} models.`;
  else if (models.some((m) => m.length > maxGpuModelLength)) problems.gpu_models = `A model name has at most ${maxGpuModelLength} characters.`;
  for (const field of ["min_compute_capability", "min_cuda_version"] as const) {
    const value = form[field].trim();
    if (value !== "" && !majorMinor.test(value)) problems[field] = `Write it as major.minor, e.g. ${field === "min_cuda_version" ? "12.1" : "8.0"}, or leave it empty for any.`;
  }
  const timeout = form.queue_timeout_seconds.trim();
  if (timeout !== "") {
    const seconds = Number(timeout);
    if (!Number.isInteger(seconds) || seconds < queueTimeoutBounds.min || seconds > queueTimeoutBounds.max) {
      problems.queue_timeout_seconds = `Between ${queueTimeoutBounds.min} seconds and ${formatNumber(queueTimeoutBounds.max)} (30 days), or empty for one day.`;
    }
  }
  return problems;
}

/** The server's word on one field (VALIDATION_FAILED names it in `details.field`), or undefined. */
function serverProblem(error: unknown, field: GpuField): string | undefined {
  if (!(error instanceof PortalApiError) || error.code !== "VALIDATION_FAILED" || error.details["field"] !== field) return undefined;
  return error.message;
}

/** Ready datasets or packages (the first 100), for the pickers. */
async function ready(kind: "datasets" | "training-packages", signal: AbortSignal): Promise<Upload[]> {
  const list = await api<List<Upload>>("GET", `/api/v1/customer/${kind}?limit=100`, { signal });
  return list.data.filter((u) => u.status === "ready");
}

/** The new-job page. */
export function NewJobPage() {
  const { navigate } = useRouter();
  const choices = useLoad(async (signal) => ({ datasets: await ready("datasets", signal), packages: await ready("training-packages", signal) }), []);
  const [form, setForm] = useState<JobForm>({
    name: "",
    dataset_id: "",
    training_package_id: "",
    required_vram_mb: "8000",
    required_disk_mb: "1024",
    max_runtime_seconds: "600",
    sensitivity: "low_sensitive",
    required_gpu_count: "1",
    gpu_models: "",
    min_compute_capability: "",
    min_cuda_version: "",
    queue_timeout_seconds: "",
  });
  // Shown once the customer tried to submit, then kept up to date as they type.
  const [checked, setChecked] = useState(false);
  // One key per filled-in form: a double click or a retry after a lost answer cannot create two jobs.
  const [idempotencyKey] = useState(() => `portal-${randomHex(16)}`);
  const set = (field: keyof JobForm) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [field]: e.target.value }));
  const problems = checked ? gpuFieldProblems(form) : {};
  const create = useAction(async () => {
    const datasetId = form.dataset_id || choices.data?.datasets[0]?.id || "";
    const packageId = form.training_package_id || choices.data?.packages[0]?.id || "";
    const job = await api<TrainingJob>("POST", "/api/v1/customer/training-jobs", {
      headers: { "idempotency-key": idempotencyKey },
      body: {
        name: form.name.trim(),
        dataset_id: datasetId,
        training_package_id: packageId,
        required_vram_mb: Number(form.required_vram_mb),
        required_disk_mb: Number(form.required_disk_mb),
        max_runtime_seconds: Number(form.max_runtime_seconds),
        sensitivity: form.sensitivity,
        required_gpu_count: Number(form.required_gpu_count),
        gpu_models: gpuModelList(form.gpu_models),
        min_compute_capability: form.min_compute_capability.trim(),
        min_cuda_version: form.min_cuda_version.trim(),
        // Empty: the server's default (one day).
        queue_timeout_seconds: form.queue_timeout_seconds.trim() === "" ? 0 : Number(form.queue_timeout_seconds),
      },
    });
    navigate(`/jobs/${job.id}`);
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setChecked(true);
    if (Object.keys(gpuFieldProblems(form)).length > 0) return;
    void create.run();
  };
  /** The message beside a GPU field: the form's own check, else the server's. */
  const problemOf = (field: GpuField): string | undefined => problems[field] ?? serverProblem(create.error, field);
  /** A GPU field's input attributes that tie it to its hint and its message. */
  const described = (field: GpuField, id: string) => {
    const problem = problemOf(field);
    return { "aria-invalid": problem !== undefined, "aria-describedby": problem === undefined ? `${id}-hint` : `${id}-hint ${id}-error` };
  };
  const fieldError = (field: GpuField, id: string) => {
    const problem = problemOf(field);
    return problem === undefined ? null : (
      <span className="field-error" id={`${id}-error`}>
        {problem}
      </span>
    );
  };

  if (choices.data === undefined) {
    return (
      <Page title="New training job">
        <ErrorBox error={choices.error} />
        {choices.error === undefined ? <Loading what="your datasets and packages" /> : null}
      </Page>
    );
  }
  const { datasets, packages } = choices.data;
  return (
    <Page title="New training job">
      {datasets.length === 0 || packages.length === 0 ? (
        <p className="notice">
          A job needs a ready dataset and a ready training package.{" "}
          {datasets.length === 0 ? <Link to="/datasets">Upload a dataset</Link> : null}
          {datasets.length === 0 && packages.length === 0 ? " and " : null}
          {packages.length === 0 ? <Link to="/packages">{datasets.length === 0 ? "upload a training package" : "Upload a training package"}</Link> : null} first.
        </p>
      ) : null}
      <form className="form" onSubmit={submit}>
        <div className="field">
          <label htmlFor="job-name">Name</label>
          <input id="job-name" required maxLength={200} value={form.name} onChange={set("name")} placeholder="tiny-mlp-fine-tune" />
        </div>
        <div className="field">
          <label htmlFor="job-dataset">Dataset</label>
          <select id="job-dataset" required value={form.dataset_id || datasets[0]?.id || ""} onChange={set("dataset_id")}>
            {datasets.map((d) => (
              <option key={d.id} value={d.id}>
                {d.name} ({formatBytes(d.size_bytes)})
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="job-package">Training package</label>
          <select id="job-package" required value={form.training_package_id || packages[0]?.id || ""} onChange={set("training_package_id")}>
            {packages.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
                {p.stages !== undefined && p.stages.length > 0 ? ` (${p.stages.join(" → ")})` : ""}
              </option>
            ))}
          </select>
        </div>
        <div className="field-row">
          <div className="field">
            <label htmlFor="job-vram">GPU memory (MB)</label>
            <input id="job-vram" type="number" inputMode="numeric" min={0} step={1} required value={form.required_vram_mb} onChange={set("required_vram_mb")} aria-describedby="job-vram-hint" />
            <span className="hint" id="job-vram-hint">
              required_vram_mb: VRAM the training stage needs on one GPU.
            </span>
          </div>
          <div className="field">
            <label htmlFor="job-disk">Disk (MB)</label>
            <input id="job-disk" type="number" inputMode="numeric" min={0} step={1} required value={form.required_disk_mb} onChange={set("required_disk_mb")} aria-describedby="job-disk-hint" />
            <span className="hint" id="job-disk-hint">
              required_disk_mb: free disk each stage needs.
            </span>
          </div>
          <div className="field">
            <label htmlFor="job-runtime">Maximum run time (s)</label>
            <input id="job-runtime" type="number" inputMode="numeric" min={1} step={1} required value={form.max_runtime_seconds} onChange={set("max_runtime_seconds")} aria-describedby="job-runtime-hint" />
            <span className="hint" id="job-runtime-hint">
              max_runtime_seconds: the job expires after this; it also bounds the projected cost.
            </span>
          </div>
        </div>
        <fieldset>
          <legend>GPUs</legend>
          <div className="field-row">
            <div className="field">
              <label htmlFor="job-gpus">GPUs per unit</label>
              <input id="job-gpus" type="number" inputMode="numeric" step={1} required value={form.required_gpu_count} onChange={set("required_gpu_count")} {...described("required_gpu_count", "job-gpus")} />
              <span className="hint" id="job-gpus-hint">
                required_gpu_count: GPUs of one machine, each with the GPU memory above free; billed per GPU.
              </span>
              {fieldError("required_gpu_count", "job-gpus")}
            </div>
            <div className="field">
              <label htmlFor="job-gpu-models">GPU models</label>
              <input id="job-gpu-models" value={form.gpu_models} onChange={set("gpu_models")} placeholder="any, or e.g. RTX 4090, A100" {...described("gpu_models", "job-gpu-models")} />
              <span className="hint" id="job-gpu-models-hint">
                gpu_models: comma-separated; a machine's GPU qualifies when its name contains one of them.
              </span>
              {fieldError("gpu_models", "job-gpu-models")}
            </div>
          </div>
          <div className="field-row">
            <div className="field">
              <label htmlFor="job-min-cc">Minimum compute capability</label>
              <input id="job-min-cc" inputMode="decimal" value={form.min_compute_capability} onChange={set("min_compute_capability")} placeholder="any, or e.g. 8.0" {...described("min_compute_capability", "job-min-cc")} />
              <span className="hint" id="job-min-cc-hint">
                min_compute_capability: e.g. 8.0 for bf16.
              </span>
              {fieldError("min_compute_capability", "job-min-cc")}
            </div>
            <div className="field">
              <label htmlFor="job-min-cuda">Minimum CUDA version</label>
              <input id="job-min-cuda" inputMode="decimal" value={form.min_cuda_version} onChange={set("min_cuda_version")} placeholder="any, or e.g. 12.1" {...described("min_cuda_version", "job-min-cuda")} />
              <span className="hint" id="job-min-cuda-hint">
                min_cuda_version: the newest CUDA the machine's driver supports must be at least this.
              </span>
              {fieldError("min_cuda_version", "job-min-cuda")}
            </div>
            <div className="field">
              <label htmlFor="job-queue-timeout">Queue timeout (s)</label>
              <input id="job-queue-timeout" type="number" inputMode="numeric" step={1} value={form.queue_timeout_seconds} onChange={set("queue_timeout_seconds")} placeholder={`${formatNumber(queueTimeoutBounds.default)} (one day)`} {...described("queue_timeout_seconds", "job-queue-timeout")} />
              <span className="hint" id="job-queue-timeout-hint">
                queue_timeout_seconds: a job still waiting for a machine after this ends expired, at no cost.
              </span>
              {fieldError("queue_timeout_seconds", "job-queue-timeout")}
            </div>
          </div>
        </fieldset>
        <fieldset>
          <legend>Sensitivity</legend>
          {sensitivities.map((s) => (
            <div className="check" key={s}>
              <input id={`sens-${s}`} type="radio" name="sensitivity" value={s} checked={form.sensitivity === s} onChange={set("sensitivity")} />
              <label htmlFor={`sens-${s}`}>{sensitivityWords[s]}</label>
            </div>
          ))}
        </fieldset>
        <ErrorBox error={create.error} />
        <button type="submit" className="primary" disabled={create.busy || datasets.length === 0 || packages.length === 0}>
          {create.busy ? "Creating…" : "Create training job"}
        </button>
      </form>
    </Page>
  );
}
