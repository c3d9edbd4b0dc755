/** The limits, money and webhook tests' control plane (the shared test one) and example package. */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipDirectory } from "../../src/cli/files.ts";
import type { TestControlPlane, TestControlPlaneOptions } from "../support/control-plane.ts";
import { startTestControlPlane } from "../support/control-plane.ts";

/** Options of {@link startPlane}: those of the shared test control plane. */
export type PlaneOptions = TestControlPlaneOptions;

/** Starts a control plane on a free loopback port with the given options. */
export function startPlane(options: PlaneOptions = {}): Promise<TestControlPlane> {
  return startTestControlPlane(options);
}

/** The tiny-mlp example's training package as a zip. */
export async function examplePackageZip(): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "pkg-"));
  try {
    await zipDirectory(join(import.meta.dirname, "..", "..", "examples", "tiny-mlp", "package"), join(dir, "p.zip"));
    return await readFile(join(dir, "p.zip"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
