/**
 * `npm run image:smoke`: runs the images `npm run image` built, with podman, and follows the README's flow
 * through them: the control plane's /healthz, a node agent (the agent image) enrolling, the example job
 * (examples/tiny-mlp) running on it to `completed`, its artifacts listed. The client side is this checkout's
 * SDK on the host.
 *
 * The control plane runs as the Helm chart runs it: its own non-root user, a read-only root filesystem,
 * every capability dropped, /tmp on tmpfs and its data and blob directories on volumes of their own. Both containers use the host's network
 * (no CNI or netavark set-up needed), the control plane on a free loopback port. The agent's unit sandbox
 * (bubblewrap) mounts a /proc of its own, which the kernel refuses while the container's /proc has masked
 * paths; hence `--security-opt unmask=/proc/*` on the agent (docker: `--security-opt systempaths=unconfined`),
 * and it names each unit's host, which podman's default seccomp profile allows only with CAP_SYS_ADMIN; hence
 * that profile with sethostname allowed (agentSeccompProfile).
 *
 * Where podman's defaults cannot start a container (cgroup v1 in hybrid mode, which crun refuses; default
 * ulimits above the hard limits without CAP_SYS_RESOURCE), it retries once with runc, cgroupfs and no default
 * ulimits (a containers.conf of its own through CONTAINERS_CONF) and says so.
 *
 * Prints one JSON line. Exits non-zero when a check fails, after printing both containers' logs.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { zipDirectory } from "../src/cli/files.ts";
import { createGpuAgentAdminClient, createGpuAgentClient } from "../src/sdk/index.ts";
import { waitFor } from "../test/support/control-plane.ts";
import { applicationImages, packageVersion } from "./image.ts";

const root = resolve(import.meta.dirname, "..");
const images = applicationImages(packageVersion());
const work = mkdtempSync(join(tmpdir(), "gpu-agent-image-smoke-"));
const suffix = randomBytes(4).toString("hex");
const names = { controlPlane: `gpu-agent-smoke-cp-${suffix}`, agent: `gpu-agent-smoke-agent-${suffix}`, volume: `gpu-agent-smoke-node-${suffix}` };

function podman(args: string[]): string {
  return execFileSync("podman", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** Runs `podman run --rm IMAGE node --version`; the error text when it fails. */
function tryStart(image: string): string | undefined {
  const r = spawnSync("podman", ["run", "--rm", "--network", "none", image, "node", "--version"], { encoding: "utf8" });
  return r.status === 0 ? undefined : (r.stderr || r.stdout || `exit ${r.status}`).trim();
}

/** Makes podman able to start containers here, changing as little as needed; says what it changed. */
function podmanSetUp(): string {
  const plain = tryStart(images.controlPlane);
  if (plain === undefined) return "podman defaults";
  const conf = join(work, "containers.conf");
  writeFileSync(conf, '[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n');
  process.env["CONTAINERS_CONF"] = conf;
  const compat = tryStart(images.controlPlane);
  if (compat !== undefined) throw new Error(`podman cannot start ${images.controlPlane}:\n  with its defaults: ${plain}\n  with runc, cgroupfs, no default ulimits: ${compat}`);
  return `runc, cgroupfs, no default ulimits (podman's defaults failed: ${plain})`;
}

/**
 * podman's default seccomp profile with sethostname allowed: the unit sandbox gives each unit its own UTS
 * namespace and host name, and the default profile allows sethostname only with CAP_SYS_ADMIN, even inside a
 * user namespace of the container's own. Undefined (podman's default then applies) when the profile is absent.
 */
function agentSeccompProfile(): string | undefined {
  const source = "/usr/share/containers/seccomp.json";
  if (!existsSync(source)) return undefined;
  const profile = JSON.parse(readFileSync(source, "utf8")) as { syscalls: Array<{ names: string[]; action: string }> };
  const allowed = ["sethostname"];
  profile.syscalls = profile.syscalls
    .map((rule) => (rule.action === "SCMP_ACT_ALLOW" ? rule : { ...rule, names: rule.names.filter((name) => !allowed.includes(name)) }))
    .filter((rule) => rule.names.length > 0);
  profile.syscalls.push({ names: allowed, action: "SCMP_ACT_ALLOW" });
  const file = join(work, "agent-seccomp.json");
  writeFileSync(file, JSON.stringify(profile));
  return file;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolvePort(address.port) : reject(new Error("no port"))));
    });
  });
}

async function healthy(url: string): Promise<true | undefined> {
  try {
    return (await fetch(`${url}/healthz`)).status === 200 ? true : undefined;
  } catch {
    return undefined;
  }
}

function logsOf(name: string): string {
  const r = spawnSync("podman", ["logs", "--tail", "40", name], { encoding: "utf8" });
  return `--- ${name} ---\n${r.stdout}${r.stderr}`;
}

let ok = false;
try {
  const podmanMode = podmanSetUp();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const adminToken = randomBytes(24).toString("base64url");
  const started = performance.now();
  // As the chart runs it (templates/deployment.yaml): UID 1000, read-only root, no capabilities, writable scratch.
  podman([
    "run", "-d", "--name", names.controlPlane, "--network", "host",
    "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    // Anonymous volumes start as a copy of the image's directories (owner 1000, 0700/0750), as emptyDirs would.
    "--tmpfs", "/tmp", "-v", "/var/lib/gpu-agent/data", "-v", "/var/lib/gpu-agent/blobs",
    "-e", "HOST=127.0.0.1", "-e", `PORT=${port}`, "-e", `GPU_AGENT_PUBLIC_URL=${url}`, "-e", `GPU_AGENT_ADMIN_TOKEN=${adminToken}`,
    images.controlPlane,
  ]);
  await waitFor("the control plane's /healthz", () => healthy(url), 120_000, () => logsOf(names.controlPlane));
  const healthySeconds = (performance.now() - started) / 1000;

  const admin = createGpuAgentAdminClient({ baseUrl: url, adminToken });
  const { token } = await admin.enrollmentTokens.create({ trustLevel: "controlled", ttlSeconds: 600 });
  podman(["volume", "create", names.volume]);
  const seccomp = agentSeccompProfile();
  const agentArgs = ["--network", "host", "-v", `${names.volume}:/var/lib/gpu-agent`, "--security-opt", "unmask=/proc/*"];
  if (seccomp !== undefined) agentArgs.push("--security-opt", `seccomp=${seccomp}`);
  const enrolled = JSON.parse(
    podman(["run", "--rm", ...agentArgs, images.agent, "enroll", "--url", url, "--token", token, "--data-dir", "/var/lib/gpu-agent", "--dev-gpu", "24576"]),
  ) as { node_id: string; trust_level: string };
  podman(["run", "-d", "--name", names.agent, ...agentArgs, images.agent, "run", "--data-dir", "/var/lib/gpu-agent", "--dev-gpu", "24576"]);
  const node = await waitFor(
    "the agent's node online",
    async () => (await admin.nodes.list({ limit: 100 })).data.find((n) => n.id === enrolled.node_id && n.state === "online"),
    60_000,
    () => logsOf(names.agent),
  );

  const { apiKey } = await admin.customers.create({ email: `smoke-${suffix}@example.com`, password: "change-me-please", credits: 1000n });
  const client = createGpuAgentClient({ baseUrl: url, apiKey });
  const dataset = await client.datasets.upload(join(root, "examples", "tiny-mlp", "dataset.csv"), { name: "tiny-mlp data", format: "csv" });
  const zip = join(work, "package.zip");
  await zipDirectory(join(root, "examples", "tiny-mlp", "package"), zip);
  const pkg = await client.packages.upload(zip, { name: "tiny-mlp", entrypoint: "train.py" });
  const jobStarted = performance.now();
  const job = await client.jobs.create({ name: "image smoke", datasetId: dataset.id, trainingPackageId: pkg.id, requiredVramMb: 8000, maxRuntimeSeconds: 600, sensitivity: "low_sensitive" });
  const final = await client.jobs.wait(job.id, { intervalMs: 500, timeoutMs: 180_000 });
  const jobSeconds = (performance.now() - jobStarted) / 1000;
  const artifacts = (await client.artifacts.list(job.id)).data.map((a) => a.name);
  const result = {
    control_plane_image: images.controlPlane,
    agent_image: images.agent,
    podman: podmanMode,
    healthz_after_s: Math.round(healthySeconds * 10) / 10,
    node: { id: enrolled.node_id, trust_level: enrolled.trust_level, isolation: node.isolation, isolation_reason: node.isolationReason },
    job: { id: job.id, status: final.status, seconds: Math.round(jobSeconds * 10) / 10, artifacts },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (final.status !== "completed") throw new Error(`the example job ended ${final.status}: ${final.error}`);
  if (artifacts.length === 0) throw new Error("the example job completed without artifacts");
  ok = true;
} catch (err) {
  process.stderr.write(`image smoke test failed: ${err instanceof Error ? err.message : String(err)}\n`);
  for (const name of [names.controlPlane, names.agent]) process.stderr.write(`${logsOf(name)}\n`);
} finally {
  spawnSync("podman", ["rm", "-f", "-v", "-t", "5", names.agent, names.controlPlane], { stdio: "ignore" });
  spawnSync("podman", ["volume", "rm", "-f", names.volume], { stdio: "ignore" });
  rmSync(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
