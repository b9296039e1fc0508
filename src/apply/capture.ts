// Runs `labctl capture`: one tcpdump per interface inside the member's network namespace
// (nsenter from the host: no machine needed), their pcap streams merged into one pcapng
// stream (capture/merge.ts), or their readable lines prefixed and named (capture/text.ts).
//
// No tcpdump outlives the capture:
//   - each is started behind `setpriv --pdeathsig KILL` (exec/run.ts's spawnArgv), so it is
//     killed when labctl dies, however it dies. tcpdump is given `-Z root`: by default it
//     switches to the user tcpdump, and a change of user clears the parent-death signal;
//   - each runs in its own session (detached), so a Ctrl-C in the terminal reaches labctl
//     alone, which then stops them (SIGTERM, SIGKILL 2 s later) and waits for them to end;
//   - SIGINT, SIGTERM, SIGHUP, --duration, --count, the reader of stdout going away, the
//     namespace being deleted (`net down`: tcpdump would keep the dead namespace alive and
//     wait forever), or any tcpdump ending stop them all.
// The pcapng output is written block by block (each whole), the rest after the last
// tcpdump ended, so the file is complete whatever stopped it.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { run, spawnArgv } from '../exec/run.js';
import { inNetns, netnsIdentity } from '../host/netns.js';
import { LabctlError, UsageError } from '../util/errors.js';
import { whichExecutable } from '../util/process.js';
import { PcapngMerger } from '../capture/merge.js';
import type { CaptureTarget } from '../capture/target.js';
import { annotateLine, interfacePrefix, startsPacket } from '../capture/text.js';

export const TCPDUMP_MISSING = 'tcpdump is not installed (labctl capture runs it in the lab namespace): apt-get install tcpdump';
/** How long a packet waits for packets of other interfaces captured before it (see capture/merge.ts). */
const MERGE_WINDOW_MS = 100;
const MERGE_TICK_MS = 20;
const KILL_GRACE_MS = 2000;
const START_TIMEOUT_MS = 15_000;

/** tcpdump's path, or undefined when there is no executable file of that name. */
export function findTcpdump(): string | undefined {
  const path = whichExecutable('tcpdump');
  if (!path) return undefined;
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile() ? path : undefined;
  } catch {
    return undefined;
  }
}

/** The namespace's interfaces (not lo) and their kinds (veth, bridge). */
export async function namespaceInterfaces(netns: string): Promise<{ ifname: string; kind?: string }[]> {
  const r = await run(inNetns(netns, ['ip', '-j', '-d', 'link', 'show']), { step: `list the interfaces of ${netns}` });
  const links = JSON.parse(r.stdout) as { ifname: string; linkinfo?: { info_kind?: string } }[];
  return links.filter((l) => l.ifname !== 'lo').map((l) => ({ ifname: l.ifname, ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}) }));
}

/** Compiles the filter as tcpdump will (`-d`: print the BPF program and exit); a filter it cannot parse is bad input. */
export async function checkFilter(tcpdump: string, netns: string, ifname: string, filter: string[]): Promise<void> {
  if (filter.length === 0) return;
  const r = await run(inNetns(netns, [tcpdump, '-Z', 'root', '-d', '-i', ifname, '--', ...filter]), { allowFailure: true, timeoutMs: 10_000 });
  if (r.exitCode === 0) return;
  const said = r.stderr.trim().split('\n')[0] ?? r.reason ?? '';
  if (/parse filter expression|syntax error/.test(said)) throw new UsageError(`bad filter "${filter.join(' ')}": ${said.replace(/^tcpdump: /, '')}`);
  throw new LabctlError(`tcpdump could not check the filter on ${ifname} in ${netns}: ${said}`);
}

/** Where the packets go: a pcapng stream to a file descriptor or stdout, or readable lines to stdout. */
export type CaptureOutput = { kind: 'pcapng'; write: (bytes: Buffer) => void } | { kind: 'text' };

export interface CaptureOptions {
  target: CaptureTarget;
  tcpdump: string;
  filter: string[];
  output: CaptureOutput;
  durationS?: number;
  count?: number;
  /** Once every tcpdump listens (the capture has begun). */
  onReady: () => void;
  /** Notes for the user (stderr). */
  onNote: (text: string) => void;
  /** Text lines go here (stdout). */
  writeText?: (text: string) => void;
  /** The reader of our output went away (EPIPE on stdout): register the stop. */
  onOutputClosed?: (stop: () => void) => () => void;
}

export type StopReason = 'signal' | 'duration' | 'count' | 'output-closed' | 'netns-gone' | 'failed';

export interface CaptureResult {
  reason: StopReason;
  /** Packets written (pcapng) or printed (text). */
  packets: number;
  /** What the tcpdumps said the kernel dropped. */
  dropped: number;
}

function tcpdumpArgv(tcpdump: string, ifname: string, filter: string[], pcap: boolean): string[] {
  // -U / -l: each packet written out as soon as tcpdump has it.
  const what = pcap ? ['-w', '-', '-U', '--time-stamp-precision=nano'] : ['-l'];
  // --immediate-mode: without it libpcap hands packets over in blocks, after up to 1 s
  // (TPACKET_V3's block timeout), and a tcpdump stopped meanwhile never writes the packets
  // of its last block: a Ctrl-C right after a ping lost the ping.
  // `--`: the filter's words are tcpdump's expression, never its options.
  return [tcpdump, '-Z', 'root', '-n', '--immediate-mode', '-i', ifname, ...what, ...(filter.length ? ['--', ...filter] : [])];
}

interface Dump {
  ifname: string;
  child: ChildProcess;
  ready: boolean;
  closed: boolean;
  /** What it said on stderr that is not its usual chatter. */
  said: string[];
  dropped: number;
}

/** Captures until something stops it; throws a LabctlError (exit 1) when a tcpdump fails, after the others stopped and the output was completed. */
export function runCapture(o: CaptureOptions): Promise<CaptureResult> {
  const { target } = o;
  const identity = netnsIdentity(target.netns);
  if (!identity) return Promise.reject(new LabctlError(`namespace ${target.netns} of ${target.member} is gone (the lab went down)`));
  const ifnames = target.interfaces.map((i) => i.ifname);
  const pcap = o.output.kind === 'pcapng';
  const merger = pcap
    ? new PcapngMerger(
        target.interfaces.map((i) => ({ name: i.ifname, description: i.description })),
        {
          windowMs: MERGE_WINDOW_MS,
          ...(o.count ? { limit: o.count } : {}),
          application: 'labctl',
          comment: `labctl capture ${target.member} (lab ${target.lab})`,
        },
      )
    : undefined;
  let printed = 0;
  let stopping: StopReason | undefined;
  let failure: string | undefined;
  const timers: NodeJS.Timeout[] = [];

  return new Promise<CaptureResult>((resolve, reject) => {
    const dumps: Dump[] = [];
    const writePcap = (bytes: Buffer) => {
      if (!bytes.length || o.output.kind !== 'pcapng' || stopping === 'output-closed' || failure) return;
      try {
        o.output.write(bytes);
      } catch (e) {
        // A full disk, say: stop, and say so whatever else was stopping the capture.
        failure = `cannot write the capture: ${(e as Error).message}`;
        stop('failed');
        stopping = 'failed';
      }
    };
    const stop = (reason: StopReason) => {
      if (stopping) return;
      stopping = reason;
      for (const d of dumps) {
        if (d.closed) continue;
        d.child.kill('SIGTERM');
        timers.push(setTimeout(() => !d.closed && d.child.kill('SIGKILL'), KILL_GRACE_MS));
      }
    };
    const onSignal = () => stop('signal');
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    for (const s of signals) process.on(s, onSignal);
    const unwatchOutput = o.onOutputClosed?.(() => stop('output-closed'));

    // The section header at once: a reader such as `wireshark -k -i -` knows it has pcapng.
    if (merger) writePcap(merger.take(Date.now()));
    const tick = merger ? setInterval(() => writePcap(merger.take(Date.now())), MERGE_TICK_MS) : undefined;
    const poll = setInterval(() => {
      if (netnsIdentity(target.netns) !== identity) stop('netns-gone');
    }, 500);

    const finish = () => {
      if (!dumps.every((d) => d.closed)) return;
      clearInterval(poll);
      if (tick) clearInterval(tick);
      for (const t of timers) clearTimeout(t);
      for (const s of signals) process.off(s, onSignal);
      unwatchOutput?.();
      if (merger) {
        writePcap(merger.finish());
        const cut = merger.leftovers().reduce((a, b) => a + b, 0);
        if (cut) o.onNote(`${cut} bytes of a packet cut short when tcpdump was stopped were left out`);
      }
      const dropped = dumps.reduce((a, d) => a + d.dropped, 0);
      if (stopping === 'failed') return reject(new LabctlError(failure ?? 'tcpdump failed'));
      if (stopping === 'netns-gone') o.onNote(`namespace ${target.netns} is gone (the lab went down); stopped`);
      resolve({ reason: stopping ?? 'signal', packets: merger ? merger.written : printed, dropped });
    };

    const fail = (d: Dump, why: string) => {
      if (stopping || failure) return;
      failure = `tcpdump on ${d.ifname} in ${target.netns} ${why}${d.said.length ? `:\n${d.said.join('\n')}` : ''}`;
      stop('failed');
    };

    const readyCheck = () => {
      if (stopping || !dumps.every((d) => d.ready)) return;
      o.onReady();
      if (o.durationS !== undefined) timers.push(setTimeout(() => stop('duration'), o.durationS * 1000));
    };

    timers.push(
      setTimeout(() => {
        const late = dumps.find((d) => !d.ready && !d.closed);
        if (late) fail(late, `did not start listening within ${START_TIMEOUT_MS / 1000} s`);
      }, START_TIMEOUT_MS),
    );
    target.interfaces.forEach((iface, i) => {
      const [file, ...args] = spawnArgv(inNetns(target.netns, tcpdumpArgv(o.tcpdump, iface.ifname, o.filter, pcap)));
      const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const d: Dump = { ifname: iface.ifname, child, ready: false, closed: false, said: [], dropped: 0 };
      dumps.push(d);
      child.on('error', (e) => {
        fail(d, `could not start: ${e.message}`);
        // No 'close' follows an 'error' of a process that never started.
        if (child.pid === undefined) {
          d.closed = true;
          finish();
        }
      });
      child.on('close', (code, signal) => {
        d.closed = true;
        merger?.end(i);
        if (!stopping) {
          if (netnsIdentity(target.netns) !== identity) stop('netns-gone');
          // tcpdump exits 0 only when signalled (someone stopped it): the capture is over.
          else if (code === 0 && d.ready) stop('signal');
          else if (code === 126 || code === 127) fail(d, `could not run (${TCPDUMP_MISSING})`);
          else fail(d, signal ? `was killed by ${signal}` : `exited ${code}${d.ready ? ' while capturing' : ' before capturing'}`);
        }
        finish();
      });

      createInterface({ input: child.stderr! }).on('line', (line) => {
        if (/^(tcpdump: )?listening on /.test(line)) {
          d.ready = true;
          return readyCheck();
        }
        const dropped = /^(\d+) packets? dropped by kernel/.exec(line);
        if (dropped) d.dropped = Number(dropped[1]);
        if (dropped || /^\d+ packets? (captured|received by filter)|^tcpdump: verbose output suppressed/.test(line)) return;
        d.said.push(line);
        // Warnings while it runs go straight through; a failure's words come with the failure.
        if (d.ready && !stopping) o.onNote(`tcpdump on ${d.ifname}: ${line}`);
      });

      if (merger) {
        child.stdout!.on('data', (chunk: Buffer) => {
          try {
            merger.push(i, chunk, Date.now());
          } catch (e) {
            return fail(d, `wrote what is not pcap: ${(e as Error).message}`);
          }
          if (o.count && merger.received >= o.count) stop('count');
        });
      } else {
        const prefix = interfacePrefix(iface.ifname, ifnames);
        createInterface({ input: child.stdout! }).on('line', (line) => {
          // tcpdump ends its output with an empty line when stopped.
          if (stopping === 'output-closed' || stopping === 'count' || line === '') return;
          if (startsPacket(line)) printed++;
          o.writeText?.(`${prefix}${annotateLine(line, target.names)}\n`);
          if (o.count && printed >= o.count) stop('count');
        });
      }
    });
  });
}
