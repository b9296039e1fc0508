// Named NAT profiles: NATs as they are in the field (`nat: { profile: openwrt }` in a lab
// file; the fields given beside it override its values). Each value carries where it comes
// from: a standard, a vendor's or cloud's documentation, the source code of the NAT, or a
// measurement; where no source gives a value, the profile says which value labctl uses and
// why. `labctl nat profiles` lists them; the README's "NAT profiles" section is generated
// from this data (report/nat-profiles.ts; a unit test keeps the two equal).
//
// One value per field: labctl's model of a NAT has one transitory TCP timer where a NAT may
// have several per-state ones, and one unreplied UDP timer where pf has two; each such
// choice is said in the value's source.
import type { Dependency } from './behaviour.js';
import type { Pooling, PortAllocation, PortRange } from './model.js';

export interface NatProfileValues {
  mapping: Dependency;
  filtering: Dependency;
  hairpinning: boolean;
  portAllocation: PortAllocation;
  /** UDP timers, seconds: a flow without a reply, and one with replies (conntrack's stream). */
  udpUnreplied: number;
  udpStream: number;
  /** TCP timers, seconds: established, and the opening and closing states (RFC 5382's transitory). */
  tcpEstablished: number;
  tcpTransitory: number;
  /** How many outside addresses flows leave from. */
  outside: number;
  pooling: Pooling;
  ports: PortRange;
  /** RFC 7422-style port blocks per inside address, or none. */
  portBlock: { size: number; maxBlocks: number } | null;
  /** Outside ports one inside address may hold (RFC 6888 REQ-4), or no limit. */
  quota: number | null;
}

export type ProfileField = keyof NatProfileValues;

/** Every field, in the order listings show them. */
export const PROFILE_FIELDS: readonly ProfileField[] = [
  'mapping',
  'filtering',
  'hairpinning',
  'portAllocation',
  'udpUnreplied',
  'udpStream',
  'tcpEstablished',
  'tcpTransitory',
  'outside',
  'pooling',
  'ports',
  'portBlock',
  'quota',
];

export interface Citation {
  /** Who published it and what: "RFC 5382 (NAT behavioral requirements for TCP)". */
  title: string;
  url?: string;
}

/** A value's origin: a source and what it says there, or labctl's choice where no source gives one, and why. */
export type ValueSource = { cite: Citation; says: string } | { chosen: string };

export interface NatProfile {
  name: string;
  /** One line: what NAT this is. */
  description: string;
  values: NatProfileValues;
  sources: Record<ProfileField, ValueSource>;
}

const from = (cite: Citation, says: string): ValueSource => ({ cite, says });
const chosen = (why: string): ValueSource => ({ chosen: why });

// --- sources ---

const RFC4787: Citation = { title: 'RFC 4787 (NAT behavioral requirements for unicast UDP)', url: 'https://www.rfc-editor.org/rfc/rfc4787' };
const RFC5382: Citation = { title: 'RFC 5382 (NAT behavioral requirements for TCP)', url: 'https://www.rfc-editor.org/rfc/rfc5382' };
const RFC6888: Citation = { title: 'RFC 6888 (common requirements for carrier-grade NATs)', url: 'https://www.rfc-editor.org/rfc/rfc6888' };
const RFC7422: Citation = { title: 'RFC 7422 (deterministic address mapping in carrier-grade NATs)', url: 'https://www.rfc-editor.org/rfc/rfc7422' };
const KERNEL_SYSCTL: Citation = {
  title: "Linux kernel documentation, netfilter conntrack sysctls (the kernel's defaults)",
  url: 'https://docs.kernel.org/networking/nf_conntrack-sysctl.html',
};
const IPTABLES_SNAT: Citation = {
  title:
    'iptables-extensions(8), SNAT target, without a port range: source ports above 1024 "will be mapped to ports above 1024", and "Where possible, no port alteration will occur"',
  url: 'https://ipset.netfilter.org/iptables-extensions.man.html',
};
const LINUX_STUN: Citation = {
  title:
    'STUN classifications of Linux NAT: einat-ebpf\'s README (Linux masquerading is "EIM but APDF") and udpnat\'s README ("Independent Mapping, Port Dependent Filter, preserves ports, no hairpin")',
  url: 'https://github.com/EHfive/einat-ebpf',
};
const OPENWRT_SYSCTL: Citation = {
  title: "OpenWrt, package/kernel/linux/files/sysctl-nf-conntrack.conf (OpenWrt's conntrack timers)",
  url: 'https://github.com/openwrt/openwrt/blob/main/package/kernel/linux/files/sysctl-nf-conntrack.conf',
};
const PF_DEFAULTS: Citation = {
  title: "FreeBSD, sys/net/pfvar.h, PFTM_*_VAL (pf's default state timeouts)",
  url: 'https://github.com/freebsd/freebsd-src/blob/main/sys/net/pfvar.h',
};
const PFSENSE_OUTBOUND: Citation = {
  title: 'Netgate, pfSense documentation, "Outbound NAT" (source ports are randomised unless the rule has Static Port)',
  url: 'https://docs.netgate.com/pfsense/en/latest/nat/outbound.html',
};
const NATLAB: Citation = {
  title: 'Tailscale natlab, tstest/natlab/vnet/nat.go: its "hard" NAT is "like FreeBSD/pfSense/OPNsense" (a new port per destination, replies only)',
  url: 'https://github.com/tailscale/tailscale/blob/main/tstest/natlab/vnet/nat.go',
};
const TAILSCALE_864: Citation = {
  title: 'Tailscale issue 864: a netcheck report from behind pfSense shows HairPinning: false (a user report)',
  url: 'https://github.com/tailscale/tailscale/issues/864',
};
const MIKROTIK_NAT: Citation = {
  title: 'MikroTik RouterOS documentation, "NAT", endpoint-independent-nat (RouterOS 7.10 and later; UDP only; randomize-port optional)',
  url: 'https://help.mikrotik.com/docs/display/ROS/NAT',
};
const JUNIPER_PBA: Citation = {
  title:
    'Juniper Networks, Junos OS 13.2, secured-port-block-allocation (services NAT pool): block-size default 128 (1-60000), max-blocks-per-address default 8 (1-512)',
};
const AWS_NAT_TROUBLESHOOTING: Citation = {
  title:
    'AWS, Amazon VPC User Guide, "Troubleshoot NAT gateways": "If a connection that\'s using a NAT gateway is idle for 350 seconds or more, the connection times out"',
  url: 'https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html',
};
const TAILSCALE_CLOUD: Citation = {
  title:
    'Tailscale, "NAT traversal improvements, pt. 2: cloud environments": AWS NAT gateways are "always symmetric" with a random source port per destination; GCP Cloud NAT and Azure NAT Gateway are symmetric by default',
  url: 'https://tailscale.com/blog/nat-traversal-improvements-pt-2-cloud-environments',
};
const AWS_NAT_GATEWAY: Citation = {
  title:
    'AWS, Amazon VPC User Guide, NAT gateways: a NAT gateway has one primary and up to 7 secondary addresses; instances behind it cannot receive unsolicited connections',
  url: 'https://docs.aws.amazon.com/vpc/latest/userguide/vpc-nat-gateway.html',
};
const EC2_CONNTRACK: Citation = {
  title:
    'AWS, EC2 API Reference, ConnectionTrackingSpecification: TcpEstablishedTimeout default 432000 s, UdpStreamTimeout default 180 s, UdpTimeout default 30 s',
  url: 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ConnectionTrackingSpecification.html',
};
const EC2_SECURITY_GROUPS: Citation = {
  title:
    'AWS, EC2 User Guide, security groups: they are stateful (responses to outbound traffic are allowed in); the default rules allow no inbound traffic from outside',
  url: 'https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-security-groups.html',
};
const TAILSCALE_ONE2ONE: Citation = {
  title: 'Tailscale natlab, tstest/natlab/vnet/nat.go: its "one2one" NAT keeps the port, "like an EC2 VM" with a public address',
  url: 'https://github.com/tailscale/tailscale/blob/main/tstest/natlab/vnet/nat.go',
};
const GCP_ROUTER_NAT: Citation = {
  title:
    'Google Cloud, Compute Engine API v1, routers (RouterNat): udpIdleTimeoutSec default 30, tcpEstablishedIdleTimeoutSec default 1200, tcpTransitoryIdleTimeoutSec default 30, minPortsPerVm default 64, enableEndpointIndependentMapping',
  url: 'https://cloud.google.com/compute/docs/reference/rest/v1/routers',
};
const GCP_NAT_OVERVIEW: Citation = {
  title: 'Google Cloud, "Cloud NAT overview": Cloud NAT does not implement unsolicited inbound connections from the internet',
  url: 'https://cloud.google.com/nat/docs/overview',
};
const AZURE_NAT: Citation = {
  title:
    'Microsoft, Azure NAT Gateway resource: 64,512 SNAT ports per public address, allocated on demand with no fixed share per VM; UDP idle timeout 4 minutes (fixed); TCP idle timeout 4 minutes by default (4 to 120); half-open TCP 30 s; inbound only in reply to outbound flows',
  url: 'https://learn.microsoft.com/azure/nat-gateway/nat-gateway-resource',
};

// --- values every profile shares unless it says otherwise ---

type Entries = { [K in ProfileField]: [NatProfileValues[K], ValueSource] };

const DEFAULT_PORTS: PortRange = { low: 1024, high: 65535 };
const KERNEL_PORTS = from(IPTABLES_SNAT, "ports the NAT must change are taken from 1024-65535 (the kernel's range for ports above 1024)");
const ONE_ADDRESS = chosen('one outside address: the source gives the NAT one, or does not say; give `outside: N` for more');
const POOLING_MOOT = chosen('paired (RFC 4787 REQ-2 recommends it); it matters only with several outside addresses');
const NO_BLOCKS = chosen('no port blocks: ports are allocated per mapping, not in blocks');
const NO_QUOTA = chosen('no per-address limit in the sources');
const NO_HAIRPIN = chosen("not in the sources: labctl's default (off)");
const RFC5382_TRANSITORY = chosen("not in the sources: RFC 5382 REQ-5's minimum for the transitory timer, 240 s");

const LINUX: Entries = {
  mapping: ['endpoint-independent', from(LINUX_STUN, 'Linux NAT keeps one mapping per inside endpoint: "EIM"')],
  filtering: ['address-and-port-dependent', from(LINUX_STUN, 'only replies from the exact remote endpoint get in: "APDF"')],
  hairpinning: [false, from(LINUX_STUN, 'udpnat\'s STUN test of Linux NAT: "no hairpin"')],
  portAllocation: ['preserve', from(IPTABLES_SNAT, '"Where possible, no port alteration will occur"')],
  udpUnreplied: [30, from(KERNEL_SYSCTL, 'nf_conntrack_udp_timeout: 30')],
  udpStream: [120, from(KERNEL_SYSCTL, 'nf_conntrack_udp_timeout_stream: 120')],
  tcpEstablished: [432000, from(KERNEL_SYSCTL, 'nf_conntrack_tcp_timeout_established: 432000 (5 days)')],
  tcpTransitory: [
    120,
    from(
      KERNEL_SYSCTL,
      "syn_sent 120, syn_recv 60, fin_wait 120, close_wait 60, last_ack 30, time_wait 120; labctl's one transitory timer takes 120, that of syn_sent, fin_wait and time_wait",
    ),
  ],
  outside: [1, ONE_ADDRESS],
  pooling: ['paired', POOLING_MOOT],
  ports: [DEFAULT_PORTS, KERNEL_PORTS],
  portBlock: [null, NO_BLOCKS],
  quota: [null, from(KERNEL_SYSCTL, 'no per-address limit; nf_conntrack_max bounds the whole table')],
};

const PF: Entries = {
  mapping: ['address-and-port-dependent', from(NATLAB, 'a new outside port for every destination')],
  filtering: ['address-and-port-dependent', from(NATLAB, 'only replies get in')],
  hairpinning: [false, from(TAILSCALE_864, 'HairPinning: false')],
  portAllocation: ['random', from(PFSENSE_OUTBOUND, 'outbound NAT randomises the source port')],
  udpUnreplied: [
    30,
    from(
      PF_DEFAULTS,
      "udp.first 60 (after the first packet), udp.single 30 (the source has sent more, no reply); labctl's one unreplied timer takes udp.single, what a keepalive without replies gets",
    ),
  ],
  udpStream: [60, from(PF_DEFAULTS, 'udp.multiple 60 (both sides have sent)')],
  tcpEstablished: [86400, from(PF_DEFAULTS, 'tcp.established 86400 (24 h)')],
  tcpTransitory: [
    120,
    from(
      PF_DEFAULTS,
      "tcp.first 120, tcp.opening 30, tcp.closing 900, tcp.finwait 45, tcp.closed 90; labctl's one transitory timer takes tcp.first, what an unanswered connection attempt (a TCP hole punch) gets",
    ),
  ],
  outside: [1, ONE_ADDRESS],
  pooling: ['paired', POOLING_MOOT],
  ports: [DEFAULT_PORTS, chosen("not in the sources: the kernel's range for ports above 1024, 1024-65535")],
  portBlock: [null, NO_BLOCKS],
  quota: [null, NO_QUOTA],
};

const CGN: Entries = {
  mapping: ['endpoint-independent', from(RFC4787, "REQ-1: endpoint-independent mapping MUST (RFC 6888 REQ-1 keeps RFC 4787's requirements)")],
  filtering: ['endpoint-independent', from(RFC6888, 'REQ-7: endpoint-independent filtering RECOMMENDED (address-dependent MAY)')],
  hairpinning: [true, from(RFC4787, 'REQ-9: hairpinning MUST (RFC 5382 REQ-8 for TCP)')],
  portAllocation: ['preserve', chosen("RFC 6888 gives none: labctl's default under endpoint-independent mapping")],
  udpUnreplied: [300, from(RFC4787, 'REQ-5: a UDP mapping timer of at least 2 minutes, 5 minutes or more RECOMMENDED; labctl takes the recommended 300 s')],
  udpStream: [300, from(RFC4787, 'REQ-5: the same timer whatever the replies (300 s)')],
  tcpEstablished: [7440, from(RFC5382, 'REQ-5: the established idle timer MUST NOT be less than 2 hours 4 minutes (7440 s)')],
  tcpTransitory: [240, from(RFC5382, 'REQ-5: the transitory idle timer MUST NOT be less than 4 minutes (240 s)')],
  outside: [2, chosen('RFC 6888 gives no pool size: two addresses, so that paired pooling can be seen')],
  pooling: ['paired', from(RFC6888, 'REQ-2: a default IP address pooling behaviour of "Paired" MUST')],
  ports: [DEFAULT_PORTS, chosen("RFC 6888 gives none: the kernel's range for ports above 1024, 1024-65535")],
  portBlock: [null, NO_BLOCKS],
  quota: [1024, chosen('RFC 6888 REQ-4 requires that a per-subscriber port limit exist but gives no number: 1024, few enough that `check` can reach it')],
};

const CLOUD_SYMMETRIC: Pick<Entries, 'mapping' | 'filtering' | 'portAllocation'> = {
  mapping: ['address-and-port-dependent', from(TAILSCALE_CLOUD, 'symmetric: a random source port per destination')],
  filtering: ['address-and-port-dependent', chosen('replies only (no unsolicited inbound): conntrack admits exactly the replies')],
  portAllocation: ['random', from(TAILSCALE_CLOUD, 'random source ports')],
};

function build(name: string, description: string, entries: Entries): NatProfile {
  const values = {} as Record<ProfileField, unknown>;
  const sources = {} as Record<ProfileField, ValueSource>;
  for (const f of PROFILE_FIELDS) {
    values[f] = entries[f][0];
    sources[f] = entries[f][1];
  }
  return { name, description, values: values as unknown as NatProfileValues, sources };
}

// --- the profiles ---

const PROFILES: NatProfile[] = [
  build('linux-masquerade', "Linux netfilter masquerading (MASQUERADE/SNAT) with the kernel's defaults", LINUX),
  build('openwrt', "An OpenWrt home router: Linux NAT with OpenWrt's conntrack timers", {
    ...LINUX,
    hairpinning: [false, chosen("not in the sources: Linux's (off), as the rest of the profile")],
    udpUnreplied: [60, from(OPENWRT_SYSCTL, 'net.netfilter.nf_conntrack_udp_timeout=60')],
    udpStream: [180, from(OPENWRT_SYSCTL, 'net.netfilter.nf_conntrack_udp_timeout_stream=180')],
    tcpEstablished: [7440, from(OPENWRT_SYSCTL, 'net.netfilter.nf_conntrack_tcp_timeout_established=7440')],
  }),
  build('pfsense', 'pfSense or OPNsense (FreeBSD pf) with the default outbound NAT: a new port per destination', PF),
  build('pfsense-static-port', 'pfSense with Static Port on the outbound NAT rule: the inside port is kept', {
    ...PF,
    mapping: [
      'endpoint-independent',
      from(
        PFSENSE_OUTBOUND,
        'Static Port keeps the source port for every flow, so every destination sees the same outside port: endpoint-independent mapping, as seen from outside',
      ),
    ],
    portAllocation: ['preserve', from(PFSENSE_OUTBOUND, 'Static Port: the source port is not rewritten')],
  }),
  build('mikrotik-eim', 'MikroTik RouterOS 7.10+ with endpoint-independent-nat in srcnat and dstnat (UDP)', {
    mapping: ['endpoint-independent', from(MIKROTIK_NAT, 'action=endpoint-independent-nat in srcnat')],
    filtering: ['endpoint-independent', from(MIKROTIK_NAT, 'endpoint-independent filtering when the same action is also in dstnat')],
    hairpinning: [false, NO_HAIRPIN],
    portAllocation: ['preserve', chosen("randomize-port is an option; without it labctl keeps the port where free, as Linux (RouterOS's kernel) does")],
    udpUnreplied: [30, chosen("RouterOS's conntrack timers are not in the sources: labctl's defaults (Linux's 30 s)")],
    udpStream: [120, chosen("not in the sources: labctl's default (Linux's 120 s)")],
    tcpEstablished: [7440, chosen("not in the sources: labctl's default (RFC 5382 REQ-5's minimum, 7440 s)")],
    tcpTransitory: [240, RFC5382_TRANSITORY],
    outside: [1, ONE_ADDRESS],
    pooling: ['paired', POOLING_MOOT],
    ports: [DEFAULT_PORTS, KERNEL_PORTS],
    portBlock: [null, NO_BLOCKS],
    quota: [null, NO_QUOTA],
  }),
  build('cgnat-rfc6888', 'A carrier-grade NAT as RFC 6888 (and RFC 4787/5382) requires it: a paired address pool and a per-subscriber port limit', CGN),
  build('cgnat-port-blocks', 'A carrier-grade NAT with Juniper-style port-block allocation: each subscriber holds blocks of outside ports', {
    ...CGN,
    portAllocation: ['random', chosen("a subscriber's ports come from its blocks, not from its inside ports: a port of the block per mapping")],
    portBlock: [
      { size: 128, maxBlocks: 8 },
      from(JUNIPER_PBA, "block-size 128, max-blocks-per-address 8 (the defaults); labctl reserves all of a subscriber's blocks up front, as RFC 7422 does"),
    ],
    quota: [null, from(RFC7422, 'the blocks are the limit: a subscriber holds at most max-blocks x size ports (1024 here)')],
  }),
  build('aws-nat-gateway', 'An AWS NAT gateway in front of private subnets', {
    ...CLOUD_SYMMETRIC,
    filtering: ['address-and-port-dependent', from(AWS_NAT_GATEWAY, 'no unsolicited inbound connections: replies only')],
    hairpinning: [false, NO_HAIRPIN],
    udpUnreplied: [350, chosen('AWS states one idle timeout (350 s) and none for UDP apart: 350 s')],
    udpStream: [350, chosen('the same 350 s: AWS gives no separate UDP timer')],
    tcpEstablished: [350, from(AWS_NAT_TROUBLESHOOTING, 'a connection idle for 350 s or more times out')],
    tcpTransitory: [350, chosen('AWS gives one idle timeout for a connection, 350 s, and none for opening or closing states')],
    outside: [1, from(AWS_NAT_GATEWAY, 'a primary address; up to 7 secondary ones can be added (`outside: 8`)')],
    pooling: ['paired', chosen('how AWS spreads flows over secondary addresses is not in the sources: paired, as RFC 4787 REQ-2 recommends')],
    ports: [DEFAULT_PORTS, chosen("not in the sources: the kernel's range for ports above 1024, 1024-65535")],
    portBlock: [null, NO_BLOCKS],
    quota: [
      null,
      chosen('AWS limits connections per destination (55,000 to one destination per address), not per inside address; labctl does not model that limit'),
    ],
  }),
  build('aws-ec2-public-ip', 'An EC2 instance with a public address: a 1:1 NAT behind a stateful security group', {
    mapping: ['endpoint-independent', from(TAILSCALE_ONE2ONE, "one-to-one: the instance's ports are the public address's")],
    filtering: [
      'address-and-port-dependent',
      from(EC2_SECURITY_GROUPS, 'stateful: replies get in; unsolicited packets only where a rule allows them, and the default group allows none'),
    ],
    hairpinning: [false, NO_HAIRPIN],
    portAllocation: ['preserve', from(TAILSCALE_ONE2ONE, 'the port is kept')],
    udpUnreplied: [30, from(EC2_CONNTRACK, 'UdpTimeout default 30')],
    udpStream: [180, from(EC2_CONNTRACK, 'UdpStreamTimeout default 180')],
    tcpEstablished: [432000, from(EC2_CONNTRACK, 'TcpEstablishedTimeout default 432000 (5 days)')],
    tcpTransitory: [240, RFC5382_TRANSITORY],
    outside: [1, from(TAILSCALE_ONE2ONE, 'one public address per instance')],
    pooling: ['paired', POOLING_MOOT],
    ports: [DEFAULT_PORTS, KERNEL_PORTS],
    portBlock: [null, NO_BLOCKS],
    quota: [null, NO_QUOTA],
  }),
  build('gcp-cloud-nat', 'Google Cloud NAT with its defaults: symmetric, 64 ports per VM', {
    ...CLOUD_SYMMETRIC,
    filtering: ['address-and-port-dependent', from(GCP_NAT_OVERVIEW, 'no unsolicited inbound connections: replies only')],
    hairpinning: [false, NO_HAIRPIN],
    udpUnreplied: [30, from(GCP_ROUTER_NAT, 'udpIdleTimeoutSec default 30')],
    udpStream: [30, from(GCP_ROUTER_NAT, 'udpIdleTimeoutSec default 30, one timer for UDP')],
    tcpEstablished: [1200, from(GCP_ROUTER_NAT, 'tcpEstablishedIdleTimeoutSec default 1200')],
    tcpTransitory: [30, from(GCP_ROUTER_NAT, 'tcpTransitoryIdleTimeoutSec default 30 (TIME_WAIT has its own, 120)')],
    outside: [1, chosen("Cloud NAT allocates addresses as needed; one is enough for a lab's few VMs")],
    pooling: ['paired', chosen("a VM's ports are one block on one NAT address, so it always leaves from that address")],
    ports: [DEFAULT_PORTS, chosen("not in the sources: the kernel's range for ports above 1024, 1024-65535")],
    portBlock: [{ size: 64, maxBlocks: 1 }, from(GCP_ROUTER_NAT, 'minPortsPerVm default 64 (static port allocation: one block per VM)')],
    quota: [null, chosen('the block is the limit: 64 ports per VM')],
  }),
  build('gcp-cloud-nat-eim', 'Google Cloud NAT with endpoint-independent mapping turned on', {
    ...CLOUD_SYMMETRIC,
    mapping: ['endpoint-independent', from(GCP_ROUTER_NAT, 'enableEndpointIndependentMapping: true')],
    filtering: ['address-and-port-dependent', from(GCP_NAT_OVERVIEW, 'no unsolicited inbound connections (endpoint-independent filtering is not stated)')],
    portAllocation: ['random', chosen("a VM's ports come from its block, not from its inside ports")],
    hairpinning: [false, NO_HAIRPIN],
    udpUnreplied: [30, from(GCP_ROUTER_NAT, 'udpIdleTimeoutSec default 30')],
    udpStream: [30, from(GCP_ROUTER_NAT, 'udpIdleTimeoutSec default 30, one timer for UDP')],
    tcpEstablished: [1200, from(GCP_ROUTER_NAT, 'tcpEstablishedIdleTimeoutSec default 1200')],
    tcpTransitory: [30, from(GCP_ROUTER_NAT, 'tcpTransitoryIdleTimeoutSec default 30 (TIME_WAIT has its own, 120)')],
    outside: [1, chosen("Cloud NAT allocates addresses as needed; one is enough for a lab's few VMs")],
    pooling: ['paired', chosen("a VM's ports are one block on one NAT address, so it always leaves from that address")],
    ports: [DEFAULT_PORTS, chosen("not in the sources: the kernel's range for ports above 1024, 1024-65535")],
    portBlock: [
      { size: 64, maxBlocks: 1 },
      from(GCP_ROUTER_NAT, 'minPortsPerVm default 64 (static port allocation, which endpoint-independent mapping requires)'),
    ],
    quota: [null, chosen('the block is the limit: 64 ports per VM')],
  }),
  build('azure-nat-gateway', 'An Azure NAT Gateway: symmetric, random ports shared by every VM on demand', {
    ...CLOUD_SYMMETRIC,
    filtering: ['address-and-port-dependent', from(AZURE_NAT, 'inbound only in reply to outbound flows')],
    portAllocation: ['random', from(AZURE_NAT, 'SNAT ports allocated on demand, randomised')],
    hairpinning: [false, NO_HAIRPIN],
    udpUnreplied: [240, from(AZURE_NAT, 'UDP idle timeout 4 minutes, fixed')],
    udpStream: [240, from(AZURE_NAT, 'UDP idle timeout 4 minutes, fixed')],
    tcpEstablished: [240, from(AZURE_NAT, 'TCP idle timeout 4 minutes by default')],
    tcpTransitory: [30, from(AZURE_NAT, 'half-open TCP connections: 30 s')],
    outside: [1, chosen('one public address (a gateway takes up to 16)')],
    pooling: ['paired', chosen('not in the sources: paired, as RFC 4787 REQ-2 recommends')],
    ports: [DEFAULT_PORTS, from(AZURE_NAT, '64,512 ports per public address: 1024-65535')],
    portBlock: [null, from(AZURE_NAT, 'no fixed share per VM: ports on demand')],
    quota: [null, from(AZURE_NAT, "no per-VM limit (the gateway's own limits are per destination and in total)")],
  }),
];

export const NAT_PROFILES: Record<string, NatProfile> = Object.fromEntries(PROFILES.map((p) => [p.name, p]));

export const NAT_PROFILE_NAMES: readonly string[] = PROFILES.map((p) => p.name);

/** Whether a value's origin is a source (otherwise labctl chose it, and says why). */
export const isCited = (s: ValueSource): s is { cite: Citation; says: string } => 'cite' in s;
