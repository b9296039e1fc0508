// Link impairments on the host: the declared ones as `net up` applies them, the netem check
// before anything is created, and the live commands (`labctl link set|reset|down|up`),
// which change a lab that is up and record what they did in its state.
//
// Everything happens inside the lab's namespaces (`tc -n NS`, `ip -n NS`): the egress
// qdiscs of a link's two veth ends, and the ends themselves for an outage. Nothing is
// ever put on the host's own interfaces.
import { run } from '../exec/run.js';
import type { DoctorCheck } from '../host/doctor.js';
import { batchText } from '../host/netns.js';
import { allStates, type LabState, type LinkLiveState, readState, withLabLock, writeState } from '../host/state.js';
import { describeShaping, type LinkShaping, NO_SHAPING, sameShaping, shapingIsEmpty } from '../lab/impairment.js';
import { loadLab } from '../lab/load.js';
import type { Lab, Link } from '../lab/model.js';
import { linkName } from '../lab/resolve-links.js';
import { type DeviceQdiscs, linkLines, netemNeeds, parseQdiscs } from '../plan/links.js';
import { type NetworkPlan, planNetwork } from '../plan/network.js';
import { LabctlError, UsageError } from '../util/errors.js';

// --- netem ---

let netemCheck: Promise<DoctorCheck> | undefined;

/** Links whose impairment needs netem, with the fields that do. */
export interface NetemNeed {
  link: string;
  fields: string[];
}

/** The declared impairments that need netem. */
export function labNetemNeeds(lab: Lab): NetemNeed[] {
  return lab.links.flatMap((l) => {
    const fields = l.impairment ? netemNeeds(l.impairment) : [];
    return fields.length ? [{ link: linkName(l), fields }] : [];
  });
}

/**
 * Stops `what` before it changes anything when an impairment needs netem and this kernel
 * has none (read as `labctl doctor` reads it: module lists, else a try in a throwaway
 * namespace). Rate limits (tbf) and outages need no netem.
 */
export async function requireNetem(what: string, needs: NetemNeed[]): Promise<void> {
  if (!needs.length) return;
  const { checkKernelFeature } = await import('../host/doctor-read.js');
  netemCheck ??= checkKernelFeature('kernel: sch_netem');
  const check = await netemCheck;
  if (check.ok) return;
  const fields = needs.map((n) => `${n.link} (${n.fields.join(', ')})`).join(', ');
  throw new LabctlError(
    `${what}: ${fields} need${needs.length === 1 && needs[0]!.fields.length === 1 ? 's' : ''} the kernel's netem queueing discipline (sch_netem), which this kernel lacks: ${check.detail}\n` +
      `fix: ${check.fix ?? 'a stock distribution kernel has it (module sch_netem)'}\n` +
      'Rate limits (rate, done with tbf) and outages (`labctl link down`) work without it. Nothing was changed.',
  );
}

// --- tc and ip inside the namespaces ---

async function readQdiscs(netns: string): Promise<Map<string, DeviceQdiscs>> {
  const r = await run(['tc', '-n', netns, '-j', 'qdisc', 'show'], { step: `read the queueing disciplines in ${netns}` });
  return parseQdiscs(r.stdout);
}

/** One `tc -batch` per namespace (given as netns -> lines), all at once. */
async function runTcBatches(byNetns: Map<string, string[][]>, step: string): Promise<void> {
  await Promise.all(
    [...byNetns]
      .filter(([, lines]) => lines.length)
      .map(([netns, lines]) => run(['tc', '-n', netns, '-batch', '-'], { step: `${step} in ${netns}`, input: batchText(lines) })),
  );
}

/** `net up`'s last step: the declared impairments, once the namespaces are configured. */
export async function applyDeclaredImpairments(plan: NetworkPlan): Promise<void> {
  await runTcBatches(new Map(plan.namespaces.filter((n) => n.tcBatch?.length).map((n) => [n.netns, n.tcBatch!])), 'set the declared link impairments');
}

/** Gives links their new impairments: the namespaces' qdiscs read once each, then one batch per namespace. */
async function applyShapings(changes: { link: Link; shaping: LinkShaping }[], step: string): Promise<void> {
  const namespaces = [...new Set(changes.flatMap((c) => [c.link.a.netns, c.link.b.netns]))];
  const readings = new Map(await Promise.all(namespaces.map(async (ns) => [ns, await readQdiscs(ns)] as const)));
  const byNetns = new Map<string, string[][]>();
  for (const { link, shaping } of changes) {
    const ends = linkLines(link, shaping, { a: readings.get(link.a.netns)?.get(link.a.ifname), b: readings.get(link.b.netns)?.get(link.b.ifname) });
    for (const e of ends) byNetns.set(e.netns, [...(byNetns.get(e.netns) ?? []), ...e.lines]);
  }
  await runTcBatches(byNetns, step);
}

// --- the lab a live command works on ---

export interface LinkTarget {
  state: LabState;
  lab: Lab;
}

/** The lab file a lab came up from, if it still resolves to what is up. */
function labOfState(state: LabState): Lab {
  const lab = loadLab(state.source);
  if (planNetwork(lab).hash !== state.planHash) {
    throw new UsageError(
      `lab "${state.lab}" came up from ${state.source}, which has changed since: labctl link works on the definition that is up; put the file back, or \`labctl down\` and bring it up again`,
    );
  }
  return lab;
}

/**
 * The lab a `link` command is about: the one named, else the one that is up (with members
 * `wanted`, when several are up).
 */
export function linkTarget(labName: string | undefined, wanted: string[] = []): LinkTarget {
  const up = allStates().filter((s) => s.status === 'up');
  if (labName !== undefined) {
    const state = up.find((s) => s.lab === labName);
    if (!state) throw new UsageError(`lab "${labName}" is not up${up.length ? ` (up: ${up.map((s) => s.lab).join(', ')})` : ' (no lab is up)'}`);
    return { state, lab: labOfState(state) };
  }
  if (!up.length) throw new UsageError('no lab is up; start one with `sudo labctl net up` (or `labctl up`), then change its links');
  if (up.length === 1) return { state: up[0]!, lab: labOfState(up[0]!) };
  const fits = up.filter((s) => {
    try {
      const lab = loadLab(s.source);
      return wanted.every((w) => [lab.internet.name, ...lab.nats.map((n) => n.name), ...lab.nodes.map((n) => n.name)].includes(w));
    } catch {
      return false;
    }
  });
  if (fits.length === 1 && wanted.length) return { state: fits[0]!, lab: labOfState(fits[0]!) };
  throw new UsageError(`several labs are up (${up.map((s) => s.lab).join(', ')}); name one with --lab`);
}

/** What a link does now: the live change, else the declaration. */
export function effectiveShaping(link: Link, state: LabState): LinkShaping {
  return liveOf(state, linkName(link))?.impairment ?? link.impairment ?? NO_SHAPING;
}

const liveOf = (state: LabState, name: string): LinkLiveState | undefined => state.links?.find((l) => l.link === name);

/**
 * The state with one link's live entry changed (pure): an impairment that is what the lab
 * file declares is no live change, and an entry with nothing left goes.
 */
export function withLiveChange(state: LabState, link: Link, change: (entry: LinkLiveState) => void): LabState {
  const name = linkName(link);
  const entry: LinkLiveState = { ...(liveOf(state, name) ?? { link: name }) };
  change(entry);
  if (entry.impairment && sameShaping(entry.impairment, link.impairment ?? NO_SHAPING)) delete entry.impairment;
  const others = (state.links ?? []).filter((l) => l.link !== name);
  const links = entry.impairment || entry.down ? [...others, entry] : others;
  const { links: _old, ...rest } = state;
  return links.length ? { ...rest, links } : rest;
}

/** Records a link's live state (re-read under the lab's lock: `up` may record machines meanwhile). */
function record(labName: string, link: Link, change: (entry: LinkLiveState) => void): void {
  const state = readState(labName);
  if (!state) throw new LabctlError(`lab "${labName}" went down meanwhile`);
  writeState(withLiveChange(state, link, change));
}

// --- the live commands ---

export interface LinkChange {
  link: string;
  impairment: LinkShaping;
  message: string;
}

/**
 * Replaces the impairments of links in one step each (`tc qdisc replace`: never a moment
 * with none). On failure, puts back what they had, and says so.
 */
export async function setLinks(target: LinkTarget, changes: { link: Link; shaping: LinkShaping }[]): Promise<LinkChange[]> {
  const { lab } = target;
  const needs = changes.flatMap(({ link, shaping }) => {
    const fields = netemNeeds(shaping);
    return fields.length ? [{ link: linkName(link), fields }] : [];
  });
  await requireNetem('cannot change the link', needs);
  return withLabLock(lab.name, async () => {
    const state = readState(lab.name);
    if (state?.status !== 'up') throw new UsageError(`lab "${lab.name}" is not up`);
    const before = changes.map(({ link }) => ({ link, shaping: effectiveShaping(link, state) }));
    try {
      await applyShapings(changes, 'change link impairments');
    } catch (e) {
      try {
        await applyShapings(before, 'put the link impairments back');
      } catch (r) {
        throw new LabctlError(`${(e as Error).message}\nputting the links back also failed: ${(r as Error).message}`);
      }
      throw new LabctlError(`${(e as Error).message}\nput back: ${before.map((b) => `${linkName(b.link)} (${describeShaping(b.shaping)})`).join(', ')}`);
    }
    for (const { link, shaping } of changes) record(lab.name, link, (entry) => void (entry.impairment = shaping));
    return changes.map(({ link, shaping }) => ({
      link: linkName(link),
      impairment: shaping,
      message: shapingIsEmpty(shaping) ? `${linkName(link)}: no impairment` : `${linkName(link)}: ${describeShaping(shaping)}`,
    }));
  });
}

/**
 * An outage: both ends' interfaces down, so each loses its carrier. The kernel drops the
 * IPv4 routes through them (a default route too); conntrack entries and the NAT's learned
 * mappings stay, and age on their own timers (labctl's NAT rules use `snat`, not
 * `masquerade`, whose device notifier would flush them).
 */
export async function linkDown(target: LinkTarget, link: Link): Promise<string> {
  return withLabLock(target.lab.name, async () => {
    await Promise.all(
      [link.a, link.b].map((end) =>
        run(['ip', '-n', end.netns, 'link', 'set', 'dev', end.ifname, 'down'], { step: `take ${end.ifname} down in ${end.netns}` }),
      ),
    );
    record(target.lab.name, link, (entry) => void (entry.down = true));
    return `${linkName(link)} is down (${link.a.ifname} in ${link.a.netns}, ${link.b.ifname} in ${link.b.netns})`;
  });
}

/** The plan's routes of a namespace, as `ip route replace` lines (idempotent). */
export function routeLines(plan: NetworkPlan, netns: string): string[][] {
  const ns = plan.namespaces.find((n) => n.netns === netns);
  return (ns?.ipBatch ?? []).filter((l) => l[0] === 'route' && l[1] === 'add').map((l) => ['route', 'replace', ...l.slice(2)]);
}

/** Ends an outage: both ends up, then the plan's routes of both namespaces put back (the kernel removed them with the link). */
export async function linkUp(target: LinkTarget, link: Link): Promise<string> {
  return withLabLock(target.lab.name, async () => {
    await Promise.all(
      [link.a, link.b].map((end) => run(['ip', '-n', end.netns, 'link', 'set', 'dev', end.ifname, 'up'], { step: `bring ${end.ifname} up in ${end.netns}` })),
    );
    const plan = planNetwork(target.lab);
    await Promise.all(
      [...new Set([link.a.netns, link.b.netns])].map((netns) => {
        const lines = routeLines(plan, netns);
        return lines.length ? run(['ip', '-n', netns, '-batch', '-'], { step: `put back the routes in ${netns}`, input: batchText(lines) }) : undefined;
      }),
    );
    record(target.lab.name, link, (entry) => void delete entry.down);
    return `${linkName(link)} is up`;
  });
}
