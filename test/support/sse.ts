/**
 * A Server-Sent Events client for tests, over fetch: it keeps the response open and hands out
 * each frame as the server wrote it (comments too, which EventSource hides), so a test can await
 * the next event instead of sleeping.
 */

/** One SSE frame: an event (`id`, `event`, `data`) or a comment line (`: text`). */
export type SseFrame =
  | { kind: "event"; id: string | undefined; event: string | undefined; data: string }
  | { kind: "comment"; text: string };

/** An open event stream. */
export interface SseStream {
  readonly status: number;
  readonly headers: Headers;
  /** The next frame; undefined once the server ended the response. Rejects after `timeoutMs`. */
  next(timeoutMs?: number): Promise<SseFrame | undefined>;
  /** The next event (comments skipped), its data parsed as JSON. */
  nextEvent(timeoutMs?: number): Promise<{ id: string | undefined; event: string | undefined; data: Record<string, unknown> } | undefined>;
  /** The body of a response that is not an event stream (an error envelope), parsed. */
  json(): Promise<Record<string, unknown>>;
  close(): void;
}

/** Opens `url` with `headers` (e.g. `x-api-key`, `last-event-id`). */
export async function openEventStream(url: string, headers: Record<string, string>): Promise<SseStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: abort.signal });
  // Taken on the first read, so json() can still read a body that is not a stream.
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const decoder = new TextDecoder();
  let buffer = "";
  let ended = false;
  const frames: SseFrame[] = [];

  const parse = (): void => {
    for (;;) {
      const end = buffer.indexOf("\n\n");
      if (end === -1) return;
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id: string | undefined;
      let event: string | undefined;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) {
          frames.push({ kind: "comment", text: line.slice(1).trim() });
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") id = value;
        else if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length > 0) frames.push({ kind: "event", id, event, data: data.join("\n") });
    }
  };

  const next = async (timeoutMs = 15_000): Promise<SseFrame | undefined> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = frames.shift();
      if (frame !== undefined) return frame;
      if (ended || res.body === null) return undefined;
      reader ??= res.body.getReader();
      const current = reader;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SSE frame within ${timeoutMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        current.read(),
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk === "timeout") throw new Error(`no SSE frame within ${timeoutMs} ms`);
      if (chunk.done) ended = true;
      else buffer += decoder.decode(chunk.value, { stream: true });
      parse();
    }
  };

  return {
    status: res.status,
    headers: res.headers,
    next,
    async nextEvent(timeoutMs) {
      for (;;) {
        const frame = await next(timeoutMs);
        if (frame === undefined) return undefined;
        if (frame.kind === "event") return { id: frame.id, event: frame.event, data: JSON.parse(frame.data) as Record<string, unknown> };
      }
    },
    async json() {
      return JSON.parse(await res.text()) as Record<string, unknown>;
    },
    close() {
      abort.abort();
    },
  };
}
