// The machine backend interface. `labctl up`, `down`, `status`, `shell` and `exec` speak
// only to this; which backend runs the machines is chosen once (systemd where systemd is
// PID 1 and the system bus answers, else direct) and recorded per machine in the state file.
import type { MachineState } from '../host/state.js';
import type { MachineSoftware } from '../lab/model.js';

export type BackendName = 'systemd' | 'direct';

/** One machine to boot: an ephemeral snapshot of `directory` inside network namespace `netns`. */
export interface MachineSpec {
  /** Machine name as machinectl shows it: the lab's prefix + the node's name. */
  name: string;
  lab: string;
  netns: string;
  /** Image name and the read-only subvolume nspawn boots an ephemeral snapshot of. */
  image: string;
  directory: string;
  /** How long to wait for the machine's systemd to report ready. */
  readyTimeoutMs: number;
  /** Where the direct backend writes the machine's console output. */
  consoleLog: string;
  /** Aborted when `up` is rolling back: a machine not yet started must not start. */
  signal?: AbortSignal;
  /** What the lab file says runs in it: binds, files, env, services, commands (software.ts). */
  software?: MachineSoftware;
  /** The host directory labctl generates the machine's units and files in (needed with files or services). */
  softwareDir?: string;
}

export interface MachineInfo {
  name: string;
  /** running: booted and ready; starting; degraded: ready with failed units; gone: not running. */
  state: 'running' | 'starting' | 'degraded' | 'stopping' | 'gone' | 'unknown';
  leaderPid?: number;
  unit?: string;
  addresses: string[];
  since?: string;
}

export class MachineStartError extends Error {
  constructor(
    readonly machine: string,
    message: string,
    readonly consoleTail: string = '',
    /** What the tail is: a machine's console by default, or a unit's journal, a command's output. */
    tailLabel = 'last console lines',
  ) {
    super(`machine ${machine}: ${message}${consoleTail ? `\n${tailLabel}:\n${consoleTail}` : ''}`);
    this.name = 'MachineStartError';
  }
}

export interface MachineBackend {
  readonly name: BackendName;
  /** Boots the machine; resolves once it is ready (or rejects with MachineStartError, leaving nothing running). */
  start(spec: MachineSpec): Promise<MachineState>;
  /** Stops the machine and resolves once it is gone (its snapshot removed with it). Idempotent. */
  stop(machine: MachineState): Promise<void>;
  info(machine: MachineState): Promise<MachineInfo>;
  /** argv that runs a command inside the machine, with stdio and exit code passed through. */
  execArgv(machine: MachineState, command: string[]): Promise<string[]>;
  /** An interactive login shell in the machine (needs a terminal). */
  shellCommand(machine: MachineState): Promise<ShellCommand>;
  /**
   * Machines registered with machined, whoever started them, with their units: names a
   * machine of this backend cannot take. None for the direct backend, whose machines
   * register nothing (its clashes are found among processes).
   */
  registered(): Promise<{ name: string; unit: string }[]>;
  /**
   * Which of these machines (a lab's, by name and namespace) run though no state file
   * records them: what an `up` that died between starting a machine and recording it left.
   * As records `stop` takes, each naming the backend that stops it (the systemd backend
   * also finds machines the direct backend started on its host).
   */
  strays(machines: { name: string; netns: string }[]): Promise<MachineState[]>;
}

export interface ShellCommand {
  argv: string[];
  /**
   * Host path of a file the shell's wrapper writes its exit status to, when the command
   * itself does not pass it through (machinectl shell always exits 0); removed once read.
   */
  statusFile?: string;
}

/** Environment for commands run inside a machine: the machine's, not the host's. */
const MACHINE_ENV = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'USER=root',
  'LOGNAME=root',
  'SHELL=/bin/bash',
  'LANG=C.UTF-8',
];

/**
 * argv that runs `command` in the machine whose leader (PID 1, as the host sees it) is
 * `leader`, as root in root's home with MACHINE_ENV and then the lab file's `env:` for the
 * machine (`env`), the same with either backend.
 */
export function nsenterArgv(leader: number, command: string[], env: Record<string, string> = {}): string[] {
  // -r/-w: the machine's root and cwd; env -C then moves to root's home inside it.
  const own = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return ['nsenter', '-t', String(leader), '-a', '-r', '-w', '--', '/usr/bin/env', '-i', '-C', '/root', ...MACHINE_ENV, ...own, ...command];
}
