/**
 * What this process inherited from its host that is the host's by nature, not configuration: the
 * node agent passes its own PATH on to units (src/node-agent/sandbox.ts `unitPath`). Configuration is
 * parsed from the environment in cmd/ and passed down; nothing else below cmd/ reads it.
 */

/** This process's PATH; undefined when unset. */
export function hostPath(): string | undefined {
  return process.env["PATH"];
}
