/**
 * The narrow logger the agent needs. pino's `Logger` satisfies it, and tests
 * pass `silentLogger` or a recording stub, so src/agent does not depend on pino.
 */
export interface AgentLogger {
  /** Verbose detail (reconnects, throttled messages). */
  debug(obj: object, msg?: string): void;
  /** Lifecycle events. */
  info(obj: object, msg?: string): void;
  /** Something is off but the agent carries on. */
  warn(obj: object, msg?: string): void;
  /** A unit or the session failed. */
  error(obj: object, msg?: string): void;
}

/** A logger that drops everything (tests). */
export const silentLogger: AgentLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
