// Image recipes: one YAML file per image under images/, validated with zod.
// Unknown keys are rejected; every error names the file, the field path and the reason.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import * as z from 'zod/mini';
import '../lab/zod.js';
import { DISTRIBUTIONS } from './distro/index.js';
import { UsageError } from '../util/errors.js';
import { RECIPES_DIR, checkImageName } from './paths.js';
import { listDir } from '../util/fs.js';

/** What every image must contain for the lab; added to a recipe's packages if it forgot one. */
export const REQUIRED_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'iproute2',
  'iptables',
  'nftables',
  'conntrack',
  'netcat-openbsd',
  'socat',
  'tcpdump',
  'iputils-ping',
] as const;

/**
 * Bump when the build steps change in a way that makes older caches wrong.
 * 2: the base holds the recipe's keyring and a sources.list with signed-by.
 */
export const PLAN_VERSION = 2;

const MIN_IMAGE_SIZE = 512 * 1024 ** 2;
const MAX_IMAGE_SIZE = 1024 ** 4;

// A unit name with its type suffix; no slashes, so a mask can only ever name a unit.
const UNIT_RE = /^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|mount|automount|path|target|swap|slice|scope|device)$/;

const GENERATOR_RE = /^[A-Za-z0-9_.@-]+-generator$/;

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i;

/** "2G", "1536M", "2GiB" or a number of bytes -> bytes (binary units). */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  const m = SIZE_RE.exec(value.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? '').toUpperCase();
  const power = { '': 0, K: 1, M: 2, G: 3, T: 4 }[unit] ?? 0;
  return Math.round(Number(m[1]) * 1024 ** power);
}

const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;
const SUITE_RE = /^[a-z][a-z0-9-]*$/;
const ARCHITECTURES = ['amd64', 'arm64', 'armhf', 'i386', 'ppc64el', 's390x', 'riscv64'] as const;

function checkMirror(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL';
  }
  if (!['http:', 'https:', 'file:'].includes(parsed.protocol)) return 'must be an http://, https:// or file:// URL';
  return undefined;
}

const mirrorSchema = z.string().check(
  z.superRefine((url, ctx) => {
    const problem = checkMirror(url);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem}: ${JSON.stringify(url)}` });
  }),
);

const fileSchema = z
  .strictObject({
    path: z
      .string()
      .check(z.refine((p) => p.startsWith('/') && !p.split('/').includes('..') && p !== '/', 'must be an absolute path inside the image, without ..')),
    content: z.optional(z.string()),
    source: z.optional(z.string().check(z.minLength(1))),
    mode: z.optional(z.string().check(z.regex(/^0?[0-7]{3,4}$/, 'must be an octal mode like "0644"'))),
  })
  .check(
    z.refine((f) => (f.content === undefined) !== (f.source === undefined), {
      message: 'give exactly one of content (the text) or source (a file beside the recipe)',
    }),
  );

const commandSchema = z.union([z.string().check(z.minLength(1)), z.array(z.string()).check(z.minLength(1))], {
  error: 'must be a shell command string (run with /bin/sh -c inside the image) or a non-empty argument list',
});

const listOf = (pattern: RegExp, message: string) => z._default(z.array(z.string().check(z.regex(pattern, message))), []);

/** The YAML document as written (kebab-case keys); also the source of schema/recipe.schema.json (image/json-schema.ts). */
export const recipeSchema = z.strictObject({
  name: z.optional(z.string()),
  description: z.optional(z.string()),
  distribution: z.enum(['debian', 'ubuntu']),
  suite: z.string().check(z.regex(SUITE_RE, 'must be a suite code name like bookworm or noble')),
  mirror: mirrorSchema,
  components: z.optional(z.array(z.string().check(z.regex(/^[a-z0-9/-]+$/, 'must be an archive component like main'))).check(z.minLength(1))),
  keyring: z.optional(z.string().check(z.refine(isAbsolute, 'must be an absolute path to a keyring file'))),
  architecture: z.enum(ARCHITECTURES),
  variant: z._default(z.enum(['minbase', 'buildd', 'default']), 'minbase'),
  packages: listOf(PACKAGE_RE, 'must be a Debian package name'),
  size: z.union([z.string(), z.number()]).check(
    z.superRefine((value, ctx) => {
      const bytes = parseSize(value);
      if (bytes === undefined) ctx.addIssue({ code: 'custom', message: `must be a size like 2G or 1536M, got ${JSON.stringify(value)}` });
      else if (bytes < MIN_IMAGE_SIZE) ctx.addIssue({ code: 'custom', message: `must be at least 512M (got ${value})` });
      else if (bytes > MAX_IMAGE_SIZE) ctx.addIssue({ code: 'custom', message: `must be at most 1T (got ${value})` });
    }),
  ),
  files: z._default(z.array(fileSchema), []),
  commands: z._default(z.array(commandSchema), []),
  /** systemd units masked in the image: what a lab machine never needs costs boot time */
  mask: listOf(UNIT_RE, 'must be a systemd unit name like apt-daily.timer'),
  /** systemd generators disabled in the image: each is a program every boot runs before any unit */
  'mask-generators': listOf(GENERATOR_RE, 'must be a generator name like systemd-fstab-generator'),
  'root-password-file': z.optional(z.string().check(z.minLength(1))),
});

interface RecipeFile {
  path: string;
  mode: number;
  content?: string;
  /** absolute path on the host */
  source?: string;
}

/** A validated recipe with defaults filled in and paths made absolute. */
export interface Recipe {
  name: string;
  description?: string;
  distribution: 'debian' | 'ubuntu';
  suite: string;
  mirror: string;
  components: string[];
  keyring: string;
  architecture: string;
  variant: 'minbase' | 'buildd' | 'default';
  /** as the recipe lists them */
  packages: string[];
  size: string;
  sizeBytes: number;
  files: RecipeFile[];
  /** argument lists run inside the image (strings become ['/bin/sh', '-c', s]) */
  commands: string[][];
  /** units masked in the image */
  mask: string[];
  /** generators disabled in the image */
  maskGenerators: string[];
  /** absolute path on the host */
  rootPasswordFile?: string;
  /** the recipe file, when it came from one */
  sourceFile?: string;
}

/** A recipe's problems: bad input (exit 2), each naming its field. */
export function recipeError(file: string, problems: string[]): UsageError {
  return new UsageError(`${file}: invalid recipe:\n${problems.map((p) => `  ${p}`).join('\n')}`, {
    file,
    issues: problems.map((message) => ({ path: '', message })),
  });
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(top level)';
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = data;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function issueText(issue: z.core.$ZodIssue, allowed: string[], data: unknown): string[] {
  if (issue.code === 'unrecognized_keys') {
    const at = issue.path.length ? `${formatPath(issue.path)}.` : '';
    return issue.keys.map((k) => {
      if (k === 'root-password' || k === 'password') {
        return `${at}${k}: a literal password is not allowed in a recipe; use root-password-file: PATH`;
      }
      const hint = issue.path.length ? '' : ` (allowed: ${allowed.join(', ')})`;
      return `${at}${k}: unknown key${hint}`;
    });
  }
  if (issue.path.length && valueAt(data, issue.path) === undefined) return [`${formatPath(issue.path)}: is required`];
  let message = issue.message.replace(/^Invalid input: /, '');
  if (issue.code === 'invalid_value' && 'values' in issue) message = `must be one of ${issue.values.map((v) => String(v)).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) message = 'is required';
  return [`${formatPath(issue.path)}: ${message}`];
}

interface ParseOptions {
  /** name when the recipe has no name: field (default: the file name without .yaml) */
  name?: string;
  /** file the text came from (for messages and relative paths) */
  file?: string;
}

/** Validates a recipe given as YAML text. Pure apart from reading nothing: paths are only resolved. */
export function parseRecipe(text: string, options: ParseOptions = {}): Recipe {
  const file = options.file ?? '<recipe>';
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw recipeError(
      file,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const text = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
        return `${pos ? `line ${pos.line} column ${pos.col}: ` : ''}YAML: ${text}`;
      }),
    );
  }
  const data: unknown = doc.toJS();
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw recipeError(file, ['(top level): must be a mapping of keys like distribution:, suite:, packages:']);
  }
  const allowed = Object.keys(recipeSchema.shape);
  const result = recipeSchema.safeParse(data);
  if (!result.success)
    throw recipeError(
      file,
      result.error.issues.flatMap((i) => issueText(i, allowed, data)),
    );
  const raw = result.data;
  const distro = DISTRIBUTIONS[raw.distribution];
  const problems: string[] = [];
  // A suite labctl does not list is built all the same (unknownSuiteWarning), so that a new
  // release needs no labctl update; one of the other distribution is a mistake.
  const other = Object.values(DISTRIBUTIONS).find((d) => d !== distro && d.suites.includes(raw.suite) && !distro.suites.includes(raw.suite));
  if (other) problems.push(`suite: ${raw.suite} is a suite of ${other.label}, not of ${distro.label} (distribution: ${other.id}?)`);
  const name = raw.name ?? options.name;
  if (!name) problems.push('name: is required when the recipe does not come from a file');
  else {
    try {
      checkImageName(name);
    } catch (e) {
      problems.push(`name: ${(e as Error).message}`);
    }
  }
  const listedTwice = (values: string[], at: (i: number) => string) => {
    const seen = new Set<string>();
    values.forEach((v, i) => {
      if (seen.has(v)) problems.push(`${at(i)}: ${v} is listed twice`);
      seen.add(v);
    });
  };
  for (const key of ['packages', 'mask', 'mask-generators'] as const) listedTwice(raw[key], (i) => `${key}[${i}]`);
  listedTwice(
    raw.files.map((f) => f.path),
    (i) => `files[${i}].path`,
  );
  if (problems.length) throw recipeError(file, problems);

  const baseDir = options.file ? dirname(resolve(options.file)) : process.cwd();
  const recipe: Recipe = {
    name: name!,
    distribution: raw.distribution,
    suite: raw.suite,
    mirror: raw.mirror.replace(/\/+$/, ''),
    components: raw.components ?? [...distro.defaultComponents],
    keyring: raw.keyring ?? distro.defaultKeyring,
    architecture: raw.architecture,
    variant: raw.variant,
    packages: raw.packages,
    size: String(raw.size),
    sizeBytes: parseSize(raw.size)!,
    files: raw.files.map((f) => ({
      path: f.path,
      mode: f.mode ? parseInt(f.mode, 8) : 0o644,
      ...(f.content !== undefined ? { content: f.content } : {}),
      ...(f.source !== undefined ? { source: resolve(baseDir, f.source) } : {}),
    })),
    commands: raw.commands.map((c) => (typeof c === 'string' ? ['/bin/sh', '-c', c] : c)),
    mask: raw.mask,
    maskGenerators: raw['mask-generators'],
    ...(raw.description ? { description: raw.description } : {}),
    ...(raw['root-password-file'] ? { rootPasswordFile: resolve(baseDir, raw['root-password-file']) } : {}),
    ...(options.file ? { sourceFile: resolve(options.file) } : {}),
  };
  return recipe;
}

/**
 * The warning for a suite labctl does not list (a release newer than labctl, or a typo that
 * debootstrap will report): it is built with the distribution's generic debootstrap script.
 */
export function unknownSuiteWarning(recipe: Recipe): string | undefined {
  const distro = DISTRIBUTIONS[recipe.distribution];
  if (distro.suites.includes(recipe.suite)) return undefined;
  return (
    `${recipe.sourceFile ?? `recipe ${recipe.name}`}: suite ${recipe.suite} is not among the ${distro.label} suites labctl knows (${distro.suites.join(', ')}); ` +
    `building it as a newer ${distro.label} release, with debootstrap's script ${distro.debootstrapScript}`
  );
}

/**
 * Where the recipe's keyring is inside the image, for apt's signed-by. The distribution's
 * own keyring keeps its standard path (the image's keyring package owns and updates the file
 * there); any other (a private mirror's) goes to /etc/apt/keyrings/labctl-FILE. Named after
 * the keyring file, not the image: a cached base is shared by images of other names.
 */
export function imageKeyringPath(recipe: Recipe): string {
  const distro = DISTRIBUTIONS[recipe.distribution];
  if (recipe.keyring === distro.defaultKeyring) return distro.defaultKeyring;
  // apt tells an armored keyring from a binary one by its name: .asc, else .gpg.
  const ext = recipe.keyring.endsWith('.asc') ? '.asc' : '.gpg';
  const stem = basename(recipe.keyring)
    .replace(/\.(gpg|asc|pgp)$/, '')
    .replace(/[^A-Za-z0-9_.-]/g, '_');
  return `/etc/apt/keyrings/labctl-${stem}${ext}`;
}

/** True when the argument names a recipe file rather than a shipped recipe. */
function looksLikeFile(nameOrFile: string): boolean {
  return nameOrFile.includes('/') || /\.ya?ml$/i.test(nameOrFile);
}

/** Loads NAME (images/NAME.yaml) or FILE and validates it. */
export function loadRecipe(nameOrFile: string, options: { recipesDir?: string; name?: string } = {}): Recipe {
  let file: string;
  if (looksLikeFile(nameOrFile)) {
    file = resolve(nameOrFile);
    if (!existsSync(file)) throw new UsageError(`recipe file ${nameOrFile} does not exist`);
  } else {
    const dir = options.recipesDir ?? RECIPES_DIR;
    file = join(dir, `${nameOrFile}.yaml`);
    if (!existsSync(file)) {
      throw new UsageError(`no recipe named ${nameOrFile} (looked for ${file}); known: ${listRecipeNames(dir).join(', ') || 'none'}`);
    }
  }
  const text = readFileSync(file, 'utf8');
  const recipe = parseRecipe(text, { file, name: basename(file, extname(file)) });
  if (options.name) {
    checkImageName(options.name);
    recipe.name = options.name;
  }
  return recipe;
}

export function listRecipeNames(dir = RECIPES_DIR): string[] {
  return listDir(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** Replaces the mirror (the --mirror option). */
export function withMirror(recipe: Recipe, mirror: string | undefined): Recipe {
  if (!mirror) return recipe;
  const problem = checkMirror(mirror);
  if (problem) throw new UsageError(`--mirror ${mirror}: ${problem}`);
  return { ...recipe, mirror: mirror.replace(/\/+$/, '') };
}

/** The recipe's packages plus any required one it left out, in a stable order. */
export function effectivePackages(recipe: Recipe): string[] {
  const out = [...recipe.packages];
  for (const p of REQUIRED_PACKAGES) if (!out.includes(p)) out.push(p);
  return out;
}

function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/** JSON with sorted keys, so equal values always hash the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What debootstrap starts from, whatever the packages: a cached base of the same bootstrap can be extended with apt. */
function bootstrapKey(recipe: Recipe, verify: boolean): Record<string, unknown> {
  return {
    v: PLAN_VERSION,
    distribution: recipe.distribution,
    suite: recipe.suite,
    mirror: recipe.mirror,
    components: recipe.components,
    keyring: recipe.keyring,
    architecture: recipe.architecture,
    variant: recipe.variant,
    verify,
  };
}

/**
 * Hash of what debootstrap produces: the key of the cached base. Changing only the
 * package list changes it; a build then extends a cached base of the same bootstrap
 * with apt (bootstrapHash) or, failing that, debootstraps again from the cached .debs.
 */
export function baseHash(recipe: Recipe, verify: boolean): string {
  return sha256(canonicalJson({ ...bootstrapKey(recipe, verify), packages: [...effectivePackages(recipe)].sort() })).slice(0, 32);
}

/** Hash of the bootstrap without the package list (which cached bases a build may extend). */
export function bootstrapHash(recipe: Recipe, verify: boolean): string {
  return sha256(canonicalJson({ ...bootstrapKey(recipe, verify), packages: 'any' })).slice(0, 32);
}

/**
 * Hash of everything that makes the image: the base plus files, commands, size and
 * password file contents. Reads the files the recipe refers to.
 */
export function recipeHash(recipe: Recipe, verify: boolean): string {
  const fileHashes = recipe.files.map((f) => ({
    path: f.path,
    mode: f.mode,
    content: f.content !== undefined ? sha256(f.content) : f.source && existsSync(f.source) ? sha256(readFileSync(f.source)) : null,
  }));
  const password = recipe.rootPasswordFile && existsSync(recipe.rootPasswordFile) ? sha256(readFileSync(recipe.rootPasswordFile)) : null;
  return sha256(
    canonicalJson({
      base: baseHash(recipe, verify),
      sizeBytes: recipe.sizeBytes,
      files: fileHashes,
      commands: recipe.commands,
      mask: recipe.mask,
      maskGenerators: recipe.maskGenerators,
      password,
    }),
  ).slice(0, 32);
}
