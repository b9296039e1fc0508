// Resolution stage "NAT behaviour": each site's NAT as RFC 4787 mapping and filtering (a
// classic type stands for a pair), its port options, forwards (to nodes of its own site,
// whose addresses the previous stage planned) and timeouts, with their defaults.
import { formatIpv4 } from '../util/ipv4.js';
import { CLASSIC, type Dependency } from './behaviour.js';
import type { Forward, NatBehaviour } from './model.js';
import type { Addresses } from './resolve-addresses.js';
import type { SiteTree } from './resolve-names.js';
import type { Report } from './resolve.js';
import type { SiteFile } from './schema.js';

export const DEFAULT_UDP_UNREPLIED = 30;
export const DEFAULT_UDP_STREAM = 120;
/** RFC 5382 REQ-5: an established TCP mapping must last at least 2 h 4 min. */
export const DEFAULT_TCP_MAPPING_TIMEOUT = 7440;

/** Per site: its NAT's behaviour. */
export function resolveBehaviours(tree: SiteTree, addresses: Addresses, report: Report): NatBehaviour[] {
  return tree.sites.map((s, i) => resolveBehaviour(s, i, addresses.nodeAddress[i]!, report));
}

function resolveBehaviour(s: SiteFile, i: number, nodeAddrs: number[], report: Report): NatBehaviour {
  const nat = s.nat ?? {};
  const path = `sites[${i}].nat`;
  let mapping: Dependency | undefined = nat.mapping;
  let filtering: Dependency | undefined = nat.filtering;
  if (nat.type) {
    const c = CLASSIC[nat.type];
    if (mapping && mapping !== c.mapping)
      report(`${path}.mapping`, `${nat.type} means mapping ${c.mapping}, not ${mapping}; give either type or mapping/filtering`);
    if (filtering && filtering !== c.filtering)
      report(`${path}.filtering`, `${nat.type} means filtering ${c.filtering}, not ${filtering}; give either type or mapping/filtering`);
    mapping = c.mapping;
    filtering = c.filtering;
  } else {
    if (!mapping && !filtering)
      report(`${path}.type`, 'is required: a NAT type (full-cone, restricted-cone, port-restricted-cone, symmetric) or both mapping and filtering');
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
  const unreplied = nat['udp-timeouts']?.unreplied ?? DEFAULT_UDP_UNREPLIED;
  const stream = nat['udp-timeouts']?.stream ?? DEFAULT_UDP_STREAM;
  if (stream < unreplied) report(`${path}.udp-timeouts.stream`, `(${stream} s) must not be shorter than unreplied (${unreplied} s)`);
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
