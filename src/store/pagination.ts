/**
 * Forward-only keyset pagination (seed 001: `{ data, page: { limit, next_cursor,
 * has_more } }`, default 50, max 100). The cursor is the sort key of the last
 * row returned, so pages stay stable while rows are inserted.
 */
import { ApiError } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";

/** Position after which the next page starts. */
export interface CursorKey {
  at: Date;
  id: string;
}

/** A validated page request. */
export interface PageRequest {
  limit: number;
  after: CursorKey | undefined;
}

/** The `page` object of a list response. */
export interface PageInfo {
  limit: number;
  nextCursor: string;
  hasMore: boolean;
}

export const defaultPageLimit = 50;
export const maxPageLimit = 100;

/** Validates limit and cursor from a request (0 = default limit). */
export function pageRequest(limit: number, cursor: string): PageRequest {
  if (!Number.isInteger(limit) || limit < 0 || limit > maxPageLimit) {
    throw new ApiError("VALIDATION_FAILED", `limit must be between 1 and ${maxPageLimit}`);
  }
  return { limit: limit === 0 ? defaultPageLimit : limit, after: cursor === "" ? undefined : decodeCursor(cursor) };
}

function decodeCursor(cursor: string): CursorKey {
  const invalid = () => new ApiError("PAGINATION_INVALID_CURSOR", "the cursor is malformed or expired; start again without one");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== "object" || parsed === null) throw invalid();
  const { t, id } = parsed as { t?: unknown; id?: unknown };
  if (typeof t !== "string" || typeof id !== "string" || !isUuid(id)) throw invalid();
  const at = new Date(t);
  // Only dates a row can have: anything else is a forged cursor (and PostgreSQL cannot hold every JS date).
  if (Number.isNaN(at.getTime()) || at.getUTCFullYear() < 2000 || at.getUTCFullYear() > 9999) throw invalid();
  return { at, id };
}

/** Encodes the key of the last row of a page. */
export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify({ t: key.at.toISOString(), id: key.id })).toString("base64url");
}

/**
 * Cuts a result fetched with `limit + 1` rows into a page. `keyOf` gives the
 * sort key of a row.
 */
export function toPage<T>(rows: T[], request: PageRequest, keyOf: (row: T) => CursorKey): { rows: T[]; page: PageInfo } {
  const hasMore = rows.length > request.limit;
  const pageRows = hasMore ? rows.slice(0, request.limit) : rows;
  const last = pageRows.at(-1);
  return {
    rows: pageRows,
    page: { limit: request.limit, nextCursor: hasMore && last !== undefined ? encodeCursor(keyOf(last)) : "", hasMore },
  };
}
