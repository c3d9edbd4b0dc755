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
  for (let round = 0; ordered.length < units.length; round++) {
    for (const { queue } of queues) {
      const unit = queue[round];
      if (unit !== undefined) ordered.push(unit);
    }
  }
  return ordered;
}
