// JSON Schemas for the YAML files users write (lab files, image recipes), made from their zod
// schemas, so that an editor (VS Code's YAML extension, through a
// `# yaml-language-server: $schema=...` first line) completes and checks them.
//
// zod 4 writes JSON Schema itself (z.toJSONSchema, zod/mini's schemas included). What it
// cannot see are the custom checks (refine, superRefine): it drops them silently, so a
// schema with one would accept what labctl refuses (a subnet with host bits set). Each such
// check must therefore be described here, by a `Refinement` that recognises it by what it
// accepts and rejects and says the same in JSON Schema keywords (or as near as they can).
// A custom check no refinement recognises stops the generator: a new refine() must come
// with its description, not be dropped without anyone noticing.
//
// The target is draft-07: the YAML extension's JSON Schema support is draft-07 (newer
// drafts are partly or not understood). `io: 'input'` describes what may be WRITTEN: a key
// with a default (z._default) is optional there, and the default is shown.
import * as z from 'zod/mini';

export type JsonSchema = Record<string, unknown>;

/** A custom check (refine/superRefine) of a zod schema, in JSON Schema terms. */
export interface Refinement {
  /** What the check is about, for messages ("IPv4 address"). */
  what: string;
  /** Values the checked schema accepts, and values it rejects: how the check is recognised. */
  accepts: unknown[];
  rejects: unknown[];
  /** The JSON Schema for the checked schema, given the one zod generated without the check. */
  describe: (generated: JsonSchema) => JsonSchema;
}

export interface EditorSchemaOptions {
  /** The title and description editors show. */
  title: string;
  description: string;
  refinements: Refinement[];
  /**
   * Descriptions (hover text) by property path: "sites[].nat.type", "files[].path".
   * A path that is not in the schema is an error, so that a renamed key is noticed.
   */
  descriptions?: Record<string, string>;
}

interface ZodCheckDef {
  check: string;
}

function hasCustomCheck(schema: z.core.$ZodType): boolean {
  const checks = (schema._zod.def as { checks?: { _zod: { def: ZodCheckDef } }[] }).checks ?? [];
  return checks.some((c) => c._zod.def.check === 'custom');
}

function recognise(schema: z.core.$ZodType, refinements: Refinement[], where: string): Refinement {
  const fits = refinements.filter((r) => r.accepts.every((v) => z.safeParse(schema, v).success) && r.rejects.every((v) => !z.safeParse(schema, v).success));
  if (fits.length === 1) return fits[0]!;
  throw new Error(
    fits.length === 0
      ? `JSON Schema: the custom check at ${where} is none of the known ones (${refinements.map((r) => r.what).join(', ')}); ` +
          'describe it with a Refinement, or the JSON Schema would accept what labctl refuses'
      : `JSON Schema: the custom check at ${where} fits several refinements (${fits.map((r) => r.what).join(', ')}); make their probes tell them apart`,
  );
}

/** Walks properties and array items, calling fn with the dotted path ("sites[].nat.type"). */
function walk(schema: JsonSchema, path: string, fn: (path: string, node: JsonSchema) => void): void {
  fn(path, schema);
  const properties = schema.properties as Record<string, JsonSchema> | undefined;
  for (const [key, sub] of Object.entries(properties ?? {})) walk(sub, path ? `${path}.${key}` : key, fn);
  const items = schema.items as JsonSchema | undefined;
  if (items && typeof items === 'object' && !Array.isArray(items)) walk(items, `${path}[]`, fn);
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    for (const sub of (schema[key] as JsonSchema[] | undefined) ?? []) walk(sub, path, fn);
  }
}

/** The editor's JSON Schema for a zod schema (pure; throws on a custom check it cannot describe). */
export function editorJsonSchema(schema: z.core.$ZodType, options: EditorSchemaOptions): JsonSchema {
  const generated = z.toJSONSchema(schema, {
    target: 'draft-07',
    io: 'input',
    // 'throw' (the default) for what JSON Schema cannot express at all (a transform, a
    // z.custom): the generator stops rather than let such a field accept anything.
    unrepresentable: 'throw',
    override: (ctx) => {
      if (!hasCustomCheck(ctx.zodSchema)) return;
      const refinement = recognise(ctx.zodSchema, options.refinements, `/${ctx.path.join('/')}`);
      const described = refinement.describe({ ...ctx.jsonSchema });
      for (const key of Object.keys(ctx.jsonSchema)) delete ctx.jsonSchema[key];
      Object.assign(ctx.jsonSchema, described);
    },
  }) as JsonSchema;
  // zod inlines a schema used in several places as the very same object: copy it, so that a
  // description given to one place does not appear at all of them.
  const copy = JSON.parse(JSON.stringify(generated)) as JsonSchema;
  const { $schema, ...body } = copy;
  const out: JsonSchema = { $schema, title: options.title, description: options.description, ...body };
  const wanted = new Map(Object.entries(options.descriptions ?? {}));
  walk(out, '', (path, node) => {
    const text = wanted.get(path);
    if (text === undefined) return;
    node.description = text;
    wanted.delete(path);
  });
  if (wanted.size) throw new Error(`JSON Schema: descriptions for paths the schema does not have: ${[...wanted.keys()].join(', ')}`);
  return out;
}

/** The file's text: two-space JSON and a final newline, so that regenerating is byte-stable. */
export function schemaFileText(schema: JsonSchema): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}
