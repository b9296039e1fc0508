// The lab file's JSON Schema (schema/lab.schema.json), made from its zod schema (schema.ts)
// by scripts/gen-schema.ts at every build. See util/json-schema.ts for how and why.
import { editorJsonSchema, type JsonSchema, type Refinement } from '../util/json-schema.js';
import { PERCENT_FORMAT, PERCENT_PATTERN, RATE_FORMAT, RATE_PATTERN, TIME_FORMAT, TIME_PATTERN } from './impairment.js';
import { labSchema } from './schema.js';
import { machineDescriptions } from './machine-schema.js';

/** One octet of a dotted quad, as parseIpv4 reads it: 0-255, no leading zero. ([0-9], not \d: Python's \d takes any Unicode digit.) */
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';

export const IPV4_PATTERN = `^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`;

/**
 * A usable subnet as parseCidr reads it: a.b.c.d/len with len 8-30 and no host bits set.
 * A regular expression cannot do arithmetic, so the network addresses are spelt out: for each
 * length, the octets wholly inside the prefix are any octet, the one the prefix ends in is a
 * multiple of its block size, and the rest are 0.
 */
export const CIDR_PATTERN = (() => {
  const branches: string[] = [];
  for (let len = 8; len <= 30; len++) {
    const whole = Math.floor(len / 8);
    const bits = len % 8;
    const octets: string[] = Array.from({ length: whole }, () => OCTET);
    if (bits) {
      const step = 2 ** (8 - bits);
      octets.push(`(?:${Array.from({ length: 256 / step }, (_, i) => String(i * step)).join('|')})`);
    }
    while (octets.length < 4) octets.push('0');
    branches.push(`${octets.join('\\.')}/${len}`);
  }
  return `^(?:${branches.join('|')})$`;
})();

const LAB_REFINEMENTS: Refinement[] = [
  {
    what: 'IPv4 address',
    accepts: ['10.0.1.1', '0.0.0.0', '255.255.255.255'],
    rejects: ['10.0.1.256', '010.0.1.1', '10.0.1', '10.0.1.0/24', ' 10.0.1.1'],
    describe: (generated) => ({
      ...generated,
      pattern: IPV4_PATTERN,
      // VS Code's own keyword: its message instead of the pattern.
      patternErrorMessage: 'an IPv4 address: a.b.c.d, each 0-255, no leading zeros',
    }),
  },
  {
    what: 'IPv4 subnet',
    accepts: ['10.0.1.0/24', '10.0.0.0/8', '100.64.0.0/30', '10.0.1.128/25'],
    rejects: ['10.0.1.5/24', '10.0.0.0/7', '10.0.0.0/31', '10.0.1.0', '10.0.1.1'],
    describe: (generated) => ({
      ...generated,
      pattern: CIDR_PATTERN,
      patternErrorMessage: 'an IPv4 subnet: a.b.c.d/len with len 8-30 and no host bits set (10.0.1.0/24, not 10.0.1.5/24)',
    }),
  },
  // Link impairments: text with a unit, as tc writes it (a bare number is refused: no unit).
  {
    what: 'time with a unit',
    accepts: ['40ms', '1.5s', '500us', '0ms'],
    rejects: [40, '40', '40 ms', '1%', '5mbit'],
    describe: () => ({ type: 'string', pattern: TIME_PATTERN, patternErrorMessage: TIME_FORMAT }),
  },
  {
    what: 'percentage',
    accepts: ['1%', '0.1%', '100%'],
    rejects: [1, '1', '1 %', '40ms', '5mbit'],
    describe: () => ({ type: 'string', pattern: PERCENT_PATTERN, patternErrorMessage: PERCENT_FORMAT }),
  },
  {
    what: 'rate',
    accepts: ['5mbit', '5Mbit', '512kbit', '1gbit', '100bit'],
    rejects: [5, '5', '5mbps', '40ms', '1%'],
    describe: () => ({ type: 'string', pattern: RATE_PATTERN, patternErrorMessage: RATE_FORMAT }),
  },
];

/** Hover text; the README's "Lab files" section says more. */
const LAB_DESCRIPTIONS: Record<string, string> = {
  name: "The lab's name: its state file and lock, and the name `labctl down NAME` takes.",
  description: 'Free text.',
  prefix: 'Prepended to namespace and machine names (ns-PREFIX-c0), so that two labs can be up at once.',
  internet: 'The namespace that stands for the internet between the sites.',
  'internet.name': 'Its name (default: inet).',
  'internet.machine': 'Boot a machine in it (default: false).',
  image: 'The image machines boot (see `labctl image list`).',
  sites: 'Sites: a NAT router and the nodes behind it.',
  'sites[].name': "The site's name; its NAT is SITE-nat unless nat.name says otherwise.",
  'sites[].upstream': '`internet` (the default) or the name of another site whose NAT this one sits behind (a carrier-grade NAT).',
  'sites[].nat': 'The NAT router: a classic `type`, or `mapping` and `filtering` in RFC 4787 terms.',
  'sites[].nat.name': "The router's name (default: SITE-nat).",
  'sites[].nat.type': 'full-cone = EIM+EIF, restricted-cone = EIM+ADF, port-restricted-cone = EIM+APDF, symmetric = APDM+APDF (RFC 4787 terms).',
  'sites[].nat.mapping': 'How outside ports are chosen (RFC 4787 mapping behaviour); give filtering too.',
  'sites[].nat.filtering': 'Who may send in through a mapping (RFC 4787 filtering behaviour); give mapping too.',
  'sites[].nat.hairpinning': 'Nodes behind this NAT reach each other through its outside address.',
  'sites[].nat.port-preservation': 'Keep the inside source port where free (default: on for endpoint-independent mapping).',
  'sites[].nat.fixed-port': "The article's mode: every outbound flow leaves from this one outside port.",
  'sites[].nat.forwards': "Static port forwards; they obey the NAT's filtering unless `public: true`.",
  'sites[].nat.forwards[].port': 'Outside port on the NAT.',
  'sites[].nat.forwards[].to': 'A node of this site.',
  'sites[].nat.forwards[].to-port': "The node's port (default: the same as port).",
  'sites[].nat.forwards[].public': "Admit anyone, whatever the NAT's filtering.",
  'sites[].nat.udp-timeouts': "The kernel's conntrack UDP timeouts in this NAT's namespace, in seconds.",
  'sites[].nat.udp-timeouts.unreplied': 'A flow that has had no reply (default 30 s).',
  'sites[].nat.udp-timeouts.stream': 'A flow that has had replies (default 120 s); not shorter than unreplied.',
  'sites[].nat.tcp-mapping-timeout': 'Established TCP mapping lifetime in seconds (default 7440, RFC 5382); the same as tcp-timeouts.established.',
  'sites[].nat.profile':
    'A NAT as it is in the field (`labctl nat profiles`): linux-masquerade, openwrt, pfsense, cgnat-rfc6888, aws-nat-gateway, gcp-cloud-nat, ...; the fields beside it override its values.',
  'sites[].nat.port-allocation':
    'How a new mapping gets its outside port: preserve (the inside port where free; default under endpoint-independent mapping), sequential, random.',
  'sites[].nat.ports': 'The outside ports mappings take, LOW-HIGH (default 1024-65535).',
  'sites[].nat.outside': "Outside addresses flows leave from: how many (planned in the uplink's subnet, the NAT's own first) or which.",
  'sites[].nat.pooling': 'With several outside addresses: paired (an inside address always leaves from the same one; default) or arbitrary (any, per mapping).',
  'sites[].nat.port-block': 'RFC 7422 port blocks: each inside address of the lab holds max-blocks blocks of size outside ports, on one outside address.',
  'sites[].nat.port-block.size': 'Ports per block.',
  'sites[].nat.port-block.max-blocks': 'Blocks per inside address (default 1).',
  'sites[].nat.quota': 'Outside ports one inside address may hold at once (RFC 6888 REQ-4); a new flow past it is dropped.',
  'sites[].nat.tcp-timeouts': "conntrack's TCP timers in this NAT, in seconds.",
  'sites[].nat.tcp-timeouts.established': 'An established connection (default 7440, RFC 5382).',
  'sites[].nat.tcp-timeouts.transitory': 'Opening and closing states (default 240, RFC 5382).',
  'sites[].nat.machine': 'Boot a machine in the NAT router (default: true).',
  'sites[].uplink': "The NAT's outside link (planned when left out: 100.64.k.0/24, NAT .100, internet .254).",
  'sites[].lan': "The site's LAN (planned when left out: 10.0.k.0/24, router .100, nodes from .1).",
  'sites[].nodes': 'The nodes behind the NAT; several share a bridged LAN.',
  'sites[].nodes[].address': 'Its LAN address (default: planned).',
  'sites[].nodes[].machine': 'Boot a machine in it (default: true).',
  nodes: 'Nodes straight on the internet, without NAT (a rendezvous or STUN server).',
  'nodes[].uplink': 'Its link to the internet (planned when left out).',
  'nodes[].machine': 'Boot a machine in it (default: true).',
  links: 'Impairments of links: delay, jitter, loss, rate, corruption, duplication, reordering (README "Link impairments").',
  'links[].between': 'The two members the link joins, in either order: a NAT and its upstream, a node and its NAT, an internet node and the internet.',
  'links[].delay': 'Added one-way delay (netem): 40ms, 1.5s, 500us.',
  'links[].jitter': 'Delay variation, at most the delay (netem): 10ms.',
  'links[].loss': 'Packets lost (netem): 1%.',
  'links[].rate': 'Rate limit (tbf; needs no netem): 5mbit, 512kbit, 1gbit.',
  'links[].corrupt': 'Packets with a bit flipped (netem): 0.1%.',
  'links[].duplicate': 'Packets sent twice (netem): 0.1%.',
  'links[].reorder': 'Packets sent ahead of the others, which wait out the delay (netem; needs a delay): 1%.',
  'links[].profile': 'A named profile of a common access link (lte, dsl, satellite-geo, ...); the fields beside it override it.',
  'links[].direction': 'both (default); upstream: traffic towards the internet, sent by the member farther from it; downstream: the other way.',
};

export function labJsonSchema(): JsonSchema {
  return editorJsonSchema(labSchema, {
    title: 'labctl lab file',
    description:
      'A NAT lab for labctl: sites (a NAT router and its nodes) and nodes on the internet. Generated from src/lab/schema.ts by scripts/gen-schema.ts.',
    refinements: LAB_REFINEMENTS,
    descriptions: { ...LAB_DESCRIPTIONS, ...machineDescriptions() },
  });
}
