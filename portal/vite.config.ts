/**
 * Vite build of the web portal. `npm run build:portal` (scripts/build-portal.ts)
 * runs it; the control plane serves portal/dist at /portal/ (src/portal-server/).
 * `npm run dev:portal` serves the app with hot reload and proxies the API and
 * the session routes to a control plane on :8080 (`npm start`).
 */
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const api = process.env["GPU_AGENT_URL"] ?? "http://127.0.0.1:8080";

export default defineConfig({
  root: import.meta.dirname,
  base: "/portal/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Every asset is a file under assets/ (content-hashed), never a data: URL, so the CSP stays strict.
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      "/api": api,
      "/blobs": api,
      "/portal/session": api,
    },
  },
});
