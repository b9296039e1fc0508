// For namespaces labctl did not build (`labctl check --namespace NS`): follow default
// routes from NS, namespace to namespace across veth pairs, to find the NAT routers on the
// way to the internet and the internet namespace itself.
import { formatCommand } from '../exec/quote.js';
import { run } from '../exec/run.js';
import { allStates } from '../host/state.js';
import { listNetns } from '../host/netns.js';
import type { PathHop } from './model.js';

interface Hop {
  netns: string;
  /** The default route's gateway and device in the namespace we came from. */
  via?: string;
  dev?: string;
}

async function json<T>(argv: string[], step: string): Promise<T> {
  const r = await run(argv, { step, allowFailure: true });
  if (r.exitCode !== 0) throw new Error(`${step}: \`${formatCommand(argv)}\` exited ${r.exitCode}: ${(r.stderr || r.stdout).trim()}`);
  return JSON.parse(r.stdout.trim() || '[]') as T;
}

/** The namespace at the other end of a namespace's default route, or undefined when there is none. */
async function nextHop(netns: string): Promise<Hop | undefined> {
  const routes = await json<{ dst: string; gateway?: string; dev?: string }[]>(
    ['ip', '-n', netns, '-j', '-4', 'route', 'show', 'default'],
    `read the default route in ${netns}`,
  );
  const def = routes[0];
  if (!def?.dev) return undefined;
  const links = await json<{ ifname: string; link_netnsid?: number }[]>(
    ['ip', '-n', netns, '-j', 'link', 'show', 'dev', def.dev],
    `read ${def.dev} in ${netns}`,
  );
  const nsid = links[0]?.link_netnsid;
  if (nsid === undefined) return undefined;
  const ids = await json<{ nsid: number; name?: string }[]>(['ip', '-n', netns, '-j', 'netns', 'list-id'], `read namespace ids in ${netns}`);
  const name = ids.find((i) => i.nsid === nsid)?.name;
  if (!name) throw new Error(`the default route of ${netns} leaves through ${def.dev}, whose peer is in a namespace without a name under /run/netns`);
  return { netns: name, ...(def.gateway ? { via: def.gateway } : {}), dev: def.dev };
}

interface DiscoveredPath {
  /** Router namespaces between the inside namespace and the server's, innermost first. */
  hops: PathHop[];
  /** Where the default routes end: the internet (or the namespace given as the server's). */
  end: string;
}

/** Follows default routes from `start` until `serverNetns` (or until there is no further default route). */
export async function discoverPath(start: string, serverNetns?: string): Promise<DiscoveredPath> {
  const present = new Set(listNetns());
  for (const ns of [start, ...(serverNetns ? [serverNetns] : [])]) {
    if (!present.has(ns)) throw new Error(`no network namespace "${ns}" (ip netns list shows ${[...present].sort().join(', ') || 'none'})`);
  }
  const labctlNats = new Set(allStates().flatMap((s) => s.nats.map((n) => n.netns)));
  const hops: PathHop[] = [];
  let cur = start;
  for (let i = 0; i < 16; i++) {
    if (cur === serverNetns) return { hops, end: cur };
    const next = await nextHop(cur);
    if (!next) {
      if (serverNetns) throw new Error(`following default routes from ${start} ends in ${cur}, never reaching ${serverNetns}`);
      if (cur === start) throw new Error(`${start} has no default route through a veth to another namespace: which way is the internet?`);
      return { hops, end: cur };
    }
    if (next.netns === start || hops.some((h) => h.netns === next.netns)) throw new Error(`the default routes from ${start} loop through ${next.netns}`);
    if (cur !== start) hops.push({ name: cur, netns: cur, labctl: labctlNats.has(cur) });
    cur = next.netns;
  }
  throw new Error(`more than 16 namespaces between ${start} and the internet`);
}
