/**
 * Pure-Python wheels written by hand, so the environment tests resolve real requirements with real pip
 * against a local wheelhouse or a local index: no registry at test time, no setuptools. A wheel is a zip holding the module,
 * `<name>-<version>.dist-info/{METADATA,WHEEL,RECORD}` (PEP 427); RECORD carries each file's sha256 as pip
 * expects it (urlsafe base64, no padding).
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { zipOf } from "./helpers.ts";

/** One wheel: a distribution `name` (letters, digits, `_`) holding the module of the same name. */
export interface WheelSpec {
  name: string;
  version: string;
  /** `Requires-Dist` lines, e.g. `["alpha_util>=1"]`. */
  requires?: readonly string[];
  /** The module's `__init__.py`; default sets `VERSION`. */
  source?: string;
  /** Extra bytes in the module (a data file), to make the installed size predictable. */
  padBytes?: number;
  /** Console scripts: command name → `module:function` (pip writes them into the environment's bin/). */
  scripts?: Readonly<Record<string, string>>;
}

const wheelTime = new Date(Date.UTC(2026, 0, 1));

function recordHash(content: Buffer): string {
  return `sha256=${createHash("sha256").update(content).digest("base64url")}`;
}

/** The wheel's file name and bytes. */
export async function wheelOf(spec: WheelSpec): Promise<{ fileName: string; bytes: Buffer }> {
  const distInfo = `${spec.name}-${spec.version}.dist-info`;
  const files: Record<string, Buffer> = {
    [`${spec.name}/__init__.py`]: Buffer.from(spec.source ?? `VERSION = ${JSON.stringify(spec.version)}\n`),
    [`${distInfo}/METADATA`]: Buffer.from(
      ["Metadata-Version: 2.1", `Name: ${spec.name}`, `Version: ${spec.version}`, ...(spec.requires ?? []).map((r) => `Requires-Dist: ${r}`), ""].join("\n"),
    ),
    [`${distInfo}/WHEEL`]: Buffer.from("Wheel-Version: 1.0\nGenerator: gpu-agent-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
  };
  if (spec.padBytes !== undefined && spec.padBytes > 0) files[`${spec.name}/pad.bin`] = Buffer.alloc(spec.padBytes, 0x5a);
  if (spec.scripts !== undefined) {
    const lines = Object.entries(spec.scripts).map(([command, target]) => `${command} = ${target}`);
    files[`${distInfo}/entry_points.txt`] = Buffer.from(["[console_scripts]", ...lines, ""].join("\n"));
  }
  const record = Object.entries(files).map(([name, content]) => `${name},${recordHash(content)},${content.length}`);
  files[`${distInfo}/RECORD`] = Buffer.from([...record, `${distInfo}/RECORD,,`, ""].join("\n"));
  // A fixed time in the zip: the same spec gives the same bytes, so a hash taken of one build matches the
  // wheelhouse's copy written seconds earlier (a zip's times have 2 s steps).
  return { fileName: `${spec.name}-${spec.version}-py3-none-any.whl`, bytes: await zipOf(files, { mtime: wheelTime }) };
}

/** Writes each wheel into `dir` (the wheelhouse that `--find-links` names). */
export async function writeWheelhouse(dir: string, specs: readonly WheelSpec[]): Promise<void> {
  for (const spec of specs) {
    const { fileName, bytes } = await wheelOf(spec);
    await writeFile(path.join(dir, fileName), bytes);
  }
}

/** A PEP 503 "simple" package index on 127.0.0.1, port 0, serving the given wheels (what `--pip-index-url` names). */
export interface WheelIndex {
  /** The index's URL, `http://127.0.0.1:<port>/simple/`. */
  url: string;
  /** `http://127.0.0.1:<port>`. */
  origin: string;
  /** Paths requested so far. */
  requests: string[];
  close(): Promise<void>;
}

/** Options of startWheelIndex. */
export interface WheelIndexOptions {
  /**
   * The origin (`http://127.0.0.1:<port>`) the index's links send pip to for the files, instead of its
   * own: an index whose files live on another host, as PyPI's do.
   */
  filesAt?: string;
}

/** Starts the index; project names are normalized as pip asks for them (lower case, runs of `-_.` as `-`). */
export async function startWheelIndex(specs: readonly WheelSpec[], options: WheelIndexOptions = {}): Promise<WheelIndex> {
  const normalize = (name: string) => name.toLowerCase().replace(/[-_.]+/g, "-");
  const files = new Map<string, Buffer>();
  const projects = new Map<string, string[]>();
  for (const spec of specs) {
    const { fileName, bytes } = await wheelOf(spec);
    files.set(fileName, bytes);
    projects.set(normalize(spec.name), [...(projects.get(normalize(spec.name)) ?? []), fileName]);
  }
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push(url.pathname);
    const project = /^\/simple\/([^/]+)\/$/.exec(url.pathname)?.[1];
    if (project !== undefined) {
      const names = projects.get(normalize(decodeURIComponent(project)));
      if (names === undefined) return void res.writeHead(404).end();
      const links = names.map((n) => `<a href="${options.filesAt ?? ""}/files/${n}#sha256=${createHash("sha256").update(files.get(n) as Buffer).digest("hex")}">${n}</a>`);
      return void res.writeHead(200, { "content-type": "text/html" }).end(`<!DOCTYPE html><html><body>${links.join("\n")}</body></html>`);
    }
    const file = /^\/files\/([^/]+)$/.exec(url.pathname)?.[1];
    const bytes = file === undefined ? undefined : files.get(decodeURIComponent(file));
    if (bytes === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes.length }).end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
