// Resolution stage "subnets": every LAN, every internet-attached site's uplink and every
// internet node's uplink gets a subnet, the explicit ones first (no two may overlap), then
// defaults from the free ones (10.0.k.0/24 for LANs, 100.64.k.0/24 for uplinks). A child
// site's uplink is its parent's LAN, so it has no subnet of its own: checkChildUplinks, a
// stage of its own because it compares with the parent's LAN, which must be planned first.
import { type Cidr, cidrsOverlap, formatCidr, parseCidr } from '../util/ipv4.js';
import type { SiteTree } from './resolve-names.js';
import type { Report } from './resolve.js';

export interface Subnets {
  /** Per site: its LAN. */
  lan: Cidr[];
  /** Per site: its uplink when it sits on the internet; a child site's uplink is its parent's LAN. */
  uplink: (Cidr | undefined)[];
  /** Per internet node: its uplink. */
  internetNodeUplink: Cidr[];
}

interface Planned {
  subnet: Cidr;
  path: string;
  what: string;
}

export function planSubnets(tree: SiteTree, report: Report): Subnets {
  const { sites, internetNodes, parent } = tree;
  const readCidr = (value: string | undefined, path: string): Cidr | undefined => {
    if (value === undefined) return undefined;
    const c = parseCidr(value);
    if (!c) report(path, `"${value}" is not a usable IPv4 subnet (a.b.c.d/len with len 8-30 and no host bits set)`);
    return c;
  };
  const explicitLan = sites.map((s, i) => readCidr(s.lan?.subnet, `sites[${i}].lan.subnet`));
  const explicitUp = sites.map((s, i) => (parent[i] === undefined ? readCidr(s.uplink?.subnet, `sites[${i}].uplink.subnet`) : undefined));
  const explicitNodeUp = internetNodes.map((n, i) => readCidr(n.uplink?.subnet, `nodes[${i}].uplink.subnet`));
  const planned: Planned[] = [];
  for (const [i, c] of explicitLan.entries()) if (c) planned.push({ subnet: c, path: `sites[${i}].lan.subnet`, what: `LAN of site ${sites[i]!.name}` });
  for (const [i, c] of explicitUp.entries()) if (c) planned.push({ subnet: c, path: `sites[${i}].uplink.subnet`, what: `uplink of site ${sites[i]!.name}` });
  for (const [i, c] of explicitNodeUp.entries())
    if (c) planned.push({ subnet: c, path: `nodes[${i}].uplink.subnet`, what: `uplink of node ${internetNodes[i]!.name}` });
  for (let a = 0; a < planned.length; a++) {
    for (let b = 0; b < a; b++) {
      if (cidrsOverlap(planned[a]!.subnet, planned[b]!.subnet)) {
        report(planned[a]!.path, `${formatCidr(planned[a]!.subnet)} overlaps ${formatCidr(planned[b]!.subnet)} (${planned[b]!.what}, at ${planned[b]!.path})`);
      }
    }
  }
  // Defaults: the first /24 of the range that overlaps nothing planned so far.
  const allocate = (base: (k: number) => Cidr, what: string, path: string): Cidr => {
    for (let k = 1; k < 255; k++) {
      const c = base(k);
      if (!planned.some((p) => cidrsOverlap(p.subnet, c))) {
        planned.push({ subnet: c, path, what });
        return c;
      }
    }
    report(path, 'no free /24 left for a default subnet; give one explicitly');
    return base(0);
  };
  const lan = sites.map((s, i) => explicitLan[i] ?? allocate(slash24(10, 0), `LAN of site ${s.name}`, `sites[${i}].lan.subnet`));
  const uplink = sites.map((s, i) =>
    parent[i] === undefined ? (explicitUp[i] ?? allocate(slash24(100, 64), `uplink of site ${s.name}`, `sites[${i}].uplink.subnet`)) : undefined,
  );
  const internetNodeUplink = internetNodes.map(
    (n, i) => explicitNodeUp[i] ?? allocate(slash24(100, 64), `uplink of node ${n.name}`, `nodes[${i}].uplink.subnet`),
  );
  return { lan, uplink, internetNodeUplink };
}

/** a.b.k.0/24 for k. */
const slash24 =
  (a: number, b: number) =>
  (k: number): Cidr => ({ network: ((a << 24) >>> 0) + (b << 16) + (k << 8), prefix: 24 });

/** A child's uplink is its parent's LAN, explicit or planned: any other subnet given for it is a mistake. */
export function checkChildUplinks(tree: SiteTree, subnets: Subnets, report: Report): void {
  tree.sites.forEach((s, i) => {
    const p = tree.parent[i];
    if (p === undefined || s.uplink?.subnet === undefined) return;
    const parentLan = subnets.lan[p]!;
    const mine = parseCidr(s.uplink.subnet);
    if (mine && formatCidr(parentLan) !== formatCidr(mine)) {
      report(`sites[${i}].uplink.subnet`, `must be the LAN of site "${tree.sites[p]!.name}" (${formatCidr(parentLan)}) that it sits behind, or be left out`);
    }
  });
}
