/**
 * The SDK's pure helpers: paging over list rpcs, Retry-After parsing and which failures count as
 * transient. No server needed.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { ListPage, PageOptions } from "../../src/sdk/index.ts";
import { GpuAgentError, isTransientFailure, iterateAll, listAll, parseRetryAfterSeconds } from "../../src/sdk/index.ts";

/** A list rpc over `pages`, recording the page requests it got. */
function pagedSource(pages: ListPage<number>[]) {
  const asked: PageOptions[] = [];
  const fetchPage = async (p: PageOptions): Promise<ListPage<number>> => {
    asked.push(p);
    const index = p.cursor === undefined ? 0 : Number(p.cursor.slice(1));
    return pages[index] ?? { data: [] };
  };
  return { asked, fetchPage };
}

const page = (data: number[], next: string) => ({ data, page: { nextCursor: next, hasMore: next !== "" } });

describe("SDK helpers", () => {
  const walks = [
    { name: "returns the one page of a single-page list", pages: [page([1, 2], "")], want: [1, 2], requests: 1 },
    { name: "follows next_cursor until has_more is false", pages: [page([1], "c1"), page([2], "c2"), page([3], "")], want: [1, 2, 3], requests: 3 },
    { name: "stops at a cursor the server already gave (no endless loop)", pages: [page([1], "c1"), page([2], "c1")], want: [1, 2], requests: 2 },
    { name: "stops when has_more comes without a cursor", pages: [{ data: [1], page: { nextCursor: "", hasMore: true } }], want: [1], requests: 1 },
    { name: "stops when a response has no page at all", pages: [{ data: [7] }], want: [7], requests: 1 },
  ];
  for (const tc of walks) {
    it(`listAll ${tc.name}`, async () => {
      const src = pagedSource(tc.pages);
      assert.deepEqual(await listAll(src.fetchPage), tc.want);
      assert.equal(src.asked.length, tc.requests);
      assert.deepEqual(src.asked[0], { limit: 100 });
    });
  }

  it("iterateAll fetches a page only when the previous one is used up", async () => {
    const src = pagedSource([page([1, 2], "c1"), page([3], "")]);
    const it = iterateAll(src.fetchPage, 2);
    assert.deepEqual((await it.next()).value, 1);
    assert.equal(src.asked.length, 1);
    assert.deepEqual([(await it.next()).value, (await it.next()).value], [2, 3]);
    assert.deepEqual(src.asked, [{ limit: 2 }, { limit: 2, cursor: "c1" }]);
  });

  const retryAfterCases = [
    { name: "reads delta-seconds", value: "3", want: 3 },
    { name: "reads fractional seconds", value: "1.5", want: 1.5 },
    { name: "reads an HTTP date relative to now", value: "Thu, 01 Jan 2026 00:00:05 GMT", want: 5 },
    { name: "clamps a date in the past to 0", value: "Wed, 31 Dec 2025 23:59:00 GMT", want: 0 },
    { name: "ignores garbage", value: "soon", want: undefined },
    { name: "ignores an absent header", value: null, want: undefined },
  ];
  for (const tc of retryAfterCases) {
    it(`Retry-After parsing ${tc.name}`, () => {
      assert.equal(parseRetryAfterSeconds(tc.value, Date.UTC(2026, 0, 1)), tc.want);
    });
  }

  const err = (code: GpuAgentError["code"], httpStatus: number) => new GpuAgentError({ code, message: "x", httpStatus, connectCode: Code.Unknown });
  const transientCases = [
    { name: "an unreachable server is transient", error: err("CONNECTION_FAILED", 0), want: true },
    { name: "a request timeout is transient", error: err("TIMEOUT", 0), want: true },
    { name: "a 5xx is transient", error: err("INTERNAL_ERROR", 500), want: true },
    { name: "a 404 is not", error: err("JOB_NOT_FOUND", 404), want: false },
    { name: "a checksum mismatch is not", error: err("CHECKSUM_MISMATCH", 0), want: false },
    { name: "an abort is not", error: err("ABORTED", 0), want: false },
    { name: "an error that is not the SDK's is not", error: new Error("boom"), want: false },
  ];
  for (const tc of transientCases) {
    it(`isTransientFailure: ${tc.name}`, () => {
      assert.equal(isTransientFailure(tc.error), tc.want);
    });
  }
});
