/** CustomerService handlers: Sessions (login, me) and API keys. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { ControlPlaneDeps } from "../../deps.ts";
import type { CustomerService } from "../../gen/gpuagent/customer/v1/customer_pb.ts";

/** The identity part of CustomerService. */
export function createIdentityHandlers(deps: ControlPlaneDeps): Partial<ServiceImpl<typeof CustomerService>> {
  void deps;
  return {};
}
