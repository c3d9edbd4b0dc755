/**
 * The control plane's Prometheus metrics, on an injected registry (never the
 * global one), named by Prometheus conventions with the `gpuagent_` prefix.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Metric handles the control plane updates. */
export interface ControlPlaneMetrics {
  readonly registry: Registry;
  readonly placementDuration: Histogram<"result">;
  readonly placements: Counter<"result">;
  readonly agentStreams: Gauge;
  readonly isLeader: Gauge;
  readonly leaderTerm: Gauge;
  readonly webhookDeliveries: Counter<"outcome">;
}

/** Creates the registry and the metrics. */
export function createMetrics(): ControlPlaneMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "gpuagent_" });
  return {
    registry,
    placementDuration: new Histogram({
      name: "gpuagent_placement_cycle_duration_seconds",
      help: "Duration of one placement cycle (snapshot, placer, fenced commit).",
      labelNames: ["result"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    placements: new Counter({
      name: "gpuagent_placements_total",
      help: "Compute units by placement result (placed, unplaced).",
      labelNames: ["result"],
      registers: [registry],
    }),
    agentStreams: new Gauge({ name: "gpuagent_agent_streams", help: "Agent streams held by this replica.", registers: [registry] }),
    isLeader: new Gauge({ name: "gpuagent_leader_is_leader", help: "1 while this replica leads placement.", registers: [registry] }),
    leaderTerm: new Gauge({ name: "gpuagent_leader_term", help: "The fencing term this replica leads under (0 when not leading).", registers: [registry] }),
    webhookDeliveries: new Counter({
      name: "gpuagent_webhook_deliveries_total",
      help: "Webhook delivery attempts by outcome.",
      labelNames: ["outcome"],
      registers: [registry],
    }),
  };
}
