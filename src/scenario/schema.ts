// The scenario file's shape (`labctl test FILE`), as zod schemas, and its first stage: YAML
// text to a ScenarioFile, with params substituted (params.ts) and every problem zod finds.
// Keys are kebab-case, unknown keys are errors, as in lab files (lab/schema.ts). What zod
// cannot say (exactly one kind per step, members and addresses of the lab, regexes that
// compile) is load.ts's second stage.
import { type Document, isPair, isScalar, isSeq, parseDocument, type Scalar, visit } from 'yaml';
import type { core } from 'zod/mini';
import * as z from 'zod/mini';
import { PERCENT_FORMAT, PERCENT_PATTERN, RATE_FORMAT, RATE_PATTERN, TIME_FORMAT, TIME_PATTERN } from '../lab/impairment.js';
import { type InputIssue, UsageError } from '../util/errors.js';
import { substituteParams, type ParamValue, PARAM_NAME } from './params.js';
import { EXPECTED_TYPES, zodPath } from '../lab/zod.js';

/** A lab member as a scenario names it (its name in the lab file, without the prefix). */
const member = z.string().check(z.regex(/^[a-z][a-z0-9-]*$/, 'must be the name of a member of the lab (a-z, 0-9 and "-")'));
const argv = z.array(z.string()).check(z.minLength(1, 'must be the command as a list of words, e.g. [nc, -u, 10.0.1.1, "12345"]'));
const seconds = z.number().check(z.gt(0, 'must be more than 0 seconds'), z.lte(86_400, 'must be at most 86400 seconds (a day)'));
const port = z.number().check(z.int('must be a whole number'), z.gte(1, 'must be 1-65535'), z.lte(65535, 'must be 1-65535'));
const exitCode = z.number().check(z.int('must be a whole number'), z.gte(0, 'must be 0-255'), z.lte(255, 'must be 0-255'));

/** Output matching: a substring, or `{ regex: ... }` (JavaScript syntax, no slashes). */
export const matcherSchema = z.union([z.string(), z.strictObject({ regex: z.string() })]);

const outputExpectation = z.strictObject({
  /** The exit status, or any of a list (default 0). */
  exit: z.optional(z.union([exitCode, z.array(exitCode)])),
  stdout: z.optional(matcherSchema),
  stderr: z.optional(matcherSchema),
});

const commandFields = {
  /** The member (node, NAT, internet) it runs on: in its machine when the lab runs one, else in its namespace. */
  on: member,
  command: argv,
  /** Text for its standard input. */
  input: z.optional(z.string()),
};

const execSchema = z.strictObject({ ...commandFields, timeout: z.optional(seconds), expect: z.optional(outputExpectation) });

const backgroundSchema = z.strictObject({
  ...commandFields,
  /** The step passes once its output shows this (within timeout); without it, once it started. */
  ready: z.optional(z.strictObject({ stdout: z.optional(matcherSchema), stderr: z.optional(matcherSchema) })),
  timeout: z.optional(seconds),
});

const waitSchema = z.union([
  seconds,
  z.strictObject({
    seconds: z.optional(seconds),
    /** A command tried again and again until it meets its expectation (default: exits 0). */
    until: z.optional(z.strictObject({ ...commandFields, expect: z.optional(outputExpectation) })),
    timeout: z.optional(seconds),
    interval: z.optional(seconds),
  }),
]);

/** address:port, e.g. 100.64.1.100:54321 (an address of the lab). */
const endpoint = z
  .string()
  .check(z.regex(/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d{1,5}$/, 'must be ADDRESS:PORT, e.g. 100.64.1.100:54321 (an IPv4 address of the lab)'));
/** member or member:port: where the receiver listens. */
const listenAt = z.string().check(z.regex(/^[a-z][a-z0-9-]*(:\d{1,5})?$/, 'must be MEMBER or MEMBER:PORT, e.g. c0:12345'));

const expectDeliverySchema = z.strictObject({
  from: member,
  'from-port': z.optional(port),
  to: endpoint,
  /** Where the receiver listens (default: the address's owner, or the target of the NAT's forward for that port). */
  at: z.optional(listenAt),
  expect: z.optional(z.enum(['delivered', 'dropped'], { error: () => 'must be delivered or dropped' })),
  /** How long to wait for it to arrive (delivered), or to see that nothing does (dropped). */
  within: z.optional(seconds),
});

const natList = z.union([member, z.array(member)]);

const dependency = z.enum(['endpoint-independent', 'address-dependent', 'address-and-port-dependent'], {
  error: () => 'must be endpoint-independent, address-dependent or address-and-port-dependent',
});
const natType = z.enum(['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'], {
  error: () => 'must be full-cone, restricted-cone, port-restricted-cone or symmetric',
});

const checkSchema = z.strictObject({
  /** One NAT (default: every NAT of the lab). */
  nat: z.optional(member),
  /** `declared` (the default: what the lab file says), or a behaviour: a type, or mapping and filtering. */
  expect: z.optional(
    z.union([z.literal('declared'), z.strictObject({ type: z.optional(natType), mapping: z.optional(dependency), filtering: z.optional(dependency) })]),
  ),
  /** Repetitions of each test (labctl check --runs; default 1 here: a scenario wants speed). */
  runs: z.optional(z.number().check(z.int('must be a whole number'), z.gte(1, 'must be 1-10'), z.lte(10, 'must be 1-10'))),
});

/** A link impairment's value, as lab files and `labctl link set` write it (lab/impairment.ts). */
const unit = (pattern: string, format: string) => z.string().check(z.regex(new RegExp(pattern), `must be ${format}`));

const ends = z.array(member).check(z.length(2, 'must name the two members the link joins, e.g. [c1-nat, inet]'));
const linkSchema = z.strictObject({
  set: z.optional(ends),
  reset: z.optional(z.union([ends, z.literal('all')])),
  down: z.optional(ends),
  up: z.optional(ends),
  // With set: what `labctl link set` takes (its options without the dashes), in the same units.
  delay: z.optional(unit(TIME_PATTERN, TIME_FORMAT)),
  jitter: z.optional(unit(TIME_PATTERN, TIME_FORMAT)),
  loss: z.optional(unit(PERCENT_PATTERN, PERCENT_FORMAT)),
  rate: z.optional(unit(RATE_PATTERN, RATE_FORMAT)),
  corrupt: z.optional(unit(PERCENT_PATTERN, PERCENT_FORMAT)),
  duplicate: z.optional(unit(PERCENT_PATTERN, PERCENT_FORMAT)),
  reorder: z.optional(unit(PERCENT_PATTERN, PERCENT_FORMAT)),
  profile: z.optional(z.string()),
  direction: z.optional(z.enum(['both', 'upstream', 'downstream'], { error: () => 'must be both, upstream or downstream' })),
});

export const captureSchema = z.strictObject({
  /** The member whose links are captured (labctl capture MEMBER). */
  on: member,
  /** Only its link to this member. */
  link: z.optional(member),
  /** The pcapng file, relative to the current directory. */
  file: z.string().check(z.minLength(1)),
  /** A tcpdump filter, as words: [udp, port, "54321"]. */
  filter: z.optional(z.array(z.string())),
});

/** The kinds of step; a step has exactly one of them. */
export const STEP_KINDS = ['exec', 'background', 'wait', 'expect-udp', 'expect-tcp', 'flush', 'check', 'link'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

const stepSchema = z.strictObject({
  name: z.string().check(z.minLength(1, 'must not be empty')),
  exec: z.optional(execSchema),
  background: z.optional(backgroundSchema),
  wait: z.optional(waitSchema),
  'expect-udp': z.optional(expectDeliverySchema),
  'expect-tcp': z.optional(expectDeliverySchema),
  flush: z.optional(z.union([z.literal('all'), natList])),
  check: z.optional(checkSchema),
  link: z.optional(linkSchema),
  /** Packets of this step only, to a pcapng file. */
  capture: z.optional(captureSchema),
});

const paramValue = z.union([z.string(), z.number(), z.boolean()]);

export const scenarioSchema = z.strictObject({
  /** The name reports use (JUnit classname); default: the file's name. */
  name: z.optional(z.string().check(z.minLength(1, 'must not be empty'))),
  description: z.optional(z.string()),
  /** A lab file (relative to the scenario) or the name of a built-in lab. */
  lab: z.string().check(z.minLength(1, 'must name a lab file or a built-in lab')),
  /** false: the network alone (labctl net up), commands in the members' namespaces with the host's tools. */
  machines: z.optional(z.boolean()),
  params: z.optional(z.record(z.string().check(z.regex(PARAM_NAME, 'must be a name: letters, digits and _')), paramValue)),
  /** Packets of the whole run, to pcapng files. */
  capture: z.optional(z.union([captureSchema, z.array(captureSchema)])),
  steps: z.array(stepSchema).check(z.minLength(1, 'must list at least one step')),
});

export type ScenarioFile = z.infer<typeof scenarioSchema>;
export type StepFile = ScenarioFile['steps'][number];
export type CaptureFile = z.infer<typeof captureSchema>;
export type MatcherFile = z.infer<typeof matcherSchema>;

/** Keys whose values are text, never numbers or true/false, and keys whose lists are words of a command. */
const TEXT_KEYS = new Set(['name', 'description', 'lab', 'input', 'stdout', 'stderr', 'regex', 'file']);
const WORD_LIST_KEYS = new Set(['command', 'filter']);

/**
 * What is text is taken as written: `command: [sleep, 5]` is the words "sleep" and "5", not
 * a number (and `[true]` the command true, `0x1F` not 31), as a shell would read them.
 */
function keepTextAsWritten(doc: Document): void {
  const asWritten = (node: unknown) => {
    if (isScalar(node) && typeof node.value !== 'string' && node.type === 'PLAIN' && (node as Scalar & { source?: string }).source !== undefined) {
      node.value = (node as Scalar & { source: string }).source;
    }
  };
  visit(doc, {
    Pair(_key, pair) {
      if (!isPair(pair) || !isScalar(pair.key) || typeof pair.key.value !== 'string') return;
      if (TEXT_KEYS.has(pair.key.value)) asWritten(pair.value);
      else if (WORD_LIST_KEYS.has(pair.key.value) && isSeq(pair.value)) for (const item of pair.value.items) asWritten(item);
    },
  });
}

/** After params are put in: a number or true/false from a param, where text belongs, as text (`command: [sleep, "${t}"]`). */
function textAsText(data: unknown, key?: string): unknown {
  const text = (v: unknown) => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : v);
  if (Array.isArray(data)) return key !== undefined && WORD_LIST_KEYS.has(key) ? data.map(text) : data.map((v) => textAsText(v));
  if (data !== null && typeof data === 'object') {
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, TEXT_KEYS.has(k) ? text(v) : textAsText(v, k)]));
  }
  return data;
}

/** The schema stage: YAML text to a ScenarioFile (params substituted); throws UsageError with every problem found. */
export function checkScenarioSchema(text: string, source: string): { file: ScenarioFile; params: Record<string, ParamValue> } {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) throw UsageError.forFile(source, [{ path: '', message: `is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}` }]);
  keepTextAsWritten(doc);
  const data: unknown = doc.toJS();
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw UsageError.forFile(source, [{ path: '', message: 'must be a YAML mapping with at least `lab:` and `steps:`' }]);
  }
  const { params: rawParams, ...rest } = data as Record<string, unknown>;
  const parsedParams = z.optional(scenarioSchema.shape.params).safeParse(rawParams, { reportInput: true });
  if (!parsedParams.success) throw UsageError.forFile(source, zodIssues(parsedParams.error, ['params']));
  const params = parsedParams.data ?? {};
  const issues: InputIssue[] = [];
  const substituted = textAsText(substituteParams(rest, params, '', issues));
  if (issues.length) throw UsageError.forFile(source, issues);
  const parsed = scenarioSchema.safeParse({ ...(substituted as object), ...(rawParams !== undefined ? { params } : {}) }, { reportInput: true });
  if (!parsed.success) throw UsageError.forFile(source, zodIssues(parsed.error));
  return { file: parsed.data, params };
}

/** What a wrongly typed value should have been, in the file's terms. */
const EXPECTED: Record<string, string> = { ...EXPECTED_TYPES, record: 'a mapping' };

/** zod's issues as the file's fields and reasons. A union's are those of the branch of the value's type. */
export function zodIssues(error: { issues: readonly core.$ZodIssue[] }, prefix: PropertyKey[] = []): InputIssue[] {
  const out: InputIssue[] = [];
  const add = (issue: core.$ZodIssue, base: PropertyKey[]) => {
    const path = [...base, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: zodPath([...path, key]), message: 'unknown key' });
      return;
    }
    if (issue.code === 'invalid_union') {
      // A branch that failed on the value's type itself is not what the writer meant.
      const fitting = issue.errors.filter((branch) => !branch.some((i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value')));
      if (fitting.length) {
        for (const i of fitting[0]!) add(i, path);
        return;
      }
      const wanted = issue.errors.map((branch) => {
        const first = branch[0];
        if (first?.code === 'invalid_type') return EXPECTED[first.expected] ?? first.expected;
        if (first?.code === 'invalid_value') return first.values.map((v) => JSON.stringify(v)).join(' or ');
        return first?.message ?? '?';
      });
      const value = (issue as { input?: unknown }).input;
      out.push({ path: zodPath(path), message: value === undefined ? 'is required' : `must be ${[...new Set(wanted)].join(' or ')}` });
      return;
    }
    if (issue.code === 'invalid_key') {
      out.push({ path: zodPath(path), message: `(the name) ${issue.issues[0]?.message ?? issue.message}` });
      return;
    }
    let message = issue.message;
    // Needs safeParse(..., { reportInput: true }): without it zod 4 never sets issue.input.
    if (issue.code === 'invalid_type' && issue.expected !== 'int') {
      message = issue.input === undefined ? 'is required' : `must be ${EXPECTED[issue.expected] ?? issue.expected}`;
    }
    out.push({ path: zodPath(path), message });
  };
  for (const issue of error.issues) add(issue, prefix);
  return out;
}
