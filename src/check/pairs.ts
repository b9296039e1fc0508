// `labctl check --pairs`: can every pair of nodes talk directly, as real peers find out?
// Each node opens one socket (as WireGuard or an ICE agent would) and gathers its candidates
// as ICE does (RFC 8445 5.1): its own addresses (host) and the endpoint the STUN server saw
// (server-reflexive). Then every node sends connectivity checks to every candidate of every
// other node at once for a second, and answers every check it gets to wherever it came
// from; a check succeeds when its answer comes back from the endpoint it was sent to
// (7.2.5). A pair can talk when a check between them succeeds: host (one LAN), server-
// reflexive (through the NATs), hairpinned (through the outside address of a NAT both sit
// behind) or peer-reflexive (to a peer's own address, through the sender's NAT). For
// each check, a model of the NATs on both paths (src/check/punch-model.ts) says what should
// happen and, when not, which NAT drops it and why (marked as predicted: the nodes cannot
// see it); a check that behaved otherwise than the model predicts is flagged.
import type { Nat } from '../lab/model.js';
import type { CandidateKind, PunchArrival, PunchLearnResult, PunchResult } from '../stun/probes.js';
import { formatEndpoint, type TransportAddress } from '../stun/message.js';
import { table } from '../report/table.js';
import { forwardedPort, natPath } from './declared.js';
import type { CheckReport, PathHop } from './model.js';
import {
  bestCheck,
  type CheckPrediction,
  explainCheck,
  type ModelNat,
  type ModelNode,
  type PairTalkPrediction,
  type PathKind,
  pathKind,
  predictChecks,
  type SeenAs,
} from './punch-model.js';
import { resolveTargets, serverPlacement, type CheckOptions } from './run.js';
import { serverLine } from './report.js';
import { flushHops, withSession } from './session.js';

export interface Candidate {
  kind: CandidateKind;
  endpoint: TransportAddress;
}

export interface PairNode {
  name: string;
  netns: string;
  localPort?: number;
  learned?: TransportAddress;
  /** Host candidates (its own addresses, on its punching socket's port), then the server-reflexive one unless it is one of them. */
  candidates?: Candidate[];
}

type Predicted = boolean | 'either';

/** One check: from a node to one kind of candidate of another. */
export interface CheckCell {
  from: string;
  to: string;
  candidate: CandidateKind;
  /** The endpoints of that kind it was sent to. */
  endpoints: TransportAddress[];
  /** The check arrived at the peer's punching socket. */
  delivered: boolean;
  /** Where it appeared to come from, at the receiver. */
  seenFrom?: TransportAddress;
  /** How the receiver saw the sender, and so the path it took (when delivered). */
  seenAs?: SeenAs;
  path?: PathKind;
  /** Its answer came back from the endpoint the check went to: the check succeeded. */
  answered: boolean;
  /** What the NATs' behaviour predicts ('either': it depends on whose packet comes first, so either outcome matches). */
  predicted?: { delivered: Predicted; answered: Predicted };
  /** Why it failed (or, when the model disagrees with what happened, that). */
  why?: string;
  /** Whether `why` was seen (or is what was seen against the model), or is the model's prediction only. */
  basis?: 'observed' | 'predicted';
  /** Undefined when nothing was predicted, or the check could not be tried. */
  match?: boolean;
}

/** One direction, every candidate together: does anything a sends reach b? */
interface PairCell {
  from: string;
  to: string;
  delivered: boolean;
  seenFrom?: TransportAddress;
  predicted?: Predicted;
  why?: string;
  basis?: 'observed' | 'predicted';
  match?: boolean;
}

/** One unordered pair. */
interface PairLink {
  a: string;
  b: string;
  /** A check between them succeeded (either way): they can talk directly, both ways. */
  both: boolean;
  /** The succeeded check ICE would pick (RFC 8445 6.1.2.3 pair priority). */
  via?: { from: string; to: string; candidate: CandidateKind; path: PathKind };
  predicted?: Predicted;
  predictedVia?: PathKind;
  match?: boolean;
}

export interface PairsReport {
  lab?: string;
  server: CheckReport['server'];
  nodes: PairNode[];
  checks: CheckCell[];
  cells: PairCell[];
  /** Unordered pairs, and whether (and how) they can talk directly. */
  direct: PairLink[];
  /** What the predictions come from: the lab file, or the behaviour the check measured (namespaces). */
  model?: 'declared' | 'measured';
  match?: boolean;
  /** Nodes that learned no endpoint, so their checks could not be tried: an error (exit 2). */
  unmeasured: string[];
}

function modelNat(nat: Nat, ports: Map<string, number | undefined>): ModelNat {
  const b = nat.behaviour;
  const fwd = b.fixedPort !== undefined ? b.forwards.find((f) => f.protocol === 'udp' && f.port === b.fixedPort) : undefined;
  // The forward reaches the node's punching socket only when that socket is on the forward's port.
  const forwardTo = fwd && ports.get(fwd.to) === fwd.toPort ? fwd.to : undefined;
  return {
    name: nat.name,
    address: nat.outside.address,
    mapping: b.mapping,
    filtering: b.filtering,
    hairpinning: b.hairpinning,
    ...(b.fixedPort !== undefined ? { fixedPort: b.fixedPort } : {}),
    ...(forwardTo ? { forwardTo } : {}),
  };
}

/** Model nodes from the lab file (labctl labs) or from what the check measured (namespaces). */
function modelNodes(options: CheckOptions, nodes: PairNode[], report: CheckReport): ModelNode[] | undefined {
  const ports = new Map(nodes.map((n) => [n.name, n.localPort]));
  if (options.lab) {
    const lab = options.lab;
    return lab.nodes.map((n): ModelNode => {
      const first = lab.nats.find((x) => x.name === n.router);
      return { name: n.name, address: n.link.address, chain: first ? natPath(lab, first).map((x) => modelNat(x, ports)) : [] };
    });
  }
  const out: ModelNode[] = [];
  for (const n of nodes) {
    const t = report.targets.find((x) => x.probe.netns === n.netns);
    const own = n.candidates?.find((c) => c.kind === 'host')?.endpoint.address;
    if (!t || !own) return undefined;
    const m = t.measured;
    if (t.path.length === 0) {
      out.push({ name: n.name, address: own, chain: [] });
      continue;
    }
    if (
      typeof m.mapping !== 'string' ||
      ['unknown', 'inconsistent'].includes(m.mapping) ||
      ['unknown', 'inconsistent'].includes(m.filtering) ||
      typeof m.hairpinning !== 'boolean' ||
      !m.outsideAddress
    )
      return undefined;
    const fixed = typeof m.port === 'object' && m.port.kind === 'fixed' ? m.port.port : undefined;
    // Only the first NAT's namespace is known by name: nodes behind the same one share its LAN.
    out.push({
      name: n.name,
      address: own,
      chain: [
        {
          name: t.name,
          address: m.outsideAddress,
          mapping: m.mapping as ModelNat['mapping'],
          filtering: m.filtering as ModelNat['filtering'],
          hairpinning: m.hairpinning,
          ...(fixed !== undefined ? { fixedPort: fixed } : {}),
          ...(fixed !== undefined && n.localPort !== undefined ? { forwardTo: n.name } : {}),
        },
      ],
    });
  }
  return out;
}

/** A node's candidates (RFC 8445 5.1): its own addresses on the socket's port, then the server-reflexive endpoint unless it is one of those (5.1.3). */
export function gatherCandidates(learned: PunchLearnResult): Candidate[] {
  const host: Candidate[] = learned.hosts.map((address) => ({ kind: 'host', endpoint: { address, port: learned.local } }));
  const m = learned.mapped;
  if (!m || host.some((h) => h.endpoint.address === m.address && h.endpoint.port === m.port)) return host;
  return [...host, { kind: 'server-reflexive', endpoint: m }];
}

export async function runPairs(options: CheckOptions, report: CheckReport): Promise<PairsReport> {
  const { targets, serverNetns, lab } = await resolveTargets(options);
  let nodes: PairNode[];
  let hops: PathHop[];
  if (options.lab) {
    const l = options.lab;
    nodes = l.nodes.map((n) => {
      const nat = l.nats.find((x) => x.name === n.router);
      const port = nat ? forwardedPort(nat, n) : undefined;
      return { name: n.name, netns: n.netns, ...(port !== undefined ? { localPort: port } : {}) };
    });
    hops = l.nats.map((n) => ({ name: n.name, netns: n.netns, labctl: true }));
  } else {
    nodes = targets.map((t) => ({ name: t.probe.netns, netns: t.probe.netns, ...(options.localPort !== undefined ? { localPort: options.localPort } : {}) }));
    hops = targets.flatMap((t) => t.path);
  }
  if (nodes.length < 2) throw new Error('--pairs needs at least two nodes');
  return withSession(
    {
      ...serverPlacement(options, serverNetns, [...nodes.map((n) => n.netns), ...hops.map((h) => h.netns)]),
      clientNetns: nodes.map((n) => n.netns),
      portPairs: nodes.length,
      prepare: () => flushHops(hops),
    },
    async (session) => {
      if (session.instances.length < nodes.length) throw new Error(`--pairs needs one server port pair per node (${nodes.length}); run it without --server`);
      session.atEnd(() => flushHops(hops));
      const learned = await Promise.all(
        nodes.map((n, i) =>
          session.agent(n.netns).call<PunchLearnResult>('punch-learn', {
            key: n.name,
            server: session.instances[i],
            ...(n.localPort !== undefined ? { localPort: n.localPort } : {}),
          }),
        ),
      );
      nodes.forEach((n, i) => {
        const l = learned[i]!;
        if (l.mapped) n.learned = l.mapped;
        n.candidates = gatherCandidates(l);
      });
      const peersOf = (n: PairNode) => nodes.filter((p) => p !== n && p.learned).map((p) => ({ name: p.name, candidates: p.candidates! }));
      const heard = await Promise.all(
        nodes.map((n) =>
          n.learned
            ? session.agent(n.netns).call<PunchResult>('punch', { key: n.name, self: n.name, peers: peersOf(n) })
            : Promise.resolve<PunchResult>({ requests: [], answers: [] }),
        ),
      );
      await Promise.all(nodes.map((n) => session.agent(n.netns).call('punch-close', { key: n.name })));

      const model = modelNodes(options, nodes, report);
      const predicted = model ? predictChecks(model) : undefined;
      const modelKind = options.lab ? 'declared' : 'measured';
      const results = new Map(nodes.map((n, i) => [n.name, { heard: heard[i]!, port: learned[i]!.local }]));
      const checks: CheckCell[] = [];
      for (const b of nodes) {
        for (const a of nodes) {
          if (a === b) continue;
          const kinds: CandidateKind[] = b.candidates?.some((c) => c.kind === 'server-reflexive') ? ['host', 'server-reflexive'] : ['host'];
          for (const kind of kinds) {
            const p = predicted?.checks.find((x) => x.from === a.name && x.to === b.name && x.candidate === kind);
            const ra = results.get(a.name)!;
            const rb = results.get(b.name)!;
            checks.push(
              checkCell(
                a,
                b,
                kind,
                {
                  arrival: rb.heard.requests.find((r) => r.peer === a.name && r.kind === kind),
                  receiverPort: rb.port,
                  answers: ra.heard.answers.filter((r) => r.peer === b.name && r.kind === kind),
                  senderPort: ra.port,
                },
                p && model ? { p, model, kind: modelKind } : undefined,
              ),
            );
          }
        }
      }
      const cells = directionCells(nodes, checks);
      const direct = pairLinks(nodes, checks, predicted?.pairs);
      const ms = [...checks.map((c) => c.match), ...direct.map((d) => d.match)].filter((m): m is boolean => m !== undefined);
      return {
        ...(lab ? { lab } : {}),
        server: session.server,
        nodes,
        checks,
        cells,
        direct,
        ...(model ? { model: modelKind } : {}),
        ...(ms.length ? { match: ms.every(Boolean) } : {}),
        unmeasured: nodes.filter((n) => !n.learned).map((n) => n.name),
      };
    },
  );
}

const sameAddr = (x: TransportAddress, y: TransportAddress) => x.address === y.address && x.port === y.port;

/** How b saw a: at one of a's own addresses, at a's STUN-seen endpoint, or elsewhere. */
function seenAsBy(a: PairNode, seen: TransportAddress): SeenAs {
  if (a.candidates?.some((c) => c.kind === 'host' && sameAddr(c.endpoint, seen))) return 'host';
  return a.learned && sameAddr(a.learned, seen) ? 'server-reflexive' : 'peer-reflexive';
}

/**
 * One check, a -> b's candidates of one kind: whether it reached b's punching socket (it
 * arrived at receiverPort), whether an answer came back to a's socket from one of those
 * endpoints, and with a model what it predicts and why. A check with a node that learned no
 * endpoint was never tried: that is its reason, and nothing to compare. Pure.
 */
export function checkCell(
  a: PairNode,
  b: PairNode,
  kind: CandidateKind,
  seen: { arrival?: PunchArrival; receiverPort?: number; answers: PunchArrival[]; senderPort?: number },
  model: { p: CheckPrediction; model: ModelNode[]; kind: 'declared' | 'measured' } | undefined,
): CheckCell {
  const endpoints = (b.candidates ?? []).filter((c) => c.kind === kind).map((c) => c.endpoint);
  const got = seen.arrival;
  const delivered = !!got && got.port === (seen.receiverPort ?? -1);
  const answered = seen.answers.some((x) => x.port === (seen.senderPort ?? -1) && endpoints.some((e) => sameAddr(e, x.from)));
  const cell: CheckCell = { from: a.name, to: b.name, candidate: kind, endpoints, delivered, answered, ...(got ? { seenFrom: got.from } : {}) };
  if (delivered && got) {
    cell.seenAs = seenAsBy(a, got.from);
    cell.path = pathKind(kind, cell.seenAs, kind === 'server-reflexive' && !!a.learned && endpoints.some((e) => e.address === a.learned!.address));
  }
  if (!a.learned || !b.learned) return { ...cell, why: `${!a.learned ? a.name : b.name} learned no endpoint from the STUN server`, basis: 'observed' };
  if (model) {
    const { p } = model;
    cell.predicted = { delivered: p.delivered, answered: p.answered };
    // Who sends first is a race the check does not control: either outcome is as predicted.
    const agrees = (pv: Predicted, v: boolean) => pv === 'either' || pv === v;
    cell.match = agrees(p.delivered, delivered) && agrees(p.answered, answered);
    if (!cell.match) {
      // What happened against what the model says: observed (the model's reason in brackets).
      const reason = p.answered === true ? '' : ` (${explainCheck(p, model.model)})`;
      cell.why = `the NATs' ${model.kind} behaviour says it should ${describe(p.delivered, p.answered)}${reason}, but it ${describe(delivered, answered, true)}`;
      cell.basis = 'observed';
    } else if (p.timing || !answered) {
      // Which NAT dropped it, or what the race decides, is the model's word: not seen.
      cell.why = explainCheck(p, model.model) || (p.reason ?? 'depends on whose packet the NATs see first');
      cell.basis = 'predicted';
    }
  }
  if (got && !delivered) {
    cell.why = `arrived at inside port ${got.port}, not the punching socket`;
    cell.basis = 'observed';
  }
  return cell;
}

function describe(delivered: Predicted, answered: Predicted, past = false): string {
  const arrive = past ? 'arrived' : 'arrive';
  if (delivered === false) return past ? 'did not arrive' : 'not arrive';
  if (answered === true) return past ? 'arrived and was answered' : 'arrive and be answered';
  if (answered === false) return past ? `${arrive} but its answer did not come back` : `${arrive} but its answer not come back`;
  return past ? arrive : `${arrive} (answered or not, depending on timing)`;
}

/** One cell per direction for the grid: anything of a's that reached b, on any candidate. Pure. */
export function directionCells(nodes: PairNode[], checks: CheckCell[]): PairCell[] {
  const out: PairCell[] = [];
  for (const b of nodes) {
    for (const a of nodes) {
      if (a === b) continue;
      const cs = checks.filter((c) => c.from === a.name && c.to === b.name);
      const hit = cs.find((c) => c.delivered);
      const preds = cs.map((c) => c.predicted?.delivered).filter((v): v is Predicted => v !== undefined);
      const predicted: Predicted | undefined = preds.length ? (preds.includes(true) ? true : preds.includes('either') ? 'either' : false) : undefined;
      const ms = cs.map((c) => c.match).filter((m): m is boolean => m !== undefined);
      const cell: PairCell = { from: a.name, to: b.name, delivered: !!hit, ...(hit?.seenFrom ? { seenFrom: hit.seenFrom } : {}) };
      if (predicted !== undefined) cell.predicted = predicted;
      if (ms.length) cell.match = ms.every(Boolean);
      if (!hit || cell.match === false) {
        const why = cs.filter((c) => c.why);
        if (why.length) {
          cell.why = why.map((c) => `${c.candidate}: ${c.why}`).join('; ');
          cell.basis = why.every((c) => c.basis === 'predicted') ? 'predicted' : 'observed';
        }
      }
      out.push(cell);
    }
  }
  return out;
}

/** One link per unordered pair: the best succeeded check either way (ICE's pick), against the model's. Pure. */
export function pairLinks(nodes: PairNode[], checks: CheckCell[], predicted: PairTalkPrediction[] | undefined): PairLink[] {
  const out: PairLink[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!.name;
      const b = nodes[j]!.name;
      const cs = checks.filter((c) => (c.from === a && c.to === b) || (c.from === b && c.to === a));
      const best = bestCheck(cs);
      const link: PairLink = { a, b, both: !!best };
      if (best) link.via = { from: best.from, to: best.to, candidate: best.candidate, path: best.path! };
      const p = predicted?.find((x) => x.a === a && x.b === b);
      const tried = nodes[i]!.learned && nodes[j]!.learned;
      if (p && tried) {
        link.predicted = p.timing ? 'either' : p.talk;
        if (p.via) link.predictedVia = p.via.path;
        link.match = p.timing ? true : p.talk === link.both;
      }
      out.push(link);
    }
  }
  return out;
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');

export function formatPairs(r: PairsReport): string {
  const out: string[] = [];
  out.push(`labctl check --pairs${r.lab ? ` of lab "${r.lab}"` : ''}: ICE-style checks between every pair of nodes (${serverLine(r)})`);
  out.push(
    "Each node sends checks from one socket to every candidate of every other node (host: the node's own addresses; server-reflexive: the endpoint the STUN server saw), all at once, for a second, and answers each check to where it came from; a check succeeds when its answer comes back from the endpoint it went to (RFC 8445).",
  );
  out.push('');
  const host = (n: PairNode) =>
    (n.candidates ?? [])
      .filter((c) => c.kind === 'host')
      .map((c) => formatEndpoint(c.endpoint))
      .join(', ') || '-';
  out.push(
    indent(
      table(
        ['node', 'host', 'server-reflexive'],
        r.nodes.map((n) => [
          n.name,
          host(n),
          `${n.candidates?.some((c) => c.kind === 'server-reflexive') ? formatEndpoint(n.learned) : n.learned ? '(its host candidate)' : formatEndpoint(undefined)}${n.localPort !== undefined ? ` (inside port ${n.localPort})` : ''}`,
        ]),
      ),
    ),
  );
  const names = r.nodes.map((n) => n.name);
  const cell = (from: string, to: string) => {
    if (from === to) return '-';
    const c = r.cells.find((x) => x.from === from && x.to === to)!;
    return `${c.delivered ? 'yes' : 'no'}${c.match === false ? '!' : c.predicted === 'either' ? '?' : ''}`;
  };
  out.push(
    'who hears whom (row sends, column receives, on any candidate; "?" = timing-dependent: either outcome matches, "!" = not what the NATs\' behaviour predicts):',
  );
  out.push(
    indent(
      table(
        ['from \\ to', ...names],
        names.map((a) => [a, ...names.map((b) => cell(a, b))]),
      ),
    ),
  );
  out.push('which candidate pair works (the succeeded check ICE ranks first; "!" = not what the NATs\' behaviour predicts):');
  out.push(
    indent(
      table(
        ['pair', 'path', 'check'],
        r.direct.map((d) => {
          const v = d.via;
          const check = v
            ? `${v.from} -> ${v.to}'s ${v.candidate} ${r.checks
                .find((c) => c.from === v.from && c.to === v.to && c.candidate === v.candidate)!
                .endpoints.map((e) => formatEndpoint(e))
                .join(', ')}, answered`
            : d.predicted === 'either'
              ? 'none this time (timing-dependent)'
              : 'none succeeded';
          return [`${d.a} <-> ${d.b}`, `${v ? v.path : 'none'}${d.match === false ? '!' : ''}`, check];
        }),
      ),
    ),
  );
  const both = r.direct.filter((d) => d.both).map((d) => `${d.a} <-> ${d.b} (${d.via!.path})`);
  out.push(`talk directly: ${both.length ? both.join(', ') : 'no pair'}`);
  // Checks with a node that learned no endpoint were not tried: one line below says so.
  const untried = (c: CheckCell) => r.unmeasured.includes(c.from) || r.unmeasured.includes(c.to);
  const pairOf = (c: CheckCell) => r.direct.find((d) => (d.a === c.from && d.b === c.to) || (d.a === c.to && d.b === c.from))!;
  // For pairs that cannot talk, every check and why; elsewhere only surprises and races.
  const listed = r.checks.filter(
    (c) =>
      !untried(c) &&
      (c.match === false || c.predicted?.delivered === 'either' || c.predicted?.answered === 'either' || (!pairOf(c).both && c.answered === false)),
  );
  if (listed.length) {
    // Which NAT dropped a packet is not seen from the nodes: say when the model says it.
    const predicted = r.model && listed.some((c) => c.basis === 'predicted');
    out.push(predicted ? `why ("predicted": from the model of the NATs' ${r.model} behaviour, not observed):` : 'why:');
    for (const c of listed) {
      const race =
        c.predicted?.delivered === 'either' || c.predicted?.answered === 'either'
          ? `timing-dependent, either outcome matches (${c.delivered ? (c.answered ? 'answered' : 'arrived, not answered') : 'did not arrive'}); `
          : '';
      const to = `${c.to}'s ${c.candidate} ${c.endpoints.map((e) => formatEndpoint(e)).join(', ')}`;
      const what = c.why ?? (c.delivered ? 'arrived, but no answer came back from there' : 'no check arrived');
      out.push(`  ${c.from} -> ${to}: ${race}${c.basis === 'predicted' ? 'predicted: ' : ''}${what}`);
    }
  }
  const wrong = r.checks.filter((c) => c.match === false).length + r.direct.filter((d) => d.match === false).length;
  if (wrong) out.push(`${wrong} check(s) or pair(s) behaved otherwise than predicted`);
  if (r.unmeasured.length) out.push(`not tried, to or from ${r.unmeasured.join(', ')}: learned no endpoint from the STUN server`);
  return `${out.join('\n')}\n`;
}
