// Process facts read from /proc, used to find and verify machines' processes.
import { readdirSync, readFileSync } from 'node:fs';
import { NETNS_DIR } from '../host/netns.js';
import { alive, descendants, pids, signalProcess, sleep } from '../util/process.js';

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * The machine name an nspawn command line gives: `--machine=NAME`, `--machine NAME`, `-M NAME`
 * or `-MNAME` (labctl writes the first; the article and users type `-M`). Options end at `--`
 * or at the first argument that is not an option (the container's own command). Without a
 * name, nspawn names the machine after its directory or image (last path element, cleaned
 * up as nspawnNameFromPath does), or, with --ephemeral, after that plus a random suffix:
 * unknowable, so undefined.
 */
export function nspawnMachineName(argv: string[]): string | undefined {
  let directory: string | undefined;
  let image = false;
  let ephemeral = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--' || !a.startsWith('-') || a === '-') break;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a : a.slice(0, eq);
      const value = eq < 0 && NSPAWN_LONG_WITH_VALUE.has(name) ? argv[++i] : a.slice(eq + 1);
      if (name === '--machine') return value;
      if (name === '--directory' || name === '--image') [directory, image] = [value, name === '--image'];
      if (name === '--ephemeral') ephemeral = true;
      continue;
    }
    // A cluster of short options (-bxM NAME): the first that takes a value takes the rest or the next argument.
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      if (c === 'x') ephemeral = true;
      if (!NSPAWN_SHORT_WITH_VALUE.has(c)) continue;
      const value = j + 1 < a.length ? a.slice(j + 1) : argv[++i];
      if (c === 'M') return value;
      if (c === 'D' || c === 'i') [directory, image] = [value, c === 'i'];
      break;
    }
  }
  if (directory === undefined || ephemeral) return undefined;
  return nspawnNameFromPath(directory, image);
}

/** Longest host name, and so machine name (Linux's HOST_NAME_MAX). */
const HOST_NAME_MAX = 64;

/**
 * The machine name nspawn gives a machine booted from `path` without -M, or undefined where
 * nspawn would refuse to start ("Failed to determine machine name automatically") or where
 * argv alone does not tell (`-D /` is named after the host, `-D .` after nspawn's working
 * directory). Copied from systemd 252's determine_names() (Debian bookworm; the clean-up
 * checked against its libsystemd-shared-252.so), which 257 (trixie) does the same way:
 * nspawn makes the path absolute and drops trailing slashes and "." elements, takes the
 * last element (less ".raw" for an image), cleans it with hostname_cleanup() and requires
 * hostname_is_valid(). (From 258 the clean-up keeps "?", so nspawn refuses such a name
 * where 252 and 257 drop the "?": an nspawn that never runs, so no wrong clash either.
 * Since 256 a versioned "NAME.v" directory is first resolved to the version inside it that
 * nspawn boots, which argv does not tell; its 252 name here has a dot, which no lab
 * machine's name has.)
 */
function nspawnNameFromPath(path: string, image = false): string | undefined {
  const last = path
    .split('/')
    .filter((e) => e !== '' && e !== '.')
    .pop();
  if (last === undefined || last === '..') return undefined;
  const name = hostnameCleanup(image ? last.replace(/\.raw$/, '') : last);
  return hostnameIsValid(name) ? name : undefined;
}

/**
 * systemd's hostname_cleanup(): keeps ASCII letters, digits, "-" and "."; drops a "-" or "."
 * that would start a label and a "." that would end one with "-"; stops at 64 characters,
 * then drops one trailing "-" or "." (one only: "c0--" becomes "c0-", which is invalid).
 */
export function hostnameCleanup(s: string): string {
  let out = '';
  let dot = true;
  let hyphen = true;
  for (const c of s) {
    if (out.length >= HOST_NAME_MAX) break;
    if (c === '.') {
      if (dot || hyphen) continue;
      dot = true;
      hyphen = false;
    } else if (c === '-') {
      if (dot) continue;
      dot = false;
      hyphen = true;
    } else if (/^[A-Za-z0-9]$/.test(c)) {
      dot = false;
      hyphen = false;
    } else continue;
    out += c;
  }
  return /[-.]$/.test(out) ? out.slice(0, -1) : out;
}

/** systemd's hostname_is_valid(s, 0): dot-separated labels of letters, digits and inner "-"s, at most 64 characters. */
function hostnameIsValid(s: string): boolean {
  return s.length <= HOST_NAME_MAX && /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(s);
}

/** nspawn's short options that take a value. */
const NSPAWN_SHORT_WITH_VALUE = new Set(['M', 'D', 'i', 'u', 'S', 'E', 'p', 'L', 'Z']);

/** nspawn's long options that take a value (the next argument, when not given with `=`). */
const NSPAWN_LONG_WITH_VALUE = new Set([
  '--machine',
  '--directory',
  '--image',
  '--user',
  '--slice',
  '--setenv',
  '--port',
  '--selinux-context',
  '--selinux-apifs-context',
  '--bind',
  '--bind-ro',
  '--tmpfs',
  '--overlay',
  '--overlay-ro',
  '--network-interface',
  '--network-macvlan',
  '--network-ipvlan',
  '--network-bridge',
  '--network-zone',
  '--network-namespace-path',
  '--capability',
  '--drop-capability',
  '--chdir',
  '--pivot-root',
  '--uuid',
  '--property',
  '--register',
  '--settings',
  '--console',
  '--kill-signal',
  '--link-journal',
  '--resolv-conf',
  '--timezone',
  '--template',
  '--notify-ready',
  '--personality',
  '--rlimit',
  '--oom-score-adjust',
  '--cpu-affinity',
  '--hostname',
  '--no-new-privileges',
  '--system-call-filter',
  '--load-credential',
  '--set-credential',
  '--root-hash',
]);

/** The directory an nspawn boots (its `--directory=`, as both backends write it), if it says. */
export function nspawnDirectory(pid: number): string | undefined {
  return cmdline(pid)
    .find((a) => a.startsWith('--directory='))
    ?.slice('--directory='.length);
}

/** True when pid is a systemd-nspawn running machine `name` (guards against reused pids). */
export function isNspawnOf(pid: number, name: string): boolean {
  const argv = cmdline(pid);
  return argv.length > 0 && (argv[0] ?? '').endsWith('systemd-nspawn') && nspawnMachineName(argv) === name;
}

export function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

/** The container's PID 1 under an nspawn process: the child whose innermost pid is 1. */
export function containerLeader(nspawnPid: number): number | undefined {
  for (const c of children(nspawnPid)) {
    try {
      const status = readFileSync(`/proc/${c}/status`, 'utf8');
      const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
      if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return c;
    } catch {
      /* gone meanwhile */
    }
  }
  return undefined;
}

/** Processes running `program` (argv[0] ends with it) whose arguments satisfy `match`. */
export function processesRunning(program: string, match: (argv: string[]) => boolean): number[] {
  return pids().filter((pid) => {
    const argv = cmdline(pid);
    return (argv[0] ?? '').endsWith(program) && match(argv);
  });
}

/** Every nspawn process on the host that runs a machine of this name. */
export function nspawnPidsOf(name: string): number[] {
  return processesRunning('systemd-nspawn', (argv) => nspawnMachineName(argv) === name);
}

/**
 * The nspawn processes that boot machine `name` in its own namespace: both backends name the
 * namespace on nspawn's command line. With a lab's state file present, that is what an
 * earlier, unfinished `up` of that lab left: its own to stop.
 */
export function nspawnPidsIn(m: { name: string; netns: string }): number[] {
  return nspawnPidsOf(m.name).filter((pid) => cmdline(pid).includes(`--network-namespace-path=${NETNS_DIR}/${m.netns}`));
}

/** The machines among these that still run (in their namespaces, either backend). */
export function runningMachines<M extends { name: string; netns: string }>(machines: M[]): M[] {
  return machines.filter((m) => nspawnPidsIn(m).length > 0);
}

/** Sends a signal to a process tree (children first), ignoring those already gone. */
export function signalTree(pid: number, signal: NodeJS.Signals): void {
  // descendants() lists parents before their children: reversed, every child comes before its parent.
  for (const p of descendants([pid]).reverse()) signalProcess(p, signal);
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

/** Stops the readiness receivers (socat, see notify.ts) listening on sockets in `dir`, and waits until they are gone. */
export async function stopNotifyReceivers(dir: string): Promise<void> {
  const receivers = notifyReceiversIn(dir);
  for (const pid of receivers) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 2000;
  while (receivers.some(alive) && Date.now() < deadline) await sleep(20);
}

/** Receivers (socat UNIX-RECV) whose socket lies in `dir`. */
export function notifyReceiversIn(dir: string): number[] {
  return processesRunning('socat', (argv) => argv.some((a) => a.startsWith(`UNIX-RECV:${dir}/`)));
}
