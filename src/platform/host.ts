/**
 * What this process inherited from its host that is the host's by nature, not configuration: the
 * node agent passes its own PATH on to units (src/node-agent/sandbox.ts `unitPath`) and reads the owner's
 * availability window in the host's time zone. Configuration is
 * parsed from the environment in cmd/ and passed down; nothing else below cmd/ reads it.
 */

/** This process's PATH; undefined when unset. */
export function hostPath(): string | undefined {
  return process.env["PATH"];
}

/**
 * Minutes east of UTC that this host's wall clock shows at `utcMs` (its time zone, daylight saving
 * included): the owner's availability window (src/node-agent/availability-window.ts) is local time.
 */
export function hostUtcOffsetMinutes(utcMs: number): number {
  // getTimezoneOffset is minutes *west* of UTC; `|| 0` turns its -0 for UTC into 0.
  return -new Date(utcMs).getTimezoneOffset() || 0;
}
