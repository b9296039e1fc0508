// The resolved lab: every default filled in, every address planned, every name final.
// Produced only by resolveLab(); everything after it (plan, apply, report) reads this.
import type { ClassicNatType, Dependency } from './behaviour.js';
import type { LinkShaping } from './impairment.js';

export interface Forward {
  protocol: 'udp' | 'tcp';
  /** Outside port on the NAT. */
  port: number;
  /** Inside node name, its address and port. */
  to: string;
  toAddress: string;
  toPort: number;
  /** Admits anyone, whatever the NAT's filtering. */
  public: boolean;
}

export interface NatBehaviour {
  /** The classic name the lab used, if any. */
  declaredAs?: ClassicNatType;
  mapping: Dependency;
  filtering: Dependency;
  hairpinning: boolean;
  portPreservation: boolean;
  /** The article's mode: every outbound flow leaves from this outside port. */
  fixedPort?: number;
  forwards: Forward[];
  udpTimeouts: { unreplied: number; stream: number };
  /** TCP's established timer (RFC 5382): conntrack's, and the learned mapping's lifetime. */
  tcpMappingTimeout: number;
  /** TCP's transitory timer (RFC 5382: opening and closing states). */
  tcpTransitoryTimeout: number;
  /** The profile the lab file named (nat-profiles.ts), if any. */
  profile?: string;
  /** How a new mapping's outside port is chosen (fixed ports aside). */
  portAllocation: PortAllocation;
  /** The outside ports mappings are made from, inclusive. */
  ports: PortRange;
  /** With several outside addresses: whether an inside address always leaves from the same one (RFC 4787 section 4.1). */
  pooling: Pooling;
  /** RFC 7422-style port blocks: the block size and how many blocks an inside address holds. */
  portBlock?: { size: number; maxBlocks: number };
  /**
   * Where the lab's inside addresses leave from, when that is fixed per inside address:
   * under paired pooling with several outside addresses, and with port blocks (their ports then).
   */
  assignments: InsideAssignment[];
  /** Outside ports one inside address may hold at once (RFC 6888 REQ-4); a new flow past it is dropped. */
  quota?: number;
}

export type PortAllocation = 'preserve' | 'sequential' | 'random';
export type Pooling = 'paired' | 'arbitrary';

export interface PortRange {
  low: number;
  high: number;
}

export interface InsideAssignment {
  /** An inside address of the lab (a node, or a NAT behind this one). */
  inside: string;
  outside: string;
  /** Its port block(s), as one range, when the NAT has port blocks. */
  ports?: PortRange;
}

/** What runs in one machine besides its image (README "Your software in the machines"), resolved. */
export interface MachineSoftware {
  /** The image it boots instead of the lab's. */
  image?: string;
  /** Host paths (absolute) bound into the machine. */
  binds: { from: string; to: string; readonly: boolean }[];
  /** Written into the machine's snapshot at boot; `from`: an absolute host path, read at `up`. */
  files: { path: string; content?: string; from?: string; mode: number }[];
  /** In the environment of its services, its commands, and `labctl exec`/`shell` in it. */
  env: Record<string, string>;
  /** systemd units NAME.service in the machine. */
  services: { name: string; command: string[]; restart: 'on-failure' | 'always' | 'no' }[];
  /** Run once each, in order, once the machine and the lab's network are up. */
  commands: string[][];
}

export interface Attachment {
  ifname: string;
  address: string;
  prefix: number;
  subnet: string;
}

export interface Nat {
  kind: 'nat';
  name: string;
  site: string;
  netns: string;
  machine: boolean;
  /** Set when the lab file gives the machine software of its own. */
  software?: MachineSoftware;
  behaviour: NatBehaviour;
  /**
   * Its uplink: towards the internet or a parent NAT's LAN. `pool`: every outside address
   * flows leave from, its own `address` first (several when the lab gives `nat.outside`).
   */
  outside: Attachment & { gateway: string; upstream: string; pool: string[] };
  /** Its LAN: the interface holding the inside gateway address (a veth or br-lan). */
  lan: Attachment & { members: string[]; bridged: boolean };
}

export interface Node {
  kind: 'node';
  name: string;
  /** The site it sits in, or undefined for a node on the internet. */
  site?: string;
  netns: string;
  machine: boolean;
  software?: MachineSoftware;
  link: Attachment & { gateway: string };
  /** The router it routes through: a NAT's name or the internet's name. */
  router: string;
}

export interface Internet {
  kind: 'internet';
  name: string;
  netns: string;
  machine: boolean;
  software?: MachineSoftware;
  /** One point-to-point link per attached NAT or node. */
  links: (Attachment & { peer: string })[];
}

export interface Link {
  /**
   * veth ends: namespace, interface name, and the thing in that namespace. `a` is the member
   * farther from the internet, `b` the router it routes through (a NAT or the internet), so
   * a's egress is the link's upstream direction and b's its downstream one.
   */
  a: { netns: string; ifname: string; owner: string };
  b: { netns: string; ifname: string; owner: string };
  /** Set when the b end is a port of the NAT's LAN bridge. */
  bBridge?: string;
  /** What the lab file's `links:` declare for it (absent: an ideal link). */
  impairment?: LinkShaping;
}

export interface Lab {
  name: string;
  /** Absolute path of the lab file, or a built-in name. */
  source: string;
  prefix: string;
  image?: string;
  internet: Internet;
  nats: Nat[];
  nodes: Node[];
  links: Link[];
}

export function members(lab: Lab): (Nat | Node | Internet)[] {
  return [...lab.nodes, ...lab.nats, lab.internet];
}
