// Runs commands on a STOCK Linux kernel, in a VM, for the tests of what only such a kernel
// can show (netem, WireGuard's module, ...).
//
//   import { runInStockKernel, stockKernel, withStockKernelSession } from '../support/stock-kernel-vm.js';
//   const kernel = await stockKernel();
//   test('netem', { skip: kernel.available ? false : kernel.reason }, async () => {
//     const r = await runInStockKernel(['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '50ms'], { timeoutMs: 30_000 });
//     // r.exitCode, r.stdout, r.stderr, r.bootMs, r.totalMs
//   });
//   await withStockKernelSession(async (vm) => { await vm.run([...]); await vm.run([...]); });
//
// Why a VM: the machine kind the project is developed on runs a slim kernel (6.18, every
// driver built in, no loadable modules) that lacks sch_netem, wireguard and sch_fq; users'
// hosts (Debian, Ubuntu, Fedora) have them all as modules. Checked on 2026-12-02:
// `tc qdisc add ... netem` says "Specified qdisc kind is unknown" and
// `ip link add type wireguard` says "Unknown device type" there.
//
// What the VM is:
//   - the kernel: Debian's generic kernel, the package that linux-image-amd64 depends on
//     (linux-image-6.1.0-NN-amd64 on Debian 12), fetched with `apt-get download` (Debian's
//     archive is reachable wherever the project's machines are) and unpacked with dpkg-deb -x
//     into the test data dir, once per data dir ($LABCTL_TEST_DATA_DIR: `npm test` makes a
//     fresh one per run, so once per run, shared by the test files under a lock; ~7-9 s
//     here). The package ships no modules.dep (its postinst runs depmod); busybox depmod
//     writes one. The generic kernel rather than the cloud one (linux-image-cloud-amd64):
//     the cloud kernel has no 9p (CONFIG_NET_9P unset), which is how the host's files reach
//     the guest here.
//   - its root: the HOST's root file system, read-only over 9p (qemu -virtfs ... readonly=on),
//     under an overlay whose upper layer is a tmpfs (test/support/stock-kernel-vm/init.sh):
//     the guest runs the host's very node, this checkout, and the host's ip, tc, nft,
//     conntrack, ping, wg, wireguard-go... at the same paths (what the host lacks, the guest
//     lacks: scripts/install.sh installs what the tests use), and nothing it writes reaches
//     the host. A static busybox (Debian's busybox-static, fetched the same way) runs the
//     initramfs and loads modules (the host may have no kmod).
//   - no network device: whatever a test needs, it builds inside (namespaces, veths).
//   - software emulation (TCG). This machine kind does have a /dev/kvm, but it is kvm-pvm,
//     which runs only kernels built as PVM guests: qemu -accel kvm hung there, silent.
//     $LABCTL_TEST_VM_ACCEL=kvm asks for KVM on a host where it works.
//   - measured here under TCG, 1 vCPU, on a 2-core host busy with other tests (load 5-9):
//     qemu's start to the guest's "ready" 4.6-10 s, of which ~0.5 s before the kernel runs
//     (it boots the unpacked vmlinux: see unpackVmlinux) and ~2-2.5 s to /init on a quiet
//     host; a short command (ip link) ~0.2-0.5 s; node -e 1 ~1.3-2.3 s; labctl net up of
//     the article's lab ~4-11 s. Keep the tests that need the VM few and focused on what
//     only the stock kernel can show, and run the rest on the host.
//
// Commands go to the guest over a virtio serial port wired to qemu's stdin/stdout, as argv
// arrays (test/support/stock-kernel-vm/guest.sh says the protocol): no shell reads them.
// Every run is bounded: the guest's timeout(1) stops a command after timeoutMs, and the
// harness SIGKILLs qemu when the guest does not answer within a grace period after that,
// or does not boot in bootTimeoutMs. qemu runs under `setpriv --pdeathsig KILL`, so it dies
// with the test process, and the harness kills the VMs it started when the process exits.
// It leaves no process, no mount on the host (the guest's mounts are the guest's), and no
// file outside the test data dir (a failed session keeps its console log there).
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { withLock } from '../../src/host/lock.js';
import { alive, whichExecutable } from '../../src/util/process.js';
import { TEST_DATA_DIR } from './test-image.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const VM_FILES = join(ROOT, 'test', 'support', 'stock-kernel-vm');
const INIT_SCRIPT = join(VM_FILES, 'init.sh');
const GUEST_SCRIPT = join(VM_FILES, 'guest.sh');
const CACHE_DIR = join(TEST_DATA_DIR, 'stock-kernel');
const LOCK = join(TEST_DATA_DIR, 'locks', 'stock-kernel.lock');
/** What kernel.json in CACHE_DIR records; bump when the layout of the cache changes. */
const CACHE_FORMAT = 2;
/** The metapackage whose dependency is the current versioned generic kernel. */
const KERNEL_METAPACKAGE = 'linux-image-amd64';
/** The modules init.sh loads before the host's root is there (with their dependencies). */
const BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay', 'virtio_console'];
/** How long the harness waits past a command's own timeout before it gives the VM up. */
const ANSWER_GRACE_MS = 20_000;
/** Default PATH etc. of a command in the guest (a login shell's, not the test process's). */
const BASE_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C.UTF-8',
};

export type StockKernel =
  | {
      available: true;
      /** the kernel's release, as `uname -r` says it in the guest: 6.1.0-57-amd64 */
      version: string;
      /** the Debian package it came from, with its version: linux-image-6.1.0-57-amd64 6.1.192-3 */
      package: string;
      /** tcg (software emulation), or kvm where $LABCTL_TEST_VM_ACCEL=kvm asks for it */
      accel: 'kvm' | 'tcg';
    }
  | { available: false; reason: string };

/** What kernel.json records of the unpacked kernel. */
interface KernelRecord {
  format: number;
  package: string;
  packageVersion: string;
  release: string;
  /** paths, all under CACHE_DIR: the kernel qemu boots (vmlinux, or vmlinuz where it could not be unpacked) */
  kernel: string;
  modules: string;
  busybox: string;
}

interface Prepared extends KernelRecord {
  initrd: string;
  accel: 'kvm' | 'tcg';
  qemu: string;
  setpriv: string | undefined;
}

/** What this host lacks for the VM (a reason to skip), as opposed to a fault of the harness (a reason to fail). */
class Unavailable extends Error {}

let pending: Promise<Prepared | Unavailable> | undefined;

/**
 * Whether the stock kernel can run here, getting it ready when it can: the kernel and
 * busybox downloaded and unpacked once per test data dir, the initramfs built. What the
 * host lacks (qemu, apt, Debian's archive, an x86-64 CPU) is the reason it is not
 * available; anything that goes wrong after the download throws, so that a broken harness
 * fails the tests rather than skipping them.
 */
export async function stockKernel(): Promise<StockKernel> {
  pending ??= prepare().catch((e: unknown) => {
    if (e instanceof Unavailable) return e;
    pending = undefined;
    throw e;
  });
  const p = await pending;
  if (p instanceof Unavailable) return { available: false, reason: `no stock-kernel VM: ${p.message}` };
  return { available: true, version: p.release, package: `${p.package} ${p.packageVersion}`, accel: p.accel };
}

async function prepare(): Promise<Prepared> {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Unavailable(`it needs an x86-64 Linux host (this is ${process.platform} ${process.arch})`);
  const qemu = whichExecutable('qemu-system-x86_64');
  if (!qemu) throw new Unavailable('qemu-system-x86_64 is not installed (Debian package qemu-system-x86; scripts/install.sh installs it)');
  for (const tool of ['apt-get', 'apt-cache', 'dpkg-deb']) {
    if (!whichExecutable(tool)) throw new Unavailable(`${tool} is not installed: the kernel comes from Debian's archive, through apt`);
  }
  // guest.sh runs as the host's own bash; the paths go on the kernel command line and in qemu options.
  if (!existsSync('/bin/bash')) throw new Unavailable("the host has no /bin/bash (the guest runs the host's own)");
  for (const path of [ROOT, CACHE_DIR]) {
    if (/[\s,"'\\]/.test(path)) throw new Unavailable(`${path} has a space, comma, quote or backslash: it cannot go on the guest kernel's command line`);
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const record = await withLock(LOCK, { waitMs: 15 * 60_000, what: 'the stock kernel is being prepared' }, async () => {
    const kernel = readRecord() ?? (await fetchKernel());
    return { ...kernel, initrd: buildInitramfs(kernel) };
  });
  return { ...record, accel: chooseAccel(), qemu, setpriv: whichExecutable('setpriv') };
}

/**
 * Software emulation unless $LABCTL_TEST_VM_ACCEL=kvm. A /dev/kvm that opens is no proof
 * that a stock kernel runs under it: this machine kind has one (kvm-pvm, which runs only
 * kernels built as PVM guests), and qemu -accel kvm hung there with no output at all.
 */
function chooseAccel(): 'kvm' | 'tcg' {
  return process.env.LABCTL_TEST_VM_ACCEL === 'kvm' ? 'kvm' : 'tcg';
}

function readRecord(): KernelRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(join(CACHE_DIR, 'kernel.json'), 'utf8')) as KernelRecord;
    if (r.format === CACHE_FORMAT && [r.kernel, r.busybox, join(r.modules, 'modules.dep')].every((f) => existsSync(f))) return r;
  } catch {
    /* none yet, or from an older harness */
  }
  return undefined;
}

async function run(cmd: string, args: string[], options: { cwd?: string; timeoutMs: number }): Promise<string> {
  const r = await execa(cmd, args, { cwd: options.cwd, reject: false, stdin: 'ignore', timeout: options.timeoutMs, env: { LC_ALL: 'C' } });
  if (r.exitCode !== 0) {
    const said = `${String(r.stderr)}\n${String(r.stdout)}`.trim().split('\n').slice(-5).join('\n');
    throw new Error(`${[cmd, ...args].join(' ')} failed${r.timedOut ? ' (timed out)' : ''}: ${said}`);
  }
  return String(r.stdout);
}

/** Downloads and unpacks the current generic kernel and busybox-static, writes modules.dep and kernel.json. */
async function fetchKernel(): Promise<KernelRecord> {
  const started = Date.now();
  const depends = await run('apt-cache', ['depends', '--important', KERNEL_METAPACKAGE], { timeoutMs: 60_000 }).catch((e: Error) => {
    throw new Unavailable(`apt knows no ${KERNEL_METAPACKAGE} (a Debian host with apt-get update done is needed): ${e.message}`);
  });
  const pkg = /Depends: (linux-image-\d\S*)/.exec(depends)?.[1];
  if (!pkg) throw new Unavailable(`apt-cache depends ${KERNEL_METAPACKAGE} names no versioned kernel package:\n${depends}`);
  process.stderr.write(`# stock-kernel VM: fetching ${pkg} and busybox-static from Debian's archive into ${CACHE_DIR}\n`);
  const debs = join(CACHE_DIR, 'debs');
  rmSync(debs, { recursive: true, force: true });
  mkdirSync(debs, { recursive: true });
  await run('apt-get', ['download', '-q', pkg, 'busybox-static'], { cwd: debs, timeoutMs: 10 * 60_000 }).catch((e: Error) => {
    throw new Unavailable(`cannot download ${pkg} from Debian's archive: ${e.message}`);
  });
  const debFile = (name: string) => {
    const file = readdirSync(debs).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'));
    if (!file) throw new Error(`apt-get download left no ${name}_*.deb in ${debs}`);
    return join(debs, file);
  };
  const kernelDeb = debFile(pkg);
  const packageVersion = (await run('dpkg-deb', ['--field', kernelDeb, 'Version'], { timeoutMs: 60_000 })).trim();
  const unpacked = join(CACHE_DIR, `${pkg}_${packageVersion}`);
  rmSync(unpacked, { recursive: true, force: true });
  await run('dpkg-deb', ['-x', kernelDeb, unpacked], { timeoutMs: 10 * 60_000 });
  const busyboxDir = join(CACHE_DIR, 'busybox-static');
  rmSync(busyboxDir, { recursive: true, force: true });
  await run('dpkg-deb', ['-x', debFile('busybox-static'), busyboxDir], { timeoutMs: 60_000 });
  const busybox = join(busyboxDir, 'bin', 'busybox');
  const release = readdirSync(join(unpacked, 'lib', 'modules'))[0];
  const vmlinuz = join(unpacked, 'boot', `vmlinuz-${release}`);
  if (!release || !existsSync(vmlinuz) || !existsSync(busybox)) throw new Error(`${kernelDeb} or busybox-static did not unpack as expected (in ${unpacked})`);
  await run(busybox, ['depmod', '-b', unpacked, release], { timeoutMs: 5 * 60_000 });
  rmSync(debs, { recursive: true, force: true });
  const kernel = await unpackVmlinux(vmlinuz);
  const record: KernelRecord = {
    format: CACHE_FORMAT,
    package: pkg,
    packageVersion,
    release,
    kernel,
    modules: join(unpacked, 'lib', 'modules', release),
    busybox,
  };
  writeFileSync(join(CACHE_DIR, 'kernel.json'), `${JSON.stringify(record, null, 2)}\n`);
  process.stderr.write(`# stock-kernel VM: ${pkg} ${packageVersion} ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return record;
}

/**
 * The uncompressed kernel (an ELF vmlinux) inside a bzImage, beside it; the bzImage itself
 * where that fails (no xz). qemu boots an ELF vmlinux through its PVH entry point (Debian's
 * kernels have CONFIG_PVH), which skips the firmware's real-mode setup and the kernel's own
 * decompression: under software emulation that took qemu's start-to-/init from ~6.2 s to
 * ~3.3 s here (Debian compresses the kernel with xz, slow to undo when emulated).
 */
async function unpackVmlinux(vmlinuz: string): Promise<string> {
  const image = readFileSync(vmlinuz);
  const xzAt = image.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  const xz = whichExecutable('xz');
  if (xzAt < 0 || !xz) return vmlinuz;
  const vmlinux = vmlinuz.replace(/vmlinuz-([^/]+)$/, 'vmlinux-$1');
  // --single-stream: what follows the compressed kernel in the bzImage is not xz data.
  const r = await execa(xz, ['-dc', '--single-stream'], { input: image.subarray(xzAt), stdout: { file: vmlinux }, reject: false, timeout: 120_000 });
  if (r.exitCode !== 0 || !startsWith(vmlinux, Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
    rmSync(vmlinux, { force: true });
    return vmlinuz;
  }
  return vmlinux;
}

function startsWith(file: string, magic: Buffer): boolean {
  const head = Buffer.alloc(magic.length);
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    return readSync(fd, head, 0, head.length, 0) === head.length && head.equals(magic);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** modules.dep (as depmod writes it: "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko ...") as module name -> [path, dependency paths]. */
function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const modules = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const name = path
      .split('/')
      .pop()!
      .replace(/\.ko(\.\w+)?$/, '')
      .replaceAll('-', '_');
    modules.set(name, {
      path,
      deps: line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    });
  }
  return modules;
}

/** An entry of a newc cpio archive: a directory, or a file with its content. */
type CpioEntry = { name: string; mode: number } & ({ type: 'dir' } | { type: 'file'; data: Buffer });

/** A cpio archive in the "newc" format, the one the kernel unpacks as an initramfs. */
function cpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (length: number) => Buffer.alloc((4 - (length % 4)) % 4);
  const put = (name: string, mode: number, data: Buffer, ino: number) => {
    const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, Buffer.byteLength(name) + 1, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}${name}\0`);
    parts.push(header, pad(header.length), data, pad(data.length));
  };
  entries.forEach((e, i) => {
    if (e.type === 'dir') put(e.name, 0o040000 | e.mode, Buffer.alloc(0), i + 1);
    else put(e.name, 0o100000 | e.mode, e.data, i + 1);
  });
  put('TRAILER!!!', 0, Buffer.alloc(0), 0);
  return Buffer.concat(parts);
}

/** The initramfs (init.sh, busybox, the boot modules and their modules.dep), built when its inputs changed; returns its path. */
function buildInitramfs(kernel: KernelRecord): string {
  const modules = parseModulesDep(readFileSync(join(kernel.modules, 'modules.dep'), 'utf8'));
  const wanted = new Set<string>();
  for (const name of BOOT_MODULES) {
    const m = modules.get(name);
    if (!m) throw new Error(`${kernel.package} has no module ${name}`);
    for (const path of [m.path, ...m.deps]) wanted.add(path);
  }
  const depLines = [...modules.values()].filter((m) => wanted.has(m.path)).map((m) => `${m.path}: ${m.deps.join(' ')}`.trimEnd());
  const moduleRoot = `lib/modules/${kernel.release}`;
  const files = new Map<string, { data: Buffer; mode: number }>([
    ['init', { data: readFileSync(INIT_SCRIPT), mode: 0o755 }],
    ['bin/busybox', { data: readFileSync(kernel.busybox), mode: 0o755 }],
    [`${moduleRoot}/modules.dep`, { data: Buffer.from(`${depLines.join('\n')}\n`), mode: 0o644 }],
    ...[...wanted].sort().map((path) => [`${moduleRoot}/${path}`, { data: readFileSync(join(kernel.modules, path)), mode: 0o644 }] as const),
  ]);
  const hash = createHash('sha256');
  for (const [name, f] of files) hash.update(`${name}\0${f.mode}\0`).update(f.data);
  const path = join(CACHE_DIR, `initramfs-${kernel.release}-${hash.digest('hex').slice(0, 16)}.cpio.gz`);
  if (existsSync(path)) return path;
  const dirs = new Set<string>();
  for (const name of files.keys()) {
    for (let d = dirname(name); d !== '.'; d = dirname(d)) dirs.add(d);
  }
  const entries: CpioEntry[] = [
    ...[...dirs].sort().map((name): CpioEntry => ({ type: 'dir', name, mode: 0o755 })),
    ...[...files].map(([name, f]): CpioEntry => ({ type: 'file', name, mode: f.mode, data: f.data })),
  ];
  // Level 1: the kernel unpacks it under emulation, where a smaller file saves little.
  writeFileSync(`${path}.new`, gzipSync(cpioNewc(entries), { level: 1 }));
  renameSync(`${path}.new`, path);
  return path;
}

export interface RunOptions {
  /** the command's time limit in the guest (timeout(1): TERM, then KILL 5 s later) */
  timeoutMs: number;
  /** added to the command's environment (PATH, HOME and LANG=C.UTF-8 by default; nothing of the test process's) */
  env?: Record<string, string>;
  /** working directory in the guest (default /) */
  cwd?: string;
  /** the command's standard input (default: empty) */
  input?: string | Buffer;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** the command ran out of timeoutMs (exitCode is then timeout(1)'s 124, or 137 when it had to KILL) */
  timedOut: boolean;
  /** from the request to the answer, as the host saw it */
  durationMs: number;
}

export interface SessionOptions {
  /** how long qemu may take from its start to the guest's "ready" (default 120 s: software emulation on a busy host) */
  bootTimeoutMs?: number;
  /** the guest's memory (default 1024 MiB; its tmpfs root layer may fill half of it) */
  memoryMiB?: number;
  /**
   * virtual CPUs (default 1). Measured here on a busy 2-core host (load 7-9), 3 boots each:
   * 1 vCPU booted in 4.6-8.7 s, 2 vCPUs in 9.6-10.4 s (their threads compete with each
   * other and with the host's work), and node started no faster; 1 also keeps the VM to one core.
   */
  cpus?: number;
}

export interface StockKernelSession {
  /** the guest kernel's release */
  readonly version: string;
  readonly accel: 'kvm' | 'tcg';
  /** from qemu's start to the guest's "ready" */
  readonly bootMs: number;
  /** the part of bootMs after the kernel started (its uptime at "ready"); the rest is qemu starting and loading the kernel */
  readonly kernelBootMs: number;
  /** Runs argv in the guest (as root, in the guest's initial namespaces) and returns what it did. */
  run(argv: string[], options: RunOptions): Promise<RunResult>;
}

/** The VMs this process started and has not seen exit: killed when it exits. */
const liveVms = new Set<ChildProcess>();
process.on('exit', () => {
  for (const vm of liveVms) vm.kill('SIGKILL');
});

/** How many qemu processes this process started are still running (0 after every session). */
export function liveVmCount(): number {
  return liveVms.size;
}

/**
 * qemu processes this process started that are still running, as "PID CMDLINE", found in
 * /proc rather than in the harness's own records (their console files are under
 * sessions/PID-*): other test processes' VMs are theirs to account for.
 */
export function strayVms(): string[] {
  const mine = join(CACHE_DIR, 'sessions', `${process.pid}-`);
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('qemu-system-x86_64') && argv.some((a) => a.includes(mine))) found.push(`${pid} ${argv.join(' ')}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

class Session implements StockKernelSession {
  version = '';
  bootMs = 0;
  kernelBootMs = 0;
  readonly accel: 'kvm' | 'tcg';
  readonly startedAt = Date.now();
  private readonly child: ChildProcess;
  private buffered = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exit: Promise<void>;
  private stderr = '';
  private busy = false;

  constructor(
    vm: Prepared,
    readonly dir: string,
    options: SessionOptions,
  ) {
    this.accel = vm.accel;
    const append = [
      'console=ttyS0',
      'quiet',
      // a panic ends the VM at once (with -no-reboot) rather than hanging until the timeout
      'panic=-1',
      `labctl.guest=${GUEST_SCRIPT}`,
      `labctl.busybox=${vm.busybox}`,
      `labctl.modules=${vm.modules}`,
      // The checkout: under the host's /tmp, guest.sh keeps it visible in the guest's fresh /tmp.
      `labctl.checkout=${ROOT}`,
    ].join(' ');
    const qemuArgs = [
      ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
      ...['-machine', `pc,accel=${vm.accel}`, '-cpu', 'max', '-m', String(options.memoryMiB ?? 1024), '-smp', String(options.cpus ?? 1)],
      ...['-kernel', vm.kernel, '-initrd', vm.initrd, '-append', append],
      ...['-serial', `file:${join(dir, 'console.log')}`],
      ...['-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap'],
      ...['-device', 'virtio-serial-pci', '-chardev', 'stdio,id=ctl,signal=off', '-device', 'virtserialport,chardev=ctl,name=labctl.ctl'],
    ];
    // setpriv --pdeathsig: the kernel KILLs qemu when this process dies, even by SIGKILL.
    const [cmd, args] = vm.setpriv ? [vm.setpriv, ['--pdeathsig', 'KILL', '--', vm.qemu, ...qemuArgs]] : [vm.qemu, qemuArgs];
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    liveVms.add(this.child);
    this.child.stdin!.on('error', () => {}); // qemu gone: the exit says why
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake?.();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + String(chunk)).slice(-4000);
    });
    this.exit = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        this.exited ??= { code, signal };
        liveVms.delete(this.child);
        this.wake?.();
        resolve();
      };
      this.child.on('exit', done);
      this.child.on('error', (e) => {
        this.stderr += `\n${e.message}`;
        done(null, null);
      });
    });
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  /** What went wrong, with what qemu and the guest's console said last. */
  failure(what: string): Error {
    let console = '';
    try {
      console = readFileSync(join(this.dir, 'console.log'), 'utf8');
    } catch {
      /* none yet */
    }
    const exit = this.exited ? ` (qemu exited ${this.exited.signal ?? this.exited.code})` : '';
    const tail = (s: string) => s.trim().split('\n').slice(-20).join('\n') || '(nothing)';
    return new Error(`stock-kernel VM: ${what}${exit}\nqemu said: ${tail(this.stderr)}\nthe guest's console (${this.dir}/console.log) ends:\n${tail(console)}`);
  }

  /** Waits until `take` can take what it needs from the bytes qemu sent; kills the VM at the deadline. */
  private async take<T>(take: (buffered: Buffer) => { value: T; used: number } | undefined, deadline: number, what: string): Promise<T> {
    for (;;) {
      const got = take(this.buffered);
      if (got) {
        this.buffered = this.buffered.subarray(got.used);
        return got.value;
      }
      if (this.exited) throw this.failure(`the guest went away while ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        this.kill();
        await this.exit;
        throw this.failure(`no answer in time while ${what}; qemu killed`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private line(deadline: number, what: string): Promise<string> {
    return this.take(
      (b) => {
        const nl = b.indexOf(10);
        return nl < 0 ? undefined : { value: b.subarray(0, nl).toString('utf8'), used: nl + 1 };
      },
      deadline,
      what,
    );
  }

  private bytes(n: number, deadline: number, what: string): Promise<Buffer> {
    return this.take((b) => (b.length < n ? undefined : { value: Buffer.from(b.subarray(0, n)), used: n }), deadline, what);
  }

  async boot(timeoutMs: number): Promise<void> {
    const ready = await this.line(this.startedAt + timeoutMs, 'booting');
    const m = /^ready (\S+) ([\d.]+)$/.exec(ready);
    if (!m) throw this.failure(`the guest said ${JSON.stringify(ready)} instead of ready`);
    this.version = m[1]!;
    this.kernelBootMs = Math.round(Number(m[2]) * 1000);
    this.bootMs = Date.now() - this.startedAt;
  }

  async run(argv: string[], options: RunOptions): Promise<RunResult> {
    if (this.busy) throw new Error('stock-kernel VM: one command at a time (await the previous run)');
    if (!argv.length) throw new Error('stock-kernel VM: empty argv');
    if (!(options.timeoutMs > 0 && Number.isFinite(options.timeoutMs)))
      throw new Error(`stock-kernel VM: timeoutMs must be a positive number, not ${options.timeoutMs}`);
    const env = { ...BASE_ENV, ...options.env };
    for (const name of Object.keys(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`stock-kernel VM: bad environment variable name ${JSON.stringify(name)}`);
    }
    const cwd = options.cwd ?? '/';
    const fields = [
      'run',
      (options.timeoutMs / 1000).toFixed(3),
      cwd,
      String(Object.keys(env).length),
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      String(argv.length),
      ...argv,
    ];
    if (fields.some((f) => f.includes('\0'))) throw new Error('stock-kernel VM: a NUL byte in argv, env or cwd');
    const input = typeof options.input === 'string' ? Buffer.from(options.input) : (options.input ?? Buffer.alloc(0));
    this.busy = true;
    try {
      const started = Date.now();
      if (this.exited) throw this.failure('the VM is gone');
      this.child.stdin!.write(Buffer.concat([Buffer.from([...fields, String(input.length)].map((f) => `${f}\0`).join('')), input]));
      const deadline = started + options.timeoutMs + ANSWER_GRACE_MS;
      const what = `running ${JSON.stringify(argv)}`;
      const done = await this.line(deadline, what);
      const m = /^done (\d+) (\d+) (\d+)$/.exec(done);
      if (!m) throw this.failure(`the guest answered ${JSON.stringify(done)} to ${what}`);
      const stdout = await this.bytes(Number(m[2]), deadline, what);
      const stderr = await this.bytes(Number(m[3]), deadline, what);
      const durationMs = Date.now() - started;
      const exitCode = Number(m[1]);
      return {
        exitCode,
        stdout: stdout.toString('utf8'),
        stderr: stderr.toString('utf8'),
        timedOut: (exitCode === 124 || exitCode === 137) && durationMs >= options.timeoutMs,
        durationMs,
      };
    } finally {
      this.busy = false;
    }
  }

  /** Asks the guest to power off; kills qemu when it does not within 20 s. */
  async close(): Promise<void> {
    if (!this.exited) {
      this.child.stdin!.end('quit\0');
      const timer = setTimeout(() => this.kill(), 20_000);
      await this.exit;
      clearTimeout(timer);
    }
  }
}

/**
 * Boots the stock kernel, runs fn with the VM (commands one at a time, sharing the guest's
 * state: namespaces, files, processes left running), and powers it off. Throws when the
 * stock kernel is not available: check stockKernel() first and skip the test.
 */
export async function withStockKernelSession<T>(fn: (vm: StockKernelSession) => Promise<T>, options: SessionOptions = {}): Promise<T> {
  return (await inSession(fn, options)).result;
}

async function inSession<T>(fn: (vm: StockKernelSession) => Promise<T>, options: SessionOptions): Promise<{ session: Session; result: T }> {
  const kernel = await stockKernel();
  if (!kernel.available) throw new Error(kernel.reason);
  const vm = (await pending) as Prepared;
  const sessions = join(CACHE_DIR, 'sessions');
  mkdirSync(sessions, { recursive: true });
  // A failed session's dir stays for its console log; the next process's sweeps those of processes now gone.
  for (const old of readdirSync(sessions)) {
    const owner = Number(old.split('-')[0]);
    if (owner && !alive(owner)) rmSync(join(sessions, old), { recursive: true, force: true });
  }
  const session = new Session(vm, mkdtempSync(join(sessions, `${process.pid}-`)), options);
  let ok = false;
  try {
    await session.boot(options.bootTimeoutMs ?? 120_000);
    const result = await fn(session);
    await session.close();
    if (session.exited?.code !== 0) throw session.failure('the guest did not power off cleanly');
    ok = true;
    return { session, result };
  } finally {
    session.kill();
    await session.exit;
    // The console log stays (inside the test data dir) when something failed, for the error's reader.
    if (ok) rmSync(session.dir, { recursive: true, force: true });
  }
}

/** Boots a VM for one command: its result with the VM's boot time and the whole run's. */
export async function runInStockKernel(
  argv: string[],
  options: RunOptions & SessionOptions,
): Promise<RunResult & { bootMs: number; totalMs: number; version: string }> {
  const { session, result } = await inSession((vm) => vm.run(argv, options), options);
  return { ...result, bootMs: session.bootMs, totalMs: Date.now() - session.startedAt, version: session.version };
}
