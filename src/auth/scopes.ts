/** API key scopes. A key holds a subset; a session holds all of them. */
export const Scope = {
  datasetWrite: "dataset:write",
  trainingWrite: "training:write",
  artifactRead: "artifact:read",
  usageRead: "usage:read",
  webhookWrite: "webhook:write",
} as const;
export type Scope = (typeof Scope)[keyof typeof Scope];

/** Every scope, as granted to a customer's first key and to sessions. */
export const allScopes: readonly Scope[] = Object.values(Scope);

/** True when `value` names a scope. */
export function isScope(value: string): value is Scope {
  return (allScopes as readonly string[]).includes(value);
}
