// What each kind of step does. A step gathers facts (a command's exit status and output, a
// receiver's packets, a check's report) and verdict.ts judges them. Commands run on a lab
// member: in its machine when the lab runs one for it (the machine backend's execArgv, as
// `labctl exec`), else in its network namespace with the host's tools (nsenter, as labctl's
// own commands). Receivers and senders of expect-udp/-tcp always run in the namespaces with
// the host's socat: the network is what they test, and an image need not have socat.
//
// `link` changes links through apply/links.ts, as `labctl link` does. `check` and `capture`
// run labctl itself as a child process (`labctl check --json`, `labctl capture -w`), not its
// functions in this process: check's session (check/session.ts) hooks SIGINT to remove its
// STUN site and then exits the process, which would cut a scenario's own clean-up short; a
// capture runs beside the other steps until stopped, and ends as Ctrl-C ends it.
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../lab/model.js';
import { members } from '../lab/model.js';
import type { MachineState } from '../host/state.js';
import { inNetns } from '../host/netns.js';
import { messageOf } from '../util/errors.js';
import { sleep } from '../util/process.js';
import type { BackgroundSpec, CaptureSpec, CheckSpec, DeliverySpec, ExecSpec, LinkSpec, Step, WaitSpec } from './model.js';
import { describeEnding, formatSeconds, Proc, runCommand } from './processes.js';
import { type CheckDocument, describeMatcher, judgeCheck, judgeDelivery, judgeOutput, lastLine, matches, type Verdict } from './verdict.js';

/** labctl itself, as a child process: bin/labctl.js two levels above this module (src/scenario, dist/bundle alike). */
export function labctlCommand(): string[] {
  return [process.execPath, join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'labctl.js')];
}

/** What the steps of one run share. */
export interface RunContext {
  lab: Lab;
  /** The lab file labctl's other commands read this lab from (its state's source). */
  labSource: string;
  /** The machine each member runs, where the lab runs machines (none: the network alone). */
  machines: Map<string, MachineState>;
  /** Aborted by Ctrl-C: every wait ends, every command is stopped. */
  signal: AbortSignal;
  /** Background commands started so far, by step name. */
  background: { step: string; proc: Proc }[];
}

/** What a step returns: its verdict, notes for the report, and what its command printed. */
export interface StepOutcome {
  verdict: Verdict;
  notes: string[];
  stdout?: string;
  stderr?: string;
}

const netnsOf = (lab: Lab, member: string) => members(lab).find((m) => m.name === member)!.netns;

/** argv that runs `command` on a member, and where that is, in words. */
export async function argvOn(ctx: RunContext, member: string, command: string[]): Promise<{ argv: string[]; where: string }> {
  const machine = ctx.machines.get(member);
  if (machine) {
    const { backendFor } = await import('../machine/select.js');
    const backend = await backendFor(machine.backend);
    return { argv: await backend.execArgv(machine, command), where: `in machine ${machine.name}` };
  }
  const netns = netnsOf(ctx.lab, member);
  return { argv: inNetns(netns, command), where: `in namespace ${netns}` };
}

/** A sleep that ends early (false) when the run is aborted. */
export function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function execStep(ctx: RunContext, e: ExecSpec): Promise<StepOutcome> {
  const { argv, where } = await argvOn(ctx, e.on, e.command);
  const { proc, ended } = await runCommand(argv, { ...(e.input !== undefined ? { input: e.input } : {}), timeoutMs: e.timeoutMs, signal: ctx.signal });
  return {
    verdict: judgeOutput(e.expect, ended, proc.stdout, proc.stderr, e.timeoutMs),
    notes: [`ran ${where}: ${describeEnding(ended, e.timeoutMs)}`],
    stdout: proc.stdout,
    stderr: proc.stderr,
  };
}

/** How long a background command is watched after it starts: a command that cannot run fails its step. */
const BACKGROUND_SETTLE_MS = 100;

async function backgroundStep(ctx: RunContext, name: string, b: BackgroundSpec): Promise<StepOutcome> {
  const { argv, where } = await argvOn(ctx, b.on, b.command);
  const proc = new Proc(argv, b.input !== undefined ? { input: b.input } : {});
  ctx.background.push({ step: name, proc });
  const notes = [`started ${where}`];
  const ready = b.ready;
  if (ready) {
    const seen = () => (!ready.stdout || matches(ready.stdout, proc.stdout)) && (!ready.stderr || matches(ready.stderr, proc.stderr));
    const wanted = [ready.stdout ? `stdout ${describeMatcher(ready.stdout)}` : '', ready.stderr ? `stderr ${describeMatcher(ready.stderr)}` : '']
      .filter(Boolean)
      .join(' and ');
    if (await proc.waitUntil(seen, b.timeoutMs, ctx.signal)) return { verdict: { ok: true }, notes: [...notes, `ready: ${wanted}`] };
    const ended = proc.done;
    return {
      verdict: {
        ok: false,
        expected: `running, with ${wanted} within ${formatSeconds(b.timeoutMs)}`,
        happened: ended
          ? `it ended first: ${describeEnding(ended)}${proc.stderr.trim() ? `; stderr ${JSON.stringify(lastLine(proc.stderr))}` : ''}`
          : `not within ${formatSeconds(b.timeoutMs)}`,
        ...(ended?.spawnError !== undefined ? { error: true } : {}),
      },
      notes,
      stdout: proc.stdout,
      stderr: proc.stderr,
    };
  }
  await Promise.race([proc.ended, sleep(BACKGROUND_SETTLE_MS)]);
  const ended = proc.done;
  if (ended && (ended.spawnError !== undefined || ended.exitCode !== 0)) {
    return {
      verdict: {
        ok: false,
        expected: 'a command that keeps running',
        happened: `it ended at once: ${describeEnding(ended)}`,
        ...(ended.spawnError !== undefined ? { error: true } : {}),
      },
      notes,
      stdout: proc.stdout,
      stderr: proc.stderr,
    };
  }
  return { verdict: { ok: true }, notes: ended ? [...notes, 'it ended at once, with exit 0'] : notes };
}

async function waitStep(ctx: RunContext, w: WaitSpec): Promise<StepOutcome> {
  if ('seconds' in w) {
    await pause(w.seconds * 1000, ctx.signal);
    return { verdict: { ok: true }, notes: [`waited ${formatSeconds(w.seconds * 1000)}`] };
  }
  const { argv, where } = await argvOn(ctx, w.until.on, w.until.command);
  const deadline = performance.now() + w.timeoutMs;
  let tries = 0;
  for (;;) {
    tries++;
    const left = Math.max(1, deadline - performance.now());
    const { proc, ended } = await runCommand(argv, { ...(w.until.input !== undefined ? { input: w.until.input } : {}), timeoutMs: left, signal: ctx.signal });
    const verdict = judgeOutput(w.until.expect, ended, proc.stdout, proc.stderr, left);
    const notes = [`tried ${tries} time${tries === 1 ? '' : 's'} ${where}`];
    if (verdict.ok) return { verdict, notes, stdout: proc.stdout, stderr: proc.stderr };
    if (!verdict.ok && verdict.error) return { verdict, notes, stdout: proc.stdout, stderr: proc.stderr };
    if (performance.now() + w.intervalMs >= deadline || ctx.signal.aborted) {
      return {
        verdict: {
          ok: false,
          expected: `${verdict.expected.replace(/, within .*$/, '')} within ${formatSeconds(w.timeoutMs)}`,
          happened: `the last try: ${verdict.happened}`,
        },
        notes,
        stdout: proc.stdout,
        stderr: proc.stderr,
      };
    }
    await pause(w.intervalMs, ctx.signal);
  }
}

/** The socat lines that say the receiver listens (UDP: bound and reading; TCP: listening). */
const RECEIVER_READY = { udp: 'starting data transfer loop', tcp: 'listening on' } as const;
const RECEIVER_START_MS = 5000;

async function deliveryStep(ctx: RunContext, d: DeliverySpec): Promise<StepOutcome> {
  const token = `labctl-test-${randomBytes(6).toString('hex')}`;
  const listen = d.protocol === 'udp' ? `UDP4-RECV:${d.at.port},reuseaddr` : `TCP4-LISTEN:${d.at.port},reuseaddr`;
  const receiver = new Proc(inNetns(netnsOf(ctx.lab, d.at.member), ['socat', '-d', '-d', '-u', listen, 'STDOUT']));
  const notes = [`receiver at ${d.at.member}:${d.at.port} (${d.atWhy})`];
  try {
    const listening = await receiver.waitUntil(() => receiver.stderr.includes(RECEIVER_READY[d.protocol]), RECEIVER_START_MS, ctx.signal);
    if (!listening) {
      const ended = receiver.done;
      const problem = ended
        ? `${describeEnding(ended)}${receiver.stderr.trim() ? `: ${lastLine(receiver.stderr)}` : ''}`
        : `not listening within ${formatSeconds(RECEIVER_START_MS)}`;
      return { verdict: judgeDelivery(d, { received: false, receiverProblem: problem }), notes };
    }
    const source = d.fromPort !== undefined ? `,sourceport=${d.fromPort},reuseaddr` : '';
    const target =
      d.protocol === 'udp'
        ? `UDP4-SENDTO:${d.to.address}:${d.to.port}${source}`
        : `TCP4:${d.to.address}:${d.to.port},connect-timeout=${Math.max(0.1, d.withinMs / 1000)}${source}`;
    const sentAt = performance.now();
    const sender = runCommand(inNetns(netnsOf(ctx.lab, d.from), ['socat', '-u', 'STDIN', target]), {
      input: `${token}\n`,
      timeoutMs: d.withinMs + 2000,
      signal: ctx.signal,
    });
    const received = await receiver.waitUntil(() => receiver.stdout.includes(token), d.withinMs, ctx.signal);
    const afterMs = performance.now() - sentAt;
    const sent = await sender;
    const senderProblem =
      sent.ended.exitCode === 0
        ? undefined
        : `${describeEnding(sent.ended, d.withinMs + 2000)}${sent.proc.stderr.trim() ? `: ${lastLine(sent.proc.stderr)}` : ''}`;
    if (sent.ended.spawnError !== undefined) {
      return { verdict: { ok: false, expected: `a sender on ${d.from}`, happened: `socat could not run: ${sent.ended.spawnError}`, error: true }, notes };
    }
    const verdict = judgeDelivery(d, { received, ...(received ? { afterMs } : {}), ...(senderProblem ? { sender: senderProblem } : {}) });
    return { verdict, notes: [...notes, ...(verdict.ok && verdict.notes ? verdict.notes : [])] };
  } finally {
    await receiver.stop();
  }
}

async function flushStep(ctx: RunContext, nats: string[]): Promise<StepOutcome> {
  const { flushNat } = await import('../apply/nat-state.js');
  await Promise.all(ctx.lab.nats.filter((n) => nats.includes(n.name)).map(flushNat));
  return { verdict: { ok: true }, notes: [`flushed ${nats.join(', ')}`] };
}

const CHECK_TIMEOUT_MS = 300_000;

async function checkStep(ctx: RunContext, c: CheckSpec): Promise<StepOutcome> {
  const argv = [...labctlCommand(), 'check', ctx.labSource, '--json', '--runs', String(c.runs), ...(c.nat !== undefined ? ['--nat', c.nat] : [])];
  const { proc, ended } = await runCommand(argv, { timeoutMs: CHECK_TIMEOUT_MS, signal: ctx.signal });
  let doc: CheckDocument | undefined;
  try {
    doc = JSON.parse(proc.stdout) as CheckDocument;
  } catch {
    doc = undefined;
  }
  const verdict = judgeCheck(c.expect, doc, ended.exitCode, ended.stopped === 'timeout' ? describeEnding(ended, CHECK_TIMEOUT_MS) : proc.stderr);
  return { verdict, notes: verdict.ok && verdict.notes ? verdict.notes : [], stderr: proc.stderr };
}

/** `labctl link ...` as a user would type it (for messages). */
export function linkCommand(l: LinkSpec): string {
  if (l.action === 'reset' && l.between === 'all') return 'labctl link reset --all';
  const [a, b] = l.between as [string, string];
  const options = l.action === 'set' ? Object.entries(l.options).flatMap(([k, v]) => [`--${k}`, v]) : [];
  return ['labctl', 'link', l.action, a, b, ...options].join(' ');
}

/** A link changed as `labctl link` changes it (apply/links.ts), recorded in the lab's state. */
async function linkStep(ctx: RunContext, l: LinkSpec): Promise<StepOutcome> {
  const { effectiveShaping, linkDown, linkTarget, linkUp, setLinks } = await import('../apply/links.js');
  const { findLink } = await import('../lab/resolve-links.js');
  const { NO_SHAPING, shapingIsEmpty } = await import('../lab/impairment.js');
  const target = linkTarget(ctx.lab.name);
  const done = (said: string[]): StepOutcome => ({ verdict: { ok: true }, notes: [`as \`${linkCommand(l)}\``, ...said] });
  if (l.between === 'all') {
    const links = target.lab.links.filter((x) => !shapingIsEmpty(effectiveShaping(x, target.state)));
    if (!links.length) return done(['no link had an impairment']);
    const changed = await setLinks(
      target,
      links.map((x) => ({ link: x, shaping: NO_SHAPING })),
    );
    return done(changed.map((c) => c.message));
  }
  const found = findLink(target.lab, l.between[0], l.between[1]);
  if ('problem' in found) throw new Error(found.problem);
  const link = target.lab.links[found.index]!;
  if (l.action === 'down') return done([await linkDown(target, link)]);
  if (l.action === 'up') return done([await linkUp(target, link)]);
  // set: the directions it names replace what the link does now; reset: nothing in either.
  const shaping = l.action === 'set' ? { ...effectiveShaping(link, target.state), ...l.shaping } : NO_SHAPING;
  const [changed] = await setLinks(target, [{ link, shaping }]);
  return done([changed!.message]);
}

export async function runStep(ctx: RunContext, step: Step): Promise<StepOutcome> {
  try {
    switch (step.kind) {
      case 'exec':
        return await execStep(ctx, step.exec);
      case 'background':
        return await backgroundStep(ctx, step.name, step.background);
      case 'wait':
        return await waitStep(ctx, step.wait);
      case 'expect-udp':
      case 'expect-tcp':
        return await deliveryStep(ctx, step.delivery);
      case 'flush':
        return await flushStep(ctx, step.nats);
      case 'check':
        return await checkStep(ctx, step.check);
      case 'link':
        return await linkStep(ctx, step.link);
    }
  } catch (e) {
    return { verdict: { ok: false, expected: 'the step to run', happened: messageOf(e), error: true }, notes: [] };
  }
}

// --- captures ---

const CAPTURE_START_MS = 15_000;

export interface RunningCapture {
  spec: CaptureSpec;
  proc: Proc;
}

/** Starts `labctl capture MEMBER -w FILE` and waits until it captures; throws with its words when it cannot. */
export async function startCapture(ctx: RunContext, spec: CaptureSpec): Promise<RunningCapture> {
  const argv = [
    ...labctlCommand(),
    'capture',
    spec.on,
    ...(spec.link !== undefined ? ['--link', spec.link] : []),
    '--lab',
    ctx.lab.name,
    '-w',
    spec.file,
    ...(spec.filter.length ? ['--', ...spec.filter] : []),
  ];
  const proc = new Proc(argv, { gentle: true });
  const ready = await proc.waitUntil(() => /capturing on/.test(proc.stderr), CAPTURE_START_MS, ctx.signal);
  if (!ready) {
    await proc.stop();
    const ended = proc.done;
    throw new Error(
      `capture of ${spec.on} to ${spec.file} did not start${ended ? ` (${describeEnding(ended)})` : ''}: ${lastLine(proc.stderr) || 'no word from it'}`,
    );
  }
  return { spec, proc };
}

/** Ends a capture as Ctrl-C would (it completes the file), and says how many packets it wrote. */
export async function stopCapture(c: RunningCapture): Promise<string> {
  await c.proc.stop();
  const counted = /(\d+) packets? captured[^\n]*/.exec(c.proc.stderr);
  return `${c.spec.file}: ${counted ? counted[0] : `capture ended (${describeEnding(c.proc.done ?? {})}): ${lastLine(c.proc.stderr)}`}`;
}
