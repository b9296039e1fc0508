// The scenario file's JSON Schema (schema/scenario.schema.json), made from its zod schema
// (schema.ts) by scripts/gen-schema.ts at every build, as the lab file's is. Two things zod's
// generator cannot know are added here: a step has exactly one kind (load.ts checks it), and
// a number or true/false may be written as a param (`timeout: ${wait}`), which is put in
// before the file is checked (params.ts).
import { editorJsonSchema, type JsonSchema } from '../util/json-schema.js';
import { scenarioSchema, STEP_KINDS } from './schema.js';

/** A string that is one param reference: what a number's place may hold before params are put in. */
export const PARAM_REFERENCE = '^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$';

const COMMAND = 'The command as a list of words (no shell): [nc, -u, 10.0.1.1, "12345"]; [sh, -c, "..."] for a shell.';
const ON = 'A member of the lab (node, NAT, internet): in its machine when the lab runs one, else in its namespace with the host’s tools.';
const MATCH = 'A substring the output must contain, or { regex: ... } (JavaScript syntax, multi-line).';

/** Hover text; the README's "Scenarios (labctl test)" section says more. */
const DESCRIPTIONS: Record<string, string> = {
  name: 'The name reports use (the JUnit classname); default: the file’s name without .test.yaml.',
  description: 'Free text.',
  lab: 'A lab file, relative to this file (./home.yaml), or the name of a built-in lab (article). Brought up if it is not, and taken down at the end.',
  machines:
    'false: bring up the network alone (labctl net up) and run commands in the members’ namespaces with the host’s tools (default: boot the lab’s machines).',
  params: `Named values put in where this file or its lab file says \${NAME}: a string that is exactly \${NAME} takes the value with its type; $\${ is a literal \${.`,
  capture: 'Packets of the whole run, to pcapng files (labctl capture).',
  steps: 'Run in order; after a failed step the rest are skipped.',
  'steps[].name': 'The step’s name (one JUnit test case each).',
  'steps[].exec': 'Run a command and check its exit status and output.',
  'steps[].exec.on': ON,
  'steps[].exec.command': COMMAND,
  'steps[].exec.input': 'Text for its standard input.',
  'steps[].exec.timeout': 'Seconds it may take (default 30); then it and what it started are stopped, and the step fails.',
  'steps[].exec.expect': 'What it must do: exit (default 0, or a list), stdout, stderr.',
  'steps[].exec.expect.stdout': MATCH,
  'steps[].exec.expect.stderr': MATCH,
  'steps[].background': 'Start a long-running command; it is stopped at the end of the run, and its output kept for the report.',
  'steps[].background.on': ON,
  'steps[].background.command': COMMAND,
  'steps[].background.ready': 'Wait until its output shows this (stdout or stderr) before the next step.',
  'steps[].background.timeout': 'Seconds to wait for ready (default 10).',
  'steps[].wait': 'A pause in seconds (wait: 2), or { until: COMMAND, timeout, interval }: the command tried until it meets its expect.',
  'steps[].expect-udp':
    'Send a UDP datagram from a member to ADDRESS:PORT of the lab and expect it delivered (a receiver where it should arrive gets it) or dropped.',
  'steps[].expect-tcp': 'Connect over TCP from a member to ADDRESS:PORT of the lab and expect the data delivered or dropped.',
  'steps[].flush': 'Make NAT routers forget their state (labctl net flush): all, one NAT, or a list.',
  'steps[].check': 'Measure NAT behaviour (labctl check) and expect what the lab declares, or a type, or mapping and filtering.',
  'steps[].link': 'Change a link (labctl link): set: [A, B] with delay, loss, ...; reset: [A, B] or all; down: [A, B]; up: [A, B].',
  'steps[].capture': 'Packets of this step only, to a pcapng file (labctl capture).',
};

/** Every number and boolean may also be written as a param reference. */
function allowParams(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(allowParams);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(node)) out[k] = k === 'propertyNames' || k === 'additionalProperties' ? v : allowParams(v);
  if (out.type === 'number' || out.type === 'integer' || out.type === 'boolean') {
    const { description, ...rest } = out;
    return { ...(description !== undefined ? { description } : {}), anyOf: [rest, { type: 'string', pattern: PARAM_REFERENCE }] };
  }
  return out;
}

export function scenarioJsonSchema(): JsonSchema {
  const schema = editorJsonSchema(scenarioSchema, {
    title: 'labctl scenario file',
    description:
      'A test of a lab for `labctl test`: the lab, params, and ordered steps (exec, background, wait, expect-udp, expect-tcp, flush, check, link), each with a name. Generated from src/scenario/schema.ts by scripts/gen-schema.ts.',
    refinements: [],
    descriptions: DESCRIPTIONS,
  });
  const steps = (schema.properties as Record<string, JsonSchema>).steps!;
  const item = steps.items as JsonSchema;
  item.oneOf = STEP_KINDS.map((k) => ({ required: [k] }));
  return allowParams(schema) as JsonSchema;
}
