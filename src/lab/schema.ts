// The lab file's shape, as zod schemas. Keys are kebab-case in YAML; unknown keys
// are errors (a typo must not silently become a default).
import { z } from 'zod';

/** Names become namespace names, machine names and interface-name parts. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;
const name = z
  .string()
  .min(1)
  .max(32, 'must be at most 32 characters')
  .regex(NAME_PATTERN, 'must start with a lower-case letter and contain only a-z, 0-9 and "-"');

const ipv4 = z.string().refine((s) => parseIpv4(s) !== undefined, { message: 'is not an IPv4 address (a.b.c.d)' });
const cidr = z.string().refine((s) => parseCidr(s) !== undefined, { message: 'is not a usable IPv4 subnet (a.b.c.d/len with len 8-30 and no host bits set)' });
const port = z.number().int('must be a whole number').min(1, 'must be 1-65535').max(65535, 'must be 1-65535');
const seconds = z.number().int('must be a whole number of seconds').min(1, 'must be at least 1 second').max(432000, 'must be at most 432000 seconds (5 days)');

export const NAT_TYPES = ['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;
export const DEPENDENCIES = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'] as const;

const natType = z.enum(NAT_TYPES, {
  error: () => `must be one of ${NAT_TYPES.join(', ')}`,
});
const dependency = z.enum(DEPENDENCIES, {
  error: () => `must be one of ${DEPENDENCIES.join(', ')}`,
});

export const forwardSchema = z.strictObject({
  protocol: z.enum(['udp', 'tcp'], { error: () => 'must be udp or tcp' }),
  port: port,
  to: name,
  'to-port': port.optional(),
  /** A public forward admits anyone, whatever the NAT's filtering. */
  public: z.boolean().optional(),
});

export const natSchema = z.strictObject({
  name: name.optional(),
  type: natType.optional(),
  mapping: dependency.optional(),
  filtering: dependency.optional(),
  hairpinning: z.boolean().optional(),
  'port-preservation': z.boolean().optional(),
  'fixed-port': port.optional(),
  forwards: z.array(forwardSchema).optional(),
  'udp-timeouts': z
    .strictObject({ unreplied: seconds.optional(), stream: seconds.optional() })
    .optional(),
  'tcp-mapping-timeout': seconds.optional(),
  machine: z.boolean().optional(),
});

export const uplinkSchema = z.strictObject({
  subnet: cidr.optional(),
  address: ipv4.optional(),
  gateway: ipv4.optional(),
});

export const lanSchema = z.strictObject({
  subnet: cidr.optional(),
  gateway: ipv4.optional(),
});

export const nodeSchema = z.strictObject({
  name: name,
  address: ipv4.optional(),
  machine: z.boolean().optional(),
});

export const internetNodeSchema = z.strictObject({
  name: name,
  uplink: uplinkSchema.optional(),
  machine: z.boolean().optional(),
});

export const siteSchema = z.strictObject({
  name: name,
  /** `internet` (the default) or the name of another site whose NAT this one sits behind. */
  upstream: name.optional(),
  nat: natSchema.optional(),
  uplink: uplinkSchema.optional(),
  lan: lanSchema.optional(),
  nodes: z.array(nodeSchema).optional(),
});

export const labSchema = z.strictObject({
  name: name,
  description: z.string().optional(),
  /** Prepended to namespace and machine names so that two labs can be up at once. */
  prefix: z
    .string()
    .max(8, 'must be at most 8 characters')
    .regex(/^([a-z][a-z0-9]*-?)?$/, 'must be lower-case letters and digits, optionally ending in "-"')
    .optional(),
  internet: z
    .strictObject({ name: name.optional(), machine: z.boolean().optional() })
    .optional(),
  /** Image the lab's machines boot (see `labctl image list`). */
  image: name.optional(),
  sites: z.array(siteSchema).optional(),
  nodes: z.array(internetNodeSchema).optional(),
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
