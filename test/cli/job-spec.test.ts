/**
 * `gpuctl jobs create -f job.json|job.yaml`: the file is the REST request body; flags override
 * its fields; the command's defaults fill only what neither sets.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "../../src/cli/program.ts";
import { callsOf, captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl jobs create -f", () => {
  let api: FakeApi;
  let dir: string;
  beforeEach(async () => {
    api = await startFakeApi();
    dir = await mkdtemp(path.join(tmpdir(), "gpuctl-spec-"));
  });
  afterEach(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const create = async (file: string, text: string, ...flags: string[]) => {
    await writeFile(path.join(dir, file), text);
    const cap = captureIo();
    const code = await runCli(["jobs", "create", "-f", path.join(dir, file), "--idempotency-key", "spec-key-0001", ...flags], depsFor(api, cap));
    return { code, out: cap.out(), err: cap.err(), sent: callsOf(api, "CreateTrainingJob")[0]?.body };
  };

  const defaults = { required_disk_mb: 1024, max_runtime_seconds: 600, sensitivity: "public" };
  const cases: { name: string; file: string; text: string; flags?: string[]; sent: Record<string, unknown> }[] = [
    {
      name: "a JSON file with the REST names",
      file: "job.json",
      text: JSON.stringify({ name: "from-json", dataset_id: "ds_1", training_package_id: "pkg_1", required_vram_mb: 4000 }),
      sent: { name: "from-json", dataset_id: "ds_1", training_package_id: "pkg_1", required_vram_mb: 4000, ...defaults },
    },
    {
      name: "a YAML file, camelCase names and a seed 002 alias",
      file: "job.yaml",
      text: "name: from-yaml\ndatasetId: ds_2\ntrainingPackageId: pkg_2\nsensitivity: low_sensitive\nmax_runtime_minutes: 5\n",
      sent: { name: "from-yaml", dataset_id: "ds_2", training_package_id: "pkg_2", required_vram_mb: 8000, required_disk_mb: 1024, sensitivity: "low_sensitive", max_runtime_minutes: 5 },
    },
    {
      name: "flags over the file's fields",
      file: "job.yml",
      text: "name: from-file\ndataset_id: ds_3\ntraining_package_id: pkg_3\nrequired_vram_mb: 4000\n",
      flags: ["--name", "from-flag", "--vram-mb", "12000", "--dataset", "ds_flag"],
      sent: { name: "from-flag", dataset_id: "ds_flag", training_package_id: "pkg_3", required_vram_mb: 12000, ...defaults },
    },
    {
      name: "a file without a name: named from the idempotency key",
      file: "job.json",
      text: JSON.stringify({ dataset_id: "ds_4", training_package_id: "pkg_4" }),
      sent: { name: "job-spec-key", dataset_id: "ds_4", training_package_id: "pkg_4", required_vram_mb: 8000, ...defaults },
    },
    {
      name: "a file's GPU count, models, minimums and queue timeout",
      file: "job.yaml",
      text: "name: big\ndataset_id: ds_5\ntraining_package_id: pkg_5\nrequired_gpu_count: 4\ngpu_models: [A100, H100]\nmin_compute_capability: '8.0'\nmin_cuda_version: '12.1'\nqueue_timeout_seconds: 7200\n",
      sent: {
        name: "big", dataset_id: "ds_5", training_package_id: "pkg_5", required_vram_mb: 8000, ...defaults,
        required_gpu_count: 4, gpu_models: ["A100", "H100"], min_compute_capability: "8.0", min_cuda_version: "12.1", queue_timeout_seconds: 7200,
      },
    },
    {
      name: "GPU flags over the file's: --gpu-model replaces the file's list",
      file: "job.json",
      text: JSON.stringify({ dataset_id: "ds_6", training_package_id: "pkg_6", required_gpu_count: 4, gpu_models: ["A100"], min_cuda_version: "12.1", queue_timeout_seconds: 7200 }),
      flags: ["--gpus", "2", "--gpu-model", "RTX 4090", "--gpu-model", "L40", "--queue-timeout", "30m"],
      sent: {
        name: "job-spec-key", dataset_id: "ds_6", training_package_id: "pkg_6", required_vram_mb: 8000, ...defaults,
        required_gpu_count: 2, gpu_models: ["RTX 4090", "L40"], min_cuda_version: "12.1", queue_timeout_seconds: 1800,
      },
    },
  ];
  for (const tc of cases) {
    it(`sends ${tc.name}`, async () => {
      const r = await create(tc.file, tc.text, ...(tc.flags ?? []));
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(r.sent, tc.sent);
    });
  }

  const refusals: { name: string; file: string; text: string; err: RegExp }[] = [
    { name: "an unknown field", file: "job.yaml", text: "dataset_id: d\ntraining_package_id: p\nvram: 8000\n", err: /--file .*job\.yaml: .*vram.*\(code JOB_FILE_INVALID\)/ },
    { name: "a value of the wrong type", file: "job.json", text: '{"dataset_id": "d", "training_package_id": "p", "required_vram_mb": "lots"}', err: /required_vram_mb.*\(code JOB_FILE_INVALID\)/ },
    { name: "a list instead of an object", file: "job.yaml", text: "- dataset_id: d\n", err: /must hold one object.*\(code JOB_FILE_INVALID\)/ },
    { name: "broken JSON", file: "job.json", text: "{", err: /is not valid JSON.*\(code JOB_FILE_INVALID\)/ },
    { name: "no dataset in file or flags", file: "job.yaml", text: "training_package_id: p\n", err: /required option '--dataset <id>' not specified \(nor dataset_id in .*job\.yaml\)/ },
  ];
  for (const tc of refusals) {
    it(`refuses ${tc.name} before sending anything`, async () => {
      const r = await create(tc.file, tc.text);
      assert.equal(r.code, 2);
      assert.match(r.err, tc.err);
      assert.equal(api.calls.length, 0);
    });
  }
});
