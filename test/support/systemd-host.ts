// A "systemd host" for tests of the systemd backend on machines whose PID 1 is not
// systemd: a container booted with systemd as its PID 1, the system bus and machined, in
// which labctl runs as it would on a systemd host.
//
// Why this works where PID 1 is not systemd (no system bus, no machined, no systemctl):
// systemd-nspawn itself runs there with --register=no --keep-unit (without them it fails
// with "Failed to open system bus"), and systemd boots inside it. Inside, with
// systemd-container installed (machined, its D-Bus files and the
// dbus-org.freedesktop.machine1.service alias, without which nspawn fails with "Unit
// dbus-org.freedesktop.machine1.service not found"), a nested nspawn in a transient unit
// registers with machined, `ip netns add` works, and machinectl sees the machine. The host
// must be torn down even when something inside hangs: its outer nspawn's pid is kept and
// ended after a bounded wait (it stops its payload). nspawn's exit message "Attempted to
// remove disk file system under /run/systemd/nspawn/propagate/..." (the real host's /run
// is no tmpfs) is harmless.
//
//   import { startHost, execInHost, stopHost, isClean } from '../support/systemd-host.js';
//   const host = await startHost();           // builds the image once, then boots in ~2 s
//   await execInHost(['machinectl', 'list']); // run() inside it, PATH set
//   const report = await stopHost();          // always bounded; isClean(report) or a leak list
//
// The host's tree is the image images/systemd-host.yaml, built with labctl's image
// machinery into the shared test data dir ($LABCTL_TEST_DATA_DIR; a fresh one per `npm test` run) once per recipe
// hash, and booted --ephemeral so it stays pristine. Inside it:
//   /project                  this checkout (read-only), computed from import.meta.url
//   /usr/local/bin/node       the node running the tests (read-only)
//   TEST_DATA_DIR             the shared test data dir (same path; what is mounted under
//                             it on the real host is not there)
//   HOST_DATA_DIR             (TEST_DATA_DIR/systemd-host/data) the host's own
//                             data dir, with its own bookworm image, mounted: what labctl
//                             and the nested machines use inside (--data-dir HOST_DATA_DIR),
//                             and a second image (ALT_IMAGE, test/support/alt-image.ts) for
//                             labs whose machines boot different images. Both are pinned
//                             inside (`labctl image mount`: mounted by hand, as far as labctl
//                             there knows), so that `down` inside leaves them mounted: labctl
//                             in the host cannot mount them itself (no loop devices there)
// It has its own network namespace (--private-network) and its own /run (a tmpfs), so
// nothing labctl creates inside (namespaces, veths) appears on the real host.
//
// Why the host has a bookworm image of its own (built once from the shared cache, a few
// seconds) instead of the shared test image: labctl inside cannot see the real host's
// processes, so its cleanup of "stale" ephemeral snapshots beside the image would delete
// the snapshots that machines of other tests on the real host run in (btrfs deletes a
// subvolume even while another mount namespace uses it).
//
// Both images are loop-mounted only inside a private mount namespace held by a `sleep`
// process, never in the real host's: mounts here are private (PID 1 is not systemd), so
// every container started on the real host while an image was mounted there would keep
// a copy of the mount, and its loop device, until that container ends. For the same
// reason that namespace first drops its copies of other tests' mounts (images,
// /run/netns), so the host never pins them either.
//
// A run that crashed is cleaned up by the next startHost() (its processes carry a
// marker in their environment), or by the suite's final cleanup (the holder's working
// directory is in the test data dir).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type RunOptions, type RunResult } from '../../src/exec/run.js';
import { buildImage, imagePaths, imageState, mountsUnder, recipeHash, resolveRecipe } from '../../src/image/index.js';
import { acquireLock, withLock } from '../../src/host/lock.js';
import { loopsFor, parseMountinfo } from '../../src/image/mount.js';
import { TEST_CACHE_DIR, TEST_DATA_DIR, TEST_MIRROR } from './test-image.js';
import { pids } from '../../src/util/process.js';
import { ALT_IMAGE, ensureAltImage } from './alt-image.js';

export const HOST_IMAGE = 'systemd-host';
export const HOST_MACHINE = 'labctl-sdhost';
/** The checkout the tests run from (no trailing slash). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
export const HOST_PROJECT = '/project';
export const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The data dir labctl uses inside the host (the same path inside and out). */
export const HOST_DATA_DIR = join(TEST_DATA_DIR, 'systemd-host', 'data');
/** The image the host's machines boot (in HOST_DATA_DIR). */
export const INNER_IMAGE = 'bookworm';
/** Set in the environment of every process of the harness on the real host (holder, nspawn, the container's PID 1). */
const MARKER = `LABCTL_SYSTEMD_HOST=${HOST_MACHINE}`;
const HARNESS_LOCK = join(TEST_DATA_DIR, 'locks', 'systemd-host-harness.lock');
const IMAGE_LOCK = join(TEST_DATA_DIR, 'locks', 'systemd-host-image.lock');
const LOG_DIR = join(TEST_DATA_DIR, 'logs');
const BOOT_TIMEOUT_MS = 120_000;
const POWEROFF_WAIT_MS = 30_000;
const KILL_WAIT_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SystemdHost {
  machine: string;
  /** the systemd-nspawn process on the real host */
  nspawnPid: number;
  /** the container's PID 1 (its systemd), as the real host numbers it */
  leader: number;
  /** the process holding the private mount namespace the host image is mounted in */
  holderPid: number;
  /** the read-only tree booted (an ephemeral snapshot of it runs) */
  tree: string;
  /** the image the host's machines boot: HOST_DATA_DIR, bookworm, its mounted rootfs (inside the host) */
  image: { dataDir: string; name: string; path: string };
  /** seconds this run spent building the images (0: reused) */
  buildSeconds: number;
  /** seconds from starting nspawn to `systemctl is-system-running` saying running/degraded */
  bootSeconds: number;
  /** what `systemctl is-system-running` said */
  systemState: string;
  /** nspawn's output and the host's console */
  logFile: string;
}

export interface LeakReport {
  /** processes of the harness still alive on the real host */
  processes: string[];
  /** mounts of the harness on the real host (the host image, nspawn's propagation dirs) */
  mounts: string[];
  /** loop devices backed by the host image that were not there before */
  loops: string[];
  /** ephemeral snapshots left in the host's images (its own, its machines') */
  snapshots: string[];
  /** network namespaces of the host that showed up in the real host's /run/netns (same namespace, not just the same name) */
  netns: string[];
  /** leftover directories nspawn could not remove (the real host's /run is no tmpfs) */
  dirs: string[];
}

export const isClean = (r: LeakReport) => Object.values(r).every((v: string[]) => v.length === 0);

interface Running {
  host: SystemdHost;
  child: ChildProcess;
  holder: ChildProcess;
  exited: Promise<void>;
  releaseLock: () => void;
  loopsBefore: Set<string>;
  /** network namespaces seen in the host's own /run/netns: name -> nsfs inode (the namespace's identity) */
  innerNetns: Map<string, number>;
  holderExited: Promise<void>;
}

let current: Running | undefined;

function log(line: string): void {
  process.stderr.write(`# systemd-host: ${line}\n`);
}

// ---------------------------------------------------------------------------------
// The host image
// ---------------------------------------------------------------------------------

/**
 * Builds recipe NAME into dataDir when missing or outdated (from the shared cache), and
 * leaves it unmounted on the real host.
 */
async function ensureImage(name: string, dataDir: string): Promise<{ imageFile: string; mountDir: string; rootfs: string; buildSeconds: number }> {
  const recipe = resolveRecipe(name, { mirror: TEST_MIRROR });
  const hash = recipeHash(recipe, true);
  mkdirSync(join(TEST_DATA_DIR, 'locks'), { recursive: true });
  return withLock(IMAGE_LOCK, { waitMs: 30 * 60_000, what: 'the systemd host images are being built' }, async () => {
    const paths = imagePaths(dataDir, name);
    const st = imageState(paths);
    let buildSeconds = 0;
    if (st.state !== 'ready' || st.meta?.recipeHash !== hash) {
      const started = Date.now();
      log(`building image ${name} in ${dataDir} from ${TEST_MIRROR} (once per recipe change)...`);
      const built = await buildImage(recipe, { dataDir, cacheDir: TEST_CACHE_DIR, renderer: 'silent', handleSignals: false });
      buildSeconds = (Date.now() - started) / 1000;
      log(`built ${name} in ${buildSeconds.toFixed(1)} s`);
      // A build leaves the image mounted on the real host when it replaced a mounted one.
      if (built.mounted) await run(['umount', paths.mountDir], { step: 'systemd host: unmount an image', allowFailure: true });
    }
    return { imageFile: paths.imageFile, mountDir: paths.mountDir, rootfs: paths.rootfs, buildSeconds };
  });
}

/** The systemd host's tree: images/systemd-host.yaml in the shared test data dir. */
export const ensureHostImage = () => ensureImage(HOST_IMAGE, TEST_DATA_DIR);
/** The image the host's machines boot: bookworm in HOST_DATA_DIR. */
export const ensureInnerImage = () => ensureImage(INNER_IMAGE, HOST_DATA_DIR);
/** The images of the harness: the host's tree, and the two its machines boot. */
const harnessImages = () => [imagePaths(TEST_DATA_DIR, HOST_IMAGE), ...innerImages()];
const innerImages = () => [imagePaths(HOST_DATA_DIR, INNER_IMAGE), imagePaths(HOST_DATA_DIR, ALT_IMAGE)];

// ---------------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------------

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
    }
  } catch {
    /* gone */
  }
  return out;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

function hasMarker(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(MARKER);
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return !/^Z/.test(status(pid).State ?? '');
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

/** The container's PID 1: a child of nspawn whose innermost PID is 1. */
function findLeader(nspawnPid: number): number | undefined {
  for (const pid of pids()) {
    const st = status(pid);
    if (Number(st.PPid) !== nspawnPid) continue;
    const ns = (st.NSpid ?? '').split(/\s+/);
    if (ns.length > 1 && ns[ns.length - 1] === '1') return pid;
  }
  return undefined;
}

/** pid and all its descendants (by PPid), as the real host sees them. */
function _descendants(root: number): Set<number> {
  const children = new Map<number, number[]>();
  for (const pid of pids()) {
    const ppid = Number(status(pid).PPid);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid)!.push(pid);
  }
  const out = new Set<number>();
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    if (out.has(p)) continue;
    out.add(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

const snapshotsIn = (dir: string): string[] => {
  try {
    return readdirSync(dir)
      .filter((e) => e.startsWith('.#machine.'))
      .map((e) => join(dir, e));
  } catch {
    return [];
  }
};

const hostNetns = (): Set<string> => {
  try {
    return new Set(readdirSync('/run/netns'));
  } catch {
    return new Set();
  }
};

/** Processes on the real host that belong to a (possibly earlier, crashed) harness run. */
function harnessProcesses(): number[] {
  return pids().filter((pid) => {
    if (pid === process.pid) return false;
    if (hasMarker(pid)) return true;
    const args = cmdline(pid);
    return Boolean(args[0]?.endsWith('systemd-nspawn') && args.includes(`--machine=${HOST_MACHINE}`));
  });
}

/**
 * The ephemeral snapshots in the host's own bookworm image (mounted only in the
 * holder's mount namespace: read through /proc/HOLDER/root). Only the host's machines
 * make them, so with no machine running there must be none.
 */
export function innerSnapshots(): string[] {
  if (!current) return [];
  const holder = current.host.holderPid;
  return innerImages().flatMap(({ mountDir }) => snapshotsIn(`/proc/${holder}/root${mountDir}`).map((p) => join(mountDir, p.split('/').pop()!)));
}

// ---------------------------------------------------------------------------------
// Start, exec, stop
// ---------------------------------------------------------------------------------

/** The running host (throws when none). */
export function host(): SystemdHost {
  if (!current) throw new Error('systemd host: not started (call startHost() first)');
  return current.host;
}

function markedEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LABCTL_SYSTEMD_HOST: HOST_MACHINE };
}

/** Starts a process that does nothing but hold a private mount namespace. */
async function startHolder(): Promise<ChildProcess> {
  // Its working directory is in the test data dir, so that the suite's final cleanup
  // (killProcessesUsing the data dir) also ends a holder a crashed run left behind.
  const cwd = join(TEST_DATA_DIR, 'systemd-host');
  mkdirSync(cwd, { recursive: true });
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sleep', 'infinity'], { stdio: 'ignore', env: markedEnv(), cwd });
  const own = readlinkSync('/proc/self/ns/mnt');
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (holder.pid && holder.exitCode === null) {
      let ns: string | undefined;
      try {
        ns = readlinkSync(`/proc/${holder.pid}/ns/mnt`);
      } catch {
        /* not yet */
      }
      if (ns && ns !== own && cmdline(holder.pid)[0] === 'sleep') return holder;
    }
    if (holder.exitCode !== null || Date.now() > deadline) {
      kill(holder.pid ?? 0, 'SIGKILL');
      throw new Error('systemd host: could not make a private mount namespace (unshare --mount)');
    }
    await sleep(20);
  }
}

/**
 * Unmounts, in the holder's new mount namespace, the copies of what other tests have
 * mounted on the real host (loop-mounted images, anything under the test data dir,
 * network namespaces in /run/netns). Kept, those copies would pin the originals (their
 * file systems, loop devices, namespaces) for as long as the host runs, after their
 * owners have unmounted or deleted them.
 */
async function dropForeignMounts(holderPid: number): Promise<void> {
  const foreign = () =>
    parseMountinfo(readFileSync(`/proc/${holderPid}/mountinfo`, 'utf8'))
      .filter(
        (m) =>
          m.source.startsWith('/dev/loop') ||
          m.mountPoint === TEST_DATA_DIR ||
          m.mountPoint.startsWith(`${TEST_DATA_DIR}/`) ||
          m.mountPoint.startsWith('/run/netns/'),
      )
      .map((m) => m.mountPoint)
      .sort((a, b) => b.split('/').length - a.split('/').length);
  // Several passes: a mount hidden under a later one on the same path (a self bind of a
  // parent) can only be unmounted once the one on top is gone.
  let left = foreign();
  for (let pass = 0; pass < 5 && left.length; pass++) {
    for (const point of new Set(left)) {
      await run(inHolder(holderPid, ['umount', '--lazy', point]), { step: 'systemd host: drop a copied mount', allowFailure: true });
    }
    const now = foreign();
    if (now.length >= left.length) break;
    left = now;
  }
}

/**
 * Boots the systemd host (building its image the first time) and waits until its
 * systemd says running or degraded. One at a time per machine (a lock file); a second
 * call in the same process returns the running host.
 */
export async function startHost(): Promise<SystemdHost> {
  if (current) return current.host;
  if (process.getuid?.() !== 0) throw new Error('systemd host: needs root');
  mkdirSync(LOG_DIR, { recursive: true });
  const releaseLock = await acquireLock(HARNESS_LOCK, { waitMs: 30 * 60_000, what: 'another test run uses the systemd host' });
  let holder: ChildProcess | undefined;
  try {
    // A harness that crashed (SIGKILL) may have left its container running.
    await killLeftovers();
    const image = await ensureHostImage();
    const inner = await ensureInnerImage();
    const alt = { ...imagePaths(HOST_DATA_DIR, ALT_IMAGE), buildSeconds: (await ensureAltImage(HOST_DATA_DIR)).seconds };
    const loopsBefore = new Set([image, inner, alt].flatMap((img) => loopsFor(img.imageFile)).map((l) => l.device));
    holder = await startHolder();
    await dropForeignMounts(holder.pid!);
    for (const img of [image, inner, alt]) {
      mkdirSync(img.mountDir, { recursive: true });
      await run(inHolder(holder.pid!, ['mount', '-t', 'btrfs', '-o', 'loop,noatime', img.imageFile, img.mountDir]), { step: 'systemd host: mount an image' });
    }
    // Snapshots an earlier run could not remove (nspawn killed): both images start pristine.
    await removeSnapshotsInHolder(holder.pid!);
    const logFile = join(LOG_DIR, 'systemd-host.log');
    const logFd = openSync(logFile, 'w');
    const args = [
      '--quiet',
      '--register=no',
      '--keep-unit',
      '--boot',
      '--console=passive',
      '--capability=all',
      '--private-network',
      `--directory=${image.rootfs}`,
      '--ephemeral',
      `--machine=${HOST_MACHINE}`,
      `--setenv=${MARKER}`,
      `--bind-ro=${PROJECT_ROOT}:${HOST_PROJECT}`,
      `--bind-ro=${process.execPath}:/usr/local/bin/node`,
      // The data dir without what is mounted under it (norbind), then the inner image's
      // mount on its own: the host's own tree must not show up inside itself (its
      // systemd would try to unmount all of that at poweroff).
      `--bind=${TEST_DATA_DIR}:${TEST_DATA_DIR}:norbind`,
      `--bind=${inner.mountDir}`,
      `--bind=${alt.mountDir}`,
    ];
    const started = Date.now();
    const child = spawn('nsenter', ['-t', String(holder.pid), '-m', '--', 'systemd-nspawn', ...args], { stdio: ['ignore', logFd, logFd], env: markedEnv() });
    closeSync(logFd);
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    if (!child.pid) throw new Error(`systemd host: could not start systemd-nspawn (see ${logFile})`);
    const hostInfo: SystemdHost = {
      machine: HOST_MACHINE,
      nspawnPid: child.pid,
      leader: 0,
      holderPid: holder.pid!,
      tree: image.rootfs,
      image: { dataDir: HOST_DATA_DIR, name: INNER_IMAGE, path: inner.rootfs },
      buildSeconds: image.buildSeconds + inner.buildSeconds + alt.buildSeconds,
      bootSeconds: 0,
      systemState: '',
      logFile,
    };
    const holderExited = new Promise<void>((resolve) => {
      if (holder!.exitCode !== null || holder!.signalCode !== null) resolve();
      holder!.once('exit', () => resolve());
    });
    current = { host: hostInfo, child, holder, holderExited, exited, releaseLock, loopsBefore, innerNetns: new Map() };
    try {
      const deadline = Date.now() + BOOT_TIMEOUT_MS;
      let ended = false;
      void exited.then(() => (ended = true));
      while (!(hostInfo.leader = findLeader(child.pid) ?? 0)) {
        if (ended) throw new Error(`systemd host: systemd-nspawn exited (${child.exitCode ?? child.signalCode}):\n${tail(logFile)}`);
        if (Date.now() > deadline) throw new Error(`systemd host: no container PID 1 after ${BOOT_TIMEOUT_MS / 1000} s:\n${tail(logFile)}`);
        await sleep(20);
      }
      for (;;) {
        if (ended) throw new Error(`systemd host: systemd-nspawn exited during boot:\n${tail(logFile)}`);
        const r = await execInHost(['systemctl', 'is-system-running'], { allowFailure: true, timeoutMs: 10_000 });
        hostInfo.systemState = r.stdout.trim();
        if (hostInfo.systemState === 'running' || hostInfo.systemState === 'degraded') break;
        if (Date.now() > deadline)
          throw new Error(`systemd host: systemd still "${hostInfo.systemState}" after ${BOOT_TIMEOUT_MS / 1000} s:\n${tail(logFile)}`);
        await sleep(100);
      }
      hostInfo.bootSeconds = (Date.now() - started) / 1000;
      for (const name of [INNER_IMAGE, ALT_IMAGE]) {
        await execInHost(['node', `${HOST_PROJECT}/bin/labctl.js`, 'image', 'mount', name, '--data-dir', HOST_DATA_DIR], {
          env: { LABCTL_FROM_SOURCE: '1' },
          step: 'systemd host: pin an image inside',
        });
      }
      if (hostInfo.systemState === 'degraded') {
        const failed = await execInHost(['systemctl', '--failed', '--no-legend', '--plain'], { allowFailure: true });
        log(`booted degraded; failed units: ${failed.stdout.trim().replace(/\n/g, '; ')}`);
      }
      return hostInfo;
    } catch (e) {
      await stopHost().catch(() => undefined);
      throw e;
    }
  } catch (e) {
    if (!current) {
      if (holder?.pid) kill(holder.pid, 'SIGKILL');
      releaseLock();
    }
    throw e;
  }
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export interface HostRunOptions extends RunOptions {
  /** extra environment inside the host (PATH, HOME, LANG and TERM are set) */
  env?: Record<string, string>;
  /** working directory inside the host (default /) */
  cwd?: string;
}

/** The argv that runs a command inside the host (nsenter into all its namespaces, a clean environment). */
export function hostArgv(argv: string[], env: Record<string, string> = {}, cwd?: string): string[] {
  const h = host();
  const vars = { PATH: HOST_PATH, HOME: '/root', LANG: 'C.UTF-8', TERM: 'xterm-256color', ...env };
  return [
    'nsenter',
    '-t',
    String(h.leader),
    '-a',
    '-r',
    '-w',
    '--',
    '/usr/bin/env',
    '-i',
    ...(cwd ? ['-C', cwd] : []),
    ...Object.entries(vars).map(([k, v]) => `${k}=${v}`),
    ...argv,
  ];
}

/** Runs a command inside the host through run() (argument array, no shell). */
export async function execInHost(argv: string[], options: HostRunOptions = {}): Promise<RunResult> {
  const { env, cwd, ...rest } = options;
  noteInside();
  try {
    return await run(hostArgv(argv, env, cwd), { step: 'systemd host', timeoutMs: 120_000, ...rest });
  } finally {
    noteInside();
  }
}

/**
 * Remembers the host's network namespaces (name and identity), which must never show up
 * in the real host's /run/netns.
 */
export function noteInside(): void {
  if (!current?.host.leader) return;
  const dir = `/proc/${current.host.leader}/root/run/netns`;
  try {
    for (const n of readdirSync(dir)) {
      try {
        current.innerNetns.set(n, statSync(join(dir, n)).ino);
      } catch {
        /* just removed */
      }
    }
  } catch {
    /* none yet */
  }
}

const inHolder = (holderPid: number, argv: string[]) => ['nsenter', '-t', String(holderPid), '-m', '--', ...argv];

/** Deletes every ephemeral snapshot in the harness's images (only the harness uses them). */
async function removeSnapshotsInHolder(holderPid: number): Promise<void> {
  for (const img of harnessImages()) {
    const root = `/proc/${holderPid}/root${img.mountDir}`;
    for (const s of snapshotsIn(root)) {
      const name = s.split('/').pop()!;
      await deleteSubvolumeTree(holderPid, img.mountDir, name);
      rmSync(join(root, `.#${name}.lck`), { force: true });
    }
  }
}

/**
 * Deletes subvolume `rel` (a path from the top of the file system mounted at mountDir)
 * and the subvolumes nested in it, deepest first: the host image has some
 * (var/lib/machines, var/lib/portables), which nspawn snapshots along with it.
 */
async function deleteSubvolumeTree(holderPid: number, mountDir: string, rel: string): Promise<void> {
  const list = await run(inHolder(holderPid, ['btrfs', 'subvolume', 'list', '-o', join(mountDir, rel)]), {
    step: 'systemd host: list subvolumes',
    allowFailure: true,
  });
  for (const line of list.stdout.split('\n')) {
    const nested = / path (.+)$/.exec(line.trim())?.[1];
    if (nested && nested !== rel && nested.startsWith(`${rel}/`)) await deleteSubvolumeTree(holderPid, mountDir, nested);
  }
  await run(inHolder(holderPid, ['btrfs', 'subvolume', 'delete', join(mountDir, rel)]), { step: 'systemd host: remove a snapshot', allowFailure: true });
}

/** Snapshots left in the harness's images (read through the holder's mount namespace). */
function snapshotsInHolder(holderPid: number): string[] {
  return harnessImages().flatMap((img) => snapshotsIn(`/proc/${holderPid}/root${img.mountDir}`).map((s) => join(img.mountDir, s.split('/').pop()!)));
}

/** nspawn's per-machine dirs on the real host's /run: it cannot remove them because /run here is no tmpfs. */
function nspawnDirs(): string[] {
  return ['/run/systemd/nspawn/propagate', '/run/systemd/nspawn/unix-export', '/run/systemd/nspawn/incoming']
    .map((d) => join(d, HOST_MACHINE))
    .filter((d) => existsSync(d));
}

async function killLeftovers(): Promise<void> {
  const left = harnessProcesses();
  if (!left.length) return;
  log(`killing ${left.length} processes left by an earlier run: ${left.map((p) => `${p} ${cmdline(p)[0] ?? '?'}`).join(', ')}`);
  // SIGKILL of a container's PID 1 ends its whole PID namespace; nspawn and the holder follow.
  for (const p of left) kill(p, 'SIGKILL');
  const deadline = Date.now() + KILL_WAIT_MS;
  while (harnessProcesses().some(alive) && Date.now() < deadline) await sleep(100);
}

/**
 * Stops the host and everything in it, within a bounded time: an orderly poweroff
 * (SIGTERM to nspawn, which it turns into one), else SIGKILL of the container's PID 1
 * and of nspawn; then removes what nspawn left in the images, unmounts them and ends
 * the private mount namespace (so their loop devices go), and reports whatever of the
 * harness is still on the real host.
 */
export async function stopHost(): Promise<LeakReport> {
  const c = current;
  if (!c) return leaks(new Map(), [], new Set());
  try {
    noteInside();
    const { child, holder, host: h } = c;
    let done = false;
    void c.exited.then(() => (done = true));
    const waitExit = async (ms: number) => {
      const deadline = Date.now() + ms;
      while (!done && Date.now() < deadline) await sleep(20);
      return done;
    };
    if (!done) {
      kill(child.pid!, 'SIGTERM');
      if (!(await waitExit(POWEROFF_WAIT_MS))) {
        log(`no orderly poweroff within ${POWEROFF_WAIT_MS / 1000} s: killing the container`);
        // Killing a PID namespace's init kills everything in it and in the namespaces below.
        if (h.leader) kill(h.leader, 'SIGKILL');
        if (!(await waitExit(KILL_WAIT_MS))) {
          kill(child.pid!, 'SIGKILL');
          await waitExit(KILL_WAIT_MS);
        }
      }
    }
    // Anything of the container that survived (should be nothing), but not the holder yet.
    for (const p of harnessProcesses()) if (p !== holder.pid) kill(p, 'SIGKILL');
    let snapshotsLeft: string[] = [];
    if (holder.pid && alive(holder.pid)) {
      // nspawn removes its snapshot when it exits by itself (not when killed), except
      // for the subvolumes nested in it: the rest is ours to remove.
      if (process.env.LABCTL_HARNESS_DEBUG) log(`snapshots after nspawn exited: ${snapshotsInHolder(holder.pid).join(' ') || 'none'}`);
      await removeSnapshotsInHolder(holder.pid);
      snapshotsLeft = snapshotsInHolder(holder.pid);
      for (const img of harnessImages()) {
        await run(inHolder(holder.pid, ['umount', img.mountDir]), { step: 'systemd host: unmount an image', allowFailure: true });
      }
      kill(holder.pid, 'SIGKILL');
    }
    await Promise.race([c.holderExited, sleep(KILL_WAIT_MS)]);
    await killLeftovers();
    for (const d of nspawnDirs()) {
      if (!mountsUnder(d).length) rmSync(d, { recursive: true, force: true });
    }
    // An autoclear loop device goes when its file system is released, which can lag.
    for (let i = 0; i < 50 && ourLoops(c.loopsBefore).length; i++) await sleep(100);
    return leaks(c.innerNetns, snapshotsLeft, c.loopsBefore);
  } finally {
    current = undefined;
    c.releaseLock();
  }
}

const imageFiles = () => harnessImages().flatMap((p) => [p.imageFile, p.newImageFile]);
const ourLoops = (before: Set<string>) =>
  imageFiles()
    .flatMap((f) => loopsFor(f))
    .filter((l) => !before.has(l.device));

/**
 * What of the harness is on the real host now (empty lists: clean). Other tests may
 * run at the same time, so only what the harness itself made counts: namespaces of
 * the host (by identity, not name), loop devices of its images that were not there before.
 */
export function leaks(innerNetns: Map<string, number>, snapshotsLeft: string[], loopsBefore: Set<string>): LeakReport {
  const processes = harnessProcesses()
    .filter(alive)
    .map((p) => `${p} ${cmdline(p).join(' ').slice(0, 120)}`);
  const mounts = [
    ...mountsUnder(imagePaths(TEST_DATA_DIR, HOST_IMAGE).mountDir),
    ...mountsUnder(join(TEST_DATA_DIR, 'systemd-host')),
    ...mountsUnder('/run/systemd/nspawn').filter((m) => m.mountPoint.includes(HOST_MACHINE)),
  ].map((m) => m.mountPoint);
  const loops = ourLoops(loopsBefore).map((l) => `${l.device} (${l.backingFile})`);
  // By identity: other tests may make namespaces of the same names on the real host meanwhile.
  const inner = new Set(innerNetns.values());
  const netns = [...hostNetns()].filter((n) => {
    try {
      return inner.has(statSync(join('/run/netns', n)).ino);
    } catch {
      return false;
    }
  });
  return { processes, mounts, loops, snapshots: snapshotsLeft, netns, dirs: nspawnDirs() };
}

// ---------------------------------------------------------------------------------
// Inside the host: a driver for SystemdBackend, so tests can call the backend's methods
// where systemd is PID 1. Each call is one process; it prints one JSON line.
//   node --import tsx /project/test/support/systemd-host.ts backend start '{"name":..}'
//   ... backend info|stop|exec-argv|shell-command '<MachineState JSON>' [-- cmd...]
//   ... backend available
// With --no-close it leaves the bus connection open, to show that an open connection
// does not keep the process alive.
// ---------------------------------------------------------------------------------

/** The argv (for execInHost) that runs one backend driver call inside the host. */
export function backendCall(method: string, arg?: unknown, extra: string[] = []): string[] {
  return [
    'node',
    '--import',
    'tsx',
    `${HOST_PROJECT}/test/support/systemd-host.ts`,
    'backend',
    method,
    ...(arg === undefined ? [] : [JSON.stringify(arg)]),
    ...extra,
  ];
}

async function backendDriver(args: string[]): Promise<void> {
  const { SystemdBackend } = await import('../../src/machine/systemd.js');
  const { systemdAvailable } = await import('../../src/machine/systemd-bus.js');
  const { closeSystemBus } = await import('../../src/machine/dbus.js');
  const noClose = args.includes('--no-close');
  const rest = args.filter((a) => a !== '--no-close');
  const [method, json, sep, ...command] = rest;
  const backend = new SystemdBackend();
  const started = Date.now();
  let result: unknown;
  try {
    switch (method) {
      case 'available':
        result = await systemdAvailable();
        break;
      case 'start':
        result = await backend.start(JSON.parse(json!));
        break;
      case 'stop':
        await backend.stop(JSON.parse(json!));
        result = { stopped: true };
        break;
      case 'info':
        result = await backend.info(JSON.parse(json!));
        break;
      case 'exec-argv':
        if (sep !== '--') throw new Error('exec-argv STATE -- COMMAND...');
        result = await backend.execArgv(JSON.parse(json!), command);
        break;
      case 'shell-command':
        result = await backend.shellCommand(JSON.parse(json!));
        break;
      default:
        throw new Error(`unknown backend method ${method ?? ''}`);
    }
    process.stdout.write(`${JSON.stringify({ ok: true, ms: Date.now() - started, result }, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}\n`);
  } catch (e) {
    const err = e as Error & { consoleTail?: string };
    process.stdout.write(
      `${JSON.stringify({ ok: false, ms: Date.now() - started, name: err.name, message: err.message, consoleTail: err.consoleTail ?? '' })}\n`,
    );
    process.exitCode = 1;
  } finally {
    if (!noClose) closeSystemBus();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2] === 'backend') {
  await backendDriver(process.argv.slice(3));
}
