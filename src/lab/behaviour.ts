// NAT behaviour in RFC 4787 terms, and the classic names that stand for pairs of them.
import type { DEPENDENCIES, NAT_TYPES } from './schema.js';

export type Dependency = (typeof DEPENDENCIES)[number];
export type ClassicNatType = (typeof NAT_TYPES)[number];

/** RFC 4787 meaning of the classic names (RFC 3489 terms). */
export const CLASSIC: Record<ClassicNatType, { mapping: Dependency; filtering: Dependency }> = {
  'full-cone': { mapping: 'endpoint-independent', filtering: 'endpoint-independent' },
  'restricted-cone': { mapping: 'endpoint-independent', filtering: 'address-dependent' },
  'port-restricted-cone': { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' },
  symmetric: { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent' },
};

export const SHORT: Record<Dependency, string> = {
  'endpoint-independent': 'EI',
  'address-dependent': 'AD',
  'address-and-port-dependent': 'APD',
};

/** The classic name for a mapping/filtering pair, or undefined when none fits (e.g. ADM+EIF). */
export function classicName(mapping: Dependency, filtering: Dependency): ClassicNatType | undefined {
  for (const [name, b] of Object.entries(CLASSIC) as [ClassicNatType, (typeof CLASSIC)[ClassicNatType]][]) {
    if (b.mapping === mapping && b.filtering === filtering) return name;
  }
  return undefined;
}

/** "EIM+ADF (restricted-cone)" */
export function describeBehaviour(mapping: Dependency, filtering: Dependency): string {
  const classic = classicName(mapping, filtering);
  return `${SHORT[mapping]}M+${SHORT[filtering]}F${classic ? ` (${classic})` : ''}`;
}
