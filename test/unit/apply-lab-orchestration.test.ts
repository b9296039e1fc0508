// `labctl up` and `down` orchestrated against stand-ins (src/apply/lab.ts's LabHost): a
// machine backend whose starts the test lets finish or fail one by one, a network that
// writes the state file as net.ts does, and signals the test sends. The state file is the
// real one (host/state.ts), in a run dir of each test's own. What is pinned: what the
// state file records when, what a failed or interrupted `up` stops and in which order,
// and what a second `up` or a `down` after a crash does. No root; nothing on the host.
// (test/e2e/machines-direct.test.ts does the same things for real.)
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { labDown, labUp, type LabHost } from '../../src/apply/lab.js';
import { imageUsesOf, labRunDir, readState, removeState, writeState, type LabState, type MachineState } from '../../src/host/state.js';
import { parseLab } from '../../src/lab/resolve.js';
import type { Lab } from '../../src/lab/model.js';
import { MachineStartError, type BackendName, type MachineBackend, type MachineInfo, type MachineSpec } from '../../src/machine/backend.js';
import { planNetwork } from '../../src/plan/network.js';
import { LabctlError } from '../../src/util/errors.js';

const LAB: Lab = parseLab('name: ut\nprefix: ut-\nnodes:\n  - { name: a }\n  - { name: b }\n  - { name: c }\n', 'ut.yaml');
const [A, B, C] = ['ut-a', 'ut-b', 'ut-c'];
const IMAGE_DIR = '/nonexistent/mnt/bookworm/rootfs';

interface Gate {
  promise: Promise<void>;
  open(): void;
  fail(e: Error): void;
}
function gate(): Gate {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  promise.catch(() => {});
  return { promise, open, fail };
}

async function until(what: () => boolean, label: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${label}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** What the stand-ins saw and hold: one per test. */
class World {
  readonly events: string[] = [];
  readonly running = new Map<string, MachineState>();
  readonly namespaces = new Set<string>();
  /** Starts (by machine) and the network that wait until the test opens them. */
  readonly gates = new Map<string, Gate>();
  /** Each start's spec, and whether its signal was aborted when start was called. */
  readonly starts: { spec: MachineSpec; abortedAtCall: boolean }[] = [];
  /** The state file's machines when the first stop came. */
  recordedAtFirstStop: string[] | undefined;
  interrupt: ((signal: NodeJS.Signals) => void) | undefined;
  readonly exited = gate();

  hold(name: string): Gate {
    const g = gate();
    this.gates.set(name, g);
    return g;
  }
}

/** A machine backend that boots nothing: a start ends when the test says. */
class StandInBackend implements MachineBackend {
  constructor(
    readonly name: BackendName,
    private readonly world: World,
  ) {}

  async start(spec: MachineSpec): Promise<MachineState> {
    const w = this.world;
    w.starts.push({ spec, abortedAtCall: spec.signal?.aborted ?? false });
    w.events.push(`start ${spec.name}`);
    // As both real backends: a start asked for once `up` rolls back does not start.
    if (spec.signal?.aborted) throw new MachineStartError(spec.name, 'not started: up is being rolled back');
    await w.gates.get(spec.name)?.promise;
    const state: MachineState = {
      name: spec.name,
      netns: spec.netns,
      image: spec.image,
      directory: spec.directory,
      backend: this.name,
      startedAt: new Date().toISOString(),
    };
    w.running.set(spec.name, state);
    w.events.push(`started ${spec.name}`);
    return state;
  }

  async stop(m: MachineState): Promise<void> {
    const w = this.world;
    w.recordedAtFirstStop ??= recordedNames();
    w.events.push(`stop ${m.name}`);
    w.running.delete(m.name);
  }

  async info(m: MachineState): Promise<MachineInfo> {
    return { name: m.name, state: this.world.running.has(m.name) ? 'running' : 'gone', addresses: [] };
  }

  async execArgv(): Promise<string[]> {
    throw new Error('not in these tests');
  }

  async shellCommand(): Promise<never> {
    throw new Error('not in these tests');
  }

  async registered(): Promise<{ name: string; unit: string }[]> {
    return [];
  }

  async strays(machines: { name: string; netns: string }[]): Promise<MachineState[]> {
    return machines.flatMap((m) => {
      const running = this.world.running.get(m.name);
      return running && running.netns === m.netns ? [{ name: m.name, netns: m.netns, image: '', directory: running.directory, backend: this.name }] : [];
    });
  }
}

function standInHost(world: World): LabHost {
  const backend = new StandInBackend('direct', world);
  return {
    chooseBackend: async () => backend,
    backendFor: async () => backend,
    mountImage: async (image) => {
      world.events.push(`mount ${image}`);
      return IMAGE_DIR;
    },
    releaseImage: async (use) => void world.events.push(`release ${use.image}`),
    sweepSnapshots: async (directory) => void world.events.push(`sweep ${directory}`),
    // As net.ts's netUpLocked: the state file says `creating` before anything is made, and
    // `up` (keeping the machines recorded meanwhile) once all is configured; the signal is
    // checked between steps.
    netUp: async (lab, hooks) => {
      world.events.push('net up');
      const plan = planNetwork(lab);
      writeState(stateOf(lab, 'creating'));
      await world.gates.get('network')?.promise;
      for (const n of plan.namespaces) world.namespaces.add(n.netns);
      hooks.namespacesCreated();
      hooks.signal.throwIfAborted();
      writeState({ ...readState(lab.name)!, status: 'up' });
    },
    netDown: async (labName) => {
      world.events.push('net down');
      const removed = readState(labName)?.namespaces.map((n) => n.netns) ?? [];
      for (const n of removed) world.namespaces.delete(n);
      removeState(labName);
      return { removed, message: `lab "${labName}" is down` };
    },
    namespaces: () => [...world.namespaces],
    machineLimit: () => undefined,
    onInterrupt: (handler) => {
      world.interrupt = handler;
      return () => (world.interrupt = undefined);
    },
    exitInterrupted: () => world.exited.open(),
  };
}

function stateOf(lab: Lab, status: LabState['status'], machines?: MachineState[]): LabState {
  return {
    lab: lab.name,
    source: lab.source,
    planHash: planNetwork(lab).hash,
    status,
    createdAt: new Date().toISOString(),
    namespaces: planNetwork(lab).namespaces.map((n) => ({ netns: n.netns, owner: n.owner, role: n.role })),
    nats: [],
    ...(machines ? { machines } : {}),
  };
}

const recordedNames = (lab = LAB.name) => (readState(lab)?.machines ?? []).map((m) => m.name);
const machineState = (name: string): MachineState => ({ name, netns: `ns-${name}`, image: 'bookworm', directory: IMAGE_DIR, backend: 'direct' });
/** The events from the first one that starts with `prefix` on. */
const from = (events: string[], prefix: string) => events.slice(events.findIndex((e) => e.startsWith(prefix)));

let runDir = '';
beforeEach(() => {
  runDir = mkdtempSync(join(tmpdir(), 'labctl-orchestration-'));
  process.env.LABCTL_RUN_DIR = runDir;
});
afterEach(() => {
  delete process.env.LABCTL_RUN_DIR;
  rmSync(runDir, { recursive: true, force: true });
});

describe('labUp', () => {
  test('records each machine in the state file as soon as it has started; the lab is up once all have', async () => {
    const world = new World();
    const gates = [A, B, C].map((n) => world.hold(n));
    const up = labUp(LAB, { renderer: 'silent' }, standInHost(world));
    await until(() => world.starts.length === 3, 'all three starts asked for');
    assert.equal(readState(LAB.name)?.status, 'up', 'the network is up while the machines boot');
    for (const [i, name] of [B, A, C].entries()) {
      gates[[A, B, C].indexOf(name)]!.open();
      await until(() => recordedNames().includes(name), `${name} recorded`);
      assert.deepEqual(recordedNames(), [B, A, C].slice(0, i + 1), `${name} is recorded before the next machine has started`);
    }
    const result = await up;
    assert.equal(result.changed, true);
    assert.equal(result.message, 'lab "ut" is up: 3 machines (direct backend)');
    const state = readState(LAB.name)!;
    assert.equal(state.status, 'up');
    assert.deepEqual(
      state.machines?.map((m) => [m.name, m.netns, m.directory, m.backend]),
      [B, A, C].map((n) => [n, `ns-${n}`, IMAGE_DIR, 'direct']),
    );
    assert.ok(world.starts.every((s) => s.spec.directory === IMAGE_DIR && s.spec.consoleLog === join(labRunDir(LAB.name), `${s.spec.name}.console`)));
    assert.deepEqual(world.events.slice(0, 3), ['mount bookworm', `sweep ${IMAGE_DIR}`, 'net up'], 'the image first, then the network');
    assert.ok(!world.events.some((e) => e.startsWith('stop')));
    assert.equal(world.interrupt, undefined, 'no signal handler left behind');
  });

  test('one machine fails to start: the started ones are stopped, then every machine by name, then the network; the state file goes', async () => {
    const world = new World();
    const [a, b, c] = [A, B, C].map((n) => world.hold(n));
    const up = labUp(LAB, { renderer: 'silent' }, standInHost(world));
    await until(() => world.starts.length === 3, 'all three starts asked for');
    a!.open();
    await until(() => recordedNames().includes(A), `${A} recorded`);
    b!.fail(new MachineStartError(B, 'not ready after 300 ms', 'console line'));
    c!.open(); // still booting when b failed: up waits for it, then stops it too
    await assert.rejects(up, (e: unknown) => {
      assert.ok(e instanceof LabctlError);
      assert.match(e.message, /^machine ut-b: not ready after 300 ms\nlast console lines:\nconsole line\n/);
      assert.match(e.message, /\nrolled back: nothing of lab "ut" is left$/);
      return true;
    });
    assert.deepEqual(world.recordedAtFirstStop, [A, C], 'both machines that started were recorded before the rollback');
    const rollback = from(world.events, 'stop');
    assert.deepEqual(rollback.slice(0, 2).sort(), [`stop ${A}`, `stop ${C}`], 'first the machines that started');
    assert.deepEqual(rollback.slice(2, 3), [`sweep ${IMAGE_DIR}`]);
    assert.deepEqual(
      rollback.slice(3, 6).sort(),
      [A, B, C].map((n) => `stop ${n}`),
      'then every machine by name (one whose start was cut short too)',
    );
    assert.deepEqual(rollback.slice(6), [`sweep ${IMAGE_DIR}`, 'net down', 'release bookworm'], 'the network, then the image it no longer uses');
    assert.equal(readState(LAB.name), undefined, 'no state file left');
    assert.ok(!existsSync(labRunDir(LAB.name)), 'no run dir left');
    assert.equal(world.running.size, 0);
  });

  test("the network fails: no machine starts, the error is the network's, and nothing is left", async () => {
    const world = new World();
    const host = standInHost(world);
    const up = labUp(
      LAB,
      { renderer: 'silent' },
      {
        ...host,
        netUp: async (lab) => {
          world.events.push('net up');
          writeState(stateOf(lab, 'creating'));
          throw new Error('ip: RTNETLINK answers: File exists');
        },
      },
    );
    await assert.rejects(up, (e: unknown) => {
      assert.ok(e instanceof LabctlError);
      // Not "only 0 of 3 machines started": the machines did not start because of it.
      assert.equal(e.message, 'ip: RTNETLINK answers: File exists\nrolled back: nothing of lab "ut" is left');
      return true;
    });
    assert.ok(!world.events.some((e) => e.startsWith('start')), world.events.join(', '));
    assert.equal(readState(LAB.name), undefined);
  });

  test('Ctrl-C while machines start: none is recorded after it, the ones that start anyway are stopped, then the network goes and labctl exits', async () => {
    const world = new World();
    const [a, b, c] = [A, B, C].map((n) => world.hold(n));
    void labUp(LAB, { renderer: 'silent' }, standInHost(world)); // ends with exitInterrupted()
    await until(() => world.starts.length === 3, 'all three starts asked for');
    a!.open();
    await until(() => recordedNames().includes(A), `${A} recorded`);
    world.interrupt!('SIGINT');
    assert.ok(
      world.starts.every((s) => s.spec.signal?.aborted),
      'every start in flight is told',
    );
    // Starts in flight end as they do: b boots after all, c gives up.
    b!.open();
    c!.fail(new MachineStartError(C, 'not started: up is being rolled back'));
    await world.exited.promise;
    assert.deepEqual(world.recordedAtFirstStop, [A], `${B}, started after the interrupt, was never recorded`);
    const rollback = from(world.events, 'stop');
    assert.ok(world.events.indexOf(`started ${B}`) < world.events.indexOf(`stop ${A}`), 'the rollback waits for the starts in flight');
    assert.deepEqual(rollback.slice(0, 2).sort(), [`stop ${A}`, `stop ${B}`]);
    assert.deepEqual(
      rollback.slice(3, 6).sort(),
      [A, B, C].map((n) => `stop ${n}`),
    );
    assert.deepEqual(rollback.slice(-2), ['net down', 'release bookworm']);
    assert.equal(readState(LAB.name), undefined, 'no state file left');
    assert.equal(world.running.size, 0);
  });

  test('Ctrl-C while the network is made: no machine starts (each start is asked with the abort already signalled)', async () => {
    const world = new World();
    const network = world.hold('network');
    void labUp(LAB, { renderer: 'silent' }, standInHost(world));
    await until(() => world.events.includes('net up'), 'the network is being made');
    world.interrupt!('SIGTERM');
    network.open();
    await world.exited.promise;
    assert.ok(
      world.starts.every((s) => s.abortedAtCall),
      'no start asked for before the abort',
    );
    assert.ok(!world.events.some((e) => e.startsWith('started')), world.events.join(', '));
    assert.deepEqual(world.events.slice(-2), ['net down', 'release bookworm']);
    assert.equal(readState(LAB.name), undefined);
    assert.deepEqual([...world.namespaces], []);
  });

  test('a second up with everything recorded and running changes nothing', async () => {
    const world = new World();
    const host = standInHost(world);
    await labUp(LAB, { renderer: 'silent' }, host);
    const before = readState(LAB.name);
    const events = world.events.length;
    const again = await labUp(LAB, { renderer: 'silent' }, host);
    assert.equal(again.changed, false);
    assert.equal(again.message, 'lab "ut" is already up with 3 machines; nothing changed');
    assert.deepEqual(world.events.slice(events), [], 'no start, stop, mount or network step');
    assert.deepEqual(readState(LAB.name), before, 'the state file is as it was');
  });

  test('up after a crash: the recorded machine and one started but never recorded are stopped, and the network removed, before anything starts', async () => {
    const world = new World();
    // What an up killed while booting left: a state file still `creating`, with one machine
    // recorded and another running unrecorded.
    writeState(stateOf(LAB, 'creating', [machineState(A)]));
    for (const n of [A, B]) world.running.set(n, machineState(n));
    mkdirSync(labRunDir(LAB.name), { recursive: true });
    const result = await labUp(LAB, { renderer: 'silent' }, standInHost(world));
    assert.equal(result.changed, true);
    const firstStart = world.events.findIndex((e) => e.startsWith('start '));
    const cleared = world.events.slice(0, firstStart);
    assert.deepEqual(cleared.filter((e) => e.startsWith('stop')).sort(), [`stop ${A}`, `stop ${B}`]);
    assert.ok(cleared.indexOf('net down') > cleared.indexOf(`stop ${B}`) && cleared.indexOf('net down') < cleared.indexOf('net up'), cleared.join(', '));
    assert.deepEqual(recordedNames().sort(), [A, B, C]);
    assert.deepEqual([...world.running.keys()].sort(), [A, B, C], 'one of each');
  });
});

describe('labDown', () => {
  test("stops the recorded machines and the lab's unrecorded ones (never another lab's), then the network", async () => {
    const world = new World();
    writeState(stateOf(LAB, 'up', [machineState(A)]));
    // Lab "other" took the name ut-c first (a prefix clash that `up` refuses).
    writeState({ ...stateOf(LAB, 'up', [machineState(C)]), lab: 'other', namespaces: [] });
    for (const n of [A, B, C]) world.running.set(n, machineState(n));
    const result = await labDown(LAB.name, { lab: LAB }, standInHost(world));
    assert.deepEqual(result.stopped, [A, B]);
    assert.deepEqual(world.events.filter((e) => e.startsWith('stop')).sort(), [`stop ${A}`, `stop ${B}`]);
    assert.equal(world.events.at(-1), 'net down');
    assert.deepEqual([...world.running.keys()], [C], "the other lab's machine runs on");
    assert.equal(readState(LAB.name), undefined);
  });

  test('the image the lab recorded is released after its network is gone (and only then)', async () => {
    const world = new World();
    const up = await labUp(LAB, { renderer: 'silent' }, standInHost(world));
    assert.equal(up.changed, true);
    assert.deepEqual(imageUsesOf(LAB.name), [{ image: 'bookworm', dataDir: '/var/lib/labctl' }], 'recorded in the run dir');
    const events = world.events.length;
    await labDown(LAB.name, { lab: LAB }, standInHost(world));
    assert.deepEqual(world.events.slice(events).slice(-2), ['net down', 'release bookworm']);
    assert.ok(!existsSync(labRunDir(LAB.name)), 'no run dir left');
    const again = world.events.length;
    await labDown(LAB.name, { lab: LAB }, standInHost(world));
    assert.ok(!world.events.slice(again).includes('release bookworm'), 'a second down releases nothing');
  });

  test('machines of one lab may boot different images: each mounted and recorded, each machine booted from its own, each released on down', async () => {
    const world = new World();
    const lab = parseLab('name: ut\nprefix: ut-\nnodes:\n  - { name: a, image: alt }\n  - { name: b }\n  - { name: c }\n', 'ut.yaml');
    await labUp(lab, { renderer: 'silent' }, standInHost(world));
    assert.deepEqual(
      world.events.filter((e) => e.startsWith('mount')),
      ['mount alt', 'mount bookworm'],
    );
    assert.deepEqual(
      imageUsesOf(lab.name).map((u) => u.image),
      ['alt', 'bookworm'],
    );
    assert.deepEqual(Object.fromEntries(world.starts.map((s) => [s.spec.name, s.spec.image])), { [A]: 'alt', [B]: 'bookworm', [C]: 'bookworm' });
    await labDown(lab.name, { lab }, standInHost(world));
    assert.deepEqual(world.events.filter((e) => e.startsWith('release')).sort(), ['release alt', 'release bookworm']);
  });

  test('without a state file, leaves machines alone unless --force', async () => {
    const world = new World();
    world.running.set(A, machineState(A));
    const r = await labDown(LAB.name, { lab: LAB }, standInHost(world));
    assert.deepEqual(r.stopped, []);
    assert.ok(world.running.has(A));
    const forced = await labDown(LAB.name, { lab: LAB, force: true }, standInHost(world));
    assert.deepEqual(forced.stopped, [A]);
    assert.equal(world.running.size, 0);
  });
});
