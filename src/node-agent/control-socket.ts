/**
 * The owner's line to the running agent: a Unix socket, `<data-dir>/control.sock`, that
 * `gpu-agent pause|resume|status` connect to.
 *
 * Protocol: the client writes one JSON object on one line and reads one JSON line back, then the
 * agent closes the connection.
 *
 *   → {"command": "pause", "now": false}   ← {"ok": true, "status": {...}}
 *   → {"command": "pause", "now": true}    ← {"ok": true, "status": {...}, "handed_back": [{"unit_id": …, "attempt": 1}]}
 *   → {"command": "resume"}                ← {"ok": true, "status": {...}}
 *   → {"command": "status"}                ← {"ok": true, "status": {...}}
 *   anything else                          ← {"ok": false, "error": "…"}
 *
 * Who may use it: the socket is mode 0600 (the agent's user, and root), inside a data directory that
 * is itself private. The mode is set right after the socket is bound and connections accepted before
 * that are closed unanswered, so the umask never decides who can pause the node.
 */
import { chmod, lstat, unlink } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { AgentLogger } from "./logger.ts";

/** Name of the socket inside the data directory. */
export const CONTROL_SOCKET_FILE = "control.sock";

/** Linux keeps a Unix socket's path in 108 bytes, its NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;

/** Longest request line the agent reads. */
const MAX_REQUEST_BYTES = 4096;

/** A command to the running agent. */
export type ControlRequest = { command: "pause"; now: boolean } | { command: "resume" } | { command: "status" };

/** A unit as the owner sees it. */
export interface ControlUnit {
  unit_id: string;
  attempt: number;
}

/** What `gpu-agent status` shows (snake_case, as printed with --json). */
export interface AgentStatus {
  node_id: string;
  paused: boolean;
  /** The availability window as written; "" when always available. */
  available: string;
  within_window: boolean;
  /** When the window next opens or closes: ISO 8601 (UTC) and the machine's local weekday and time; null without one. */
  next_window_change: { at: string; local: string } | null;
  reserved_vram_mb: number;
  /** Stopping for a Drain from the control plane or a shutdown. */
  draining: boolean;
  running: ControlUnit[];
  /** How units are contained here (Capabilities.isolation); "" where the agent does not say. */
  isolation: { mechanism: string; reason: string };
}

/** The agent's answer. */
export type ControlReply = { ok: true; status: AgentStatus; handed_back?: ControlUnit[] } | { ok: false; error: string };

/** Answers one request; a thrown error becomes `{ok: false, error}`. */
export type ControlHandler = (request: ControlRequest) => Promise<ControlReply>;

/** A request line that is not one of the commands above. */
export class ControlRequestError extends Error {
  override readonly name = "ControlRequestError";
}

/** The socket's path for a data directory. */
export function controlSocketPath(dataDir: string): string {
  return path.join(path.resolve(dataDir), CONTROL_SOCKET_FILE);
}

/** Parses one request line; throws ControlRequestError. */
export function parseControlRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ControlRequestError("the request is not JSON");
  }
  if (typeof value !== "object" || value === null) throw new ControlRequestError("the request is not a JSON object");
  const { command, now } = value as { command?: unknown; now?: unknown };
  switch (command) {
    case "pause":
      if (now !== undefined && typeof now !== "boolean") throw new ControlRequestError('"now" must be true or false');
      return { command, now: now === true };
    case "resume":
    case "status":
      return { command };
    default:
      throw new ControlRequestError(`unknown command ${JSON.stringify(command)}: use pause, resume or status`);
  }
}

/** The listening socket; `close` stops it and removes the file. */
export interface ControlSocket {
  readonly path: string;
  close(): Promise<void>;
}

/** Why `socketPath` cannot be a Unix socket's path, or undefined. */
function pathTooLong(socketPath: string): string | undefined {
  if (Buffer.byteLength(socketPath) <= MAX_SOCKET_PATH_BYTES) return undefined;
  return `its path ${socketPath} is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a Unix socket allows: run the agent with a shorter --data-dir`;
}

/** True when something answers on `socketPath`. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

/**
 * Listens on `<dataDir>/control.sock`. A socket file left by an agent that died is replaced; one that
 * another running agent answers on is not: two agents on one data directory would share a credential
 * and a work directory, so the second one stops here.
 */
export async function listenControlSocket(dataDir: string, handler: ControlHandler, logger: AgentLogger): Promise<ControlSocket> {
  const socketPath = controlSocketPath(dataDir);
  const tooLong = pathTooLong(socketPath);
  if (tooLong !== undefined) {
    // The node still works for the control plane; only the owner's commands cannot reach it.
    logger.error({ socket: socketPath }, `no owner control socket: ${tooLong}`);
    return { path: socketPath, close: async () => {} };
  }
  const existing = await lstat(socketPath).catch(() => undefined);
  if (existing !== undefined) {
    if (!existing.isSocket()) throw new Error(`${socketPath} exists and is not a socket: remove it`);
    if (await answers(socketPath)) throw new Error(`another gpu-agent is already running with the data directory ${path.dirname(socketPath)}`);
    await unlink(socketPath);
  }

  let ready = false;
  const connections = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    if (!ready) return void socket.destroy();
    connections.add(socket);
    socket.once("close", () => connections.delete(socket));
    socket.on("error", (err) => logger.debug({ err: err.message }, "control socket connection failed"));
    // A client that connects and says nothing must not hold a connection forever.
    socket.setTimeout(10_000, () => socket.destroy());
    let buffered = "";
    let answered = false;
    socket.on("data", (chunk: Buffer) => {
      if (answered) return;
      buffered += chunk.toString("utf8");
      const newline = buffered.indexOf("\n");
      if (newline < 0 && Buffer.byteLength(buffered) <= MAX_REQUEST_BYTES) return;
      answered = true;
      socket.setTimeout(0);
      const reply =
        newline < 0
          ? Promise.resolve<ControlReply>({ ok: false, error: `request longer than ${MAX_REQUEST_BYTES} bytes` })
          : answer(buffered.slice(0, newline));
      void reply.then((r) => socket.end(`${JSON.stringify(r)}\n`));
    });
  });
  const answer = async (line: string): Promise<ControlReply> => {
    try {
      return await handler(parseControlRequest(line));
    } catch (err) {
      if (!(err instanceof ControlRequestError)) logger.warn({ err: err instanceof Error ? err.message : String(err) }, "owner command failed");
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  try {
    await chmod(socketPath, 0o600);
  } catch (err) {
    server.close();
    throw err;
  }
  ready = true;
  logger.info({ socket: socketPath }, "owner control socket listening");
  server.on("error", (err) => logger.warn({ err: err.message }, "control socket failed"));

  return {
    path: socketPath,
    async close() {
      ready = false;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of connections) socket.destroy();
      await closed;
      // net.Server removes its own socket file on close; this covers a server that never got to.
      await unlink(socketPath).catch(() => {});
    },
  };
}

/** What the owner's command could not do: the message says what to try. */
export class ControlClientError extends Error {
  override readonly name = "ControlClientError";
}

/**
 * Sends one command to the agent running with `dataDir` and returns its reply. `timeoutMs` bounds the
 * whole exchange (`pause --now` waits until the running units are handed back, seconds).
 */
export function sendControlCommand(dataDir: string, request: ControlRequest, timeoutMs = 60_000): Promise<ControlReply> {
  const socketPath = controlSocketPath(dataDir);
  const tooLong = pathTooLong(socketPath);
  if (tooLong !== undefined) return Promise.reject(new ControlClientError(`cannot reach the agent: ${tooLong}`));
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let received = "";
    const fail = (message: string) => {
      socket.destroy();
      reject(new ControlClientError(message));
    };
    socket.setTimeout(timeoutMs, () => fail(`the agent did not answer within ${Math.round(timeoutMs / 1000)} s`));
    socket.once("connect", () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("utf8");
    });
    socket.once("end", () => {
      socket.destroy();
      try {
        resolve(JSON.parse(received) as ControlReply);
      } catch {
        reject(new ControlClientError(`the agent's answer is not JSON: ${JSON.stringify(received.slice(0, 200))}`));
      }
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      switch (err.code) {
        case "ENOENT":
        case "ECONNREFUSED":
          return fail(`no gpu-agent is running with the data directory ${path.dirname(socketPath)} (nothing answers on ${socketPath}); start it (systemctl start gpu-agent) or pass the right --data-dir`);
        case "EACCES":
          return fail(`not allowed to open ${socketPath}: run this as the agent's user or root (e.g. sudo gpu-agent …)`);
        default:
          return fail(`cannot reach the agent on ${socketPath}: ${err.message}`);
      }
    });
  });
}

/** The status as lines for a person. */
export function formatAgentStatus(status: AgentStatus): string {
  const window =
    status.available === ""
      ? "always"
      : `${status.available} (${status.within_window ? "inside it now" : "outside it now"}${status.next_window_change ? `; ${status.within_window ? "closes" : "opens"} ${status.next_window_change.local}` : ""})`;
  const units = status.running.map((u) => `${u.unit_id} (attempt ${u.attempt})`);
  const isolation = status.isolation.mechanism === "" ? "not reported" : `${status.isolation.mechanism}${status.isolation.reason !== "" ? ` (${status.isolation.reason})` : ""}`;
  const takesUnits = !status.paused && status.within_window && !status.draining;
  const rows: [string, string][] = [
    ["node", status.node_id],
    ["paused", status.paused ? "yes (gpu-agent resume to take units again)" : "no"],
    ["available", window],
    ["taking new units", takesUnits ? "yes" : "no"],
    ["reserved VRAM", status.reserved_vram_mb > 0 ? `${status.reserved_vram_mb} MB per GPU` : "none"],
    ["isolation", isolation],
    ["running units", units.length === 0 ? "none" : `${units.length}: ${units.join(", ")}`],
  ];
  if (status.draining) rows.splice(4, 0, ["draining", "yes (running units finish, no new ones)"]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join("\n");
}
