// `labctl link show` (and the links in `status --json`): every link of a lab with its ends,
// interfaces, what it does in each direction and where that comes from, and whether it is
// down. Read from the lab file and the live changes its state records; pure but for
// linksOfState, which loads the lab file.
import type { LabState } from '../host/state.js';
import { describeShaping, type LinkShaping, NO_SHAPING, shapingIsEmpty } from '../lab/impairment.js';
import { loadLab } from '../lab/load.js';
import type { Lab } from '../lab/model.js';
import { linkName } from '../lab/resolve-links.js';
import { table } from './table.js';

export interface LinkEndView {
  member: string;
  netns: string;
  ifname: string;
}

export interface LinkView {
  /** `c0-nat--inet`: the member farther from the internet first, as `labctl link` takes it. */
  link: string;
  /** The member farther from the internet: what it sends is the upstream direction. */
  member: LinkEndView;
  /** The router it routes through (a NAT or the internet): what it sends is the downstream direction. */
  router: LinkEndView;
  impairment: LinkShaping;
  /** Where the impairment comes from: the lab file, a live change (`labctl link set|reset`), or neither. */
  from: 'lab file' | 'live' | 'none';
  /** Taken down by `labctl link down`. */
  down: boolean;
}

/** Every link of the lab; with the state of a lab that is up, as it is now. */
export function linkViews(lab: Lab, state?: LabState): LinkView[] {
  return lab.links.map((l) => {
    const name = linkName(l);
    const live = state?.links?.find((x) => x.link === name);
    const impairment = live?.impairment ?? l.impairment ?? NO_SHAPING;
    const from = live?.impairment ? 'live' : l.impairment ? 'lab file' : 'none';
    return {
      link: name,
      member: { member: l.a.owner, netns: l.a.netns, ifname: l.a.ifname },
      router: { member: l.b.owner, netns: l.b.netns, ifname: l.b.ifname },
      impairment,
      from,
      down: live?.down === true,
    };
  });
}

/** The links of a lab that is up, from the file it came up from; when that cannot be read, only its live changes. */
export function linksOfState(state: LabState): LinkView[] {
  try {
    return linkViews(loadLab(state.source), state);
  } catch {
    return (state.links ?? []).map((l) => {
      const [member = '', router = ''] = l.link.split('--');
      return {
        link: l.link,
        member: { member, netns: '', ifname: '' },
        router: { member: router, netns: '', ifname: '' },
        impairment: l.impairment ?? NO_SHAPING,
        from: l.impairment ? 'live' : 'none',
        down: l.down === true,
      };
    });
  }
}

export interface LabLinks {
  lab: string;
  source: string;
  links: LinkView[];
}

export function formatLinkViews(labs: LabLinks[]): string {
  return labs
    .map((l) => {
      const rows = l.links.map((v) => [
        v.link,
        `${v.member.ifname} (${v.member.netns})`,
        `${v.router.ifname} (${v.router.netns})`,
        describeShaping(v.impairment),
        shapingIsEmpty(v.impairment) && v.from === 'none' ? '-' : v.from,
        v.down ? 'DOWN' : 'up',
      ]);
      return `lab ${l.lab} from ${l.source}\n${table(['LINK', 'MEMBER END', 'ROUTER END', 'IMPAIRMENT', 'FROM', 'STATE'], rows)}`;
    })
    .join('\n');
}
