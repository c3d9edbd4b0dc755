// Static checks of charts/gpu-agent that need neither helm nor a cluster: values.yaml parses and validates
// against values.schema.json (with a small draft-07 validator for the keywords the schema uses), every
// .Values path the templates read exists, and the rendered objects keep the contract the scheduler relies on
// (one `http` port, probes on /healthz and /readyz, env names the scheduler actually reads, shared blob volume).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseWithYamlPackage } from "yaml";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const chart = join(repo, "charts", "gpu-agent");
const read = (...parts: string[]): string => readFileSync(join(...parts), "utf8");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------------------
// A YAML reader for the subset values files use (block maps and lists, `{}`/`[]`, quoted and plain scalars,
// comments). Cross-checked against js-yaml below when that package happens to be resolvable.

interface Line {
  indent: number;
  text: string;
  no: number;
}

function stripComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#" && (i === 0 || text[i - 1] === " ")) {
      return text.slice(0, i).trimEnd();
    }
  }
  return text.trimEnd();
}

function scalar(raw: string, no: number): Json {
  const text = raw.trim();
  if (text === "{}") return {};
  if (text === "[]") return [];
  if (text.startsWith("[") && text.endsWith("]")) return text.slice(1, -1).split(",").map((s) => scalar(s, no));
  if (text.startsWith("{") || text.startsWith("|") || text.startsWith(">") || text.startsWith("&") || text.startsWith("*")) {
    throw new Error(`line ${no}: YAML construct outside the supported subset: ${text}`);
  }
  if (text.startsWith('"')) return JSON.parse(text) as string;
  if (text.startsWith("'")) return text.slice(1, -1).replaceAll("''", "'");
  if (text === "" || text === "~" || text === "null") return null;
  if (text === "true") return true;
  if (text === "false") return false;
  if (/^-?(0|[1-9][0-9]*)$/.test(text)) return Number(text);
  if (/^-?[0-9]+\.[0-9]+$/.test(text)) return Number(text);
  return text;
}

const keyPattern = /^("[^"]*"|'[^']*'|[^\s"'#:][^:#]*?)\s*:(?:\s+(.*))?$/;

function parseYaml(source: string): Json {
  const lines: Line[] = [];
  source.split("\n").forEach((raw, i) => {
    if (raw.includes("\t")) throw new Error(`line ${i + 1}: tab`);
    const text = stripComment(raw);
    if (text.trim() === "" || text.trim() === "---") return;
    const indent = text.length - text.trimStart().length;
    // "- key: value" opens a map inside a list item: split it into "-" and "key: value" two columns deeper.
    const item = /^(\s*)-\s+(.*)$/.exec(text);
    if (item?.[2] !== undefined && keyPattern.test(item[2]) && !item[2].startsWith('"')) {
      lines.push({ indent, text: "-", no: i + 1 });
      lines.push({ indent: indent + 2, text: item[2], no: i + 1 });
    } else {
      lines.push({ indent, text: text.trim(), no: i + 1 });
    }
  });
  let pos = 0;

  const block = (indent: number): Json => {
    const first = lines[pos];
    if (first === undefined || first.indent < indent) return null;
    const isList = first.text === "-" || first.text.startsWith("- ");
    const at = first.indent;
    if (isList) {
      const list: Json[] = [];
      for (let line = lines[pos]; line !== undefined && line.indent === at; line = lines[pos]) {
        if (!(line.text === "-" || line.text.startsWith("- "))) throw new Error(`line ${line.no}: expected a list item`);
        pos++;
        list.push(line.text === "-" ? block(at + 1) : scalar(line.text.slice(2), line.no));
      }
      return list;
    }
    const map: JsonObject = {};
    for (let line = lines[pos]; line !== undefined && line.indent === at; line = lines[pos]) {
      const m = keyPattern.exec(line.text);
      if (m?.[1] === undefined) throw new Error(`line ${line.no}: expected "key: value", got ${line.text}`);
      const key = String(scalar(m[1], line.no));
      if (key in map) throw new Error(`line ${line.no}: duplicate key ${key}`);
      pos++;
      if (m[2] !== undefined && m[2] !== "") {
        map[key] = scalar(m[2], line.no);
      } else {
        const next = lines[pos];
        // A list may sit at the key's own indentation ("key:\n- a").
        const nested = next !== undefined && (next.indent > at || (next.indent === at && (next.text === "-" || next.text.startsWith("- "))));
        map[key] = nested ? block(next.indent) : null;
      }
    }
    return map;
  };

  const doc = block(0);
  const rest = lines[pos];
  if (rest !== undefined) throw new Error(`line ${rest.no}: unexpected indentation`);
  return doc;
}

/** js-yaml, when it is installed (mocha depends on it; the project does not declare it). */

// ---------------------------------------------------------------------------------------------------------
// A draft-07 validator for the keywords values.schema.json uses; unknown keywords are rejected by a test so
// that nothing in the schema is silently ignored here.

const assertionKeywords = new Set([
  "type", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
  "uniqueItems", "items", "properties", "required", "additionalProperties", "allOf", "anyOf", "oneOf", "not",
  "if", "then", "else", "$ref",
]);
const annotationKeywords = new Set(["$schema", "$id", "$comment", "title", "description", "default", "examples", "definitions"]);

function typeOf(value: Json): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function resolveRef(root: JsonObject, ref: string): JsonObject {
  assert.ok(ref.startsWith("#/"), `only local $ref is supported: ${ref}`);
  let node: Json | undefined = root;
  for (const part of ref.slice(2).split("/")) node = isObject(node) ? node[part] : undefined;
  assert.ok(isObject(node), `unresolvable $ref ${ref}`);
  return node;
}

/** Errors as "path: message"; empty when the value is valid. */
function validate(root: JsonObject, schema: Json, value: Json, path = "$"): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: no value is allowed here`];
  if (!isObject(schema)) throw new Error(`bad schema at ${path}`);
  const errors: string[] = [];
  const sub = (s: Json | undefined, v: Json, p: string): string[] => (s === undefined ? [] : validate(root, s, v, p));

  if (typeof schema["$ref"] === "string") errors.push(...validate(root, resolveRef(root, schema["$ref"]), value, path));
  const t = schema["type"];
  if (t !== undefined) {
    const types = Array.isArray(t) ? t : [t];
    const actual = typeOf(value);
    if (!types.some((x) => x === actual || (x === "number" && actual === "integer"))) {
      return [...errors, `${path}: expected ${types.join(" or ")}, got ${actual}`];
    }
  }
  const en = schema["enum"];
  if (Array.isArray(en) && !en.some((x) => JSON.stringify(x) === JSON.stringify(value))) errors.push(`${path}: not one of ${JSON.stringify(en)}`);
  if ("const" in schema && JSON.stringify(schema["const"]) !== JSON.stringify(value)) errors.push(`${path}: must be ${JSON.stringify(schema["const"])}`);
  if (typeof value === "number") {
    if (typeof schema["minimum"] === "number" && value < schema["minimum"]) errors.push(`${path}: below the minimum ${schema["minimum"]}`);
    if (typeof schema["maximum"] === "number" && value > schema["maximum"]) errors.push(`${path}: above the maximum ${schema["maximum"]}`);
  }
  if (typeof value === "string") {
    const length = [...value].length;
    if (typeof schema["minLength"] === "number" && length < schema["minLength"]) errors.push(`${path}: shorter than ${schema["minLength"]}`);
    if (typeof schema["maxLength"] === "number" && length > schema["maxLength"]) errors.push(`${path}: longer than ${schema["maxLength"]}`);
    if (typeof schema["pattern"] === "string" && !new RegExp(schema["pattern"], "u").test(value)) errors.push(`${path}: does not match ${schema["pattern"]}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema["minItems"] === "number" && value.length < schema["minItems"]) errors.push(`${path}: fewer than ${schema["minItems"]} items`);
    if (typeof schema["maxItems"] === "number" && value.length > schema["maxItems"]) errors.push(`${path}: more than ${schema["maxItems"]} items`);
    if (schema["uniqueItems"] === true && new Set(value.map((x) => JSON.stringify(x))).size !== value.length) errors.push(`${path}: duplicate items`);
    value.forEach((item, i) => errors.push(...sub(schema["items"], item, `${path}[${i}]`)));
  }
  if (isObject(value)) {
    const required = schema["required"];
    if (Array.isArray(required)) {
      for (const key of required) if (typeof key === "string" && !(key in value)) errors.push(`${path}.${key}: required`);
    }
    const props = isObject(schema["properties"]) ? schema["properties"] : {};
    for (const [key, v] of Object.entries(value)) {
      if (key in props) errors.push(...sub(props[key], v, `${path}.${key}`));
      else errors.push(...sub(schema["additionalProperties"], v, `${path}.${key}`));
    }
  }
  for (const s of Array.isArray(schema["allOf"]) ? schema["allOf"] : []) errors.push(...validate(root, s, value, path));
  if (Array.isArray(schema["anyOf"]) && !schema["anyOf"].some((s) => validate(root, s, value, path).length === 0)) errors.push(`${path}: matches no anyOf branch`);
  if (Array.isArray(schema["oneOf"]) && schema["oneOf"].filter((s) => validate(root, s, value, path).length === 0).length !== 1) errors.push(`${path}: must match exactly one oneOf branch`);
  if (schema["not"] !== undefined && validate(root, schema["not"], value, path).length === 0) errors.push(`${path}: matches a "not" schema`);
  if (schema["if"] !== undefined) {
    const branch = validate(root, schema["if"], value, path).length === 0 ? schema["then"] : schema["else"];
    errors.push(...sub(branch, value, path));
  }
  return errors;
}

/** Every keyword of every subschema, with its location. */
function keywords(schema: Json, path: string, out: Array<[string, string]>): Array<[string, string]> {
  if (!isObject(schema)) return out;
  for (const [key, value] of Object.entries(schema)) {
    out.push([key, path]);
    if (key === "properties" || key === "definitions") {
      if (isObject(value)) for (const [name, s] of Object.entries(value)) keywords(s, `${path}/${key}/${name}`, out);
    } else if (key === "allOf" || key === "anyOf" || key === "oneOf") {
      if (Array.isArray(value)) value.forEach((s, i) => keywords(s, `${path}/${key}/${i}`, out));
    } else if (["items", "additionalProperties", "not", "if", "then", "else"].includes(key)) {
      keywords(value, `${path}/${key}`, out);
    }
  }
  return out;
}

function merge(base: Json, override: Json): Json {
  if (!isObject(base) || !isObject(override)) return structuredClone(override);
  const out: JsonObject = structuredClone(base);
  for (const [key, value] of Object.entries(override)) out[key] = key in out ? merge(out[key] ?? null, value) : structuredClone(value);
  return out;
}

function at(value: Json, path: string): Json | undefined {
  let node: Json | undefined = value;
  for (const part of path.split(".")) node = isObject(node) ? node[part] : undefined;
  return node;
}

// ---------------------------------------------------------------------------------------------------------

const templateDir = join(chart, "templates");
const templateFiles = readdirSync(templateDir).sort();
const templates = new Map(templateFiles.map((f) => [f, read(templateDir, f)] as const));
const template = (name: string): string => {
  const text = templates.get(name);
  assert.ok(text !== undefined, `templates/${name} is missing`);
  return text;
};

const values = parseYaml(read(chart, "values.yaml"));
const ciValues = parseYaml(read(chart, "ci", "default-values.yaml"));
const schemaJson = JSON.parse(read(chart, "values.schema.json")) as Json;
assert.ok(isObject(schemaJson));
const schema: JsonObject = schemaJson;
const check = (v: Json): string[] => validate(schema, schema, v);
const installable = merge(values, ciValues);

describe("charts/gpu-agent", () => {
  describe("Chart.yaml", () => {
    it("is a Helm 3 application chart named gpu-agent at 0.1.0", () => {
      const meta = parseYaml(read(chart, "Chart.yaml"));
      assert.ok(isObject(meta));
      assert.equal(meta["apiVersion"], "v2");
      assert.equal(meta["name"], "gpu-agent");
      assert.equal(meta["version"], "0.1.0");
      assert.equal(meta["appVersion"], "0.1.0");
      assert.equal(meta["type"], "application");
    });
  });

  describe("values.yaml", () => {
    it("parses; the subset reader agrees with the yaml package (a full YAML 1.2 parser)", function () {
      assert.ok(isObject(values));
      assert.ok(isObject(ciValues));
      for (const file of ["values.yaml", join("ci", "default-values.yaml"), "Chart.yaml"]) {
        const text = read(chart, file);
        assert.deepEqual(parseYaml(text), parseWithYamlPackage(text), file);
      }
    });

    it("has the documented defaults", () => {
      assert.equal(at(values, "replicaCount"), 3);
      assert.equal(at(values, "service.type"), "ClusterIP");
      assert.equal(at(values, "service.port"), 8080);
      assert.equal(at(values, "database.key"), "DATABASE_URL");
      assert.deepEqual(at(values, "etcd.endpoints"), []);
      assert.equal(at(values, "podDisruptionBudget.minAvailable"), 2);
      assert.equal(at(values, "serviceMonitor.enabled"), false);
      assert.equal(at(values, "logLevel"), "info");
      assert.deepEqual(at(values, "affinity"), {});
    });

    it("documents every top-level key with a comment", () => {
      const lines = read(chart, "values.yaml").split("\n");
      lines.forEach((line, i) => {
        if (!/^[A-Za-z]/.test(line)) return;
        let j = i - 1;
        while (j >= 0 && lines[j]?.trim() === "") j--;
        const previous = lines[j] ?? "";
        const child = lines[i + 1] ?? "";
        assert.ok(previous.startsWith("#") || /^\s+# /.test(child), `values.yaml: no comment for "${line}"`);
      });
    });
  });

  describe("values.schema.json", () => {
    it("is draft-07 and uses only keywords this validator implements", () => {
      assert.equal(schema["$schema"], "http://json-schema.org/draft-07/schema#");
      for (const [keyword, path] of keywords(schema, "#", [])) {
        assert.ok(assertionKeywords.has(keyword) || annotationKeywords.has(keyword), `${path}: unsupported keyword ${keyword}`);
      }
    });

    it("requires only keys that values.yaml defines, and declares every key values.yaml defines", () => {
      const walk = (s: Json, v: Json | undefined, path: string): void => {
        if (!isObject(s)) return;
        const target = typeof s["$ref"] === "string" ? resolveRef(schema, s["$ref"]) : s;
        for (const part of Array.isArray(s["allOf"]) ? s["allOf"] : []) walk(part, v, path);
        if (!isObject(v)) return;
        const required = target["required"];
        if (Array.isArray(required)) for (const key of required) assert.ok(typeof key === "string" && key in v, `${path}.${String(key)} is required but not in values.yaml`);
        const props = target["properties"];
        if (isObject(props)) {
          if (target["additionalProperties"] === false) for (const key of Object.keys(v)) assert.ok(key in props, `${path}.${key} is not declared`);
          for (const [key, sub] of Object.entries(props)) walk(sub, v[key], `${path}.${key}`);
        }
      };
      walk(schema, values, "$");
    });

    it("rejects the bare defaults, naming exactly the values an install must provide", () => {
      const paths = [...new Set(check(values).map((e) => e.split(":")[0]))].sort();
      assert.deepEqual(paths, [
        "$.adminToken.existingSecret",
        "$.blobs.persistentVolumeClaim",
        "$.database.existingSecret",
        "$.etcd.endpoints",
        "$.signingKey.existingSecret",
      ]);
    });

    it("accepts values.yaml with ci/default-values.yaml", () => {
      assert.deepEqual(check(installable), []);
    });

    it("needs only the database Secret and the blob claim for a single replica", () => {
      const one = merge(values, { replicaCount: 1, database: { existingSecret: "pg" }, blobs: { persistentVolumeClaim: "blobs" } });
      assert.deepEqual(check(one), []);
    });

    it("rejects bad values", () => {
      const bad: Array<[JsonObject, string]> = [
        [{ replicaCount: 0 }, "$.replicaCount"],
        [{ replicaCount: "3" }, "$.replicaCount"],
        [{ image: { pullPolicy: "Sometimes" } }, "$.image.pullPolicy"],
        [{ service: { port: 70000 } }, "$.service.port"],
        [{ etcd: { endpoints: ["etcd:2379"] } }, "$.etcd.endpoints[0]"],
        [{ etcd: { endpoints: "http://etcd:2379" } }, "$.etcd.endpoints"],
        [{ database: { existingSecret: "" } }, "$.database.existingSecret"],
        [{ database: { key: "" } }, "$.database.key"],
        [{ blobs: { persistentVolumeClaim: "Not_A_Name" } }, "$.blobs.persistentVolumeClaim"],
        [{ publicUrl: "gpu.example.com" }, "$.publicUrl"],
        [{ logLevel: "verbose" }, "$.logLevel"],
        [{ podDisruptionBudget: { minAvailable: 0 } }, "$.podDisruptionBudget.minAvailable"],
        [{ serviceMonitor: { interval: "often" } }, "$.serviceMonitor.interval"],
        [{ tolerations: {} }, "$.tolerations"],
        [{ unknownKey: true }, "$.unknownKey"],
      ];
      for (const [override, path] of bad) {
        const errors = check(merge(installable, override));
        assert.ok(errors.some((e) => e.startsWith(`${path}:`) || e.startsWith(`${path}.`)), `${JSON.stringify(override)} → ${JSON.stringify(errors)}`);
      }
      assert.deepEqual(check(merge(installable, { podDisruptionBudget: { minAvailable: "50%" } })), []);
    });
  });

  describe("templates", () => {
    it("has the expected files", () => {
      for (const f of ["_helpers.tpl", "deployment.yaml", "service.yaml", "configmap.yaml", "pdb.yaml", "servicemonitor.yaml", "NOTES.txt"]) {
        assert.ok(templates.has(f), f);
      }
    });

    it("reads only .Values paths that values.yaml defines", () => {
      for (const [file, text] of templates) {
        for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
          const path = (m[1] ?? "").slice(1);
          assert.notEqual(at(values, path), undefined, `${file}: .Values.${path} is not in values.yaml`);
        }
      }
    });

    it("includes only helpers that _helpers.tpl defines, and defines name/fullname/labels/selectorLabels", () => {
      const defined = new Set([...template("_helpers.tpl").matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
      for (const name of ["gpu-agent.name", "gpu-agent.fullname", "gpu-agent.labels", "gpu-agent.selectorLabels"]) assert.ok(defined.has(name), name);
      for (const [file, text] of templates) {
        for (const m of text.matchAll(/include "([^"]+)"/g)) assert.ok(defined.has(m[1]), `${file}: include "${m[1]}" is not defined`);
      }
    });

    it("balances every if/with/range/define with an end", () => {
      for (const [file, text] of templates) {
        let depth = 0;
        for (const m of text.matchAll(/\{\{-?\s*(if|with|range|define|end)\b/g)) {
          depth += m[1] === "end" ? -1 : 1;
          assert.ok(depth >= 0, `${file}: unmatched end`);
        }
        assert.equal(depth, 0, `${file}: unclosed block`);
        assert.equal((text.match(/\{\{/g) ?? []).length, (text.match(/\}\}/g) ?? []).length, `${file}: unbalanced braces`);
      }
    });

    it("sets only environment variables the scheduler reads", () => {
      const source = ["src/platform/config.ts", "src/control-plane-env.ts", "src/limits/request-limits.ts", "src/webhooks/env.ts", "cmd/scheduler.ts"]
        .map((file) => read(repo, ...file.split("/")))
        .join("\n");
      const known = new Set([...source.matchAll(/(?:env\[|intFrom\(env, )"([A-Z0-9_]+)"/g)].map((m) => m[1]));
      const configMapKeys = [...template("configmap.yaml").split(/^data:$/m)[1]!.matchAll(/^ {2}([A-Z0-9_]+):/gm)].map((m) => m[1]);
      const deploymentEnv = [...template("deployment.yaml").matchAll(/- name: ([A-Z0-9_]+)$/gm)].map((m) => m[1]);
      const all = [...configMapKeys, ...deploymentEnv];
      for (const name of all) assert.ok(known.has(name), `${name} is not read by the scheduler`);
      for (const name of ["HOST", "PORT", "DATABASE_URL", "ETCD_ENDPOINTS", "GPU_AGENT_DATA_DIR", "GPU_AGENT_BLOB_DIR", "GPU_AGENT_PUBLIC_URL", "GPU_AGENT_REPLICA_ID", "GPU_AGENT_ADMIN_TOKEN", "LOG_LEVEL"]) {
        assert.ok(all.includes(name), `${name} is not set`);
      }
      assert.match(template("configmap.yaml"), /HOST: "0\.0\.0\.0"/);
      assert.match(template("configmap.yaml"), /PORT: "8080"/);
      assert.match(template("configmap.yaml"), /ETCD_ENDPOINTS: \{\{ join "," \.Values\.etcd\.endpoints/);
    });
  });

  describe("deployment.yaml", () => {
    const d = template("deployment.yaml");
    const configMap = template("configmap.yaml");

    it("runs the scheduler on one port named http", () => {
      assert.match(d, /^kind: Deployment$/m);
      assert.match(d, /replicas: \{\{ \.Values\.replicaCount \}\}/);
      // The same node flags as `npm run scheduler` (package.json), which the agents benchmark measures.
      const script = (JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts["scheduler"]!;
      const args = script.split(" ").map((a) => `"${a}"`).join(", ");
      assert.ok(d.includes(`command: [${args}]`), `the chart runs ${script}`);
      assert.equal((d.match(/containerPort:/g) ?? []).length, 1);
      assert.match(d, /- name: http\n\s+containerPort: 8080/);
      assert.match(d, /terminationGracePeriodSeconds: 30/);
    });

    it("probes /readyz for readiness and /healthz for liveness and startup", () => {
      const probe = (kind: string): string => {
        const m = new RegExp(`${kind}:\\n\\s+(?:#.*\\n\\s+)?httpGet:\\n\\s+path: (\\S+)\\n\\s+port: (\\S+)`).exec(d);
        assert.ok(m !== null, `${kind} with httpGet`);
        assert.equal(m[2], "http");
        return m[1] ?? "";
      };
      assert.equal(probe("readinessProbe"), "/readyz");
      assert.equal(probe("livenessProbe"), "/healthz");
      assert.equal(probe("startupProbe"), "/healthz");
    });

    it("takes secrets from secretKeyRefs and the replica id from the pod name", () => {
      assert.match(d, /configMapRef:\n\s+name: \{\{ \$fullname \}\}/);
      assert.match(d, /- name: GPU_AGENT_REPLICA_ID\n\s+valueFrom:\n\s+fieldRef:\n\s+fieldPath: metadata\.name/);
      assert.match(d, /- name: DATABASE_URL\n\s+valueFrom:\n\s+secretKeyRef:\n\s+name: \{\{ required "[^"]+" \.Values\.database\.existingSecret \}\}\n\s+key: \{\{ \.Values\.database\.key \}\}/);
      assert.match(d, /- name: GPU_AGENT_ADMIN_TOKEN\n\s+valueFrom:\n\s+secretKeyRef:\n\s+name: \{\{ \.Values\.adminToken\.existingSecret \}\}/);
      assert.doesNotMatch(configMap, /DATABASE_URL|ADMIN_TOKEN|signing/i, "no secret in the ConfigMap");
    });

    it("mounts the shared RWX claim at GPU_AGENT_BLOB_DIR and an emptyDir at GPU_AGENT_DATA_DIR", () => {
      assert.match(configMap, /GPU_AGENT_BLOB_DIR: "\/var\/lib\/gpu-agent\/blobs"/);
      assert.match(configMap, /GPU_AGENT_DATA_DIR: "\/var\/lib\/gpu-agent\/data"/);
      assert.match(d, /- name: blobs\n\s+mountPath: \/var\/lib\/gpu-agent\/blobs/);
      assert.match(d, /- name: blobs\n\s+persistentVolumeClaim:\n\s+claimName: \{\{ required "[^"]+" \.Values\.blobs\.persistentVolumeClaim \}\}/);
      assert.match(d, /- name: data\n\s+mountPath: \/var\/lib\/gpu-agent\/data/);
      assert.match(d, /- name: data\n\s+emptyDir: \{\}/);
    });

    it("puts the signing key where the scheduler reads it, in the data directory", () => {
      // src/control-plane.ts reads (or, missing, generates) $GPU_AGENT_DATA_DIR/signing-key.
      assert.match(read(repo, "src", "control-plane.ts"), /persistentSecret\(config\.dataDir, "signing-key"\)/);
      assert.match(d, /- name: signing-key\n\s+mountPath: \/var\/lib\/gpu-agent\/data\/signing-key\n\s+subPath: signing-key/);
      assert.match(d, /secretName: \{\{ \.Values\.signingKey\.existingSecret \}\}[\s\S]*?- key: \{\{ \.Values\.signingKey\.key \}\}\n\s+path: signing-key/);
    });

    it("runs locked down: non-root, read-only root filesystem with /tmp as emptyDir, no capabilities", () => {
      assert.match(d, /runAsNonRoot: true/);
      assert.match(d, /readOnlyRootFilesystem: true/);
      assert.match(d, /allowPrivilegeEscalation: false/);
      assert.match(d, /capabilities:\n\s+drop: \["ALL"\]/);
      assert.match(d, /- name: tmp\n\s+mountPath: \/tmp/);
      assert.match(d, /- name: tmp\n\s+emptyDir: \{\}/);
      assert.match(d, /automountServiceAccountToken: false/);
    });

    it("spreads replicas across nodes with a soft anti-affinity unless affinity is set", () => {
      assert.match(d, /\{\{- if \.Values\.affinity \}\}[\s\S]*\{\{- else \}\}[\s\S]*podAntiAffinity:\n\s+preferredDuringSchedulingIgnoredDuringExecution:[\s\S]*topologyKey: kubernetes\.io\/hostname/);
      assert.doesNotMatch(d, /requiredDuringScheduling/);
      for (const key of ["resources", "nodeSelector", "tolerations", "imagePullSecrets", "podAnnotations"]) {
        assert.match(d, new RegExp(`\\.Values\\.${key}\\b`), key);
      }
    });
  });

  describe("service, PDB, ServiceMonitor", () => {
    it("Service exposes port http without an h2c appProtocol (HTTP/1.1 and gRPC share it)", () => {
      const s = template("service.yaml");
      assert.match(s, /^kind: Service$/m);
      assert.match(s, /type: \{\{ \.Values\.service\.type \}\}/);
      assert.match(s, /- name: http\n\s+port: \{\{ \.Values\.service\.port \}\}\n\s+targetPort: http/);
      assert.doesNotMatch(s, /^\s*appProtocol:/m);
      assert.match(s, /h2c prior knowledge/);
    });

    it("PodDisruptionBudget is policy/v1 with minAvailable from values", () => {
      const p = template("pdb.yaml");
      assert.match(p, /^apiVersion: policy\/v1$/m);
      assert.match(p, /^kind: PodDisruptionBudget$/m);
      assert.match(p, /^\{\{- if and \.Values\.podDisruptionBudget\.enabled/);
      assert.match(p, /minAvailable: \{\{ \.Values\.podDisruptionBudget\.minAvailable \}\}/);
    });

    it("ServiceMonitor is monitoring.coreos.com/v1, rendered only when enabled, scraping /metrics on http", () => {
      const m = template("servicemonitor.yaml");
      assert.match(m, /^\{\{- if \.Values\.serviceMonitor\.enabled \}\}\n/);
      assert.match(m, /\{\{- end \}\}\n?$/);
      assert.match(m, /^apiVersion: monitoring\.coreos\.com\/v1$/m);
      assert.match(m, /- port: http\n\s+path: \/metrics/);
      assert.match(m, /interval: \{\{ \.Values\.serviceMonitor\.interval \}\}/);
    });
  });

  describe("README.md", () => {
    it("names the required values and shows an install with external PostgreSQL and etcd", () => {
      const readme = read(chart, "README.md");
      for (const value of ["database.existingSecret", "blobs.persistentVolumeClaim", "etcd.endpoints", "adminToken.existingSecret", "signingKey.existingSecret"]) {
        assert.ok(readme.includes(value), value);
      }
      assert.match(readme, /helm (upgrade --)?install/);
      assert.match(readme, /DATABASE_URL=postgres(ql)?:\/\//);
      assert.match(readme, /ReadWriteMany/);
    });
  });
});
