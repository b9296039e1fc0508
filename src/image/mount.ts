// Loop mounts of image files, and taking them apart again so that nothing stays
// behind: no mount, no loop device.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { run, type RunOptions } from '../exec/run.js';
import { killProcessesUsing } from './procs.js';
import { pids, sleep } from '../util/process.js';
import { listDir } from '../util/fs.js';

interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  root: string;
  /** in a shared peer group (mountinfo "shared:N") */
  shared: boolean;
  /** device number "major:minor" of the mounted filesystem */
  dev: string;
  id: number;
  parentId: number;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({
      root: unescapeMountinfo(fields[3] ?? ''),
      mountPoint: unescapeMountinfo(fields[4] ?? ''),
      fsType: fields[sep + 1] ?? '',
      source: unescapeMountinfo(fields[sep + 2] ?? ''),
      shared: fields.slice(6, sep).some((f) => f.startsWith('shared:')),
      dev: fields[2] ?? '',
      id: Number(fields[0]),
      parentId: Number(fields[1]),
    });
  }
  return out;
}

function readMounts(): MountEntry[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** Mounts at or under dir, deepest (and most recent) first: the order to unmount them. */
export function mountsUnder(dir: string): MountEntry[] {
  const all = readMounts();
  return all
    .map((m, i) => ({ m, i }))
    .filter(({ m }) => isUnder(m.mountPoint, dir))
    .sort((a, b) => b.m.mountPoint.split('/').length - a.m.mountPoint.split('/').length || b.i - a.i)
    .map(({ m }) => m);
}

/**
 * The mount that is really at dir. A mount hidden by a later mount on dir or on one of
 * its parent directories (which is not where it itself hangs) does not count.
 */
export function mountAt(dir: string): MountEntry | undefined {
  const all = readMounts();
  const byId = new Map(all.map((m) => [m.id, m]));
  const ancestorsOf = (m: MountEntry): Set<number> => {
    const seen = new Set<number>();
    for (let p = byId.get(m.parentId); p && !seen.has(p.id); p = byId.get(p.parentId)) seen.add(p.id);
    return seen;
  };
  const here = all.map((m, i) => ({ m, i })).filter(({ m }) => m.mountPoint === dir);
  for (let k = here.length - 1; k >= 0; k--) {
    const { m, i } = here[k]!;
    const ancestors = ancestorsOf(m);
    const hidden = all.slice(i + 1).some((n) => isUnder(dir, n.mountPoint) && !ancestors.has(n.id));
    if (!hidden) return m;
  }
  return undefined;
}

interface LoopDevice {
  device: string;
  backingFile: string;
  deleted: boolean;
  autoclear: boolean;
}

/** Loop devices in use, read from /sys (no command needed). */
function loopDevices(): LoopDevice[] {
  const out: LoopDevice[] = [];
  for (const n of listDir('/sys/block').filter((n) => /^loop\d+$/.test(n))) {
    const f = `/sys/block/${n}/loop/backing_file`;
    if (!existsSync(f)) continue;
    try {
      const raw = readFileSync(f, 'utf8').trim();
      const deleted = raw.endsWith(' (deleted)');
      let autoclear = false;
      try {
        autoclear = readFileSync(`/sys/block/${n}/loop/autoclear`, 'utf8').trim() === '1';
      } catch {
        /* old kernel */
      }
      out.push({ device: `/dev/${n}`, backingFile: deleted ? raw.slice(0, -' (deleted)'.length) : raw, deleted, autoclear });
    } catch {
      /* detached meanwhile */
    }
  }
  return out;
}

export function loopsFor(file: string): LoopDevice[] {
  return loopDevices().filter((l) => l.backingFile === file);
}

/** Loop devices whose backing file is at or under dir (for tests and leak checks). */
export function loopsUnder(dir: string): LoopDevice[] {
  return loopDevices().filter((l) => isUnder(l.backingFile, dir));
}

/** The backing file of the loop device mounted at dir, if dir is a loop mount. */
export function loopBackingAt(dir: string): { device: string; backingFile: string; deleted: boolean } | undefined {
  const m = mountAt(dir);
  if (!m?.source.startsWith('/dev/loop')) return undefined;
  const loop = loopDevices().find((l) => l.device === m.source);
  return loop ? { device: loop.device, backingFile: loop.backingFile, deleted: loop.deleted } : undefined;
}

// Why DATA/mnt is made a shared mount: on a host whose mounts are private (PID 1 is
// not systemd), every mount namespace created while an image is mounted (`ip netns
// exec`, `ip -n ...`, unshare) keeps its own copy of that mount, which pins the
// filesystem and its loop device long after we unmount it. When the parent of the
// image mounts is shared, those namespaces get slave copies (ip netns exec makes /
// rslave) and our umount propagates into them. The self bind mount is taken away again
// when the last image under it is unmounted.

function isSelfBind(m: MountEntry, dir: string): boolean {
  return m.mountPoint === dir && (m.root === dir || dir.endsWith(m.root));
}

/** Makes dir (DATA/mnt) a shared mount point, bind-mounting it onto itself if needed. */
async function ensureSharedMountRoot(dir: string, step = 'mount'): Promise<void> {
  const m = mountAt(dir);
  if (m?.shared) return;
  if (!m) {
    // An image already mounted below dir must stay visible. A plain bind would hide it,
    // and --rbind would show a copy while the original stays mounted, hidden under the
    // bind, keeping its loop device. So then do without (until nothing is mounted there).
    if (mountsUnder(dir).length) return;
    await run(['mount', '--bind', dir, dir], { step });
  }
  await run(['mount', '--make-shared', dir], { step });
}

/** Removes the self bind mount of dir (DATA/mnt) once nothing is mounted under it. */
async function releaseMountRoot(dir: string, step = 'umount'): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const here = mountsUnder(dir);
    const top = here.filter((m) => m.mountPoint === dir);
    if (here.length !== top.length || !top.length || !top.every((m) => isSelfBind(m, dir))) return;
    await run(['umount', dir], { step, allowFailure: true });
  }
}

/**
 * `mount -o loop` (util-linux sets autoclear, so unmounting frees the loop device),
 * under a shared parent (see above).
 */
export async function loopMount(file: string, dir: string, options: RunOptions = {}): Promise<void> {
  const step = options.step ?? 'mount';
  await ensureSharedMountRoot(dirname(dir), step);
  await run(['mount', '-t', 'btrfs', '-o', 'loop,noatime', file, dir], { step, ...options });
}

/**
 * Unmounts everything at or under dir (deepest first). With killUsers, processes
 * still using dir are stopped first. A mount that stays busy is finally detached
 * lazily so that cleanup never leaves it in the tree.
 */
export async function unmountTree(dir: string, options: { killUsers?: boolean; step?: string } = {}): Promise<void> {
  await unmountTreeAndRoot(dir, options);
}

async function unmountTreeOnly(dir: string, options: { killUsers?: boolean; step?: string }): Promise<void> {
  if (options.killUsers) await killProcessesUsing([dir]);
  for (let attempt = 0; attempt < 5; attempt++) {
    const mounts = mountsUnder(dir);
    if (!mounts.length) return;
    for (const m of mounts) {
      await run(['umount', m.mountPoint], { step: options.step ?? 'umount', allowFailure: true });
    }
    if (!mountsUnder(dir).length) return;
    if (options.killUsers) await killProcessesUsing([dir], 1000);
    await sleep(200 * (attempt + 1));
  }
  for (const m of mountsUnder(dir)) {
    await run(['umount', '--lazy', m.mountPoint], { step: options.step ?? 'umount', allowFailure: true });
  }
}

/** unmountTree, then take away DATA/mnt's shared self bind mount if it was the last image. */
async function unmountTreeAndRoot(dir: string, options: { killUsers?: boolean; step?: string }): Promise<void> {
  await unmountTreeOnly(dir, options);
  const parent = dirname(dir);
  if (basename(parent) === 'mnt') await releaseMountRoot(parent, options.step);
}

/** Processes in other mount namespaces that still have device mounted (one per namespace). */
function foreignHolders(device: string): { pid: number; comm: string }[] {
  const own = safeReadlink('/proc/self/ns/mnt');
  const seen = new Set<string>();
  const out: { pid: number; comm: string }[] = [];
  for (const p of pids()) {
    const ns = safeReadlink(`/proc/${p}/ns/mnt`);
    if (!ns || ns === own || seen.has(ns)) continue;
    seen.add(ns);
    try {
      if (parseMountinfo(readFileSync(`/proc/${p}/mountinfo`, 'utf8')).some((m) => m.source === device)) {
        out.push({ pid: Number(p), comm: readFileSync(`/proc/${p}/comm`, 'utf8').trim() });
      }
    } catch {
      /* gone */
    }
  }
  return out;
}

function safeReadlink(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** Loop devices that could not be freed yet because another mount namespace holds them. */
class PinnedLoopWarning {
  constructor(
    readonly device: string,
    readonly file: string,
    readonly holders: { pid: number; comm: string }[],
  ) {}
  get message(): string {
    return (
      `${this.device} (${this.file}) stays attached until ${this.holders.map((h) => `process ${h.pid} (${h.comm})`).join(', ')} exits: ` +
      'it holds a copy of the mount in its own mount namespace; the loop device is set to free itself then'
    );
  }
}

/** Warnings from detachLoops() go here (the CLI prints them). */
export const warnings: { emit: (message: string) => void } = {
  emit: (message) => process.stderr.write(`labctl: warning: ${message}\n`),
};

/**
 * Detaches every loop device backed by file (unmount first). A loop device with
 * autoclear goes away by itself once its filesystem is really gone, which can be a
 * moment after umount, so this asks `losetup --detach` and then waits for it. One that
 * another mount namespace still holds (a process started with `ip netns exec` while the
 * image was mounted) cannot be freed from here: it is reported, not waited for, and it
 * frees itself when that namespace goes away.
 */
export async function detachLoops(file: string, timeoutMs = 20_000): Promise<PinnedLoopWarning[]> {
  const deadline = Date.now() + timeoutMs;
  const asked = new Map<string, number>();
  let pinnedSince: number | undefined;
  for (;;) {
    const loops = loopsFor(file);
    if (!loops.length) return [];
    for (const l of loops) {
      const last = asked.get(l.device) ?? 0;
      if (Date.now() - last > 2000) {
        asked.set(l.device, Date.now());
        await run(['losetup', '--detach', l.device], { step: 'detach loop device', allowFailure: true });
      }
    }
    const left = loopsFor(file);
    if (!left.length) return [];
    const mountedHere = readMounts().filter((m) => left.some((l) => l.device === m.source));
    if (mountedHere.length) {
      if (Date.now() > deadline) {
        throw new Error(
          `could not detach ${left.map((l) => l.device).join(', ')} (backing ${file}): still mounted at ${mountedHere.map((m) => m.mountPoint).join(', ')}`,
        );
      }
    } else {
      const pinned = left.map((l) => new PinnedLoopWarning(l.device, file, foreignHolders(l.device)));
      if (pinned.every((p) => p.holders.length)) {
        pinnedSince ??= Date.now();
        if (Date.now() - pinnedSince > 2000) {
          for (const p of pinned) warnings.emit(p.message);
          return pinned;
        }
      } else if (Date.now() > deadline) {
        throw new Error(`could not detach ${left.map((l) => l.device).join(', ')} (backing ${file})`);
      }
    }
    await sleep(100);
  }
}
