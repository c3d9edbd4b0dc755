/**
 * Loaded by mocha first (.mocharc.json `require`): V8's code cache for this process and, through the
 * environment, for the CLIs and agents the tests start. Node compiles every .ts module again in each
 * process otherwise, about half of a CLI's start-up, and the tests start hundreds of them. Entries are
 * keyed by the file's content and the Node version, so an edited file is compiled anew.
 */
import { enableCompileCache } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = process.env["NODE_COMPILE_CACHE"] ?? join(tmpdir(), "gpu-agent-test-compile-cache");
process.env["NODE_COMPILE_CACHE"] = dir;
enableCompileCache(dir);
