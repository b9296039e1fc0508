// The systemd backend's unit template, systemd/labctl-machine.unit-properties: its parser
// and what it turns into for StartTransientUnit (no bus here; systemd.ts sends it). The
// file is the truth: it is read at every start; this module only knows how to send each key.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { whichExecutable } from '../util/process.js';

/** The template file labctl reads at every start. */
export const UNIT_PROPERTIES_FILE = fileURLToPath(new URL('../../systemd/labctl-machine.unit-properties', import.meta.url));

type Kind = 'string' | 'bool' | 'usec' | 'count' | 'exec' | 'exit-status' | 'device-allow';

/** The keys the template may use: their unit-file section, how the value is sent, and the D-Bus property name. */
export const KNOWN_PROPERTIES: Record<string, { section: 'Unit' | 'Service'; kind: Kind; dbus?: string }> = {
  Description: { section: 'Unit', kind: 'string' },
  CollectMode: { section: 'Unit', kind: 'string' },
  Type: { section: 'Service', kind: 'string' },
  ExecStart: { section: 'Service', kind: 'exec' },
  Slice: { section: 'Service', kind: 'string' },
  Delegate: { section: 'Service', kind: 'bool' },
  KillMode: { section: 'Service', kind: 'string' },
  TimeoutStartSec: { section: 'Service', kind: 'usec', dbus: 'TimeoutStartUSec' },
  TimeoutStopSec: { section: 'Service', kind: 'usec', dbus: 'TimeoutStopUSec' },
  WatchdogSec: { section: 'Service', kind: 'usec', dbus: 'WatchdogUSec' },
  SuccessExitStatus: { section: 'Service', kind: 'exit-status' },
  RestartForceExitStatus: { section: 'Service', kind: 'exit-status' },
  TasksMax: { section: 'Service', kind: 'count' },
  DevicePolicy: { section: 'Service', kind: 'string' },
  DeviceAllow: { section: 'Service', kind: 'device-allow' },
};

/** What the placeholders of the template stand for. */
export interface UnitVars {
  machine: string;
  lab: string;
  netns: string;
  directory: string;
  image: string;
  readyTimeoutMs: string;
  /** The machine's own nspawn options (nspawn.ts machineArgs): {machineArgs}, a word of ExecStart= alone, becomes these words. */
  machineArgs?: string[];
}

export interface TemplateEntry {
  section: string;
  key: string;
  value: string;
  line: number;
}

export class UnitTemplateError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: ${problems.join('; ')}`);
    this.name = 'UnitTemplateError';
  }
}

const PLACEHOLDER_RE = /\{([A-Za-z]+)\}/g;
const PLACEHOLDERS: readonly (keyof UnitVars)[] = ['machine', 'lab', 'netns', 'directory', 'image', 'readyTimeoutMs', 'machineArgs'];
/** The one placeholder that stands for several words (or none): only as a word of ExecStart= on its own. */
const WORDS_PLACEHOLDER = '{machineArgs}';

/** Parses the template text (unit-file syntax); every problem is reported with its line. */
export function parseUnitTemplate(text: string, file = UNIT_PROPERTIES_FILE): TemplateEntry[] {
  const entries: TemplateEntry[] = [];
  const problems: string[] = [];
  let section = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    if (!line || line.startsWith('#') || line.startsWith(';')) return;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      if (section !== 'Unit' && section !== 'Service') problems.push(`line ${n}: unknown section [${section}] (use [Unit] or [Service])`);
      return;
    }
    const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (!kv) {
      problems.push(`line ${n}: not a Key=Value line: ${line}`);
      return;
    }
    const key = kv[1]!;
    const value = kv[2]!.trim();
    const known = KNOWN_PROPERTIES[key];
    if (!known) problems.push(`line ${n}: ${key}= is not a property labctl sends (known: ${Object.keys(KNOWN_PROPERTIES).join(', ')})`);
    else if (!section) problems.push(`line ${n}: ${key}= comes before any [Unit] or [Service] section`);
    else if (known.section !== section) problems.push(`line ${n}: ${key}= belongs in [${known.section}], not [${section}]`);
    if (raw.trimEnd().endsWith('\\')) problems.push(`line ${n}: continuation lines are not supported`);
    if (known?.kind === 'exec' && /["'\\;|&$`]/.test(value)) {
      problems.push(`line ${n}: ${key}= is split on spaces only: no quotes, escapes or shell syntax`);
    }
    for (const m of value.matchAll(PLACEHOLDER_RE)) {
      if (!PLACEHOLDERS.includes(m[1] as keyof UnitVars))
        problems.push(`line ${n}: unknown placeholder {${m[1]}} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`);
    }
    if (
      value.includes(WORDS_PLACEHOLDER) &&
      !(known?.kind === 'exec' && value.split(/\s+/).every((w) => w === WORDS_PLACEHOLDER || !w.includes(WORDS_PLACEHOLDER)))
    )
      problems.push(`line ${n}: ${WORDS_PLACEHOLDER} stands for several words: only as a word of ExecStart= on its own`);
    entries.push({ section, key, value, line: n });
  });
  if (!entries.some((e) => e.key === 'ExecStart')) problems.push('no ExecStart= line');
  if (problems.length) throw new UnitTemplateError(file, problems);
  return entries;
}

/** Reads and parses the template (every call: the file is the truth). */
export function loadUnitTemplate(file = UNIT_PROPERTIES_FILE): TemplateEntry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UnitTemplateError(file, [`cannot read the unit template: ${(e as Error).message}`]);
  }
  return parseUnitTemplate(text, file);
}

function fill(value: string, vars: UnitVars): string {
  return value.replace(PLACEHOLDER_RE, (_, name: string) => String(vars[name as keyof UnitVars] ?? ''));
}

const USEC_UNITS: Record<string, number> = {
  us: 1,
  usec: 1,
  ms: 1_000,
  msec: 1_000,
  s: 1_000_000,
  sec: 1_000_000,
  second: 1_000_000,
  seconds: 1_000_000,
  m: 60_000_000,
  min: 60_000_000,
  minute: 60_000_000,
  minutes: 60_000_000,
  h: 3_600_000_000,
  hr: 3_600_000_000,
  hour: 3_600_000_000,
  hours: 3_600_000_000,
  d: 86_400_000_000,
  day: 86_400_000_000,
  days: 86_400_000_000,
};
const UINT64_MAX = 2n ** 64n - 1n;

/** A systemd time span ("15s", "1min 30s", "2500ms", "90" = seconds, "infinity") in microseconds. */
export function parseTimespan(text: string): bigint {
  const t = text.trim();
  if (t === 'infinity') return UINT64_MAX;
  if (/^\d+(\.\d+)?$/.test(t)) return BigInt(Math.round(Number(t) * 1_000_000));
  const re = /(\d+(?:\.\d+)?)\s*([a-z]+)\s*/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(t))) {
    const unit = USEC_UNITS[m[2]!];
    if (unit === undefined) throw new Error(`unknown time unit "${m[2]}" in "${text}"`);
    total += Number(m[1]) * unit;
    consumed = re.lastIndex;
  }
  if (consumed !== t.length || !t) throw new Error(`not a time span: "${text}"`);
  return BigInt(Math.round(total));
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13, SIGTERM: 15 };

function parseExitStatus(text: string): [number[], number[]] {
  const codes: number[] = [];
  const signals: number[] = [];
  for (const w of text.split(/\s+/).filter(Boolean)) {
    if (/^\d+$/.test(w) && Number(w) <= 255) codes.push(Number(w));
    else if (SIGNALS[w] !== undefined) signals.push(SIGNALS[w]);
    else throw new Error(`not an exit status or signal: "${w}"`);
  }
  return [codes, signals];
}

function parseBool(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(t)) return true;
  if (['0', 'no', 'false', 'off'].includes(t)) return false;
  throw new Error(`not a boolean: "${text}"`);
}

/** ExecStart='s program, found in $PATH (plus the usual system directories) the way a shell would. */
function findExecutable(name: string): string {
  const found = whichExecutable(name);
  if (!found) throw new Error(`${name} not found in PATH`);
  return found;
}

/** One property of StartTransientUnit's a(sv), as plain data (for tests) and as the D-Bus value. */
export interface UnitProperty {
  name: string;
  signature: string;
  value: unknown;
}

/**
 * The unit properties for one machine: the template's keys with the placeholders
 * filled in, converted to what StartTransientUnit takes. ExecStart= becomes the
 * a(sasb) form: one program, its argument array, no shell.
 */
export function unitProperties(entries: TemplateEntry[], vars: UnitVars, resolveExe: (name: string) => string = findExecutable): UnitProperty[] {
  const out: UnitProperty[] = [];
  const devices: [string, string][] = [];
  const set = (p: UnitProperty) => {
    const i = out.findIndex((o) => o.name === p.name);
    if (i >= 0) out[i] = p;
    else out.push(p);
  };
  for (const e of entries) {
    const known = KNOWN_PROPERTIES[e.key]!;
    const name = known.dbus ?? e.key;
    try {
      switch (known.kind) {
        case 'string':
          set({ name, signature: 's', value: fill(e.value, vars) });
          break;
        case 'bool':
          set({ name, signature: 'b', value: parseBool(fill(e.value, vars)) });
          break;
        case 'usec':
          set({ name, signature: 't', value: parseTimespan(fill(e.value, vars)) });
          break;
        case 'count': {
          const v = fill(e.value, vars).trim();
          if (v !== 'infinity' && !/^\d+$/.test(v)) throw new Error(`not a number: "${v}"`);
          set({ name, signature: 't', value: v === 'infinity' ? UINT64_MAX : BigInt(v) });
          break;
        }
        case 'exit-status':
          set({ name, signature: '(aiai)', value: parseExitStatus(fill(e.value, vars)) });
          break;
        case 'device-allow': {
          const [path, perms = 'rwm', ...rest] = e.value.split(/\s+/);
          if (!path || rest.length || !/^[rwm]+$/.test(perms)) throw new Error(`expected "DEVICE [rwm]", got "${e.value}"`);
          devices.push([path, perms]);
          set({ name, signature: 'a(ss)', value: devices });
          break;
        }
        case 'exec': {
          const words = e.value
            .split(/\s+/)
            .filter(Boolean)
            .flatMap((w) => (w === WORDS_PLACEHOLDER ? (vars.machineArgs ?? []) : [fill(w, vars)]));
          const program = resolveExe(words[0]!);
          set({ name, signature: 'a(sasb)', value: [[program, [program, ...words.slice(1)], false]] });
          break;
        }
      }
    } catch (err) {
      throw new UnitTemplateError(UNIT_PROPERTIES_FILE, [`line ${e.line}: ${e.key}=: ${(err as Error).message}`]);
    }
  }
  return out;
}
