// Loading a scenario file: the schema stage (schema.ts, params put in), the lab it names
// (with the same params), and the checks of every step against that lab: its members, NATs,
// links and addresses. Any problem is bad input (UsageError, exit 2) naming the file, the
// field and the reason, found before anything is started.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml, YAMLParseError } from 'yaml';
import { CLASSIC } from '../lab/behaviour.js';
import { members, type Lab } from '../lab/model.js';
import { parseLab } from '../lab/resolve.js';
import { resolveLinkEntry } from '../lab/resolve-links.js';
import { checkLinkEntry } from '../lab/schema.js';
import { type InputIssue, UsageError } from '../util/errors.js';
import { parseIpv4 } from '../util/ipv4.js';
import type { CaptureSpec, Matcher, OutputExpectation, Scenario, Step, StepSpec } from './model.js';
import { mentionsParams, type ParamValue, substituteParams } from './params.js';
import { type CaptureFile, checkScenarioSchema, type MatcherFile, STEP_KINDS, type ScenarioFile, type StepFile } from './schema.js';

/** machines/ of this checkout or package (src/scenario, dist/scenario and dist/bundle are two levels below the root). */
const BUILTIN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'machines');

export const DEFAULTS = {
  execTimeoutS: 30,
  readyTimeoutS: 10,
  waitTimeoutS: 30,
  waitIntervalS: 0.5,
  deliveredWithinS: 2,
  droppedWithinS: 1,
  checkRuns: 1,
} as const;

/** The scenario's name when it gives none: the file's, without .yaml and a .test or .scenario before it. */
export function defaultName(file: string): string {
  return basename(file)
    .replace(/\.ya?ml$/, '')
    .replace(/\.(test|scenario)$/, '');
}

/** The lab file a scenario's `lab:` names: a path relative to the scenario, or a built-in lab. */
export function labFileOf(scenarioFile: string, lab: string): string | undefined {
  if (lab.includes('/') || /\.ya?ml$/.test(lab)) return resolve(dirname(scenarioFile), lab);
  const builtin = join(BUILTIN_DIR, `${lab}.yaml`);
  return existsSync(builtin) ? builtin : undefined;
}

function builtinLabs(): string[] {
  try {
    return readdirSync(BUILTIN_DIR)
      .filter((f) => f.endsWith('.yaml') && !f.endsWith('.test.yaml'))
      .map((f) => f.slice(0, -'.yaml'.length))
      .sort();
  } catch {
    return [];
  }
}

/** The lab, with the scenario's params put into its strings (and its text then, for `up`). */
function loadScenarioLab(source: string, file: ScenarioFile, params: Record<string, ParamValue>): { lab: Lab; labText?: string } {
  const path = labFileOf(source, file.lab);
  if (!path) {
    throw UsageError.forFile(source, [
      { path: 'lab', message: `"${file.lab}" is neither a lab file (give a path: ./${file.lab}.yaml) nor a built-in lab (${builtinLabs().join(', ')})` },
    ]);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw UsageError.forFile(source, [{ path: 'lab', message: code === 'ENOENT' ? `no such lab file: ${path}` : `cannot read ${path}: ${String(e)}` }]);
  }
  let data: unknown;
  try {
    data = parseYaml(text, { uniqueKeys: true });
  } catch (e) {
    // parseLab says it with the lab file's name.
    if (e instanceof YAMLParseError) return { lab: parseLab(text, path) };
    throw e;
  }
  if (!mentionsParams(data)) return { lab: parseLab(text, path) };
  const issues: InputIssue[] = [];
  const substituted = substituteParams(data, params, '', issues);
  if (issues.length)
    throw UsageError.forFile(
      path,
      issues.map((i) => ({ ...i, message: `${i.message} (params come from the scenario ${source})` })),
    );
  const labText = `# ${path} with the params of the scenario ${source}\n${stringifyYaml(substituted)}`;
  return { lab: parseLab(labText, path), labText };
}

/** Reads, checks and resolves a scenario file. */
export function loadScenario(fileArg: string): Scenario {
  const file = resolve(fileArg);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw UsageError.forFile(file, [{ path: '', message: code === 'ENOENT' ? 'no such scenario file' : `cannot be read: ${String(e)}` }]);
  }
  return parseScenario(text, file);
}

/** A scenario's text to the resolved Scenario (the lab file it names is read from disk). */
export function parseScenario(text: string, file: string): Scenario {
  const { file: parsed, params } = checkScenarioSchema(text, file);
  const { lab, labText } = loadScenarioLab(file, parsed, params);
  const issues: InputIssue[] = [];
  const report = (path: string, message: string) => issues.push({ path, message });
  const ctx = new LabContext(lab, report);
  const steps: Step[] = [];
  const seenNames = new Map<string, number>();
  const files = new Map<string, string>();
  const capture = (c: CaptureFile, path: string): CaptureSpec => {
    ctx.member(c.on, `${path}.on`);
    if (c.link !== undefined) ctx.linkBetween([c.on, c.link], `${path}.link`, `${c.on} has no link to ${c.link}`);
    const out = resolve(c.file);
    const other = files.get(out);
    if (other !== undefined) report(`${path}.file`, `${c.file} is also written by ${other}`);
    files.set(out, path);
    return { on: c.on, ...(c.link !== undefined ? { link: c.link } : {}), file: out, filter: c.filter ?? [] };
  };
  const captures = parsed.capture === undefined ? [] : Array.isArray(parsed.capture) ? parsed.capture : [parsed.capture];
  const runCaptures = captures.map((c, i) => capture(c, Array.isArray(parsed.capture) ? `capture[${i}]` : 'capture'));
  parsed.steps.forEach((s, index) => {
    const path = `steps[${index}]`;
    const earlier = seenNames.get(s.name);
    if (earlier !== undefined) report(`${path}.name`, `"${s.name}" is also the name of steps[${earlier}]: each step needs its own (one JUnit test case each)`);
    seenNames.set(s.name, index);
    const spec = resolveStep(s, path, ctx);
    if (!spec) return;
    steps.push({ ...spec, name: s.name, index, ...(s.capture ? { capture: capture(s.capture, `${path}.capture`) } : {}) });
  });
  if (issues.length) throw UsageError.forFile(file, issues);
  return {
    name: parsed.name ?? defaultName(file),
    ...(parsed.description !== undefined ? { description: parsed.description } : {}),
    file,
    lab,
    ...(labText !== undefined ? { labText } : {}),
    machines: parsed.machines ?? true,
    params,
    captures: runCaptures,
    steps,
  };
}

/** The lab's names and addresses, for checking what the steps refer to. */
class LabContext {
  readonly names: string[];
  private readonly natNames: string[];
  /** Address -> the member whose interface holds it. */
  readonly owners = new Map<string, string>();

  constructor(
    readonly lab: Lab,
    readonly report: (path: string, message: string) => void,
  ) {
    this.names = members(lab).map((m) => m.name);
    this.natNames = lab.nats.map((n) => n.name);
    for (const n of lab.nodes) this.owners.set(n.link.address, n.name);
    for (const n of lab.nats) {
      // Its pool: every outside address flows may leave from (its own address first).
      for (const a of [n.outside.address, ...(n.outside.pool ?? [])]) this.owners.set(a, n.name);
      this.owners.set(n.lan.address, n.name);
    }
    for (const l of lab.internet.links) this.owners.set(l.address, lab.internet.name);
  }

  member(name: string, path: string): boolean {
    if (this.names.includes(name)) return true;
    this.report(path, `lab "${this.lab.name}" has no member "${name}" (it has ${this.names.join(', ')})`);
    return false;
  }

  nat(name: string, path: string): boolean {
    if (this.natNames.includes(name)) return true;
    this.report(path, `lab "${this.lab.name}" has no NAT "${name}" (it has ${this.natNames.join(', ') || 'none'})`);
    return false;
  }

  /** The two members are joined by a link of the lab. */
  linkBetween([a, b]: string[], path: string, otherwise: string): void {
    if (!this.member(a!, path) || !this.member(b!, path)) return;
    const joined = this.lab.links.some((l) => (l.a.owner === a && l.b.owner === b) || (l.a.owner === b && l.b.owner === a));
    if (!joined) this.report(path, otherwise);
  }
}

function matcher(m: MatcherFile | undefined, path: string, ctx: LabContext): Matcher | undefined {
  if (m === undefined) return undefined;
  if (typeof m === 'string') return { kind: 'substring', text: m };
  try {
    return { kind: 'regex', source: m.regex, regex: new RegExp(m.regex, 'm') };
  } catch (e) {
    ctx.report(`${path}.regex`, `is not a regular expression: ${(e as Error).message}`);
    return undefined;
  }
}

function expectation(
  e: { exit?: number | number[]; stdout?: MatcherFile; stderr?: MatcherFile } | undefined,
  path: string,
  ctx: LabContext,
): OutputExpectation {
  const exit = e?.exit === undefined ? [0] : Array.isArray(e.exit) ? e.exit : [e.exit];
  if (exit.length === 0) ctx.report(`${path}.exit`, 'must list at least one exit status');
  const stdout = matcher(e?.stdout, `${path}.stdout`, ctx);
  const stderr = matcher(e?.stderr, `${path}.stderr`, ctx);
  return { exit, ...(stdout ? { stdout } : {}), ...(stderr ? { stderr } : {}) };
}

const ms = (seconds: number) => Math.round(seconds * 1000);

function resolveStep(s: StepFile, path: string, ctx: LabContext): StepSpec | undefined {
  const kinds = STEP_KINDS.filter((k) => s[k] !== undefined);
  if (kinds.length !== 1) {
    ctx.report(path, kinds.length ? `has ${kinds.join(' and ')}: one kind per step` : `must have one of ${STEP_KINDS.join(', ')} beside its name`);
    return undefined;
  }
  const at = `${path}.${kinds[0]}`;
  if (s.exec) {
    const e = s.exec;
    ctx.member(e.on, `${at}.on`);
    return {
      kind: 'exec',
      exec: {
        on: e.on,
        command: e.command,
        ...(e.input !== undefined ? { input: e.input } : {}),
        timeoutMs: ms(e.timeout ?? DEFAULTS.execTimeoutS),
        expect: expectation(e.expect, `${at}.expect`, ctx),
      },
    };
  }
  if (s.background) {
    const b = s.background;
    ctx.member(b.on, `${at}.on`);
    const stdout = matcher(b.ready?.stdout, `${at}.ready.stdout`, ctx);
    const stderr = matcher(b.ready?.stderr, `${at}.ready.stderr`, ctx);
    if (b.ready && !stdout && !stderr && !b.ready.stdout && !b.ready.stderr) ctx.report(`${at}.ready`, 'must say what to wait for: stdout or stderr');
    return {
      kind: 'background',
      background: {
        on: b.on,
        command: b.command,
        ...(b.input !== undefined ? { input: b.input } : {}),
        ...(stdout || stderr ? { ready: { ...(stdout ? { stdout } : {}), ...(stderr ? { stderr } : {}) } } : {}),
        timeoutMs: ms(b.timeout ?? DEFAULTS.readyTimeoutS),
      },
    };
  }
  if (s.wait !== undefined) {
    const w = s.wait;
    if (typeof w === 'number') return { kind: 'wait', wait: { seconds: w } };
    if ((w.seconds === undefined) === (w.until === undefined)) {
      ctx.report(at, 'must have either seconds (a pause) or until (a command to wait for), not both nor neither');
      return undefined;
    }
    if (w.seconds !== undefined) {
      if (w.timeout !== undefined || w.interval !== undefined) ctx.report(at, 'timeout and interval go with until, not with seconds');
      return { kind: 'wait', wait: { seconds: w.seconds } };
    }
    const u = w.until!;
    ctx.member(u.on, `${at}.until.on`);
    return {
      kind: 'wait',
      wait: {
        until: { on: u.on, command: u.command, ...(u.input !== undefined ? { input: u.input } : {}), expect: expectation(u.expect, `${at}.until.expect`, ctx) },
        timeoutMs: ms(w.timeout ?? DEFAULTS.waitTimeoutS),
        intervalMs: ms(w.interval ?? DEFAULTS.waitIntervalS),
      },
    };
  }
  const delivery = s['expect-udp'] ?? s['expect-tcp'];
  if (delivery) {
    const protocol = s['expect-udp'] ? 'udp' : 'tcp';
    ctx.member(delivery.from, `${at}.from`);
    const [address, portText] = delivery.to.split(':') as [string, string];
    const port = Number(portText);
    if (parseIpv4(address) === undefined) ctx.report(`${at}.to`, `"${address}" is not an IPv4 address`);
    if (!(port >= 1 && port <= 65535)) ctx.report(`${at}.to`, `port ${portText} is not 1-65535`);
    const owner = ctx.owners.get(address);
    if (!owner) {
      ctx.report(`${at}.to`, `${address} is no address of lab "${ctx.lab.name}": expect-${protocol} sends only to addresses inside the lab`);
      return undefined;
    }
    let target: { member: string; port: number };
    let why: string;
    if (delivery.at !== undefined) {
      const [m, p] = delivery.at.split(':') as [string, string | undefined];
      ctx.member(m, `${at}.at`);
      const listenPort = p === undefined ? port : Number(p);
      if (!(listenPort >= 1 && listenPort <= 65535)) ctx.report(`${at}.at`, `port ${p} is not 1-65535`);
      target = { member: m, port: listenPort };
      why = 'as the step says (at:)';
    } else {
      const forward = ctx.lab.nats.find((n) => n.name === owner)?.behaviour.forwards.find((f) => f.protocol === protocol && f.port === port);
      target = forward ? { member: forward.to, port: forward.toPort } : { member: owner, port };
      why = forward ? `${owner}'s forward of ${protocol} ${port} to ${forward.to}:${forward.toPort}` : `${address} is ${owner}'s`;
    }
    const expect = delivery.expect ?? 'delivered';
    return {
      kind: s['expect-udp'] ? 'expect-udp' : 'expect-tcp',
      delivery: {
        protocol,
        from: delivery.from,
        ...(delivery['from-port'] !== undefined ? { fromPort: delivery['from-port'] } : {}),
        to: { address, port },
        at: target,
        atWhy: why,
        expect,
        withinMs: ms(delivery.within ?? (expect === 'delivered' ? DEFAULTS.deliveredWithinS : DEFAULTS.droppedWithinS)),
      },
    };
  }
  if (s.flush !== undefined) {
    const names = s.flush === 'all' ? ctx.lab.nats.map((n) => n.name) : Array.isArray(s.flush) ? s.flush : [s.flush];
    if (s.flush !== 'all') for (const [i, n] of names.entries()) ctx.nat(n, Array.isArray(s.flush) ? `${at}[${i}]` : at);
    if (names.length === 0) ctx.report(at, `lab "${ctx.lab.name}" has no NAT to flush`);
    return { kind: 'flush', nats: names };
  }
  if (s.check) {
    const c = s.check;
    if (c.nat !== undefined) ctx.nat(c.nat, `${at}.nat`);
    const e = c.expect ?? 'declared';
    if (e !== 'declared') {
      if (e.type !== undefined && (e.mapping !== undefined || e.filtering !== undefined))
        ctx.report(`${at}.expect`, 'give a type, or mapping and filtering, not both');
      if (e.type === undefined && e.mapping === undefined && e.filtering === undefined)
        ctx.report(`${at}.expect`, 'must say what to expect: type, or mapping and filtering');
    }
    const expect = e === 'declared' ? 'declared' : e.type !== undefined ? { type: e.type, ...CLASSIC[e.type] } : { ...e };
    return { kind: 'check', check: { ...(c.nat !== undefined ? { nat: c.nat } : {}), expect, runs: c.runs ?? DEFAULTS.checkRuns } };
  }
  if (s.link) return resolveLink(s.link, at, ctx);
  return undefined;
}

const IMPAIRMENTS = ['delay', 'jitter', 'loss', 'rate', 'corrupt', 'duplicate', 'reorder', 'profile', 'direction'] as const;

function resolveLink(l: NonNullable<StepFile['link']>, at: string, ctx: LabContext): StepSpec | undefined {
  const actions = (['set', 'reset', 'down', 'up'] as const).filter((a) => l[a] !== undefined);
  if (actions.length !== 1) {
    ctx.report(
      at,
      actions.length ? `has ${actions.join(' and ')}: one change per step` : 'must have one of set, reset, down, up, naming the two ends: set: [c1-nat, inet]',
    );
    return undefined;
  }
  const action = actions[0]!;
  const given = IMPAIRMENTS.filter((k) => l[k] !== undefined);
  if (action !== 'set' && given.length) ctx.report(`${at}.${given[0]}`, `goes with set, not with ${action}`);
  const ends = l[action]!;
  if (ends === 'all') return { kind: 'link', link: { action: 'reset', between: 'all' } };
  ctx.linkBetween(ends, `${at}.${action}`, `lab "${ctx.lab.name}" has no link between ${ends[0]} and ${ends[1]}`);
  const between: [string, string] = [ends[0]!, ends[1]!];
  if (action === 'set') {
    const options = Object.fromEntries(given.map((k) => [k, l[k]!]));
    // Checked as `labctl link set` checks its options (lab/schema.ts, lab/resolve-links.ts): units, ranges, profiles.
    const where = (field: string) => (field ? `${at}.${field}` : at);
    const checked = checkLinkEntry({ between, ...options }, where);
    for (const i of checked.issues) ctx.report(i.path, i.message);
    const resolved = checked.entry ? resolveLinkEntry(ctx.lab, checked.entry, where, ctx.report) : undefined;
    if (!resolved) return undefined;
    return { kind: 'link', link: { action, between, options, shaping: resolved.shaping } };
  }
  return { kind: 'link', link: { action, between } };
}
