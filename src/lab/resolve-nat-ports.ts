// Resolution of a NAT's outside addresses and ports (part of the stage "NAT behaviour", see
// resolve-behaviour.ts): its port range, its pooling, its RFC 7422-style port blocks and
// which inside address leaves from which outside address, and its per-address quota.
//
// Port blocks are assigned statically, from the lab's own inside addresses (the site's
// nodes and the NATs behind it), as RFC 7422's deterministic mapping does, rather than learned
// from traffic as a dynamic port-block allocator (Juniper's PBA) does: nftables has no way
// to hand out the next free block from the packet path, and a static assignment lets the
// ruleset, `check` and a test know each address's block beforehand. Every block an inside
// address may hold (max-blocks of them) is reserved up front, as one range, where a dynamic
// allocator would add a block when the last one fills up; an inside address outside the
// lab's gets no block, and its flows are dropped, as a CGN with no block for a subscriber
// does. Blocks are dealt round-robin over the outside addresses, so that with several the
// pooling shows; so are the inside addresses under paired pooling without blocks.
import { formatIpv4 } from '../util/ipv4.js';
import type { InsideAssignment, Pooling, PortRange } from './model.js';
import { NAT_PROFILES, type NatProfile } from './nat-profiles.js';
import type { Report } from './resolve.js';
import type { SiteFile } from './schema.js';

type NatFile = SiteFile['nat'];

export const DEFAULT_PORTS: PortRange = { low: 1024, high: 65535 };

/** The profile a NAT names, or undefined (unknown names are reported by resolveBehaviour). */
export const profileOf = (nat: NatFile): NatProfile | undefined => (nat?.profile !== undefined ? NAT_PROFILES[nat.profile] : undefined);

/** How many outside addresses a NAT has, and which when the lab lists them (read by address planning). */
export function poolRequest(nat: NatFile): { count: number; listed?: string[] } {
  const o = nat?.outside;
  if (Array.isArray(o)) return { count: o.length, listed: o };
  return { count: o ?? profileOf(nat)?.values.outside ?? 1 };
}

/** "1024-65535" → its range, or a reason it is not one. */
export function parsePortRange(text: string): PortRange | string {
  const [low, high] = text.split('-').map(Number) as [number, number];
  if (low < 1 || high > 65535) return `${text}: ports are 1-65535`;
  if (low > high) return `${text}: the first port must not be above the last`;
  return { low, high };
}

export const rangeSize = (r: PortRange) => r.high - r.low + 1;
/** The whole range above 1024, what a NAT without `ports:` maps from. */
export const isDefaultRange = (r: PortRange) => r.low === DEFAULT_PORTS.low && r.high === DEFAULT_PORTS.high;
export const formatRange = (r: PortRange) => `${r.low}-${r.high}`;

export interface NatPorts {
  ports: PortRange;
  pooling: Pooling;
  portBlock?: { size: number; maxBlocks: number };
  assignments: InsideAssignment[];
  quota?: number;
}

interface PortsInput {
  nat: NatFile;
  path: string;
  profile?: NatProfile;
  /** Every outside address, the NAT's own first. */
  pool: number[];
  /** The lab's inside addresses behind this NAT (nodes, and NATs behind it with their pools). */
  inside: number[];
  fixedPort?: number;
}

/** Where a value came from, for messages: "pooling arbitrary (from profile x)". */
const origin = (explicit: unknown, profile: NatProfile | undefined) => (explicit === undefined && profile ? ` (from profile ${profile.name})` : '');

export function resolveNatPorts({ nat, path, profile, pool, inside, fixedPort }: PortsInput, report: Report): NatPorts {
  let ports = profile?.values.ports ?? DEFAULT_PORTS;
  if (nat?.ports !== undefined) {
    const r = parsePortRange(nat.ports);
    if (typeof r === 'string') report(`${path}.ports`, `is not a port range: ${r}`);
    else ports = r;
  }
  const pooling: Pooling = nat?.pooling ?? profile?.values.pooling ?? 'paired';
  const pb = nat?.['port-block'];
  const block = pb ? { size: pb.size, maxBlocks: pb['max-blocks'] ?? 1 } : (profile?.values.portBlock ?? undefined);
  const quota = nat?.quota ?? profile?.values.quota ?? undefined;
  const blockPath = `${path}.port-block`;

  if (fixedPort !== undefined) {
    if (nat?.ports !== undefined && (fixedPort < ports.low || fixedPort > ports.high))
      report(`${path}.fixed-port`, `${fixedPort} is outside the port range ${formatRange(ports)}`);
    if (pool.length > 1) report(`${path}.fixed-port`, `every flow leaves from one outside port: it cannot be combined with ${pool.length} outside addresses`);
    if (pb) report(`${path}.fixed-port`, 'every flow leaves from one outside port: it cannot be combined with port-block');
  }
  if (block && fixedPort === undefined) {
    if (block.size > rangeSize(ports))
      report(`${blockPath}.size`, `${block.size} is larger than the port range ${formatRange(ports)} (${rangeSize(ports)} ports)`);
    else if (block.size * block.maxBlocks > rangeSize(ports))
      report(
        `${blockPath}.max-blocks`,
        `${block.maxBlocks} blocks of ${block.size} ports are ${block.size * block.maxBlocks} ports, more than the port range ${formatRange(ports)} holds (${rangeSize(ports)})`,
      );
    if (pooling === 'arbitrary' && pool.length > 1)
      report(
        `${path}.pooling`,
        `arbitrary${origin(nat?.pooling, profile)} cannot be combined with port-block: a port block belongs to one outside address, so an inside address always leaves from it (paired)`,
      );
  }
  if (quota !== undefined && block && fixedPort === undefined && quota < block.size)
    report(`${path}.quota`, `${quota}${origin(nat?.quota, profile)} is smaller than a port block (${block.size} ports): a block's ports would go unused`);

  const useBlocks = block !== undefined && fixedPort === undefined;
  let assignments: InsideAssignment[] = [];
  const sortedInside = [...inside].sort((a, b) => a - b);
  if (useBlocks) {
    const span = block.size * block.maxBlocks;
    const perAddress = Math.floor(rangeSize(ports) / span);
    const capacity = perAddress * pool.length;
    if (perAddress > 0 && sortedInside.length > capacity)
      report(
        blockPath,
        `${sortedInside.length} inside addresses need ${sortedInside.length} x ${block.maxBlocks} blocks of ${block.size} ports, but ${pool.length} outside address${pool.length === 1 ? '' : 'es'} with ports ${formatRange(ports)} hold blocks for ${capacity}: give more outside addresses (outside: N) or smaller blocks`,
      );
    if (perAddress > 0) {
      assignments = sortedInside.slice(0, capacity).map((a, j) => {
        const slot = Math.floor(j / pool.length);
        const low = ports.low + slot * span;
        return { inside: formatIpv4(a), outside: formatIpv4(pool[j % pool.length]!), ports: { low, high: low + span - 1 } };
      });
    }
  } else if (pool.length > 1 && pooling === 'paired') {
    assignments = sortedInside.map((a, j) => ({ inside: formatIpv4(a), outside: formatIpv4(pool[j % pool.length]!) }));
  }
  return {
    ports,
    pooling,
    ...(useBlocks ? { portBlock: block } : {}),
    assignments,
    ...(quota !== undefined ? { quota } : {}),
  };
}

/** The address planning's numbers of a site's inside addresses: its nodes, and every outside address of the NATs behind it. */
export function insideAddresses(nodeAddresses: number[], childPools: number[][]): number[] {
  return [...nodeAddresses, ...childPools.flat()].filter((a) => a >= 0);
}
