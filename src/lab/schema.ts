// The lab file's shape, as zod schemas, and resolution's first stage (see resolve.ts): YAML
// text to a LabFile, with every problem zod finds. Keys are kebab-case in YAML; unknown keys
// are errors (a typo must not silently become a default).
//
// zod/mini, zod 4's functional API, not the chained one: the same validation with ~20 KB
// of library instead of ~450 KB, which every labctl start used to parse (see bin/labctl.js).
// English messages come from zod's own locale, as with the chained API (src/lab/zod.ts).
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { core } from 'zod/mini';
import * as z from 'zod/mini';
import { type InputIssue, UsageError } from '../util/errors.js';
import { parseCidr, parseIpv4 } from '../util/ipv4.js';
import { DIRECTIONS, type Unit, unitProblem } from './impairment.js';
import { machineFields } from './machine-schema.js';
import { natBehaviourFields } from './nat-schema.js';
import { EXPECTED_TYPES, zodPath } from './zod.js';

/** Names become namespace names, machine names and interface-name parts. */
const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
const name = z
  .string()
  .check(
    z.minLength(1),
    z.maxLength(32, 'must be at most 32 characters'),
    z.regex(NAME_PATTERN, 'must start with a lower-case letter and contain only a-z, 0-9 and "-"'),
  );

const ipv4 = z.string().check(z.refine((s) => parseIpv4(s) !== undefined, { message: 'is not an IPv4 address (a.b.c.d)' }));
const cidr = z
  .string()
  .check(z.refine((s) => parseCidr(s) !== undefined, { message: 'is not a usable IPv4 subnet (a.b.c.d/len with len 8-30 and no host bits set)' }));
const port = z.number().check(z.int('must be a whole number'), z.gte(1, 'must be 1-65535'), z.lte(65535, 'must be 1-65535'));
const seconds = z
  .number()
  .check(z.int('must be a whole number of seconds'), z.gte(1, 'must be at least 1 second'), z.lte(432000, 'must be at most 432000 seconds (5 days)'));

export const NAT_TYPES = ['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;
export const DEPENDENCIES = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'] as const;

const natType = z.enum(NAT_TYPES, {
  error: () => `must be one of ${NAT_TYPES.join(', ')}`,
});
const dependency = z.enum(DEPENDENCIES, {
  error: () => `must be one of ${DEPENDENCIES.join(', ')}`,
});
const flag = z.optional(z.boolean());

const forwardSchema = z.strictObject({
  protocol: z.enum(['udp', 'tcp'], { error: () => 'must be udp or tcp' }),
  port: port,
  to: name,
  'to-port': z.optional(port),
  /** A public forward admits anyone, whatever the NAT's filtering. */
  public: flag,
});

const natSchema = z.strictObject({
  name: z.optional(name),
  type: z.optional(natType),
  mapping: z.optional(dependency),
  filtering: z.optional(dependency),
  hairpinning: flag,
  'port-preservation': flag,
  'fixed-port': z.optional(port),
  forwards: z.optional(z.array(forwardSchema)),
  'udp-timeouts': z.optional(z.strictObject({ unreplied: z.optional(seconds), stream: z.optional(seconds) })),
  'tcp-mapping-timeout': z.optional(seconds),
  /** Profiles, pools, port allocation, blocks, quotas, TCP timers (nat-schema.ts). */
  ...natBehaviourFields,
  machine: flag,
  /** The router machine's software (machine-schema.ts). */
  ...machineFields,
});

const uplinkSchema = z.strictObject({
  subnet: z.optional(cidr),
  address: z.optional(ipv4),
  gateway: z.optional(ipv4),
});

const lanSchema = z.strictObject({
  subnet: z.optional(cidr),
  gateway: z.optional(ipv4),
});

const nodeSchema = z.strictObject({
  name: name,
  address: z.optional(ipv4),
  machine: flag,
  ...machineFields,
});

const internetNodeSchema = z.strictObject({
  name: name,
  uplink: z.optional(uplinkSchema),
  machine: flag,
  ...machineFields,
});

const siteSchema = z.strictObject({
  name: name,
  /** `internet` (the default) or the name of another site whose NAT this one sits behind. */
  upstream: z.optional(name),
  nat: z.optional(natSchema),
  uplink: z.optional(uplinkSchema),
  lan: z.optional(lanSchema),
  nodes: z.optional(z.array(nodeSchema)),
});

/** A value with a unit, as tc writes it (impairment.ts); a bare number is refused with the unit it needs. */
const withUnit = (unit: Unit) =>
  z.union([z.string(), z.number()]).check(
    z.superRefine((value, ctx) => {
      const problem = unitProblem(unit, value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem, input: value });
    }),
  );

/** A link's impairment (README "Link impairments"): which link, what it does, which way. */
const linkSchema = z.strictObject({
  /** Two members joined by a link, in either order. */
  between: z.tuple([name, name], { error: () => 'must be a pair of member names, e.g. [c1-nat, inet]' }),
  delay: z.optional(withUnit('time')),
  jitter: z.optional(withUnit('time')),
  loss: z.optional(withUnit('percent')),
  rate: z.optional(withUnit('rate')),
  corrupt: z.optional(withUnit('percent')),
  duplicate: z.optional(withUnit('percent')),
  reorder: z.optional(withUnit('percent')),
  /** A named profile (link-profiles.ts); the fields beside it override it. Checked against the profiles when the lab resolves. */
  profile: z.optional(z.string().check(z.minLength(1))),
  direction: z.optional(z.enum(DIRECTIONS, { error: () => `must be one of ${DIRECTIONS.join(', ')}` })),
});

export const labSchema = z.strictObject({
  name: name,
  description: z.optional(z.string()),
  /** Prepended to namespace and machine names so that two labs can be up at once. */
  prefix: z.optional(
    z
      .string()
      .check(
        z.maxLength(8, 'must be at most 8 characters'),
        z.regex(/^([a-z][a-z0-9]*-?)?$/, 'must be lower-case letters and digits, optionally ending in "-"'),
      ),
  ),
  internet: z.optional(z.strictObject({ name: z.optional(name), machine: flag, ...machineFields })),
  /** Image the lab's machines boot (see `labctl image list`). */
  image: z.optional(name),
  sites: z.optional(z.array(siteSchema)),
  nodes: z.optional(z.array(internetNodeSchema)),
  /** Impairments of the lab's links (delay, loss, rate, ...). */
  links: z.optional(z.array(linkSchema)),
});

export type LabFile = z.infer<typeof labSchema>;
export type SiteFile = z.infer<typeof siteSchema>;
export type InternetNodeFile = z.infer<typeof internetNodeSchema>;
export type LinkFile = z.infer<typeof linkSchema>;

/**
 * One `links:` entry checked on its own (`labctl link set`'s options), with the same
 * messages as in a lab file; `path` turns a field into what the user typed (`--delay`).
 */
export function checkLinkEntry(data: unknown, path: (field: string) => string): { entry?: LinkFile; issues: InputIssue[] } {
  const parsed = linkSchema.safeParse(data, { reportInput: true });
  if (parsed.success) return { entry: parsed.data, issues: [] };
  return { issues: zodIssues(parsed.error).map((i) => ({ path: path(i.path.split(/[.[]/)[0]!), message: i.message })) };
}

/** The schema stage: YAML text to a LabFile; throws UsageError with every problem zod finds. */
export function checkSchema(text: string, source: string): LabFile {
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split('\n')[0]! : String(e);
    throw UsageError.forFile(source, [{ path: '', message: `is not valid YAML: ${msg}` }]);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw UsageError.forFile(source, [{ path: '', message: 'must be a YAML mapping with at least `name:` and `sites:` or `nodes:`' }]);
  }
  const parsed = labSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) throw UsageError.forFile(source, zodIssues(parsed.error));
  return parsed.data;
}

/** What a wrongly typed value should have been, in the lab file's terms. */
const EXPECTED: Record<string, string> = { ...EXPECTED_TYPES, tuple: 'a pair, e.g. [c1-nat, inet]' };

function zodIssues(error: core.$ZodError): InputIssue[] {
  const out: InputIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ path: zodPath([...issue.path, key]), message: 'unknown key' });
      }
      continue;
    }
    let message = issue.message;
    // Needs safeParse(..., { reportInput: true }): without it zod 4 never sets issue.input.
    // `expected: 'int'` is .int()'s own check, whose message the schema already words.
    if (issue.code === 'invalid_type' && issue.expected !== 'int') {
      message = issue.input === undefined ? 'is required' : `must be ${EXPECTED[issue.expected] ?? issue.expected}`;
    }
    out.push({ path: zodPath(issue.path), message });
  }
  return out;
}
