// What a lab file says runs in one machine (README "Your software in the machines"): the
// keys a node, a NAT router (`nat:`), an internet node and the internet itself share, spread
// into their schemas in schema.ts. Only zod's built-in checks here (types, patterns,
// lengths): they carry over to the editors' JSON Schema as they are. What needs more than
// one field or the lab file's place (a bind source that exists, content or from, names that
// are unique) is checked when the lab resolves (resolve-software.ts) and before `up`
// creates anything (sources.ts).
import * as z from 'zod/mini';
import './zod.js';

/** The argv of a service or command: a program and its arguments, never a shell string. */
const argv = z.array(z.string()).check(z.minLength(1, 'must name at least the program'));

/** A path inside the machine. */
const machinePath = z.string().check(z.regex(/^\/./, 'must be an absolute path inside the machine, e.g. /opt/app'));

/**
 * systemd's unit name characters (systemd.unit(5)), without "@" (a template instance) and
 * "\" (escapes): the service becomes NAME.service in the machine. At most 247 characters,
 * so that the unit name with ".service" stays within systemd's 255.
 */
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9:_.-]+$/;
const serviceName = z
  .string()
  .check(
    z.minLength(1, 'must not be empty'),
    z.maxLength(247, 'must be at most 247 characters (a unit name is at most 255, with ".service")'),
    z.regex(SERVICE_NAME_PATTERN, 'is not a valid systemd unit name: use only A-Z, a-z, 0-9 and ":", "_", ".", "-"'),
  );

export const RESTART_POLICIES = ['on-failure', 'always', 'no'] as const;

const bindSchema = z.strictObject({
  /** A host path, relative to the lab file (or absolute); it must exist. */
  from: z.string().check(z.minLength(1, 'must not be empty')),
  to: machinePath,
  /** Read-only inside the machine (default false). */
  readonly: z.optional(z.boolean()),
});

/**
 * An octal mode, quoted. A number is let through here only to be refused when the lab
 * resolves, with why: YAML reads an unquoted 0644 as the decimal number 644.
 */
const fileMode = z.union([z.string().check(z.regex(/^0?[0-7]{3}$/, 'must be an octal mode like "0644" or "0755"')), z.number()]);

const fileSchema = z.strictObject({
  path: machinePath,
  /** The file's text; or `from`: a host file, relative to the lab file. */
  content: z.optional(z.string()),
  from: z.optional(z.string().check(z.minLength(1, 'must not be empty'))),
  mode: z.optional(fileMode),
});

const serviceSchema = z.strictObject({
  name: serviceName,
  command: argv,
  restart: z.optional(z.enum(RESTART_POLICIES, { error: () => `must be one of ${RESTART_POLICIES.join(', ')}` })),
});

export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Values may be written as numbers or booleans (PORT: 8080); they become their text. */
const ENV_NAME_MESSAGE = 'is not an environment variable name (letters, digits and "_", not starting with a digit)';
const envSchema = z.record(
  z.string().check(z.regex(ENV_NAME_PATTERN, ENV_NAME_MESSAGE)),
  z.union([z.string(), z.number(), z.boolean()], { error: () => 'must be a string (or a number or true/false)' }),
  // zod's own word for a key its check refused is "Invalid key in record".
  { error: (issue) => (issue.code === 'invalid_key' ? ENV_NAME_MESSAGE : undefined) },
);

/** Spread into the schema of every lab member that can be a machine. */
export const machineFields = {
  /** The image this machine boots instead of the lab's. */
  image: z.optional(
    z
      .string()
      .check(
        z.minLength(1),
        z.maxLength(32, 'must be at most 32 characters'),
        z.regex(/^[a-z][a-z0-9-]*$/, 'must start with a lower-case letter and contain only a-z, 0-9 and "-"'),
      ),
  ),
  binds: z.optional(z.array(bindSchema)),
  files: z.optional(z.array(fileSchema)),
  env: z.optional(envSchema),
  services: z.optional(z.array(serviceSchema)),
  commands: z.optional(z.array(argv)),
};

const machineObject = z.strictObject(machineFields);
/** The software keys of one lab member, as written. */
export type MachineSoftwareFile = z.infer<typeof machineObject>;
export const MACHINE_SOFTWARE_KEYS = Object.keys(machineFields) as (keyof MachineSoftwareFile)[];

/** Hover texts of the keys above (json-schema.ts), under each member that has them; the README's "Your software in the machines" says more. */
export function machineDescriptions(): Record<string, string> {
  const keys: Record<string, string> = {
    image: "The image this machine boots instead of the lab's (see `labctl image list`).",
    binds: 'Host paths bound into the machine (nspawn --bind); each must exist when the lab comes up.',
    'binds[].from': 'A host path, relative to the lab file (or absolute).',
    'binds[].to': 'Where it appears in the machine (an absolute path).',
    'binds[].readonly': 'Read-only inside the machine (default: false).',
    files: "Files written into the machine's throw-away snapshot at boot, before its services start; never into the image.",
    'files[].path': 'Where, in the machine (an absolute path; parent directories are made).',
    'files[].content': 'The text of the file (or give from).',
    'files[].from': 'A host file, relative to the lab file, read at `labctl up` (or give content).',
    'files[].mode': 'Its mode, quoted: "0644" (the default), "0755".',
    env: "Environment of the machine's services and commands, and of `labctl exec`/`shell` in it.",
    services: 'Programs run as systemd units NAME.service in the machine, started once the lab is up; `up` fails when one does not start.',
    'services[].name': 'The unit name without .service: systemctl status NAME, journalctl -u NAME, labctl logs MACHINE NAME.',
    'services[].command': 'The program and its arguments, as a list; no shell, no variable expansion (use [sh, -c, "..."] for those).',
    'services[].restart': 'on-failure (default), always or no: systemd Restart=.',
    commands: 'Commands run once each, in order, after the services started; `up` fails when one fails. Each a list: program and arguments.',
  };
  const out: Record<string, string> = {};
  for (const parent of ['sites[].nodes[]', 'sites[].nat', 'nodes[]', 'internet'])
    for (const [key, text] of Object.entries(keys)) out[`${parent}.${key}`] = text;
  return out;
}
