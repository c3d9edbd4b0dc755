/**
 * The control plane's Prometheus metrics, on an injected registry (never the
 * global one), named by Prometheus conventions: `gpuagent_` prefix, base units
 * (seconds), `_total` only on counters.
 *
 * What the database knows (pending units, nodes, credits debited) is read at
 * scrape time through {@link MetricSources}, so every replica reports the same
 * cluster-wide values without instrumenting each code path that changes them.
 *
 * prom-client's default metrics include three gauges named
 * `nodejs_active_{handles,requests,resources}_total`; a gauge must not end in
 * `_total` (`promtool check metrics` fails its lint on them), so those three
 * are unregistered. Nothing is lost: the per-type gauges
 * `nodejs_active_{handles,requests,resources}{type}` stay, and their sum is the
 * removed total.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Values read when /metrics is scraped. Each may fail (database down); the metric is then left out. */
export interface MetricSources {
  /** Units waiting for placement (`pending` on dependencies, `ready` to place), by kind. */
  pendingUnits(): Promise<{ kind: string; status: string; count: number }[]>;
  /** Nodes by state and trust level. */
  nodes(): Promise<{ state: string; trust: string; count: number }[]>;
  /** All credits ever debited (a sum over the ledger; never decreases). */
  creditsDebited(): Promise<number>;
  /** Agent streams held by this replica. */
  agentStreams(): number;
}

/** Metric handles the control plane updates. */
export interface ControlPlaneMetrics {
  readonly registry: Registry;
  /** One placement cycle: snapshot, placer, fenced commit. */
  readonly placementDuration: Histogram<"result">;
  /** One placement loop iteration (cycle and dispatch; the sweep runs beside it). */
  readonly schedulerCycle: Histogram;
  /** Where a leader loop iteration spends its time, by phase (snapshot, plan, commit, dispatch, sweep). */
  readonly schedulerPhase: Histogram<"phase">;
  /** How long each placed unit waited in `ready`. */
  readonly placementLatency: Histogram;
  readonly placements: Counter<"result">;
  readonly agentStreams: Gauge;
  readonly isLeader: Gauge;
  readonly leaderTerm: Gauge;
  readonly webhookDeliveries: Counter<"outcome">;
  readonly httpDuration: Histogram<"method" | "route" | "code">;
  /** Records one HTTP request (the server's onRequest hook). */
  observeHttp(method: string, path: string, status: number, seconds: number): void;
}

/** Default-metric gauges whose names end in `_total` (see the module comment). */
const misnamedDefaults = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

const idSegment = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9]+|[A-Za-z0-9_-]{20,})$/i;

/** Whether `idSegment` can match: only a segment of 20 characters or more, or one starting with a digit (cheap to rule out per request). */
function mayBeId(segment: string): boolean {
  const first = segment.charCodeAt(0);
  return segment.length >= 20 || (first >= 48 && first <= 57);
}

/**
 * A low-cardinality route label: RPC paths as they are, REST paths with ids replaced by `{id}`, signed
 * blob URLs collapsed (their paths carry keys), unknown routes as "unmatched".
 */
export function routeLabel(path: string, status: number): string {
  return status === 404 ? "unmatched" : labelOf(path);
}

const maxRecentLabels = 4096;

/**
 * {@link routeLabel}, remembering recent paths' labels: paths recur (clients poll the same job). Bounded
 * in count (cleared when full) and in size (long paths are not kept). One per metrics registry.
 */
function createRouteLabels(): (path: string, status: number) => string {
  const recent = new Map<string, string>();
  return (path, status) => {
    if (status === 404) return "unmatched";
    let label = recent.get(path);
    if (label === undefined) {
      label = labelOf(path);
      if (path.length <= 200) {
        if (recent.size >= maxRecentLabels) recent.clear();
        recent.set(path, label);
      }
    }
    return label;
  };
}

function labelOf(path: string): string {
  if (path.startsWith("/blobs/")) return "/blobs/{key}";
  if (/^\/[a-z0-9.]+\.v\d+\.[A-Za-z]+Service\/[A-Za-z]+$/.test(path)) return path;
  const segments = path.split("/").slice(0, 12);
  return segments.map((s) => (mayBeId(s) && idSegment.test(s) ? "{id}" : s)).join("/") || "/";
}

/** Creates the registry and the metrics; `sources` adds the scrape-time values. */
export function createMetrics(sources?: MetricSources): ControlPlaneMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "gpuagent_" });
  for (const name of misnamedDefaults) registry.removeSingleMetric(`gpuagent_${name}`);
  const httpChildren = new Map<string, { observe(value: number): void }>();
  const routeOf = createRouteLabels();
  const httpDuration = new Histogram({
    name: "gpuagent_http_request_duration_seconds",
    help: "HTTP request duration by method, route and status code.",
    labelNames: ["method", "route", "code"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });

  const agentStreams = new Gauge({
    name: "gpuagent_agent_streams",
    help: "Agent streams held by this replica.",
    registers: [registry],
    ...(sources === undefined
      ? {}
      : {
          collect(this: Gauge) {
            this.set(sources.agentStreams());
          },
        }),
  });

  if (sources !== undefined) {
    new Gauge({
      name: "gpuagent_pending_units",
      help: "Compute units waiting to be placed, by kind and status (pending on dependencies, or ready).",
      labelNames: ["kind", "status"],
      registers: [registry],
      async collect() {
        const rows = await sources.pendingUnits();
        this.reset();
        // Both kinds and statuses always appear, so a queue that empties reads 0 rather than vanishing.
        for (const kind of ["cpu", "gpu"]) for (const status of ["pending", "ready"]) this.set({ kind, status }, 0);
        for (const r of rows) this.set({ kind: r.kind, status: r.status }, r.count);
      },
    });
    new Gauge({
      name: "gpuagent_nodes",
      help: "Enrolled nodes by state and trust level.",
      labelNames: ["state", "trust"],
      registers: [registry],
      async collect() {
        const rows = await sources.nodes();
        this.reset();
        for (const r of rows) this.set({ state: r.state, trust: r.trust }, r.count);
      },
    });
    new Counter({
      name: "gpuagent_credits_debited_total",
      help: "Credits debited for completed compute units (all customers, read from the ledger).",
      registers: [registry],
      async collect() {
        const total = await sources.creditsDebited();
        // The ledger only grows, so the sum is monotonic: reset and add keeps counter semantics.
        this.reset();
        this.inc(total);
      },
    });
  }

  const placements = new Counter({
    name: "gpuagent_placements_total",
    help: "Compute units by placement result (placed, unplaced).",
    labelNames: ["result"],
    registers: [registry],
  });
  // Present from the start, so dashboards and alerts see 0 rather than no series.
  placements.inc({ result: "placed" }, 0);
  placements.inc({ result: "unplaced" }, 0);

  return {
    registry,
    placementDuration: new Histogram({
      name: "gpuagent_placement_cycle_duration_seconds",
      help: "Duration of one placement cycle (snapshot, placer, fenced commit), by result (committed, fenced).",
      labelNames: ["result"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    schedulerCycle: new Histogram({
      name: "gpuagent_scheduler_cycle_duration_seconds",
      help: "Duration of one placement loop iteration (placement cycle and dispatch of its assignments; the sweep runs beside it).",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    schedulerPhase: new Histogram({
      name: "gpuagent_scheduler_phase_duration_seconds",
      help: "Time one leader loop iteration spent in each phase: snapshot (reads), plan (placer), commit (fenced transaction), dispatch (assignments to streams), sweep.",
      labelNames: ["phase"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    placementLatency: new Histogram({
      name: "gpuagent_placement_latency_seconds",
      help: "Time a compute unit waited in ready before it was placed.",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    placements,
    agentStreams,
    isLeader: new Gauge({ name: "gpuagent_leader_is_leader", help: "1 while this replica leads placement.", registers: [registry] }),
    leaderTerm: new Gauge({ name: "gpuagent_leader_term", help: "The fencing term this replica leads under (0 when not leading).", registers: [registry] }),
    webhookDeliveries: new Counter({
      name: "gpuagent_webhook_deliveries_total",
      help: "Webhook delivery attempts by outcome.",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    httpDuration,
    observeHttp(method, path, status, seconds) {
      const route = routeOf(path, status);
      // The histogram's child per label set, kept: observing through it skips building and checking the labels.
      const key = `${method} ${status} ${route}`;
      let child = httpChildren.get(key);
      if (child === undefined) {
        child = httpDuration.labels({ method, route, code: String(status) });
        if (httpChildren.size >= 1000) httpChildren.clear();
        httpChildren.set(key, child);
      }
      child.observe(seconds);
    },
  };
}
