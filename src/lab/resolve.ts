// From a parsed lab file to the resolved Lab: schema check, semantic checks, defaults
// and address planning. Pure: reads nothing but its arguments, changes nothing.
// Every problem becomes an InputIssue naming the field path and the reason. Resolution runs in
// stages (schema; names and the site tree; subnets; addresses; NAT behaviour; interface
// names) and reports every problem of the first stage that has any: each later stage reads
// what the earlier ones resolved (a subnet plan needs a sound site tree, addresses need
// their subnets), and checking it on top of a broken one would report made-up errors.
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { core } from 'zod/mini';
import { CLASSIC, type Dependency } from './behaviour.js';
import {
  LAN_BRIDGE,
  internetIfname,
  natLanPortIfname,
  natSoleLanIfname,
  natUplinkIfname,
  nodeIfname,
  IFNAME_MAX_BYTES,
} from './ifnames.js';
import type { Attachment, Forward, Internet, Lab, Link, Nat, NatBehaviour, Node } from './model.js';
import { type InputIssue, UsageError } from '../util/errors.js';
import {
  type Cidr,
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  isHostOf,
  labSchema,
  parseCidr,
  parseIpv4,
  type LabFile,
  type SiteFile,
} from './schema.js';

/** A lab file's problems: bad input (exit 2), one line per problem naming its field. */
export const labError = (file: string, issues: InputIssue[]): UsageError => UsageError.forFile(file, issues);

export const DEFAULT_UDP_UNREPLIED = 30;
export const DEFAULT_UDP_STREAM = 120;
/** RFC 5382 REQ-5: an established TCP mapping must last at least 2 h 4 min. */
export const DEFAULT_TCP_MAPPING_TIMEOUT = 7440;

function zodPath(path: PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** What a wrongly typed value should have been, in the lab file's terms. */
const EXPECTED: Record<string, string> = {
  number: 'a number',
  boolean: 'true or false',
  string: 'a string',
  array: 'a list',
  object: 'a mapping',
};

function zodIssues(error: core.$ZodError): InputIssue[] {
  const out: InputIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ path: zodPath([...issue.path, key]), message: 'unknown key' });
      }
      continue;
    }
    let message = issue.message;
    // Needs safeParse(..., { reportInput: true }): without it zod 4 never sets issue.input.
    // `expected: 'int'` is .int()'s own check, whose message the schema already words.
    if (issue.code === 'invalid_type' && issue.expected !== 'int') {
      message = issue.input === undefined ? 'is required' : `must be ${EXPECTED[issue.expected] ?? issue.expected}`;
    }
    out.push({ path: zodPath(issue.path), message });
  }
  return out;
}

/** Parses YAML text and resolves it; throws UsageError with every problem of the first failing stage. */
export function parseLab(text: string, source: string): Lab {
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split('\n')[0]! : String(e);
    throw labError(source, [{ path: '', message: `is not valid YAML: ${msg}` }]);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw labError(source, [{ path: '', message: 'must be a YAML mapping with at least `name:` and `sites:` or `nodes:`' }]);
  }
  const parsed = labSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) throw labError(source, zodIssues(parsed.error));
  return resolveLab(parsed.data, source);
}

interface Planned {
  subnet: Cidr;
  path: string;
  what: string;
}

export function resolveLab(file: LabFile, source: string): Lab {
  const issues: InputIssue[] = [];
  const problem = (path: string, message: string) => issues.push({ path, message });
  const prefix = file.prefix ?? '';
  const sites = file.sites ?? [];
  const inetNodes = file.nodes ?? [];
  if (sites.length === 0 && inetNodes.length === 0) problem('', 'declares no `sites:` and no `nodes:`; a lab needs at least one');

  // ---- Names: one namespace and machine per node, NAT and the internet. ----
  const internetName = file.internet?.name ?? 'inet';
  const taken = new Map<string, string>(); // name -> path where first declared
  const claim = (n: string, path: string) => {
    const first = taken.get(n);
    if (first !== undefined) problem(path, `duplicate name "${n}" (already used at ${first || 'internet.name'})`);
    else taken.set(n, path);
  };
  claim(internetName, 'internet.name');
  const siteNames = new Map<string, number>();
  sites.forEach((s, i) => {
    if (siteNames.has(s.name)) problem(`sites[${i}].name`, `duplicate site name "${s.name}" (already used at sites[${siteNames.get(s.name)}].name)`);
    else siteNames.set(s.name, i);
    if (s.name === 'internet') problem(`sites[${i}].name`, '"internet" is reserved: `upstream: internet` means the internet itself; choose another site name');
    claim(s.nat?.name ?? `${s.name}-nat`, s.nat?.name ? `sites[${i}].nat.name` : `sites[${i}].name (its NAT "${s.name}-nat")`);
    (s.nodes ?? []).forEach((n, j) => claim(n.name, `sites[${i}].nodes[${j}].name`));
    if ((s.nodes ?? []).length === 0 && !sites.some((c) => c.upstream === s.name)) {
      problem(`sites[${i}].nodes`, 'a site needs at least one node or a site behind it');
    }
  });
  inetNodes.forEach((n, i) => claim(n.name, `nodes[${i}].name`));

  // ---- Upstreams: internet or another site; no cycles. ----
  const upstreamOf = (s: SiteFile) => s.upstream ?? 'internet';
  sites.forEach((s, i) => {
    const up = s.upstream;
    if (up === undefined || up === 'internet') return;
    if (up === s.name) problem(`sites[${i}].upstream`, 'a site cannot sit behind itself');
    else if (!siteNames.has(up)) problem(`sites[${i}].upstream`, `unknown site "${up}" (use "internet" or the name of another site)`);
  });
  const depth = new Map<string, number>();
  const depthOf = (name: string, seen: Set<string>): number => {
    if (depth.has(name)) return depth.get(name)!;
    const s = sites[siteNames.get(name)!];
    if (!s) return 0;
    const up = upstreamOf(s);
    if (up === 'internet' || !siteNames.has(up)) return 0;
    if (seen.has(name)) return -1;
    seen.add(name);
    const d = depthOf(up, seen);
    const r = d < 0 ? -1 : d + 1;
    depth.set(name, r);
    return r;
  };
  const inLoop = (s: SiteFile): boolean => {
    let cur = upstreamOf(s);
    for (let n = 0; n < sites.length && cur !== s.name; n++) {
      const u = siteNames.has(cur) ? sites[siteNames.get(cur)!] : undefined;
      if (!u) return false;
      cur = upstreamOf(u);
    }
    return cur === s.name;
  };
  sites.forEach((s, i) => {
    if (depthOf(s.name, new Set()) >= 0) return;
    problem(`sites[${i}].upstream`, inLoop(s) ? `sites form a loop through "${s.name}"` : `site "${s.name}" sits behind a loop of sites and never reaches the internet`);
  });
  if (issues.length) throw labError(source, issues);

  // ---- Subnets: explicit ones first, then defaults from the free ones. ----
  const planned: Planned[] = [];
  const readCidr = (value: string | undefined, path: string): Cidr | undefined => {
    if (value === undefined) return undefined;
    const c = parseCidr(value);
    if (!c) problem(path, `"${value}" is not a usable IPv4 subnet (a.b.c.d/len with len 8-30 and no host bits set)`);
    return c;
  };
  const explicitLan = sites.map((s, i) => readCidr(s.lan?.subnet, `sites[${i}].lan.subnet`));
  const explicitUp = sites.map((s, i) => (upstreamOf(s) === 'internet' ? readCidr(s.uplink?.subnet, `sites[${i}].uplink.subnet`) : undefined));
  const explicitNodeUp = inetNodes.map((n, i) => readCidr(n.uplink?.subnet, `nodes[${i}].uplink.subnet`));
  const explicit: Planned[] = [];
  explicitLan.forEach((c, i) => c && explicit.push({ subnet: c, path: `sites[${i}].lan.subnet`, what: `LAN of site ${sites[i]!.name}` }));
  explicitUp.forEach((c, i) => c && explicit.push({ subnet: c, path: `sites[${i}].uplink.subnet`, what: `uplink of site ${sites[i]!.name}` }));
  explicitNodeUp.forEach((c, i) => c && explicit.push({ subnet: c, path: `nodes[${i}].uplink.subnet`, what: `uplink of node ${inetNodes[i]!.name}` }));
  for (let a = 0; a < explicit.length; a++) {
    for (let b = 0; b < a; b++) {
      if (cidrsOverlap(explicit[a]!.subnet, explicit[b]!.subnet)) {
        problem(explicit[a]!.path, `${formatCidr(explicit[a]!.subnet)} overlaps ${formatCidr(explicit[b]!.subnet)} (${explicit[b]!.what}, at ${explicit[b]!.path})`);
      }
    }
  }
  planned.push(...explicit);
  const allocate = (base: (k: number) => Cidr, what: string, path: string): Cidr => {
    for (let k = 1; k < 255; k++) {
      const c = base(k);
      if (!planned.some((p) => cidrsOverlap(p.subnet, c))) {
        planned.push({ subnet: c, path, what });
        return c;
      }
    }
    problem(path, 'no free /24 left for a default subnet; give one explicitly');
    return base(0);
  };
  const p24 = (a: number, b: number) => (k: number): Cidr => ({ network: ((a << 24) >>> 0) + (b << 16) + (k << 8), prefix: 24 });
  const lanSubnets = sites.map((s, i) => explicitLan[i] ?? allocate(p24(10, 0), `LAN of site ${s.name}`, `sites[${i}].lan.subnet`));
  const upSubnets: (Cidr | undefined)[] = sites.map((s, i) =>
    upstreamOf(s) === 'internet' ? (explicitUp[i] ?? allocate(p24(100, 64), `uplink of site ${s.name}`, `sites[${i}].uplink.subnet`)) : undefined,
  );
  const nodeUpSubnets = inetNodes.map((n, i) => explicitNodeUp[i] ?? allocate(p24(100, 64), `uplink of node ${n.name}`, `nodes[${i}].uplink.subnet`));
  if (issues.length) throw labError(source, issues);
  // A child's uplink is its parent's LAN, explicit or planned: any other subnet is a mistake.
  sites.forEach((s, i) => {
    if (upstreamOf(s) === 'internet' || s.uplink?.subnet === undefined) return;
    const parent = sites[siteNames.get(upstreamOf(s))!]!;
    const parentLan = lanSubnets[siteNames.get(parent.name)!]!;
    const mine = parseCidr(s.uplink.subnet);
    if (mine && formatCidr(parentLan) !== formatCidr(mine)) {
      problem(`sites[${i}].uplink.subnet`, `must be the LAN of site "${parent.name}" (${formatCidr(parentLan)}) that it sits behind, or be left out`);
    }
  });
  if (issues.length) throw labError(source, issues);

  // ---- Addresses within each subnet. ----
  const used = new Map<string, Map<number, string>>(); // subnet -> addr -> path
  const useAddr = (c: Cidr, addr: number, path: string) => {
    const key = formatCidr(c);
    const m = used.get(key) ?? new Map<number, string>();
    used.set(key, m);
    const first = m.get(addr);
    if (first !== undefined) problem(path, `address ${formatIpv4(addr)} is already used at ${first}`);
    else m.set(addr, path);
  };
  const readAddr = (value: string | undefined, c: Cidr, path: string): number | undefined => {
    if (value === undefined) return undefined;
    const a = parseIpv4(value)!;
    if (!isHostOf(c, a)) {
      problem(path, cidrContains(c, a) ? `${value} is the network or broadcast address of ${formatCidr(c)}` : `${value} is outside its subnet ${formatCidr(c)}`);
      return undefined;
    }
    return a;
  };
  const lastHost = (c: Cidr) => c.network + 2 ** (32 - c.prefix) - 2;
  const preferred = (c: Cidr, offset: number) => (isHostOf(c, c.network + offset) ? c.network + offset : c.network + 1);
  const nextFree = (c: Cidr, from: number): number => {
    const m = used.get(formatCidr(c));
    for (let a = from; a <= lastHost(c); a++) if (!m?.has(a)) return a;
    return -1;
  };

  // Pass 1: every explicit address, so defaults never take one.
  const lanGateway: number[] = [];
  const upAddr: number[] = [];
  const upGw: number[] = [];
  sites.forEach((s, i) => {
    const c = lanSubnets[i]!;
    const gw = readAddr(s.lan?.gateway, c, `sites[${i}].lan.gateway`);
    if (gw !== undefined) useAddr(c, gw, `sites[${i}].lan.gateway`);
    (s.nodes ?? []).forEach((n, j) => {
      const a = readAddr(n.address, c, `sites[${i}].nodes[${j}].address`);
      if (a !== undefined) useAddr(c, a, `sites[${i}].nodes[${j}].address`);
    });
  });
  // Children's explicit addresses on their parent's LAN count as explicit too.
  sites.forEach((s, i) => {
    const up = upstreamOf(s);
    if (up === 'internet') return;
    const c = lanSubnets[siteNames.get(up)!]!;
    const a = readAddr(s.uplink?.address, c, `sites[${i}].uplink.address`);
    if (a !== undefined) {
      useAddr(c, a, `sites[${i}].uplink.address`);
      upAddr[i] = a;
    }
  });
  sites.forEach((s, i) => {
    const c = lanSubnets[i]!;
    let gw = s.lan?.gateway !== undefined ? parseIpv4(s.lan.gateway) : undefined;
    if (gw === undefined) {
      gw = preferred(c, 100);
      if (used.get(formatCidr(c))?.has(gw)) gw = nextFree(c, c.network + 1);
      useAddr(c, gw, `sites[${i}].lan.gateway`);
    }
    lanGateway[i] = gw;
  });
  // Uplink addresses: internet-attached links have the internet's router at `gateway`.
  const attachUp = (c: Cidr, up: { address?: string; gateway?: string } | undefined, path: string, i: number, arr: 'site' | 'node') => {
    const a = readAddr(up?.address, c, `${path}.address`);
    const g = readAddr(up?.gateway, c, `${path}.gateway`);
    if (a !== undefined) useAddr(c, a, `${path}.address`);
    if (g !== undefined) useAddr(c, g, `${path}.gateway`);
    let gw = g ?? lastHost(c);
    if (g === undefined) {
      if (used.get(formatCidr(c))?.has(gw)) gw = nextFree(c, c.network + 1);
      useAddr(c, gw, `${path}.gateway`);
    }
    let addr = a ?? preferred(c, 100);
    if (a === undefined) {
      if (used.get(formatCidr(c))?.has(addr)) addr = nextFree(c, c.network + 1);
      useAddr(c, addr, `${path}.address`);
    }
    if (arr === 'site') {
      upAddr[i] = addr;
      upGw[i] = gw;
    }
    return { addr, gw };
  };
  sites.forEach((s, i) => {
    const c = upSubnets[i];
    if (c) attachUp(c, s.uplink, `sites[${i}].uplink`, i, 'site');
  });
  const nodeUp = inetNodes.map((n, i) => attachUp(nodeUpSubnets[i]!, n.uplink, `nodes[${i}].uplink`, i, 'node'));
  // Children of a site sit on its LAN (explicit addresses were taken in pass 1).
  sites.forEach((s, i) => {
    const up = upstreamOf(s);
    if (up === 'internet') return;
    const pi = siteNames.get(up)!;
    const c = lanSubnets[pi]!;
    if (s.uplink?.gateway !== undefined) {
      const g = parseIpv4(s.uplink.gateway)!;
      if (g !== lanGateway[pi]) {
        problem(`sites[${i}].uplink.gateway`, `routes to unknown gateway ${s.uplink.gateway}: on ${formatCidr(c)} only the NAT of site "${up}" routes, at ${formatIpv4(lanGateway[pi]!)}`);
      }
    }
    upGw[i] = lanGateway[pi]!;
  });
  sites.forEach((s, i) => {
    const up = upstreamOf(s);
    if (up === 'internet' || upAddr[i] !== undefined) return;
    const c = lanSubnets[siteNames.get(up)!]!;
    const a = nextFree(c, c.network + 1);
    if (a < 0) problem(`sites[${i}].uplink.address`, `no free address left in ${formatCidr(c)}`);
    else useAddr(c, a, `sites[${i}].uplink.address`);
    upAddr[i] = a;
  });
  const nodeAddr: number[][] = sites.map((s, i) => {
    const c = lanSubnets[i]!;
    return (s.nodes ?? []).map((n, j) => {
      if (n.address !== undefined) return parseIpv4(n.address)!;
      const a = nextFree(c, c.network + 1);
      if (a < 0) problem(`sites[${i}].nodes[${j}].address`, `no free address left in ${formatCidr(c)}`);
      else useAddr(c, a, `sites[${i}].nodes[${j}].address`);
      return a;
    });
  });
  if (issues.length) throw labError(source, issues);

  // ---- NAT behaviour. ----
  const nsName = (n: string) => `ns-${prefix}${n}`;
  const natNameOf = (s: SiteFile) => s.nat?.name ?? `${s.name}-nat`;
  const behaviours = sites.map((s, i) => resolveBehaviour(s, i, nodeAddr[i]!, problem));
  if (issues.length) throw labError(source, issues);

  // ---- Wiring: links and interface names. ----
  const links: Link[] = [];
  const internet: Internet = {
    kind: 'internet',
    name: internetName,
    netns: nsName(internetName),
    machine: file.internet?.machine ?? false,
    links: [],
  };
  const nats: Nat[] = [];
  const nodes: Node[] = [];
  const att = (ifname: string, addr: number, c: Cidr): Attachment => ({ ifname, address: formatIpv4(addr), prefix: c.prefix, subnet: formatCidr(c) });

  sites.forEach((s, i) => {
    const natName = natNameOf(s);
    const up = upstreamOf(s);
    const lanMembers = [...(s.nodes ?? []).map((n) => n.name), ...sites.filter((c) => upstreamOf(c) === s.name).map(natNameOf)];
    const bridged = lanMembers.length > 1;
    const lanIf = bridged ? LAN_BRIDGE : natSoleLanIfname(natName);
    const toInternet = up === 'internet';
    const upC = toInternet ? upSubnets[i]! : lanSubnets[siteNames.get(up)!]!;
    nats.push({
      kind: 'nat',
      name: natName,
      site: s.name,
      netns: nsName(natName),
      machine: s.nat?.machine ?? true,
      behaviour: behaviours[i]!,
      outside: { ...att(natUplinkIfname(natName, toInternet), upAddr[i]!, upC), gateway: formatIpv4(upGw[i]!), upstream: toInternet ? internetName : natNameOf(sites[siteNames.get(up)!]!) },
      lan: { ...att(lanIf, lanGateway[i]!, lanSubnets[i]!), members: lanMembers, bridged },
    });
    (s.nodes ?? []).forEach((n, j) => {
      nodes.push({
        kind: 'node',
        name: n.name,
        site: s.name,
        netns: nsName(n.name),
        machine: n.machine ?? true,
        link: { ...att(nodeIfname(n.name), nodeAddr[i]![j]!, lanSubnets[i]!), gateway: formatIpv4(lanGateway[i]!) },
        router: natName,
      });
    });
  });
  inetNodes.forEach((n, i) => {
    const c = nodeUpSubnets[i]!;
    nodes.push({
      kind: 'node',
      name: n.name,
      netns: nsName(n.name),
      machine: n.machine ?? true,
      link: { ...att(nodeIfname(n.name), nodeUp[i]!.addr, c), gateway: formatIpv4(nodeUp[i]!.gw) },
      router: internetName,
    });
    internet.links.push({ ...att(internetIfname(n.name), nodeUp[i]!.gw, c), peer: n.name });
    links.push({ a: { netns: nsName(n.name), ifname: nodeIfname(n.name), owner: n.name }, b: { netns: internet.netns, ifname: internetIfname(n.name), owner: internetName } });
  });
  // LAN links: each member's own interface to its NAT's LAN side.
  for (const nat of nats) {
    for (const m of nat.lan.members) {
      const memberNode = nodes.find((n) => n.name === m);
      const memberNat = nats.find((n) => n.name === m);
      const aIf = memberNode ? memberNode.link.ifname : memberNat!.outside.ifname;
      const aNs = memberNode ? memberNode.netns : memberNat!.netns;
      links.push({
        a: { netns: aNs, ifname: aIf, owner: m },
        b: { netns: nat.netns, ifname: nat.lan.bridged ? natLanPortIfname(m) : nat.lan.ifname, owner: nat.name },
        ...(nat.lan.bridged ? { bBridge: LAN_BRIDGE } : {}),
      });
    }
    if (nat.outside.upstream === internetName) {
      const s = sites.find((x) => natNameOf(x) === nat.name)!;
      const c = parseCidr(nat.outside.subnet)!;
      const gw = parseIpv4(nat.outside.gateway)!;
      internet.links.push({ ...att(internetIfname(s.name), gw, c), peer: nat.name });
      links.push({ a: { netns: nat.netns, ifname: nat.outside.ifname, owner: nat.name }, b: { netns: internet.netns, ifname: internetIfname(s.name), owner: internetName } });
    }
  }
  // Interface names must be unique within each namespace (after shortening).
  // A clash is reported at the field that declared the far end of the link (what the
  // interface is for), naming the other link's far end and its field too.
  const declaredAt = (owner: string) => taken.get(owner) ?? owner;
  const perNs = new Map<string, Map<string, string>>(); // netns -> ifname -> far end's owner
  for (const l of links) {
    for (const [end, far] of [[l.a, l.b], [l.b, l.a]] as const) {
      const m = perNs.get(end.netns) ?? new Map<string, string>();
      perNs.set(end.netns, m);
      if (Buffer.byteLength(end.ifname) > IFNAME_MAX_BYTES) problem(declaredAt(far.owner), `interface name "${end.ifname}" is longer than ${IFNAME_MAX_BYTES} bytes`);
      const other = m.get(end.ifname);
      if (other !== undefined) {
        problem(
          declaredAt(far.owner),
          `the interface of ${end.owner} towards ${far.owner} would be named "${end.ifname}" in namespace ${end.netns}, the same as the one towards ${other} (${declaredAt(other)}); interface names are cut to ${IFNAME_MAX_BYTES} bytes, so rename one of them`,
        );
      } else m.set(end.ifname, far.owner);
    }
  }
  if (issues.length) throw labError(source, issues);
  return { name: file.name, source, prefix, ...(file.image ? { image: file.image } : {}), internet, nats, nodes, links };
}

function resolveBehaviour(s: SiteFile, i: number, nodeAddrs: number[], problem: (path: string, message: string) => void): NatBehaviour {
  const nat = s.nat ?? {};
  const path = `sites[${i}].nat`;
  let mapping: Dependency | undefined = nat.mapping;
  let filtering: Dependency | undefined = nat.filtering;
  if (nat.type) {
    const c = CLASSIC[nat.type];
    if (mapping && mapping !== c.mapping) problem(`${path}.mapping`, `${nat.type} means mapping ${c.mapping}, not ${mapping}; give either type or mapping/filtering`);
    if (filtering && filtering !== c.filtering) problem(`${path}.filtering`, `${nat.type} means filtering ${c.filtering}, not ${filtering}; give either type or mapping/filtering`);
    mapping = c.mapping;
    filtering = c.filtering;
  } else {
    if (!mapping && !filtering) problem(`${path}.type`, 'is required: a NAT type (full-cone, restricted-cone, port-restricted-cone, symmetric) or both mapping and filtering');
    else if (!mapping) problem(`${path}.mapping`, 'is required when filtering is given (or give a type)');
    else if (!filtering) problem(`${path}.filtering`, 'is required when mapping is given (or give a type)');
  }
  mapping ??= 'endpoint-independent';
  filtering ??= 'endpoint-independent';
  const eim = mapping === 'endpoint-independent';
  if (nat['fixed-port'] !== undefined && !eim) problem(`${path}.fixed-port`, `a fixed outside port is endpoint-independent mapping; it cannot be combined with mapping ${mapping}`);
  if (nat['port-preservation'] === true && !eim) problem(`${path}.port-preservation`, `port preservation keeps one outside port per inside port, which is endpoint-independent mapping; it cannot be combined with mapping ${mapping}`);
  if (nat['port-preservation'] === true && nat['fixed-port'] !== undefined) problem(`${path}.port-preservation`, 'cannot be combined with fixed-port (every flow leaves from the fixed port)');
  const nodes = s.nodes ?? [];
  const forwards: Forward[] = [];
  const seen = new Set<string>();
  (nat.forwards ?? []).forEach((f, j) => {
    const fp = `${path}.forwards[${j}]`;
    const key = `${f.protocol}/${f.port}`;
    if (seen.has(key)) problem(`${fp}.port`, `duplicate forward of ${key}`);
    seen.add(key);
    const idx = nodes.findIndex((n) => n.name === f.to);
    if (idx < 0) {
      problem(`${fp}.to`, `unknown node "${f.to}": a forward must point at a node of site "${s.name}" (${nodes.map((n) => n.name).join(', ') || 'it has none'})`);
      return;
    }
    forwards.push({ protocol: f.protocol, port: f.port, to: f.to, toAddress: formatIpv4(nodeAddrs[idx]!), toPort: f['to-port'] ?? f.port, public: f.public ?? false });
  });
  const unreplied = nat['udp-timeouts']?.unreplied ?? DEFAULT_UDP_UNREPLIED;
  const stream = nat['udp-timeouts']?.stream ?? DEFAULT_UDP_STREAM;
  if (stream < unreplied) problem(`${path}.udp-timeouts.stream`, `(${stream} s) must not be shorter than unreplied (${unreplied} s)`);
  return {
    ...(nat.type ? { declaredAs: nat.type } : {}),
    mapping,
    filtering,
    hairpinning: nat.hairpinning ?? false,
    portPreservation: nat['port-preservation'] ?? (eim && nat['fixed-port'] === undefined),
    ...(nat['fixed-port'] !== undefined ? { fixedPort: nat['fixed-port'] } : {}),
    forwards,
    udpTimeouts: { unreplied, stream },
    tcpMappingTimeout: nat['tcp-mapping-timeout'] ?? DEFAULT_TCP_MAPPING_TIMEOUT,
  };
}
