/**
 * Walking the list rpcs page by page. Every list response of the API is `{data, page}` with
 * `page.next_cursor` / `page.has_more`, so one helper serves all of them:
 *
 * ```ts
 * const units = await listAll((p) => client.jobs.computeUnits(jobId, p));
 * for await (const node of iterateAll((p) => admin.nodes.list(p))) ...
 * ```
 */
import type { PageOptions } from "./core.ts";

/** The part of a list response the walk reads. */
export interface ListPage<T> {
  data: T[];
  page?: { nextCursor: string; hasMore: boolean } | undefined;
}

/** Page size the walk asks for (the API's maximum). */
export const MAX_PAGE_SIZE = 100;

/**
 * Yields every item of every page, fetching the next page only when the previous one is used up.
 * A server answering `has_more` with a cursor it already gave would loop forever; a repeated
 * cursor ends the walk.
 */
export async function* iterateAll<T>(fetchPage: (page: PageOptions) => Promise<ListPage<T>>, pageSize: number = MAX_PAGE_SIZE): AsyncGenerator<T, void, void> {
  const seen = new Set<string>();
  let cursor = "";
  for (;;) {
    const res = await fetchPage(cursor === "" ? { limit: pageSize } : { limit: pageSize, cursor });
    yield* res.data;
    const next = res.page?.nextCursor ?? "";
    if (res.page?.hasMore !== true || next === "" || seen.has(next)) return;
    seen.add(next);
    cursor = next;
  }
}

/** Every item of every page, in order. */
export async function listAll<T>(fetchPage: (page: PageOptions) => Promise<ListPage<T>>, pageSize: number = MAX_PAGE_SIZE): Promise<T[]> {
  const all: T[] = [];
  for await (const item of iterateAll(fetchPage, pageSize)) all.push(item);
  return all;
}
