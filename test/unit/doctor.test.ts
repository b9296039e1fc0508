// labctl doctor's decisions, from readings made up here (no root, nothing read from the
// host): what passes, what fails with which fix, what only warns, and the exit code, which
// only a failed error-severity check (the default lab needs it) makes 1.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  CACHE_BYTES,
  decideBackend,
  decideBrNetfilter,
  decideCgroup,
  decideInotify,
  decideKernelFeature,
  decideKeyring,
  decideRoot,
  decideSpace,
  decideTool,
  doctorChecks,
  doctorExitCode,
  IMAGE_BYTES,
  KERNEL_FEATURES,
  NETNS_FEATURE,
  TOOLS,
  toolSeverity,
  versionLine,
  type DoctorReadings,
  type KernelFeature,
} from '../../src/host/doctor.js';
import { parseModuleList } from '../../src/host/doctor-read.js';
import { NFT, nftRejects } from '../support/nft-check.js';
import { formatDoctor, statusWord } from '../../src/report/doctor.js';

const feature = (module: string): KernelFeature => {
  const f = KERNEL_FEATURES.find((k) => k.module === module);
  assert.ok(f, module);
  return f;
};
const tool = (name: string) => {
  const t = TOOLS.find((x) => x.tool === name);
  assert.ok(t, name);
  return t;
};

describe('root', () => {
  it('passes as uid 0 and fails otherwise, with a fix', () => {
    assert.equal(decideRoot(0).ok, true);
    const c = decideRoot(1000);
    assert.equal(c.ok, false);
    assert.equal(c.severity, 'error');
    assert.match(c.detail, /uid 1000/);
    assert.match(c.fix!, /sudo/);
  });
});

describe('kernel features', () => {
  it('loaded, built in or installed as a module: ok, without trying', () => {
    const veth = feature('veth');
    assert.match(decideKernelFeature(veth, { loaded: true, available: 'unknown' }).detail, /loaded/);
    assert.match(decideKernelFeature(veth, { loaded: false, available: 'builtin' }).detail, /built into the kernel/);
    const mod = decideKernelFeature(veth, { loaded: false, available: 'module' });
    assert.equal(mod.ok, true);
    assert.match(mod.detail, /installed; the kernel loads it when labctl first uses it/);
    assert.equal(mod.fix, null);
  });

  it('a try that worked passes; one that failed is missing, with what the command said and the fix', () => {
    const netem = feature('sch_netem');
    const command = 'tc qdisc add dev lo root netem delay 1ms';
    assert.equal(decideKernelFeature(netem, { loaded: false, available: 'unknown', probe: { ran: true, ok: true, command, output: '' } }).ok, true);
    const c = decideKernelFeature(netem, {
      loaded: false,
      available: 'unknown',
      probe: { ran: true, ok: false, command, output: 'Error: Specified qdisc kind is unknown.\n' },
    });
    assert.equal(c.ok, false);
    assert.equal(c.severity, 'warning', 'netem only matters for link impairments');
    assert.match(c.detail, /^missing .*tc qdisc add dev lo root netem delay 1ms failed: Error: Specified qdisc kind is unknown\./);
    assert.match(c.detail, /link impairments/);
    assert.match(c.fix!, /stock distribution kernel has it \(module sch_netem, package linux-modules-extra on Ubuntu\)/);
  });

  it('a try that could not run says so, and is not taken for a missing feature', () => {
    const c = decideKernelFeature(feature('veth'), {
      loaded: false,
      available: 'unknown',
      probe: { ran: false, ok: false, command: 'ip link add ...', output: 'no throwaway network namespace could be made' },
    });
    assert.equal(c.ok, false);
    assert.match(c.detail, /^could not be tried/);
  });

  it('module lists that do not name it: missing; no lists at all: unknown, and failed', () => {
    const absent = decideKernelFeature(feature('nf_tables'), { loaded: false, available: 'absent' });
    assert.equal(absent.ok, false);
    assert.equal(absent.severity, 'error');
    assert.match(absent.detail, /neither loaded, built in nor installed/);
    const unknown = decideKernelFeature(feature('btrfs'), { loaded: false, available: 'unknown' });
    assert.equal(unknown.ok, false);
    assert.match(unknown.detail, /no module lists/);
  });

  it('what the default lab needs is an error; what only some labs use (bridges, link shaping, hashed, sequential ports, quotas) only warns', () => {
    const severities = Object.fromEntries([NETNS_FEATURE, ...KERNEL_FEATURES].map((f) => [f.module ?? f.check, f.severity]));
    assert.deepEqual(severities, {
      'kernel: network namespaces': 'error',
      veth: 'error',
      nf_tables: 'error',
      nf_conntrack: 'error',
      nft_ct: 'error',
      nft_hash: 'warning',
      nft_numgen: 'warning',
      nft_connlimit: 'warning',
      btrfs: 'error',
      loop: 'error',
      bridge: 'warning',
      sch_tbf: 'warning',
      sch_netem: 'warning',
    });
  });

  it('module lists: names from modules.builtin and modules.dep, compressed or not, dashes as underscores', () => {
    const builtin = parseModuleList('kernel/drivers/block/loop.ko\nkernel/net/bridge/bridge.ko\n');
    assert.deepEqual([...builtin].sort(), ['bridge', 'loop']);
    const dep = parseModuleList(
      'kernel/net/sched/sch_netem.ko.zst:\nkernel/drivers/net/veth.ko.xz: kernel/net/core/x.ko.xz\nkernel/fs/btrfs/btrfs.ko: kernel/lib/raid6/raid6_pq.ko\nkernel/net/nf-tables.ko.gz:\n',
    );
    assert.deepEqual([...dep].sort(), ['btrfs', 'nf_tables', 'sch_netem', 'veth']);
  });
});

describe('kernel feature probes', () => {
  // A probe nft cannot parse would report a feature missing on every kernel without module
  // lists (nf_conntrack's once named its chain "fwd", a keyword): nft -c is the judge.
  const skip = !existsSync(NFT) || process.getuid?.() !== 0 ? 'needs nft and root (nft -c in a throwaway network namespace)' : false;
  it('every nft probe ruleset parses', { skip }, async () => {
    const rulesets = [NETNS_FEATURE, ...KERNEL_FEATURES]
      .filter((f) => f.probe?.argv[0] === 'nft' && f.probe.input)
      .map((f) => ({ label: f.check, text: f.probe!.input! }));
    assert.ok(rulesets.length >= 6, `${rulesets.length} nft probes`);
    assert.deepEqual(await nftRejects(rulesets), []);
  });
});

describe('br_netfilter', () => {
  it('not loaded, or loaded with per-namespace switches: fine; loaded with global switches: a warning with a fix', () => {
    assert.equal(decideBrNetfilter({ loaded: false, perNamespace: undefined, values: {} }).ok, true);
    const per = decideBrNetfilter({ loaded: true, perNamespace: true, values: { 'net.bridge.bridge-nf-call-iptables': '1' } });
    assert.equal(per.ok, true);
    assert.match(per.detail, /bridge-nf-call-iptables=1/);
    const global = decideBrNetfilter({ loaded: true, perNamespace: false, values: {} });
    assert.equal(global.ok, false);
    assert.equal(global.severity, 'warning');
    assert.match(global.fix!, /5\.3|modprobe -r br_netfilter/);
  });
});

describe('tools', () => {
  it('found: its path and version line; missing: the Debian package that provides it', () => {
    const ip = decideTool(tool('ip'), { path: '/usr/sbin/ip', version: 'ip utility, iproute2-6.1.0' });
    assert.equal(ip.ok, true);
    assert.equal(ip.detail, '/usr/sbin/ip: ip utility, iproute2-6.1.0');
    const nspawn = decideTool(tool('systemd-nspawn'), {});
    assert.equal(nspawn.ok, false);
    assert.equal(nspawn.severity, 'error');
    assert.equal(nspawn.fix, 'apt-get install systemd-container');
    const tcpdump = decideTool(tool('tcpdump'), {});
    assert.equal(tcpdump.severity, 'warning');
    assert.equal(tcpdump.fix, 'apt-get install tcpdump');
    assert.equal(decideTool(tool('dot'), {}).fix, 'apt-get install graphviz');
  });

  it('machinectl is needed only where the systemd backend applies', () => {
    assert.equal(toolSeverity(tool('machinectl'), 'systemd'), 'error');
    assert.equal(toolSeverity(tool('machinectl'), 'direct'), 'warning');
    assert.equal(toolSeverity(tool('nft'), 'direct'), 'error');
  });

  it('the version is the first line printed, on stdout or stderr', () => {
    assert.equal(versionLine('\n  nftables v1.0.6 (Lester Gooch #5)\nmore\n'), 'nftables v1.0.6 (Lester Gooch #5)');
    assert.equal(versionLine(''), undefined);
  });
});

describe('keyrings', () => {
  const base = {
    recipe: 'noble',
    file: '/x/images/noble.yaml',
    keyring: '/usr/share/keyrings/ubuntu-archive-keyring.gpg',
    provider: 'The package ubuntu-keyring provides it',
  };
  it('present: ok; missing: the recipe, the file, and what provides it on this host', () => {
    assert.equal(decideKeyring({ ...base, exists: true, neededByDefaultLab: false }).ok, true);
    const c = decideKeyring({ ...base, exists: false, neededByDefaultLab: false });
    assert.equal(c.ok, false);
    assert.equal(c.severity, 'warning', 'a recipe the default lab does not need only warns');
    assert.match(c.detail, /labctl image build noble/);
    assert.match(
      c.fix!,
      /^The package ubuntu-keyring provides it\. Put the keyring at \/usr\/share\/keyrings\/ubuntu-archive-keyring\.gpg, or set keyring: in \/x\/images\/noble\.yaml/,
    );
  });

  it("the default lab's unbuilt image needs its keyring: an error", () => {
    const c = decideKeyring({ ...base, recipe: 'bookworm', exists: false, neededByDefaultLab: true });
    assert.equal(c.severity, 'error');
    assert.match(c.detail, /not built yet/);
  });

  it('a recipe that cannot be read is reported, not thrown', () => {
    const c = decideKeyring({ ...base, exists: false, neededByDefaultLab: false, error: 'suite: is required' });
    assert.equal(c.ok, false);
    assert.match(c.detail, /suite: is required/);
  });
});

describe('backend and cgroups', () => {
  it('says which backend applies and why; never fails', () => {
    const systemd = decideBackend({ pid1: 'systemd', systemdIsPid1: true, chosen: 'systemd' });
    assert.match(systemd.detail, /^systemd:/);
    const noBus = decideBackend({ pid1: 'systemd', systemdIsPid1: true, chosen: 'direct' });
    assert.match(noBus.detail, /^direct: systemd is PID 1 but its system bus did not answer/);
    const other = decideBackend({ pid1: 'tini', systemdIsPid1: false, chosen: 'direct' });
    assert.match(other.detail, /^direct: PID 1 is tini/);
    for (const c of [systemd, noBus, other]) assert.deepEqual([c.ok, c.severity], [true, 'info']);
  });

  it('cgroup v1, v2 and hybrid all work; none fails', () => {
    for (const v of ['v2', 'hybrid', 'v1'] as const) assert.equal(decideCgroup(v).ok, true, v);
    const none = decideCgroup('none');
    assert.equal(none.ok, false);
    assert.match(none.fix!, /mount -t cgroup2/);
  });
});

describe('inotify', () => {
  it("enough: the numbers; short: limits.ts's message split into what is short and the command that raises it", () => {
    const ok = decideInotify({ label: 'the default lab', machines: 4, max: 128, used: 10, perMachine: 3, shortfall: undefined }, 'error');
    assert.equal(ok.ok, true);
    assert.match(ok.detail, /4 machines need about 12 inotify instances; fs\.inotify\.max_user_instances is 128, 10 in use/);
    const shortfall =
      'booting 64 machines needs about 192 inotify instances, but fs.inotify.max_user_instances is 128 and 0 are in use; systemd in a machine fails with "Too many open files" past that. Raise the limit first (labctl does not change host sysctls), e.g.\n  sysctl -w fs.inotify.max_user_instances=256';
    const short = decideInotify({ label: '64 machines', machines: 64, max: 128, used: 0, perMachine: 3, shortfall }, 'warning');
    assert.equal(short.ok, false);
    assert.equal(short.severity, 'warning');
    assert.doesNotMatch(short.detail, /Raise the limit/);
    assert.match(short.fix!, /^sysctl -w fs\.inotify\.max_user_instances=256 /);
  });
});

describe('free space', () => {
  const first = IMAGE_BYTES + CACHE_BYTES;
  const at = (freeBytes: number, defaultImageBuilt: boolean) => decideSpace({ dataDir: '/var/lib/labctl', measured: '/var/lib', freeBytes, defaultImageBuilt });
  it('room for a first build: ok; less, with the default image unbuilt: an error; built: only a warning', () => {
    assert.equal(at(first, false).ok, true);
    const tight = at(first - 1, false);
    assert.deepEqual([tight.ok, tight.severity], [false, 'error']);
    assert.match(tight.detail, /measured at \/var\/lib/);
    assert.match(tight.fix!, /--data-dir or LABCTL_DATA_DIR/);
    const built = at(100 * 1024 ** 2, true);
    assert.deepEqual([built.ok, built.severity], [false, 'warning']);
  });
});

/** A host with everything the default lab needs, and no netem. */
function goodHost(): DoctorReadings {
  const probe = (ok: boolean) => ({ ran: true, ok, command: 'x', output: ok ? '' : 'Error: Specified qdisc kind is unknown.' });
  return {
    uid: 0,
    netns: { loaded: false, available: 'unknown', probe: probe(true) },
    kernel: KERNEL_FEATURES.map((f) => ({
      feature: f,
      reading: f.module === 'sch_netem' ? { loaded: false, available: 'unknown', probe: probe(false) } : { loaded: true, available: 'unknown' },
    })),
    brNetfilter: { loaded: false, perNamespace: undefined, values: {} },
    tools: TOOLS.map((spec) => ({ spec, reading: spec.tool === 'tcpdump' ? {} : { path: `/usr/bin/${spec.tool}`, version: '1.0' } })),
    keyrings: [{ recipe: 'bookworm', file: '/x/bookworm.yaml', keyring: '/k.gpg', exists: true, provider: '', neededByDefaultLab: true }],
    backend: { pid1: 'init', systemdIsPid1: false, chosen: 'direct' },
    cgroup: 'v2',
    inotify: {
      defaultLab: { label: 'the default lab', machines: 4, max: 128, used: 0, perMachine: 3, shortfall: undefined },
      many: { label: '64 machines', machines: 64, max: 8192, used: 0, perMachine: 3, shortfall: undefined },
    },
    space: { dataDir: '/d', measured: '/d', freeBytes: 10 * 1024 ** 3, defaultImageBuilt: false },
  };
}

describe('all checks and the exit code', () => {
  it('warnings alone (netem, tcpdump) exit 0', () => {
    const checks = doctorChecks(goodHost());
    assert.equal(doctorExitCode(checks), 0);
    assert.deepEqual(
      checks.filter((c) => !c.ok).map((c) => c.check),
      ['kernel: sch_netem', 'tool: tcpdump'],
    );
    for (const c of checks) {
      assert.deepEqual(Object.keys(c), ['check', 'ok', 'severity', 'detail', 'fix']);
      assert.equal(c.fix === null, c.ok, `${c.check}: a fix exactly when it failed`);
    }
    const text = formatDoctor(checks);
    assert.match(text, /^ok {4}root +running as root$/m);
    assert.match(text, /^warn {2}kernel: sch_netem +missing/m);
    assert.match(text, /^ +fix: a stock distribution kernel has it \(module sch_netem/m);
    assert.match(text, /Everything the default lab \(machines\/article\.yaml\) needs is here; 2 warnings/);
  });

  it('any failed error exits 1, and the text names it', () => {
    const r = goodHost();
    r.uid = 1000;
    r.tools = r.tools.map((t) => (t.spec.tool === 'nft' ? { ...t, reading: {} } : t));
    const checks = doctorChecks(r);
    assert.equal(doctorExitCode(checks), 1);
    assert.equal(statusWord(checks.find((c) => c.check === 'tool: nft')!), 'FAIL');
    assert.match(formatDoctor(checks), /cannot come up here: root, tool: nft failed/);
  });

  it('with the direct backend a missing machinectl only warns', () => {
    const r = goodHost();
    r.tools = r.tools.map((t) => (t.spec.tool === 'machinectl' ? { ...t, reading: {} } : t));
    assert.equal(doctorExitCode(doctorChecks(r)), 0);
    r.backend = { pid1: 'systemd', systemdIsPid1: true, chosen: 'systemd' };
    assert.equal(doctorExitCode(doctorChecks(r)), 1);
  });
});
