// A machine's own software (the lab file's files, env, services and commands; README "Your
// software in the machines"), the same with either backend: the host directory labctl
// generates for the machine, the unit files in it, and what `up` does once the machine and
// the lab's network are up.
//
// How files and services get into a machine that boots an ephemeral snapshot: the snapshot
// exists only once systemd-nspawn runs, and only nspawn's own options reach it before the
// machine's systemd starts, on both backends alike (the systemd backend's nspawn runs in a
// unit labctl does not otherwise touch). So labctl writes a per-machine directory in the
// lab's run dir and nspawn binds it read-only twice (nspawn.ts machineArgs):
//   DIR        -> /run/labctl                    the files' contents (files/N)
//   DIR/units  -> /run/systemd/system.attached   unit files: a directory in the machine's
//                 systemd unit search path (systemd.unit(5)) that nothing else in a lab
//                 machine uses (portablectl's runtime attachments), read at its boot
// labctl-files.service (DefaultDependencies=no, Before=sysinit.target, wanted by it) copies
// each file to its path with `install`, so the files are in place before any of the
// image's ordinary units, and long before the lab's services, start. They are written into
// the snapshot, never into the image, and go with it.
//
// The services are NAME.service units wanted by labctl-services.target, which `up` starts
// once the machine has booted AND the lab's network is configured (machines boot while the
// network is still being made: a service started at boot could find no address or route).
// Then the commands run, in order, and then each service is checked: still running, never
// restarted (SERVICE_SETTLE_MS after it started), else `up` fails with its journal lines.
import { copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../exec/run.js';
import { formatCommand } from '../exec/quote.js';
import type { MachineSoftware } from '../lab/model.js';
import type { MachineState } from '../host/state.js';
import { sleep } from '../util/process.js';
import { type MachineBackend, MachineStartError, type MachineSpec } from './backend.js';
import { tailOfJournal } from './journal.js';

/** Where the machine sees labctl's generated directory, and its unit files. */
export const MACHINE_FILES_DIR = '/run/labctl';
export const MACHINE_UNITS_DIR = '/run/systemd/system.attached';
export const FILES_UNIT = 'labctl-files.service';
export const SERVICES_TARGET = 'labctl-services.target';
/** How long a service must have run, without a restart, to count as started. */
export const SERVICE_SETTLE_MS = 1_000;
/** A command of `commands:` that runs longer than this fails `up`. */
export const COMMAND_TIMEOUT_MS = 10 * 60_000;
const JOURNAL_LINES = 20;

/**
 * One word of a unit file's command line or value, double-quoted so that systemd reads it
 * back as exactly `word` (systemd.service(5) "Command lines", systemd.syntax(7)): backslash
 * and quote escaped, control characters as C escapes, "%" doubled (specifiers), and on a
 * command line "$" doubled (environment variable substitution).
 */
export function unitWord(word: string, where: 'command' | 'value' = 'command'): string {
  let out = '"';
  for (const ch of word) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (ch === '%') out += '%%';
    else if (ch === '$' && where === 'command') out += '$$';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

const commandLine = (argv: string[]) => argv.map((w) => unitWord(w)).join(' ');
const header = (machine: string, lab: string) => `# Written by labctl for machine ${machine} of lab ${lab}, from the lab file; gone with the machine.\n`;

/** NAME.service: one of the lab file's services. */
export function serviceUnit(service: MachineSoftware['services'][number], software: MachineSoftware, machine: string, lab: string): string {
  const env = Object.entries(software.env).map(([k, v]) => `Environment=${unitWord(`${k}=${v}`, 'value')}\n`);
  return [
    header(machine, lab),
    '[Unit]\n',
    `Description=labctl service ${service.name} (machine ${machine}, lab ${lab})\n`,
    // Its files are in place long before (sysinit); the order only says so.
    software.files.length ? `After=${FILES_UNIT}\n` : '',
    '\n[Service]\n',
    // exec: the start fails when the program cannot be executed (simple would report success).
    'Type=exec\n',
    `ExecStart=${commandLine(service.command)}\n`,
    `Restart=${service.restart}\n`,
    ...env,
  ].join('');
}

/** labctl-services.target: what `up` starts once the network is there. */
export function servicesTarget(software: MachineSoftware, machine: string, lab: string): string {
  const units = software.services.map((s) => `${s.name}.service`).join(' ');
  return `${header(machine, lab)}[Unit]\nDescription=labctl: the lab file's services\nWants=${units}\nAfter=${units}\n`;
}

/** labctl-files.service: copies the lab file's files from /run/labctl/files into place, early in boot. */
export function filesUnit(software: MachineSoftware, machine: string, lab: string): string {
  const lines = software.files.map(
    (f, i) => `ExecStart=${commandLine(['install', '-D', '-m', f.mode.toString(8).padStart(4, '0'), '-T', `${MACHINE_FILES_DIR}/files/${i}`, f.path])}\n`,
  );
  return [
    header(machine, lab),
    '[Unit]\n',
    "Description=labctl: the lab file's files\n",
    'DefaultDependencies=no\n',
    'After=local-fs.target\n',
    'Before=sysinit.target\n',
    '\n[Service]\n',
    'Type=oneshot\n',
    'RemainAfterExit=yes\n',
    ...lines,
  ].join('');
}

/** What the generated directory holds: path (relative to it) -> text, and the symlinks. */
export function softwareTree(software: MachineSoftware, machine: string, lab: string): { files: Map<string, string>; links: Map<string, string> } {
  const files = new Map<string, string>();
  const links = new Map<string, string>();
  if (software.files.length) {
    files.set(`units/${FILES_UNIT}`, filesUnit(software, machine, lab));
    links.set(`units/sysinit.target.wants/${FILES_UNIT}`, `../${FILES_UNIT}`);
  }
  for (const s of software.services) files.set(`units/${s.name}.service`, serviceUnit(s, software, machine, lab));
  if (software.services.length) files.set(`units/${SERVICES_TARGET}`, servicesTarget(software, machine, lab));
  return { files, links };
}

/** Whether the machine needs the generated directory at all. */
export const needsSoftwareDir = (software: MachineSoftware | undefined): boolean => Boolean(software && (software.files.length || software.services.length));

/**
 * Writes the machine's generated directory (afresh), before its nspawn starts: units, and
 * the files' contents (`from:` copied now, so the machine gets what the file held at `up`).
 * Root-only, as the run dir it is in.
 */
export function prepareSoftwareDir(spec: Pick<MachineSpec, 'name' | 'lab' | 'software' | 'softwareDir'>): void {
  if (!spec.software || !needsSoftwareDir(spec.software)) return;
  if (!spec.softwareDir) throw new MachineStartError(spec.name, 'internal: a machine with files or services needs a softwareDir');
  const dir = spec.softwareDir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'units'), { recursive: true, mode: 0o700 });
  mkdirSync(join(dir, 'files'), { mode: 0o700 });
  spec.software.files.forEach((f, i) => {
    const to = join(dir, 'files', String(i));
    try {
      if (f.from !== undefined) copyFileSync(f.from, to);
      else writeFileSync(to, f.content ?? '', { mode: 0o600 });
    } catch (e) {
      throw new MachineStartError(spec.name, `cannot read ${f.from} for ${f.path}: ${(e as Error).message}`);
    }
  });
  const tree = softwareTree(spec.software, spec.name, spec.lab);
  for (const [path, text] of tree.files) writeFileSync(join(dir, path), text, { mode: 0o644 });
  for (const [path, target] of tree.links) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    symlinkSync(target, join(dir, path));
  }
}

interface UnitStatus {
  Id: string;
  LoadState: string;
  ActiveState: string;
  SubState: string;
  Result: string;
  NRestarts: string;
  ExecMainCode: string;
  ExecMainStatus: string;
}
const STATUS_PROPERTIES = ['Id', 'LoadState', 'ActiveState', 'SubState', 'Result', 'NRestarts', 'ExecMainCode', 'ExecMainStatus'] as const;

/** `systemctl show -p ...` of several units: one block per unit, blank lines between. */
export function parseShow(text: string): UnitStatus[] {
  return text
    .split(/\n\s*\n/)
    .filter((b) => b.trim())
    .map((block) => {
      const props: Record<string, string> = {};
      for (const line of block.split('\n')) {
        const i = line.indexOf('=');
        if (i > 0) props[line.slice(0, i)] = line.slice(i + 1);
      }
      return Object.fromEntries(STATUS_PROPERTIES.map((p) => [p, props[p] ?? ''])) as unknown as UnitStatus;
    });
}

/** Why a service does not count as started, or undefined when it runs (or ran and finished well, with restart: no). */
export function serviceProblem(s: UnitStatus): string | undefined {
  if (s.LoadState !== 'loaded') return `its unit did not load (${s.LoadState || 'unknown'})`;
  const exited =
    s.ExecMainCode === '1' ? `exit status ${s.ExecMainStatus}` : s.ExecMainCode === '2' || s.ExecMainCode === '3' ? `signal ${s.ExecMainStatus}` : '';
  const restarts = Number(s.NRestarts) || 0;
  if (s.ActiveState === 'failed') return `it failed (${s.Result}${exited ? `, ${exited}` : ''}${restarts ? `, after ${restarts} restarts` : ''})`;
  if (s.SubState === 'auto-restart' || restarts > 0)
    return `it keeps exiting and being restarted (${restarts} restarts${exited ? `, last ${exited}` : ''}; restart: ${s.SubState === 'auto-restart' ? 'pending' : 'done'})`;
  if (s.ActiveState === 'active') return undefined;
  if (s.ActiveState === 'inactive')
    return s.Result === 'success' && s.ExecMainStatus === '0' ? undefined : `it stopped (${s.Result}${exited ? `, ${exited}` : ''})`;
  return `it is ${s.ActiveState} (${s.SubState})`;
}

/** Runs argv in the machine; the result, never a throw. */
async function inMachine(backend: MachineBackend, m: MachineState, argv: string[], timeoutMs = 30_000) {
  return run(await backend.execArgv(m, argv), { allowFailure: true, timeoutMs, step: `machine ${m.name}: ${argv[0]}` });
}

/** The unit's last journal lines in the machine, for an error message. */
export async function unitJournal(backend: MachineBackend, m: MachineState, unit: string, lines = JOURNAL_LINES): Promise<string> {
  const r = await inMachine(backend, m, ['journalctl', '--unit', unit, '--no-pager', '--output', 'json', '--lines', String(lines * 3)]);
  return r.exitCode === 0 ? tailOfJournal(r.stdout, lines) : '';
}

async function unitStatus(backend: MachineBackend, m: MachineState, units: string[]): Promise<UnitStatus[]> {
  const r = await inMachine(backend, m, ['systemctl', 'show', ...STATUS_PROPERTIES.flatMap((p) => ['-p', p]), ...units]);
  if (r.exitCode !== 0) throw new MachineStartError(m.name, `systemctl show failed in the machine: ${r.stderr.trim()}`);
  return parseShow(r.stdout);
}

/** A failed unit's error, with its journal lines. */
async function unitFailure(backend: MachineBackend, m: MachineState, unit: string, what: string): Promise<MachineStartError> {
  const journal = await unitJournal(backend, m, unit);
  return new MachineStartError(m.name, what, journal, `journalctl -u ${unit} in the machine`);
}

/**
 * What `up` does with a machine's software once the machine has booted and the lab's
 * network is up: checks that its files were installed, starts its services, runs its
 * commands in order, and checks that every service started and stays up. Throws
 * MachineStartError (the machine is left running: `up` rolls the lab back).
 */
export async function startSoftware(backend: MachineBackend, m: MachineState, software: MachineSoftware): Promise<void> {
  if (software.files.length) {
    const [files] = await unitStatus(backend, m, [FILES_UNIT]);
    if (files?.ActiveState !== 'active')
      throw await unitFailure(backend, m, FILES_UNIT, `the lab file's files were not installed (${FILES_UNIT} is ${files?.ActiveState ?? 'missing'})`);
  }
  let servicesStarted = Date.now();
  if (software.services.length) {
    servicesStarted = Date.now();
    // Waits for the services' start jobs: with Type=exec, until each program was executed.
    const r = await inMachine(backend, m, ['systemctl', 'start', SERVICES_TARGET], 120_000);
    if (r.exitCode !== 0) throw await unitFailure(backend, m, SERVICES_TARGET, `the services could not be started: ${r.stderr.trim() || r.reason}`);
  }
  for (const [i, argv] of software.commands.entries()) {
    const r = await inMachine(backend, m, argv, COMMAND_TIMEOUT_MS);
    if (r.exitCode !== 0) {
      // (run() puts the reason in stderr where the command printed none: it is in the message already.)
      const output = `${r.stdout}${r.stderr === r.reason ? '' : r.stderr}`.trim().split('\n').slice(-JOURNAL_LINES).join('\n');
      throw new MachineStartError(m.name, `commands[${i}] (${formatCommand(argv)}) failed: ${r.reason ?? `exit status ${r.exitCode}`}`, output, 'its output');
    }
  }
  if (!software.services.length) return;
  await sleep(servicesStarted + SERVICE_SETTLE_MS - Date.now());
  const units = software.services.map((s) => `${s.name}.service`);
  const statuses = await unitStatus(backend, m, units);
  for (const [i, unit] of units.entries()) {
    const problem = statuses[i] ? serviceProblem(statuses[i]) : 'systemctl said nothing about it';
    if (problem) throw await unitFailure(backend, m, unit, `service ${software.services[i]!.name} did not start: ${problem}`);
  }
}
