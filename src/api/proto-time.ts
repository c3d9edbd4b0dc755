/** Dates of rows as proto Timestamps (absent when the row has none). */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

/** A Timestamp for a nullable date column. */
export function optionalTimestamp(d: Date | null | undefined): Timestamp | undefined {
  return d === null || d === undefined ? undefined : timestampFromDate(d);
}
