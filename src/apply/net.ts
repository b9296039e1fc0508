// `labctl net up|down`: applies a NetworkPlan to the host, recording ownership in the
// state file first, and rolling back this run's namespaces when a step fails.
import { LabctlError, UsageError } from '../util/errors.js';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../lab/model.js';
import { type NetworkPlan, planNetwork } from '../plan/network.js';
import { run } from '../exec/run.js';
import { batchText, deleteNetns, inNetns, listNetns } from '../host/netns.js';
import { NAT_TABLE } from '../nat/compile.js';
import { allStates, type LabState, readState, removeState, withLabLock, writeState } from '../host/state.js';
import { configureNamespaces } from './configure.js';
import { runDir } from '../host/dirs.js';
import { sysctlPath } from '../util/sysctl.js';
import { runningMachines } from '../machine/proc.js';
import { applyDeclaredImpairments, labNetemNeeds, requireNetem } from './links.js';

interface NetUpResult {
  lab: string;
  changed: boolean;
  namespaces: string[];
  message: string;
}

/** Refuses namespaces that exist but this lab does not own (the host's or another lab's). */
function checkNoClash(plan: NetworkPlan, own: LabState | undefined): void {
  const present = new Set(listNetns());
  const mine = new Set(own?.namespaces.map((n) => n.netns) ?? []);
  const owners = new Map<string, string>();
  for (const s of allStates()) if (s.lab !== plan.lab) for (const n of s.namespaces) owners.set(n.netns, s.lab);
  const problems: string[] = [];
  for (const ns of plan.namespaces) {
    const other = owners.get(ns.netns);
    if (other) problems.push(`namespace ${ns.netns} belongs to lab "${other}"; give this lab a different \`prefix:\``);
    else if (present.has(ns.netns) && !mine.has(ns.netns))
      problems.push(`namespace ${ns.netns} already exists and is not this lab's; remove it or give this lab a \`prefix:\``);
  }
  if (problems.length) throw new LabctlError(`cannot bring lab "${plan.lab}" up:\n  ${problems.join('\n  ')}`);
}

function stateFor(lab: Lab, plan: NetworkPlan, status: LabState['status'], previous?: LabState): LabState {
  return {
    lab: lab.name,
    source: lab.source,
    planHash: plan.hash,
    status,
    createdAt: previous?.createdAt ?? new Date().toISOString(),
    namespaces: plan.namespaces.map((n) => {
      const router = lab.nodes.find((x) => x.netns === n.netns)?.router;
      return { netns: n.netns, owner: n.owner, role: n.role, ...(router ? { router } : {}) };
    }),
    nats: lab.nats.map((n) => ({
      name: n.name,
      netns: n.netns,
      mapping: n.behaviour.mapping,
      filtering: n.behaviour.filtering,
      ...(n.behaviour.declaredAs ? { declaredAs: n.behaviour.declaredAs } : {}),
    })),
    ...(previous?.machines ? { machines: previous.machines } : {}),
  };
}

async function applyNetwork(plan: NetworkPlan, hooks: NetUpHooks = {}): Promise<void> {
  // One ip process creates every namespace, then every veth and bridge inside them.
  const create = [...plan.namespaces.map((n) => ['netns', 'add', n.netns]), ...plan.linkBatch];
  await run(['ip', '-batch', '-'], { step: 'create namespaces, veth pairs and bridges', input: batchText(create) });
  hooks.namespacesCreated?.();
  hooks.signal?.throwIfAborted();
  await configureNamespaces(
    plan.namespaces.map((ns) => {
      // Modules are global, so what the host's /proc/sys has, every namespace has.
      const present = Object.entries(ns.optionalSysctls).filter(([k]) => existsSync(sysctlPath(k)));
      return {
        netns: ns.netns,
        ipBatch: batchText(ns.ipBatch),
        ...(ns.nftRuleset ? { ruleset: ns.nftRuleset } : {}),
        sysctls: [...Object.entries(ns.sysctls), ...present],
      };
    }),
    configureDir(plan.lab),
  );
  hooks.signal?.throwIfAborted();
  await applyDeclaredImpairments(plan);
}

/** Scratch space of one lab's `net up` (the namespaces' command output). */
const configureDir = (lab: string) => join(runDir(), `.${lab}.configure`);

/** True when every namespace of the plan exists and holds the expected NAT table. */
async function looksUp(plan: NetworkPlan): Promise<boolean> {
  const present = new Set(listNetns());
  if (!plan.namespaces.every((n) => present.has(n.netns))) return false;
  const tables = await Promise.all(
    plan.namespaces
      .filter((n) => n.nftRuleset)
      .map((n) => run(inNetns(n.netns, ['nft', 'list', 'table', 'ip', NAT_TABLE]), { step: `check NAT rules in ${n.netns}`, allowFailure: true })),
  );
  return tables.every((r) => r.exitCode === 0);
}

interface NetUpHooks {
  /**
   * Called once every namespace exists (addresses, routes and NAT rules still to come), so
   * that `labctl up` can start booting machines into them while the network is configured.
   */
  namespacesCreated?: () => void;
  /**
   * Aborted when `labctl up` is interrupted; checked between steps, so that once it is,
   * nothing more is created and the lab is never recorded as up: `up` rolls back once this
   * run has settled, and must find everything it has to remove.
   */
  signal?: AbortSignal;
}

/**
 * Refuses to remove the namespaces of a lab whose machines (started by `labctl up`) still
 * run: they would go on without their network, and with the state file gone `labctl down`
 * could no longer find them to stop them and remove their snapshots. Recorded machines that
 * no longer run (crashed, killed) hold nothing, and do not stop it.
 */
function refuseWhileMachinesRun(state: LabState | undefined, what: string): void {
  if (!state?.machines?.length) return;
  const running = runningMachines(state.machines).map((m) => m.name);
  if (running.length) {
    throw new UsageError(`cannot ${what} of lab "${state.lab}": it has machines running (${running.join(', ')}); use \`labctl down\`, which stops them too`);
  }
}

export async function netUp(lab: Lab): Promise<NetUpResult> {
  return withLabLock(lab.name, () => netUpLocked(lab));
}

/** netUp for a caller that already holds the lab's lock (`labctl up`). */
export async function netUpLocked(lab: Lab, hooks: NetUpHooks = {}): Promise<NetUpResult> {
  const plan = planNetwork(lab);
  {
    const previous = readState(lab.name);
    if (previous?.status === 'up' && previous.planHash === plan.hash && (await looksUp(plan))) {
      return { lab: lab.name, changed: false, namespaces: plan.namespaces.map((n) => n.netns), message: `lab "${lab.name}" is already up; nothing changed` };
    }
    if (previous?.status === 'up' && previous.planHash !== plan.hash) {
      // Even when it no longer looks up: starting afresh would delete the namespaces (and the
      // machines in them) of the definition that is up, which the user did not ask for.
      throw new LabctlError(
        `lab "${lab.name}" is up from a different definition (${previous.source}, changed since or another file); run \`labctl net down\` (or \`labctl down\`) first`,
      );
    }
    // Before anything is created (or an earlier run's leftovers removed): a lab whose links
    // need netem cannot come up on a kernel without it.
    await requireNetem(`cannot bring lab "${lab.name}" up`, labNetemNeeds(lab));
    if (previous) {
      // A crashed or half-removed earlier run: clear what it recorded, then start afresh.
      refuseWhileMachinesRun(previous, 'rebuild the network');
      hooks.signal?.throwIfAborted();
      await deleteNetns(
        previous.namespaces.map((n) => n.netns),
        'clean up an earlier, unfinished run',
      );
      removeState(lab.name);
    }
    checkNoClash(plan, undefined);
    hooks.signal?.throwIfAborted();
    writeState(stateFor(lab, plan, 'creating'));
    try {
      await applyNetwork(plan, hooks);
      hooks.signal?.throwIfAborted();
    } catch (e) {
      // Roll back: everything this run made lives in the namespaces it created.
      try {
        await deleteNetns(
          plan.namespaces.map((n) => n.netns),
          'roll back',
        );
        removeState(lab.name);
      } catch (rollback) {
        throw new LabctlError(`${(e as Error).message}\nrolling back also failed: ${(rollback as Error).message}; run \`labctl net down\``);
      }
      throw new LabctlError(`${(e as Error).message}\nrolled back: nothing of lab "${lab.name}" is left`);
    }
    // Re-read: `labctl up` records machines booting meanwhile, and they must stay recorded.
    writeState(stateFor(lab, plan, 'up', readState(lab.name)));
    return {
      lab: lab.name,
      changed: true,
      namespaces: plan.namespaces.map((n) => n.netns),
      message: `lab "${lab.name}" is up: ${plan.namespaces.length} namespaces`,
    };
  }
}

interface NetDownResult {
  lab: string;
  removed: string[];
  message: string;
}

/** Removes what the lab's state file records; without one, touches nothing. Refused while the lab's machines run. */
export async function netDown(labName: string, options: { lab?: Lab; force?: boolean } = {}): Promise<NetDownResult> {
  return withLabLock(labName, async () => {
    refuseWhileMachinesRun(readState(labName), 'take down the network');
    return netDownLocked(labName, options);
  });
}

export async function netDownLocked(labName: string, options: { lab?: Lab; force?: boolean } = {}): Promise<NetDownResult> {
  const state = readState(labName);
  let doomed = state?.namespaces.map((n) => n.netns) ?? [];
  if (!state) {
    const planned = options.lab ? planNetwork(options.lab).namespaces.map((n) => n.netns) : [];
    const present = new Set(listNetns());
    const strays = planned.filter((n) => present.has(n));
    const owned = new Set(allStates().flatMap((s) => s.namespaces.map((n) => n.netns)));
    if (strays.length && options.force) doomed = strays.filter((n) => !owned.has(n));
    else if (strays.length) {
      return {
        lab: labName,
        removed: [],
        message: `lab "${labName}" is not up (no state file); namespaces with its names exist but are not recorded as its own: ${strays.join(', ')}. Not touching them; \`labctl net down --force\` deletes them`,
      };
    } else return { lab: labName, removed: [], message: `lab "${labName}" is not up; nothing to do` };
  }
  const present = new Set(listNetns());
  const removed = doomed.filter((n) => present.has(n));
  await deleteNetns(doomed);
  rmSync(configureDir(labName), { recursive: true, force: true });
  removeState(labName);
  return {
    lab: labName,
    removed,
    message: removed.length ? `lab "${labName}" is down: removed ${removed.length} namespaces` : `lab "${labName}" is down (its namespaces were already gone)`,
  };
}
