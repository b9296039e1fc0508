// The `nat:` keys of real NATs' behaviour beyond mapping and filtering (README "NAT profiles"):
// a named profile, outside address pools, port allocation, port ranges and blocks, quotas
// and TCP timers, spread into the NAT's schema in schema.ts. Only zod's built-in checks here
// (types, ranges, patterns), so that they carry over to the editors' JSON Schema as they
// are; what needs several fields, the profile or the lab's addresses (an unknown profile, a
// pool address outside the uplink's subnet, a block larger than the port range) is checked
// when the lab resolves (resolve-behaviour.ts, resolve-nat-ports.ts, resolve-addresses.ts).
import * as z from 'zod/mini';
import './zod.js';

export const PORT_ALLOCATIONS = ['preserve', 'sequential', 'random'] as const;
export const POOLINGS = ['paired', 'arbitrary'] as const;

/** The most outside addresses one NAT may have (AWS's NAT gateway has at most 8; a CGN's pool can be larger). */
export const MAX_POOL = 64;

const whole = (low: number, high: number, unit = '') =>
  z.number().check(z.int('must be a whole number'), z.gte(low, `must be ${low}-${high}${unit}`), z.lte(high, `must be ${low}-${high}${unit}`));

const seconds = z
  .number()
  .check(z.int('must be a whole number of seconds'), z.gte(1, 'must be at least 1 second'), z.lte(432000, 'must be at most 432000 seconds (5 days)'));

/** LOW-HIGH; the numbers are checked when the lab resolves (low <= high, 1-65535). */
export const PORT_RANGE_PATTERN = /^[0-9]{1,5}-[0-9]{1,5}$/;

const dottedQuad = z.string().check(z.regex(/^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/, 'is not an IPv4 address (a.b.c.d)'));

export const natBehaviourFields = {
  /** A named profile (nat-profiles.ts); the fields beside it override its values. Checked when the lab resolves. */
  profile: z.optional(z.string().check(z.minLength(1, 'must not be empty'))),
  'port-allocation': z.optional(z.enum(PORT_ALLOCATIONS, { error: () => `must be one of ${PORT_ALLOCATIONS.join(', ')}` })),
  ports: z.optional(z.string().check(z.regex(PORT_RANGE_PATTERN, 'must be a port range LOW-HIGH, e.g. 1024-65535'))),
  /** How many outside addresses (planned in the uplink's subnet), or which. */
  outside: z.optional(
    z.union(
      [
        whole(1, MAX_POOL, ' addresses'),
        z.array(dottedQuad).check(z.minLength(1, 'must list at least one address'), z.maxLength(MAX_POOL, `must list at most ${MAX_POOL} addresses`)),
      ],
      {
        error: () => `must be a number of outside addresses (1-${MAX_POOL}) or a list of IPv4 addresses`,
      },
    ),
  ),
  pooling: z.optional(z.enum(POOLINGS, { error: () => `must be one of ${POOLINGS.join(', ')}` })),
  'port-block': z.optional(
    z.strictObject({
      size: whole(1, 64512, ' ports'),
      /** Juniper's max-blocks-per-address range. */
      'max-blocks': z.optional(whole(1, 512)),
    }),
  ),
  quota: z.optional(whole(1, 65535, ' ports')),
  'tcp-timeouts': z.optional(z.strictObject({ established: z.optional(seconds), transitory: z.optional(seconds) })),
};
