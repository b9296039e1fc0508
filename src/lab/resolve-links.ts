// Resolution stage "link impairments": each `links:` entry names a link the lab has (two
// members in either order), and becomes a per-direction impairment on it: its profile's
// values, then the fields beside the profile, in the directions it names. The same
// function resolves `labctl link set`'s options, so both say the same about bad input.
import {
  consistencyProblems,
  type Direction,
  FIELD_KEYS,
  fieldValue,
  IMPAIRMENT_FIELDS,
  type ImpairmentField,
  isEmpty,
  type LinkImpairment,
  type LinkShaping,
  profileDirection,
  profileNames,
  rangeProblem,
  withoutZeros,
} from './impairment.js';
import { LINK_PROFILES } from './link-profiles.js';
import { type Lab, type Link, members } from './model.js';
import type { Report } from './resolve.js';
import type { LabFile, LinkFile } from './schema.js';

/** A link's name in messages and on the command line: the member farther from the internet first. */
export const linkName = (l: Link) => `${l.a.owner}--${l.b.owner}`;

/** The index of the link joining two members (either order), or a message saying why there is none. */
export function findLink(lab: Lab, x: string, y: string): { index: number } | { problem: string } {
  const names = members(lab).map((m) => m.name);
  for (const n of [x, y]) if (!names.includes(n)) return { problem: `no member named "${n}"; the lab's members are: ${names.join(', ')}` };
  if (x === y) return { problem: `names ${x} twice; a link joins two members` };
  const index = lab.links.findIndex((l) => (l.a.owner === x && l.b.owner === y) || (l.a.owner === y && l.b.owner === x));
  if (index < 0) return { problem: `${x} and ${y} are not linked; the lab's links are: ${lab.links.map(linkName).join(', ')}` };
  return { index };
}

/** The directions an entry sets. */
const sides = (d: Direction | undefined): ('upstream' | 'downstream')[] =>
  d === 'upstream' ? ['upstream'] : d === 'downstream' ? ['downstream'] : ['upstream', 'downstream'];

export interface ResolvedEntry {
  index: number;
  /** The directions it sets, and what it sets there (the others: not given). */
  shaping: Partial<LinkShaping>;
}

/**
 * One entry: its link, its profile and fields, range and consistency checks. `path(field)`
 * is where a message points: `links[0].delay` in a lab file, `--delay` on the command line.
 */
export function resolveLinkEntry(lab: Lab, entry: LinkFile, path: (field: string) => string, report: Report): ResolvedEntry | undefined {
  let ok = true;
  const found = findLink(lab, entry.between[0], entry.between[1]);
  if ('problem' in found) {
    report(path('between'), found.problem);
    ok = false;
  }
  const given: LinkImpairment = {};
  for (const f of IMPAIRMENT_FIELDS) {
    const text = entry[f];
    if (text === undefined) continue;
    const value = fieldValue(f, String(text));
    const problem = rangeProblem(f, value);
    if (problem) {
      report(path(f), problem);
      ok = false;
    }
    given[FIELD_KEYS[f].key] = value;
  }
  const profile = entry.profile === undefined ? undefined : LINK_PROFILES[entry.profile];
  if (entry.profile !== undefined && !profile) {
    const known = profileNames();
    report(path('profile'), `unknown profile "${entry.profile}"; ${known.length ? `the profiles are: ${known.join(', ')}` : 'labctl has no profiles yet'}`);
    ok = false;
  }
  if (entry.profile === undefined && Object.keys(given).length === 0) {
    report(path(''), `gives no impairment: add ${IMPAIRMENT_FIELDS.join(', ')} or a profile`);
    return undefined;
  }
  // Jitter against delay and the like: only where the profile is known (its values count too).
  if (entry.profile !== undefined && !profile) return undefined;
  const shaping: Partial<LinkShaping> = {};
  const said = new Set<string>();
  for (const side of sides(entry.direction)) {
    const merged = withoutZeros({ ...(profile ? profileDirection(profile, side) : {}), ...given });
    for (const [field, message] of consistencyProblems(merged)) {
      const text = `${message}${profile ? ` (with profile ${entry.profile}'s values)` : ''}`;
      if (said.has(`${field} ${text}`)) continue;
      said.add(`${field} ${text}`);
      report(path(field), text);
      ok = false;
    }
    shaping[side] = merged;
  }
  return ok ? { index: (found as { index: number }).index, shaping } : undefined;
}

/** Where a lab file entry's fields are: `links[2].delay`, `links[2]` for the entry itself. */
const entryPath = (i: number) => (field: string) => (field ? `links[${i}].${field}` : `links[${i}]`);

/** The stage: every entry on its link; a link listed twice for the same direction is an error. */
export function resolveLinkImpairments(file: LabFile, lab: Lab, report: Report): Lab {
  const entries = file.links ?? [];
  if (!entries.length) return lab;
  const links = lab.links.map((l) => ({ ...l }));
  // Per link and direction: the entry that set it.
  const setBy = new Map<string, number>();
  entries.forEach((entry, i) => {
    const r = resolveLinkEntry(lab, entry, entryPath(i), report);
    if (!r) return;
    const link = links[r.index]!;
    const impairment: LinkShaping = link.impairment ?? { upstream: {}, downstream: {} };
    for (const side of ['upstream', 'downstream'] as const) {
      const value = r.shaping[side];
      if (value === undefined) continue;
      const key = `${r.index} ${side}`;
      const earlier = setBy.get(key);
      if (earlier !== undefined) {
        report(
          `links[${i}].between`,
          `${linkName(link)} is listed twice (links[${earlier}] and links[${i}]) for direction ${side}; list a link once, or once per direction (direction: upstream, direction: downstream)`,
        );
        return;
      }
      setBy.set(key, i);
      impairment[side] = value;
    }
    link.impairment = impairment;
  });
  for (const l of links) if (l.impairment && isEmpty(l.impairment.upstream) && isEmpty(l.impairment.downstream)) delete l.impairment;
  return { ...lab, links };
}

/** The fields that a field of a `links:` entry becomes in messages, for the command line's options. */
export const OPTION_OF: Record<ImpairmentField | 'profile' | 'direction' | 'between' | '', string> = {
  delay: '--delay',
  jitter: '--jitter',
  loss: '--loss',
  rate: '--rate',
  corrupt: '--corrupt',
  duplicate: '--duplicate',
  reorder: '--reorder',
  profile: '--profile',
  direction: '--direction',
  between: 'A B',
  '': 'link set',
};
