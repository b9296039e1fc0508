// The lab file's shape, as zod schemas. Keys are kebab-case in YAML; unknown keys
// are errors (a typo must not silently become a default).
//
// zod/mini, zod 4's functional API, not the chained one: the same validation with ~20 KB
// of library instead of ~450 KB, which every labctl start used to parse (see bin/labctl.js).
// English messages come from zod's own locale, as with the chained API (src/lab/zod.ts).
import * as z from 'zod/mini';
import './zod.js';

/** Names become namespace names, machine names and interface-name parts. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
const name = z
  .string()
  .check(
    z.minLength(1),
    z.maxLength(32, 'must be at most 32 characters'),
    z.regex(NAME_PATTERN, 'must start with a lower-case letter and contain only a-z, 0-9 and "-"'),
  );

const ipv4 = z.string().check(z.refine((s) => parseIpv4(s) !== undefined, { message: 'is not an IPv4 address (a.b.c.d)' }));
const cidr = z.string().check(z.refine((s) => parseCidr(s) !== undefined, { message: 'is not a usable IPv4 subnet (a.b.c.d/len with len 8-30 and no host bits set)' }));
const port = z.number().check(z.int('must be a whole number'), z.gte(1, 'must be 1-65535'), z.lte(65535, 'must be 1-65535'));
const seconds = z
  .number()
  .check(z.int('must be a whole number of seconds'), z.gte(1, 'must be at least 1 second'), z.lte(432000, 'must be at most 432000 seconds (5 days)'));

export const NAT_TYPES = ['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;
export const DEPENDENCIES = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'] as const;

const natType = z.enum(NAT_TYPES, {
  error: () => `must be one of ${NAT_TYPES.join(', ')}`,
});
const dependency = z.enum(DEPENDENCIES, {
  error: () => `must be one of ${DEPENDENCIES.join(', ')}`,
});
const flag = z.optional(z.boolean());

export const forwardSchema = z.strictObject({
  protocol: z.enum(['udp', 'tcp'], { error: () => 'must be udp or tcp' }),
  port: port,
  to: name,
  'to-port': z.optional(port),
  /** A public forward admits anyone, whatever the NAT's filtering. */
  public: flag,
});

export const natSchema = z.strictObject({
  name: z.optional(name),
  type: z.optional(natType),
  mapping: z.optional(dependency),
  filtering: z.optional(dependency),
  hairpinning: flag,
  'port-preservation': flag,
  'fixed-port': z.optional(port),
  forwards: z.optional(z.array(forwardSchema)),
  'udp-timeouts': z.optional(z.strictObject({ unreplied: z.optional(seconds), stream: z.optional(seconds) })),
  'tcp-mapping-timeout': z.optional(seconds),
  machine: flag,
});

export const uplinkSchema = z.strictObject({
  subnet: z.optional(cidr),
  address: z.optional(ipv4),
  gateway: z.optional(ipv4),
});

export const lanSchema = z.strictObject({
  subnet: z.optional(cidr),
  gateway: z.optional(ipv4),
});

export const nodeSchema = z.strictObject({
  name: name,
  address: z.optional(ipv4),
  machine: flag,
});

export const internetNodeSchema = z.strictObject({
  name: name,
  uplink: z.optional(uplinkSchema),
  machine: flag,
});

export const siteSchema = z.strictObject({
  name: name,
  /** `internet` (the default) or the name of another site whose NAT this one sits behind. */
  upstream: z.optional(name),
  nat: z.optional(natSchema),
  uplink: z.optional(uplinkSchema),
  lan: z.optional(lanSchema),
  nodes: z.optional(z.array(nodeSchema)),
});

export const labSchema = z.strictObject({
  name: name,
  description: z.optional(z.string()),
  /** Prepended to namespace and machine names so that two labs can be up at once. */
  prefix: z.optional(
    z.string().check(z.maxLength(8, 'must be at most 8 characters'), z.regex(/^([a-z][a-z0-9]*-?)?$/, 'must be lower-case letters and digits, optionally ending in "-"')),
  ),
  internet: z.optional(z.strictObject({ name: z.optional(name), machine: flag })),
  /** Image the lab's machines boot (see `labctl image list`). */
  image: z.optional(name),
  sites: z.optional(z.array(siteSchema)),
  nodes: z.optional(z.array(internetNodeSchema)),
});

export type LabFile = z.infer<typeof labSchema>;
export type SiteFile = z.infer<typeof siteSchema>;
export type NatFile = z.infer<typeof natSchema>;
export type ForwardFile = z.infer<typeof forwardSchema>;

// --- IPv4 helpers (kept here so the schema is self-contained) ---

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

export function parseCidr(s: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const addr = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (addr === undefined || prefix > 30 || prefix < 8) return undefined;
  const mask = prefixMask(prefix);
  if ((addr & mask) >>> 0 !== addr) return undefined; // host bits set: 10.0.1.5/24 is not a subnet
  return { network: addr, prefix };
}

export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.network)}/${c.prefix}`;
}

export function cidrContains(c: Cidr, addr: number): boolean {
  return ((addr & prefixMask(c.prefix)) >>> 0) === c.network;
}

/** True when addr is a usable host address of c (not the network or broadcast address). */
export function isHostOf(c: Cidr, addr: number): boolean {
  const size = 2 ** (32 - c.prefix);
  return cidrContains(c, addr) && addr !== c.network && addr !== c.network + size - 1;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const m = prefixMask(p);
  return ((a.network & m) >>> 0) === ((b.network & m) >>> 0);
}
