/**
 * PostgreSQL's LISTEN/NOTIFY, for messages between replicas (src/ha/cluster-bus.ts says what travels).
 * NOTIFY goes through the pool like any statement; LISTEN needs a connection of its own that stays
 * open, since a notification reaches only the sessions listening when it is sent.
 */
import pg from "pg";
import type { Sql } from "./database.ts";

/** A dedicated connection listening on one channel. */
export interface ListeningConnection {
  /** The connection failed or ended: nothing more will arrive on it. */
  once(event: "error", listener: (error: Error) => void): void;
  once(event: "end", listener: () => void): void;
  end(): Promise<void>;
}

/** Channel names are written into the LISTEN statement (it takes no parameter), so only plain identifiers. */
const channelName = /^[a-z_][a-z0-9_]*$/;

/**
 * Opens a connection to `url` and listens on `channel`; `onPayload` receives each notification's
 * payload (from every replica, this one included). Resolves once LISTEN is in place.
 */
export async function listenOn(url: string, applicationName: string, channel: string, onPayload: (payload: string) => void): Promise<ListeningConnection> {
  if (!channelName.test(channel)) throw new Error(`not a plain channel name: ${channel}`);
  const client = new pg.Client({ connectionString: url, application_name: applicationName.slice(0, 63) });
  client.on("notification", (n) => {
    if (n.channel !== channel || n.payload === undefined) return;
    onPayload(n.payload);
  });
  await client.connect();
  await client.query(`LISTEN ${channel}`);
  return client;
}

/** Sends `payload` to every session listening on `channel` (when the transaction it runs in, if any, commits). */
export async function notifyChannel(sql: Sql, channel: string, payload: string): Promise<void> {
  await sql.query(`SELECT pg_notify($1, $2)`, [channel, payload]);
}
