// Which namespace `labctl conntrack MEMBER [FILE|LAB]` reads, and the lab's address names.
// A NAT is the usual target, but every lab member's namespace has its own conntrack table.
import type { Lab } from '../lab/model.js';
import type { LabState } from '../host/state.js';
import { addressNames, type AddressNames } from './annotate.js';

export interface ConntrackTarget {
  lab: string;
  member: string;
  role: string;
  netns: string;
  /** Empty when only the lab's state file is known (its lab file is gone). */
  names: AddressNames;
}

interface MemberChoices {
  nats: string[];
  others: string[];
}

export function memberChoices(lab: Lab): MemberChoices {
  return { nats: lab.nats.map((n) => n.name), others: [...lab.nodes.map((n) => n.name), lab.internet.name] };
}

export function choicesText(c: MemberChoices): string {
  const parts = [c.nats.length ? `NATs: ${c.nats.join(', ')}` : 'no NATs', ...(c.others.length ? [`other members: ${c.others.join(', ')}`] : [])];
  return parts.join('; ');
}

/** The member of a resolved lab, or undefined. */
export function targetInLab(lab: Lab, name: string): ConntrackTarget | undefined {
  const nat = lab.nats.find((n) => n.name === name);
  const node = lab.nodes.find((n) => n.name === name);
  const m = nat ?? node ?? (lab.internet.name === name ? lab.internet : undefined);
  if (!m) return undefined;
  return { lab: lab.name, member: m.name, role: m.kind, netns: m.netns, names: addressNames(lab) };
}

/** The member of a lab known only by its state file (no addresses to name). */
export function targetInState(state: LabState, name: string): ConntrackTarget | undefined {
  const ns = state.namespaces.find((n) => n.owner === name);
  if (!ns) return undefined;
  return { lab: state.lab, member: name, role: ns.role, netns: ns.netns, names: new Map() };
}

export function stateChoices(state: LabState): MemberChoices {
  const nats = new Set(state.nats.map((n) => n.name));
  return { nats: [...nats], others: state.namespaces.map((n) => n.owner).filter((o) => !nats.has(o)) };
}
