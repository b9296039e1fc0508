// `labctl check --pairs`: UDP hole punching between every pair of nodes. Each node opens one
// socket (as WireGuard or an ICE agent would), learns its outside endpoint from the STUN
// server, then every node sends to every other node's learned endpoint at once for a second.
// The grid says who heard whom; for each direction that failed, a model of the NATs on both
// paths (src/check/punch-model.ts) says which NAT dropped it and why (marked as predicted:
// the nodes cannot see it), and a direction that behaved otherwise than the model predicts
// is flagged.
import type { Nat } from '../lab/model.js';
import type { PunchLearnResult, PunchResult } from '../stun/probes.js';
import { formatEndpoint, type TransportAddress } from '../stun/message.js';
import { table } from '../report/table.js';
import { forwardedPort, natPath } from './declared.js';
import type { CheckReport } from './model.js';
import { explainDrop, type ModelNat, type ModelNode, type PairPrediction, predictPunching } from './punch-model.js';
import { resolveTargets, serverPlacement, type CheckOptions } from './run.js';
import { serverLine } from './report.js';
import { flushHops, withSession } from './session.js';
import type { PathHop } from './model.js';

export interface PairNode {
  name: string;
  netns: string;
  localPort?: number;
  learned?: TransportAddress;
}

interface PairCell {
  from: string;
  to: string;
  /** The packet arrived at the peer's punching socket. */
  delivered: boolean;
  /** Where it appeared to come from, at the receiver. */
  seenFrom?: TransportAddress;
  /** What the NATs' behaviour predicts ('either': it depends on whose packet comes first, so either outcome matches). */
  predicted?: boolean | 'either';
  /** Why it failed (or, when the model disagrees with what happened, that). */
  why?: string;
  /** Whether `why` was seen (or is what was seen against the model), or is the model's prediction only. */
  basis?: 'observed' | 'predicted';
  /** Undefined when nothing was predicted, or the direction could not be tried. */
  match?: boolean;
}

export interface PairsReport {
  lab?: string;
  server: CheckReport['server'];
  nodes: PairNode[];
  cells: PairCell[];
  /** Unordered pairs that can talk both ways directly. */
  direct: { a: string; b: string; both: boolean }[];
  /** What the predictions come from: the lab file, or the behaviour the check measured (namespaces). */
  model?: 'declared' | 'measured';
  match?: boolean;
  /** Nodes that learned no endpoint, so their directions could not be tried: an error (exit 2). */
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
    if (!t) return undefined;
    const m = t.measured;
    if (t.path.length === 0) {
      out.push({ name: n.name, address: n.learned?.address ?? '?', chain: [] });
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
    out.push({
      name: n.name,
      address: n.netns,
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
        if (learned[i]!.mapped) n.learned = learned[i]!.mapped;
      });
      const peersOf = (n: PairNode) => nodes.filter((p) => p !== n && p.learned).map((p) => ({ name: p.name, endpoint: p.learned! }));
      const heard = await Promise.all(
        nodes.map((n) =>
          n.learned ? session.agent(n.netns).call<PunchResult>('punch', { key: n.name, self: n.name, peers: peersOf(n) }) : Promise.resolve({ received: [] }),
        ),
      );
      await Promise.all(nodes.map((n) => session.agent(n.netns).call('punch-close', { key: n.name })));

      const model = modelNodes(options, nodes, report);
      const predictions = model ? predictPunching(model) : undefined;
      const modelKind = options.lab ? 'declared' : 'measured';
      const cells: PairCell[] = [];
      for (const [bi, b] of nodes.entries()) {
        for (const a of nodes) {
          if (a === b) continue;
          const got = heard[bi]!.received.find((r) => r.peer === a.name);
          const p = predictions?.find((x) => x.from === a.name && x.to === b.name);
          cells.push(pairCell(a, b, got, learned[bi]!.local, p && model ? { p, model, kind: modelKind } : undefined));
        }
      }
      const direct: PairsReport['direct'] = [];
      for (let i = 0; i < nodes.length; i++) {
        for (let j = i + 1; j < nodes.length; j++) {
          const ab = cells.find((c) => c.from === nodes[i]!.name && c.to === nodes[j]!.name)!;
          const ba = cells.find((c) => c.from === nodes[j]!.name && c.to === nodes[i]!.name)!;
          direct.push({ a: nodes[i]!.name, b: nodes[j]!.name, both: ab.delivered && ba.delivered });
        }
      }
      const ms = cells.map((c) => c.match).filter((m): m is boolean => m !== undefined);
      return {
        ...(lab ? { lab } : {}),
        server: session.server,
        nodes,
        cells,
        direct,
        ...(model ? { model: modelKind } : {}),
        ...(ms.length ? { match: ms.every(Boolean) } : {}),
        unmeasured: nodes.filter((n) => !n.learned).map((n) => n.name),
      };
    },
  );
}

/**
 * One direction, a -> b: whether a's packet reached b's punching socket (it arrived at
 * receiverPort), and with a model what it predicts and why. A direction with a node that
 * learned no endpoint was never tried: that is its reason, and nothing to compare. Pure.
 */
export function pairCell(
  a: PairNode,
  b: PairNode,
  got: PunchResult['received'][number] | undefined,
  receiverPort: number | undefined,
  model: { p: PairPrediction; model: ModelNode[]; kind: 'declared' | 'measured' } | undefined,
): PairCell {
  const delivered = !!got && got.port === (receiverPort ?? -1);
  const cell: PairCell = { from: a.name, to: b.name, delivered, ...(got ? { seenFrom: got.from } : {}) };
  if (!a.learned || !b.learned) return { ...cell, why: `${!a.learned ? a.name : b.name} learned no endpoint from the STUN server`, basis: 'observed' };
  if (model) {
    const { p } = model;
    cell.predicted = p.verdict.timing ? 'either' : p.verdict.delivered;
    // Who sends first is a race the check does not control: either outcome is as predicted.
    cell.match = p.verdict.timing ? true : p.verdict.delivered === delivered;
    if (!cell.match) {
      // What happened against what the model says: observed (the model's reason in brackets).
      const drop = p.verdict.delivered ? '' : ` (${explainDrop(p, model.model)})`;
      cell.why = `the NATs' ${model.kind} behaviour says it should ${p.verdict.delivered ? 'arrive' : 'not arrive'}${drop}, but it did${delivered ? '' : ' not'}`;
      cell.basis = 'observed';
    } else if (p.verdict.timing || !delivered) {
      // Which NAT dropped it, or what the race decides, is the model's word: not seen.
      cell.why = p.verdict.timing ? (p.verdict.reason ?? 'depends on whose packet the NATs see first') : explainDrop(p, model.model);
      cell.basis = 'predicted';
    }
  }
  if (got && !delivered) {
    cell.why = `arrived at inside port ${got.port}, not the punching socket`;
    cell.basis = 'observed';
  }
  return cell;
}

export function formatPairs(r: PairsReport): string {
  const out: string[] = [];
  out.push(`labctl check --pairs${r.lab ? ` of lab "${r.lab}"` : ''}: UDP hole punching between every pair of nodes (${serverLine(r)})`);
  out.push("Each node sends from one socket to every other node's STUN-learned endpoint, all at once, for a second.");
  out.push('');
  out.push(
    table(
      ['node', 'learned endpoint'],
      r.nodes.map((n) => [n.name, `${formatEndpoint(n.learned)}${n.localPort !== undefined ? ` (inside port ${n.localPort})` : ''}`]),
    )
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n'),
  );
  const names = r.nodes.map((n) => n.name);
  const cell = (from: string, to: string) => {
    if (from === to) return '-';
    const c = r.cells.find((x) => x.from === from && x.to === to)!;
    return `${c.delivered ? 'yes' : 'no'}${c.match === false ? '!' : c.predicted === 'either' ? '?' : ''}`;
  };
  out.push('who hears whom (row sends, column receives; "?" = timing-dependent: either outcome matches, "!" = not what the NATs\' behaviour predicts):');
  out.push(
    table(
      ['from \\ to', ...names],
      names.map((a) => [a, ...names.map((b) => cell(a, b))]),
    )
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n'),
  );
  const both = r.direct.filter((d) => d.both).map((d) => `${d.a} <-> ${d.b}`);
  out.push(`talk directly both ways: ${both.length ? both.join(', ') : 'no pair'}`);
  // Directions with a node that learned no endpoint were not tried: one line below says so.
  const untried = (c: PairCell) => r.unmeasured.includes(c.from) || r.unmeasured.includes(c.to);
  const failed = r.cells.filter((c) => !untried(c) && (!c.delivered || c.match === false || c.predicted === 'either'));
  if (failed.length) {
    // Which NAT dropped a packet is not seen from the nodes: say when the model says it.
    const predicted = r.model && failed.some((c) => c.basis === 'predicted');
    out.push(predicted ? `why ("predicted": from the model of the NATs' ${r.model} behaviour, not observed):` : 'why:');
    for (const c of failed) {
      const timing = c.predicted === 'either' ? `timing-dependent, either outcome matches (${c.delivered ? 'arrived' : 'did not arrive'}); ` : '';
      out.push(`  ${c.from} -> ${c.to}: ${timing}${c.basis === 'predicted' ? 'predicted: ' : ''}${c.why ?? 'no packet arrived'}`);
    }
  }
  const wrong = r.cells.filter((c) => c.match === false);
  if (wrong.length) out.push(`${wrong.length} direction(s) behaved otherwise than predicted`);
  if (r.unmeasured.length) out.push(`not tried, to or from ${r.unmeasured.join(', ')}: learned no endpoint from the STUN server`);
  return `${out.join('\n')}\n`;
}
