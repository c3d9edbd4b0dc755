#!/usr/bin/env node
/**
 * gpuctl: the GPU-Agent command line. Everything lives in src/cli/; this file
 * only hands it the real process (env, streams, clock, home directory, version)
 * and sets the exit code.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { homedir, hostname, tmpdir } from "node:os";
import { runCli } from "../src/cli/program.ts";
import { createProcessIo } from "../src/cli/output.ts";
import { createProcessStdin } from "../src/cli/terminal.ts";
import { systemClock } from "../src/platform/clock.ts";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

// exitCode (not process.exit) lets stdout drain when it is a pipe.
process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  io: createProcessIo(),
  stdin: createProcessStdin(),
  clock: systemClock,
  randomUUID,
  tmpDir: tmpdir(),
  homeDir: homedir(),
  hostname: hostname(),
  version,
});
