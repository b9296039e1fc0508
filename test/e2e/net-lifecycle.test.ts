// The lab network's lifecycle on a real host: bad input changes nothing, `net up` is
// transactional, a killed `up` is recovered by `down` (or the next `up`), the lab lock,
// two labs at once, strays that `down` must not touch, the host's own namespace, and
// traffic through a bridged LAN and a carrier-grade NAT.
//
// Every lab here has its own `name:` and `prefix:` (lc1- ... lc9-, see
// test/fixtures/lifecycle/), so its namespaces are ns-lcN-...; the default lab's names
// (ns-c0, ns-inet, ...) are never used. After each test, afterEach removes whatever of
// that test's labs is left: `net down`, and as a last resort `ip netns del` of the
// test's own prefixed names only.
import { after, afterEach, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs, { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BIN, type CliResult, hostNetworkFingerprint, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { UdpAgent } from '../support/agents.js';
import { loadLab } from '../../src/lab/load.js';
import type { Lab } from '../../src/lab/model.js';

const skip = isRoot ? false : 'needs root: creates network namespaces';
const FIXTURES = join(ROOT, 'test', 'fixtures', 'lifecycle');
const STATE_DIR = '/run/labctl';
const fixture = (name: string) => join(FIXTURES, name);
const statePath = (lab: string) => join(STATE_DIR, `${lab}.json`);
const lockPath = (lab: string) => join(STATE_DIR, `${lab}.lock`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- labs of a test

interface TestLab {
  file: string;
  name: string;
  prefix: string;
  lab: Lab;
  /** Every namespace `net up` creates. */
  namespaces: string[];
  /** Every interface name the lab creates, per namespace (lo not included). */
  ifnames: Map<string, string[]>;
}

/** Labs (name and prefix) the running test uses; afterEach removes what is left of them. */
const touched = new Map<string, { name: string; prefix: string; file?: string }>();

function track(name: string, prefix: string, file?: string): void {
  assert.ok(/^lc\d+[a-z]?-$/.test(prefix), `test labs use an lcN- prefix, not "${prefix}"`);
  touched.set(name, { name, prefix, ...(file ? { file } : {}) });
}

/** Loads a lifecycle fixture (with labctl's own resolver) and registers it for cleanup. */
function useLab(file: string): TestLab {
  const lab = loadLab(fixture(file));
  track(lab.name, lab.prefix, lab.source);
  const ifnames = new Map<string, string[]>();
  const add = (netns: string, ifname: string) => ifnames.set(netns, [...(ifnames.get(netns) ?? []), ifname]);
  for (const l of lab.links) {
    add(l.a.netns, l.a.ifname);
    add(l.b.netns, l.b.ifname);
  }
  for (const nat of lab.nats) if (nat.lan.bridged) add(nat.netns, nat.lan.ifname);
  const namespaces = [...lab.nodes, ...lab.nats, lab.internet].map((m) => m.netns);
  return { file: lab.source, name: lab.name, prefix: lab.prefix, lab, namespaces, ifnames };
}

const ownNetns = (prefix: string) =>
  netnsList()
    .filter((n) => n.startsWith(`ns-${prefix}`))
    .sort();

/** What is on the host of a lab: its prefixed namespaces, its state and lock files, `net up`'s scratch directory. */
function leftovers(name: string, prefix: string): string[] {
  return [...ownNetns(prefix), ...[statePath(name), lockPath(name), join(STATE_DIR, `.${name}.configure`)].filter((p) => existsSync(p))];
}

function assertNothingOf(t: { name: string; prefix: string }, when: string): void {
  const what = `namespaces ns-${t.prefix}*, state and lock file, scratch directory`;
  assert.deepEqual(leftovers(t.name, t.prefix), [], `${when}: nothing of lab "${t.name}" is left (${what})`);
}

interface StateFile {
  lab: string;
  status: string;
  planHash: string;
  namespaces: { netns: string }[];
}
const readStateFile = (lab: string) => JSON.parse(readFileSync(statePath(lab), 'utf8')) as StateFile;

/** The lab is up exactly once and whole: its namespaces (no more), interfaces, NAT tables, state. */
function assertLabUp(t: TestLab): void {
  const sorted = [...t.namespaces].sort();
  assert.deepEqual(ownNetns(t.prefix), sorted, `lab "${t.name}": exactly its namespaces exist`);
  const state = readStateFile(t.name);
  assert.equal(state.status, 'up', `lab "${t.name}": state file says up`);
  assert.deepEqual(state.namespaces.map((n) => n.netns).sort(), sorted, `lab "${t.name}": state file records its namespaces`);
  for (const ns of t.namespaces) {
    const links = execFileSync('ip', ['-n', ns, '-o', 'link', 'show'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((l) => ({ name: /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '', up: /[<,]UP[,>]/.test(l) }));
    const names = links
      .map((l) => l.name)
      .filter((n) => n !== 'lo')
      .sort();
    assert.deepEqual(names, [...(t.ifnames.get(ns) ?? [])].sort(), `lab "${t.name}": interfaces of ${ns}`);
    for (const l of links) assert.ok(l.up, `lab "${t.name}": ${l.name} in ${ns} is up`);
  }
  for (const nat of t.lab.nats) {
    assert.match(
      execFileSync('ip', ['netns', 'exec', nat.netns, 'nft', 'list', 'table', 'ip', 'labctl'], { encoding: 'utf8' }),
      /table ip labctl/,
      `${nat.netns} holds its NAT table`,
    );
  }
}

/** `net up` / `net down` that must succeed and leave the host's own namespace as it was. */
async function upOk(t: TestLab): Promise<CliResult> {
  const before = hostNetworkFingerprint();
  const r = await labctlOk(['net', 'up', t.file]);
  assert.equal(hostNetworkFingerprint(), before, `net up ${t.name}: the host's namespace is unchanged`);
  return r;
}

async function downOk(t: TestLab, ...flags: string[]): Promise<CliResult> {
  const before = hostNetworkFingerprint();
  const r = await labctlOk(['net', 'down', ...flags, t.file]);
  assert.equal(hostNetworkFingerprint(), before, `net down ${t.name}: the host's namespace is unchanged`);
  return r;
}

// ---------------------------------------------------------------- processes of a test

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  out: () => string;
}
const procs = new Set<Proc>();
const agents = new Set<UdpAgent>();

/**
 * A tracked child: afterEach SIGKILLs it and waits for its exit, so none outlives its test.
 * With `group`, it leads a process group of its own, and killGroup / afterEach kill the
 * whole group: the child and every command it started.
 */
function start(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; group?: boolean } = {}): Proc {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(options.env ? { env: options.env } : {}), detached: options.group ?? false });
  if (options.group) groups.add(child.pid!);
  let out = '';
  child.stdout?.on('data', (d) => (out += String(d)));
  child.stderr?.on('data', (d) => (out += String(d)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const p: Proc = { child, exited, out: () => out };
  procs.add(p);
  void exited.then(() => procs.delete(p));
  return p;
}

const startLabctl = (args: string[], options: { env?: NodeJS.ProcessEnv; group?: boolean } = {}) => start(process.execPath, [BIN, ...args], options);

async function killAndWait(p: Proc): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await p.exited; // reaped: a zombie would still look like a live lock holder
}

/** Process groups started with `group`, by their leader's pid (= the group id). */
const groups = new Set<number>();

/** SIGKILLs every process of the group `p` leads and waits until none is left (p reaped too). */
async function killGroup(p: Proc): Promise<void> {
  const pgid = p.child.pid!;
  killGroupId(pgid);
  await p.exited;
  await groupGone(pgid);
}

function killGroupId(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // no process of the group is left
  }
}

async function groupGone(pgid: number): Promise<void> {
  const members = () =>
    spawnSync('pgrep', ['-g', String(pgid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean);
  const t0 = Date.now();
  while (members().length && Date.now() - t0 < 10_000) await sleep(10);
  assert.deepEqual(members(), [], `every process of group ${pgid} is gone after SIGKILL`);
  groups.delete(pgid);
}

/** A pid that is certainly not running: a child that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const p = start('true', []);
  await p.exited;
  return p.child.pid!;
}

async function startAgent(netns: string, ports: number[]): Promise<UdpAgent> {
  const a = await UdpAgent.start(netns, ports);
  agents.add(a);
  return a;
}

/** Sends until the message arrives (the first packet may wait for ARP), up to `tries` times. */
async function sendUntilReceived(from: UdpAgent, localPort: number, to: UdpAgent, host: string, port: number, msg: string, tries = 4) {
  for (let i = 0; i < tries; i++) {
    from.send(localPort, host, port, msg);
    const got = await to.waitFor(msg, 700);
    if (got) return got;
  }
  return undefined;
}

// ---------------------------------------------------------------- hooks

let hostAtStart = '';

before(() => {
  if (!isRoot) return;
  hostAtStart = hostNetworkFingerprint();
});

afterEach(async () => {
  await Promise.all([...agents].map((a) => a.stop()));
  agents.clear();
  await Promise.all([...procs].map((p) => (groups.has(p.child.pid!) ? killGroup(p) : killAndWait(p))));
  // Groups whose leader has exited: what it started may still run.
  for (const pgid of groups) killGroupId(pgid);
  await Promise.all([...groups].map(groupGone));
  if (!isRoot) return;
  const labs = [...touched.values()];
  touched.clear();
  const problems: string[] = [];
  // Every process of this test is gone, so these lock files are stale at best.
  for (const l of labs) rmSync(lockPath(l.name), { force: true });
  for (const l of labs) {
    if (leftovers(l.name, l.prefix).length === 0) continue;
    const r = await labctl(['net', 'down', '--force', existsSync(statePath(l.name)) ? l.name : (l.file ?? l.name)]);
    if (r.exitCode !== 0) problems.push(`net down ${l.name} exited ${r.exitCode}: ${r.stderr.trim()}`);
  }
  for (const l of labs) {
    const left = leftovers(l.name, l.prefix);
    if (left.length === 0) continue;
    problems.push(`after net down, lab "${l.name}" left ${left.join(', ')}`);
    // Last resort: only this test's own prefixed namespaces and files.
    for (const ns of ownNetns(l.prefix)) execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    for (const p of [statePath(l.name), `${statePath(l.name)}.tmp`, lockPath(l.name), join(STATE_DIR, `.${l.name}.configure`)])
      rmSync(p, { recursive: true, force: true });
  }
  if (problems.length) throw new Error(`cleanup:\n  ${problems.join('\n  ')}`);
});

after(() => {
  if (!isRoot) return;
  assert.equal(hostNetworkFingerprint(), hostAtStart, "the host's own namespace is as it was before these tests");
  if (raceDir) rmSync(raceDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- 1. bad input

test('bad input: net up and validate exit 2 naming file, field and reason, and create nothing', { skip }, async () => {
  const bad = [
    { file: 'bad-field.yaml', name: 'lc1-badfield', expect: 'sites[0].nat.fixed-port: must be a number' },
    { file: 'bad-nat-type.yaml', name: 'lc1-badtype', expect: 'sites[0].nat.type: must be one of full-cone, restricted-cone, port-restricted-cone, symmetric' },
    {
      file: 'bad-ifname-clash.yaml',
      name: 'lc1-ifclash',
      expect: 'sites[0].nodes[1].name: the interface of a-nat towards printer-246 would be named "ve-printer-1107" in namespace ns-lc1-a-nat',
    },
    { file: 'bad-overlap.yaml', name: 'lc1-overlap', expect: 'sites[1].lan.subnet: 10.0.1.0/24 overlaps 10.0.1.0/24' },
  ];
  for (const b of bad) track(b.name, 'lc1-', fixture(b.file));
  track('lc1-good', 'lc1-', fixture('good.yaml'));
  const before = hostNetworkFingerprint();
  await Promise.all(
    bad.flatMap((b) =>
      [['net', 'up'], ['validate']].map(async (cmd) => {
        const path = fixture(b.file);
        const r = await labctl([...cmd, path]);
        const what = `labctl ${cmd.join(' ')} ${b.file}`;
        assert.equal(r.exitCode, 2, `${what} exits 2 (bad input); stderr: ${r.stderr}`);
        assert.ok(
          r.stderr.includes(`${path}: ${b.expect}`),
          `${what}: stderr names the file, the field path and the reason\n  want: ${path}: ${b.expect}\n  got:  ${r.stderr}`,
        );
        assert.equal(r.stdout, '', `${what} prints nothing on stdout`);
      }),
    ),
  );
  for (const b of bad) assertNothingOf({ name: b.name, prefix: 'lc1-' }, `after ${b.file}`);
  assert.deepEqual(existsSync(STATE_DIR) ? fs.readdirSync(STATE_DIR).filter((f) => f.startsWith('lc1-')) : [], [], 'no lc1- state or lock file');
  const good = await labctl(['validate', fixture('good.yaml')]);
  assert.equal(good.exitCode, 0, `validate of a good file exits 0; stderr: ${good.stderr}`);
  assert.match(good.stdout, /lab "lc1-good" is valid/);
  assertNothingOf({ name: 'lc1-good', prefix: 'lc1-' }, 'after validate (changes nothing)');
  assert.equal(hostNetworkFingerprint(), before, "the host's namespace is unchanged");
});

// ---------------------------------------------------------------- 2. transactional up

test('transactional up: a failing step names itself and rolls back everything of the lab', { skip }, async (t) => {
  const lab = useLab('rollback.yaml');
  const stubs = mkdtempSync(join(tmpdir(), 'labctl-lc2-'));
  try {
    // nft fails in the NAT namespaces; nsenter (which enters every namespace that gets NAT
    // rules or sysctls) fails there and in the internet's: both after the namespaces exist.
    for (const cmd of ['nft', 'nsenter']) {
      const dir = join(stubs, cmd);
      mkdirSync(dir);
      writeFileSync(join(dir, cmd), `#!/bin/sh\necho "stub ${cmd}: refusing to work (net-lifecycle test)" >&2\nexit 1\n`);
      chmodSync(join(dir, cmd), 0o755);
      const before = hostNetworkFingerprint();
      const r = await labctl(['net', 'up', lab.file], { env: { PATH: `${dir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` } });
      t.diagnostic(`with a failing ${cmd}: ${r.stderr.trim().replace(/\n/g, ' | ')}`);
      assert.equal(r.exitCode, 1, `net up with a failing ${cmd} exits 1; stderr: ${r.stderr}`);
      // The command as errors show it: the step's parts in one word, which may be shell-quoted.
      const step =
        cmd === 'nft'
          ? /NAT rules, sysctls in ns-lc2-[a-z0-9-]+: `nsenter --net=\/run\/netns\/ns-lc2-[a-z0-9-]+ -- '?sh \(ip -batch <batch of \d+ lines>; nft -f <ruleset of \d+ lines>; sysctl net\.ipv4\.ip_forward=1[^`]*\)'?` exited 1/
          : /sysctls in ns-lc2-[a-z0-9-]+: `nsenter --net=\/run\/netns\/ns-lc2-[a-z0-9-]+ -- '?sh \(ip -batch <batch of \d+ lines>; (nft -f <ruleset of \d+ lines>; )?sysctl net\.ipv4\.ip_forward=1[^`]*\)'?` exited 1/;
      assert.match(r.stderr, step, 'the message names the step that failed and its command');
      assert.match(r.stderr, new RegExp(`stub ${cmd}: refusing to work`), 'and what the command said');
      if (cmd === 'nft') assert.match(r.stderr, /labctl: nft \(the NAT ruleset\) failed/, 'and which part of it');
      assert.match(r.stderr, /rolled back: nothing of lab "lc2-rollback" is left/, 'and that it rolled back');
      assertNothingOf(lab, `after the failed up (${cmd})`);
      assert.equal(hostNetworkFingerprint(), before, "the host's namespace is unchanged");
    }
  } finally {
    rmSync(stubs, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- 3. crash recovery
//
// Each kill lands while a known step runs, and the test checks that it did: a stand-in for
// `ip` or `nft`, first on labctl's PATH, does part of that step's real work, says so (a
// file), and blocks. The test then SIGKILLs labctl's whole process group (labctl and every
// command it started, so that nothing goes on changing the lab after the "crash") and
// checks the host against what the step had done by then: namespaces, state file, NAT
// rulesets. A kill that lands before or after that point fails the test.

const REAL = { ip: commandPath('ip'), nft: commandPath('nft') };

function commandPath(name: string): string {
  if (!isRoot) return name;
  return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' }).trim();
}

interface StandIn {
  /** Scratch directory of one kill (killedWhileBlocked removes it). */
  dir: string;
  /** Directory of the stand-in command; first on PATH. */
  bin: string;
  /** Exists once the stand-in has done its share and blocks. */
  reached: string;
}

function standInDir(): StandIn {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-lc3-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  return { dir, bin, reached: join(dir, 'reached') };
}

function writeStandIn(bin: string, name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n# net-lifecycle stand-in for ${name}\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

/**
 * `ip`, except for `ip ARGS...` reading a batch from stdin (`ip -batch -`: the batch that
 * creates the lab's namespaces and veths; `ip -force -batch -`: the one that deletes them):
 * that runs the batch's first `lines` lines for real, then blocks.
 */
function ipBlockingBatch(args: string[], lines: number): StandIn {
  const d = standInDir();
  const match = args.map((a, i) => `[ "$${i + 1}" = ${a} ]`).join(' && ');
  writeStandIn(
    d.bin,
    'ip',
    [
      `if [ $# -eq ${args.length} ] && ${match}; then`,
      `  cat >'${d.dir}/batch'`,
      ...(lines > 0 ? [`  head -n ${lines} '${d.dir}/batch' | '${REAL.ip}' ${args.slice(0, -1).join(' ')} - || exit 1`] : []),
      `  : >'${d.reached}'`,
      '  exec sleep 300',
      'fi',
      `exec '${REAL.ip}' "$@"`,
    ].join('\n'),
  );
  return d;
}

/**
 * `nft`: the first `loaded` calls load their ruleset for real; every later one waits until
 * those have finished (so that exactly `loaded` rulesets are in place), then blocks.
 */
function nftBlockingAfter(loaded: number): StandIn {
  const d = standInDir();
  writeStandIn(
    d.bin,
    'nft',
    [
      // mkdir is atomic: each call takes the next free number (the lanes call nft at once)
      'n=0',
      `while ! mkdir '${d.dir}/nft.'$n 2>/dev/null; do n=$((n + 1)); done`,
      `if [ $n -lt ${loaded} ]; then '${REAL.nft}' "$@"; status=$?; : >'${d.dir}/nft.'$n/done; exit $status; fi`,
      'i=0',
      `while [ $i -lt ${loaded} ]; do`,
      `  while [ ! -e '${d.dir}/nft.'$i/done ]; do sleep 0.01; done`,
      '  i=$((i + 1))',
      'done',
      `: >'${d.reached}'`,
      'exec sleep 300',
    ].join('\n'),
  );
  return d;
}

/** What the lab had on the host when labctl was killed. */
interface AtKill {
  namespaces: number;
  /** The state file's status, or 'none'. */
  state: string;
  lock: boolean;
  /** NAT namespaces that hold labctl's ruleset. */
  natTables: number;
}

function natTables(t: TestLab): number {
  const present = new Set(ownNetns(t.prefix));
  return t.lab.nats.filter(
    (n) => present.has(n.netns) && spawnSync('ip', ['netns', 'exec', n.netns, 'nft', 'list', 'table', 'ip', 'labctl'], { stdio: 'ignore' }).status === 0,
  ).length;
}

/**
 * Runs `labctl net CMD` with the stand-in first on PATH, waits until the stand-in blocks
 * (failing when labctl ends first), SIGKILLs labctl's process group and reports what is there.
 */
async function killedWhileBlocked(t: TestLab, cmd: 'up' | 'down', standIn: StandIn, step: string): Promise<AtKill> {
  try {
    const env = { ...process.env, PATH: `${standIn.bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
    const p = startLabctl(['net', cmd, t.file], { env, group: true });
    const t0 = Date.now();
    while (!existsSync(standIn.reached) && p.child.exitCode === null && Date.now() - t0 < 60_000) await sleep(5);
    const reached = existsSync(standIn.reached);
    const ended = p.child.exitCode;
    await killGroup(p);
    assert.ok(reached, `net ${cmd} never got to ${step} (${ended === null ? 'still running after 60 s' : `it exited ${ended}`}); output: ${p.out()}`);
    assert.equal(p.child.signalCode, 'SIGKILL', `net ${cmd} was killed, not finished`);
    return {
      namespaces: ownNetns(t.prefix).length,
      state: existsSync(statePath(t.name)) ? readStateFile(t.name).status : 'none',
      lock: existsSync(lockPath(t.name)),
      natTables: natTables(t),
    };
  } finally {
    rmSync(standIn.dir, { recursive: true, force: true });
  }
}

interface KillPoint {
  label: string;
  standIn: () => StandIn;
  /** What the host holds when the kill landed at this point, and nowhere else. */
  expect: AtKill;
}

/**
 * Points in `net up`, each while a known step runs. (Not between taking the lock and writing
 * the state file: no command runs there for a stand-in to hold, and a kill there leaves only
 * a stale lock, which the lock tests below cover.)
 */
function upKillPoints(t: TestLab): KillPoint[] {
  const all = t.namespaces.length;
  const half = Math.floor(all / 2);
  const nats = t.lab.nats.length;
  assert.ok(half > 0 && nats > 3, 'fixture: a lab large enough to be half created and part configured');
  return [
    {
      // The batch that creates namespaces and veths is labctl's first command: the state file is written, nothing made yet.
      label: 'state file written, no namespace yet',
      standIn: () => ipBlockingBatch(['-batch', '-'], 0),
      expect: { namespaces: 0, state: 'creating', lock: true, natTables: 0 },
    },
    {
      label: `${half} of ${all} namespaces created`,
      standIn: () => ipBlockingBatch(['-batch', '-'], half),
      expect: { namespaces: half, state: 'creating', lock: true, natTables: 0 },
    },
    {
      label: `every namespace made, 3 of ${nats} NAT rulesets loaded`,
      standIn: () => nftBlockingAfter(3),
      expect: { namespaces: all, state: 'creating', lock: true, natTables: 3 },
    },
  ];
}

test('crash recovery: net down after `net up` was SIGKILLed in the middle of its work leaves nothing', { skip }, async (t) => {
  const lab = useLab('ten-sites.yaml');
  const before = hostNetworkFingerprint();
  for (const k of upKillPoints(lab)) {
    const at = await killedWhileBlocked(lab, 'up', k.standIn(), k.label);
    t.diagnostic(`net up killed with ${k.label}: ${JSON.stringify(at)}`);
    assert.deepEqual(at, k.expect, `the kill landed with ${k.label}`);
    const r = await labctl(['net', 'down', lab.file]);
    assert.equal(r.exitCode, 0, `net down after a kill with ${k.label} exits 0; stderr: ${r.stderr}`);
    assertNothingOf(lab, `net down after a kill with ${k.label}`);
    assert.equal(hostNetworkFingerprint(), before, `kill with ${k.label}: the host's namespace is unchanged`);
  }
  // The lab still comes up and goes down cleanly.
  const r = await upOk(lab);
  assert.match(r.stdout, /lab "lc3-ten" is up: 21 namespaces/);
  assertLabUp(lab);
  await downOk(lab);
  assertNothingOf(lab, 'after the final down');
});

test('crash recovery: `net up` right after a SIGKILLed `net up` (or `net down`) finishes the job', { skip }, async (t) => {
  const lab = useLab('ten-sites.yaml');
  const k = upKillPoints(lab).at(-1)!;
  const at = await killedWhileBlocked(lab, 'up', k.standIn(), k.label);
  t.diagnostic(`net up killed with ${k.label}: ${JSON.stringify(at)}`);
  assert.deepEqual(at, k.expect, `the kill landed with ${k.label}`);
  const r = await upOk(lab);
  assert.match(r.stdout, /lab "lc3-ten" is up: 21 namespaces/, `net up after a kill with ${k.label} brings the whole lab up`);
  assertLabUp(lab);
  // A `net down` killed half-way: the state file still records the lab, so the next
  // `net up` knows what to clear.
  const all = lab.namespaces.length;
  const half = Math.floor(all / 2);
  const down = await killedWhileBlocked(lab, 'down', ipBlockingBatch(['-force', '-batch', '-'], half), `${half} of ${all} namespaces deleted`);
  t.diagnostic(`net down killed with ${half} of ${all} namespaces deleted: ${JSON.stringify(down)}`);
  // Half the namespaces are gone; the state file still says up; each NAT namespace left keeps its ruleset.
  const natsLeft = lab.lab.nats.filter((n) => ownNetns(lab.prefix).includes(n.netns)).length;
  assert.deepEqual(down, { namespaces: all - half, state: 'up', lock: true, natTables: natsLeft }, 'the kill landed half-way through deleting the namespaces');
  await upOk(lab);
  assertLabUp(lab);
  await downOk(lab);
  assertNothingOf(lab, 'after down');
});

// ---------------------------------------------------------------- 4. the lab lock

test("lock: a live holder makes net up fail naming it; a dead holder's lock is taken over", { skip }, async () => {
  const lab = useLab('lock.yaml');
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  const holder = start('sleep', ['30']);
  writeFileSync(lockPath(lab.name), String(holder.child.pid));
  for (const cmd of ['up', 'down']) {
    const r = await labctl(['net', cmd, lab.file]);
    assert.equal(r.exitCode, 1, `net ${cmd} with a live lock holder exits 1; stderr: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`lab "lc4-lock" is being changed by another labctl \\(pid ${holder.child.pid}\\)`), `net ${cmd} names the other pid`);
  }
  assert.deepEqual(ownNetns(lab.prefix), [], 'nothing was created');
  assert.equal(existsSync(statePath(lab.name)), false, 'no state file');
  assert.equal(readFileSync(lockPath(lab.name), 'utf8'), String(holder.child.pid), "the holder's lock is left alone");
  // The holder dies (a crash): its lock is stale and the next labctl takes it over.
  await killAndWait(holder);
  const r = await upOk(lab);
  assert.match(r.stdout, /lab "lc4-lock" is up: 6 namespaces/);
  assertLabUp(lab);
  assert.equal(existsSync(lockPath(lab.name)), false, 'the lock is released after up');
  // Garbage in a lock file (no pid at all) is no holder either.
  writeFileSync(lockPath(lab.name), 'not a pid\n');
  await downOk(lab);
  assertNothingOf(lab, 'after down over a garbage lock');
});

test('lock: two concurrent `net up` of one lab end in one consistent lab', { skip }, async (t) => {
  const lab = useLab('lock.yaml');
  for (const round of ['from nothing', 'over a stale lock']) {
    if (round === 'over a stale lock') {
      mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
      writeFileSync(lockPath(lab.name), String(await deadPid()));
    }
    const before = hostNetworkFingerprint();
    const results = await Promise.all([labctl(['net', 'up', lab.file]), labctl(['net', 'up', lab.file])]);
    t.diagnostic(`${round}: ${results.map((r) => `exit ${r.exitCode}: ${(r.stdout + r.stderr).trim()}`).join(' / ')}`);
    for (const r of results) {
      if (r.exitCode === 0) assert.match(r.stdout, /lab "lc4-lock" is up: 6 namespaces|lab "lc4-lock" is already up; nothing changed/);
      else {
        assert.equal(r.exitCode, 1, `${round}: a refused up exits 1; stderr: ${r.stderr}`);
        assert.match(r.stderr, /lab "lc4-lock" is being changed by another labctl \(pid \d+\)/, `${round}: the only failure allowed is the lock's`);
      }
    }
    assert.equal(results.filter((r) => /is up: 6 namespaces/.test(r.stdout)).length, 1, `${round}: exactly one of them created the lab`);
    assertLabUp(lab);
    assert.equal(existsSync(lockPath(lab.name)), false, `${round}: no lock is left`);
    assert.equal(hostNetworkFingerprint(), before, "the host's namespace is unchanged");
    await downOk(lab);
    assertNothingOf(lab, `${round}: after down`);
  }
});

// withLabLock itself, in this process against a scratch state directory, with "the
// other labctl" acting at the one moment that matters (between reading the lock and
// removing it). These pin down races that two real processes hit only rarely.
let raceDir: string | undefined;
type StateModule = typeof import('../../src/host/state.js');

/** host/state.ts with the run dir ($LABCTL_RUN_DIR, read at each call) on a scratch dir until the test ends. */
async function scratchState(t: TestContext): Promise<StateModule> {
  raceDir ??= mkdtempSync(join(tmpdir(), 'labctl-lc4-race-'));
  const saved = process.env.LABCTL_RUN_DIR;
  process.env.LABCTL_RUN_DIR = raceDir;
  t.after(() => {
    if (saved === undefined) delete process.env.LABCTL_RUN_DIR;
    else process.env.LABCTL_RUN_DIR = saved;
  });
  return import('../../src/host/state.js');
}

/** Runs fn with `hook` called once, just before the first of `calls` that touches `path`. */
async function withFsHook<T>(
  calls: ('readFileSync' | 'openSync' | 'unlinkSync' | 'renameSync')[],
  path: string,
  hook: () => void,
  fn: () => Promise<T>,
): Promise<{ result: T; fired: boolean }> {
  const mutable = fs as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = new Map(calls.map((c) => [c, mutable[c]!]));
  let fired = false;
  for (const [name, original] of originals) {
    mutable[name] = function (this: unknown, ...args: unknown[]) {
      const reads = name !== 'openSync' || args[1] === undefined || args[1] === 'r';
      if (!fired && String(args[0]) === path && reads) {
        fired = true;
        restore(); // the hook itself uses the real calls
        hook();
      }
      return original.apply(this, args);
    };
  }
  function restore() {
    for (const [name, original] of originals) mutable[name] = original;
    syncBuiltinESMExports();
  }
  syncBuiltinESMExports();
  try {
    return { result: await fn(), fired };
  } finally {
    restore();
  }
}

test('lock (src bug): a stale lock that another labctl takes over first is not stolen from it', { skip }, async (t) => {
  const state = await scratchState(t);
  const lock = join(raceDir!, 'lc4-race.lock');
  const other = start('sleep', ['30']); // the other labctl, alive
  writeFileSync(lock, String(await deadPid()));
  let ran = false;
  // Both found the same stale lock; the other one removes it and takes the lock just
  // before this one removes "the stale lock" too.
  const { result, fired } = await withFsHook(
    ['unlinkSync', 'renameSync'],
    lock,
    () => {
      unlinkSync(lock);
      writeFileSync(lock, String(other.child.pid), { flag: 'wx' });
    },
    async () => {
      try {
        await state.withLabLock('lc4-race', async () => {
          ran = true;
        });
        return 'acquired';
      } catch (e) {
        return String(e);
      }
    },
  );
  assert.ok(fired, 'test setup: withLabLock removed the stale lock');
  assert.equal(ran, false, `the lock was held by live pid ${other.child.pid}, yet withLabLock ran its work (${result})`);
  assert.match(result, new RegExp(`being changed by another labctl \\(pid ${other.child.pid}\\)`));
  assert.equal(existsSync(lock) ? readFileSync(lock, 'utf8') : '(gone)', String(other.child.pid), "the other labctl's lock is intact");
  rmSync(lock, { force: true });
});

test('lock (src bug): a lock released between a failed create and reading it is simply taken', { skip }, async (t) => {
  const state = await scratchState(t);
  const lock = join(raceDir!, 'lc4-release.lock');
  const other = start('sleep', ['30']);
  writeFileSync(lock, String(other.child.pid));
  // The holder finishes (removes its lock) right after this one found the lock taken.
  const { result, fired } = await withFsHook(
    ['readFileSync', 'openSync'],
    lock,
    () => unlinkSync(lock),
    async () => {
      try {
        return await state.withLabLock('lc4-release', async () => 'ran');
      } catch (e) {
        return String(e);
      }
    },
  );
  assert.ok(fired, 'test setup: withLabLock read the lock file');
  assert.equal(result, 'ran', 'the lock was free, so withLabLock takes it and runs');
  assert.equal(existsSync(lock), false, 'and releases it');
});

// ---------------------------------------------------------------- 5. two labs at once

test('two labs at once: same site and node names under different prefixes; a name clash with a running lab is refused', { skip }, async () => {
  const a = useLab('two-a.yaml');
  const b = useLab('two-b.yaml');
  const c = useLab('two-c.yaml');
  assert.deepEqual(c.namespaces, a.namespaces, "fixture: lab C would use lab A's namespaces");
  const before = hostNetworkFingerprint();
  const [ra, rb] = await Promise.all([labctl(['net', 'up', a.file]), labctl(['net', 'up', b.file])]);
  assert.equal(ra.exitCode, 0, ra.stderr);
  assert.equal(rb.exitCode, 0, rb.stderr);
  assert.equal(hostNetworkFingerprint(), before, "the host's namespace is unchanged");
  assertLabUp(a);
  assertLabUp(b);
  const stateA = readFileSync(statePath(a.name), 'utf8');
  // Lab C: another name, A's prefix and names.
  const rc = await labctl(['net', 'up', c.file]);
  assert.equal(rc.exitCode, 1, `net up of lab C exits 1; stderr: ${rc.stderr}`);
  assert.match(rc.stderr, /cannot bring lab "lc5-c" up/);
  assert.match(rc.stderr, /namespace ns-lc5a-[a-z-]+ belongs to lab "lc5-a"/, 'the message names lab A');
  assert.equal(existsSync(statePath(c.name)), false, 'lab C has no state file');
  assert.equal(existsSync(lockPath(c.name)), false, 'nor a lock');
  assert.equal(readFileSync(statePath(a.name), 'utf8'), stateA, "lab A's state is unchanged");
  assertLabUp(a);
  // Not even --force makes lab C's down touch lab A's namespaces.
  const dc = await labctl(['net', 'down', '--force', c.file]);
  assert.equal(dc.exitCode, 0, dc.stderr);
  assertLabUp(a);
  // Down of B leaves A intact, and the other way round.
  const db = await downOk(b);
  assert.match(db.stdout, /lab "lc5-b" is down: removed 6 namespaces/);
  assertNothingOf(b, 'after down of B');
  assertLabUp(a);
  await downOk(a);
  assertNothingOf(a, 'after down of A');
});

// ---------------------------------------------------------------- 6. strays

test("net down without a state file leaves namespaces with the lab's names alone unless --force", { skip }, async () => {
  const lab = useLab('strays.yaml');
  const strays = ['ns-lc6-inet', 'ns-lc6-x'];
  for (const ns of strays) assert.ok(lab.namespaces.includes(ns), `fixture: the lab would use ${ns}`);
  for (const ns of strays) execFileSync('ip', ['netns', 'add', ns]);
  const r = await labctl(['net', 'down', lab.file]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(
    r.stdout,
    /lab "lc6-strays" is not up \(no state file\); namespaces with its names exist but are not recorded as its own: ns-lc6-x, ns-lc6-inet\. Not touching them/,
  );
  assert.deepEqual(ownNetns(lab.prefix), strays, 'the strays are still there');
  // `net up` refuses to adopt them, and creates nothing.
  const up = await labctl(['net', 'up', lab.file]);
  assert.equal(up.exitCode, 1, up.stderr);
  assert.match(up.stderr, /namespace ns-lc6-x already exists and is not this lab's/);
  assert.deepEqual(ownNetns(lab.prefix), strays, 'net up created nothing');
  assert.equal(existsSync(statePath(lab.name)), false, 'and wrote no state file');
  const force = await downOk(lab, '--force');
  assert.match(force.stdout, /removed 2 namespaces/);
  assertNothingOf(lab, 'after down --force');
});

test('net down of a lab whose state file records machines that no longer run (a crash) removes it', { skip }, async () => {
  // `net down` refuses only while recorded machines run (machines-direct tests that): these
  // are recorded as `labctl up` records them, but no nspawn of theirs runs.
  const lab = useLab('repair.yaml');
  await upOk(lab);
  const node = lab.lab.nodes[0]!;
  const pid = await deadPid();
  const state = readStateFile(lab.name);
  writeFileSync(
    statePath(lab.name),
    JSON.stringify({
      ...state,
      machines: [
        {
          name: `${lab.prefix}${node.name}`,
          netns: node.netns,
          image: 'bookworm',
          directory: '/nonexistent',
          backend: 'direct',
          nspawnPid: pid,
          leaderPid: pid,
        },
      ],
    }),
  );
  const r = await downOk(lab);
  assert.match(r.stdout, new RegExp(`lab "${lab.name}" is down: removed ${lab.namespaces.length} namespaces`));
  assertNothingOf(lab, 'after net down');
});

// ---------------------------------------------------------------- 7. the host namespace

test("the host's namespace never changes and never sees an interface of the lab", { skip }, async () => {
  const lab = useLab('host.yaml');
  const labIfnames = new Set([...lab.ifnames.values()].flat());
  const hostIfnames = () =>
    execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '');
  const clash = hostIfnames().filter((n) => labIfnames.has(n));
  assert.deepEqual(clash, [], "test setup: the host has no interface named like the lab's");
  // Every link, address and route event in the host's namespace while the lab comes and goes.
  const monitor = start('ip', ['-o', 'monitor', 'link', 'address', 'route']);
  await sleep(200);
  const before = hostNetworkFingerprint();
  await upOk(lab);
  assertLabUp(lab);
  assert.deepEqual(
    hostIfnames().filter((n) => labIfnames.has(n)),
    [],
    'while the lab is up, the host lists none of its interfaces',
  );
  assert.equal(hostNetworkFingerprint(), before);
  await downOk(lab);
  assertNothingOf(lab, 'after down');
  await sleep(200);
  await killAndWait(monitor);
  const seen = monitor
    .out()
    .split('\n')
    .filter((l) => [...labIfnames].some((n) => new RegExp(`\\b${n}\\b`).test(l)));
  assert.deepEqual(seen, [], 'ip monitor in the host saw no interface of the lab come or go');
  assert.equal(hostNetworkFingerprint(), before);
});

// ---------------------------------------------------------------- 8. bridged LAN and CGN

test("bridged LAN and carrier-grade NAT: a home node reaches an internet node from the CGN's outside address", { skip }, async (t) => {
  const lab = useLab('cgn.yaml');
  await upOk(lab);
  assertLabUp(lab);
  const cgn = lab.lab.nats.find((n) => n.name === 'cgn')!;
  const home = lab.lab.nats.find((n) => n.name === 'home-nat')!;
  const node = (name: string) => lab.lab.nodes.find((n) => n.name === name)!;
  const [server, laptop, desk] = [node('server'), node('laptop'), node('desk')];
  assert.equal(home.outside.upstream, 'cgn', 'fixture: the home NAT sits behind the CGN');
  assert.ok(home.lan.bridged && home.lan.ifname === 'br-lan', 'fixture: the home LAN is a bridge');
  assert.match(
    execFileSync('ip', ['-n', home.netns, '-o', 'link', 'show', 'master', 'br-lan'], { encoding: 'utf8' }),
    /ve-laptop-lan[\s\S]*ve-desk-lan|ve-desk-lan[\s\S]*ve-laptop-lan/,
    'both home nodes are ports of br-lan',
  );

  let hasPing = true;
  try {
    execFileSync('sh', ['-c', 'command -v ping'], { stdio: 'ignore' });
  } catch {
    hasPing = false;
    t.diagnostic('ping is not installed: reachability is checked with UDP only');
  }
  if (hasPing) {
    execFileSync('ip', ['netns', 'exec', laptop.netns, 'ping', '-c1', '-W1', server.link.address]);
    execFileSync('ip', ['netns', 'exec', laptop.netns, 'ping', '-c1', '-W1', desk.link.address]);
  }

  const serverAgent = await startAgent(server.netns, [4000]);
  const laptopAgent = await startAgent(laptop.netns, [5000]);
  const deskAgent = await startAgent(desk.netns, [6000]);
  // Through both NATs: the server sees the CGN's outside address, not the home NAT's.
  const got = await sendUntilReceived(laptopAgent, 5000, serverAgent, server.link.address, 4000, 'laptop-to-server');
  assert.ok(got, `the server receives the laptop's datagram (server got ${JSON.stringify(serverAgent.received)})`);
  assert.equal(got.from, cgn.outside.address, `source is the CGN's outside address ${cgn.outside.address} (home NAT's outside is ${home.outside.address})`);
  serverAgent.send(4000, got.from, got.fromPort, 'server-reply');
  const reply = await laptopAgent.waitFor('server-reply', 2000);
  assert.ok(reply, 'the reply finds its way back through both NATs');
  assert.equal(reply.from, server.link.address);
  assert.equal(reply.fromPort, 4000);
  // On the bridged LAN, node to node, no NAT in between.
  const lan = await sendUntilReceived(laptopAgent, 5000, deskAgent, desk.link.address, 6000, 'laptop-to-desk');
  assert.ok(lan, "desk receives the laptop's datagram over br-lan");
  assert.equal(lan.from, laptop.link.address);
  deskAgent.send(6000, laptop.link.address, 5000, 'desk-to-laptop');
  assert.ok(await laptopAgent.waitFor('desk-to-laptop', 2000), "and the laptop the desk's");
  await Promise.all([serverAgent.stop(), laptopAgent.stop(), deskAgent.stop()]);
  await downOk(lab);
  assertNothingOf(lab, 'after down');
});

// ---------------------------------------------------------------- idempotent up repairs

test('net up (src bug): a lab that is up but lost a NAT router\'s ruleset is not "already up"', { skip }, async () => {
  const lab = useLab('repair.yaml');
  await upOk(lab);
  const nat = lab.lab.nats[0]!;
  execFileSync('ip', ['netns', 'exec', nat.netns, 'nft', 'delete', 'table', 'ip', 'labctl']);
  const r = await upOk(lab);
  assert.doesNotMatch(r.stdout, /already up; nothing changed/, 'net up notices the missing NAT table (looksUp() promises to check it)');
  assertLabUp(lab);
  await downOk(lab);
  assertNothingOf(lab, 'after down');
});

test('net up of an edited lab file while the lab is up is refused and changes nothing (even a namespace added)', { skip }, async () => {
  const lab = useLab('repair.yaml');
  await upOk(lab);
  const before = ownNetns(lab.prefix);
  const edited = join(mkdtempSync(join(tmpdir(), 'labctl-edited-')), 'repair.yaml');
  // The same lab with one more node: its plan differs, and the new namespace does not exist.
  writeFileSync(edited, readFileSync(lab.file, 'utf8').replace('nodes: [{ name: a1 }]', 'nodes: [{ name: a1 }, { name: a2 }]'));
  const r = await labctl(['net', 'up', edited]);
  assert.equal(r.exitCode, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /lab "lc9-repair" is up from a different definition .*run `labctl net down`/);
  assert.deepEqual(ownNetns(lab.prefix), before, 'the namespaces of the lab that is up are untouched');
  assertLabUp(lab);
  await downOk(lab);
  assertNothingOf(lab, 'after down');
  rmSync(dirname(edited), { recursive: true, force: true });
});
