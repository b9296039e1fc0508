import { join } from 'node:path';
import { run } from '../exec/run.js';
import { ensureRunDir } from '../host/state.js';
import { type Cidr, cidrContains, parseIpv4, subnetOfAddress } from '../util/ipv4.js';
import { withLock } from '../host/lock.js';

const STUN_IFNAME = 'lcstun0';
const STUN_PEER_IFNAME = 'lcstun1';

/** Documentation and benchmarking ranges, unlikely in a lab: the first pair that clashes with nothing is used. */
const ADDRESS_CANDIDATES: [string, string][] = [
  ['203.0.113.1', '203.0.113.2'],
  ['198.51.100.1', '198.51.100.2'],
  ['192.0.2.1', '192.0.2.2'],
  ['198.18.0.1', '198.18.0.2'],
  ['198.19.0.1', '198.19.0.2'],
];

/** IPv4 subnets (a.b.c.d/len) configured in a namespace. */
export async function namespaceSubnets(netns: string): Promise<string[]> {
  const r = await run(['ip', '-n', netns, '-j', '-4', 'addr', 'show'], { step: `read addresses in ${netns}` });
  const links = JSON.parse(r.stdout || '[]') as { ifname: string; addr_info?: { local: string; prefixlen: number }[] }[];
  const out: string[] = [];
  for (const l of links) {
    if (l.ifname === STUN_IFNAME) continue;
    for (const a of l.addr_info ?? []) out.push(`${a.local}/${a.prefixlen}`);
  }
  return out;
}

/** The first candidate pair that lies in none of these subnets (a.b.c.d/len, host bits allowed). */
export function chooseAddresses(subnets: string[]): [string, string] {
  const nets = subnets.map(subnetOfAddress).filter((c): c is Cidr => c !== undefined);
  for (const pair of ADDRESS_CANDIDATES) {
    if (pair.every((a) => !nets.some((n) => cidrContains(n, parseIpv4(a)!)))) return pair;
  }
  throw new Error(
    `no free address pair for the STUN server: every candidate (${ADDRESS_CANDIDATES.map((p) => p.join('/')).join(', ')}) is in use in the lab; pass --server-address A1,A2`,
  );
}

export function validAddressPair(text: string): [string, string] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length !== 2 || parts.some((p) => parseIpv4(p) === undefined) || parts[0] === parts[1]) {
    throw new Error(`--server-address wants two different IPv4 addresses, "A1,A2" (got "${text}")`);
  }
  return parts as [string, string];
}

export interface StunSite {
  netns: string;
  addresses: [string, string];
}

// ---------------------------------------------------------------- a lock per server namespace

/** Holds /run/labctl/check-NETNS.lock while fn runs: two checks against one internet namespace take turns. */
export async function withCheckLock<T>(netns: string, fn: () => Promise<T>, waitMs = 120_000): Promise<T> {
  const busy = {
    waitMs,
    busy: (pid: number) => new Error(`another labctl check (pid ${pid}) is using ${netns}; try again when it has finished`),
    contended: () => new Error(`another labctl check is using ${netns} (its lock keeps changing hands); try again`),
  };
  return withLock(join(ensureRunDir(), `check-${netns}.lock`), busy, fn);
}

// ---------------------------------------------------------------- add / remove

async function linkExists(netns: string): Promise<boolean> {
  const r = await run(['ip', '-n', netns, 'link', 'show', 'dev', STUN_IFNAME], { allowFailure: true });
  return r.exitCode === 0;
}

/** Adds the veth pair and the two addresses in the server namespace (replacing a leftover of a crashed check). */
export async function addStunSite(netns: string, addresses: [string, string]): Promise<StunSite> {
  const batch = [
    `link add ${STUN_IFNAME} type veth peer name ${STUN_PEER_IFNAME}`,
    `addr add ${addresses[0]}/32 dev ${STUN_IFNAME}`,
    `addr add ${addresses[1]}/32 dev ${STUN_IFNAME}`,
    `link set ${STUN_PEER_IFNAME} up`,
    `link set ${STUN_IFNAME} up`,
  ].join('\n');
  const add = () => run(['ip', '-n', netns, '-batch', '-'], { step: `add the STUN server's addresses in ${netns}`, input: `${batch}\n` });
  try {
    await add();
  } catch (e) {
    // A leftover of a check that crashed (its lock holder is gone): replace it once.
    if (!(await linkExists(netns))) throw e;
    await removeStunSite({ netns, addresses });
    try {
      await add();
    } catch (e2) {
      await removeStunSite({ netns, addresses });
      throw e2;
    }
  }
  return { netns, addresses };
}

export async function removeStunSite(site: StunSite): Promise<void> {
  // Deleting one end removes the pair and its addresses.
  await run(['ip', '-n', site.netns, 'link', 'del', 'dev', STUN_IFNAME], { step: `remove the STUN server's addresses in ${site.netns}`, allowFailure: true });
}
