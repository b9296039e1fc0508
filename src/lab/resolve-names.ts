// Resolution stage "names and the site tree": one namespace and machine per node, NAT and
// the internet, so every name is unique; each site sits behind the internet or another
// site, and following upstreams always reaches the internet (no loops).
import type { Report } from './resolve.js';
import type { InternetNodeFile, LabFile, SiteFile } from './schema.js';

export interface SiteTree {
  /** Prepended to namespace names. */
  prefix: string;
  internetName: string;
  sites: SiteFile[];
  /** Nodes on the internet itself (the file's top-level `nodes:`). */
  internetNodes: InternetNodeFile[];
  /** Per site: the index of the site it sits behind, or undefined when that is the internet. */
  parent: (number | undefined)[];
  /** Per site: its NAT's name. */
  natNames: string[];
  /** Every name (the internet, NATs, nodes) -> the field that declared it, for messages about it. */
  declaredAt: ReadonlyMap<string, string>;
}

export function resolveSiteTree(file: LabFile, report: Report): SiteTree {
  const sites = file.sites ?? [];
  const internetNodes = file.nodes ?? [];
  if (sites.length === 0 && internetNodes.length === 0) report('', 'declares no `sites:` and no `nodes:`; a lab needs at least one');
  const internetName = file.internet?.name ?? 'inet';
  const natNames = sites.map(natNameOf);
  const siteIndex = new Map<string, number>();
  const declaredAt = claimNames(internetName, sites, internetNodes, siteIndex, report);
  checkUpstreams(sites, siteIndex, report);
  return {
    prefix: file.prefix ?? '',
    internetName,
    sites,
    internetNodes,
    parent: sites.map((s) => (upstreamOf(s) === 'internet' ? undefined : siteIndex.get(upstreamOf(s)))),
    natNames,
    declaredAt,
  };
}

const upstreamOf = (s: SiteFile) => s.upstream ?? 'internet';
const natNameOf = (s: SiteFile) => s.nat?.name ?? `${s.name}-nat`;

/** Site names (into siteIndex) and every namespace's name: each is declared once. Returns where each was declared. */
function claimNames(
  internetName: string,
  sites: SiteFile[],
  internetNodes: InternetNodeFile[],
  siteIndex: Map<string, number>,
  report: Report,
): Map<string, string> {
  const taken = new Map<string, string>(); // name -> path where first declared
  const claim = (n: string, path: string) => {
    const first = taken.get(n);
    if (first !== undefined) report(path, `duplicate name "${n}" (already used at ${first || 'internet.name'})`);
    else taken.set(n, path);
  };
  claim(internetName, 'internet.name');
  sites.forEach((s, i) => {
    if (siteIndex.has(s.name)) report(`sites[${i}].name`, `duplicate site name "${s.name}" (already used at sites[${siteIndex.get(s.name)}].name)`);
    else siteIndex.set(s.name, i);
    if (s.name === 'internet') report(`sites[${i}].name`, '"internet" is reserved: `upstream: internet` means the internet itself; choose another site name');
    claim(natNameOf(s), s.nat?.name ? `sites[${i}].nat.name` : `sites[${i}].name (its NAT "${s.name}-nat")`);
    for (const [j, n] of (s.nodes ?? []).entries()) claim(n.name, `sites[${i}].nodes[${j}].name`);
    if ((s.nodes ?? []).length === 0 && !sites.some((c) => c.upstream === s.name)) {
      report(`sites[${i}].nodes`, 'a site needs at least one node or a site behind it');
    }
  });
  for (const [i, n] of internetNodes.entries()) claim(n.name, `nodes[${i}].name`);
  return taken;
}

/** Upstreams: the internet or another site; following them never loops. */
function checkUpstreams(sites: SiteFile[], siteIndex: Map<string, number>, report: Report): void {
  sites.forEach((s, i) => {
    const up = s.upstream;
    if (up === undefined || up === 'internet') return;
    if (up === s.name) report(`sites[${i}].upstream`, 'a site cannot sit behind itself');
    else if (!siteIndex.has(up)) report(`sites[${i}].upstream`, `unknown site "${up}" (use "internet" or the name of another site)`);
  });
  // Depth below the internet: -1 for a site that never reaches it.
  const depth = new Map<string, number>();
  const depthOf = (name: string, seen: Set<string>): number => {
    if (depth.has(name)) return depth.get(name)!;
    const s = sites[siteIndex.get(name)!];
    if (!s) return 0;
    const up = upstreamOf(s);
    if (up === 'internet' || !siteIndex.has(up)) return 0;
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
      const u = siteIndex.has(cur) ? sites[siteIndex.get(cur)!] : undefined;
      if (!u) return false;
      cur = upstreamOf(u);
    }
    return cur === s.name;
  };
  sites.forEach((s, i) => {
    if (depthOf(s.name, new Set()) >= 0) return;
    report(
      `sites[${i}].upstream`,
      inLoop(s) ? `sites form a loop through "${s.name}"` : `site "${s.name}" sits behind a loop of sites and never reaches the internet`,
    );
  });
}
