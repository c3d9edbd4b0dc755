/** The port's bounds from the environment (transportConfigFromEnv, docs/limits.md). */
import assert from "node:assert/strict";
import { defaultTransport, schedulerConfigFromEnv, transportConfigFromEnv } from "../../src/platform/config.ts";

describe("Transport settings from the environment", () => {
  it("defaults to the documented values", () => {
    assert.deepEqual(transportConfigFromEnv({}), defaultTransport);
    assert.deepEqual(schedulerConfigFromEnv({}).transport, defaultTransport);
  });

  it("reads every variable", () => {
    const env = {
      GPU_AGENT_MAX_BODY_BYTES: "2048",
      GPU_AGENT_MAX_AGENT_MESSAGE_BYTES: "4096",
      GPU_AGENT_HEADERS_TIMEOUT_MS: "1000",
      GPU_AGENT_BODY_TIMEOUT_MS: "2000",
      GPU_AGENT_KEEP_ALIVE_TIMEOUT_MS: "3000",
      GPU_AGENT_HTTP2_IDLE_TIMEOUT_MS: "4000",
      GPU_AGENT_MAX_CONCURRENT_STREAMS: "50",
      GPU_AGENT_AGENT_MAX_CONCURRENT_STREAMS: "4",
      GPU_AGENT_MAX_CONNECTIONS_PER_ADDRESS: "0",
      GPU_AGENT_MAX_STREAMS_PER_ADDRESS: "64",
    };
    assert.deepEqual(transportConfigFromEnv(env), {
      maxBodyBytes: 2048,
      maxAgentMessageBytes: 4096,
      headersTimeoutMs: 1000,
      bodyTimeoutMs: 2000,
      keepAliveTimeoutMs: 3000,
      http2IdleTimeoutMs: 4000,
      maxConcurrentStreams: 50,
      agentMaxConcurrentStreams: 4,
      maxConnectionsPerAddress: 0,
      maxStreamsPerAddress: 64,
    });
  });

  const refused: Array<[string, string, RegExp]> = [
    ["GPU_AGENT_BODY_TIMEOUT_MS", "0", /GPU_AGENT_BODY_TIMEOUT_MS must be at least 1/],
    ["GPU_AGENT_MAX_BODY_BYTES", "0", /GPU_AGENT_MAX_BODY_BYTES must be at least 1/],
    ["GPU_AGENT_MAX_CONCURRENT_STREAMS", "4294967296", /at most 2147483647/],
    ["GPU_AGENT_HEADERS_TIMEOUT_MS", "soon", /non-negative integer/],
  ];
  for (const [name, value, message] of refused) {
    it(`refuses ${name}=${value}`, () => {
      assert.throws(() => transportConfigFromEnv({ [name]: value }), message);
    });
  }
});
