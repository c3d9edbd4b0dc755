/** CustomerService handlers: Usage and credits reports: daily usage, CSV exports. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { ControlPlaneDeps } from "../../deps.ts";
import type { CustomerService } from "../../gen/gpuagent/customer/v1/customer_pb.ts";

/** The usage part of CustomerService. */
export function createUsageHandlers(deps: ControlPlaneDeps): Partial<ServiceImpl<typeof CustomerService>> {
  void deps;
  return {};
}
