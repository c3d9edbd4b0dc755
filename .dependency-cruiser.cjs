/**
 * The layer rule of the house (issue 13), checked by `npm run lint:layers` inside `npm test`.
 *
 * Arrows point down only:
 *
 *   cmd/                      entry points: parse config, build dependencies, start. May import anything.
 *   composition               src/control-plane*.ts, src/deps.ts: builds and wires the objects below.
 *   api/, server/,            the edge: protocols (REST transcoding, Connect, HTTP/2, the portal's server
 *   portal-server/            routes; the React app itself is portal/ at the root, outside this check).
 *                             Handlers decode, call the domain, map the result; errors become HTTP/Connect here.
 *   domain                    jobs/, billing/, scheduling/, agent-streams/, webhooks/, limits/, auth/, ha/, blobs/,
 *                             telemetry/, observability/: what the product does, whatever protocol asked.
 *   store/                    all SQL, migrations, status constants: the only layer that speaks to the database.
 *   placer/, planner/         pure functions over snapshots (placement, job plans): no I/O, so they import
 *                             only platform/ and the generated contracts.
 *   platform/, gen/           the floor: clock, ids, config types, the domain error; buf-generated contracts.
 *
 * Beside the control plane, on the other side of the wire:
 *   node-agent/               the program on the home machine: shares only gen/ and platform/ with the
 *                             control plane, so it can ship (and be audited) on its own.
 *   sdk/, cli/                the customer's client: the SDK over the generated client, gpuctl over the SDK.
 *
 * Why a tool: a loop between folders is made of single imports that each looked harmless (issue 13 lists them);
 * only a check that runs on every change keeps the arrows pointing down. Runtime imports are what can form a
 * loop at load time and what couples behaviour, so type-only imports are not counted by the cycle rule.
 *
 * There are no known violations and no baseline file: any violation fails `npm test`. Domain and edge modules
 * never name the composition's `ControlPlaneDeps` bag (src/deps.ts); each declares the few dependencies it uses
 * as its own small interface (e.g. `LeaderLoopDeps`, `AuthorizeDeps`, src/api/handler-deps.ts), with field names
 * and types as in the bag, which satisfies them structurally.
 */
const domain = "(jobs|billing|scheduling|agent-streams|webhooks|limits|auth|ha|blobs|telemetry|observability)";
const edge = "(api|server|portal-server)";
const composition = "(control-plane[^/]*\\.ts|deps\\.ts)";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-folder-cycle",
      comment: "Folders import each other in a loop: a change to one can break any other, and none can be read alone.",
      severity: "error",
      scope: "folder",
      from: { path: "^src/" },
      to: { circular: true, dependencyTypesNot: ["type-only"] },
    },
    {
      name: "no-file-cycle",
      comment: "Modules import each other in a loop (runtime imports): load order decides what is undefined.",
      severity: "error",
      from: { path: "^(src|cmd)/" },
      to: { circular: true, dependencyTypesNot: ["type-only"] },
    },
    {
      name: "platform-is-the-floor",
      comment: "platform/ is what every layer stands on; it imports nothing of the project but the generated contracts.",
      severity: "error",
      from: { path: "^src/platform/" },
      to: { path: "^src/", pathNot: "^src/(platform|gen)/" },
    },
    {
      name: "store-speaks-only-sql",
      comment: "store/ holds the SQL; it knows rows and platform types, not the domain that uses them.",
      severity: "error",
      from: { path: "^src/store/" },
      to: { path: "^src/", pathNot: "^src/(store|platform|gen)/" },
    },
    {
      name: "placer-and-planner-are-pure",
      comment: "The placer and the planner are pure functions over snapshots: tests run them without a database, clock or network.",
      severity: "error",
      from: { path: "^src/(placer|planner)/" },
      to: { path: "^src/", pathNot: "^src/(placer|planner|platform|gen)/" },
    },
    {
      name: "domain-does-not-know-the-protocols",
      comment: "Domain code works the same whichever protocol called it: it never imports the edge, the composition or cmd/.",
      severity: "error",
      from: { path: `^src/${domain}/` },
      to: { path: `^(src/${edge}/|src/${composition}$|cmd/)` },
    },
    {
      name: "edge-does-not-know-the-composition",
      comment: "Handlers and the server are given their dependencies; they never reach up into the composition or cmd/.",
      severity: "error",
      from: { path: `^src/${edge}/` },
      to: { path: `^(src/${composition}$|cmd/)` },
    },
    {
      name: "node-agent-stands-alone",
      comment: "The agent runs on a stranger's machine: it shares only the generated contracts and platform/ with the control plane.",
      severity: "error",
      from: { path: "^src/node-agent/" },
      to: { path: "^src/", pathNot: "^src/(node-agent|gen|platform)/" },
    },
    {
      name: "control-plane-does-not-import-the-node-agent",
      comment: "What the control plane needs of the agent's side (formats, limits) lives in gen/ or platform/.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(node-agent|cli|sdk)/" },
      to: { path: "^src/node-agent/" },
    },
    {
      name: "clients-are-clients",
      comment:
        "The SDK and gpuctl are the customer's programs: they speak to the API through the generated client, never to the server's internals. " +
        "Two modules are the public contract itself and are shared: the error table (each code's HTTP status and Connect code, the metadata key) " +
        "and the webhook signature scheme customers verify.",
      severity: "error",
      from: { path: "^src/(sdk|cli)/" },
      to: { path: "^src/", pathNot: "^src/(sdk|cli|gen|platform)/|^src/api/errors\\.ts$|^src/webhooks/signature\\.ts$" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|test|portal|bench|scripts)/|^src/gen/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".mjs", ".cjs", ".json"] },
  },
};
