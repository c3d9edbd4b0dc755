/**
 * Checks of the fields customers type, shared by the handlers that decode
 * requests and the domain services that take them (job creation), so both
 * refuse the same input with the same words.
 */
import { ApiError, validationError } from "./errors.ts";
import { isUuid } from "./ids.ts";

/** PostgreSQL text cannot hold U+0000: refused as bad input here rather than failing the INSERT (a 500). */
export function rejectNul(value: string, field: string): void {
  if (value.includes("\u0000")) throw validationError(`${field} must not contain NUL (U+0000) characters`, { field });
}

/** A resource name: trimmed, 1 to 200 characters, no NUL. */
export function requireName(value: string, what: string): string {
  const name = value.trim();
  if (name === "" || name.length > 200) throw validationError(`${what} must be 1 to 200 characters`, { field: "name" });
  rejectNul(name, "name");
  return name;
}

/** A resource id, lower-cased; a malformed one is simply not found. */
export function requireId(id: string, notFound: ApiError["code"], what: string): string {
  // The answer does not reveal id syntax or other tenants.
  if (!isUuid(id)) throw new ApiError(notFound, `${what} ${JSON.stringify(id)} not found`);
  return id.toLowerCase();
}
