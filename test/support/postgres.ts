/**
 * Throwaway PostgreSQL servers for tests: initdb into a temp directory, start on a free loopback
 * port with fsync off, stop with `-m immediate` and delete the directory. Nothing is shared with a
 * server the machine may already run.
 *
 * `initdb` refuses to run as root, so as root the server runs as the `postgres` user (through
 * `runuser`) on a directory chowned to it.
 */
import { execFile, execFileSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import pg from "pg";
import { openDatabase } from "../../src/store/database.ts";

const execFileAsync = promisify(execFile);

/** A running throwaway server. */
export interface TestPostgres {
  /** Connection URL of its `postgres` database, as the `postgres` superuser (trust auth). */
  readonly url: string;
  /** Stops the server and deletes its directory; safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a fresh PostgreSQL server (about a second). */
export function startPostgres(): Promise<TestPostgres> {
  return launch();
}

/** A server plus a synchronous stop, for the process "exit" handler, which cannot await. */
interface LaunchedPostgres extends TestPostgres {
  stopSync(): void;
}

async function launch(): Promise<LaunchedPostgres> {
  const bin = findPostgresBin();
  const dir = mkdtempSync(join(tmpdir(), "gpu-agent-pg-"));
  const dataDir = join(dir, "data");
  const socketDir = join(dir, "socket");
  await mkdir(socketDir);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { uid, gid } = postgresUser();
    await chown(dir, uid, gid);
    await chown(socketDir, uid, gid);
  }
  // As root, run the PostgreSQL tools as `postgres`; otherwise as ourselves.
  const tool = (name: string, args: string[]): [string, string[]] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, name), ...args]] : [join(bin, name), args];

  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    await execFileAsync(
      ...tool("initdb", ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"]),
    );
    const port = await freePort();
    const serverOptions = [
      `-p ${port}`,
      "-c listen_addresses=127.0.0.1",
      `-c unix_socket_directories=${socketDir}`,
      "-c fsync=off",
      "-c synchronous_commit=off",
      "-c full_page_writes=off",
    ].join(" ");
    // -l sends the server's output to a file, so pg_ctl's pipes close once it is up.
    await execFileAsync(...tool("pg_ctl", ["-D", dataDir, "-o", serverOptions, "-l", join(dir, "server.log"), "-w", "start"]));
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    let stopped = false;
    const stopSync = (): void => {
      if (stopped) return;
      stopped = true;
      try {
        execFileSync(...tool("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"]), { stdio: "ignore" });
      } finally {
        removeDir();
      }
    };
    return {
      url,
      stopSync,
      async stop(): Promise<void> {
        if (stopped) return;
        stopped = true;
        try {
          await execFileAsync(...tool("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"]));
        } finally {
          removeDir();
        }
      },
    };
  } catch (e) {
    removeDir();
    throw e;
  }
}

let shared: Promise<LaunchedPostgres> | undefined;

/**
 * One server per test process, started on first use and shared by every test file; it stops in
 * mocha's root `after` hook, or at process exit if that hook never ran.
 */
export function sharedPostgres(): Promise<TestPostgres> {
  return sharedServer();
}

function sharedServer(): Promise<LaunchedPostgres> {
  shared ??= launch().then((server) => {
    process.once("exit", () => server.stopSync());
    return server;
  });
  return shared;
}

// Registered when this module loads, i.e. while mocha loads spec files, so it is a root hook that
// runs after every file's tests. Outside mocha `after` does not exist and the exit handler remains.
if (typeof after === "function") {
  after(async function stopSharedPostgres() {
    const server = shared;
    shared = undefined;
    if (server !== undefined) await (await server).stop();
  });
}

/** Creates an empty database on the shared server and returns its URL (one per test, no cleanup); `template` names the database to copy instead. */
export async function createTestDatabaseUrl(template?: string): Promise<string> {
  const server = await sharedPostgres();
  const name = `test_${randomBytes(6).toString("hex")}`;
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}${template === undefined ? "" : ` TEMPLATE ${template}`}`);
  } finally {
    await client.end();
  }
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

let migratedTemplate: { server: Promise<LaunchedPostgres>; name: Promise<string> } | undefined;

/**
 * Creates a database on the shared server that already holds every migration, as a copy of one
 * migrated once per server by the real `openDatabase` (CREATE DATABASE … TEMPLATE): the migrations
 * cost more than the copy. It stays right when a migration is added for the reasons given in
 * ./database-template.ts (made in this process, and `openDatabase` migrates every copy again).
 * Tests of the migrations themselves take {@link createTestDatabaseUrl}.
 */
export async function createMigratedTestDatabaseUrl(): Promise<string> {
  const server = sharedServer();
  // One template per server: the shared one is stopped after the run and a later run starts another.
  if (migratedTemplate?.server !== server) {
    const name = (async () => {
      const url = await createTestDatabaseUrl();
      await (await openDatabase({ url })).close();
      return new URL(url).pathname.slice(1);
    })();
    migratedTemplate = { server, name };
  }
  return createTestDatabaseUrl(await migratedTemplate.name);
}

function findPostgresBin(): string {
  const hasTools = (dir: string): boolean => {
    try {
      accessSync(join(dir, "initdb"), constants.X_OK);
      accessSync(join(dir, "pg_ctl"), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  const fromPath = (process.env["PATH"] ?? "").split(delimiter).filter((d) => d !== "");
  const installed = (() => {
    try {
      // Newest major version first.
      return readdirSync("/usr/lib/postgresql")
        .sort((a, b) => Number(b) - Number(a))
        .map((version) => join("/usr/lib/postgresql", version, "bin"));
    } catch {
      return [];
    }
  })();
  const found = [...fromPath, ...installed].find(hasTools);
  if (found === undefined) {
    throw new Error(
      "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin: " +
        "install them with `apt-get install -y postgresql`",
    );
  }
  return found;
}

function postgresUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    throw new Error("running as root needs a `postgres` user to run the server: `apt-get install -y postgresql`");
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === "object") resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}
