// `labctl probe`: classifies the NAT (or chain of NATs) between where it runs and an RFC
// 5780 STUN server (labctl's own `labctl stun-server`, coturn's turnserver, stuntman), with
// the probes `labctl check` runs inside a lab (src/stun/probes.ts) and check's verdicts
// (src/check/classify.ts, lifetime.ts): mapping, filtering, hairpinning, how outside ports
// and addresses are chosen, and with --lifetime how long idle mappings live. In the current
// network namespace it runs the probes in this process (no root); `--namespace NS` runs
// them in NS through the probe agent, as check does (root).
//
// Unlike check, it cannot flush the NAT (it is someone else's) and the server has one port
// pair: tests run in check's two phases (filtering and hairpinning talk to the server's
// first address only; mapping then to all four endpoints), each run on fresh inside ports
// so that no test sees another's state. A NAT that sends every flow from one outside port
// needs every test on one inside port (--port), or flows to one server endpoint collide.
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { analyse, firstMappings, type TargetRuns } from '../check/classify.js';
import { Agent } from '../check/agent-process.js';
import { governingLifetime, type KindReport, keepaliveFor, kindReport, lifetimeCap, measureLifetimes, type ProbeCall } from '../check/lifetime.js';
import type { Measured, Row } from '../check/model.js';
import { listNetns } from '../host/netns.js';
import { formatEndpoint, type TransportAddress } from '../stun/message.js';
import { type FilteringResult, type HairpinResult, type MappingResult, type Observation, PROBES, type ServerInstance } from '../stun/probes.js';
import { STUN_PORT } from '../stun/serve.js';
import { LabctlError, UsageError } from '../util/errors.js';
import { ALLOCATION_FLOWS, type Allocation, classifyAllocation, describeAllocation, onePortForAll, type Pooling } from '../check/ports.js';
import { type NatBlock, natBlockFor } from './analyse.js';

export interface ProbeOptions {
  /** HOST[:PORT] as given. */
  server: string;
  altServer?: string;
  namespace?: string;
  /** One inside port for every test (a NAT that sends every flow from one outside port). */
  localPort?: number;
  repetitions?: number;
  lifetime?: boolean;
  lifetimeMax?: number;
}

/** The node a written lab puts behind the measured NAT (the `forwards:` of a fixed-port NAT name it). */
export const LAB_NODE = 'client';

export interface ProbeReport {
  from: { netns?: string; hosts: string[] };
  server: { address: string; port: number; other: TransportAddress; otherFrom: 'OTHER-ADDRESS' | '--alt-server'; given: string };
  localPort?: number;
  repetitions: number;
  /** The outside endpoint the server saw first. */
  mapped: TransportAddress;
  measured: Measured & { allocation: Allocation; pooling: Pooling; outsideAddresses: string[] };
  rows: Row[];
  lifetime?: { kinds: KindReport[]; keepalive?: number; keepaliveBasis?: 'measured' | 'lower-bound' };
  /** The `nat:` block that behaves the same (undefined when mapping or filtering is unknown). */
  nat?: NatBlock;
  notExpressible: string[];
  notes: string[];
  /** What could not be measured: the command exits 1. */
  unmeasured: string[];
  durationMs: number;
}

/** "HOST" or "HOST:PORT", HOST an IPv4 address or a DNS name. Pure. */
export function parseEndpointSpec(flag: string, text: string): { host: string; port?: number } {
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[2] === undefined ? undefined : Number(m[2]);
  const bad = () => new UsageError(`${flag} wants HOST or HOST:PORT, HOST an IPv4 address or a name (got "${text}")`);
  if (!m || (port !== undefined && !(port >= 1 && port <= 65535))) throw bad();
  const host = m[1]!;
  // All digits and dots is meant as an address: it must be one.
  if (/^[\d.]+$/.test(host) && !isIPv4(host)) throw bad();
  return { host, ...(port !== undefined ? { port } : {}) };
}

async function resolveHost(flag: string, host: string): Promise<string> {
  if (isIPv4(host)) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch (e) {
    throw new UsageError(`${flag}: cannot resolve "${host}" to an IPv4 address (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

interface Caller {
  call: ProbeCall;
  stop: () => Promise<void>;
}

/** The probes in this process (this namespace), or in NS through a probe agent. */
async function openCaller(netns: string | undefined): Promise<Caller> {
  if (!netns) {
    const ops = PROBES as unknown as Record<string, (a: unknown) => unknown>;
    return { call: async <T>(op: string, args: unknown) => (await ops[op]!(args)) as T, stop: async () => undefined };
  }
  if (!listNetns().includes(netns)) throw new UsageError(`no network namespace "${netns}" (\`ip netns list\` shows the named ones)`);
  const agent = await Agent.start(netns, 'client');
  // Ctrl-C: the agent (a child in NS) goes too.
  const onSignal = () => void agent.stop().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    call: (op, args, ms) => agent.call(op, args, ms),
    stop: async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await agent.stop();
    },
  };
}

const where = (ns: string | undefined) => (ns ? `from ${ns}` : 'from this host');

/** Where the server's second address and port are: --alt-server, else its OTHER-ADDRESS. */
function alternate(
  server: TransportAddress,
  first: Observation,
  alt: { address: string; port?: number } | undefined,
  given: string,
): { other: TransportAddress; from: 'OTHER-ADDRESS' | '--alt-server'; note?: string } {
  const other = first.otherAddress;
  if (alt) {
    const port = alt.port ?? other?.port ?? server.port + 1;
    const note =
      other && (other.address !== alt.address || other.port !== port)
        ? `the server names ${formatEndpoint(other)} as its other address (OTHER-ADDRESS); --alt-server ${formatEndpoint({ address: alt.address, port })} is used instead`
        : undefined;
    return { other: { address: alt.address, port }, from: '--alt-server', ...(note ? { note } : {}) };
  }
  if (!other)
    throw new LabctlError(
      `the STUN server at ${given} sent no OTHER-ADDRESS: it does not do RFC 5780 behaviour discovery (labctl stun-server does; coturn's turnserver needs two -L addresses and no no-rfc5780; or name its second address with --alt-server)`,
    );
  if (other.address === server.address)
    throw new LabctlError(
      `the STUN server at ${given} names its own address as its other address (${formatEndpoint(other)}); point --server at its first address (coturn names its second -L address whatever address was asked), or give --alt-server`,
    );
  return { other, from: 'OTHER-ADDRESS' };
}

export async function runProbe(o: ProbeOptions): Promise<ProbeReport> {
  const started = Date.now();
  const spec = parseEndpointSpec('--server', o.server);
  const altSpec = o.altServer !== undefined ? parseEndpointSpec('--alt-server', o.altServer) : undefined;
  const server: TransportAddress = { address: await resolveHost('--server', spec.host), port: spec.port ?? STUN_PORT };
  const alt = altSpec ? { address: await resolveHost('--alt-server', altSpec.host), ...(altSpec.port !== undefined ? { port: altSpec.port } : {}) } : undefined;
  if (alt && alt.address === server.address) throw new UsageError(`--alt-server must name the server's second address, not ${server.address} again`);
  const R = o.repetitions ?? 3;
  const lp = o.localPort;
  const caller = await openCaller(o.namespace);
  const held: number[] = [];
  try {
    const { hosts } = await caller.call<{ hosts: string[] }>('hosts', {});
    // Every address of this host, loopback ones too (a server on this host may listen there): the server seeing one means nothing translated.
    const { hosts: ownAddresses } = await caller.call<{ hosts: string[] }>('hosts', { loopback: true });
    if (lp !== undefined) {
      try {
        held.push((await caller.call<{ port: number }>('hold', { port: lp })).port);
      } catch (e) {
        throw new UsageError(`--port ${lp}: cannot use that inside port ${where(o.namespace)} (${(e as Error).message})`);
      }
    }
    const first = await caller.call<Observation & { local: number }>('binding', { to: server, ...(lp !== undefined ? { localPort: lp } : {}) });
    if (!first.from)
      throw new LabctlError(
        `no answer from the STUN server at ${o.server} ${where(o.namespace)} (is it running, and is UDP port ${server.port} open on the way?${lp === undefined ? " Or the NAT sends every flow from one outside port, and another flow holds it towards this server: wait for the NAT to forget that flow, or give --port with that flow's inside port" : ''})`,
      );
    if (first.error || !first.mapped)
      throw new LabctlError(`the STUN server at ${o.server} answered a Binding request with an error: ${first.error ?? 'no mapped address'}`);
    const { other, from: otherFrom, note } = alternate(server, first, alt, o.server);
    const instance: ServerInstance = { a1: server.address, p1: server.port, a2: other.address, p2: other.port };
    const notes: string[] = note ? [note] : [];

    // Phase 1: filtering and hairpinning (to the server's first address only).
    let filtering: FilteringResult[];
    let hairpin: HairpinResult[];
    if (lp !== undefined) {
      // Every flow from the one inside port, one test after another; hairpinning's second socket on a held port of its own.
      const b = (await caller.call<{ port: number }>('hold', { port: 0 })).port;
      held.push(b);
      filtering = [];
      for (let k = 0; k < R; k++) filtering.push(await caller.call<FilteringResult>('filtering', { server: instance, localPort: lp }));
      hairpin = [];
      for (let k = 0; k < R; k++) hairpin.push(await caller.call<HairpinResult>('hairpin', { server: instance, localPortA: lp, localPortB: b, learnB: false }));
    } else {
      const runs = Array.from({ length: R });
      [filtering, hairpin] = await Promise.all([
        Promise.all(runs.map(() => caller.call<FilteringResult>('filtering', { server: instance }))),
        Promise.all(runs.map(() => caller.call<HairpinResult>('hairpin', { server: instance }))),
      ]);
    }
    // Phase 2: mapping, over the server's whole address x port matrix.
    const mapping: MappingResult[] = [];
    if (lp !== undefined) for (let k = 0; k < R; k++) mapping.push(await caller.call<MappingResult>('mapping', { server: instance, localPort: lp }));
    else mapping.push(...(await Promise.all(Array.from({ length: R }, () => caller.call<MappingResult>('mapping', { server: instance })))));

    // New mappings one after another, so that their order is the order the NAT handed the
    // ports out (the tests above ran at once). Not where every flow left from one port: fresh
    // inside ports to one server endpoint would only clash there.
    const sequence: (Observation & { local: number })[] = [first];
    if (lp === undefined && !onePortForAll(firstMappings({ filtering, hairpin, mapping, sequence })))
      sequence.push(...(await caller.call<(Observation & { local: number })[]>('sequence', { to: server, count: ALLOCATION_FLOWS })));
    const runs: TargetRuns = { filtering, hairpin, mapping, sequence };
    // check's reading of all of it (src/check/classify.ts): the allocation and pooling rows too.
    const a = analyse(runs, undefined);
    const firsts = firstMappings(runs);
    const measuredPort = a.measured.port;
    let allocation: { value: Allocation; detail: string } = {
      value: typeof measuredPort === 'string' ? { kind: 'unknown' } : measuredPort,
      detail: a.rows.find((r) => r.test === 'port allocation')!.evidence,
    };
    if (lp !== undefined) {
      // Every test used one inside port: one more flow, from a second port to where the first
      // has long been talking, shows how the NAT maps another inside port.
      const b = held[held.length - 1]!;
      const second = await caller.call<Observation & { local: number }>('binding', { to: server, localPort: b });
      const allocated = mapping.flatMap((m) => m.observations.flatMap((x) => (x.mapped ? [x.mapped.port] : [])));
      if (second.mapped) allocation = classifyAllocation([...firsts, { local: second.local, mapped: second.mapped.port }], allocated);
      else if (new Set(firsts.map((x) => x.mapped)).size === 1 && firsts[0]!.mapped !== lp)
        allocation = {
          value: { kind: 'fixed', port: firsts[0]!.mapped },
          detail: `inside port ${lp} left from ${firsts[0]!.mapped} towards every server endpoint, and a flow from inside port ${b} to the same server endpoint got no answer: the NAT has no other outside port for it (every flow leaves from ${firsts[0]!.mapped})`,
        };
    }
    const pooling = { value: a.measured.pooling ?? 'unknown', addresses: a.measured.outsideAddresses ?? [] };
    const rows = a.rows.map((r) =>
      r.test === 'port allocation' ? { test: 'port allocation', measured: describeAllocation(allocation.value), evidence: allocation.detail } : r,
    );

    let lifetime: ProbeReport['lifetime'];
    const unmeasured: string[] = [];
    if (o.lifetime) {
      const why = await lifetimeObstacle(caller, instance, allocation.value);
      if (why) {
        unmeasured.push(`UDP lifetimes: ${why}`);
      } else {
        const caps = { unreplied: lifetimeCap('unreplied', undefined, o.lifetimeMax), stream: lifetimeCap('stream', undefined, o.lifetimeMax) };
        const results = await measureLifetimes(caller.call, caps, () => instance);
        const kinds = results.map((r) => kindReport(r, caps[r.kind], undefined));
        const g = governingLifetime(kinds);
        lifetime = { kinds, ...(g ? { keepalive: keepaliveFor(g.seconds), keepaliveBasis: g.lowerBound ? 'lower-bound' : 'measured' } : {}) };
        for (const k of kinds) rows.push({ test: `${k.kind} lifetime`, measured: lifetimeText(k), evidence: k.estimate.detail });
        rows.push({
          test: 'keepalive',
          measured: lifetime.keepalive !== undefined ? `${lifetime.keepalive} s` : '-',
          evidence: `under the shortest lifetime, a sixth to spare${lifetime.keepaliveBasis === 'lower-bound' ? ' (only known to be longer than the checks went)' : ''}`,
        });
      }
    }
    const untranslated = ownAddresses.includes(first.mapped.address);
    if (untranslated) notes.push(`the server saw ${first.mapped.address}, an address of this host: nothing translates addresses on the way`);
    const block = natBlockFor(
      {
        measured: a.measured,
        allocation: allocation.value,
        pooling: pooling.value,
        poolAddresses: pooling.addresses,
        ...(lifetime ? { lifetimes: lifetime.kinds } : {}),
        ...(lp !== undefined ? { localPort: lp } : {}),
        untranslated,
      },
      LAB_NODE,
    );
    // Lost answers where every flow left from one outside port: flows of different inside ports to one server endpoint collide on it.
    const onePort = allocation.value.kind === 'fixed' || onePortForAll(firsts);
    if (lp === undefined && onePort && (a.measured.mapping === 'unknown' || a.measured.filtering === 'unknown'))
      notes.push(
        'every flow left from one outside port and later flows went unanswered: this NAT may send every flow from one port; run again with --port PORT',
      );
    return {
      from: { ...(o.namespace ? { netns: o.namespace } : {}), hosts },
      server: { address: server.address, port: server.port, other, otherFrom, given: o.server },
      ...(lp !== undefined ? { localPort: lp } : {}),
      repetitions: R,
      mapped: first.mapped,
      measured: { ...a.measured, allocation: allocation.value, pooling: pooling.value, outsideAddresses: pooling.addresses },
      rows,
      ...(lifetime ? { lifetime } : {}),
      ...(block.nat ? { nat: block.nat } : {}),
      notExpressible: block.notExpressible,
      notes: [...notes, ...a.notes],
      unmeasured: [...block.unmeasured, ...unmeasured],
      durationMs: Date.now() - started,
    };
  } finally {
    await Promise.allSettled(held.map((port) => caller.call('release', { port })));
    await caller.stop();
  }
}

function lifetimeText(k: KindReport): string {
  const e = k.estimate;
  return e.verdict === 'measured' ? `${e.seconds} s` : e.verdict === 'longer' ? `> ${e.aliveUpTo?.toFixed(0)} s` : e.verdict;
}

/**
 * Why lifetimes cannot be measured against this server, or undefined. The checks ask the
 * server to answer to a mapping's port (RESPONSE-PORT, RFC 5780 7.5): a server that refuses
 * it (an error response) or ignores it (answers to the request's own port) cannot make
 * them. Many probes share the server's one port pair, which a NAT that sends every flow
 * from one outside port cannot tell apart.
 */
async function lifetimeObstacle(caller: Caller, s: ServerInstance, allocation: Allocation): Promise<string | undefined> {
  if (allocation.kind === 'fixed')
    return `this NAT sends every flow from port ${allocation.port}, so probes on one server port pair collide; measure them in a lab (labctl check --lifetime)`;
  // Port 9 (discard): nothing listens there; an answer that reaches us was not sent to it.
  const r = await caller.call<Observation>('binding', { to: { address: s.a1, port: s.p1 }, responsePort: 9 });
  if (r.error) return `the server refuses RESPONSE-PORT (${r.error}), which the lifetime checks need`;
  if (r.from) return "the server ignores RESPONSE-PORT (it answered to the request's own port), which the lifetime checks need";
  return undefined;
}
