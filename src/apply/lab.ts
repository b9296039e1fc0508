// `labctl up` and `labctl down`: the network, the image, and one booted machine per lab
// member that the lab marks as a machine, through whichever backend runs here.
import { EXIT_INTERRUPTED, LabctlError, UsageError } from '../util/errors.js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Listr, type ListrTask } from 'listr2';
import type { Lab, MachineSoftware } from '../lab/model.js';
import { members } from '../lab/model.js';
import { checkSoftwareSources } from '../lab/sources.js';
import { needsSoftwareDir, startSoftware } from '../machine/software.js';
import type { BackendName, MachineBackend, MachineSpec } from '../machine/backend.js';
import { backendFor, chooseBackend } from '../machine/select.js';
import { children, cmdline, nspawnPidsIn, nspawnPidsOf, signalTree, stopNotifyReceivers } from '../machine/proc.js';
import { alive, sleep } from '../util/process.js';
import { listNetns } from '../host/netns.js';
import { removeStaleSnapshots } from '../machine/snapshots.js';
import { unitNameFor } from '../machine/unit-name.js';
import { inotifyShortfall } from '../machine/limits.js';
import { netDownLocked, netUpLocked } from './net.js';
import { planNetwork } from '../plan/network.js';
import {
  allStates,
  type ImageUse,
  imageUsesOf,
  isImagePinned,
  type MachineState,
  labRunDir,
  readState,
  recordImageUses,
  withLabLock,
  writeState,
} from '../host/state.js';
import { resolveDataDir } from '../host/dirs.js';

export const DEFAULT_IMAGE = 'bookworm';
/** Longest machine name: machined requires a valid host name (at most 64 bytes). */
const MACHINE_NAME_MAX = 64;
/** How long an interrupted `up` waits for its steps in flight before it kills their commands. */
const SETTLE_MS = 5_000;

export interface UpOptions {
  backend?: BackendName;
  image?: string;
  dataDir?: string;
  readyTimeoutMs?: number;
  renderer?: 'default' | 'simple' | 'silent';
}

export interface PlannedMachine {
  name: string;
  member: string;
  netns: string;
  /** What the lab file says runs in it, if anything. */
  software?: MachineSoftware;
}

/**
 * What `up` and `down` change the host through, besides the lab's state file (host/state.ts,
 * in the run dir): the machine backends, the image, the network and the process's signals.
 * labUp and labDown use the real ones (realHost); the unit tests of their orchestration
 * (test/unit/apply-lab-orchestration.test.ts) pass stand-ins, with a run dir of their own.
 */
export interface LabHost {
  /** The backend this `up` boots machines with (`--backend`, else the host's). */
  chooseBackend(forced?: BackendName): Promise<MachineBackend>;
  /** The backend a recorded machine runs under, to ask about it or stop it. */
  backendFor(name: BackendName): Promise<MachineBackend>;
  /** Mounts the image where it is not, and gives the directory its machines boot from. */
  mountImage(image: string, dataDir: string | undefined): Promise<string>;
  /** Unmounts an image (and frees its loop device) once no lab uses it any more. */
  releaseImage(use: ImageUse): Promise<void>;
  /** Removes ephemeral snapshots of `directory` that no machine runs in any more. */
  sweepSnapshots(directory: string): Promise<void>;
  /** The lab's network (net.ts's netUpLocked): records the lab in its state file, `creating` and then `up`. */
  netUp(lab: Lab, hooks: { namespacesCreated: () => void; signal: AbortSignal }): Promise<void>;
  /** Removes the lab's network and its state file (net.ts's netDownLocked). */
  netDown(labName: string, options?: { lab?: Lab; force?: boolean }): Promise<{ removed: string[]; message: string }>;
  /** The host's network namespaces now. */
  namespaces(): string[];
  /** Why `machines` more machines cannot boot on this host, or undefined. */
  machineLimit(machines: number): string | undefined;
  /** Calls `handler` on SIGINT and SIGTERM until the returned function is called. */
  onInterrupt(handler: (signal: NodeJS.Signals) => void): () => void;
  /** Ends labctl once an interrupted `up` has rolled back. */
  exitInterrupted(): void;
}

export const realHost: LabHost = {
  chooseBackend,
  backendFor,
  mountImage: async (image, dataDir) => {
    const { ensureImageMounted } = await import('../image/index.js');
    return (await ensureImageMounted(image, dataDir)).path;
  },
  releaseImage: async (use) => {
    const { ImageInUseError, imageInUseBy, umountImage } = await import('../image/index.js');
    // Mounted by hand (`labctl image mount`), or booted by another lab: it stays.
    if (isImagePinned(use) || (await imageInUseBy(use.image, { dataDir: use.dataDir })).length) return;
    // Another lab's `up` may have started using it since: then it stays.
    await umountImage(use.image, { dataDir: use.dataDir }).catch((e: unknown) => {
      if (!(e instanceof ImageInUseError)) throw e;
    });
  },
  sweepSnapshots: removeStaleSnapshots,
  netUp: async (lab, hooks) => void (await netUpLocked(lab, hooks)),
  netDown: netDownLocked,
  namespaces: listNetns,
  machineLimit: inotifyShortfall,
  onInterrupt: (handler) => {
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  },
  exitInterrupted: () => process.exit(EXIT_INTERRUPTED),
};

/** A machine that was never started because the network failed first (told apart when counting what started). */
class NotStartedError extends LabctlError {}

/** The machines a lab boots: its prefix + the member's name, in the member's namespace. */
export function plannedMachines(lab: Lab): PlannedMachine[] {
  return members(lab)
    .filter((m) => m.machine)
    .map((m) => ({ name: `${lab.prefix}${m.name}`, member: m.name, netns: m.netns, ...(m.software ? { software: m.software } : {}) }));
}

/**
 * The image each machine boots: its own `image:`, else `--image`, else the lab's, else
 * DEFAULT_IMAGE (`--image` stands in for the lab's image, not for a machine's own).
 */
export function machineImages(lab: Lab, machines: PlannedMachine[], forced?: string): Map<string, string> {
  const labImage = forced ?? lab.image ?? DEFAULT_IMAGE;
  return new Map(machines.map((m) => [m.name, m.software?.image ?? labImage]));
}

/** Where an image name came from, for the message when it is not built. */
function imageSource(lab: Lab, image: string, machines: PlannedMachine[], forced?: string): string {
  const own = machines.filter((m) => m.software?.image === image).map((m) => m.member);
  if (own.length) return `${lab.source}: the image: of ${own.join(', ')}`;
  if (forced) return `--image ${image}`;
  return lab.image ? `${lab.source}: image: ${image}` : `the default image (${DEFAULT_IMAGE}; a lab file may name another with image:)`;
}

/**
 * Refuses machine names that another lab runs, that some nspawn already runs (however it was
 * started: `--machine=`, `-M`, or named after its directory), that machined has registered
 * for another unit, or that machined would reject. `registered`: the backend's
 * registered() (machined's machines; none for the direct backend).
 */
function checkMachineNames(lab: Lab, machines: PlannedMachine[], registered: { name: string; unit: string }[]): void {
  const problems: string[] = [];
  const others = new Map<string, string>();
  for (const s of allStates()) if (s.lab !== lab.name) for (const m of s.machines ?? []) others.set(m.name, s.lab);
  const units = new Map(registered.map((r) => [r.name, r.unit]));
  const ownState = readState(lab.name) !== undefined;
  for (const m of machines) {
    if (m.name.length > MACHINE_NAME_MAX) problems.push(`machine name "${m.name}" is longer than ${MACHINE_NAME_MAX} characters`);
    const other = others.get(m.name);
    const unit = units.get(m.name);
    if (other) problems.push(`machine ${m.name} is running in lab "${other}"; give this lab a different \`prefix:\``);
    // Any nspawn of that name beyond what an earlier run of this lab left in its namespaces.
    else if (nspawnPidsOf(m.name).length > (ownState ? nspawnPidsIn(m).length : 0)) {
      problems.push(`a machine named ${m.name} is already running (not started by lab "${lab.name}"); stop it or give this lab a \`prefix:\``);
    } else if (unit !== undefined && !(ownState && unit === unitNameFor(m.name))) {
      problems.push(
        `machined already has a machine named ${m.name} (unit ${unit || '?'}, not started by lab "${lab.name}"); stop it (machinectl terminate ${m.name}) or give this lab a \`prefix:\``,
      );
    }
  }
  if (problems.length) throw new LabctlError(`cannot bring lab "${lab.name}" up:\n  ${problems.join('\n  ')}`);
}

/**
 * Waits for an interrupted `up`'s steps to settle, at most SETTLE_MS. Past that, a step is
 * stuck in a host command, or in a machine's boot: the commands labctl runs are killed (not
 * the machines, which the rollback stops cleanly, removing their snapshots), and once they
 * are gone none of them can change the lab after the rollback has looked.
 */
async function settle(steps: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    steps.then(
      () => false,
      () => false,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), SETTLE_MS))),
  ]);
  clearTimeout(timer);
  if (!timedOut) return;
  const commands = children(process.pid).filter((pid) => !(cmdline(pid)[0] ?? '').endsWith('systemd-nspawn'));
  for (const pid of commands) signalTree(pid, 'SIGKILL');
  const deadline = Date.now() + 2_000;
  while (commands.some(alive) && Date.now() < deadline) await sleep(20);
}

/** Stops machines (at once, each through its own backend), then sweeps the snapshots they leave in their images. */
async function stopMachines(machines: MachineState[], host: LabHost): Promise<void> {
  await Promise.all(
    machines.map(async (m) => {
      const backend = await host.backendFor(m.backend);
      await backend.stop(m);
    }),
  );
  for (const dir of new Set(machines.map((m) => m.directory))) if (dir) await host.sweepSnapshots(dir);
}

/** Stops what an earlier, unfinished run left (crash, SIGKILL, reboot) and removes its network. */
async function clearLeftovers(lab: Lab, planned: PlannedMachine[], backend: MachineBackend, host: LabHost): Promise<void> {
  const previous = readState(lab.name);
  if (!previous) return;
  const recorded = previous.machines ?? [];
  // Machines started but not yet recorded when the earlier run died.
  const strays = await backend.strays(planned.filter((m) => !recorded.some((r) => r.name === m.name)));
  await stopMachines([...recorded, ...strays], host);
  await host.netDown(lab.name);
}

function recordMachine(labName: string, m: MachineState): void {
  const state = readState(labName);
  if (!state) return;
  state.machines = [...(state.machines ?? []).filter((x) => x.name !== m.name), m];
  writeState(state);
}

/**
 * What `up` of a lab that is already up says. Asked for another image or backend than its
 * machines run: that too, rather than seem to have done it (`image`: the one this `up` would
 * boot, or each machine's by name; `backend`: the one asked for, if any).
 */
export function alreadyUpMessage(labName: string, recorded: MachineState[], image: string | Map<string, string>, backend?: BackendName): string {
  const running = recorded[0];
  const wanted = (m: MachineState) => (typeof image === 'string' ? image : (image.get(m.name) ?? m.image));
  const otherImage = recorded.find((m) => m.image !== wanted(m));
  const differences = running
    ? [
        ...(otherImage ? [`image ${otherImage.image} (not ${wanted(otherImage)})${typeof image === 'string' ? '' : ` in ${otherImage.name}`}`] : []),
        ...(backend && recorded.some((m) => m.backend !== backend) ? [`the ${running.backend} backend (not ${backend})`] : []),
      ]
    : [];
  const count = recorded.length ? `${recorded.length} machines` : 'no machines';
  return `lab "${labName}" is already up with ${count}; nothing changed${differences.length ? `: it uses ${differences.join(' and ')}; \`labctl down\` first to change that` : ''}`;
}

export interface UpResult {
  lab: string;
  changed: boolean;
  backend: string;
  machines: string[];
  message: string;
}

export async function labUp(lab: Lab, options: UpOptions = {}, host: LabHost = realHost): Promise<UpResult> {
  const machines = plannedMachines(lab);
  const imageOf = machineImages(lab, machines, options.image);
  const images = [...new Set(imageOf.values())];
  // Before anything is created: every host path the machines' binds and files name exists.
  checkSoftwareSources(lab);
  return withLabLock(lab.name, async () => {
    const previous = readState(lab.name);
    if (previous?.status === 'up' && previous.planHash !== planNetwork(lab).hash) {
      throw new LabctlError(
        `lab "${lab.name}" is up from a different definition (${previous.source}, changed since or another file); run \`labctl down\` first`,
      );
    }
    // Up and still there: its namespaces, and every machine it recorded (a lab without
    // machines has none, and is up when its network is).
    const recorded = previous?.machines ?? [];
    const present = new Set(host.namespaces());
    if (previous?.status === 'up' && recorded.length === machines.length && previous.namespaces.every((n) => present.has(n.netns))) {
      const backendsAlive = await Promise.all(recorded.map(async (m) => (await (await host.backendFor(m.backend)).info(m)).state !== 'gone'));
      if (backendsAlive.every(Boolean)) {
        return {
          lab: lab.name,
          changed: false,
          backend: recorded[0]?.backend ?? '-',
          machines: machines.map((m) => m.name),
          message: alreadyUpMessage(lab.name, recorded, images.length === 1 ? images[0]! : imageOf, options.backend),
        };
      }
    }
    const backend = await host.chooseBackend(options.backend);
    checkMachineNames(lab, machines, await backend.registered());
    const shortfall = host.machineLimit(machines.length - (previous?.machines?.length ?? 0));
    if (shortfall) throw new LabctlError(`cannot bring lab "${lab.name}" up: ${shortfall}`);
    /** Each image's mounted directory, once mounted. */
    const directories = new Map<string, string>();
    const started: MachineState[] = [];
    const abort = new AbortController();
    const rollback = async () => {
      abort.abort();
      await stopMachines(started, host);
      // Machines whose start was cut short are not in `started`: stop them by name too.
      await stopMachines(
        machines.map((m) => {
          const image = imageOf.get(m.name)!;
          return { name: m.name, netns: m.netns, image, directory: directories.get(image) ?? '', backend: backend.name };
        }),
        host,
      );
      await host.netDown(lab.name);
      await removeRunDir(lab.name, host);
    };
    // The run's steps (image, network, machines) once started: what an interrupt waits for.
    let steps: Promise<unknown> = Promise.resolve();
    let rollingBack = false;
    let signalledAgain = false;
    const onSignal = (signal: NodeJS.Signals) => {
      // Further signals while rolling back must not cut the rollback short.
      if (rollingBack) {
        signalledAgain = true;
        return void process.stderr.write(`labctl up: ${signal}: still cleaning up (stopping what was started); please wait...\n`);
      }
      rollingBack = true;
      process.stderr.write(`\nlabctl up: ${signal}: stopping what was started...\n`);
      // Not rolled back at once: a step in flight (the network being made, a machine
      // starting) could still create a namespace, or record the lab as up, after the rollback
      // had looked. The steps check the signal between their commands and stop there; the
      // rollback starts once they have settled (see settle for one that does not).
      abort.abort(new Error(`interrupted by ${signal}`));
      settle(steps)
        .then(async () => {
          try {
            await rollback();
          } catch (e) {
            // A second Ctrl-C at the terminal also reaches the rollback's own commands (it
            // signals the whole process group) and may cut one short: the rollback can run again.
            if (!signalledAgain) throw e;
            await rollback();
          }
        })
        .catch((e: Error) => process.stderr.write(`labctl up: rolling back failed: ${e.message}; run \`labctl down\`\n`))
        .finally(() => host.exitInterrupted());
    };
    const stopListening = host.onInterrupt(onSignal);
    try {
      // Machines boot while the network is configured: nspawn needs only the namespace to
      // exist, and `up` returns once both the network and every machine are ready.
      let namespacesReady!: () => void;
      let networkFailed!: (e: Error) => void;
      const namespaces = new Promise<void>((resolve, reject) => {
        namespacesReady = resolve;
        networkFailed = reject;
      });
      namespaces.catch(() => {});
      const tasks = new Listr(
        [
          {
            // First, and alone: a missing image stops `up` before it changes anything.
            title: `image ${images.join(', ')}`,
            task: async (_ctx, task) => {
              // Recorded first: a `down` of another lab meanwhile leaves the images mounted.
              const dataDir = resolveDataDir(options.dataDir);
              recordImageUses(
                lab.name,
                images.map((image) => ({ image, dataDir })),
              );
              for (const image of images) {
                try {
                  directories.set(image, await host.mountImage(image, options.dataDir));
                } catch (e) {
                  // Not built (or not usable): say where the name came from, so it can be changed there too.
                  if (!(e instanceof UsageError)) throw e;
                  throw new UsageError(`${e.message}\n(the image comes from ${imageSource(lab, image, machines, options.image)})`);
                }
                // Snapshots of machines that died without cleaning up (a host reboot, SIGKILL
                // of nspawn) stay in the image for good otherwise: swept while nothing boots from it.
                await host.sweepSnapshots(directories.get(image)!);
              }
              task.title = `image ${images.map((i) => `${i}: ${directories.get(i)}`).join(', ')}`;
            },
          },
          {
            title: `network and machines (${backend.name} backend)`,
            task: (_ctx, task) =>
              task.newListr(
                [
                  {
                    title: `network: ${lab.nats.length} NAT routers, ${lab.nodes.length} nodes`,
                    task: async () => {
                      try {
                        abort.signal.throwIfAborted();
                        // Everything an earlier run left (a crash, a reboot, a net-only lab) goes first.
                        await clearLeftovers(lab, machines, backend, host);
                        await host.netUp(lab, { namespacesCreated: namespacesReady, signal: abort.signal });
                        namespacesReady();
                      } catch (e) {
                        networkFailed(new NotStartedError('not started: the network failed'));
                        throw e;
                      }
                    },
                  },
                  ...machines.map((m) => ({
                    title: `${m.name} in ${m.netns}`,
                    task: async () => {
                      await namespaces;
                      const image = imageOf.get(m.name)!;
                      const spec: MachineSpec = {
                        name: m.name,
                        lab: lab.name,
                        netns: m.netns,
                        image,
                        directory: directories.get(image)!,
                        readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
                        consoleLog: join(labRunDir(lab.name), `${m.name}.console`),
                        signal: abort.signal,
                        ...(m.software ? { software: m.software, softwareDir: join(labRunDir(lab.name), 'machines', m.name) } : {}),
                      };
                      const state = await backend.start(spec);
                      started.push(state);
                      // Once interrupted, the rollback stops it and removes the state file, which must not be written again.
                      if (!abort.signal.aborted) recordMachine(lab.name, state);
                    },
                  })),
                ],
                { concurrent: true, exitOnError: false },
              ),
          },
          ...softwareTask(machines, started, backend, abort.signal),
        ],
        {
          renderer: options.renderer ?? (process.stdout.isTTY ? 'default' : 'simple'),
          exitOnError: true,
          // The machines' list goes on past a failure (exitOnError: false) and keeps what
          // failed in tasks.errors only when asked to (listr2's default collects nothing).
          collectErrors: 'minimal',
          registerSignalListeners: false,
          rendererOptions: { collapseSubtasks: false },
        },
      );
      steps = tasks.run();
      await steps;
      // Interrupted, though every step got through: the signal handler rolls back (the catch waits).
      abort.signal.throwIfAborted();
      // The network's own error says more than the machines that did not start because of it.
      const failures = tasks.errors.map((e) => e.error).sort((a, b) => Number(a instanceof NotStartedError) - Number(b instanceof NotStartedError));
      if (failures.length) throw failures[0]!;
      if (started.length !== machines.length) throw new LabctlError(`only ${started.length} of ${machines.length} machines started`);
    } catch (e) {
      if (rollingBack) await new Promise(() => {}); // the signal handler finishes and exits
      rollingBack = true; // a signal now leaves this rollback alone
      try {
        await rollback();
      } catch (r) {
        throw new LabctlError(`${(e as Error).message}\nrolling back also failed: ${(r as Error).message}; run \`labctl down\``);
      }
      const message = `${(e as Error).message}\nrolled back: nothing of lab "${lab.name}" is left`;
      // Bad input (an image that is not built) stays bad input: exit 2.
      throw e instanceof UsageError ? new UsageError(message) : new LabctlError(message);
    } finally {
      stopListening();
    }
    return {
      lab: lab.name,
      changed: true,
      backend: backend.name,
      machines: machines.map((m) => m.name),
      message: `lab "${lab.name}" is up: ${machines.length} machines (${backend.name} backend)`,
    };
  });
}

/**
 * Once every machine has booted and the network is up: each machine's services, commands
 * and the check that its services run (machine/software.ts), the machines at once. None
 * for a lab whose machines have none of these.
 */
function softwareTask(machines: PlannedMachine[], started: MachineState[], backend: MachineBackend, signal: AbortSignal): ListrTask[] {
  const equipped = machines.filter((m) => m.software && (needsSoftwareDir(m.software) || m.software.commands.length));
  if (!equipped.length) return [];
  return [
    {
      title: `software: ${equipped.map((m) => m.name).join(', ')}`,
      task: (_ctx, task) =>
        task.newListr(
          equipped.map((m) => ({
            title: `${m.name}: ${describeSoftware(m.software!)}`,
            task: async () => {
              signal.throwIfAborted();
              const state = started.find((s) => s.name === m.name)!;
              await startSoftware(backend, state, m.software!);
            },
          })),
          { concurrent: true, exitOnError: true },
        ),
    },
  ];
}

const describeSoftware = (s: MachineSoftware) =>
  [
    s.files.length ? `${s.files.length} files` : '',
    s.services.length ? `services ${s.services.map((x) => x.name).join(', ')}` : '',
    s.commands.length ? `${s.commands.length} commands` : '',
  ]
    .filter(Boolean)
    .join(', ');

/** Removes the lab's run dir (console logs, notify sockets, machines' generated files), then releases the images it recorded. */
async function removeRunDir(labName: string, host: LabHost): Promise<void> {
  const uses = imageUsesOf(labName);
  rmSync(labRunDir(labName), { recursive: true, force: true });
  for (const use of uses) await host.releaseImage(use);
}

export interface DownResult {
  lab: string;
  stopped: string[];
  message: string;
}

export async function labDown(labName: string, options: { lab?: Lab; force?: boolean } = {}, host: LabHost = realHost): Promise<DownResult> {
  return withLabLock(labName, async () => {
    const state = readState(labName);
    const machines = state?.machines ?? [];
    // Planned machines too: a crash between starting one and recording it leaves it
    // unrecorded. Never one another lab records (a name it took first, as `up` refuses).
    const recorded = new Set(machines.map((m) => m.name));
    const others = new Set(allStates().flatMap((s) => (s.lab === labName ? [] : (s.machines ?? []).map((m) => m.name))));
    const unrecorded = (options.lab && (state || options.force) ? plannedMachines(options.lab) : []).filter(
      (m) => !recorded.has(m.name) && !others.has(m.name),
    );
    const extra = unrecorded.length ? await (await host.chooseBackend()).strays(unrecorded) : [];
    await stopMachines(
      [...machines, ...extra].filter((m) => m.directory || nspawnPidsOf(m.name).length),
      host,
    );
    const net = await host.netDown(labName, { ...(options.lab ? { lab: options.lab } : {}), ...(options.force ? { force: true } : {}) });
    // A readiness receiver outlives an `up` killed with SIGKILL (until its timeout): stop it.
    await stopNotifyReceivers(labRunDir(labName));
    // The machines' console logs and notify sockets go with them, and the image they booted
    // is unmounted when no other lab uses it.
    await removeRunDir(labName, host);
    const stopped = [...machines, ...extra].map((m) => m.name);
    return {
      lab: labName,
      stopped,
      message: stopped.length ? `lab "${labName}" is down: stopped ${stopped.length} machines, removed ${net.removed.length} namespaces` : net.message,
    };
  });
}
