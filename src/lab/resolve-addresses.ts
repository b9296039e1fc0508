// Resolution stage "addresses": every address within its subnet. Explicit addresses are
// taken first, so that no default ever takes one; then the defaults: a LAN's gateway at .100
// (else the first free address), on an internet uplink the internet's router at the last
// address and the NAT at .100, and nodes and child NATs from .1 up. A NAT with several outside
// addresses (`nat.outside`, or its profile's) has them reserved here like any other: its own
// address first, then the listed ones, or as many more as it asks for (from .101 up on an
// internet uplink, the next free ones on a parent's LAN).
import { type Cidr, cidrContains, formatCidr, formatIpv4, isHostOf, parseIpv4 } from '../util/ipv4.js';
import { poolRequest } from './resolve-nat-ports.js';
import type { SiteTree } from './resolve-names.js';
import type { Subnets } from './resolve-subnets.js';
import type { Report } from './resolve.js';

/** An address and the router it routes through, on one link. */
interface Uplink {
  address: number;
  gateway: number;
}

export interface Addresses {
  /** Per site: its NAT's address on its LAN, the gateway of everything on the LAN. */
  lanGateway: number[];
  /** Per site: its NAT's outside address and gateway (on the internet or its parent's LAN). */
  siteUplink: Uplink[];
  /** Per site: every outside address of its NAT, siteUplink's address first. */
  sitePool: number[][];
  /** Per site, per node: the node's address on the site's LAN. */
  nodeAddress: number[][];
  /** Per internet node: its address and the internet's router on its uplink. */
  internetNodeUplink: Uplink[];
}

export function planAddresses(tree: SiteTree, subnets: Subnets, report: Report): Addresses {
  const { sites, internetNodes, parent } = tree;
  const { lan } = subnets;
  const book = new AddressBook(report);

  // Pass 1: every explicit address, so defaults never take one.
  sites.forEach((s, i) => {
    const c = lan[i]!;
    book.takeExplicit(s.lan?.gateway, c, `sites[${i}].lan.gateway`);
    (s.nodes ?? []).forEach((n, j) => {
      book.takeExplicit(n.address, c, `sites[${i}].nodes[${j}].address`);
    });
  });
  // Children's explicit addresses on their parent's LAN count as explicit too.
  const childAddress: (number | undefined)[] = sites.map((s, i) => {
    const p = parent[i];
    return p === undefined ? undefined : book.takeExplicit(s.uplink?.address, lan[p]!, `sites[${i}].uplink.address`);
  });
  // Listed pool addresses count as explicit too (on the internet, each uplink is a subnet of its own: taken there).
  const listedPool = sites.map((s, i) => {
    const p = parent[i];
    if (p === undefined) return [];
    return takeListedPool(book, s.nat, s.uplink?.address, lan[p]!, i, report);
  });
  const lanGateway = sites.map((s, i) => {
    if (s.lan?.gateway !== undefined) return parseIpv4(s.lan.gateway)!;
    const c = lan[i]!;
    return book.takeDefault(c, preferred(c, 100), `sites[${i}].lan.gateway`);
  });
  // Internet-attached uplinks: the internet's router at their gateway. `listed`: takes a NAT's listed pool (before any default).
  const onInternet = (c: Cidr, up: { address?: string; gateway?: string } | undefined, path: string, listed: () => number[] = () => []): Uplink => {
    const a = book.read(up?.address, c, `${path}.address`);
    const g = book.read(up?.gateway, c, `${path}.gateway`);
    if (a !== undefined) book.take(c, a, `${path}.address`);
    if (g !== undefined) book.take(c, g, `${path}.gateway`);
    const pool = listed();
    const gateway = g ?? book.takeDefault(c, lastHost(c), `${path}.gateway`);
    const address = a ?? pool[0] ?? book.takeDefault(c, preferred(c, 100), `${path}.address`);
    return { address, gateway };
  };
  const internetPool: number[][] = sites.map(() => []);
  const internetUplink = sites.map((s, i) => {
    const c = subnets.uplink[i];
    if (!c) return undefined;
    return onInternet(c, s.uplink, `sites[${i}].uplink`, () => {
      internetPool[i] = takeListedPool(book, s.nat, s.uplink?.address, c, i, report);
      return internetPool[i]!;
    });
  });
  const internetNodeUplink = internetNodes.map((n, i) => onInternet(subnets.internetNodeUplink[i]!, n.uplink, `nodes[${i}].uplink`));
  // Children of a site sit on its LAN and route through its NAT (explicit addresses were taken in pass 1).
  sites.forEach((s, i) => {
    const p = parent[i];
    if (p === undefined || s.uplink?.gateway === undefined) return;
    if (parseIpv4(s.uplink.gateway)! !== lanGateway[p]) {
      report(
        `sites[${i}].uplink.gateway`,
        `routes to unknown gateway ${s.uplink.gateway}: on ${formatCidr(lan[p]!)} only the NAT of site "${sites[p]!.name}" routes, at ${formatIpv4(lanGateway[p]!)}`,
      );
    }
  });
  const siteUplink = sites.map((s, i): Uplink => {
    const p = parent[i];
    if (p === undefined) return internetUplink[i]!;
    return { address: childAddress[i] ?? listedPool[i]![0] ?? book.takeNextFree(lan[p]!, `sites[${i}].uplink.address`), gateway: lanGateway[p]! };
  });
  const nodeAddress = sites.map((s, i) =>
    (s.nodes ?? []).map((n, j) => (n.address !== undefined ? parseIpv4(n.address)! : book.takeNextFree(lan[i]!, `sites[${i}].nodes[${j}].address`))),
  );
  // Each NAT's pool: its own address, the listed ones, then as many more as it asks for (after the
  // nodes, so that a pool added to a lab moves no other address).
  const sitePool = sites.map((s, i) => {
    const p = parent[i];
    const c = p === undefined ? subnets.uplink[i]! : lan[p]!;
    const own = siteUplink[i]!.address;
    const pool = [own, ...(p === undefined ? internetPool[i]! : listedPool[i]!).filter((a) => a !== own)];
    const { count } = poolRequest(s.nat);
    for (let k = 1; pool.length < count; k++) {
      const path = `sites[${i}].nat.outside`;
      const a = p === undefined ? book.takeDefaultFrom(c, preferred(c, 100 + k), path) : book.takeNextFree(c, path);
      if (a < 0) break;
      pool.push(a);
    }
    return pool;
  });
  return { lanGateway, siteUplink, sitePool, nodeAddress, internetNodeUplink };
}

/**
 * Takes a NAT's listed outside addresses (`nat.outside: [a, b]`) in its uplink's subnet c, in
 * order; the uplink's own address, when the lab gives it, must be one of them (it is taken
 * with the uplink). Returns the ones it could take.
 */
function takeListedPool(
  book: AddressBook,
  nat: Parameters<typeof poolRequest>[0],
  uplinkAddress: string | undefined,
  c: Cidr,
  i: number,
  report: Report,
): number[] {
  const listed = poolRequest(nat).listed;
  if (!listed) return [];
  const path = `sites[${i}].nat.outside`;
  const own = uplinkAddress !== undefined ? parseIpv4(uplinkAddress) : undefined;
  if (own !== undefined && !listed.some((a) => parseIpv4(a) === own))
    report(path, `must include the uplink's address ${uplinkAddress}: the NAT's own address is one of its outside addresses (or leave uplink.address out)`);
  const out: number[] = [];
  listed.forEach((value, j) => {
    if (parseIpv4(value) === undefined) {
      report(`${path}[${j}]`, `"${value}" is not an IPv4 address`);
      return;
    }
    const a = book.read(value, c, `${path}[${j}]`);
    if (a === undefined) return;
    if (a !== own) book.take(c, a, `${path}[${j}]`);
    out.push(a);
  });
  return out;
}

const lastHost = (c: Cidr) => c.network + 2 ** (32 - c.prefix) - 2;
/** The address at this offset in c, or c's first host address when c is too small for it. */
const preferred = (c: Cidr, offset: number) => (isHostOf(c, c.network + offset) ? c.network + offset : c.network + 1);

/** The addresses taken in each subnet, and where each was taken (for messages about a second use). */
class AddressBook {
  private readonly used = new Map<string, Map<number, string>>(); // subnet -> address -> path

  constructor(private readonly report: Report) {}

  /** An address the lab file gives (undefined: none given), when it is a host address of c; reports it when not. */
  read(value: string | undefined, c: Cidr, path: string): number | undefined {
    if (value === undefined) return undefined;
    const a = parseIpv4(value)!;
    if (isHostOf(c, a)) return a;
    this.report(
      path,
      cidrContains(c, a) ? `${value} is the network or broadcast address of ${formatCidr(c)}` : `${value} is outside its subnet ${formatCidr(c)}`,
    );
    return undefined;
  }

  /** read(), then take(). */
  takeExplicit(value: string | undefined, c: Cidr, path: string): number | undefined {
    const a = this.read(value, c, path);
    if (a !== undefined) this.take(c, a, path);
    return a;
  }

  /** Takes `wanted`, or when an explicit address holds it, the first free address of c. */
  takeDefault(c: Cidr, wanted: number, path: string): number {
    const a = this.taken(c).has(wanted) ? this.nextFree(c) : wanted;
    this.take(c, a, path);
    return a;
  }

  /** Takes `wanted` or, when that is taken, the first free address of c after it (else before it); reports a full subnet (and returns -1). */
  takeDefaultFrom(c: Cidr, wanted: number, path: string): number {
    const m = this.taken(c);
    for (let a = wanted; a <= lastHost(c); a++) {
      if (isHostOf(c, a) && !m.has(a)) {
        this.take(c, a, path);
        return a;
      }
    }
    return this.takeNextFree(c, path);
  }

  /** Takes the first free address of c; reports a full subnet (and returns -1). */
  takeNextFree(c: Cidr, path: string): number {
    const a = this.nextFree(c);
    if (a < 0) this.report(path, `no free address left in ${formatCidr(c)}`);
    else this.take(c, a, path);
    return a;
  }

  private taken(c: Cidr): Map<number, string> {
    const key = formatCidr(c);
    const m = this.used.get(key) ?? new Map<number, string>();
    this.used.set(key, m);
    return m;
  }

  /** Records that `path` holds address in c; reports a second use of it. */
  take(c: Cidr, address: number, path: string): void {
    const m = this.taken(c);
    const first = m.get(address);
    if (first !== undefined) this.report(path, `address ${formatIpv4(address)} is already used at ${first}`);
    else m.set(address, path);
  }

  private nextFree(c: Cidr): number {
    const m = this.taken(c);
    for (let a = c.network + 1; a <= lastHost(c); a++) if (!m.has(a)) return a;
    return -1;
  }
}
