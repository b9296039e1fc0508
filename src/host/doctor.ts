// `labctl doctor`: what this host has of what labctl needs, as data. This file is pure: it
// decides from readings (host/doctor-read.ts takes them) whether each check passes and
// what to do when it does not, so that every decision is tested without root.
//
// A check's severity says what its failure costs: "error" when the default lab
// (machines/article.yaml, booted) cannot come up without it, which makes doctor exit 1;
// "warning" when only some features need it; "info" for what labctl adapts to (the machine
// backend, the cgroup version). Severity is the same whether the check passes or not.

export type Severity = 'error' | 'warning' | 'info';

export interface DoctorCheck {
  check: string;
  ok: boolean;
  severity: Severity;
  detail: string;
  /** What to do about a failed check; null when it passed. */
  fix: string | null;
}

const pass = (check: string, severity: Severity, detail: string): DoctorCheck => ({ check, ok: true, severity, detail, fix: null });
const fail = (check: string, severity: Severity, detail: string, fix: string): DoctorCheck => ({ check, ok: false, severity, detail, fix });

/** 0 when every error-severity check passed, else 1 (warnings never fail). */
export function doctorExitCode(checks: readonly DoctorCheck[]): 0 | 1 {
  return checks.some((c) => !c.ok && c.severity === 'error') ? 1 : 0;
}

// ---------------------------------------------------------------------------
// Root

export function decideRoot(uid: number | undefined): DoctorCheck {
  if (uid === 0) return pass('root', 'error', 'running as root');
  return fail(
    'root',
    'error',
    `running as uid ${uid ?? 'unknown'}: labctl creates network namespaces, loop mounts and machines, which need root`,
    'run labctl as root (sudo labctl ...)',
  );
}

// ---------------------------------------------------------------------------
// Kernel features

/** What /lib/modules/RELEASE says of a module; unknown where those lists are missing (a monolithic or foreign kernel, a container). */
export type ModuleAvailability = 'builtin' | 'module' | 'absent' | 'unknown';

/** A feature tried for real in a throwaway network namespace (unshare -n): nothing outside it changes. */
export interface ProbeResult {
  /** False when the namespace itself could not be made (not root) or the tool is missing: nothing was learnt. */
  ran: boolean;
  ok: boolean;
  /** The command as shown to the user, and what it printed. */
  command: string;
  output: string;
}

export interface KernelReading {
  /** Loaded now (/sys/module/NAME, /proc/filesystems, a device node). */
  loaded: boolean;
  available: ModuleAvailability;
  /** Only taken when the readings above cannot tell (see host/doctor-read.ts). */
  probe?: ProbeResult;
}

export interface KernelFeature {
  check: string;
  /** The kernel module that provides it, when there is one. */
  module?: string;
  severity: Severity;
  /** What labctl uses it for, in the detail of a failure. */
  neededFor: string;
  fix: string;
  /** The command run inside a throwaway network namespace to try it (argv), its standard input, and how the report shows it. */
  probe?: { argv: string[]; input?: string; shown?: string };
  /** Paths whose existence means it is loaded, besides /sys/module/MODULE. */
  loadedPaths?: string[];
  /** A file system: loaded when /proc/filesystems lists it. */
  filesystem?: string;
}

const STOCK = (modules: string) => `a stock distribution kernel has it (${modules}); on a custom kernel, enable it and reboot, or load it with modprobe`;

/** The NAT chain labctl's rulesets use (nat hooks, masquerade): loads in a fresh namespace only where nf_tables and its NAT parts are there. */
const NAT_PROBE_RULESET = 'table ip labctl_doctor {\n\tchain post { type nat hook postrouting priority srcnat; masquerade; }\n}\n';
/** A conntrack match (ct state): nft_ct needs nf_conntrack. */
const CONNTRACK_PROBE_RULESET = 'table ip labctl_doctor {\n\tchain forward_probe { type filter hook forward priority 0; ct state established accept; }\n}\n';

/** A ct timeout object attached to new flows, as every labctl NAT's ruleset has (its UDP and TCP timers). */
const CT_TIMEOUT_PROBE_RULESET = [
  'table ip labctl_doctor {',
  '\tct timeout t {\n\t\tprotocol udp; l3proto ip\n\t\tpolicy = { unreplied: 30, replied: 120 }\n\t}',
  '\tchain pre {\n\t\ttype filter hook prerouting priority filter; policy accept;\n\t\tct state new ct timeout set "t"\n\t}',
  '}\n',
].join('\n');
/** A per-address flow count (ct count over a dynamic set), as a NAT with a quota has. */
const CONNLIMIT_PROBE_RULESET = [
  'table ip labctl_doctor {',
  '\tset q {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic\n\t}',
  '\tchain forward_probe {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state new add @q { ip saddr ct count over 5 } drop\n\t}',
  '}\n',
].join('\n');
/** A computed outside address and port (numgen, jhash), as sequential ports, arbitrary pools and hashed ports are made. */
const natProbe = (statement: string) =>
  `table ip labctl_doctor {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\t${statement}\n\t}\n}\n`;
const NUMGEN_PROBE_RULESET = natProbe('snat ip to numgen random mod 2 map { 0 : 10.0.0.1, 1 : 10.0.0.2 }');
const HASH_PROBE_RULESET = natProbe('meta l4proto udp snat ip to 10.0.0.1:jhash ip saddr . udp sport mod 1000 seed 0x1 offset 2000');

/** Tried first: every other feature is tried inside such a namespace. */
export const NETNS_FEATURE: KernelFeature = {
  check: 'kernel: network namespaces',
  severity: 'error',
  neededFor: 'every lab member (each lives in one)',
  fix: 'a kernel with CONFIG_NET_NS (every distribution kernel has it); inside a container, run labctl on the host or in a privileged container; as a user, run doctor as root',
  probe: { argv: ['true'], shown: 'unshare --net true' },
};

/** The features besides network namespaces, in the order doctor prints them. */
export const KERNEL_FEATURES: readonly KernelFeature[] = [
  {
    check: 'kernel: veth',
    module: 'veth',
    severity: 'error',
    neededFor: 'the links between lab members',
    fix: STOCK('module veth'),
    probe: { argv: ['ip', 'link', 'add', 'labctl-doc0', 'type', 'veth', 'peer', 'name', 'labctl-doc1'] },
  },
  {
    check: 'kernel: nf_tables',
    module: 'nf_tables',
    severity: 'error',
    neededFor: 'the NAT routers (nftables rulesets with NAT chains)',
    fix: STOCK('modules nf_tables, nft_chain_nat, nft_masq'),
    probe: { argv: ['nft', '-f', '-'], input: NAT_PROBE_RULESET, shown: 'nft -f - with a NAT chain that masquerades' },
  },
  {
    check: 'kernel: nf_conntrack',
    module: 'nf_conntrack',
    severity: 'error',
    neededFor: 'the NAT routers (connection tracking, its UDP timeouts)',
    fix: STOCK('modules nf_conntrack, nft_ct'),
    probe: { argv: ['nft', '-f', '-'], input: CONNTRACK_PROBE_RULESET, shown: 'nft -f - with a rule matching ct state' },
  },
  {
    // nft_ct's, when the kernel has CONFIG_NF_CONNTRACK_TIMEOUT (every stock one): tried only where module lists are missing.
    check: 'kernel: ct timeout objects',
    module: 'nft_ct',
    severity: 'error',
    neededFor: "every NAT router's UDP and TCP timers (nftables ct timeout objects, per NAT and per flow)",
    fix: 'a stock distribution kernel has it (CONFIG_NF_CONNTRACK_TIMEOUT, in nf_conntrack and nft_ct); on a custom kernel, enable it',
    probe: { argv: ['nft', '-f', '-'], input: CT_TIMEOUT_PROBE_RULESET, shown: 'nft -f - with a ct timeout object set on new flows' },
  },
  {
    check: 'kernel: nft_hash',
    module: 'nft_hash',
    severity: 'warning',
    neededFor: 'hashed outside ports (port-preservation: false, address-dependent mapping, and a kept port another inside endpoint holds)',
    fix: STOCK('module nft_hash'),
    probe: { argv: ['nft', '-f', '-'], input: HASH_PROBE_RULESET, shown: 'nft -f - with a jhash port' },
  },
  {
    check: 'kernel: nft_numgen',
    module: 'nft_numgen',
    severity: 'warning',
    neededFor: 'sequential port allocation and arbitrary pooling (port-allocation: sequential, pooling: arbitrary)',
    fix: STOCK('module nft_numgen'),
    probe: { argv: ['nft', '-f', '-'], input: NUMGEN_PROBE_RULESET, shown: 'nft -f - with a numgen address' },
  },
  {
    check: 'kernel: nft_connlimit',
    module: 'nft_connlimit',
    severity: 'warning',
    neededFor: 'per-address quotas (quota:, the cgnat-rfc6888 profile)',
    fix: STOCK('module nft_connlimit'),
    probe: { argv: ['nft', '-f', '-'], input: CONNLIMIT_PROBE_RULESET, shown: 'nft -f - with ct count over a dynamic set' },
  },
  {
    check: 'kernel: btrfs',
    module: 'btrfs',
    severity: 'error',
    neededFor: 'images (btrfs file systems in a file)',
    fix: STOCK('module btrfs'),
    filesystem: 'btrfs',
  },
  {
    check: 'kernel: loop devices',
    module: 'loop',
    severity: 'error',
    neededFor: 'mounting images (through loop devices)',
    fix: `${STOCK('module loop')}; inside a container, /dev/loop-control must be passed in`,
    loadedPaths: ['/dev/loop-control'],
  },
  {
    check: 'kernel: bridge',
    module: 'bridge',
    severity: 'warning',
    neededFor: 'labs with several nodes behind one NAT (a bridged LAN; the default lab has none)',
    fix: STOCK('module bridge'),
    probe: { argv: ['ip', 'link', 'add', 'labctl-doc0', 'type', 'bridge'] },
  },
  {
    check: 'kernel: sch_tbf',
    module: 'sch_tbf',
    severity: 'warning',
    neededFor: 'link rate limits (rate:)',
    fix: STOCK('module sch_tbf'),
    probe: { argv: ['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '1mbit', 'burst', '32kbit', 'latency', '400ms'] },
  },
  {
    check: 'kernel: sch_netem',
    module: 'sch_netem',
    severity: 'warning',
    neededFor: 'link impairments other than rate limits (delay, jitter, loss, corruption, duplication, reordering)',
    fix: 'a stock distribution kernel has it (module sch_netem, package linux-modules-extra on Ubuntu); on a custom kernel, enable CONFIG_NET_SCH_NETEM',
    probe: { argv: ['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'] },
  },
];

function moduleWords(feature: KernelFeature): string {
  return feature.module ? `module ${feature.module}` : 'it';
}

export function decideKernelFeature(feature: KernelFeature, reading: KernelReading): DoctorCheck {
  const { check, severity, fix } = feature;
  if (reading.loaded) return pass(check, severity, feature.module ? `${moduleWords(feature)} is loaded` : 'present');
  if (reading.available === 'builtin') return pass(check, severity, `built into the kernel`);
  if (reading.available === 'module') return pass(check, severity, `${moduleWords(feature)} is installed; the kernel loads it when labctl first uses it`);
  const { probe } = reading;
  const needs = `labctl needs it for ${feature.neededFor}`;
  if (probe?.ran && probe.ok) return pass(check, severity, `works (tried in a throwaway network namespace: ${probe.command})`);
  const said = probe?.output.trim().split('\n').slice(-2).join(' ') ?? '';
  if (probe?.ran) {
    return fail(check, severity, `missing (tried in a throwaway network namespace: ${probe.command} failed${said ? `: ${said}` : ''}); ${needs}`, fix);
  }
  if (probe) return fail(check, severity, `could not be tried (${probe.command}${said ? `: ${said}` : ''}); ${needs}`, fix);
  if (reading.available === 'absent') {
    return fail(check, severity, `missing: ${moduleWords(feature)} is neither loaded, built in nor installed for this kernel; ${needs}`, fix);
  }
  return fail(
    check,
    severity,
    `${moduleWords(feature)} is not loaded, and this system has no module lists for its kernel to tell whether it can be; ${needs}`,
    fix,
  );
}

export interface BrNetfilterReading {
  loaded: boolean;
  /** The bridge-nf-call-* switches exist in a fresh network namespace (per-namespace, kernel 5.3+); undefined when not tried. */
  perNamespace: boolean | undefined;
  /** The host's own values, by sysctl name. */
  values: Record<string, string>;
}

export function decideBrNetfilter(r: BrNetfilterReading): DoctorCheck {
  const check = 'kernel: br_netfilter';
  if (!r.loaded) return pass(check, 'info', 'not loaded: bridged frames do not pass nftables, nothing to turn off');
  const values = Object.entries(r.values)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  if (r.perNamespace) {
    return pass(check, 'info', `loaded (${values || 'no switches readable'}); labctl turns net.bridge.bridge-nf-call-* off inside bridged NAT namespaces only`);
  }
  return fail(
    check,
    'warning',
    `loaded, but its net.bridge.bridge-nf-call-* switches are not per network namespace here${r.perNamespace === undefined ? ' (could not be tried)' : ''}: labctl cannot turn them off inside a NAT namespace, and hairpinning on a bridged LAN may fail`,
    'a kernel of 5.3 or newer has per-namespace switches; or unload br_netfilter (modprobe -r br_netfilter) where nothing else (Docker) needs it',
  );
}

// ---------------------------------------------------------------------------
// Tools

export interface ToolSpec {
  tool: string;
  /** The Debian (and Ubuntu) package that provides it. */
  debianPackage: string;
  versionArgs: string[];
  severity: Severity;
  neededFor: string;
}

export const TOOLS: readonly ToolSpec[] = [
  { tool: 'ip', debianPackage: 'iproute2', versionArgs: ['-V'], severity: 'error', neededFor: 'namespaces, links, addresses, routes' },
  { tool: 'nft', debianPackage: 'nftables', versionArgs: ['--version'], severity: 'error', neededFor: 'the NAT rulesets' },
  { tool: 'conntrack', debianPackage: 'conntrack', versionArgs: ['--version'], severity: 'warning', neededFor: '`labctl conntrack`, `net flush` and `check`' },
  {
    tool: 'systemd-nspawn',
    debianPackage: 'systemd-container',
    versionArgs: ['--version'],
    severity: 'error',
    neededFor: 'machines, and image recipes with commands',
  },
  { tool: 'machinectl', debianPackage: 'systemd-container', versionArgs: ['--version'], severity: 'error', neededFor: 'the systemd backend (`labctl shell`)' },
  { tool: 'debootstrap', debianPackage: 'debootstrap', versionArgs: ['--version'], severity: 'error', neededFor: 'image builds' },
  { tool: 'mkfs.btrfs', debianPackage: 'btrfs-progs', versionArgs: ['--version'], severity: 'error', neededFor: 'image builds' },
  { tool: 'tcpdump', debianPackage: 'tcpdump', versionArgs: ['--version'], severity: 'warning', neededFor: 'packet capture on the host' },
  { tool: 'dot', debianPackage: 'graphviz', versionArgs: ['-V'], severity: 'warning', neededFor: 'SVG drawings of a lab (`labctl graph`)' },
];

export interface ToolReading {
  /** Where it was found; undefined when it was not. */
  path?: string;
  /** The first line its version option printed. */
  version?: string;
}

/** machinectl matters only where the systemd backend applies; with the direct backend it is a warning. */
export function toolSeverity(spec: ToolSpec, backend: 'systemd' | 'direct'): Severity {
  return spec.tool === 'machinectl' && backend === 'direct' ? 'warning' : spec.severity;
}

export function decideTool(spec: ToolSpec, reading: ToolReading, severity: Severity = spec.severity): DoctorCheck {
  const check = `tool: ${spec.tool}`;
  if (reading.path) return pass(check, severity, `${reading.path}${reading.version ? `: ${reading.version}` : ''}`);
  return fail(check, severity, `not installed; labctl needs it for ${spec.neededFor}`, `apt-get install ${spec.debianPackage}`);
}

/** The first non-empty line a version option printed. */
export function versionLine(output: string): string | undefined {
  return output
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '');
}

// ---------------------------------------------------------------------------
// Keyrings of the shipped recipes

export interface KeyringReading {
  recipe: string;
  /** The recipe file, for the fix. */
  file: string;
  keyring: string;
  exists: boolean;
  /** The distribution's own words on which package provides the keyring on this host (image/distro). */
  provider: string;
  /** The default lab's image, and it is not built yet: the build needs the keyring. */
  neededByDefaultLab: boolean;
  /** A recipe that could not be read: its error. */
  error?: string;
}

export function decideKeyring(r: KeyringReading): DoctorCheck {
  const check = `keyring: ${r.recipe}`;
  const severity: Severity = r.neededByDefaultLab ? 'error' : 'warning';
  if (r.error) return fail(check, severity, `the recipe cannot be read: ${r.error}`, `mend ${r.file}`);
  if (r.exists) return pass(check, severity, `${r.keyring} is there`);
  return fail(
    check,
    severity,
    `${r.keyring} does not exist: \`labctl image build ${r.recipe}\` checks the archive's signatures with it${r.neededByDefaultLab ? ' (the default lab boots this image, which is not built yet)' : ''}`,
    `${r.provider}. Put the keyring at ${r.keyring}, or set keyring: in ${r.file} to where it is`,
  );
}

// ---------------------------------------------------------------------------
// Machine backend and cgroups

export interface BackendReading {
  /** The name of PID 1 (/proc/1/comm). */
  pid1: string;
  systemdIsPid1: boolean;
  /** What machine/select.ts chooses here when no --backend is given. */
  chosen: 'systemd' | 'direct';
}

export function decideBackend(r: BackendReading): DoctorCheck {
  const check = 'machine backend';
  if (r.chosen === 'systemd') {
    return pass(check, 'info', 'systemd: systemd is PID 1 and its bus answers; machines run as transient units that machinectl knows');
  }
  if (r.systemdIsPid1) {
    return pass(
      check,
      'info',
      'direct: systemd is PID 1 but its system bus did not answer, so labctl starts systemd-nspawn itself (start dbus and systemd-machined to get the systemd backend)',
    );
  }
  return pass(check, 'info', `direct: PID 1 is ${r.pid1 || 'unknown'}, not systemd, so labctl starts systemd-nspawn itself and keeps its pids`);
}

export type CgroupVersion = 'v2' | 'hybrid' | 'v1' | 'none';

export function decideCgroup(version: CgroupVersion): DoctorCheck {
  const check = 'cgroup version';
  switch (version) {
    case 'v2':
      return pass(check, 'info', 'v2 (unified hierarchy at /sys/fs/cgroup)');
    case 'hybrid':
      return pass(check, 'info', 'v1 controllers with a cgroup2 hierarchy at /sys/fs/cgroup/unified (hybrid); systemd-nspawn works with it');
    case 'v1':
      return pass(check, 'info', 'v1 (no cgroup2 hierarchy); systemd-nspawn works with it');
    case 'none':
      return fail(
        check,
        'error',
        'no cgroup file system at /sys/fs/cgroup: systemd-nspawn cannot start machines',
        'mount one: mount -t cgroup2 none /sys/fs/cgroup (systemd does this at boot)',
      );
  }
}

// ---------------------------------------------------------------------------
// inotify

export interface InotifyReading {
  /** What the check is about ("the default lab", "64 machines"). */
  label: string;
  machines: number;
  max: number;
  used: number;
  perMachine: number;
  /** machine/limits.ts's message when the machines would not fit, else undefined. */
  shortfall: string | undefined;
}

export function decideInotify(r: InotifyReading, severity: Severity): DoctorCheck {
  const check = `inotify: ${r.label}`;
  const need = r.machines * r.perMachine;
  if (!r.shortfall) {
    return pass(check, severity, `${r.machines} machines need about ${need} inotify instances; fs.inotify.max_user_instances is ${r.max}, ${r.used} in use`);
  }
  // limits.ts says what is short, then how to raise it on the lines after "e.g.".
  const [said = r.shortfall, ...how] = r.shortfall.split('\n');
  const command = how.join(' ').trim();
  return fail(
    check,
    severity,
    said.replace(/\s*Raise the limit first.*$/, ''),
    `${command || `raise fs.inotify.max_user_instances above ${r.used + need}`} (labctl does not change host sysctls; put it in /etc/sysctl.d/ to keep it)`,
  );
}

// ---------------------------------------------------------------------------
// Free space

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** A cold image: about 300 MB on disk. */
export const IMAGE_BYTES = 300 * MiB;
/** The download and base caches of a first build: about 1 GiB. */
export const CACHE_BYTES = GiB;

export interface SpaceReading {
  dataDir: string;
  /** The directory measured: the data dir, or the nearest existing one above it. */
  measured: string;
  freeBytes: number;
  /** The default lab's image is already built there. */
  defaultImageBuilt: boolean;
}

const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;

export function decideSpace(r: SpaceReading): DoctorCheck {
  const check = 'free space';
  const where = r.measured === r.dataDir ? r.dataDir : `${r.dataDir} (measured at ${r.measured}, which exists)`;
  const first = IMAGE_BYTES + CACHE_BYTES;
  const free = `${gib(r.freeBytes)} free under ${where}`;
  if (r.freeBytes >= first) return pass(check, r.defaultImageBuilt ? 'warning' : 'error', `${free}; an image takes about 300 MB, its build caches about 1 GiB`);
  const fix = `free space there, or put the data elsewhere with --data-dir or LABCTL_DATA_DIR (a file system with ${gib(first)} free)`;
  if (!r.defaultImageBuilt) {
    return fail(
      check,
      'error',
      `${free}: the default lab's image is not built yet, and a first build needs about ${gib(first)} (the image about 300 MB, its caches about 1 GiB)`,
      fix,
    );
  }
  return fail(check, 'warning', `${free}: enough for the image already built, but another build needs about ${gib(first)}`, fix);
}

// ---------------------------------------------------------------------------

export interface DoctorReadings {
  uid: number | undefined;
  netns: KernelReading;
  kernel: { feature: KernelFeature; reading: KernelReading }[];
  brNetfilter: BrNetfilterReading;
  tools: { spec: ToolSpec; reading: ToolReading }[];
  keyrings: KeyringReading[];
  backend: BackendReading;
  cgroup: CgroupVersion;
  /** The default lab's machines, then 64 of them. */
  inotify: { defaultLab: InotifyReading; many: InotifyReading };
  space: SpaceReading;
}

/** Every check, in the order doctor prints them. */
export function doctorChecks(r: DoctorReadings): DoctorCheck[] {
  return [
    decideRoot(r.uid),
    decideKernelFeature(NETNS_FEATURE, r.netns),
    ...r.kernel.map(({ feature, reading }) => decideKernelFeature(feature, reading)),
    decideBrNetfilter(r.brNetfilter),
    ...r.tools.map(({ spec, reading }) => decideTool(spec, reading, toolSeverity(spec, r.backend.chosen))),
    ...r.keyrings.map(decideKeyring),
    decideBackend(r.backend),
    decideCgroup(r.cgroup),
    decideInotify(r.inotify.defaultLab, 'error'),
    decideInotify(r.inotify.many, 'warning'),
    decideSpace(r.space),
  ];
}
