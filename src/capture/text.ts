// The readable form of `labctl capture` (without -w): tcpdump's own lines (`tcpdump -l -n`),
// each prefixed with the interface it was captured on, and the lab member's name beside
// every address that is one of the lab's, as `labctl conntrack` names them:
//   ve-c1-nat-inet  02:33:28.574935 IP 100.64.2.100.54321 (c1-nat) > 100.64.1.100.54321 (c0-nat): UDP, length 3
// Pure.
import type { AddressNames } from '../conntrack/annotate.js';

// An IPv4 address as tcpdump -n prints it, with its port when it has one (a fifth dotted
// number: 10.0.2.1.44432), standing on its own (not a piece of a longer dotted token).
const ADDRESS = /(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})(\.\d{1,5})?(?![\w.]*\w)/g;

/** The line with " (member)" after each address (and its port) that a lab member holds. */
export function annotateLine(line: string, names: AddressNames): string {
  if (names.size === 0) return line;
  return line.replace(ADDRESS, (whole: string, address: string) => {
    const name = names.get(address);
    return name ? `${whole} (${name})` : whole;
  });
}

// tcpdump starts each packet's first line with its time of day ("02:33:28.574935 "); with
// -v, further lines of the same packet are indented.
const PACKET_START = /^\d{2}:\d{2}:\d{2}\.\d+ /;

/** True for the first line of a packet (what --count counts). */
export const startsPacket = (line: string): boolean => PACKET_START.test(line);

/** The interface column: every name padded to the longest, so that the lines stay aligned. */
export function interfacePrefix(ifname: string, all: string[]): string {
  const width = Math.max(...all.map((n) => n.length));
  return `${ifname.padEnd(width)}  `;
}
