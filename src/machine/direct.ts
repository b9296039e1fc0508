// The direct backend: where systemd is not PID 1 (containers, CI), labctl runs
// systemd-nspawn itself (--register=no --keep-unit), records each machine's nspawn pid and
// leader pid in the state file, and enters machines with nsenter.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run } from '../exec/run.js';
import type { MachineState } from '../host/state.js';
import { type MachineBackend, type MachineInfo, type MachineSpec, MachineStartError, nsenterArgv, type ShellCommand } from './backend.js';
import { alive, sleep } from '../util/process.js';
import { containerLeader, isNspawnOf, nspawnDirectory, nspawnPidsIn, nspawnPidsOf } from './proc.js';
import { nspawnArgs } from './nspawn.js';
import { prepareSoftwareDir } from './software.js';
import { type NotifyWatch, watchReady } from './notify.js';

/** How long the machine's power-off may take before nspawn is told to end the machine at once. */
const HALT_TIMEOUT_MS = 4_000;
const STOP_TIMEOUT_MS = 10_000;

function consoleTail(path: string, lines = 15): string {
  try {
    const text = readFileSync(path, 'utf8')
      // The console carries colour codes; the error message should not.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the colour codes nspawn writes to the console
      .replace(/\x1b\[[0-9;]*m/g, '')
      .replace(/\r/g, '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export class DirectBackend implements MachineBackend {
  readonly name = 'direct' as const;

  async start(spec: MachineSpec): Promise<MachineState> {
    mkdirSync(dirname(spec.consoleLog), { recursive: true, mode: 0o700 });
    // Checked before anything starts, so a rollback's later sweep sees all there is.
    if (spec.signal?.aborted) throw new MachineStartError(spec.name, 'not started: up is being rolled back');
    let watch: NotifyWatch | undefined;
    try {
      watch = await watchReady(notifySocketOf(spec.consoleLog, spec.name), spec.readyTimeoutMs);
    } catch {
      watch = undefined; // fall back to asking the machine's systemd
    }
    try {
      return await this.boot(spec, watch);
    } finally {
      watch?.close();
    }
  }

  private async boot(spec: MachineSpec, watch: NotifyWatch | undefined): Promise<MachineState> {
    prepareSoftwareDir(spec);
    const log = openSync(spec.consoleLog, 'w', 0o600);
    const argv = nspawnArgs(spec);
    if (spec.signal?.aborted) {
      closeSync(log);
      throw new MachineStartError(spec.name, 'not started: up is being rolled back');
    }
    // Detached into its own session: the machine outlives this labctl process, and a
    // Ctrl-C in the user's terminal reaches labctl, not the machine.
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log], env: { ...process.env, NOTIFY_SOCKET: watch?.socket ?? '' } });
    closeSync(log);
    child.unref();
    const nspawnPid = child.pid;
    if (!nspawnPid) throw new MachineStartError(spec.name, 'systemd-nspawn could not be started');
    const state: MachineState = {
      name: spec.name,
      netns: spec.netns,
      image: spec.image,
      directory: spec.directory,
      backend: 'direct',
      nspawnPid,
      startedAt: new Date().toISOString(),
      ...(spec.software && Object.keys(spec.software.env).length ? { env: spec.software.env } : {}),
    };
    const fail = async (why: string): Promise<never> => {
      const tail = consoleTail(spec.consoleLog);
      await this.stop(state);
      throw new MachineStartError(spec.name, why, tail);
    };
    const deadline = Date.now() + spec.readyTimeoutMs;
    if (watch) {
      // nspawn says READY=1 when the machine's systemd has finished booting.
      let ready = false;
      let receiverFailed = false;
      watch.ready.then(
        () => (ready = true),
        () => (receiverFailed = true),
      );
      while (!ready) {
        if (!alive(nspawnPid) || child.exitCode !== null) return fail(`systemd-nspawn exited (${child.exitCode ?? 'signal'}) before the machine was ready`);
        if (Date.now() > deadline) return fail(`not ready after ${spec.readyTimeoutMs} ms`);
        if (receiverFailed) break; // ask the machine instead, below
        await sleep(10);
      }
      state.leaderPid = containerLeader(nspawnPid);
      if (ready && state.leaderPid !== undefined) return state;
    }
    // Without the notification: wait for the container's PID 1, then ask its systemd.
    while ((state.leaderPid = containerLeader(nspawnPid)) === undefined) {
      if (!alive(nspawnPid) || child.exitCode !== null) return fail(`systemd-nspawn exited (${child.exitCode ?? 'signal'}) before the machine started`);
      if (Date.now() > deadline) return fail(`no container process after ${spec.readyTimeoutMs} ms`);
      await sleep(20);
    }
    // `is-system-running --wait` blocks until the boot is over; it fails while the machine's
    // systemd does not answer yet, so retry until the deadline.
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return fail(`not ready after ${spec.readyTimeoutMs} ms`);
      const r = await run(nsenterArgv(state.leaderPid, ['systemctl', 'is-system-running', '--wait']), { allowFailure: true, timeoutMs: left });
      const said = r.stdout.trim();
      if (said === 'running' || said === 'degraded') break;
      if (!alive(nspawnPid)) return fail('the machine stopped while booting');
      await sleep(50);
    }
    return state;
  }

  async stop(m: MachineState): Promise<void> {
    // Every nspawn of this machine: the recorded one (if it is still ours) and any other
    // left by a crashed run whose pid never reached the state file.
    const pids = new Set(nspawnPidsOf(m.name));
    if (m.nspawnPid && isNspawnOf(m.nspawnPid, m.name)) pids.add(m.nspawnPid);
    await Promise.all(
      [...pids].map(async (pid) => {
        // SIGTERM makes nspawn send the machine's systemd SIGRTMIN+14 (--kill-signal, see
        // nspawn.ts): an immediate power-off, not an orderly halt. Its processes get SIGTERM,
        // then SIGKILL, without each unit being stopped; nspawn then removes the snapshot.
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          return;
        }
        if (await waitGone(pid, HALT_TIMEOUT_MS)) return;
        // The power-off takes well under a second. Should the machine still be there (its
        // systemd not yet handling signals, or hung), a second SIGTERM makes nspawn end the
        // machine at once ("Send SIGTERM again to trigger immediate termination"), still
        // removing its snapshot.
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          return;
        }
        if (await waitGone(pid, STOP_TIMEOUT_MS)) return;
        const leader = containerLeader(pid);
        for (const p of [pid, leader]) {
          try {
            if (p) process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        await waitGone(pid, 5000);
      }),
    );
  }

  async info(m: MachineState): Promise<MachineInfo> {
    const running = m.nspawnPid !== undefined && isNspawnOf(m.nspawnPid, m.name);
    const leader = running ? containerLeader(m.nspawnPid!) : undefined;
    if (!running || !leader) return { name: m.name, state: 'gone', addresses: [] };
    const [sys, addrs] = await Promise.all([
      run(nsenterArgv(leader, ['systemctl', 'is-system-running']), { allowFailure: true }),
      run(['ip', '-n', m.netns, '-j', '-4', 'addr', 'show'], { allowFailure: true }),
    ]);
    const said = sys.stdout.trim();
    const state: MachineInfo['state'] =
      said === 'running'
        ? 'running'
        : said === 'degraded'
          ? 'degraded'
          : said === 'starting' || said === 'initializing'
            ? 'starting'
            : said === 'stopping'
              ? 'stopping'
              : 'unknown';
    let addresses: string[] = [];
    try {
      addresses = (JSON.parse(addrs.stdout || '[]') as { ifname: string; addr_info?: { local: string }[] }[])
        .filter((i) => i.ifname !== 'lo')
        // Plain addresses, as machined's GetMachineAddresses gives them (the systemd backend).
        .flatMap((i) => (i.addr_info ?? []).map((a) => a.local));
    } catch {
      /* no addresses */
    }
    return { name: m.name, state, leaderPid: leader, addresses, ...(m.startedAt ? { since: m.startedAt } : {}) };
  }

  async execArgv(m: MachineState, command: string[]): Promise<string[]> {
    return nsenterArgv(this.leaderOf(m), command, m.env);
  }

  async shellCommand(m: MachineState): Promise<ShellCommand> {
    // A login shell with the machine's environment, on the user's own terminal (so resize
    // and Ctrl-C reach it as they would any program); TERM comes from that terminal, and
    // nsenter exits with the shell's status.
    return { argv: nsenterArgv(this.leaderOf(m), [`TERM=${process.env.TERM ?? 'xterm'}`, '/bin/bash', '--login'], m.env) };
  }

  /** Nothing registers with machined here (--register=no). */
  async registered(): Promise<{ name: string; unit: string }[]> {
    return [];
  }

  /** Found by name and namespace among nspawn processes (either backend names both on nspawn's command line). */
  async strays(machines: { name: string; netns: string }[]): Promise<MachineState[]> {
    return machines.flatMap((m): MachineState[] => {
      const pid = nspawnPidsIn(m)[0];
      return pid ? [{ name: m.name, netns: m.netns, image: '', directory: nspawnDirectory(pid) ?? '', backend: 'direct', nspawnPid: pid }] : [];
    });
  }

  private leaderOf(m: MachineState): number {
    const leader = m.nspawnPid && isNspawnOf(m.nspawnPid, m.name) ? containerLeader(m.nspawnPid) : undefined;
    if (!leader) throw new Error(`machine ${m.name} is not running`);
    return leader;
  }
}

/** The machine's notify socket: beside its console log, in labctl's root-only run directory. */
const notifySocketOf = (consoleLog: string, machine: string) => join(dirname(consoleLog), `${machine}.notify`);
