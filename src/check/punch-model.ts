// What UDP hole punching should do between two nodes, from the behaviour of every NAT on
// their paths: a small simulation of RFC 4787 mapping and filtering (and hairpinning, and
// fixed-port NATs with their forwards) and of where packets can be routed at all. It says,
// for each direction, whether a packet sent to one of the peer's candidates (its own
// address, or the endpoint the STUN server saw) arrives, whether the answer to it comes back
// (an ICE connectivity check, RFC 8445 7.2.5), and, if not, which NAT drops it and why. Pure.
import { type Dependency, SHORT } from '../lab/behaviour.js';

export interface ModelNat {
  name: string;
  /** Its outside address (the next NAT up, or the internet, sees packets from it). */
  address: string;
  mapping: Dependency;
  filtering: Dependency;
  hairpinning: boolean;
  /** Every flow leaves from this port. */
  fixedPort?: number;
  /** Its outside (fixed) port is forwarded to this node's punching socket. */
  forwardTo?: string;
}

export interface ModelNode {
  name: string;
  /**
   * NATs from its own up to the one on the internet (empty: a node on the internet). Nodes
   * whose chains start with the same NAT share its LAN; a NAT's outside address sits on the
   * LAN of the next NAT in the chain (or on the internet), where the nodes of that LAN reach it.
   */
  chain: ModelNat[];
  /** Its own address (its host candidate; for a node on the internet, the address peers send to). */
  address: string;
}

/** An endpoint as the model names it: an address and a symbolic port. */
export interface Ep {
  addr: string;
  port: string;
}

interface Session {
  inside: string;
  port: string;
  dst: Ep;
}

/** Where a packet ended: at a node, or dropped (by a NAT, or because nothing routes there). */
interface Sent {
  to?: { node: string };
  /** Where it appeared to come from, as the receiver sees it (or as far as it got). */
  from: Ep;
  droppedBy?: string;
  reason?: string;
  /** Nothing on the sender's way routes to that address (a LAN address behind another NAT). */
  unroutable?: boolean;
}

export interface Verdict {
  /** Arrives whoever sends first (false also when it depends on the order: see timing). */
  delivered: boolean;
  /** The outcome depends on which side's packet the NATs see first. */
  timing?: boolean;
  /** Where the packet appeared to come from, as the receiving node sees it. */
  from?: Ep;
  /** The NAT that dropped it. */
  droppedBy?: string;
  reason?: string;
}

const sameEp = (a: Ep, b: Ep) => a.addr === b.addr && a.port === b.port;
const INTERNET = '(internet)';
/** The network a chain's i-th hop sits on: the LAN of NAT i (the node's own LAN for i = 0), or the internet past the last NAT. */
const segmentOf = (chain: ModelNat[], i: number) => (chain[i] ? `lan:${chain[i].name}` : INTERNET);
/** The symbolic port of every node's one socket (its host candidate's port). */
export const SOCKET = 'sock';

/** The state of every NAT while nodes send: sessions learned from outbound packets. */
class PunchModel {
  private readonly sessions = new Map<string, Session[]>();
  private readonly nodes: ModelNode[];
  /** Per network: the addresses on it (nodes, and the outside addresses of the NATs whose uplink it is). */
  private readonly segments = new Map<string, Map<string, { nat?: ModelNat; node?: ModelNode }>>();
  private readonly natByName = new Map<string, ModelNat>();

  /** A copy with the same NAT state (to try another order of events). */
  clone(): PunchModel {
    const c = new PunchModel(this.nodes);
    for (const [k, v] of this.sessions)
      c.sessions.set(
        k,
        v.map((x) => ({ ...x, dst: { ...x.dst } })),
      );
    return c;
  }

  constructor(nodes: ModelNode[]) {
    this.nodes = nodes;
    const place = (segment: string, addr: string, what: { nat?: ModelNat; node?: ModelNode }) => {
      let s = this.segments.get(segment);
      if (!s) this.segments.set(segment, (s = new Map()));
      if (!s.has(addr)) s.set(addr, what);
    };
    for (const n of nodes) {
      place(segmentOf(n.chain, 0), n.address, { node: n });
      n.chain.forEach((nat, i) => {
        place(segmentOf(n.chain, i + 1), nat.address, { nat });
        this.natByName.set(nat.name, nat);
      });
    }
  }

  private natSessions(nat: ModelNat): Session[] {
    let s = this.sessions.get(nat.name);
    if (!s) this.sessions.set(nat.name, (s = []));
    return s;
  }

  private portFor(nat: ModelNat, inside: string, dst: Ep): string {
    const ss = this.natSessions(nat);
    const existing = ss.find((s) => s.inside === inside && sameEp(s.dst, dst));
    if (existing) return existing.port;
    let port: string;
    if (nat.fixedPort !== undefined) port = String(nat.fixedPort);
    else if (nat.mapping === 'endpoint-independent') port = `${nat.name}[${inside}]`;
    else if (nat.mapping === 'address-dependent') port = `${nat.name}[${inside}>${dst.addr}]`;
    else port = `${nat.name}[${inside}>${dst.addr}:${dst.port}]`;
    ss.push({ inside, port, dst });
    return port;
  }

  /**
   * Sends from a node's socket to dst. On each network on the way up (its LAN, then each
   * NAT's uplink) a packet for an address there goes straight to it; otherwise it goes up
   * through the network's NAT (creating sessions: outbound packets always pass), and past the
   * last NAT only the internet's addresses are reachable. Inbound it meets the receiving
   * side's NATs. Returns where it ended.
   */
  send(from: string, dst: Ep): Sent {
    const node = this.nodes.find((n) => n.name === from)!;
    let inside = `${node.name}`;
    let src: Ep = { addr: node.address, port: SOCKET };
    for (let i = 0; ; i++) {
      const here = this.segments.get(segmentOf(node.chain, i))?.get(dst.addr);
      if (here?.node) {
        if (here.node === node) return { from: src, reason: `${from} sent to itself` };
        return dst.port === SOCKET ? { to: { node: here.node.name }, from: src } : { from: src, reason: 'wrong port' };
      }
      if (here?.nat) return this.inbound(here.nat, src, dst, false);
      const nat = node.chain[i];
      if (!nat) return { from: src, unroutable: true, reason: `nothing on ${from}'s way routes to ${dst.addr}` };
      if (dst.addr === nat.address) {
        // Towards its own outside address from inside: hairpinning.
        if (!nat.hairpinning) return { from: src, droppedBy: nat.name, reason: `${nat.name} does not hairpin (the peer sits behind it too)` };
        const port = this.portFor(nat, inside, dst);
        return this.inbound(nat, { addr: nat.address, port }, dst, true);
      }
      const port = this.portFor(nat, inside, dst);
      inside = `${nat.name}:${port}`;
      src = { addr: nat.address, port };
    }
  }

  /**
   * A packet from src arriving at nat's outside endpoint dst, then down through the NATs
   * below it. A packet that exactly answers a session is conntrack's (it goes back where the
   * session came from, whatever the filtering); a new inbound flow needs the filtering to let
   * it in, and goes to the port's forward, else to the inside endpoint last learned for that
   * port. A hairpinned packet is let in by the hairpinning NAT without filtering.
   */
  private inbound(nat: ModelNat, src: Ep, dst: Ep, hairpinned: boolean): Sent {
    let cur = nat;
    let port = dst.port;
    for (;;) {
      const ss = this.natSessions(cur).filter((s) => s.port === port);
      const fwd = cur.fixedPort !== undefined && String(cur.fixedPort) === port ? cur.forwardTo : undefined;
      const exact = ss.find((s) => sameEp(s.dst, src));
      let inside: string;
      if (exact && !(hairpinned && cur === nat)) inside = exact.inside;
      else {
        if (ss.length === 0 && !fwd) return { from: src, droppedBy: cur.name, reason: `${cur.name} has no mapping on that port` };
        const ok =
          (hairpinned && cur === nat) ||
          cur.filtering === 'endpoint-independent' ||
          (cur.filtering === 'address-dependent' && ss.some((s) => s.dst.addr === src.addr));
        if (!ok) {
          const what = cur.filtering === 'address-dependent' ? 'that address' : 'that address and port';
          return { from: src, droppedBy: cur.name, reason: `${cur.name} (${SHORT[cur.filtering]}F) drops it: it has sent nothing to ${what} from that port` };
        }
        // A fixed-port NAT's forward wins over learned mappings (labctl puts it first).
        inside = fwd ?? ss[ss.length - 1]!.inside;
        // The new inbound flow is a session too (conntrack): the inside's packets back to src
        // will leave from this port. Unless the inside already has a flow to src from another
        // port: the two would collide in conntrack, and the new one is dropped.
        const all = this.natSessions(cur);
        const clash = all.find((s) => s.inside === inside && sameEp(s.dst, src) && s.port !== port);
        if (clash)
          return {
            from: src,
            droppedBy: cur.name,
            reason: `${cur.name} drops it: the inside already sends to that peer from another port (a conntrack clash)`,
          };
        if (!all.some((s) => s.inside === inside && sameEp(s.dst, src))) all.push({ inside, port, dst: src });
      }
      if (!inside.includes(':')) return { to: { node: inside }, from: src };
      const natName = inside.slice(0, inside.indexOf(':'));
      const next = this.natByName.get(natName);
      if (!next) return { from: src, reason: `lost below ${cur.name}` };
      cur = next;
      port = inside.slice(inside.indexOf(':') + 1);
    }
  }

  /** The STUN-learned endpoint of a node (sends to the server and reports the outside source). */
  learn(node: string, server: Ep): Ep {
    return this.send(node, server).from;
  }
}

export interface PairPrediction {
  from: string;
  to: string;
  verdict: Verdict;
}

const PUNCH_ROUNDS = 3;

/** Every node learns its endpoint from the server (a node on the internet that nothing translates). */
function learnAll(nodes: ModelNode[], server: Ep): { base: PunchModel; learned: Map<string, Ep> } {
  const base = new PunchModel([...nodes, { name: '(stun)', chain: [], address: server.addr }]);
  const learned = new Map<string, Ep>();
  for (const n of nodes) learned.set(n.name, base.learn(n.name, server));
  return { base, learned };
}

/**
 * Sending to the server-reflexive candidates only, as `check --pairs` did before it tried
 * host candidates: every node learns its endpoint from the server; then, pair by pair, both
 * sides send to each other's learned endpoint a few times. Who sends first can matter (a
 * NAT that lets a peer's packet in first keeps that flow's port for its node's answers);
 * both orders are tried, and a direction whose outcome depends on the order is marked as such.
 */
export function predictPunching(nodes: ModelNode[], server: Ep = { addr: 'stun', port: '3478' }): PairPrediction[] {
  const { base, learned } = learnAll(nodes, server);
  const out: PairPrediction[] = [];
  const run = (first: ModelNode, second: ModelNode) => {
    const m = base.clone();
    const got = new Map<string, { delivered: boolean; last: Sent }>();
    for (let round = 0; round < PUNCH_ROUNDS; round++) {
      for (const [x, y] of [
        [first, second],
        [second, first],
      ] as const) {
        const r = m.send(x.name, learned.get(y.name)!);
        const key = `${x.name}>${y.name}`;
        const prev = got.get(key);
        const delivered = r.to?.node === y.name;
        got.set(key, { delivered: !!prev?.delivered || delivered, last: delivered || !prev?.delivered ? r : prev.last });
      }
    }
    return got;
  };
  for (const { a, b, aFirst, bFirst, directions } of bothOrders(nodes, run)) {
    for (const [x, y] of directions) {
      const key = `${x.name}>${y.name}`;
      const p = aFirst.get(key)!;
      const q = bFirst.get(key)!;
      const r = p.delivered ? q.last : p.last; // explain the failing order when they differ
      const v: Verdict = {
        delivered: p.delivered && q.delivered,
        from: r.from,
        ...(p.delivered !== q.delivered ? { timing: true } : {}),
      };
      if (!v.delivered) {
        if (r.droppedBy) v.droppedBy = r.droppedBy;
        v.reason = r.reason ?? (r.to ? `arrives at ${r.to.node}, not ${y.name}` : 'lost');
        if (v.timing)
          v.reason = `depends on whose packet the NATs see first: it arrives when ${p.delivered ? a.name : b.name} sends first, otherwise ${v.reason}`;
      }
      out.push({ from: x.name, to: y.name, verdict: v });
    }
  }
  return out;
}

/**
 * Each pair of nodes once, with what happens when either sends first (`run(a, b)`: a's
 * packets reach the NATs first) and the pair's two directions to report on.
 */
function* bothOrders<N, R>(nodes: N[], run: (first: N, second: N) => R): Generator<{ a: N; b: N; aFirst: R; bFirst: R; directions: (readonly [N, N])[] }> {
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!;
      const b = nodes[j]!;
      yield { a, b, aFirst: run(a, b), bFirst: run(b, a), directions: [[a, b] as const, [b, a] as const] };
    }
  }
}

/** Why a direction fails, in words: the dropping NAT's reason, and whose mapping made the port a stranger. */
export function explainDrop(p: PairPrediction, nodes: ModelNode[]): string {
  const v = p.verdict;
  if (v.delivered) return '';
  const a = nodes.find((n) => n.name === p.from)!;
  const b = nodes.find((n) => n.name === p.to)!;
  const perDest = (n: ModelNode) => n.chain.find((x) => x.fixedPort === undefined && x.mapping !== 'endpoint-independent');
  const extra: string[] = [];
  const ma = perDest(a);
  if (ma)
    extra.push(
      `${p.from}'s packets leave ${ma.name} from a new port for each ${ma.mapping === 'address-dependent' ? 'address' : 'address and port'} (${SHORT[ma.mapping]}M), not the one the STUN server saw`,
    );
  const mb = perDest(b);
  if (mb && v.droppedBy && b.chain.some((x) => x.name === v.droppedBy)) {
    extra.push(
      `the port ${p.to} learned from the STUN server is open to the server only: ${mb.name} (${SHORT[mb.mapping]}M) sent ${p.to}'s own packets to ${p.from} from another port`,
    );
  }
  return [v.reason ?? 'lost', ...extra].join('; ');
}

// ------------------------------------------------------------------ candidates (ICE)

/** A node's candidates as ICE gathers them (RFC 8445 5.1.1): its own address, and the endpoint a STUN server saw. */
export type CandidateKind = 'host' | 'server-reflexive';
/**
 * How a check got through, from the candidates at both ends: host (the peer's own address,
 * reached untranslated: one LAN), server-reflexive (through NATs, to the endpoint the STUN
 * server saw, or to a peer's own public address from the sender's STUN-seen endpoint),
 * hairpinned (to the STUN-seen endpoint of a peer behind the same NAT, which turns the
 * packet round), peer-reflexive (the peer saw the sender at an endpoint no STUN server had
 * shown: a mapping made for the peer alone, RFC 8445 7.3.1.3).
 */
export type PathKind = 'host' | 'server-reflexive' | 'hairpinned' | 'peer-reflexive';
/** How the receiver saw the sender: at its own address, at its STUN-seen endpoint, or elsewhere. */
export type SeenAs = 'host' | 'server-reflexive' | 'peer-reflexive';

/** ICE's type preferences (RFC 8445 5.1.2.2): host 126, peer-reflexive 110, server-reflexive 100. */
const TYPE_PREFERENCE: Record<SeenAs, number> = { host: 126, 'peer-reflexive': 110, 'server-reflexive': 100 };

/**
 * A candidate pair's rank as ICE orders pairs (RFC 8445 6.1.2.3: 2^32 MIN(G,D) + 2 MAX(G,D)),
 * from how the receiver saw the sender and the receiver's candidate kind. Higher is better.
 */
export function pairPriority(seenAs: SeenAs, remote: CandidateKind): number {
  const g = TYPE_PREFERENCE[seenAs];
  const d = TYPE_PREFERENCE[remote];
  return 2 ** 32 * Math.min(g, d) + 2 * Math.max(g, d);
}

/** The path kind of a check that arrived, from what the receiver saw and which of its candidates it was sent to. */
export function pathKind(remote: CandidateKind, seenAs: SeenAs, hairpinned: boolean): PathKind {
  if (remote === 'server-reflexive') return hairpinned ? 'hairpinned' : 'server-reflexive';
  return seenAs;
}

export interface CheckPrediction {
  from: string;
  to: string;
  candidate: CandidateKind;
  /** The request reaches the peer's socket ('either': it depends on whose packet the NATs see first). */
  delivered: boolean | 'either';
  /** Its answer comes back from the endpoint the request went to (a succeeded ICE check). */
  answered: boolean | 'either';
  timing?: boolean;
  /** When delivered: how the receiver saw the sender, and the path kind. */
  seenAs?: SeenAs;
  path?: PathKind;
  /** Why the request (or its answer) did not make it. */
  droppedBy?: string;
  reason?: string;
}

export interface PairTalkPrediction {
  a: string;
  b: string;
  /** Some check between them succeeds (false also when it depends on the order: see timing). */
  talk: boolean;
  timing?: boolean;
  /** The best succeeded check, as ICE ranks them. */
  via?: { from: string; to: string; candidate: CandidateKind; path: PathKind };
}

interface CheckOutcome {
  delivered: boolean;
  answered: boolean;
  seenAs?: SeenAs;
  path?: PathKind;
  droppedBy?: string;
  reason?: string;
}

/** A node's candidates in the model: its own address, and its learned endpoint unless that is the same (RFC 8445 5.1.3). */
function modelCandidates(n: ModelNode, learned: Ep): { kind: CandidateKind; ep: Ep }[] {
  const host: Ep = { addr: n.address, port: SOCKET };
  return sameEp(host, learned)
    ? [{ kind: 'host', ep: host }]
    : [
        { kind: 'host', ep: host },
        { kind: 'server-reflexive', ep: learned },
      ];
}

function seenAsOf(seen: Ep, sender: ModelNode, senderLearned: Ep): SeenAs {
  if (sameEp(seen, { addr: sender.address, port: SOCKET })) return 'host';
  return sameEp(seen, senderLearned) ? 'server-reflexive' : 'peer-reflexive';
}

function unroutableReason(x: ModelNode, y: ModelNode, addr: string): string {
  const behind = y.chain[0];
  return `nothing on ${x.name}'s way routes to ${addr}${behind ? ` (${y.name}'s own address, on ${behind.name}'s LAN)` : ''}`;
}

/**
 * ICE-style checks between every pair of nodes: every node learns its server-reflexive
 * endpoint; then, pair by pair, both sides send a check to each of the other's candidates
 * (host first, as ICE ranks them) a few times, and a node that receives a check answers it
 * at once, to wherever it came from. A check succeeds when its answer comes back from the
 * endpoint it was sent to (RFC 8445 7.2.5.2.1). Both orders of who starts are tried, as in
 * predictPunching(); an outcome that depends on the order is marked as such.
 */
export function predictChecks(
  nodes: ModelNode[],
  server: Ep = { addr: 'stun', port: '3478' },
): { checks: CheckPrediction[]; pairs: PairTalkPrediction[]; learned: Map<string, Ep> } {
  const { base, learned } = learnAll(nodes, server);
  const cands = new Map(nodes.map((n) => [n.name, modelCandidates(n, learned.get(n.name)!)]));
  const run = (first: ModelNode, second: ModelNode) => {
    const m = base.clone();
    const got = new Map<string, CheckOutcome>();
    for (let round = 0; round < PUNCH_ROUNDS; round++) {
      for (const [x, y] of [
        [first, second],
        [second, first],
      ] as const) {
        for (const c of cands.get(y.name)!) {
          const key = `${x.name}>${y.name}>${c.kind}`;
          const prev = got.get(key);
          const r = m.send(x.name, c.ep);
          const outcome: CheckOutcome = { delivered: r.to?.node === y.name, answered: false };
          if (outcome.delivered) {
            outcome.seenAs = seenAsOf(r.from, x, learned.get(x.name)!);
            outcome.path = pathKind(c.kind, outcome.seenAs, c.kind === 'server-reflexive' && c.ep.addr === learned.get(x.name)!.addr);
            // The answer leaves at once from the peer's socket, to where the check came from.
            const back = m.send(y.name, r.from);
            outcome.answered = back.to?.node === x.name && sameEp(back.from, c.ep);
            if (!outcome.answered) {
              if (back.droppedBy) outcome.droppedBy = back.droppedBy;
              outcome.reason =
                back.to?.node === x.name
                  ? `the answer came back from ${back.from.addr}, not from the endpoint the check went to (RFC 8445 7.2.5.2.1: the check fails)`
                  : `the answer to it is lost: ${back.unroutable ? `nothing on ${y.name}'s way routes to ${r.from.addr}` : (back.reason ?? 'lost')}`;
            }
          } else {
            if (r.droppedBy) outcome.droppedBy = r.droppedBy;
            outcome.reason = r.unroutable ? unroutableReason(x, y, c.ep.addr) : (r.reason ?? (r.to ? `arrives at ${r.to.node}, not ${y.name}` : 'lost'));
          }
          // Once it got through it stays so; a failure keeps the first reason (the later ones repeat it).
          got.set(key, mergeOutcome(prev, outcome));
        }
      }
    }
    return got;
  };
  const checks: CheckPrediction[] = [];
  const pairs: PairTalkPrediction[] = [];
  for (const { a, b, aFirst, bFirst, directions } of bothOrders(nodes, run)) {
    const mine: CheckPrediction[] = [];
    for (const [x, y] of directions) {
      for (const c of cands.get(y.name)!) {
        const key = `${x.name}>${y.name}>${c.kind}`;
        const p = aFirst.get(key)!;
        const q = bFirst.get(key)!;
        const timing = p.delivered !== q.delivered || p.answered !== q.answered;
        // Explain the order that fails when they differ; describe the one that works.
        const failing = p.answered ? q : p;
        const working = p.delivered ? p : q;
        const v: CheckPrediction = {
          from: x.name,
          to: y.name,
          candidate: c.kind,
          delivered: p.delivered === q.delivered ? p.delivered : 'either',
          answered: p.answered === q.answered ? p.answered : 'either',
          ...(timing ? { timing } : {}),
          ...(working.seenAs ? { seenAs: working.seenAs, path: working.path! } : {}),
        };
        if (v.answered !== true) {
          if (failing.droppedBy) v.droppedBy = failing.droppedBy;
          const reason = failing.reason ?? 'lost';
          const starter = (p.answered ? a : b).name;
          v.reason = timing ? `depends on whose packet the NATs see first: it gets through when ${starter} sends first, otherwise ${reason}` : reason;
        }
        mine.push(v);
      }
    }
    checks.push(...mine);
    const best = (outcomes: Map<string, CheckOutcome>) =>
      bestCheck(mine.map((c) => ({ from: c.from, to: c.to, candidate: c.candidate, ...outcomes.get(`${c.from}>${c.to}>${c.candidate}`)! })));
    const inA = best(aFirst);
    const inB = best(bFirst);
    const via = inA ?? inB;
    pairs.push({
      a: a.name,
      b: b.name,
      talk: !!inA && !!inB,
      ...(!!inA !== !!inB ? { timing: true } : {}),
      ...(via ? { via: { from: via.from, to: via.to, candidate: via.candidate, path: via.path! } } : {}),
    });
  }
  return { checks, pairs, learned };
}

function mergeOutcome(prev: CheckOutcome | undefined, now: CheckOutcome): CheckOutcome {
  if (!prev) return now;
  if (prev.answered) return prev;
  if (now.answered) return now;
  if (prev.delivered && !now.delivered) return prev;
  if (now.delivered && !prev.delivered) return now;
  return prev;
}

/** The succeeded check ICE would pick (highest pair priority), or undefined when none succeeded. */
export function bestCheck<T extends { answered: boolean; seenAs?: SeenAs; candidate: CandidateKind }>(checks: T[]): T | undefined {
  const ok = checks.filter((c) => c.answered && c.seenAs);
  return ok.sort((x, y) => pairPriority(y.seenAs!, y.candidate) - pairPriority(x.seenAs!, x.candidate))[0];
}

/** Why a check fails, in words: the model's reason and, for a server-reflexive candidate, whose mapping made the port a stranger. */
export function explainCheck(c: CheckPrediction, nodes: ModelNode[]): string {
  if (c.answered === true) return '';
  if (c.candidate !== 'server-reflexive') return c.reason ?? 'lost';
  return explainDrop(
    { from: c.from, to: c.to, verdict: { delivered: false, ...(c.droppedBy ? { droppedBy: c.droppedBy } : {}), ...(c.reason ? { reason: c.reason } : {}) } },
    nodes,
  );
}
