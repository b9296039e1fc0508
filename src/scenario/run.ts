// `labctl test`: runs a scenario. The lab comes up first if it is not (`labctl up` when the
// scenario boots machines, else `labctl net up`), then the run's captures start, then the
// steps run in order under a progress list (listr2), each judged as it ends; after a failed
// step the rest are skipped. At the end (or at Ctrl-C) the captures are completed, every
// process the run started is stopped, and the lab is taken down when this run brought it up
// (unless --keep): nothing of the run is left.
import { mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Listr } from 'listr2';
import type { Lab } from '../lab/model.js';
import { ensureRunDir, labRunDir, type MachineState, readState, type LabState, withLabLock } from '../host/state.js';
import type { BackendName } from '../machine/backend.js';
import { planNetwork } from '../plan/network.js';
import { LabctlError, messageOf } from '../util/errors.js';
import type { Scenario, Step } from './model.js';
import { stopAll } from './processes.js';
import { runExitCode, type ScenarioRun } from './report.js';
import { type RunContext, type RunningCapture, runStep, startCapture, stopCapture } from './steps.js';
import type { StepResult } from './verdict.js';

export interface TestOptions {
  /** Leave the lab up at the end when this run brought it up. */
  keep?: boolean;
  backend?: BackendName;
  image?: string;
  dataDir?: string;
  readyTimeoutMs?: number;
  renderer: 'default' | 'simple' | 'silent';
  /** A line of progress outside the list (the lab coming up, going down). */
  say: (line: string) => void;
}

interface LabSession {
  mode: 'machines' | 'network';
  broughtUp: boolean;
  machines: Map<string, MachineState>;
  /** The file the lab's state names as its source: what labctl's other commands read it from. */
  labSource: string;
}

/** The running machines of a lab that is up, by member. */
function machinesOf(lab: Lab, state: LabState): Map<string, MachineState> {
  const byName = new Map((state.machines ?? []).map((m) => [m.name, m]));
  const out = new Map<string, MachineState>();
  for (const m of [...lab.nodes, ...lab.nats, lab.internet]) {
    const machine = byName.get(`${lab.prefix}${m.name}`);
    if (machine) out.set(m.name, machine);
  }
  return out;
}

/** Where `test` writes the lab with its params put in (see Scenario.labText): the lab's run dir, which `labctl down` removes. */
export const labCopyPath = (labName: string) => join(labRunDir(labName), 'scenario-lab.yaml');

function removeLabCopy(labName: string): void {
  rmSync(labCopyPath(labName), { force: true });
  try {
    if (readdirSync(labRunDir(labName)).length === 0) rmdirSync(labRunDir(labName));
  } catch {
    /* gone already */
  }
}

/** The scenario's lab as it will be used: already up (then as it is), or to be brought up (machines or the network alone). */
function labPlan(s: Scenario): { state?: LabState; boots: boolean } {
  const state = readState(s.lab.name);
  if (state?.status === 'up') {
    if (state.planHash !== planNetwork(s.lab).hash) {
      throw new LabctlError(
        `lab "${s.lab.name}" is up from a different definition (${state.source}); the scenario needs it as ${s.lab.source}${s.labText ? ' with its params' : ''} says: \`labctl down ${s.lab.name}\` first`,
      );
    }
    return { state, boots: false };
  }
  return { boots: s.machines && [...s.lab.nodes, ...s.lab.nats, s.lab.internet].some((m) => m.machine) };
}

async function bringUp(s: Scenario, o: TestOptions, plan: { state?: LabState; boots: boolean }, signal: AbortSignal): Promise<LabSession> {
  const name = s.lab.name;
  if (plan.state) {
    const machines = s.machines ? machinesOf(s.lab, plan.state) : new Map<string, MachineState>();
    o.say(`lab "${name}" is already up${machines.size ? ` with ${machines.size} machines` : ''}: the scenario uses it as it is, and leaves it up`);
    return { mode: machines.size ? 'machines' : 'network', broughtUp: false, machines, labSource: plan.state.source };
  }
  let lab = s.lab;
  if (s.labText !== undefined) {
    // Brought up from the copy with the params: `labctl link`, `capture` and `down` read that.
    ensureRunDir();
    mkdirSync(labRunDir(name), { recursive: true, mode: 0o700 });
    writeFileSync(labCopyPath(name), s.labText, { mode: 0o600 });
    lab = { ...s.lab, source: labCopyPath(name) };
  }
  try {
    if (plan.boots) {
      const { labUp } = await import('../apply/lab.js');
      const r = await labUp(lab, {
        ...(o.backend ? { backend: o.backend } : {}),
        ...(o.image ? { image: o.image } : {}),
        ...(o.dataDir ? { dataDir: o.dataDir } : {}),
        ...(o.readyTimeoutMs ? { readyTimeoutMs: o.readyTimeoutMs } : {}),
        renderer: o.renderer,
      });
      o.say(r.message);
      const state = readState(name);
      return { mode: 'machines', broughtUp: true, machines: state ? machinesOf(lab, state) : new Map(), labSource: lab.source };
    }
    const { netUpLocked } = await import('../apply/net.js');
    const r = await withLabLock(name, () => netUpLocked(lab, { signal }));
    o.say(`${r.message} (the network alone: commands run in the members' namespaces)`);
    return { mode: 'network', broughtUp: true, machines: new Map(), labSource: lab.source };
  } catch (e) {
    if (s.labText !== undefined) removeLabCopy(name);
    throw e;
  }
}

async function takeDown(s: Scenario, session: LabSession): Promise<void> {
  if (session.mode === 'machines') {
    const { labDown } = await import('../apply/lab.js');
    await labDown(s.lab.name, { lab: s.lab });
  } else {
    const { netDown } = await import('../apply/net.js');
    await netDown(s.lab.name, { lab: s.lab });
  }
  removeLabCopy(s.lab.name);
}

/** Milliseconds to a tenth: what reports show. */
const tenths = (ms: number) => Math.round(ms * 10) / 10;

function skipped(step: Step, why: string): StepResult {
  return { name: step.name, kind: step.kind, status: 'skipped', durationMs: 0, skipped: why, notes: [] };
}

/** Runs one step (and its capture, if it has one) and judges it. */
async function executeStep(ctx: RunContext, step: Step, captures: string[]): Promise<StepResult> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const base = { name: step.name, kind: step.kind, startedAt };
  let capture: RunningCapture | undefined;
  if (step.capture) {
    try {
      capture = await startCapture(ctx, step.capture);
    } catch (e) {
      return {
        ...base,
        status: 'failed',
        durationMs: tenths(performance.now() - t0),
        expected: 'its capture to start',
        happened: messageOf(e),
        error: true,
        notes: [],
      };
    }
  }
  const out = await runStep(ctx, step);
  if (capture) captures.push(await stopCapture(capture));
  const durationMs = tenths(performance.now() - t0);
  const printed = { ...(out.stdout ? { stdout: out.stdout } : {}), ...(out.stderr ? { stderr: out.stderr } : {}) };
  if (out.verdict.ok) return { ...base, status: 'passed', durationMs, notes: out.notes, ...printed };
  const { expected, happened, error } = out.verdict;
  return { ...base, status: 'failed', durationMs, expected, happened, ...(error ? { error } : {}), notes: out.notes, ...printed };
}

export async function runScenario(s: Scenario, o: TestOptions): Promise<ScenarioRun> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const abort = new AbortController();
  const results: StepResult[] = [];
  const captures: string[] = [];
  const cleanupErrors: string[] = [];
  let interrupted: string | undefined;
  let cleaningUp = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted || cleaningUp) {
      process.stderr.write(`labctl test: ${signal}: still cleaning up (stopping what the scenario started); please wait...\n`);
      return;
    }
    interrupted = signal;
    process.stderr.write(`\nlabctl test: ${signal}: stopping the scenario's commands${o.keep ? '' : ' and taking down what it brought up'}...\n`);
    abort.abort(new Error(`interrupted by ${signal}`));
    void stopAll();
  };
  let listening = false;
  const listen = () => {
    if (listening) return;
    listening = true;
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
  };
  const finish = (fields: Partial<ScenarioRun> & Pick<ScenarioRun, 'mode' | 'broughtUp' | 'labAtEnd'>, setupExitCode?: number): ScenarioRun => {
    const facts = { steps: results, cleanupErrors, ...(interrupted ? { interrupted } : {}), ...fields };
    const exitCode = runExitCode(facts, setupExitCode);
    return {
      scenario: s.name,
      file: s.file,
      lab: s.lab.name,
      passed: exitCode === 0,
      exitCode,
      startedAt,
      durationMs: tenths(performance.now() - t0),
      params: s.params,
      captures,
      ...facts,
    };
  };

  let session: LabSession;
  try {
    const plan = labPlan(s);
    // While `labctl up` boots the machines, its own handler rolls back and exits at Ctrl-C
    // (this one has nothing to stop yet); from then on, this one stops the run.
    listen();
    session = await bringUp(s, o, plan, abort.signal);
  } catch (e) {
    stopListening(onSignal);
    for (const step of s.steps) results.push(skipped(step, interrupted ? `interrupted by ${interrupted}` : 'the lab did not come up'));
    return finish(
      { mode: s.machines ? 'machines' : 'network', broughtUp: false, labAtEnd: 'left as it was', setupError: messageOf(e) },
      (e as LabctlError).exitCode,
    );
  }

  const ctx: RunContext = { lab: s.lab, labSource: session.labSource, machines: session.machines, signal: abort.signal, background: [] };
  const running: RunningCapture[] = [];
  let setupError: string | undefined;
  try {
    for (const c of s.captures) running.push(await startCapture(ctx, c));
  } catch (e) {
    setupError = messageOf(e);
  }
  let stopReason = setupError !== undefined ? 'a capture of the run did not start' : undefined;
  const tasks = new Listr(
    s.steps.map((step) => ({
      title: step.name,
      task: async (_ctx: unknown, task: { title: string; skip: (message?: string) => void }) => {
        const why = interrupted ? `interrupted by ${interrupted}` : stopReason;
        if (why) {
          results.push(skipped(step, why));
          return task.skip(`${step.name}: skipped (${why})`);
        }
        let r = await executeStep(ctx, step, captures);
        if (interrupted) r = { ...r, status: 'failed', error: true, expected: r.expected ?? 'the step to finish', happened: `interrupted by ${interrupted}` };
        results.push(r);
        task.title = `${step.name} (${Math.round(r.durationMs)} ms)`;
        if (r.status === 'failed') {
          stopReason = `after the failed step "${step.name}"`;
          throw new Error(`expected ${r.expected}; happened: ${r.happened}`);
        }
      },
    })),
    {
      renderer: o.renderer,
      exitOnError: false,
      registerSignalListeners: false,
      rendererOptions: { collapseSkips: false, collapseErrors: false },
    },
  );
  if (setupError === undefined) await tasks.run().catch(() => undefined);
  else for (const step of s.steps) results.push(skipped(step, stopReason!));

  // The end, also after Ctrl-C: captures completed, every command stopped, the lab taken down.
  cleaningUp = true;
  for (const c of running) captures.push(await stopCapture(c));
  await stopAll();
  for (const { step, proc } of ctx.background) {
    const r = results.find((x) => x.name === step);
    if (!r) continue;
    const ended = proc.done;
    r.notes.push(
      ended?.stopped
        ? 'stopped at the end of the run'
        : `ended by itself before the end of the run (${ended?.signal ? `killed by ${ended.signal}` : `exit ${ended?.exitCode}`})`,
    );
    if (proc.stdout) r.stdout = proc.stdout;
    if (proc.stderr) r.stderr = proc.stderr;
  }
  let labAtEnd: ScenarioRun['labAtEnd'] = 'left as it was';
  if (session.broughtUp && o.keep) labAtEnd = 'kept';
  else if (session.broughtUp) {
    try {
      await takeDown(s, session);
      labAtEnd = 'taken down';
    } catch (e) {
      cleanupErrors.push(`taking lab "${s.lab.name}" down failed: ${messageOf(e)}; run \`labctl down ${s.lab.name}\``);
    }
  }
  stopListening(onSignal);
  return finish({ mode: session.mode, broughtUp: session.broughtUp, labAtEnd, ...(setupError !== undefined ? { setupError } : {}) });
}

function stopListening(handler: (signal: NodeJS.Signals) => void): void {
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, handler);
}
