// Whether a step passed, and if not, what was expected and what happened instead: pure
// functions of what the step's command, receiver or check returned. The runner (steps.ts)
// gathers those facts; the reports (report.ts, junit.ts) print these words.
import type { Dependency } from '../lab/behaviour.js';
import type { DeliverySpec, Matcher, OutputExpectation } from './model.js';
import { describeEnding, type Ended, formatSeconds } from './processes.js';

export type StepStatus = 'passed' | 'failed' | 'skipped';

export interface StepResult {
  name: string;
  kind: string;
  status: StepStatus;
  durationMs: number;
  /** ISO time it started (absent for a skipped step). */
  startedAt?: string;
  /** Failed: what the step expected, and what happened instead. */
  expected?: string;
  happened?: string;
  /** It could not be run at all (a machine gone, a tool missing): JUnit's <error>, not <failure>. */
  error?: boolean;
  /** Skipped: why. */
  skipped?: string;
  /** What it ran and where, and what else the report should say. */
  notes: string[];
  /** What its command printed (exec, background, check, the last try of wait). */
  stdout?: string;
  stderr?: string;
}

/** The outcome of a judgement: passed, or what was expected and what happened. */
export type Verdict = { ok: true; notes?: string[] } | { ok: false; expected: string; happened: string; error?: boolean };

export function describeMatcher(m: Matcher): string {
  return m.kind === 'substring' ? `containing ${JSON.stringify(m.text)}` : `matching /${m.source}/`;
}

export function matches(m: Matcher, text: string): boolean {
  return m.kind === 'substring' ? text.includes(m.text) : m.regex.test(text);
}

/** "exit 0, stdout containing "abc"" */
export function describeExpectation(e: OutputExpectation): string {
  const parts = [e.exit.length === 1 ? `exit ${e.exit[0]}` : `exit ${e.exit.slice(0, -1).join(', ')} or ${e.exit[e.exit.length - 1]}`];
  if (e.stdout) parts.push(`stdout ${describeMatcher(e.stdout)}`);
  if (e.stderr) parts.push(`stderr ${describeMatcher(e.stderr)}`);
  return parts.join(', ');
}

/** The end of a text, for a one-line message: its last non-empty line, shortened. */
export function lastLine(text: string, max = 200): string {
  const line =
    text
      .trim()
      .split('\n')
      .filter((l) => l.trim())
      .pop() ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function quoted(label: string, text: string): string {
  return text.trim() ? `${label} ${JSON.stringify(lastLine(text))}` : `${label} empty`;
}

/** A command's result against what it should do. */
export function judgeOutput(e: OutputExpectation, ended: Ended, stdout: string, stderr: string, timeoutMs: number): Verdict {
  const expected = describeExpectation(e);
  if (ended.spawnError !== undefined) return { ok: false, expected, happened: describeEnding(ended), error: true };
  if (ended.stopped === 'timeout')
    return { ok: false, expected: `${expected}, within ${formatSeconds(timeoutMs)}`, happened: describeEnding(ended, timeoutMs) };
  const wrong: string[] = [];
  if (ended.exitCode === undefined || !e.exit.includes(ended.exitCode)) wrong.push(describeEnding(ended));
  if (e.stdout && !matches(e.stdout, stdout)) wrong.push(quoted('stdout', stdout));
  if (e.stderr && !matches(e.stderr, stderr)) wrong.push(quoted('stderr', stderr));
  if (!wrong.length) return { ok: true };
  // The exit status says the most when it is wrong; the output when only the output is.
  if (!wrong[0]!.startsWith('std')) {
    if (!e.stdout && stdout.trim()) wrong.push(quoted('stdout', stdout));
    if (!e.stderr && stderr.trim()) wrong.push(quoted('stderr', stderr));
  } else if (!wrong.some((w) => w.startsWith('stderr')) && stderr.trim()) wrong.push(quoted('stderr', stderr));
  return { ok: false, expected, happened: wrong.join('; ') };
}

/** "udp from c1 to 100.64.1.100:54321, received at c0:12345" */
export function describeDelivery(d: DeliverySpec): string {
  const from = d.fromPort !== undefined ? `${d.from} port ${d.fromPort}` : d.from;
  return `${d.protocol} from ${from} to ${d.to.address}:${d.to.port}`;
}

export interface DeliveryFacts {
  /** The receiver got our payload. */
  received: boolean;
  /** After this long (received). */
  afterMs?: number;
  /** The sender's own failure (TCP: connection refused or timed out), when it had one. */
  sender?: string;
  /** The receiver could not listen (its port taken, no such program). */
  receiverProblem?: string;
}

export function judgeDelivery(d: DeliverySpec, f: DeliveryFacts): Verdict {
  const what = describeDelivery(d);
  const where = `${d.at.member}:${d.at.port}`;
  const expected =
    d.expect === 'delivered'
      ? `${what} delivered to ${where} within ${formatSeconds(d.withinMs)}`
      : `${what} dropped (nothing at ${where} for ${formatSeconds(d.withinMs)})`;
  if (f.receiverProblem) return { ok: false, expected, happened: `the receiver at ${where} could not listen: ${f.receiverProblem}`, error: true };
  const arrived = `it arrived at ${where}${f.afterMs !== undefined ? ` after ${Math.round(f.afterMs)} ms` : ''}`;
  if (d.expect === 'delivered') {
    if (f.received) return { ok: true, notes: [arrived] };
    return { ok: false, expected, happened: `nothing arrived at ${where} within ${formatSeconds(d.withinMs)}${f.sender ? ` (the sender: ${f.sender})` : ''}` };
  }
  if (!f.received) return { ok: true, notes: [`nothing arrived at ${where} in ${formatSeconds(d.withinMs)}${f.sender ? ` (the sender: ${f.sender})` : ''}`] };
  return { ok: false, expected, happened: arrived };
}

/** What `labctl check --json` prints, as far as a scenario reads it. */
export interface CheckDocument {
  exitCode?: number;
  targets?: {
    name: string;
    measured: { mapping: string; filtering: string };
    rows: { test: string; declared?: string; measured: string; match?: boolean }[];
    match?: boolean;
  }[];
  unmeasured?: string[];
}

export function judgeCheck(
  expect: 'declared' | { mapping?: Dependency; filtering?: Dependency; type?: string },
  doc: CheckDocument | undefined,
  exitCode: number | undefined,
  stderr: string,
): Verdict {
  const wanted =
    expect === 'declared'
      ? 'every NAT as the lab declares it'
      : expect.type !== undefined
        ? `${expect.type} (mapping ${expect.mapping}, filtering ${expect.filtering})`
        : [expect.mapping ? `mapping ${expect.mapping}` : '', expect.filtering ? `filtering ${expect.filtering}` : ''].filter(Boolean).join(', ');
  if (!doc?.targets)
    return { ok: false, expected: wanted, happened: `labctl check failed (exit ${exitCode ?? '?'}): ${lastLine(stderr) || 'no report'}`, error: true };
  if (doc.unmeasured?.length) return { ok: false, expected: wanted, happened: `could not measure ${doc.unmeasured.join(', ')}: no answers to the probes` };
  if (expect === 'declared') {
    const differs = doc.targets.flatMap((t) =>
      t.rows.filter((r) => r.match === false).map((r) => `${t.name}: ${r.test} declared ${r.declared}, measured ${r.measured}`),
    );
    if (!differs.length && exitCode === 0)
      return { ok: true, notes: doc.targets.map((t) => `${t.name}: mapping ${t.measured.mapping}, filtering ${t.measured.filtering}`) };
    return { ok: false, expected: wanted, happened: differs.join('; ') || `labctl check exited ${exitCode}: ${lastLine(stderr)}` };
  }
  const differs = doc.targets.flatMap((t) => [
    ...(expect.mapping && t.measured.mapping !== expect.mapping ? [`${t.name}: mapping ${t.measured.mapping}`] : []),
    ...(expect.filtering && t.measured.filtering !== expect.filtering ? [`${t.name}: filtering ${t.measured.filtering}`] : []),
  ]);
  if (differs.length) return { ok: false, expected: wanted, happened: `measured ${differs.join('; ')}` };
  return { ok: true, notes: doc.targets.map((t) => `${t.name}: mapping ${t.measured.mapping}, filtering ${t.measured.filtering}`) };
}
