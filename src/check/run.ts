// `labctl check`: classify every NAT from inside the lab with RFC 5780 tests.
//
// For each target (a NAT, probed through a node behind it) the probes run in two phases,
// with NAT state flushed before and after; between the phases only on paths through a
// fixed-port NAT (whose probes share one outside port), or on every path of NATs labctl did
// not build (nothing is known of them):
//   phase 1  filtering (RFC 5780 4.4) and hairpinning (4.5): they send to the server's
//            first address only, so address-dependent filtering learns nothing about the
//            second address the filtering test needs to be a stranger;
//   phase 2  mapping (4.3) over the server's whole address x port matrix.
// Each test runs `repetitions` times, each on fresh inside ports and on its own server port
// pair (so that on a NAT that sends every flow from one outside port, concurrent probes do
// not collide on one remote endpoint), all targets and repetitions at once. With fewer port
// pairs than concurrent probes (a third-party server has one), probes run in waves with a
// flush between waves.
import { UsageError } from '../util/errors.js';
import type { Dependency } from '../lab/behaviour.js';
import type { Lab } from '../lab/model.js';
import { listNetns } from '../host/netns.js';
import type { TransportAddress } from '../stun/message.js';
import type { FilteringResult, HairpinResult, MappingResult, Observation, QuotaProbeResult, ServerInstance } from '../stun/probes.js';
import { analyse, classifyMappingRun, firstMappings, type TargetRuns } from './classify.js';
import { ALLOCATION_FLOWS, onePortForAll } from './ports.js';
import { labTargets } from './declared.js';
import { discoverPath } from './discover.js';
import { filteringUnderLoss, type PathTiming, pathIsLossy, pathTiming, type RttSamples, sendTime, withFilteringUnderLoss } from './impaired.js';
import type { CheckReport, Declared, PathHop, Target, TargetReport } from './model.js';
import { flushHops, type Session, type SessionOptions, trace, untilSignal, withSession } from './session.js';

export interface CheckOptions {
  /** labctl mode: the lab (its network must be up). */
  lab?: Lab;
  /** labctl mode only: just this NAT. */
  nat?: string;
  /** Namespace mode: inside namespaces to probe from (NATs labctl did not build). */
  namespaces?: string[];
  serverNamespace?: string;
  /** Inside port for the filtering and hairpinning probes (namespace mode). */
  localPort?: number;
  /** Namespace mode: the behaviour the NATs should have. */
  expect?: { mapping: Dependency; filtering: Dependency };
  repetitions?: number;
  serverAddresses?: [string, string];
  externalServer?: TransportAddress;
  /**
   * `--quota`: open flows from each node until one is refused. true: up to its declared
   * limit and a few more (or QUOTA_CAP without one); a number: up to that many.
   */
  quota?: boolean | number;
}

/** Flows `--quota` opens at most where nothing is declared. */
export const QUOTA_CAP = 2048;
/** Flows past a declared limit `--quota` opens, to see the limit hold. */
const QUOTA_MARGIN = 16;

interface ResolvedTargets {
  targets: Target[];
  serverNetns: string;
  lab?: string;
}

/** Which NATs to probe from where, and where the server runs. */
export async function resolveTargets(options: CheckOptions): Promise<ResolvedTargets> {
  if (options.lab) {
    const lab = options.lab;
    if (options.nat && !lab.nats.some((n) => n.name === options.nat)) {
      throw new UsageError(`lab "${lab.name}" has no NAT "${options.nat}" (it has ${lab.nats.map((n) => n.name).join(', ') || 'none'})`);
    }
    const targets = labTargets(lab, options.nat);
    const present = new Set(listNetns());
    const needed = [lab.internet.netns, ...targets.flatMap((t) => [t.probe.netns, ...t.path.map((h) => h.netns)])];
    const missing = [...new Set(needed.filter((n) => !present.has(n)))];
    if (missing.length) throw new UsageError(`lab "${lab.name}" is not up (no namespace ${missing.join(', ')}): run \`labctl net up ${lab.source}\` first`);
    if (options.localPort !== undefined) for (const t of targets) Object.assign(t, { localPort: options.localPort, mappingPort: options.localPort });
    return { targets, serverNetns: lab.internet.netns, lab: lab.name };
  }
  const namespaces = options.namespaces ?? [];
  if (namespaces.length === 0) throw new UsageError('give a lab file, or --namespace NS for namespaces labctl did not build');
  // Not silently ignored: NATs found by following routes have no names to pick one by.
  if (options.nat) throw new UsageError('--nat goes with a lab file; with --namespace, name only the namespaces to probe from');
  const paths = await Promise.all(namespaces.map((ns) => discoverPath(ns, options.serverNamespace)));
  const ends = [...new Set(paths.map((p) => p.end))];
  if (ends.length > 1) throw new UsageError(`the namespaces reach different internets (${ends.join(', ')}); give --server-namespace`);
  const serverNetns = options.serverNamespace ?? ends[0]!;
  const targets = namespaces.map((ns, i): Target => {
    const hops = paths[i]!.hops;
    const notes = [`path found by following default routes: ${[ns, ...hops.map((h) => h.netns), serverNetns].join(' -> ')}`];
    if (hops.length === 0) notes.push(`${ns} reaches ${serverNetns} without a NAT in between`);
    const declared: Declared | undefined = options.expect ? { ...options.expect } : undefined;
    return {
      name: hops[0]?.netns ?? ns,
      probe: { netns: ns },
      path: hops,
      group: hops[hops.length - 1]?.netns ?? ns,
      ...(options.localPort !== undefined ? { localPort: options.localPort, mappingPort: options.localPort } : {}),
      ...(declared ? { declared } : {}),
      notes,
    };
  });
  return { targets, serverNetns };
}

/**
 * The session options every check mode shares: which server (labctl's, or a third-party one
 * with `--server`), and what its addresses must not clash with (the lab's subnets, or in
 * namespace mode those found in the namespaces involved).
 */
export function serverPlacement(
  options: CheckOptions,
  serverNetns: string,
  involvedNetns: string[],
): Pick<SessionOptions, 'serverNetns' | 'lab' | 'scanNetns' | 'serverAddresses' | 'externalServer'> {
  return {
    serverNetns,
    ...(options.lab ? { lab: options.lab } : { scanNetns: involvedNetns }),
    ...(options.serverAddresses ? { serverAddresses: options.serverAddresses } : {}),
    ...(options.externalServer ? { externalServer: options.externalServer } : {}),
  };
}

/** The session of a check that probes `targets`: perTarget probes each at once, its NATs flushed before they start. */
export function targetsSession(options: CheckOptions, serverNetns: string, targets: Target[], perTarget: number): SessionOptions {
  const hops = targets.flatMap((t) => t.path);
  return {
    ...serverPlacement(options, serverNetns, [...targets.map((t) => t.probe.netns), ...hops.map((h) => h.netns)]),
    // NATs forget earlier flows while the server and agents start.
    prepare: () => flushHops(hops),
    clientNetns: targets.map((t) => t.probe.netns),
    portPairs: pairsNeeded(targets, perTarget),
  };
}

/** Slot numbers of concurrent probes: targets that share an outside NAT never share a server port pair. */
export function assignSlots(targets: Target[], perTarget: number): Map<Target, number> {
  const byGroup = new Map<string, Target[]>();
  for (const t of targets) byGroup.set(t.group, [...(byGroup.get(t.group) ?? []), t]);
  const base = new Map<Target, number>();
  for (const ts of byGroup.values()) for (const [i, t] of ts.entries()) base.set(t, i * perTarget);
  return base;
}

export function pairsNeeded(targets: Target[], perTarget: number): number {
  const byGroup = new Map<string, number>();
  for (const t of targets) byGroup.set(t.group, (byGroup.get(t.group) ?? 0) + 1);
  return Math.max(1, ...byGroup.values()) * perTarget;
}

interface Task<R> {
  target: Target;
  slot: number;
  /** Its own wave (a target whose NAT allows few flows at once), else by its slot. */
  wave?: number;
  run: (instance: ServerInstance) => Promise<R>;
  result?: R;
  error?: string;
}

/** Runs tasks concurrently, in waves of at most one task per server port pair, flushing NATs between waves. */
async function runWaves<R>(session: Session, tasks: Task<R>[], hops: PathHop[]): Promise<void> {
  const n = session.instances.length;
  const waves = new Map<number, Task<R>[]>();
  for (const t of tasks) {
    const w = t.wave ?? Math.floor(t.slot / n);
    waves.set(w, [...(waves.get(w) ?? []), t]);
  }
  const order = [...waves.keys()].sort((a, b) => a - b);
  for (const [i, w] of order.entries()) {
    if (i > 0) await flushHops(hops);
    await Promise.all(
      waves.get(w)!.map(async (t) => {
        try {
          t.result = await t.run(session.instances[t.slot % n]!);
        } catch (e) {
          t.error = (e as Error).message;
        }
      }),
    );
  }
}

type Retransmit = (t: Target) => { retransmit: PathTiming['retransmit'] };
type BindingResult = Observation & { local: number };

/**
 * Phase 3: how ports are handed out: new mappings one after another from fresh inside ports
 * (the runs before went at once), fewer within a small limit (the NAT is flushed before
 * them). Not where every flow so far left from one outside port, nor with one inside port
 * for everything (--port): fresh inside ports to one server endpoint would only clash there.
 */
function allocationTasks(
  session: Session,
  targets: Target[],
  slots: Map<Target, number>,
  runsSoFar: (t: Target) => TargetRuns,
  rt: Retransmit,
): Task<BindingResult[]>[] {
  return targets.flatMap((t) => {
    if (t.mappingPort !== undefined || onePortForAll(firstMappings(runsSoFar(t)))) return [];
    const a = session.agent(t.probe.netns);
    const flows = Math.min(ALLOCATION_FLOWS, t.declared?.limit?.flows ?? ALLOCATION_FLOWS);
    return [
      {
        target: t,
        slot: slots.get(t)!,
        run: (server: ServerInstance) => a.call<BindingResult[]>('sequence', { to: { address: server.a1, port: server.p1 }, count: flows, ...rt(t) }),
      },
    ];
  });
}

/**
 * Phase 4 (--quota): flows from each node until one is refused, up to the declared limit and
 * a few more (or the cap); targets behind one outside NAT take turns (their flows may count
 * against one quota there). Not where every flow leaves from one port (`noSequence`: no
 * allocation sequence could run), said in `notes`.
 */
function quotaTasks(
  session: Session,
  targets: Target[],
  slots: Map<Target, number>,
  quota: true | number,
  rt: Retransmit,
  noSequence: (t: Target) => boolean,
  notes: Map<Target, string>,
): Task<QuotaProbeResult>[] {
  return targets.flatMap((t) => {
    // Where no allocation sequence could run, for the same reason.
    if (noSequence(t)) {
      notes.set(
        t,
        'no quota measured: every flow leaves from one outside port (or one inside port was asked for), so new flows to one server endpoint would only clash',
      );
      return [];
    }
    const cap = typeof quota === 'number' ? quota : t.declared?.limit ? t.declared.limit.flows + QUOTA_MARGIN : QUOTA_CAP;
    const a = session.agent(t.probe.netns);
    return [
      {
        target: t,
        slot: slots.get(t)!,
        run: (server: ServerInstance) =>
          a.call<QuotaProbeResult>(
            'quota',
            { to: { address: server.a1, port: server.p1 }, other: { address: server.a1, port: server.p2 }, cap, ...rt(t) },
            300_000,
          ),
      },
    ];
  });
}

/**
 * New mappings each probe opens at the NAT (filtering 1; hairpinning 2 and the hairpinned
 * flow; mapping 1 per inside port under EIM, 2 under ADM, 4 under APDM), so that a target
 * whose NAT allows fewer flows at once (a quota, a port block) than a phase opens runs its
 * probes one per wave, its NAT flushed between them.
 */
const MAPPINGS_PER_PROBE = {
  filtering: 1,
  hairpin: 3,
  mapping: { 'endpoint-independent': 1, 'address-dependent': 2, 'address-and-port-dependent': 4 },
} as const;

function tightTargets(targets: Target[], R: number): Set<Target> {
  return new Set(
    targets.filter((t) => {
      const limit = t.declared?.limit?.flows;
      if (limit === undefined) return false;
      const phase1 = R * (MAPPINGS_PER_PROBE.filtering + MAPPINGS_PER_PROBE.hairpin);
      const phase2 = R * MAPPINGS_PER_PROBE.mapping[t.declared!.mapping];
      return limit < Math.max(phase1, phase2, ALLOCATION_FLOWS) + 1;
    }),
  );
}

export async function runCheck(options: CheckOptions): Promise<CheckReport> {
  const started = Date.now();
  const R = options.repetitions ?? 3;
  const { targets, serverNetns, lab } = await resolveTargets(options);
  const hops = targets.flatMap((t) => t.path);
  // Between the phases, only NATs whose probes share outside ports need to forget: those
  // that send every flow from one port. Elsewhere every probe has its own inside port and so
  // its own mapping. (For NATs labctl did not build nothing is known: all of them.)
  const fixed = new Set(options.lab?.nats.filter((n) => n.behaviour.fixedPort !== undefined).map((n) => n.name));
  const betweenPhases = options.lab ? targets.filter((t) => t.path.some((h) => fixed.has(h.name))).flatMap((t) => t.path) : hops;
  const perTarget = 2 * R; // phase 1: R filtering + R hairpinning runs
  const slots = assignSlots(targets, perTarget);
  const tight = tightTargets(targets, R);
  // A tight target's probes: one per wave, after the waves everything else shares.
  const own = (t: Target, k: number) => (tight.has(t) ? { wave: 1000 + k } : {});
  return withSession(targetsSession(options, serverNetns, targets, perTarget), async (session) => {
    const heldPorts = targets.filter((t) => t.localPort !== undefined);
    await Promise.all(heldPorts.map((t) => session.agent(t.probe.netns).call('hold', { port: t.localPort })));
    const lp = (t: Target) => (t.localPort !== undefined ? { localPort: t.localPort } : {});
    trace('flushed');
    // Each path's round trip and loss first (src/check/impaired.ts): the probes' timeouts
    // follow it. Then NATs forget those flows (a NAT with one outside port for every flow
    // would have one of them on a server endpoint a probe uses).
    const timings = new Map<Target, PathTiming>();
    await Promise.all(
      targets.map(async (t) => {
        const inst = session.instances[slots.get(t)! % session.instances.length]!;
        const m = await session.agent(t.probe.netns).call<RttSamples>('rtt', { to: { address: inst.a1, port: inst.p1 } });
        timings.set(t, pathTiming(m, R));
      }),
    );
    await flushHops(hops);
    trace('round trips measured');
    const rt = (t: Target) => ({ retransmit: timings.get(t)!.retransmit });
    const filteringTiming = (t: Target) => {
      const tm = timings.get(t)!;
      // Every changed request has its tries and their round trips before no answer counts.
      return { ...rt(t), graceMs: tm.sentinelGraceMs, holdMs: sendTime(tm.retransmit, tm.filteringTries - 1) + tm.medianMs + 50 };
    };
    // Phase 1: filtering and hairpinning.
    const filtering: Task<FilteringResult>[] = [];
    const hairpin: Task<HairpinResult>[] = [];
    for (const t of targets) {
      const a = session.agent(t.probe.netns);
      for (let k = 0; k < R; k++) {
        filtering.push({
          target: t,
          slot: slots.get(t)! + k,
          ...own(t, k),
          run: (server) => a.call<FilteringResult>('filtering', { server, ...lp(t), ...filteringTiming(t) }),
        });
        hairpin.push({
          target: t,
          slot: slots.get(t)! + R + k,
          ...own(t, R + k),
          run: (server) => a.call<HairpinResult>('hairpin', { server, ...rt(t), ...(t.localPort !== undefined ? { localPortA: t.localPort } : {}) }),
        });
      }
    }
    await runWaves<FilteringResult | HairpinResult>(session, [...filtering, ...hairpin] as Task<FilteringResult | HairpinResult>[], hops);
    trace('phase 1 (filtering, hairpinning) done');
    await flushHops(betweenPhases);
    // Phase 2: mapping.
    const mapSlots = assignSlots(targets, R);
    const mapping: Task<MappingResult>[] = [];
    for (const t of targets) {
      const a = session.agent(t.probe.netns);
      const mp = t.mappingPort !== undefined ? { localPort: t.mappingPort } : {};
      for (let k = 0; k < R; k++)
        mapping.push({ target: t, slot: mapSlots.get(t)! + k, ...own(t, k), run: (server) => a.call<MappingResult>('mapping', { server, ...mp, ...rt(t) }) });
    }
    await runWaves(session, mapping, hops);
    trace('phase 2 (mapping) done');
    session.atEnd(() => flushHops(hops));

    // A mapping run that fits no class while the target's other runs agree is run again, up
    // to twice: a random allocator in a small range (a 64-port block) gives two of a run's four
    // mappings one port now and then, which does not repeat; a NAT that really maps so does.
    const retried = new Map<Target, string[]>();
    const verdict = (r: MappingResult | undefined) => (r ? classifyMappingRun(r).value : 'unknown');
    for (let attempt = 0; attempt < 2; attempt++) {
      const odd = mapping.filter(
        (x) => verdict(x.result) === 'inconsistent' && mapping.some((y) => y.target === x.target && !['inconsistent', 'unknown'].includes(verdict(y.result))),
      );
      if (odd.length === 0) break;
      const again: Task<MappingResult>[] = odd.map((x) => ({ target: x.target, slot: x.slot, ...(x.wave !== undefined ? { wave: x.wave } : {}), run: x.run }));
      await runWaves(session, again, hops);
      for (const [i, x] of odd.entries()) {
        const r = again[i]!.result;
        if (!r) continue;
        const notes = retried.get(x.target) ?? [];
        notes.push(`a mapping run fitting no class (${classifyMappingRun(x.result!).detail}) was run again: ${classifyMappingRun(r).detail}`);
        retried.set(x.target, notes);
        x.result = r;
      }
    }

    // Phase 3: how ports are handed out (allocationTasks).
    const oneSlot = assignSlots(targets, 1);
    const runsSoFar = (t: Target): TargetRuns => ({
      filtering: filtering.filter((x) => x.target === t && x.result).map((x) => x.result!),
      hairpin: hairpin.filter((x) => x.target === t && x.result).map((x) => x.result!),
      mapping: mapping.filter((x) => x.target === t && x.result).map((x) => x.result!),
    });
    const sequence = allocationTasks(session, targets, oneSlot, runsSoFar, rt);
    if (tight.size) await flushHops(hops);
    await runWaves(session, sequence, hops);
    trace('phase 3 (port allocation) done');

    // Phase 4 (--quota): from a clean NAT (quotaTasks).
    const quotaNotes = new Map<Target, string>();
    const quota = options.quota ? quotaTasks(session, targets, oneSlot, options.quota, rt, (t) => !sequence.some((x) => x.target === t), quotaNotes) : [];
    if (options.quota) {
      await flushHops(hops);
      await runWaves(session, quota, hops);
      trace('phase 4 (quota) done');
    }

    const reports: TargetReport[] = targets.map((t) => {
      const errors = [...filtering, ...hairpin, ...mapping, ...sequence, ...quota].filter((x) => x.target === t && x.error).map((x) => x.error!);
      if (errors.length) throw new Error(`probing ${t.name} from ${t.probe.netns} failed: ${errors[0]}`);
      const seq = sequence.find((x) => x.target === t)?.result;
      const q = quota.find((x) => x.target === t)?.result;
      const runs: TargetRuns = {
        filtering: filtering.filter((x) => x.target === t).map((x) => x.result!),
        hairpin: hairpin.filter((x) => x.target === t).map((x) => x.result!),
        mapping: mapping.filter((x) => x.target === t).map((x) => x.result!),
        ...(seq ? { sequence: seq } : {}),
        ...(q ? { quota: q } : {}),
      };
      const tm = timings.get(t)!;
      const a = analyse(runs, t.declared);
      const pathNote =
        tm.rttMs >= 5 || tm.lost > 0
          ? [
              `path to the server: round trip ${tm.rttMs} ms (median ${tm.medianMs} ms), ${tm.lost} of ${tm.sent} single requests lost; retransmission after ${tm.retransmit.rto} ms, ${tm.filteringTries} tries per filtering request`,
            ]
          : [];
      const report = {
        name: t.name,
        probe: t.probe,
        path: t.path.map((h) => h.name),
        ...(t.declared ? { declared: t.declared } : {}),
        ...a,
        notes: [...t.notes, ...pathNote, ...(retried.get(t) ?? []), ...(quotaNotes.has(t) ? [quotaNotes.get(t)!] : []), ...a.notes],
      };
      return pathIsLossy(tm, runs.filtering) ? withFilteringUnderLoss(report, filteringUnderLoss(runs.filtering, tm.filteringTries, tm)) : report;
    });
    return {
      ...(lab ? { lab } : {}),
      server: session.server,
      repetitions: R,
      targets: reports,
      match: reports.every((r) => r.match !== false),
      unmeasured: reports.filter((r) => r.measured.mapping === 'unknown' || r.measured.filtering === 'unknown').map((r) => r.name),
      durationMs: Date.now() - started,
    };
  });
}

/**
 * `labctl check --serve`: labctl's STUN server alone, on its two addresses in the internet
 * namespace, for third-party clients (turnutils_stunclient, turnutils_natdiscovery, a WebRTC
 * stack...), until SIGINT/SIGTERM or `seconds`. onReady gets where it listens.
 */
export async function runServe(options: CheckOptions & { seconds?: number }, onReady: (server: CheckReport['server']) => void): Promise<void> {
  const { serverNetns, targets } = await resolveTargets(options);
  await withSession(
    {
      // labctl's own server always: serving is what --serve is for.
      ...serverPlacement({ ...options, externalServer: undefined }, serverNetns, [
        ...targets.map((t) => t.probe.netns),
        ...targets.flatMap((t) => t.path.map((h) => h.netns)),
      ]),
      clientNetns: [],
      portPairs: 1,
    },
    async (session) => {
      onReady(session.server);
      const stop = untilSignal();
      if (options.seconds !== undefined) await Promise.race([stop, new Promise((r) => setTimeout(r, options.seconds! * 1000))]);
      else await stop;
    },
  );
}
