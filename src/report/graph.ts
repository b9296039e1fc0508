// `labctl graph`: a picture of a lab. labGraph() turns the resolved Lab into a graph model
// (pure: every member, every link with the interface name and address on each end, each
// NAT's behaviour); renderers write it as Mermaid (GitHub draws it in Markdown), Graphviz
// DOT, JSON, or SVG through Graphviz's `dot`.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { run } from '../exec/run.js';
import { type ClassicNatType, type Dependency, SHORT } from '../lab/behaviour.js';
import type { Forward, Lab, Link, Nat } from '../lab/model.js';
import { DEFAULT_TCP_MAPPING_TIMEOUT, DEFAULT_UDP_STREAM, DEFAULT_UDP_UNREPLIED } from '../lab/resolve-behaviour.js';
import { formatRange, isDefaultRange } from '../lab/resolve-nat-ports.js';
import { LabctlError } from '../util/errors.js';
import type { LabState } from '../host/state.js';
import { describeShaping, type LinkShaping, shapingIsEmpty } from '../lab/impairment.js';
import { linkName } from '../lab/resolve-links.js';

// --- the model ---

export interface GraphNat {
  mapping: Dependency;
  filtering: Dependency;
  /** The classic name the lab file used, if it used one. */
  declaredAs?: ClassicNatType;
  /** "full-cone (EIM+EIF)", or "EIM+ADF" when mapping and filtering were given. */
  behaviour: string;
  hairpinning: boolean;
  portPreservation: boolean;
  fixedPort?: number;
  forwards: Forward[];
  /** Only the timeouts that differ from labctl's defaults (those the lab file set). */
  timeouts?: { udpUnreplied?: number; udpStream?: number; tcpMapping?: number };
  /** The NAT profile the lab file named. */
  profile?: string;
  /** How new mappings get ports, when not kept (preservation) or fixed. */
  portAllocation?: 'sequential' | 'random';
  /** A port range other than 1024-65535. */
  ports?: string;
  /** Several outside addresses, and whether an inside address always leaves from one. */
  pool?: { addresses: string[]; pooling: 'paired' | 'arbitrary' };
  portBlock?: { size: number; maxBlocks: number };
  quota?: number;
}

export type MemberKind = 'internet' | 'internet-node' | 'nat' | 'node';

export interface GraphMember {
  name: string;
  kind: MemberKind;
  netns: string;
  /** A booted machine (true) or a bare network namespace. */
  machine: boolean;
  /** The site a NAT or node belongs to. */
  site?: string;
  nat?: GraphNat;
}

export interface GraphEnd {
  member: string;
  ifname: string;
  /** "10.0.1.1/24"; absent on a port of a LAN bridge (the bridge holds the address). */
  address?: string;
  /** The NAT's LAN bridge this interface is a port of, and the bridge's address. */
  bridge?: { ifname: string; address: string };
}

export interface GraphLink {
  /** The router's end: the internet's, or the NAT's the member routes through. */
  upstream: GraphEnd;
  /** The end of the member that routes through it. */
  downstream: GraphEnd;
  subnet: string;
  /**
   * What the link does to packets (README "Link impairments"): upstream is what the
   * downstream end sends towards the internet, downstream what the upstream end sends back.
   * Absent on an ideal link.
   */
  impairment?: LinkShaping;
  /** Taken down by `labctl link down` (an outage). */
  down?: true;
}

export interface LabGraph {
  lab: string;
  source: string;
  /** From the internet down: the internet, then what hangs off it, breadth first. */
  members: GraphMember[];
  /** In the same order: each member's link to its router after the router's own. */
  links: GraphLink[];
}

function natOf(nat: Nat): GraphNat {
  const b = nat.behaviour;
  const pair = `${SHORT[b.mapping]}M+${SHORT[b.filtering]}F`;
  const timeouts: NonNullable<GraphNat['timeouts']> = {};
  if (b.udpTimeouts.unreplied !== DEFAULT_UDP_UNREPLIED) timeouts.udpUnreplied = b.udpTimeouts.unreplied;
  if (b.udpTimeouts.stream !== DEFAULT_UDP_STREAM) timeouts.udpStream = b.udpTimeouts.stream;
  if (b.tcpMappingTimeout !== DEFAULT_TCP_MAPPING_TIMEOUT) timeouts.tcpMapping = b.tcpMappingTimeout;
  return {
    mapping: b.mapping,
    filtering: b.filtering,
    ...(b.declaredAs ? { declaredAs: b.declaredAs } : {}),
    behaviour: b.declaredAs ? `${b.declaredAs} (${pair})` : pair,
    hairpinning: b.hairpinning,
    portPreservation: b.portPreservation,
    ...(b.fixedPort !== undefined ? { fixedPort: b.fixedPort } : {}),
    forwards: b.forwards.map((f) => ({ ...f })),
    ...(Object.keys(timeouts).length ? { timeouts } : {}),
    ...(b.profile ? { profile: b.profile } : {}),
    ...(b.fixedPort === undefined && b.portAllocation !== 'preserve' ? { portAllocation: b.portAllocation } : {}),
    ...(isDefaultRange(b.ports) ? {} : { ports: formatRange(b.ports) }),
    ...(nat.outside.pool.length > 1 ? { pool: { addresses: [...nat.outside.pool], pooling: b.pooling } } : {}),
    ...(b.portBlock ? { portBlock: { ...b.portBlock } } : {}),
    ...(b.quota !== undefined ? { quota: b.quota } : {}),
  };
}

/** The address (and subnet) an interface holds, from the member that owns it. */
function endOf(lab: Lab, end: Link['a'], bridge: string | undefined): { end: GraphEnd; subnet?: string } {
  const at = (a: { address: string; prefix: number }) => `${a.address}/${a.prefix}`;
  const node = lab.nodes.find((n) => n.name === end.owner);
  if (node?.link.ifname === end.ifname) return { end: { member: end.owner, ifname: end.ifname, address: at(node.link) }, subnet: node.link.subnet };
  const nat = lab.nats.find((n) => n.name === end.owner);
  if (nat) {
    if (nat.outside.ifname === end.ifname) return { end: { member: end.owner, ifname: end.ifname, address: at(nat.outside) }, subnet: nat.outside.subnet };
    if (nat.lan.ifname === end.ifname) return { end: { member: end.owner, ifname: end.ifname, address: at(nat.lan) }, subnet: nat.lan.subnet };
    if (bridge) return { end: { member: end.owner, ifname: end.ifname, bridge: { ifname: bridge, address: at(nat.lan) } }, subnet: nat.lan.subnet };
  }
  if (lab.internet.name === end.owner) {
    const link = lab.internet.links.find((l) => l.ifname === end.ifname);
    if (link) return { end: { member: end.owner, ifname: end.ifname, address: at(link) }, subnet: link.subnet };
  }
  return { end: { member: end.owner, ifname: end.ifname } };
}

/** The router each member routes through: a node's router, a NAT's upstream. */
function routerOf(lab: Lab, member: string): string | undefined {
  return lab.nodes.find((n) => n.name === member)?.router ?? lab.nats.find((n) => n.name === member)?.outside.upstream;
}

/**
 * A link's impairment: with the state of the lab that is up, what it does now (a live
 * change, `labctl link set|reset`); otherwise what the lab file declares.
 */
function linkImpairment(link: Link, state: LabState | undefined): { impairment?: LinkShaping; down?: true } {
  const live = state?.links?.find((l) => l.link === linkName(link));
  const impairment = live?.impairment ?? link.impairment;
  return { ...(impairment && !shapingIsEmpty(impairment) ? { impairment } : {}), ...(live?.down ? { down: true as const } : {}) };
}

/** The graph of a resolved lab (pure); `state`: the lab's state when it is up, for its live link changes. */
export function labGraph(lab: Lab, state?: LabState): LabGraph {
  const links: GraphLink[] = lab.links.map((link) => {
    // A link joins a member to the router it routes through; the router's end is upstream.
    const aRoutesThroughB = routerOf(lab, link.a.owner) === link.b.owner;
    const [down, up, upBridge] = aRoutesThroughB ? [link.a, link.b, link.bBridge] : [link.b, link.a, undefined];
    const downstream = endOf(lab, down, undefined);
    const upstream = endOf(lab, up, upBridge);
    return {
      upstream: upstream.end,
      downstream: downstream.end,
      subnet: downstream.subnet ?? upstream.subnet ?? '',
      ...linkImpairment(link, state),
    };
  });

  const all: GraphMember[] = [
    { name: lab.internet.name, kind: 'internet', netns: lab.internet.netns, machine: lab.internet.machine },
    ...lab.nats.map((n): GraphMember => ({ name: n.name, kind: 'nat', netns: n.netns, machine: n.machine, site: n.site, nat: natOf(n) })),
    ...lab.nodes.map(
      (n): GraphMember => ({ name: n.name, kind: n.site ? 'node' : 'internet-node', netns: n.netns, machine: n.machine, ...(n.site ? { site: n.site } : {}) }),
    ),
  ];
  // Breadth first from the internet, so that every renderer draws routers above what they serve.
  const order: string[] = [lab.internet.name];
  const orderedLinks: GraphLink[] = [];
  for (let i = 0; i < order.length; i++) {
    for (const l of links) {
      if (l.upstream.member !== order[i] || order.includes(l.downstream.member)) continue;
      order.push(l.downstream.member);
      orderedLinks.push(l);
    }
  }
  const members = [...order.map((name) => all.find((m) => m.name === name)!), ...all.filter((m) => !order.includes(m.name))];
  return { lab: lab.name, source: lab.source, members, links: [...orderedLinks, ...links.filter((l) => !orderedLinks.includes(l))] };
}

// --- text for labels, shared by the renderers ---

/** A link's impairment and outage, for a label; '' for an ideal link that is up. */
export function describeLinkState(l: Pick<GraphLink, 'impairment' | 'down'>): string {
  return [...(l.down ? ['DOWN'] : []), ...(l.impairment ? [describeShaping(l.impairment)] : [])].join(', ');
}

const KIND_TEXT: Record<MemberKind, string> = {
  internet: 'the internet',
  'internet-node': 'node on the internet',
  nat: 'NAT',
  node: 'node',
};

/** A member's label, line by line: name, what it is, the NAT's behaviour, its namespace. */
export function memberLines(m: GraphMember): string[] {
  const lines = [m.name];
  if (m.nat) {
    const n = m.nat;
    lines.push(`NAT ${n.behaviour}`);
    if (n.profile) lines.push(`profile ${n.profile}`);
    lines.push(n.hairpinning ? 'hairpinning' : 'no hairpinning');
    if (n.portPreservation) lines.push(`port preservation${n.ports ? ` in ${n.ports}` : ''}`);
    if (n.portAllocation) lines.push(`${n.portAllocation} ports${n.ports ? ` in ${n.ports}` : ''}`);
    if (n.pool) lines.push(`outside ${n.pool.addresses.join(', ')} (${n.pool.pooling})`);
    if (n.portBlock) lines.push(`port blocks ${n.portBlock.maxBlocks} x ${n.portBlock.size}`);
    if (n.quota !== undefined) lines.push(`quota ${n.quota} mappings per inside address`);
    if (n.fixedPort !== undefined) lines.push(`fixed port ${n.fixedPort}`);
    for (const f of n.forwards) lines.push(`forward ${f.protocol} ${f.port} → ${f.to}:${f.toPort}${f.public ? ' (public)' : ''}`);
    const t = n.timeouts;
    if (t?.udpUnreplied !== undefined || t?.udpStream !== undefined) {
      const parts = [t.udpUnreplied !== undefined ? `unreplied ${t.udpUnreplied} s` : '', t.udpStream !== undefined ? `stream ${t.udpStream} s` : ''];
      lines.push(`udp timeouts: ${parts.filter(Boolean).join(', ')}`);
    }
    if (t?.tcpMapping !== undefined) lines.push(`tcp mapping timeout ${t.tcpMapping} s`);
  } else {
    lines.push(KIND_TEXT[m.kind]);
  }
  lines.push(`${m.netns}${m.machine ? ', machine' : ''}`);
  return lines;
}

/** One end of a link: "ve-c0 10.0.1.1/24", or "ve-desk1-lan (port of br-lan 10.0.1.100/24)". */
export function endText(e: GraphEnd): string {
  if (e.address) return `${e.ifname} ${e.address}`;
  if (e.bridge) return `${e.ifname} (port of ${e.bridge.ifname} ${e.bridge.address})`;
  return e.ifname;
}

// --- Mermaid ---

/** Mermaid ids: names are [a-z0-9-]; "-" becomes "_" (names have none, so ids stay distinct) and "m_" keeps clear of keywords such as "end". */
const mermaidId = (name: string) => `m_${name.replace(/-/g, '_')}`;
/** Text inside a quoted Mermaid label: its own entity for a double quote; lines joined with <br/>. */
const mermaidText = (lines: string[]) => lines.map((l) => l.replace(/"/g, '#quot;').replace(/</g, '#lt;').replace(/>/g, '#gt;')).join('<br/>');

const MERMAID_SHAPE: Record<MemberKind, [string, string]> = {
  internet: ['((', '))'],
  'internet-node': ['([', '])'],
  nat: ['{{', '}}'],
  node: ['[', ']'],
};

/** A Mermaid flowchart, the internet on top. */
export function renderMermaid(g: LabGraph): string {
  const out = [`%% labctl graph: lab ${g.lab}`, 'flowchart TB'];
  for (const m of g.members) {
    const [open, close] = MERMAID_SHAPE[m.kind];
    out.push(`  ${mermaidId(m.name)}${open}"${mermaidText(memberLines(m))}"${close}`);
  }
  for (const l of g.links) {
    const label = [`${l.upstream.member}: ${endText(l.upstream)}`, `${l.downstream.member}: ${endText(l.downstream)}`];
    if (l.impairment || l.down) label.push(describeLinkState(l));
    out.push(`  ${mermaidId(l.upstream.member)} ---|"${mermaidText(label)}"| ${mermaidId(l.downstream.member)}`);
  }
  return `${out.join('\n')}\n`;
}

// --- Graphviz DOT ---

/** A DOT double-quoted string; a newline in it becomes DOT's centred line break. */
const dotString = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
/** Text inside an HTML-like label. */
const html = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const DOT_FILL: Record<MemberKind, string> = {
  internet: '#dbeafe',
  'internet-node': '#e0f2fe',
  nat: '#fef3c7',
  node: '#f3f4f6',
};

/**
 * A member as a table: its uplink interface on top, what it is in the middle, the
 * interfaces towards what it serves at the bottom (under the LAN bridge, when it has one).
 * Each interface is a port that its link's line starts or ends at.
 */
function dotMember(g: LabGraph, m: GraphMember): string {
  // One uplink at most; the bottom row has a cell per link down, which sets the width.
  const ups = g.links.filter((l) => l.downstream.member === m.name).map((l) => l.downstream);
  const downs = g.links.filter((l) => l.upstream.member === m.name).map((l) => l.upstream);
  const span = Math.max(1, downs.length);
  const cell = (e: GraphEnd, cols: number) =>
    `<TD PORT=${dotString(e.ifname)} COLSPAN="${cols}"><FONT POINT-SIZE="8">${html(e.ifname)}${e.address ? `<BR/>${html(e.address)}` : ''}</FONT></TD>`;
  const rows: string[] = [];
  if (ups.length) rows.push(`<TR>${ups.map((e) => cell(e, ups.length === 1 ? span : 1)).join('')}</TR>`);
  const [name, ...rest] = memberLines(m);
  rows.push(`<TR><TD COLSPAN="${span}" BGCOLOR="${DOT_FILL[m.kind]}"><B>${html(name!)}</B><BR/>${rest.map(html).join('<BR/>')}</TD></TR>`);
  const bridge = downs.find((e) => e.bridge)?.bridge;
  if (bridge) rows.push(`<TR><TD COLSPAN="${span}"><FONT POINT-SIZE="8">${html(bridge.ifname)} ${html(bridge.address)}</FONT></TD></TR>`);
  if (downs.length) rows.push(`<TR>${downs.map((e) => cell(e, 1)).join('')}</TR>`);
  return `  ${dotString(m.name)} [label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">${rows.join('')}</TABLE>>];`;
}

/** Graphviz DOT, the internet on top: each member a table of its interfaces, each link a line between two of them. */
export function renderDot(g: LabGraph): string {
  const out = [
    `graph ${dotString(g.lab)} {`,
    `  graph [label=${dotString(`lab ${g.lab}`)}, labelloc=t, fontname="sans-serif", nodesep=0.4, ranksep=0.8];`,
    '  node [shape=plain, fontname="sans-serif", fontsize=10];',
    '  edge [fontname="sans-serif", fontsize=8];',
    ...g.members.map((m) => dotMember(g, m)),
  ];
  for (const l of g.links) {
    const label = [l.subnet, ...(l.impairment || l.down ? [describeLinkState(l)] : [])].join('\n');
    const up = `${dotString(l.upstream.member)}:${dotString(l.upstream.ifname)}:s`;
    const down = `${dotString(l.downstream.member)}:${dotString(l.downstream.ifname)}:n`;
    out.push(`  ${up} -- ${down} [label=${dotString(label)}];`);
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}

// --- JSON ---

export function renderJson(g: LabGraph): string {
  return `${JSON.stringify(g, null, 2)}\n`;
}

// --- SVG through Graphviz ---

/** An executable of that name on PATH, if any. */
function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return join(dir, command);
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export const GRAPHVIZ_MISSING = "--format svg needs Graphviz's dot, which is not installed: install graphviz (apt-get install graphviz)";

/** SVG drawn by Graphviz's dot from renderDot's text (fed on stdin). */
export async function renderSvg(g: LabGraph): Promise<string> {
  const dot = onPath('dot');
  if (!dot) throw new LabctlError(GRAPHVIZ_MISSING);
  const r = await run([dot, '-Tsvg'], { input: renderDot(g), step: 'graph', timeoutMs: 60_000 });
  return r.stdout;
}

export const GRAPH_FORMATS = ['mermaid', 'dot', 'svg', 'json'] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

export async function renderGraph(g: LabGraph, format: GraphFormat): Promise<string> {
  switch (format) {
    case 'mermaid':
      return renderMermaid(g);
    case 'dot':
      return renderDot(g);
    case 'json':
      return renderJson(g);
    case 'svg':
      return renderSvg(g);
  }
}
