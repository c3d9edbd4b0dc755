#!/usr/bin/env node
/**
 * gpuctl: the GPU-Agent command line. Everything lives in src/cli/; this file
 * only hands it the real process (env, streams, clock) and sets the exit code.
 */
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { runCli } from "../src/cli/program.ts";
import { createProcessIo } from "../src/cli/output.ts";
import { systemClock } from "../src/platform/clock.ts";

// exitCode (not process.exit) lets stdout drain when it is a pipe.
process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  io: createProcessIo(),
  clock: systemClock,
  randomUUID,
  tmpDir: tmpdir(),
});
