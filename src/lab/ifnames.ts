// Interface names. Linux limits them to 15 bytes (IFNAMSIZ - 1). The article's names
// (ve-c0, ve-c0-nat-node, ve-c0-nat-inet, ve-c0-inet) are kept exactly; a name that
// would be longer is shortened deterministically: its head, then "-", then 4 hex
// digits of a hash of the full name, so the same lab always gets the same names and
// two long names that share a head still differ.
import { createHash } from 'node:crypto';

export const IFNAME_MAX_BYTES = 15;

export function fitIfname(full: string): string {
  if (Buffer.byteLength(full) <= IFNAME_MAX_BYTES) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 4);
  const head = full.slice(0, IFNAME_MAX_BYTES - 5).replace(/-+$/, '');
  return `${head}-${hash}`;
}

/** Interface of an end node towards its router (in the node's namespace). */
export const nodeIfname = (node: string) => fitIfname(`ve-${node}`);
/** The NAT's end of the link to the one member of its LAN (the article's ve-c0-nat-node). */
export const natSoleLanIfname = (nat: string) => fitIfname(`ve-${nat}-node`);
/** The NAT's end of the link to one of several LAN members; these are bridged on br-lan. */
export const natLanPortIfname = (member: string) => fitIfname(`ve-${member}-lan`);
export const LAN_BRIDGE = 'br-lan';
/** The NAT's uplink towards the internet (ve-c0-nat-inet) or towards a parent NAT. */
export const natUplinkIfname = (nat: string, toInternet: boolean) => fitIfname(toInternet ? `ve-${nat}-inet` : `ve-${nat}-up`);
/** The internet's end of a site's or an internet node's link (ve-c0-inet). */
export const internetIfname = (attached: string) => fitIfname(`ve-${attached}-inet`);
