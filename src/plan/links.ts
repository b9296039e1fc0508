// The link impairment compiler: from what a link should do in each direction to the `tc`
// commands (lines of a `tc -batch` file) on the egress of the veth end that sends that way,
// inside the lab's namespaces. Pure.
//
// One end's egress gets one of three shapes:
//   nothing                      an ideal link (the veth's default: no qdisc)
//   tbf as the root              a rate limit alone: tbf is in every kernel, netem is not
//   netem as the root (1:)       delay, jitter, loss, corruption, duplication, reordering;
//     tbf as its child (1:1)     with a rate limit too (tc-netem(8)'s own layout)
// Changes use `tc qdisc replace`, so that a link goes from one impairment to the next
// without a moment of none: a root of the same kind (and the same children) is changed in
// place; a root of another kind is replaced by a new one under the other handle (1: or 2:),
// which the kernel grafts in one step. The kernel refuses to change a root into another kind
// under the same handle ("Invalid qdisc name"), so the current qdiscs must be known: they
// are read with `tc -j qdisc show` (parseQdiscs) before a live change, and there are none on
// the fresh veths of `net up`.
import { formatPercent, IMPAIRMENT_FIELDS, isEmpty, type LinkImpairment, type LinkShaping, netemFields } from '../lab/impairment.js';
import type { Link } from '../lab/model.js';

/** The qdiscs on one device that matter here: its root, and the root's child at class :1. */
export interface DeviceQdiscs {
  root?: { kind: string; handle: string };
  child?: { kind: string; handle: string };
}

interface TcQdiscJson {
  kind: string;
  handle: string;
  dev: string;
  root?: boolean;
  parent?: string;
}

/** `tc -j qdisc show` of a namespace, by device. The default qdisc (handle 0:, noqueue) counts as none. */
export function parseQdiscs(json: string): Map<string, DeviceQdiscs> {
  const out = new Map<string, DeviceQdiscs>();
  const all = JSON.parse(json || '[]') as TcQdiscJson[];
  for (const q of all) {
    if (!q.root || q.handle === '0:') continue;
    out.set(q.dev, { root: { kind: q.kind, handle: q.handle } });
  }
  for (const q of all) {
    const d = out.get(q.dev);
    if (d?.root && q.parent === `${d.root.handle}1`) d.child = { kind: q.kind, handle: q.handle };
  }
  return out;
}

/** The handle of netem's tbf child. */
const CHILD_HANDLE = '10:';

/** A full-size Ethernet frame as the qdisc sees it (1500 bytes of IP and the 14-byte header). */
const FRAME_BYTES = 1514;

/**
 * tbf's bucket and queue for a rate, in bytes.
 *
 * burst (the bucket): at least two full-size frames, or tbf could never send a large packet
 * (it drops what does not fit); otherwise 4 ms worth of the rate. tbf sleeps on a
 * high-resolution timer until the bucket holds the next packet's tokens; a wake-up that
 * comes late finds more, and tokens beyond the bucket's size are lost, which costs rate. A
 * few milliseconds of tokens absorbs that lateness, while what passes at line speed at once
 * stays a few milliseconds' worth, as on a real link that serialises at its rate.
 *
 * limit (the queue in front of the bottleneck): 100 ms of the rate, at least the burst and
 * three frames: enough that TCP fills the link over tens of milliseconds of round trip
 * instead of losing packets to a tiny queue, and of the order of an access link's own buffer.
 */
export function tbfSizes(rateKbit: number): { burst: number; limit: number } {
  const bytesPerMs = (rateKbit * 1000) / 8 / 1000;
  const burst = Math.max(2 * FRAME_BYTES, Math.ceil(bytesPerMs * 4));
  const limit = Math.max(burst + 3 * FRAME_BYTES, Math.ceil(bytesPerMs * 100));
  return { burst, limit };
}

function tbfArgs(rateKbit: number): string[] {
  const { burst, limit } = tbfSizes(rateKbit);
  return ['tbf', 'rate', `${Math.round(rateKbit * 1000)}bit`, 'burst', String(burst), 'limit', String(limit)];
}

/**
 * netem's queue, in packets. Its default (1000) holds what 12 Mbit/s of full-size frames
 * sends in a second, and under a delay every packet in flight sits in it: at 1 Gbit/s and
 * 100 ms that is over 8000. Packets only use memory while there, so the limit is generous.
 */
export const NETEM_LIMIT = 100_000;

/** tc's time syntax in microseconds (netem's resolution). */
const tcTime = (ms: number) => `${Math.round(ms * 1000)}us`;

function netemArgs(i: LinkImpairment): string[] {
  const args = ['netem', 'limit', String(NETEM_LIMIT)];
  if (i.delayMs !== undefined) args.push('delay', tcTime(i.delayMs), ...(i.jitterMs !== undefined ? [tcTime(i.jitterMs)] : []));
  if (i.lossPercent !== undefined) args.push('loss', formatPercent(i.lossPercent));
  if (i.corruptPercent !== undefined) args.push('corrupt', formatPercent(i.corruptPercent));
  if (i.duplicatePercent !== undefined) args.push('duplicate', formatPercent(i.duplicatePercent));
  if (i.reorderPercent !== undefined) args.push('reorder', formatPercent(i.reorderPercent));
  return args;
}

/** True when the impairment needs netem (anything but a rate). */
export const needsNetem = (i: LinkImpairment) => netemFields(i).length > 0;

/**
 * The `tc -batch` lines that give device `dev` this egress impairment, from the qdiscs it
 * has now (`current`; none on a fresh veth). Nothing when it already has none and should
 * have none.
 */
export function egressLines(dev: string, want: LinkImpairment, current: DeviceQdiscs = {}): string[][] {
  const netem = needsNetem(want);
  const rate = want.rateKbit;
  if (!netem && rate === undefined) return current.root ? [['qdisc', 'del', 'dev', dev, 'root']] : [];
  const kind = netem ? 'netem' : 'tbf';
  const wantChild = netem && rate !== undefined;
  const childIsOurs = current.child === undefined || (current.child.kind === 'tbf' && current.child.handle === CHILD_HANDLE);
  const sameShape = current.root?.kind === kind && (kind === 'tbf' || (current.child !== undefined) === wantChild) && childIsOurs;
  const handle = sameShape ? current.root!.handle : current.root?.handle === '1:' ? '2:' : '1:';
  const lines = [['qdisc', 'replace', 'dev', dev, 'root', 'handle', handle, ...(netem ? netemArgs(want) : tbfArgs(rate!))]];
  if (wantChild) lines.push(['qdisc', 'replace', 'dev', dev, 'parent', `${handle}1`, 'handle', CHILD_HANDLE, ...tbfArgs(rate)]);
  return lines;
}

/** One namespace's part of a link change: its end's device and the lines for it. */
export interface EndLines {
  netns: string;
  ifname: string;
  lines: string[][];
}

/**
 * A link's two ends: upstream traffic is the egress of `a` (the member farther from the
 * internet), downstream the egress of `b` (its router's end). `current`: what each end's
 * device has now, by end.
 */
export function linkLines(link: Link, shaping: LinkShaping, current: { a?: DeviceQdiscs; b?: DeviceQdiscs } = {}): EndLines[] {
  return [
    { netns: link.a.netns, ifname: link.a.ifname, lines: egressLines(link.a.ifname, shaping.upstream, current.a) },
    { netns: link.b.netns, ifname: link.b.ifname, lines: egressLines(link.b.ifname, shaping.downstream, current.b) },
  ];
}

/** The fields of a shaping that need netem, by direction (for "needs sch_netem" messages). */
export function netemNeeds(shaping: LinkShaping): string[] {
  const out: string[] = [];
  for (const side of ['upstream', 'downstream'] as const) {
    const i = shaping[side];
    if (!isEmpty(i)) for (const f of netemFields(i)) if (!out.includes(f)) out.push(f);
  }
  return IMPAIRMENT_FIELDS.filter((f) => out.includes(f));
}
