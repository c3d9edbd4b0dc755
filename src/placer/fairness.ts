/**
 * The order a cycle considers units in. Fairness rule: round-robin across
 * customers, one unit per customer per round; customers take their turn in
 * the order of their oldest ready unit (then customer id); within a customer
 * units go oldest `readySinceMs` first (then unit id). So a customer with 50
 * ready units and one with 1 both get a unit in the first round: nobody
 * starves another by volume, and age still decides who goes first.
 */
import type { UnitRequest } from "./types.ts";

function byAgeThenId(a: UnitRequest, b: UnitRequest): number {
  if (a.readySinceMs !== b.readySinceMs) return a.readySinceMs - b.readySinceMs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Units in fair order (see the file header); a new array, independent of the input order. */
export function fairOrder(units: readonly UnitRequest[]): UnitRequest[] {
  const byCustomer = new Map<string, UnitRequest[]>();
  for (const unit of units) {
    const queue = byCustomer.get(unit.customerId);
    if (queue === undefined) byCustomer.set(unit.customerId, [unit]);
    else queue.push(unit);
  }
  const queues = [...byCustomer.entries()].map(([customerId, queue]) => ({ customerId, queue: queue.sort(byAgeThenId) }));
  queues.sort((a, b) => {
    const d = byAgeThenId(a.queue[0] as UnitRequest, b.queue[0] as UnitRequest);
    if (d !== 0) return d;
    return a.customerId < b.customerId ? -1 : a.customerId > b.customerId ? 1 : 0;
  });
  const ordered: UnitRequest[] = [];
  // Each round drops the customers it emptied, so one customer's long queue costs no pass over all the others.
  let live = queues.map((q) => q.queue);
  for (let round = 0; live.length > 0; round++) {
    for (const queue of live) ordered.push(queue[round] as UnitRequest);
    live = live.filter((queue) => queue.length > round + 1);
  }
  return ordered;
}

/** Default `PlacerOptions.reserveAfterMs`: a unit that has waited 5 minutes goes first and reserves a node. */
export const defaultReserveAfterMs = 5 * 60_000;

/** Whether the unit has waited at least `reserveAfterMs` at `nowMs` (never without a `nowMs`). */
export function isOverdue(unit: UnitRequest, nowMs: number | undefined, reserveAfterMs: number): boolean {
  return nowMs !== undefined && nowMs - unit.readySinceMs >= reserveAfterMs;
}

/**
 * The order a cycle places units in: the overdue ones first (waited at least
 * `reserveAfterMs` at `nowMs`), oldest first (then unit id), so none of them
 * loses capacity to younger units; then the rest in fair order. Without a
 * `nowMs` (or with no unit overdue) it is exactly {@link fairOrder}.
 */
export function placementOrder(units: readonly UnitRequest[], nowMs: number | undefined, reserveAfterMs = defaultReserveAfterMs): UnitRequest[] {
  const fair = fairOrder(units);
  if (nowMs === undefined || !fair.some((u) => isOverdue(u, nowMs, reserveAfterMs))) return fair;
  const overdue = fair.filter((u) => isOverdue(u, nowMs, reserveAfterMs)).sort(byAgeThenId);
  return [...overdue, ...fair.filter((u) => !isOverdue(u, nowMs, reserveAfterMs))];
}
