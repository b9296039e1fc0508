// What `labctl capture MEMBER [--link PEER]` captures: the lab that is up holding MEMBER,
// its namespace, and the interfaces of its links (all of them, or the one to PEER). Pure:
// the labs' states and the resolved lab in, the target or a UsageError (exit 2) out.
import type { LabState } from '../host/state.js';
import type { Lab } from '../lab/model.js';
import { UsageError } from '../util/errors.js';
import { type AddressNames, addressNames } from '../conntrack/annotate.js';

export interface CaptureInterface {
  ifname: string;
  /** The member at the link's other end (unknown when the lab file could not be read). */
  peer?: string;
  /** For the pcapng interface description: "c1-nat: link to inet (lab article)". */
  description: string;
}

export interface CaptureTarget {
  lab: string;
  member: string;
  netns: string;
  interfaces: CaptureInterface[];
  /** Address → member, for the readable lines (empty without the lab file). */
  names: AddressNames;
}

const ownersOf = (s: LabState) => s.namespaces.map((n) => n.owner);

/** The lab that is up with a member of that name (`labName`: only that lab). */
export function labOfMember(states: LabState[], member: string, labName?: string): LabState {
  const up = states.map((s) => s.lab).sort();
  if (labName !== undefined) {
    const state = states.find((s) => s.lab === labName);
    if (!state) throw new UsageError(`lab "${labName}" is not up (${up.length ? `labs up: ${up.join(', ')}` : 'no lab is up'})`);
    states = [state];
  }
  if (states.length === 0) throw new UsageError('no lab is up: bring one up with `labctl net up [FILE]` (machines are not needed)');
  const holding = states.filter((s) => ownersOf(s).includes(member));
  if (holding.length === 0) {
    const listed = states.map((s) => `${s.lab}: ${[...ownersOf(s)].sort().join(', ')}`).join('; ');
    const what = labName !== undefined ? `lab "${labName}" has no member "${member}"` : `no lab that is up has a member "${member}"`;
    throw new UsageError(`${what} (${listed})`);
  }
  if (holding.length > 1) {
    throw new UsageError(`"${member}" is a member of more than one lab that is up (${holding.map((s) => s.lab).join(', ')}): say which with --lab`);
  }
  const state = holding[0]!;
  if (state.status !== 'up') {
    throw new UsageError(
      `lab "${state.lab}" is not fully up (its \`net up\` has not finished, or failed): run \`labctl net up\` again, or \`labctl net down\``,
    );
  }
  return state;
}

/** The member's end of each of its links, and who is at the other end, in the lab's link order. */
export function memberLinks(lab: Lab, member: string): { ifname: string; peer: string }[] {
  const out: { ifname: string; peer: string }[] = [];
  for (const l of lab.links) {
    if (l.a.owner === member) out.push({ ifname: l.a.ifname, peer: l.b.owner });
    if (l.b.owner === member) out.push({ ifname: l.b.ifname, peer: l.a.owner });
  }
  return out;
}

const describe = (member: string, peer: string, lab: string) => `${member}: link to ${peer} (lab ${lab})`;

/** The target in a lab whose file could be read; `peer`: only the link to it. */
export function captureTarget(lab: Lab, state: LabState, member: string, peer?: string): CaptureTarget {
  const netns = state.namespaces.find((n) => n.owner === member)!.netns;
  let links = memberLinks(lab, member);
  if (peer !== undefined) {
    const linked = links.filter((l) => l.peer === peer);
    if (linked.length === 0) {
      const peers = [...new Set(links.map((l) => l.peer))];
      throw new UsageError(`${member} has no link to "${peer}" (${peers.length ? `its links go to ${peers.join(', ')}` : 'it has no links'})`);
    }
    links = linked;
  }
  return {
    lab: state.lab,
    member,
    netns,
    interfaces: links.map((l) => ({ ifname: l.ifname, peer: l.peer, description: describe(member, l.peer, state.lab) })),
    names: addressNames(lab),
  };
}

/** The target when only the lab's state is known: the namespace's own interfaces (listed by the caller), no names. */
export function captureTargetFromState(state: LabState, member: string, ifnames: string[]): CaptureTarget {
  const netns = state.namespaces.find((n) => n.owner === member)!.netns;
  return {
    lab: state.lab,
    member,
    netns,
    interfaces: ifnames.map((ifname) => ({ ifname, description: `${member} (lab ${state.lab})` })),
    names: new Map(),
  };
}
