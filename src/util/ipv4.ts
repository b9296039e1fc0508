// IPv4 addresses and subnets as numbers: an address is its 32 bits as an unsigned integer
// (10.0.1.1 is 0x0a000101), so that subnet arithmetic is plain arithmetic. Shared by the
// lab file's checks and address planning and by check's choice of its STUN addresses.

/** "a.b.c.d" in plain decimal (no leading zeros, which some tools read as octal), or undefined. */
export function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255) || m.slice(1).some((p) => p.length > 1 && p.startsWith('0'))) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export interface Cidr {
  network: number;
  prefix: number;
}

/**
 * A subnet a lab can use: "a.b.c.d/len" with len 8-30 (a /31 or /32 has no room for a
 * gateway and a host) and no host bits set (10.0.1.5/24 is an address, not a subnet).
 */
export function parseCidr(s: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const addr = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (addr === undefined || prefix > 30 || prefix < 8) return undefined;
  if ((addr & prefixMask(prefix)) >>> 0 !== addr) return undefined;
  return { network: addr, prefix };
}

/**
 * The subnet an interface's address lies in: "a.b.c.d/len" as `ip addr` shows it, host bits
 * allowed and any len 0-32 (10.0.1.5/24 is in 10.0.1.0/24), or undefined.
 */
export function subnetOfAddress(s: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const addr = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (addr === undefined || prefix > 32) return undefined;
  return { network: (addr & prefixMask(prefix)) >>> 0, prefix };
}

function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.network)}/${c.prefix}`;
}

export function cidrContains(c: Cidr, addr: number): boolean {
  return (addr & prefixMask(c.prefix)) >>> 0 === c.network;
}

/** True when addr is a usable host address of c (not the network or broadcast address). */
export function isHostOf(c: Cidr, addr: number): boolean {
  const size = 2 ** (32 - c.prefix);
  return cidrContains(c, addr) && addr !== c.network && addr !== c.network + size - 1;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const m = prefixMask(Math.min(a.prefix, b.prefix));
  return (a.network & m) >>> 0 === (b.network & m) >>> 0;
}
