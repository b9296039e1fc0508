// `labctl doctor`'s readings of the host (host/doctor.ts decides from them). Nothing here
// changes the host: files under /proc, /sys and /lib/modules are read, tools print their
// versions, and a kernel feature that those files cannot vouch for is tried inside a
// throwaway network namespace (unshare --net), which vanishes with the command.
//
// A feature is tried only when the module lists cannot tell: where /lib/modules/RELEASE
// lists a module, it is installed and the kernel loads it on first use, and trying would
// load it now; where the lists exist and do not name it, it is missing and nothing can
// load it. Only a kernel without those lists (built without modules, or a container that
// does not see them) is tried, and there a try cannot load a module either.
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { run } from '../exec/run.js';
import { whichExecutable } from '../util/process.js';
import { resolveDataDir } from './dirs.js';
import {
  decideKernelFeature,
  doctorChecks,
  KERNEL_FEATURES,
  NETNS_FEATURE,
  TOOLS,
  versionLine,
  type BrNetfilterReading,
  type CgroupVersion,
  type DoctorCheck,
  type DoctorReadings,
  type InotifyReading,
  type KernelFeature,
  type KernelReading,
  type KeyringReading,
  type ModuleAvailability,
  type ProbeResult,
  type SpaceReading,
  type ToolReading,
} from './doctor.js';

const PROBE_TIMEOUT_MS = 10_000;
/** How many machines the second inotify check is about. */
export const MANY_MACHINES = 64;

/** Module names in a modules.builtin or modules.dep text ("kernel/net/sched/sch_netem.ko.zst: ..." -> sch_netem). Dashes read as underscores, as modprobe reads them. */
export function parseModuleList(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const path = line.split(':')[0]!.trim();
    const m = /^(.*)\.ko(?:\.[a-z0-9]+)?$/.exec(basename(path));
    if (m) names.add(m[1]!.replaceAll('-', '_'));
  }
  return names;
}

interface ModuleIndex {
  builtin: Set<string>;
  installed: Set<string>;
}

function readModuleIndex(): ModuleIndex | undefined {
  for (const root of ['/lib/modules', '/usr/lib/modules']) {
    const dir = join(root, release());
    const read = (f: string) => {
      try {
        return readFileSync(join(dir, f), 'utf8');
      } catch {
        return undefined;
      }
    };
    const builtin = read('modules.builtin');
    const dep = read('modules.dep');
    if (builtin !== undefined || dep !== undefined) return { builtin: parseModuleList(builtin ?? ''), installed: parseModuleList(dep ?? '') };
  }
  return undefined;
}

function availability(module: string | undefined, index: ModuleIndex | undefined): ModuleAvailability {
  if (!module || !index) return 'unknown';
  if (index.builtin.has(module)) return 'builtin';
  if (index.installed.has(module)) return 'module';
  return 'absent';
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function isLoaded(feature: KernelFeature): boolean {
  if (feature.module && existsSync(`/sys/module/${feature.module}`)) return true;
  if (feature.loadedPaths?.some((p) => existsSync(p))) return true;
  if (feature.filesystem) {
    const fs = readText('/proc/filesystems') ?? '';
    return fs.split('\n').some((l) => l.trim().split(/\s+/).pop() === feature.filesystem);
  }
  return false;
}

const isRoot = () => process.getuid?.() === 0;

/** Runs argv inside a new network namespace (and, when not root, a user namespace that maps us to root there). */
async function inThrowawayNamespace(argv: string[], input?: string): Promise<{ ok: boolean; output: string }> {
  const unshare = isRoot() ? ['unshare', '--net'] : ['unshare', '--user', '--map-root-user', '--net'];
  const r = await run([...unshare, ...argv], { allowFailure: true, timeoutMs: PROBE_TIMEOUT_MS, ...(input !== undefined ? { input } : {}) });
  return { ok: r.exitCode === 0, output: `${r.stderr}${r.stdout}`.trim() };
}

async function probe(feature: KernelFeature, namespaces: boolean): Promise<ProbeResult> {
  const command = feature.probe!.shown ?? feature.probe!.argv.join(' ');
  const tool = feature.probe!.argv[0]!;
  if (!whichExecutable('unshare')) return { ran: false, ok: false, command, output: 'unshare is not installed (apt-get install util-linux)' };
  if (!namespaces) return { ran: false, ok: false, command, output: 'no throwaway network namespace could be made' };
  if (tool !== 'true' && !whichExecutable(tool)) return { ran: false, ok: false, command, output: `${tool} is not installed` };
  const r = await inThrowawayNamespace(feature.probe!.argv, feature.probe!.input);
  return { ran: true, ok: r.ok, command, output: r.output };
}

async function readKernel(): Promise<Pick<DoctorReadings, 'netns' | 'kernel'>> {
  const index = readModuleIndex();
  // Every other try runs in a namespace: try making one first.
  const netnsProbe = await probe(NETNS_FEATURE, true);
  // Not root: a failure may be ours (no user namespaces for users), not the kernel's.
  if (!netnsProbe.ok && !isRoot()) netnsProbe.ran = false;
  const kernel = await Promise.all(
    KERNEL_FEATURES.map(async (feature) => {
      const loaded = isLoaded(feature);
      const available = availability(feature.module, index);
      const reading: KernelReading = { loaded, available };
      if (!loaded && available === 'unknown' && feature.probe) reading.probe = await probe(feature, netnsProbe.ok);
      return { feature, reading };
    }),
  );
  return { netns: { loaded: false, available: 'unknown', probe: netnsProbe }, kernel };
}

/**
 * One kernel feature's check alone, read as doctor reads it (its `check` name, e.g.
 * 'kernel: sch_netem'): for a command that needs the feature, before it changes anything.
 */
export async function checkKernelFeature(check: string): Promise<DoctorCheck> {
  const feature = KERNEL_FEATURES.find((f) => f.check === check);
  if (!feature) throw new Error(`doctor has no check "${check}"`);
  const reading: KernelReading = { loaded: isLoaded(feature), available: availability(feature.module, readModuleIndex()) };
  // Where labctl runs, network namespaces work (every lab needs them): no need to try that first.
  if (!reading.loaded && reading.available === 'unknown' && feature.probe) reading.probe = await probe(feature, true);
  return decideKernelFeature(feature, reading);
}

const BRIDGE_SWITCHES = ['bridge-nf-call-iptables', 'bridge-nf-call-ip6tables', 'bridge-nf-call-arptables'];

async function readBrNetfilter(namespaces: boolean): Promise<BrNetfilterReading> {
  const loaded = existsSync('/sys/module/br_netfilter') || existsSync('/proc/sys/net/bridge');
  const values: Record<string, string> = {};
  for (const s of BRIDGE_SWITCHES) {
    const v = readText(`/proc/sys/net/bridge/${s}`)?.trim();
    if (v !== undefined) values[`net.bridge.${s}`] = v;
  }
  let perNamespace: boolean | undefined;
  if (loaded && namespaces) perNamespace = (await inThrowawayNamespace(['cat', `/proc/sys/net/bridge/${BRIDGE_SWITCHES[0]}`])).ok;
  return { loaded, perNamespace, values };
}

async function readTool(tool: string, versionArgs: string[]): Promise<ToolReading> {
  const path = whichExecutable(tool);
  if (!path) return {};
  const r = await run([path, ...versionArgs], { allowFailure: true, timeoutMs: PROBE_TIMEOUT_MS });
  const version = versionLine(`${r.stdout}\n${r.stderr}`);
  return { path, ...(version ? { version } : {}) };
}

async function readKeyrings(defaultImage: string, defaultImageBuilt: boolean): Promise<KeyringReading[]> {
  const { listRecipeNames, loadRecipe } = await import('../image/recipe.js');
  const { RECIPES_DIR } = await import('../image/paths.js');
  const { DISTRIBUTIONS } = await import('../image/distro/index.js');
  const { readHostOs } = await import('../image/host-os.js');
  const host = readHostOs();
  return listRecipeNames().map((name): KeyringReading => {
    const neededByDefaultLab = name === defaultImage && !defaultImageBuilt;
    const file = join(RECIPES_DIR, `${name}.yaml`);
    try {
      const recipe = loadRecipe(name);
      const provider = DISTRIBUTIONS[recipe.distribution].keyringProvider(recipe.keyring, host);
      return { recipe: name, file: recipe.sourceFile ?? file, keyring: recipe.keyring, exists: existsSync(recipe.keyring), provider, neededByDefaultLab };
    } catch (e) {
      return { recipe: name, file, keyring: '', exists: false, provider: '', neededByDefaultLab, error: e instanceof Error ? e.message : String(e) };
    }
  });
}

async function readBackend(): Promise<DoctorReadings['backend']> {
  const { chooseBackend } = await import('../machine/select.js');
  const chosen = (await chooseBackend()).name;
  return { pid1: readText('/proc/1/comm')?.trim() ?? '', systemdIsPid1: existsSync('/run/systemd/system'), chosen };
}

const CGROUP2_SUPER_MAGIC = 0x63677270;

function fsType(path: string): number | undefined {
  try {
    return statfsSync(path).type;
  } catch {
    return undefined;
  }
}

function readCgroupVersion(): CgroupVersion {
  const root = fsType('/sys/fs/cgroup');
  if (root === CGROUP2_SUPER_MAGIC) return 'v2';
  if (fsType('/sys/fs/cgroup/unified') === CGROUP2_SUPER_MAGIC) return 'hybrid';
  // v1 controllers are mounted below a tmpfs at /sys/fs/cgroup.
  const mounts = readText('/proc/self/mounts') ?? '';
  return mounts.split('\n').some((l) => l.split(' ')[2] === 'cgroup') ? 'v1' : 'none';
}

async function readInotify(label: string, machines: number): Promise<InotifyReading> {
  const { INOTIFY_PER_MACHINE, inotifyInstancesInUse, inotifyShortfall, readSysctl } = await import('../machine/limits.js');
  return {
    label,
    machines,
    max: readSysctl('fs.inotify.max_user_instances'),
    used: inotifyInstancesInUse(),
    perMachine: INOTIFY_PER_MACHINE,
    shortfall: inotifyShortfall(machines),
  };
}

function readSpace(dataDir: string, defaultImageBuilt: boolean): SpaceReading {
  // The data dir is made by the first build: measure the nearest directory that exists.
  let measured = dataDir;
  while (!existsSync(measured) && dirname(measured) !== measured) measured = dirname(measured);
  const st = statfsSync(measured);
  return { dataDir, measured, freeBytes: st.bavail * st.bsize, defaultImageBuilt };
}

export interface DoctorOptions {
  dataDir?: string;
}

/** Reads the host: every reading doctor's checks decide from. */
export async function readDoctorReadings(options: DoctorOptions = {}): Promise<DoctorReadings> {
  const dataDir = resolveDataDir(options.dataDir);
  const { loadLab } = await import('../lab/load.js');
  const { members } = await import('../lab/model.js');
  const { DEFAULT_IMAGE } = await import('../apply/lab.js');
  const { imagePaths } = await import('../image/paths.js');
  const { imageState } = await import('../image/meta.js');
  const lab = loadLab();
  const defaultImage = lab.image ?? DEFAULT_IMAGE;
  const defaultImageBuilt = imageState(imagePaths(dataDir, defaultImage)).state === 'ready';
  const labMachines = members(lab).filter((m) => m.machine).length;

  const [{ netns, kernel }, tools, keyrings, backend, defaultLab, many] = await Promise.all([
    readKernel(),
    Promise.all(TOOLS.map(async (spec) => ({ spec, reading: await readTool(spec.tool, spec.versionArgs) }))),
    readKeyrings(defaultImage, defaultImageBuilt),
    readBackend(),
    readInotify(`the default lab (${labMachines} machines)`, labMachines),
    readInotify(`${MANY_MACHINES} machines`, MANY_MACHINES),
  ]);
  return {
    uid: process.getuid?.(),
    netns,
    kernel,
    brNetfilter: await readBrNetfilter(netns.probe?.ok ?? false),
    tools,
    keyrings,
    backend,
    cgroup: readCgroupVersion(),
    inotify: { defaultLab, many },
    space: readSpace(dataDir, defaultImageBuilt),
  };
}

export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorCheck[]> {
  return doctorChecks(await readDoctorReadings(options));
}
