/** gpuctl as a real child process, its standard output handed over line by line as it comes. */
import { spawn } from "node:child_process";
import { join } from "node:path";

const gpuctl = join(import.meta.dirname, "..", "..", "cmd", "gpuctl.ts");

/** What a gpuctl process left when it exited. */
export interface GpuctlExit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `gpuctl ...args` with `env` over this process's environment; `onLine` gets each line of its standard output as it is written. */
export function runGpuctl(args: readonly string[], env: Record<string, string>, onLine: (line: string) => void): Promise<GpuctlExit> {
  const child = spawn(process.execPath, [gpuctl, ...args], { env: { ...process.env, ...env } });
  let stdout = "";
  let stderr = "";
  let pending = "";
  child.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
    pending += c.toString();
    for (let nl = pending.indexOf("\n"); nl !== -1; nl = pending.indexOf("\n")) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}
