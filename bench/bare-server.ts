// The baseline of bench:api: bare node:http answering a job-sized JSON body.
import { createServer } from "node:http";

const body = JSON.stringify({
  id: "6f0c1f5e-8a51-4c57-9d59-0d8f1b1f7a10",
  name: "tiny-mlp-fine-tune",
  status: "queued",
  progress: 0,
  required_vram_mb: 8000,
  required_disk_mb: 1024,
  max_runtime_seconds: 600,
  sensitivity: "low_sensitive",
  created_at: new Date().toISOString(),
  metrics: {},
});
const server = createServer((_req, res) => {
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === "object" && address !== null ? address.port : 0 })}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
