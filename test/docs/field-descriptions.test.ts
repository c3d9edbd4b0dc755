// Every request and response field a client can send or read is described in the generated docs, and the
// description comes from the field's proto comment (scripts/docs.ts → src/api/openapi.ts). A field added to
// the protos without a comment fails here, naming it.
import assert from "node:assert/strict";
import { docFiles, generateDocs } from "../../scripts/docs.ts";

interface Schema {
  readonly description?: string;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly items?: Schema;
  readonly additionalProperties?: Schema | boolean;
}
interface Operation {
  readonly parameters?: ReadonlyArray<{ readonly name: string; readonly in: string; readonly description?: string }>;
  readonly requestBody?: { readonly content: Readonly<Record<string, { readonly schema: Schema }>> };
  readonly responses: Readonly<Record<string, { readonly content?: Readonly<Record<string, { readonly schema: Schema }>> }>>;
}
interface Document {
  readonly paths: Readonly<Record<string, Readonly<Record<string, Operation>>>>;
  readonly components: { readonly schemas: Readonly<Record<string, Schema>> };
}

const files = generateDocs();
const doc = JSON.parse(files.get(docFiles.openapi) ?? "{}") as Document;
const apiMd = files.get(docFiles.apiMd) ?? "";

const described = (s: { readonly description?: string }): boolean => (s.description ?? "").trim() !== "";

/** Every property under `schema` (nested objects, array items and map values included), by its path. */
function fieldsOf(schema: Schema, where: string): Array<{ where: string; field: Schema }> {
  const out: Array<{ where: string; field: Schema }> = [];
  for (const [name, field] of Object.entries(schema.properties ?? {})) {
    out.push({ where: `${where}.${name}`, field }, ...fieldsOf(field, `${where}.${name}`));
  }
  if (schema.items !== undefined) out.push(...fieldsOf(schema.items, `${where}[]`));
  if (typeof schema.additionalProperties === "object") out.push(...fieldsOf(schema.additionalProperties, `${where}{}`));
  return out;
}

/** Every field of the document: component properties, inline request and response bodies, parameters. */
function everyField(): Array<{ where: string; field: { readonly description?: string } }> {
  const out: Array<{ where: string; field: { readonly description?: string } }> = [];
  for (const [name, schema] of Object.entries(doc.components.schemas)) out.push(...fieldsOf(schema, name));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const at = `${method.toUpperCase()} ${path}`;
      for (const p of op.parameters ?? []) out.push({ where: `${at} ${p.in} parameter ${p.name}`, field: p });
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) out.push(...fieldsOf(media.schema, `${at} request ${type}`));
      for (const [status, response] of Object.entries(op.responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) out.push(...fieldsOf(media.schema, `${at} ${status} ${type}`));
      }
    }
  }
  return out;
}

/** The rows of the field and parameter tables of api.md, as [heading, name, description cell]. */
function apiMdRows(): Array<{ heading: string; name: string; description: string }> {
  const rows: Array<{ heading: string; name: string; description: string }> = [];
  let heading = "";
  for (const line of apiMd.split("\n")) {
    if (line.startsWith("#")) heading = line.replace(/^#+\s*/, "");
    const row = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (row === null) continue;
    // Escaped pipes (`\|`) belong to a cell; the description is the last cell.
    const cells = (row[2] ?? "").split(/(?<!\\)\|/);
    rows.push({ heading, name: row[1] ?? "", description: (cells.at(-1) ?? "").trim() });
  }
  return rows;
}

describe("field descriptions in the generated API docs", () => {
  const fields = everyField();

  it("reach every field of every request and response (the walk is not vacuous)", () => {
    // 60+ messages with several fields each, and the list parameters of every list rpc.
    assert.ok(fields.length > 300, `only ${String(fields.length)} fields found`);
    for (const expected of ["TrainingJob.required_vram_mb", "CreateTrainingJobRequest.max_runtime_seconds", "Node.isolation", "GET /api/v1/customer/datasets query parameter limit"]) {
      assert.ok(
        fields.some((f) => f.where === expected),
        `${expected} is not among the fields walked`,
      );
    }
  });

  it("describe every field in openapi.json", () => {
    const missing = fields.filter((f) => !described(f.field)).map((f) => f.where);
    assert.deepEqual(missing, [], "fields without a description: write a leading comment on each in proto/ and run `npm run generate && npm run docs`");
  });

  it("describe every field and parameter in api.md's tables", () => {
    const rows = apiMdRows();
    assert.ok(rows.length > 300, `only ${String(rows.length)} table rows found in api.md`);
    const empty = rows.filter((r) => r.description === "").map((r) => `${r.heading}: ${r.name}`);
    assert.deepEqual(empty, [], "api.md rows with an empty description cell");
  });

  it("take each description from the field's proto comment", () => {
    const limits = doc.components.schemas["Limits"]?.properties ?? {};
    assert.match(limits["job_creations_per_minute"]?.description ?? "", /seed 001: 10\)/);
    const md = apiMdRows().find((r) => r.heading === "Limits" && r.name === "job_creations_per_minute");
    assert.equal(md?.description, limits["job_creations_per_minute"]?.description);
  });
});
