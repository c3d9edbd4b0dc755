/**
 * A hostile HTTP/2 client written frame by frame, for what node:http2's
 * client will not do: open more streams than the server allows (it queues
 * them), leave the server's SETTINGS unacknowledged, or send a request's
 * headers and part of its body and then nothing. It counts what the server
 * sends back per stream. Used by test/server/ and bench/hostile.ts.
 */
import net from "node:net";

const frameType = { data: 0x0, headers: 0x1, rstStream: 0x3, settings: 0x4, ping: 0x6, goaway: 0x7, windowUpdate: 0x8 } as const;
const flags = { endStream: 0x1, ack: 0x1, endHeaders: 0x4 } as const;
const settingMaxConcurrentStreams = 0x3;
const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, frameFlags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = frameFlags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const bytes = [firstByteFlags | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A header block of literal fields without indexing, new names (RFC 7541 §6.2.2): no table state to keep. */
function headerBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    const n = Buffer.from(name, "latin1");
    const v = Buffer.from(value, "latin1");
    parts.push(Buffer.from([0x00]), hpackInt(n.length, 7), n, hpackInt(v.length, 7), v);
  }
  return Buffer.concat(parts);
}

/** What the server did, per stream and for the connection. */
export interface RawH2Report {
  /** SETTINGS_MAX_CONCURRENT_STREAMS of each SETTINGS frame the server sent, in order (undefined when absent). */
  readonly maxConcurrentStreams: Array<number | undefined>;
  /** Streams that got response HEADERS. */
  readonly answered: Set<number>;
  /** RST_STREAM error code per stream. */
  readonly resets: Map<number, number>;
  /** The GOAWAY error code, when one came. */
  goaway: number | undefined;
  closed: boolean;
}

/** A raw HTTP/2 connection. */
export interface RawH2Connection {
  readonly report: RawH2Report;
  /** Opens a stream: HEADERS (POST `path`), then `body` without END_STREAM unless `end`. Returns the stream id. */
  open(path: string, options?: { body?: Buffer; end?: boolean; headers?: ReadonlyArray<readonly [string, string]> }): number;
  /** Sends the SETTINGS acknowledgement (a hostile client may never do). */
  ackSettings(): void;
  /** Resolves with the RST_STREAM code of stream `id` when it comes, or undefined if the connection closes first. */
  reset(id: number): Promise<number | undefined>;
  /** Resolves once the server's first SETTINGS frame has arrived. */
  readonly greeted: Promise<void>;
  /** Resolves when the server closes the connection. */
  readonly closedByServer: Promise<void>;
  destroy(): void;
}

/**
 * Connects to `port` on 127.0.0.1 and sends the preface and an empty SETTINGS
 * frame; the server's SETTINGS are acknowledged only when `ackSettings` is true.
 */
export function rawH2(port: number, options: { ackSettings?: boolean; host?: string } = {}): Promise<RawH2Connection> {
  const socket = net.connect(port, options.host ?? "127.0.0.1");
  const report: RawH2Report = { maxConcurrentStreams: [], answered: new Set(), resets: new Map(), goaway: undefined, closed: false };
  let nextStreamId = 1;
  let buffer: Buffer = Buffer.alloc(0);
  const resetWaiters = new Map<number, (code: number | undefined) => void>();
  let onGreeted: () => void = () => undefined;
  const greeted = new Promise<void>((resolve) => (onGreeted = resolve));
  const closedByServer = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("error", () => undefined);
  socket.once("close", () => {
    report.closed = true;
    for (const resolve of resetWaiters.values()) resolve(undefined);
    resetWaiters.clear();
  });
  const ackSettings = (): void => {
    if (!socket.destroyed) socket.write(frame(frameType.settings, flags.ack, 0));
  };
  socket.on("data", (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    while (buffer.length >= 9) {
      const length = buffer.readUIntBE(0, 3);
      if (buffer.length < 9 + length) break;
      const type = buffer[3]!;
      const frameFlags = buffer[4]!;
      const streamId = buffer.readUInt32BE(5) & 0x7fffffff;
      const payload = buffer.subarray(9, 9 + length);
      buffer = buffer.subarray(9 + length);
      if (type === frameType.settings && (frameFlags & flags.ack) === 0) {
        let max: number | undefined;
        for (let at = 0; at + 6 <= payload.length; at += 6) if (payload.readUInt16BE(at) === settingMaxConcurrentStreams) max = payload.readUInt32BE(at + 2);
        report.maxConcurrentStreams.push(max);
        if (options.ackSettings === true) ackSettings();
        onGreeted();
      } else if (type === frameType.headers) {
        report.answered.add(streamId);
      } else if (type === frameType.rstStream) {
        report.resets.set(streamId, payload.readUInt32BE(0));
        resetWaiters.get(streamId)?.(payload.readUInt32BE(0));
        resetWaiters.delete(streamId);
      } else if (type === frameType.goaway) {
        report.goaway = payload.readUInt32BE(4);
      } else if (type === frameType.ping && (frameFlags & flags.ack) === 0) {
        socket.write(frame(frameType.ping, flags.ack, 0, Buffer.from(payload)));
      }
    }
  });
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      socket.write(Buffer.concat([preface, frame(frameType.settings, 0, 0)]));
      resolve({
        report,
        greeted,
        closedByServer,
        ackSettings,
        reset(id) {
          const known = report.resets.get(id);
          if (known !== undefined || report.closed) return Promise.resolve(known);
          return new Promise((resolveReset) => resetWaiters.set(id, resolveReset));
        },
        open(path, streamOptions = {}) {
          const id = nextStreamId;
          nextStreamId += 2;
          const block = headerBlock([[":method", "POST"], [":scheme", "http"], [":authority", "127.0.0.1"], [":path", path], ...(streamOptions.headers ?? [])]);
          const body = streamOptions.body;
          const endOnHeaders = body === undefined && streamOptions.end === true;
          const out = [frame(frameType.headers, flags.endHeaders | (endOnHeaders ? flags.endStream : 0), id, block)];
          if (body !== undefined) out.push(frame(frameType.data, streamOptions.end === true ? flags.endStream : 0, id, body));
          if (!socket.destroyed) socket.write(Buffer.concat(out));
          return id;
        },
        destroy: () => socket.destroy(),
      });
    });
  });
}
