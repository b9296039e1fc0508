// Writes the JSON Schemas of the files users write, schema/lab.schema.json,
// schema/recipe.schema.json and schema/scenario.schema.json, from their zod schemas
// (src/lab/json-schema.ts, src/image/json-schema.ts, src/scenario/json-schema.ts).
// `npm run build` runs it; test/unit/schema.test.ts fails when the checked-in files differ
// from what it would write.
//   node --import tsx scripts/gen-schema.ts
// A file is rewritten only when its text changes, so a build leaves unchanged ones alone.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { recipeJsonSchema } from '../src/image/json-schema.js';
import { labJsonSchema } from '../src/lab/json-schema.js';
import { scenarioJsonSchema } from '../src/scenario/json-schema.js';
import { type JsonSchema, schemaFileText } from '../src/util/json-schema.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const REGENERATE_COMMAND = 'node --import tsx scripts/gen-schema.ts (or npm run build)';

/** Each schema file, relative to the project's root, and what it holds. */
export const SCHEMA_FILES: { file: string; make: () => JsonSchema }[] = [
  { file: 'schema/lab.schema.json', make: labJsonSchema },
  { file: 'schema/recipe.schema.json', make: recipeJsonSchema },
  { file: 'schema/scenario.schema.json', make: scenarioJsonSchema },
];

function main(): void {
  mkdirSync(join(ROOT, 'schema'), { recursive: true });
  for (const { file, make } of SCHEMA_FILES) {
    const path = join(ROOT, file);
    const text = schemaFileText(make());
    if (existsSync(path) && readFileSync(path, 'utf8') === text) continue;
    writeFileSync(path, text);
    process.stdout.write(`wrote ${file}\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
