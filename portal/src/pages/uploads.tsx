/** Datasets and training packages: upload with a progress bar, finalize, list, delete. */
import type { FormEvent } from "react";
import { useRef, useState } from "react";
import { api, query } from "../api/client.ts";
import type { Upload } from "../api/types.ts";
import type { UploadKind, UploadPhase } from "../api/upload.ts";
import { finalizeUpload, uploadFile } from "../api/upload.ts";
import { ErrorBox, ListBody, Page, Pager, ProgressBar, StatusBadge } from "../components/ui.tsx";
import { formatBytes, formatDate, formatPercent } from "../format.ts";
import { useAction, usePagedList } from "../hooks.ts";

const copy = {
  datasets: {
    title: "Datasets",
    one: "dataset",
    lead: "Upload the data your training reads (for example a CSV file). The file is checked (size and SHA-256) before it can be used.",
    accept: undefined,
  },
  "training-packages": {
    title: "Training packages",
    one: "training package",
    lead: "Upload your training code as a .zip with a Python entry point (default train.py), optionally with a gpu-agent.json manifest of stages.",
    accept: ".zip,application/zip",
  },
} as const;

const phaseWords: Record<UploadPhase, string> = {
  hashing: "Checking the file (SHA-256)",
  creating: "Preparing the upload",
  uploading: "Uploading",
  finalizing: "Verifying on the server",
  done: "Done",
};

/** The datasets or training packages page. */
export function UploadsPage({ kind }: { kind: UploadKind }) {
  const text = copy[kind];
  const { list, pager, pagerProps } = usePagedList<Upload>((cursor) => `/api/v1/customer/${kind}${query({ limit: 20, cursor })}`, [kind]);
  const fileInput = useRef<HTMLInputElement>(null);
  const [file, setFile] = useState<File | undefined>(undefined);
  const [name, setName] = useState("");
  const [extra, setExtra] = useState(kind === "training-packages" ? "train.py" : "");
  const [progress, setProgress] = useState<{ phase: UploadPhase; fraction: number; loaded: number; total: number } | undefined>(undefined);
  const [done, setDone] = useState<Upload | undefined>(undefined);
  const abort = useRef<AbortController | undefined>(undefined);

  const upload = useAction(async () => {
    if (file === undefined) return;
    setDone(undefined);
    abort.current = new AbortController();
    const fields = kind === "datasets" ? { name: name.trim() || file.name, format: extra.trim() } : { name: name.trim() || file.name.replace(/\.zip$/i, ""), entrypoint: extra.trim() };
    try {
      const result = await uploadFile(kind, file, fields, (phase, fraction, loaded, total) => setProgress({ phase, fraction, loaded, total }), abort.current.signal);
      setDone(result);
      setFile(undefined);
      setName("");
      if (fileInput.current !== null) fileInput.current.value = "";
      pager.reset();
      await list.reload();
    } catch (error) {
      setProgress(undefined);
      if ((error as { name?: string }).name === "AbortError") return;
      // Whatever was created stays listed (awaiting upload) so it can be retried or deleted.
      void list.reload();
      throw error;
    }
  });
  const finalize = useAction(async (row: Upload) => {
    await finalizeUpload(kind, row.id);
    await list.reload();
  });
  const remove = useAction(async (row: Upload) => {
    if (!window.confirm(`Delete the ${text.one} "${row.name}"? Jobs that already use it keep running.`)) return;
    await api("DELETE", `/api/v1/customer/${kind}/${encodeURIComponent(row.id)}`);
    await list.reload();
  });

  const onPick = (f: File | undefined) => {
    setFile(f);
    setProgress(undefined);
    if (kind === "datasets" && f !== undefined && extra === "") setExtra(f.name.includes(".") ? (f.name.split(".").pop() ?? "") : "");
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void upload.run();
  };
  // Hashing and uploading each count for half of the bar; creating and finalizing are quick steps.
  const overall =
    progress === undefined ? 0 : progress.phase === "hashing" ? progress.fraction * 0.3 : progress.phase === "creating" ? 0.3 : progress.phase === "uploading" ? 0.3 + progress.fraction * 0.65 : progress.phase === "finalizing" ? 0.95 : 1;

  return (
    <Page title={text.title}>
      <p className="lead">{text.lead}</p>
      <section aria-labelledby="upload-title">
        <h2 id="upload-title">Upload a {text.one}</h2>
        <form className="form" onSubmit={submit}>
          <div className="field">
            <label htmlFor="upload-file">File</label>
            <input id="upload-file" ref={fileInput} type="file" required {...(text.accept === undefined ? {} : { accept: text.accept })} onChange={(e) => onPick(e.target.files?.[0])} />
          </div>
          <div className="field">
            <label htmlFor="upload-name">Name</label>
            <input id="upload-name" value={name} maxLength={200} onChange={(e) => setName(e.target.value)} placeholder={file?.name ?? `the file's name`} />
          </div>
          {kind === "datasets" ? (
            <div className="field">
              <label htmlFor="upload-format">Format</label>
              <input id="upload-format" value={extra} maxLength={32} onChange={(e) => setExtra(e.target.value)} placeholder="csv, jsonl, zip…" aria-describedby="upload-format-hint" />
              <span className="hint" id="upload-format-hint">
                Optional, for your own records.
              </span>
            </div>
          ) : (
            <div className="field">
              <label htmlFor="upload-entrypoint">Entry point</label>
              <input id="upload-entrypoint" value={extra} maxLength={200} onChange={(e) => setExtra(e.target.value)} aria-describedby="upload-entrypoint-hint" />
              <span className="hint" id="upload-entrypoint-hint">
                The Python file inside the zip that runs each stage.
              </span>
            </div>
          )}
          {progress === undefined ? null : (
            <div className="upload-progress">
              <ProgressBar label="Upload progress" value={overall} text={`${phaseWords[progress.phase]}${progress.phase === "hashing" || progress.phase === "uploading" ? ` ${formatPercent(progress.fraction)}` : ""}`} testId="upload-progress" />
              {progress.phase === "uploading" ? (
                <p className="hint">
                  {formatBytes(progress.loaded)} of {formatBytes(progress.total)}
                </p>
              ) : null}
            </div>
          )}
          <ErrorBox error={upload.error} />
          <div className="buttons">
            <button type="submit" className="primary" disabled={upload.busy || file === undefined}>
              {upload.busy ? "Uploading…" : "Upload"}
            </button>
            {upload.busy ? (
              <button type="button" onClick={() => abort.current?.abort()}>
                Cancel upload
              </button>
            ) : null}
          </div>
          {done === undefined ? null : (
            <p className="success" role="status">
              “{done.name}” is uploaded and verified ({formatBytes(done.size_bytes)}).
            </p>
          )}
        </form>
      </section>
      <section aria-labelledby="list-title">
        <h2 id="list-title">Your {text.title.toLowerCase()}</h2>
        <ErrorBox error={finalize.error} />
        <ErrorBox error={remove.error} />
        <ListBody state={list} what={text.title.toLowerCase()} empty="Nothing uploaded yet.">
          {(rows) => (
            <div className="table-scroll">
              <table data-testid={`${kind}-table`} className="stack-on-phone">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">State</th>
                    <th scope="col">Size</th>
                    <th scope="col">{kind === "datasets" ? "Format" : "Entry point · stages"}</th>
                    <th scope="col">SHA-256</th>
                    <th scope="col">Created</th>
                    <th scope="col">ID</th>
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((row) => (
                    <tr key={row.id}>
                      <th scope="row">{row.name}</th>
                      <td data-label="State">
                        <StatusBadge status={row.status} />
                      </td>
                      <td className="num" data-label="Size">
                        {formatBytes(row.size_bytes)}
                      </td>
                      <td data-label={kind === "datasets" ? "Format" : "Entry point"}>{kind === "datasets" ? row.format || "—" : `${row.entrypoint ?? ""}${row.stages !== undefined && row.stages.length > 0 ? ` · ${row.stages.join(" → ")}` : ""}`}</td>
                      <td data-label="SHA-256">
                        <code title={row.sha256}>{row.sha256.slice(0, 12)}…</code>
                      </td>
                      <td data-label="Created">{formatDate(row.created_at)}</td>
                      <td data-label="ID">
                        <code className="id">{row.id}</code>
                      </td>
                      <td className="actions">
                        {row.status === "awaiting_upload" ? (
                          <button type="button" disabled={finalize.busy} onClick={() => void finalize.run(row)} aria-label={`Finalize ${row.name}`}>
                            Finalize
                          </button>
                        ) : null}
                        <button type="button" className="danger" disabled={remove.busy} onClick={() => void remove.run(row)} aria-label={`Delete ${row.name}`}>
                          Delete
                        </button>
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
