/**
 * The failures gpuctl raises itself (a bad flag value, a missing file or credential, a watch that
 * ran out of time). Failures of the API come from the SDK as `GpuAgentError`s and are reported
 * as they are (src/cli/output.ts `reportError`).
 */

/** Exit status of a failure (API error, failed job, bad checksum, watch timeout). */
export const FAILURE_EXIT_CODE = 1;

/** Exit status of a usage error (unknown flag or value, missing file, missing credential). */
export const USAGE_EXIT_CODE = 2;

/** A failure gpuctl reports to the user: a stable code, a message and the process exit code. */
export class CliError extends Error {
  /** Machine-readable code, e.g. `API_KEY_MISSING` or `WATCH_TIMEOUT`. */
  readonly code: string;
  /** Exit status the process ends with. */
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { exitCode?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.code = code;
    this.exitCode = options?.exitCode ?? FAILURE_EXIT_CODE;
  }
}

/** A {@link CliError} that exits with {@link USAGE_EXIT_CODE}. */
export function usageError(code: string, message: string, cause?: unknown): CliError {
  return new CliError(code, message, { exitCode: USAGE_EXIT_CODE, cause });
}
