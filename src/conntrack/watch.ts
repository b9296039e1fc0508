// Runs conntrack inside a lab namespace from the host (nsenter: no machine needed), to
// list its table or to stream its events.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { inNetns, netnsIdentity } from '../host/netns.js';
import { run } from '../exec/run.js';
import { ConntrackParseError, parseConntrackLine, parseConntrackListing, type ConntrackEntry } from './parse.js';

const LIST_ARGV = ['conntrack', '-L', '-o', 'extended,id'];
const EVENTS_ARGV = ['conntrack', '-E', '-o', 'timestamp,extended,id'];

/** conntrack's closing summary on stderr, e.g. "conntrack v1.4.7 (conntrack-tools): 3 flow events have been shown." */
const SUMMARY = /^conntrack v[\d.]+ \(conntrack-tools\): \d+ flow (entries|events) have been/;

/** The namespace's conntrack table. */
export async function listEntries(netns: string): Promise<ConntrackEntry[]> {
  const r = await run(inNetns(netns, LIST_ARGV), { step: `conntrack -L in ${netns}` });
  return parseConntrackListing(r.stdout);
}

interface FollowOptions {
  /** Called for each event, as it arrives. */
  onEvent: (e: ConntrackEntry) => void;
  /** Called once conntrack runs (it subscribes to the events a moment later). */
  onStart?: () => void;
  /** Notes for the user (stderr): conntrack's warnings, unparsable lines, why it stopped. */
  onNote: (text: string) => void;
  /** How often to check that the namespace still exists (ms). */
  pollMs?: number;
  /** Stops following when it resolves or aborts (tests); SIGINT and SIGTERM always stop it. */
  signal?: AbortSignal;
}

interface FollowResult {
  /** Why it stopped. */
  reason: 'signal' | 'netns-gone' | 'output-closed' | 'conntrack-exited';
  exitCode: number;
}

/**
 * Streams `conntrack -E` of a namespace until SIGINT/SIGTERM, until the namespace
 * disappears (the lab went down: conntrack would otherwise keep the dead namespace alive
 * and wait forever), or until conntrack exits by itself (an error: exit code 1).
 */
export function followEvents(netns: string, options: FollowOptions): Promise<FollowResult> {
  const identity = netnsIdentity(netns);
  if (!identity) return Promise.resolve({ reason: 'netns-gone', exitCode: 1 });
  const argv = inNetns(netns, EVENTS_ARGV);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stopping: FollowResult['reason'] | undefined;
  let stderrSeen = false;

  return new Promise<FollowResult>((resolve) => {
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (reason: FollowResult['reason']) => {
      if (stopping) return;
      stopping = reason;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        killTimer = setTimeout(() => child.kill('SIGKILL'), 2000);
      }
    };
    const onSignal = () => stop('signal');
    const onAbort = () => stop('signal');
    const onOutputError = () => stop('output-closed');
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.stdout.on('error', onOutputError);
    options.signal?.addEventListener('abort', onAbort);
    if (options.signal?.aborted) stop('signal');
    const poll = setInterval(() => {
      if (netnsIdentity(netns) !== identity) stop('netns-gone');
    }, options.pollMs ?? 500);

    const out = createInterface({ input: child.stdout });
    out.on('line', (line) => {
      if (stopping === 'output-closed') return;
      try {
        const e = parseConntrackLine(line);
        if (e) options.onEvent(e);
      } catch (err) {
        if (err instanceof ConntrackParseError) options.onNote(err.message);
        else throw err;
      }
    });
    const errLines = createInterface({ input: child.stderr });
    errLines.on('line', (line) => {
      if (SUMMARY.test(line)) return;
      stderrSeen = true;
      // Warnings while it runs (e.g. "We have hit ENOBUFS! We are losing events.") go straight through.
      if (!stopping) options.onNote(line);
    });

    let settled = false;
    let spawnError: Error | undefined;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearInterval(poll);
      if (killTimer) clearTimeout(killTimer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stdout.off('error', onOutputError);
      options.signal?.removeEventListener('abort', onAbort);
      if (stopping === 'netns-gone' || (!stopping && netnsIdentity(netns) !== identity)) {
        options.onNote(`namespace ${netns} is gone (the lab went down); stopped`);
        return resolve({ reason: 'netns-gone', exitCode: 0 });
      }
      if (stopping) return resolve({ reason: stopping, exitCode: 0 });
      // conntrack ends with 0 only when signalled (Ctrl-C reaches the whole process group).
      if (code === 0 && !spawnError) return resolve({ reason: 'signal', exitCode: 0 });
      // What it said on stderr has already been passed on.
      const why = spawnError ? `could not run: ${spawnError.message}` : `exited ${code ?? `on ${signal}`}`;
      options.onNote(`\`${argv.join(' ')}\` ${why}${stderrSeen ? '' : ' (it printed nothing)'}`);
      resolve({ reason: 'conntrack-exited', exitCode: 1 });
    };
    // 'close' comes after the child exited and its output was read to the end.
    child.on('close', (code, signal) => setImmediate(() => finish(code, signal)));
    child.on('spawn', () => options.onStart?.());
    child.on('error', (e) => {
      spawnError = e;
      setTimeout(() => finish(null, null), 200);
    });
  });
}
