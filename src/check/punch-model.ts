// What UDP hole punching should do between two nodes, from the behaviour of every NAT on
// their paths: a small simulation of RFC 4787 mapping and filtering (and hairpinning, and
// fixed-port NATs with their forwards) that says, for each direction, whether a packet sent
// to the peer's STUN-learned endpoint arrives and, if not, which NAT drops it and why. Pure.
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
  /** NATs from its own up to the one on the internet (empty: a node on the internet). */
  chain: ModelNat[];
  /** Its own address (for a node on the internet, the address peers send to). */
  address: string;
}

/** An endpoint as the model names it: an address and a symbolic port. */
interface Ep {
  addr: string;
  port: string;
}

interface Session {
  inside: string;
  port: string;
  dst: Ep;
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

/** The state of every NAT while nodes send: sessions learned from outbound packets. */
class PunchModel {
  private readonly sessions = new Map<string, Session[]>();
  private readonly nodes: ModelNode[];
  private readonly byAddress = new Map<string, { nat?: ModelNat; node?: ModelNode }>();
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
    for (const n of nodes) {
      if (n.chain.length === 0) this.byAddress.set(n.address, { node: n });
      for (const nat of n.chain) {
        this.byAddress.set(nat.address, { nat });
        this.natByName.set(nat.name, nat);
      }
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
   * Sends from a node's punching socket to dst. Outbound packets always pass (creating
   * sessions); inbound they meet the receiving side's NATs. Returns where it ended.
   */
  send(from: string, dst: Ep): { to?: { node: string }; from: Ep; droppedBy?: string; reason?: string } {
    const node = this.nodes.find((n) => n.name === from)!;
    let inside = `${node.name}`;
    let src: Ep = { addr: node.address, port: 'sock' };
    for (let i = 0; i < node.chain.length; i++) {
      const nat = node.chain[i]!;
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
    const target = this.byAddress.get(dst.addr);
    if (!target) return { from: src, reason: `nothing at ${dst.addr}` };
    if (target.node) return dst.port === 'sock' ? { to: { node: target.node.name }, from: src } : { from: src, reason: 'wrong port' };
    return this.inbound(target.nat!, src, dst, false);
  }

  /**
   * A packet from src arriving at nat's outside endpoint dst, then down through the NATs
   * below it. A packet that exactly answers a session is conntrack's (it goes back where the
   * session came from, whatever the filtering); a new inbound flow needs the filtering to let
   * it in, and goes to the port's forward, else to the inside endpoint last learned for that
   * port. A hairpinned packet is let in by the hairpinning NAT without filtering.
   */
  private inbound(nat: ModelNat, src: Ep, dst: Ep, hairpinned: boolean): { to?: { node: string }; from: Ep; droppedBy?: string; reason?: string } {
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

/**
 * Every node learns its endpoint from the server; then, pair by pair, both sides send to
 * each other's learned endpoint a few times. Who sends first can matter (a NAT that lets a
 * peer's packet in first keeps that flow's port for its node's answers); both orders are
 * tried, and a direction whose outcome depends on the order is marked as such.
 */
export function predictPunching(nodes: ModelNode[], server: Ep = { addr: 'stun', port: '3478' }): PairPrediction[] {
  const base = new PunchModel([...nodes, { name: '(stun)', chain: [], address: server.addr }]);
  const learned = new Map<string, Ep>();
  for (const n of nodes) learned.set(n.name, base.learn(n.name, server));
  const out: PairPrediction[] = [];
  const run = (first: ModelNode, second: ModelNode) => {
    const m = base.clone();
    const got = new Map<string, { delivered: boolean; last: ReturnType<PunchModel['send']> }>();
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
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!;
      const b = nodes[j]!;
      const aFirst = run(a, b);
      const bFirst = run(b, a);
      for (const [x, y] of [
        [a, b],
        [b, a],
      ] as const) {
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
  }
  return out;
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
