/** CustomerService handlers: Webhook endpoints: create, list, test, rotate the secret, delete. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { ControlPlaneDeps } from "../../deps.ts";
import type { CustomerService } from "../../gen/gpuagent/customer/v1/customer_pb.ts";

/** The webhooks part of CustomerService. */
export function createWebhookHandlers(deps: ControlPlaneDeps): Partial<ServiceImpl<typeof CustomerService>> {
  void deps;
  return {};
}
