// The JSON Schemas under schema/ (what editors check lab files and recipes with):
// - they are what scripts/gen-schema.ts makes of today's zod schemas (not stale);
// - every shipped lab and recipe names its schema on its first line, and that line changes
//   neither what labctl loads nor the image's identity;
// - an independent validator (Debian's python3-jsonschema) accepts every shipped lab, every
//   good fixture lab and every shipped recipe, and rejects exactly the bad fixture labs that
//   the zod schema itself rejects (the semantic checks, overlaps and the like, are labctl's
//   alone and beyond a JSON Schema);
// - the address patterns agree with the zod checks they stand for.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { REGENERATE_COMMAND, ROOT, SCHEMA_FILES } from '../../scripts/gen-schema.js';
import { loadRecipe, parseRecipe, recipeHash } from '../../src/image/recipe.js';
import { CIDR_PATTERN, IPV4_PATTERN } from '../../src/lab/json-schema.js';
import { loadLab } from '../../src/lab/load.js';
import { loadScenario } from '../../src/scenario/load.js';
import { labSchema } from '../../src/lab/schema.js';
import { editorJsonSchema, schemaFileText } from '../../src/util/json-schema.js';
import * as z from 'zod/mini';

const yamlFiles = (dir: string) =>
  readdirSync(join(ROOT, dir))
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => join(ROOT, dir, f));

// machines/*.test.yaml are scenarios (labctl test), not labs.
const SHIPPED_LABS = yamlFiles('machines').filter((f) => !f.endsWith('.test.yaml'));
const SHIPPED_SCENARIOS = yamlFiles('machines').filter((f) => f.endsWith('.test.yaml'));
const SHIPPED_RECIPES = yamlFiles('images');
const GOOD_LABS = yamlFiles('test/fixtures/good-labs');
const BAD_LABS = yamlFiles('test/fixtures/bad-labs');
const LAB_SCHEMA = join(ROOT, 'schema/lab.schema.json');
const RECIPE_SCHEMA = join(ROOT, 'schema/recipe.schema.json');
const SCENARIO_SCHEMA = join(ROOT, 'schema/scenario.schema.json');
const FIRST_LINE = {
  lab: '# yaml-language-server: $schema=../schema/lab.schema.json',
  recipe: '# yaml-language-server: $schema=../schema/recipe.schema.json',
  scenario: '# yaml-language-server: $schema=../schema/scenario.schema.json',
};

const name = (file: string) => file.slice(ROOT.length);

describe('schema files', () => {
  for (const { file, make } of SCHEMA_FILES) {
    test(`${file} is up to date`, () => {
      const path = join(ROOT, file);
      assert.ok(existsSync(path), `${file} is missing; run ${REGENERATE_COMMAND}`);
      assert.ok(
        readFileSync(path, 'utf8') === schemaFileText(make()),
        `${file} differs from what its zod schema makes (stale, or edited by hand); run ${REGENERATE_COMMAND}`,
      );
    });
  }
});

describe('the generator', () => {
  test('stops at a custom check that no refinement describes, and at a description for a key the schema lacks', () => {
    const options = { title: 't', description: 'd', refinements: [] };
    assert.throws(
      () => editorJsonSchema(z.strictObject({ a: z.string().check(z.refine((s) => s !== 'x')) }), options),
      /custom check at \/properties\/a is none of the known ones/,
    );
    assert.throws(() => editorJsonSchema(z.strictObject({ a: z.string() }), { ...options, descriptions: { b: 'B' } }), /paths the schema does not have: b/);
  });
});

describe('shipped labs and recipes name their schema', () => {
  test('there are some', () => {
    assert.ok(SHIPPED_LABS.length >= 1 && SHIPPED_RECIPES.length >= 4);
  });
  for (const file of SHIPPED_LABS) {
    test(`${name(file)}: first line, and labctl loads it`, () => {
      assert.equal(readFileSync(file, 'utf8').split('\n')[0], FIRST_LINE.lab);
      assert.doesNotThrow(() => loadLab(file));
    });
  }
  for (const file of SHIPPED_SCENARIOS) {
    test(`${name(file)}: first line, and labctl test loads it`, () => {
      assert.equal(readFileSync(file, 'utf8').split('\n')[0], FIRST_LINE.scenario);
      assert.doesNotThrow(() => loadScenario(file));
    });
  }
  for (const file of SHIPPED_RECIPES) {
    test(`${name(file)}: first line; labctl loads it, and the image is the same without it`, () => {
      const text = readFileSync(file, 'utf8');
      const [first, ...rest] = text.split('\n');
      assert.equal(first, FIRST_LINE.recipe);
      const withLine = loadRecipe(file);
      const without = parseRecipe(rest.join('\n'), { file, name: basename(file, '.yaml') });
      assert.deepEqual(withLine, without);
      assert.equal(recipeHash(withLine, true), recipeHash(without, true));
    });
  }
});

// --- the independent validator ---

/** Debian's python3 (the one python3-jsonschema installs into), else whichever is on PATH. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

// Reads {"schema": ..., "instances": [...]} on stdin; prints, per instance, its errors ([] = valid).
const VALIDATE_PY = `
import json, sys
from jsonschema.validators import validator_for
request = json.load(sys.stdin)
cls = validator_for(request["schema"])
cls.check_schema(request["schema"])
validator = cls(request["schema"])
out = [[f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(i)] for i in request["instances"]]
json.dump(out, sys.stdout)
`;

function validate(schemaFile: string, instances: unknown[]): string[][] {
  const request = JSON.stringify({ schema: JSON.parse(readFileSync(schemaFile, 'utf8')), instances });
  const r = spawnSync(PYTHON, ['-c', VALIDATE_PY], { input: request, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) assert.fail(`${PYTHON} did not run (${r.error.message}); install python3-jsonschema (apt-get install python3-jsonschema)`);
  if (/No module named .?jsonschema/.test(r.stderr))
    assert.fail(`${PYTHON} has no jsonschema module; install python3-jsonschema (apt-get install python3-jsonschema)`);
  assert.equal(r.status, 0, `the validator failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as string[][];
}

/** The YAML document as JSON sees it; undefined when it is not YAML at all (labctl's YAML stage). */
function yamlData(file: string): { data: unknown } | undefined {
  try {
    return { data: parseYaml(readFileSync(file, 'utf8'), { uniqueKeys: true }) as unknown };
  } catch {
    return undefined;
  }
}

describe('an independent validator (python3-jsonschema) with schema/*.schema.json', () => {
  test('accepts every shipped lab and every good fixture lab', () => {
    const files = [...SHIPPED_LABS, ...GOOD_LABS];
    const errors = validate(
      LAB_SCHEMA,
      files.map((f) => yamlData(f)!.data),
    );
    files.forEach((f, i) => {
      assert.deepEqual(errors[i], [], `${name(f)} is refused by the JSON Schema`);
    });
  });

  test('accepts every shipped scenario', () => {
    assert.ok(SHIPPED_SCENARIOS.length >= 1);
    const errors = validate(
      SCENARIO_SCHEMA,
      SHIPPED_SCENARIOS.map((f) => yamlData(f)!.data),
    );
    SHIPPED_SCENARIOS.forEach((f, i) => {
      assert.deepEqual(errors[i], [], `${name(f)} is refused by the JSON Schema`);
    });
  });

  test('accepts every shipped recipe', () => {
    const errors = validate(
      RECIPE_SCHEMA,
      SHIPPED_RECIPES.map((f) => yamlData(f)!.data),
    );
    SHIPPED_RECIPES.forEach((f, i) => {
      assert.deepEqual(errors[i], [], `${name(f)} is refused by the JSON Schema`);
    });
  });

  test('rejects exactly the bad fixture labs that the zod schema rejects', () => {
    const cases = BAD_LABS.flatMap((file) => {
      const parsed = yamlData(file);
      // Not YAML (or a duplicate key): no JSON document to validate.
      return parsed ? [{ file, data: parsed.data, zodRejects: !labSchema.safeParse(parsed.data).success }] : [];
    });
    const schemaLevel = cases.filter((c) => c.zodRejects).length;
    // The corpus has both kinds; if it had none of one, this test would prove little.
    assert.ok(schemaLevel >= 20 && cases.length - schemaLevel >= 20, `${schemaLevel} of ${cases.length} bad labs are schema-level`);
    const errors = validate(
      LAB_SCHEMA,
      cases.map((c) => c.data),
    );
    const disagreements = cases.flatMap((c, i) => {
      const jsonRejects = errors[i]!.length > 0;
      if (jsonRejects === c.zodRejects) return [];
      return [
        `${name(c.file)}: zod ${c.zodRejects ? 'rejects' : 'accepts'} it, the JSON Schema ${jsonRejects ? `rejects it (${errors[i]!.join('; ')})` : 'accepts it'}`,
      ];
    });
    assert.deepEqual(disagreements, []);
  });

  test('a recipe that names a literal password, misses size, or gives a file both content and source is refused', () => {
    const base = yamlData(join(ROOT, 'images/bookworm.yaml'))!.data as Record<string, unknown>;
    const { size: _size, ...sizeless } = base;
    const errors = validate(RECIPE_SCHEMA, [
      { ...base, 'root-password': 'secret' },
      sizeless,
      { ...base, files: [{ path: '/etc/motd', content: 'x', source: 'motd' }] },
      { ...base, files: [{ path: 'etc/motd', content: 'x' }] },
      { ...base, mirror: 'ftp://mirror.example/debian' },
      { ...base, files: [{ path: '/etc/motd', content: 'x' }], size: 2 * 1024 ** 3 },
    ]);
    assert.deepEqual(
      errors.map((e) => e.length > 0),
      [true, true, true, true, true, false],
      JSON.stringify(errors),
    );
  });
});

// --- the address patterns against the zod checks they stand for ---

/** Deterministic pseudo-random 32-bit numbers (a linear congruential generator). */
function* numbers(seed: number): Generator<number> {
  let x = seed >>> 0;
  for (;;) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    yield x;
  }
}

const dotted = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
const zodTakesSubnet = (s: string) => labSchema.safeParse({ name: 'x', sites: [{ name: 'a', lan: { subnet: s } }] }).success;
const zodTakesAddress = (s: string) => labSchema.safeParse({ name: 'x', sites: [{ name: 'a', lan: { gateway: s } }] }).success;

/** Subnet strings around the edges: every length 0-33, network addresses and ones with host bits set. */
function subnetSamples(): string[] {
  const out = ['10.0.1.0', '10.0.1.0/', '/24', '10.0.1.0/024', '10.0.01.0/24', '256.0.0.0/8', '10.0.1.0/24 ', '1.2.3.4/5/6'];
  const random = numbers(13);
  for (let len = 0; len <= 33; len++) {
    for (let i = 0; i < 40; i++) {
      const n = random.next().value!;
      const mask = len === 0 ? 0 : len >= 32 ? 0xffffffff : (0xffffffff << (32 - len)) >>> 0;
      out.push(`${dotted((n & mask) >>> 0)}/${len}`, `${dotted(n)}/${len}`, `${dotted((n & mask & 0xff00ffff) >>> 0)}/${len}`);
    }
  }
  return out;
}

function addressSamples(): string[] {
  const out = ['0.0.0.0', '255.255.255.255', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', '1.2.3.256', '1.2.3.4 ', 'a.b.c.d', '१.2.3.4'];
  const random = numbers(7);
  for (let i = 0; i < 300; i++) out.push(dotted(random.next().value!));
  for (const octet of ['0', '9', '10', '99', '100', '199', '200', '249', '250', '255', '256', '260', '300', '999', '00', '000', '0000'])
    out.push(`10.${octet}.0.1`);
  return out;
}

describe('address patterns', () => {
  test('the subnet pattern takes exactly the subnets zod takes (JavaScript and Python)', () => {
    const samples = subnetSamples();
    const re = new RegExp(CIDR_PATTERN);
    const zod = samples.map(zodTakesSubnet);
    assert.ok(zod.filter(Boolean).length > 200 && zod.filter((t) => !t).length > 200, 'the samples cover both kinds');
    assert.deepEqual(
      samples.filter((s, i) => re.test(s) !== zod[i]),
      [],
      'JavaScript disagrees with zod',
    );
    const errors = validate(
      LAB_SCHEMA,
      samples.map((s) => ({ name: 'x', sites: [{ name: 'a', lan: { subnet: s } }] })),
    );
    assert.deepEqual(
      samples.filter((s, i) => (errors[i]!.length === 0) !== zod[i]),
      [],
      'python3-jsonschema disagrees with zod',
    );
  });

  test('the address pattern takes exactly the addresses zod takes (JavaScript and Python)', () => {
    const samples = addressSamples();
    const re = new RegExp(IPV4_PATTERN);
    const zod = samples.map(zodTakesAddress);
    assert.deepEqual(
      samples.filter((s, i) => re.test(s) !== zod[i]),
      [],
      'JavaScript disagrees with zod',
    );
    const errors = validate(
      LAB_SCHEMA,
      samples.map((s) => ({ name: 'x', sites: [{ name: 'a', lan: { gateway: s } }] })),
    );
    assert.deepEqual(
      samples.filter((s, i) => (errors[i]!.length === 0) !== zod[i]),
      [],
      'python3-jsonschema disagrees with zod',
    );
  });
});
