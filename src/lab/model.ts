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
  tcpMappingTimeout: number;
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
  /** Its uplink: towards the internet or a parent NAT's LAN. */
  outside: Attachment & { gateway: string; upstream: string };
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
