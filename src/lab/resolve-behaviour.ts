// Resolution stage "NAT behaviour": each site's NAT as RFC 4787 mapping and filtering (a
// classic type stands for a pair), its port options, forwards (to nodes of its own site,
// whose addresses the previous stage planned) and timeouts, with their defaults. A named
// profile (nat-profiles.ts) gives every value the lab file does not; a field given beside it
// wins. Explicit fields that contradict each other are errors; a profile's value that an
// explicit field makes impossible (its port preservation under a mapping the lab changed to
// symmetric) gives way to that field's default instead. Outside addresses, ports, blocks and
// quotas: resolve-nat-ports.ts.
import { formatIpv4 } from '../util/ipv4.js';
import { CLASSIC, type Dependency } from './behaviour.js';
import type { Forward, NatBehaviour, PortAllocation } from './model.js';
import { NAT_PROFILE_NAMES, NAT_PROFILES, type NatProfile } from './nat-profiles.js';
import type { Addresses } from './resolve-addresses.js';
import { insideAddresses, resolveNatPorts } from './resolve-nat-ports.js';
import type { SiteTree } from './resolve-names.js';
import type { Report } from './resolve.js';
import type { SiteFile } from './schema.js';

export const DEFAULT_UDP_UNREPLIED = 30;
export const DEFAULT_UDP_STREAM = 120;
/** RFC 5382 REQ-5: an established TCP mapping must last at least 2 h 4 min. */
export const DEFAULT_TCP_MAPPING_TIMEOUT = 7440;
/** RFC 5382 REQ-5: the transitory timer (opening and closing states) must be at least 4 min. */
export const DEFAULT_TCP_TRANSITORY_TIMEOUT = 240;

/** Per site: its NAT's behaviour. */
export function resolveBehaviours(tree: SiteTree, addresses: Addresses, report: Report): NatBehaviour[] {
  return tree.sites.map((s, i) => {
    const childPools = tree.sites.flatMap((_, c) => (tree.parent[c] === i ? [addresses.sitePool[c]!] : []));
    const inside = insideAddresses(addresses.nodeAddress[i]!, childPools);
    return resolveBehaviour(s, i, addresses.nodeAddress[i]!, addresses.sitePool[i]!, inside, report);
  });
}

function resolveBehaviour(s: SiteFile, i: number, nodeAddrs: number[], pool: number[], inside: number[], report: Report): NatBehaviour {
  const nat = s.nat ?? {};
  const path = `sites[${i}].nat`;
  let profile: NatProfile | undefined;
  if (nat.profile !== undefined) {
    profile = NAT_PROFILES[nat.profile];
    if (!profile)
      report(`${path}.profile`, `unknown profile "${nat.profile}": it must be one of ${NAT_PROFILE_NAMES.join(', ')} (see \`labctl nat profiles\`)`);
  }
  let mapping: Dependency | undefined = nat.mapping ?? profile?.values.mapping;
  let filtering: Dependency | undefined = nat.filtering ?? profile?.values.filtering;
  if (nat.type) {
    const c = CLASSIC[nat.type];
    // (only what the file gives: a type beside a profile replaces the profile's pair)
    if (nat.mapping && nat.mapping !== c.mapping)
      report(`${path}.mapping`, `${nat.type} means mapping ${c.mapping}, not ${nat.mapping}; give either type or mapping/filtering`);
    if (nat.filtering && nat.filtering !== c.filtering)
      report(`${path}.filtering`, `${nat.type} means filtering ${c.filtering}, not ${nat.filtering}; give either type or mapping/filtering`);
    mapping = c.mapping;
    filtering = c.filtering;
  } else if (nat.profile === undefined) {
    if (!mapping && !filtering)
      report(
        `${path}.type`,
        'is required: a NAT type (full-cone, restricted-cone, port-restricted-cone, symmetric) or both mapping and filtering (or a profile)',
      );
    else if (!mapping) report(`${path}.mapping`, 'is required when filtering is given (or give a type)');
    else if (!filtering) report(`${path}.filtering`, 'is required when mapping is given (or give a type)');
  }
  mapping ??= 'endpoint-independent';
  filtering ??= 'endpoint-independent';
  const eim = mapping === 'endpoint-independent';
  if (nat['fixed-port'] !== undefined && !eim)
    report(`${path}.fixed-port`, `a fixed outside port is endpoint-independent mapping; it cannot be combined with mapping ${mapping}`);
  if (nat['port-preservation'] === true && !eim) {
    report(
      `${path}.port-preservation`,
      `port preservation keeps one outside port per inside port, which is endpoint-independent mapping; it cannot be combined with mapping ${mapping}`,
    );
  }
  if (nat['port-preservation'] === true && nat['fixed-port'] !== undefined)
    report(`${path}.port-preservation`, 'cannot be combined with fixed-port (every flow leaves from the fixed port)');
  const portAllocation = resolvePortAllocation(nat, path, eim, profile, report);
  const nodes = s.nodes ?? [];
  const forwards: Forward[] = [];
  const seen = new Set<string>();
  (nat.forwards ?? []).forEach((f, j) => {
    const fp = `${path}.forwards[${j}]`;
    const key = `${f.protocol}/${f.port}`;
    if (seen.has(key)) report(`${fp}.port`, `duplicate forward of ${key}`);
    seen.add(key);
    const idx = nodes.findIndex((n) => n.name === f.to);
    if (idx < 0) {
      report(
        `${fp}.to`,
        `unknown node "${f.to}": a forward must point at a node of site "${s.name}" (${nodes.map((n) => n.name).join(', ') || 'it has none'})`,
      );
      return;
    }
    forwards.push({
      protocol: f.protocol,
      port: f.port,
      to: f.to,
      toAddress: formatIpv4(nodeAddrs[idx]!),
      toPort: f['to-port'] ?? f.port,
      public: f.public ?? false,
    });
  });
  const unreplied = nat['udp-timeouts']?.unreplied ?? profile?.values.udpUnreplied ?? DEFAULT_UDP_UNREPLIED;
  const stream = nat['udp-timeouts']?.stream ?? profile?.values.udpStream ?? DEFAULT_UDP_STREAM;
  if (stream < unreplied) report(`${path}.udp-timeouts.stream`, `(${stream} s) must not be shorter than unreplied (${unreplied} s)`);
  const tcp = nat['tcp-timeouts'];
  if (tcp?.established !== undefined && nat['tcp-mapping-timeout'] !== undefined && tcp.established !== nat['tcp-mapping-timeout'])
    report(
      `${path}.tcp-timeouts.established`,
      `(${tcp.established} s) contradicts tcp-mapping-timeout (${nat['tcp-mapping-timeout']} s), the same timer: give one of them`,
    );
  const fixedPort = nat['fixed-port'];
  const ports = resolveNatPorts({ nat, path, ...(profile ? { profile } : {}), pool, inside, ...(fixedPort !== undefined ? { fixedPort } : {}) }, report);
  return {
    ...(nat.type ? { declaredAs: nat.type } : {}),
    mapping,
    filtering,
    hairpinning: nat.hairpinning ?? profile?.values.hairpinning ?? false,
    portPreservation: portAllocation === 'preserve' && fixedPort === undefined,
    ...(fixedPort !== undefined ? { fixedPort } : {}),
    forwards,
    udpTimeouts: { unreplied, stream },
    tcpMappingTimeout: tcp?.established ?? nat['tcp-mapping-timeout'] ?? profile?.values.tcpEstablished ?? DEFAULT_TCP_MAPPING_TIMEOUT,
    tcpTransitoryTimeout: tcp?.transitory ?? profile?.values.tcpTransitory ?? DEFAULT_TCP_TRANSITORY_TIMEOUT,
    ...(profile ? { profile: profile.name } : {}),
    portAllocation,
    ...ports,
  };
}

/**
 * port-allocation, or port-preservation (true: preserve, false: random), or the profile's,
 * or the mapping's default: preserve under endpoint-independent mapping, random otherwise.
 * Keeping the inside port for every destination is endpoint-independent mapping, so
 * preserve fits no other; a fixed port leaves nothing to allocate.
 */
function resolvePortAllocation(nat: NonNullable<SiteFile['nat']>, path: string, eim: boolean, profile: NatProfile | undefined, report: Report): PortAllocation {
  const explicit = nat['port-allocation'];
  const preservation = nat['port-preservation'];
  const at = `${path}.port-allocation`;
  if (explicit !== undefined) {
    if (preservation === true && explicit !== 'preserve') report(at, `${explicit} contradicts port-preservation: true; give one of them`);
    if (preservation === false && explicit === 'preserve') report(at, 'preserve contradicts port-preservation: false; give one of them');
    if (nat['fixed-port'] !== undefined) report(at, `${explicit} cannot be combined with fixed-port (every flow leaves from the fixed port)`);
    else if (explicit === 'preserve' && !eim)
      report(
        at,
        `preserve keeps one outside port per inside port, which is endpoint-independent mapping; it cannot be combined with mapping ${nat.mapping ?? (nat.type ? CLASSIC[nat.type].mapping : profile?.values.mapping)}`,
      );
    return explicit;
  }
  if (preservation !== undefined) return preservation ? 'preserve' : 'random';
  const fromProfile = profile?.values.portAllocation;
  if (fromProfile && !(fromProfile === 'preserve' && !eim)) return fromProfile;
  return eim ? 'preserve' : 'random';
}
