/** What domain tests assert of a refusal: the ApiError and its seed code. */
import assert from "node:assert/strict";
import { ApiError } from "../../src/platform/errors.ts";

/** Asserts that `promise` rejects with an ApiError of `code`, and returns it. */
export async function refusedWith(promise: Promise<unknown>, code: ApiError["code"]): Promise<ApiError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}, but it succeeded`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error;
}
