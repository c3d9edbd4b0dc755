/**
 * A running unit's checkpoints on their way to the control plane. The unit writes a file into
 * `$GPU_AGENT_CHECKPOINT_DIR` and names it on a progress line (`{"checkpoint": "<name>"}`); the agent copies
 * it out of the unit's reach, hashing as it copies, PUTs the copy to `<Assign.checkpoint_upload_url>/<name>`
 * and then sends CheckpointReady, so the control plane records only what it stored, under the sha256 of
 * the bytes the agent read. One upload at a time per unit; a checkpoint announced while another is on its
 * way waits, and a newer one replaces it (only the latest is kept anyway). A checkpoint that cannot be
 * uploaded is logged and skipped: the unit runs on, and a later attempt resumes from an older checkpoint
 * or starts fresh.
 *
 * Why a copy: the unit keeps running and may rewrite the same name at the next epoch while the upload is
 * under way; the copy is what was announced, byte for byte, and retries send the same bytes.
 */
import { createHash } from "node:crypto";
import { constants as fsConstants, createWriteStream } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CheckpointReadySchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { UnitRef } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Clock } from "../platform/clock.ts";
import type { AgentLogger } from "./logger.ts";
import { isSafeName } from "./sandbox.ts";
import type { AgentMessageBody } from "./session.ts";
import { putFile, withRetries } from "./transfer.ts";
import type { ClientCertificate } from "./transfer.ts";

/** Names the control plane takes for a checkpoint (its artifact names). */
const checkpointNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** What a unit's checkpoint uploader needs. */
export interface CheckpointUploaderOptions {
  unit: UnitRef;
  /** The host directory the unit writes checkpoints into. */
  checkpointDir: string;
  /** A host directory of the agent's, out of the unit's reach, for the copy being uploaded (created, removed by settle). */
  stagingDir: string;
  /** Assign.checkpoint_upload_url; empty: the control plane keeps no checkpoints, announcements are ignored. */
  uploadUrl: string;
  /** Largest checkpoint uploaded (the Assign's artifacts_max_bytes; 0: unbounded here, the control plane still bounds it). */
  maxBytes: number;
  nodeCredential: string;
  clientCertificate?: ClientCertificate | undefined;
  /** Attempts per upload. */
  tries: number;
  /** True when the unit's files belong to a user other than the agent's (a hard link could reach the agent's files). */
  untrustedOwner: boolean;
  clock: Clock;
  logger: AgentLogger;
  send(body: AgentMessageBody): void;
}

/** A unit's checkpoint uploads. */
export interface CheckpointUploader {
  /** The unit named a checkpoint on its progress line. */
  announce(name: string, metrics: Record<string, number>): void;
  /** Resolves when the upload under way and the one waiting are done (sent before Finished). */
  settle(): Promise<void>;
}

/** Starts a unit's checkpoint uploader. */
export function createCheckpointUploader(o: CheckpointUploaderOptions): CheckpointUploader {
  const log = { unit_id: o.unit.unitId, attempt: o.unit.attempt };
  let waiting: { name: string; metrics: Record<string, number> } | undefined;
  let running: Promise<void> | undefined;

  const uploadAll = async () => {
    while (waiting !== undefined) {
      const next = waiting;
      waiting = undefined;
      try {
        await upload(next.name, next.metrics);
      } catch (err) {
        o.logger.warn({ ...log, checkpoint: next.name, err: err instanceof Error ? err.message : String(err) }, "checkpoint not uploaded; the unit runs on");
      }
    }
  };

  const upload = async (name: string, metrics: Record<string, number>) => {
    const copy = await copyOut(name);
    if (copy === undefined) return;
    try {
      const url = `${o.uploadUrl.replace(/\/+$/, "")}/${encodeURIComponent(name)}`;
      // Not cut short by the unit's end: its last checkpoint is the one a later attempt needs most.
      const signal = new AbortController().signal;
      // Opened per try: a refused PUT ends the stream that read it, and its handle with it.
      await withRetries(o.tries, o.clock, signal, async () => {
        const fh = await open(copy.file, fsConstants.O_RDONLY);
        try {
          await putFile(url, fh, copy.sizeBytes, { authorization: `Bearer ${o.nodeCredential}`, "content-type": "application/octet-stream" }, signal, o.clientCertificate);
        } finally {
          await fh.close().catch(() => {});
        }
      });
    } finally {
      await rm(copy.file, { force: true });
    }
    o.send({
      case: "checkpointReady",
      value: create(CheckpointReadySchema, { unit: o.unit, name, sizeBytes: BigInt(copy.sizeBytes), sha256: copy.sha256, metrics, at: timestampFromMs(o.clock.now()) }),
    });
    o.logger.info({ ...log, checkpoint: name, size_bytes: copy.sizeBytes }, "checkpoint uploaded");
  };

  /** Copies the announced file to the staging directory, hashing as it goes; undefined when it may not leave. */
  const copyOut = async (name: string): Promise<{ file: string; sizeBytes: number; sha256: string } | undefined> => {
    // O_NOFOLLOW: a link swapped in for the name is not followed into the agent's files.
    const source = await open(path.join(o.checkpointDir, name), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    try {
      const st = await source.stat();
      if (!st.isFile() || (o.untrustedOwner && st.nlink > 1)) {
        o.logger.warn({ ...log, checkpoint: name }, "checkpoint is not a plain regular file; not uploaded");
        return undefined;
      }
      if (o.maxBytes > 0 && st.size > o.maxBytes) {
        o.logger.warn({ ...log, checkpoint: name, size_bytes: st.size, max_bytes: o.maxBytes }, "checkpoint larger than a unit may upload; not uploaded");
        return undefined;
      }
      await mkdir(o.stagingDir, { recursive: true, mode: 0o700 });
      const file = path.join(o.stagingDir, name);
      await rm(file, { force: true });
      const hash = createHash("sha256");
      let size = 0;
      const bound = o.maxBytes > 0 ? o.maxBytes : Number.MAX_SAFE_INTEGER;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          size += chunk.length;
          // The unit may grow the file while it is copied.
          if (size > bound) return done(new Error(`checkpoint grew past ${bound} bytes while it was copied`));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(source.createReadStream({ start: 0, autoClose: false }), meter, createWriteStream(file, { flags: "wx", mode: 0o600 }));
      return { file, sizeBytes: size, sha256: hash.digest("hex") };
    } finally {
      await source.close();
    }
  };

  return {
    announce(name, metrics) {
      if (o.uploadUrl === "") return;
      if (!isSafeName(name) || !checkpointNamePattern.test(name)) {
        o.logger.warn({ ...log, checkpoint: name.slice(0, 200) }, "checkpoint name refused (a file name of letters, digits, '.', '_', '-'); not uploaded");
        return;
      }
      waiting = { name, metrics };
      running ??= uploadAll().finally(() => {
        running = undefined;
      });
    },
    async settle() {
      while (running !== undefined) await running;
      await rm(o.stagingDir, { recursive: true, force: true });
    },
  };
}
