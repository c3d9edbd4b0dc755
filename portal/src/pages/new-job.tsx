/** The create form with seed 001's fields; retries are safe through an Idempotency-Key per form. */
import type { FormEvent } from "react";
import { useState } from "react";
import { api, randomHex } from "../api/client.ts";
import type { List, TrainingJob, Upload } from "../api/types.ts";
import { sensitivities } from "../api/types.ts";
import { ErrorBox, Loading, Page } from "../components/ui.tsx";
import { formatBytes } from "../format.ts";
import { useAction, useLoad } from "../hooks.ts";
import { Link, useRouter } from "../router.tsx";

const sensitivityWords: Record<(typeof sensitivities)[number], string> = {
  public: "Public — may run on any node",
  low_sensitive: "Low sensitivity — verified or controlled nodes only",
  high_sensitive: "High sensitivity — controlled nodes only",
};

/** Ready datasets or packages (the first 100), for the pickers. */
async function ready(kind: "datasets" | "training-packages", signal: AbortSignal): Promise<Upload[]> {
  const list = await api<List<Upload>>("GET", `/api/v1/customer/${kind}?limit=100`, { signal });
  return list.data.filter((u) => u.status === "ready");
}

/** The new-job page. */
export function NewJobPage() {
  const { navigate } = useRouter();
  const choices = useLoad(async (signal) => ({ datasets: await ready("datasets", signal), packages: await ready("training-packages", signal) }), []);
  const [form, setForm] = useState({
    name: "",
    dataset_id: "",
    training_package_id: "",
    required_vram_mb: "8000",
    required_disk_mb: "1024",
    max_runtime_seconds: "600",
    sensitivity: "low_sensitive",
  });
  // One key per filled-in form: a double click or a retry after a lost answer cannot create two jobs.
  const [idempotencyKey] = useState(() => `portal-${randomHex(16)}`);
  const set = (field: keyof typeof form) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [field]: e.target.value }));
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
      },
    });
    navigate(`/jobs/${job.id}`);
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void create.run();
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
