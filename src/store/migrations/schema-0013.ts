/**
 * How many GPUs each completed unit held, on its usage record (issue 15: multi-GPU units), so usage
 * reports count GPU-seconds (run time × GPUs) as the debit already prices them, not a unit's run time.
 *
 * - `usage_records.gpu_count`: the GPUs of a gpu unit (1 to 8), 0 for a cpu unit. Written by the
 *   debit (src/billing/debit.ts) from the unit's `required_gpu_count`.
 *
 * Rows from before take their unit's count (compute_units.required_gpu_count, schema-0010.ts; every unit
 * of those days held one GPU or none). As in schema-0010, the default (1) serves inserts that name no
 * count; the check keeps a cpu row at 0 and a gpu row within what a node can give one unit.
 */
export const schema0013 = [
  `ALTER TABLE usage_records ADD COLUMN gpu_count integer NOT NULL DEFAULT 1`,
  `UPDATE usage_records r SET gpu_count = CASE WHEN r.kind = 'gpu' THEN GREATEST(1, u.required_gpu_count) ELSE 0 END
     FROM compute_units u WHERE u.id = r.compute_unit_id`,
  `ALTER TABLE usage_records ADD CONSTRAINT usage_records_gpu_count
     CHECK (CASE WHEN kind = 'gpu' THEN gpu_count BETWEEN 1 AND 8 ELSE gpu_count = 0 END)`,
];
