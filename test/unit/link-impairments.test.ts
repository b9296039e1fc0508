// Link impairments without root: units, the lab file's `links:` (resolution, profiles,
// directions), the tc compiler (shapes and live transitions), the plan, and the state of
// live changes as `link show`, `status` and `graph` read it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labNetemNeeds, routeLines, withLiveChange } from '../../src/apply/links.js';
import type { LabState } from '../../src/host/state.js';
import {
  describeShaping,
  formatRate,
  formatTime,
  NO_SHAPING,
  parsePercent,
  parseRate,
  parseTime,
  profileDirection,
  unitProblem,
} from '../../src/lab/impairment.js';
import { LINK_PROFILES } from '../../src/lab/link-profiles.js';
import { loadLab } from '../../src/lab/load.js';
import type { Lab } from '../../src/lab/model.js';
import { parseLab } from '../../src/lab/resolve.js';
import { findLink, linkName, resolveLinkEntry } from '../../src/lab/resolve-links.js';
import { checkLinkEntry } from '../../src/lab/schema.js';
import { egressLines, linkLines, NETEM_LIMIT, parseQdiscs, tbfSizes } from '../../src/plan/links.js';
import { planNetwork } from '../../src/plan/network.js';
import { linkViews } from '../../src/report/links.js';
import { UsageError } from '../../src/util/errors.js';

const ARTICLE = readFileSync(fileURLToPath(new URL('../../machines/article.yaml', import.meta.url)), 'utf8');
const withLinks = (links: string): Lab => parseLab(`${ARTICLE}links:\n${links}`, 'links.yaml');
const linkOf = (lab: Lab, x: string, y: string) => {
  const f = findLink(lab, x, y);
  assert.ok('index' in f, JSON.stringify(f));
  return lab.links[f.index]!;
};
const rejects = (links: string): string => {
  try {
    withLinks(links);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e.message;
  }
  assert.fail('resolved without error');
};

describe('units, as tc writes them', () => {
  test('times: us, ms, s, with decimals', () => {
    assert.equal(parseTime('40ms'), 40);
    assert.equal(parseTime('1.5s'), 1500);
    assert.equal(parseTime('500us'), 0.5);
    for (const bad of ['40', '40 ms', '40msec', 'ms', '-1ms', '1e3ms', '40MS']) assert.equal(parseTime(bad), undefined, bad);
  });
  test('percentages need %; rates are bits per second, any case', () => {
    assert.equal(parsePercent('0.1%'), 0.1);
    assert.equal(parsePercent('1'), undefined);
    assert.equal(parseRate('5mbit'), 5000);
    assert.equal(parseRate('5Mbit'), 5000);
    assert.equal(parseRate('512kbit'), 512);
    assert.equal(parseRate('1gbit'), 1_000_000);
    assert.equal(parseRate('100bit'), 0.1);
    assert.equal(parseRate('5mbps'), undefined);
  });
  test('a bare number is told the unit it needs; tc\'s "mbps" (bytes) is named as such', () => {
    assert.match(unitProblem('time', 40)!, /needs a unit: 40ms/);
    assert.match(unitProblem('percent', 1)!, /needs a unit: 1%/);
    assert.match(unitProblem('rate', '5mbps')!, /bytes per second/);
    assert.equal(unitProblem('rate', '5mbit'), undefined);
  });
  test('text goes back in the largest whole unit', () => {
    assert.equal(formatTime(40), '40ms');
    assert.equal(formatTime(2000), '2s');
    assert.equal(formatTime(0.5), '500us');
    assert.equal(formatRate(5000), '5mbit');
    assert.equal(formatRate(1_000_000), '1gbit');
    assert.equal(formatRate(512), '512kbit');
    assert.equal(formatRate(0.1), '100bit');
  });
});

describe('links: in a lab file', () => {
  test('an entry applies both ways unless a direction is named; the pair in either order', () => {
    const lab = withLinks('  - { between: [inet, c1-nat], delay: 40ms, loss: 1% }\n  - { between: [c0, c0-nat], rate: 1mbit, direction: upstream }\n');
    assert.deepEqual(linkOf(lab, 'c1-nat', 'inet').impairment, {
      upstream: { delayMs: 40, lossPercent: 1 },
      downstream: { delayMs: 40, lossPercent: 1 },
    });
    assert.deepEqual(linkOf(lab, 'c0', 'c0-nat').impairment, { upstream: { rateKbit: 1000 }, downstream: {} });
    assert.equal(linkOf(lab, 'c1', 'c1-nat').impairment, undefined);
  });

  test('each direction once: two entries for one link, one per direction', () => {
    const lab = withLinks(
      '  - { between: [c1, c1-nat], rate: 1mbit, direction: upstream }\n  - { between: [c1-nat, c1], rate: 8mbit, delay: 5ms, direction: downstream }\n',
    );
    assert.deepEqual(linkOf(lab, 'c1', 'c1-nat').impairment, { upstream: { rateKbit: 1000 }, downstream: { rateKbit: 8000, delayMs: 5 } });
  });

  test('a profile gives each direction its values; fields beside it override it in the directions named, 0 takes one away', () => {
    const [name, profile] = Object.entries(LINK_PROFILES).find(([, p]) => p.upstream?.rateKbit !== undefined && p.values.delayMs !== undefined)!;
    const lab = withLinks(`  - { between: [c0-nat, inet], profile: ${name}, delay: 33ms, jitter: 0ms }\n`);
    const up = { ...profileDirection(profile, 'upstream'), delayMs: 33 };
    delete up.jitterMs;
    const imp = linkOf(lab, 'c0-nat', 'inet').impairment!;
    assert.deepEqual(imp.upstream, up);
    assert.equal(imp.downstream.delayMs, 33);
    assert.equal(imp.downstream.rateKbit, profileDirection(profile, 'downstream').rateKbit);
    const upOnly = withLinks(`  - { between: [c0-nat, inet], profile: ${name}, direction: upstream }\n`);
    assert.deepEqual(linkOf(upOnly, 'c0-nat', 'inet').impairment!.downstream, {});
  });

  test('every problem names its field', () => {
    assert.match(
      rejects('  - { between: [c1, inet], delay: 40ms }\n'),
      /links\[0\]\.between: c1 and inet are not linked; the lab's links are: c0--c0-nat, c0-nat--inet, c1--c1-nat, c1-nat--inet/,
    );
    assert.match(rejects('  - { between: [c0-nat, inet], loss: 101% }\n'), /links\[0\]\.loss: \(101%\) must be at most 100%/);
    assert.match(rejects('  - { between: [c0-nat, inet], reorder: 1% }\n'), /links\[0\]\.reorder: needs a delay/);
    assert.match(rejects('  - { between: [c0-nat, inet], delay: 5ms, jitter: 6ms }\n'), /links\[0\]\.jitter: \(6ms\) must not be more than the delay \(5ms\)/);
    assert.match(rejects('  - { between: [c0-nat, inet], profile: nope }\n'), /links\[0\]\.profile: unknown profile "nope"; the profiles are: .*lte/);
    assert.match(rejects('  - { between: [c0-nat, inet], delay: 40 }\n'), /links\[0\]\.delay: needs a unit: 40ms/);
    assert.match(
      rejects('  - { between: [c0-nat, inet], delay: 1ms }\n  - { between: [inet, c0-nat], loss: 1% }\n'),
      /links\[1\]\.between: c0-nat--inet is listed twice \(links\[0\] and links\[1\]\) for direction upstream/,
    );
  });

  test('the good fixtures resolve, the CGN chain with its bridge port', () => {
    const lab = loadLab(fileURLToPath(new URL('../fixtures/good-labs/impaired-cgn.yaml', import.meta.url)));
    const access = linkOf(lab, 'home-nat', 'cgn');
    assert.equal(access.b.ifname, 've-home-nat-lan');
    assert.equal(access.bBridge, 'br-lan');
    assert.deepEqual(access.impairment, { upstream: { rateKbit: 4000 }, downstream: { rateKbit: 4000 } });
    assert.deepEqual(linkOf(lab, 'cgn', 'inet').impairment, { upstream: {}, downstream: { delayMs: 20 } });
    assert.doesNotThrow(() => loadLab(fileURLToPath(new URL('../fixtures/good-labs/impaired-links.yaml', import.meta.url))));
  });
});

describe('links: the command line (the same checks, the options named)', () => {
  const lab = loadLab('article');
  const where = (f: string) => (f ? `--${f}` : 'link set');
  test('units are checked by the schema, with the option in the message', () => {
    const r = checkLinkEntry({ between: ['c1-nat', 'inet'], delay: '40', loss: '5mbit' }, where);
    assert.equal(r.entry, undefined);
    assert.deepEqual(
      r.issues.map((i) => i.path),
      ['--delay', '--loss'],
    );
  });
  test('the link and the ranges by the same resolution as a lab file', () => {
    const issues: string[] = [];
    const entry = checkLinkEntry({ between: ['c1', 'inet'], loss: '200%' }, where).entry!;
    assert.equal(
      resolveLinkEntry(lab, entry, where, (p, m) => issues.push(`${p}: ${m}`)),
      undefined,
    );
    assert.deepEqual(issues, [
      "--between: c1 and inet are not linked; the lab's links are: c0--c0-nat, c0-nat--inet, c1--c1-nat, c1-nat--inet",
      '--loss: (200%) must be at most 100%',
    ]);
    const ok = resolveLinkEntry(lab, checkLinkEntry({ between: ['inet', 'c1-nat'], rate: '2mbit', direction: 'downstream' }, where).entry!, where, () =>
      assert.fail(),
    )!;
    assert.deepEqual(ok.shaping, { downstream: { rateKbit: 2000 } });
    assert.equal(linkName(lab.links[ok.index]!), 'c1-nat--inet');
  });
});

describe('the compiler: tc lines on the egress of each end', () => {
  test('nothing, tbf alone, netem alone, netem with tbf under it', () => {
    assert.deepEqual(egressLines('ve-x', {}), []);
    const { burst, limit } = tbfSizes(5000);
    assert.deepEqual(egressLines('ve-x', { rateKbit: 5000 }), [
      ['qdisc', 'replace', 'dev', 've-x', 'root', 'handle', '1:', 'tbf', 'rate', '5000000bit', 'burst', String(burst), 'limit', String(limit)],
    ]);
    assert.deepEqual(egressLines('ve-x', { delayMs: 40, jitterMs: 10, lossPercent: 1, corruptPercent: 0.1, duplicatePercent: 0.1, reorderPercent: 1 }), [
      [
        'qdisc',
        'replace',
        'dev',
        've-x',
        'root',
        'handle',
        '1:',
        'netem',
        'limit',
        String(NETEM_LIMIT),
        'delay',
        '40000us',
        '10000us',
        'loss',
        '1%',
        'corrupt',
        '0.1%',
        'duplicate',
        '0.1%',
        'reorder',
        '1%',
      ],
    ]);
    const both = egressLines('ve-x', { delayMs: 40, rateKbit: 1000 });
    assert.equal(both.length, 2);
    assert.deepEqual(both[1]!.slice(0, 9), ['qdisc', 'replace', 'dev', 've-x', 'parent', '1:1', 'handle', '10:', 'tbf']);
  });

  test('tbf: a bucket of two frames at least and 4 ms of the rate; a queue of 100 ms', () => {
    assert.deepEqual(tbfSizes(1000), { burst: 3028, limit: 12_500 });
    assert.deepEqual(tbfSizes(100), { burst: 3028, limit: 3028 + 3 * 1514 });
    assert.deepEqual(tbfSizes(100_000), { burst: 50_000, limit: 1_250_000 });
    assert.deepEqual(tbfSizes(1_000_000), { burst: 500_000, limit: 12_500_000 });
  });

  test('live: the same shape is changed in place; another kind goes under the other handle; none is deleted', () => {
    const tbf1 = { root: { kind: 'tbf', handle: '1:' } };
    assert.equal(egressLines('d', { rateKbit: 1000 }, tbf1)[0]![6], '1:');
    assert.equal(egressLines('d', { delayMs: 5 }, tbf1)[0]![6], '2:', 'tbf -> netem: a new root, grafted in one step');
    const netem2 = { root: { kind: 'netem', handle: '2:' } };
    assert.equal(egressLines('d', { delayMs: 9 }, netem2)[0]![6], '2:');
    // netem -> netem with tbf: a new netem (no child to reuse), then its child.
    const grown = egressLines('d', { delayMs: 9, rateKbit: 100 }, netem2);
    assert.deepEqual([grown[0]![6], grown[1]![5]], ['1:', '1:1']);
    const netemTbf = { root: { kind: 'netem', handle: '1:' }, child: { kind: 'tbf', handle: '10:' } };
    assert.deepEqual(
      egressLines('d', { delayMs: 9, rateKbit: 100 }, netemTbf).map((l) => (l[4] === 'root' ? l[6] : l[5])),
      ['1:', '1:1'],
    );
    assert.equal(egressLines('d', { delayMs: 9 }, netemTbf)[0]![6], '2:', 'dropping the child: a new root without one');
    assert.deepEqual(egressLines('d', {}, netemTbf), [['qdisc', 'del', 'dev', 'd', 'root']]);
    // A root of the user's own (fq_codel under 1:): replaced under 2:.
    assert.equal(egressLines('d', { rateKbit: 10 }, { root: { kind: 'fq_codel', handle: '1:' } })[0]![6], '2:');
  });

  test('parseQdiscs: roots with their :1 child; the default qdisc counts as none', () => {
    const json = JSON.stringify([
      { kind: 'noqueue', handle: '0:', dev: 'lo', root: true },
      { kind: 'netem', handle: '1:', dev: 've-a', root: true },
      { kind: 'tbf', handle: '10:', dev: 've-a', parent: '1:1' },
      { kind: 'tbf', handle: '2:', dev: 've-b', root: true },
    ]);
    const q = parseQdiscs(json);
    assert.deepEqual(q.get('ve-a'), { root: { kind: 'netem', handle: '1:' }, child: { kind: 'tbf', handle: '10:' } });
    assert.deepEqual(q.get('ve-b'), { root: { kind: 'tbf', handle: '2:' } });
    assert.equal(q.get('lo'), undefined);
  });

  test("a link: upstream on the member's end, downstream on the router's; only inside the lab's namespaces", () => {
    const lab = withLinks(
      '  - { between: [c0-nat, inet], rate: 1mbit, direction: upstream }\n  - { between: [c0-nat, inet], delay: 9ms, direction: downstream }\n',
    );
    const link = linkOf(lab, 'c0-nat', 'inet');
    const [a, b] = linkLines(link, link.impairment!);
    assert.deepEqual([a!.netns, a!.ifname, a!.lines[0]![7]], ['ns-c0-nat', 've-c0-nat-inet', 'tbf']);
    assert.deepEqual([b!.netns, b!.ifname, b!.lines[0]![7]], ['ns-inet', 've-c0-inet', 'netem']);
    const plan = planNetwork(lab);
    assert.deepEqual(
      plan.namespaces.filter((n) => n.tcBatch).map((n) => n.netns),
      ['ns-c0-nat', 'ns-inet'],
    );
    for (const n of plan.namespaces) for (const l of n.tcBatch ?? []) assert.ok(l[3]!.startsWith('ve-'), l.join(' '));
    assert.notEqual(plan.hash, planNetwork(loadLab('article')).hash, 'a declaration changes the plan');
    assert.equal(
      planNetwork(loadLab('article')).namespaces.some((n) => n.tcBatch),
      false,
    );
    assert.deepEqual(labNetemNeeds(lab), [{ link: 'c0-nat--inet', fields: ['delay'] }]);
  });

  test("link up puts back the plan's routes with ip route replace", () => {
    const plan = planNetwork(loadLab('article'));
    assert.deepEqual(routeLines(plan, 'ns-c1-nat'), [['route', 'replace', 'default', 'via', '100.64.2.254', 'dev', 've-c1-nat-inet']]);
    assert.deepEqual(routeLines(plan, 'ns-inet'), []);
  });
});

describe('live changes in the state', () => {
  const lab = withLinks('  - { between: [c0-nat, inet], rate: 5mbit }\n');
  const state: LabState = { lab: 'article', source: 'links.yaml', planHash: 'x', status: 'up', createdAt: '', namespaces: [], nats: [] };
  const uplink = linkOf(lab, 'c0-nat', 'inet');
  const lan = linkOf(lab, 'c1', 'c1-nat');

  test('a change is recorded; going back to the declaration, or up again, removes the entry', () => {
    const set = withLiveChange(state, uplink, (e) => void (e.impairment = { upstream: { rateKbit: 1000 }, downstream: { rateKbit: 5000 } }));
    assert.deepEqual(set.links, [{ link: 'c0-nat--inet', impairment: { upstream: { rateKbit: 1000 }, downstream: { rateKbit: 5000 } } }]);
    const back = withLiveChange(set, uplink, (e) => void (e.impairment = { upstream: { rateKbit: 5000 }, downstream: { rateKbit: 5000 } }));
    assert.equal(back.links, undefined);
    const reset = withLiveChange(state, uplink, (e) => void (e.impairment = NO_SHAPING));
    assert.deepEqual(reset.links, [{ link: 'c0-nat--inet', impairment: NO_SHAPING }], 'a reset of a declared link is a live change');
    const down = withLiveChange(reset, lan, (e) => void (e.down = true));
    assert.equal(down.links?.length, 2);
    const up = withLiveChange(down, lan, (e) => void delete e.down);
    assert.deepEqual(up.links, reset.links);
  });

  test('link show: every link, its ends, what it does and where that comes from', () => {
    const live = withLiveChange(
      withLiveChange(state, lan, (e) => void (e.down = true)),
      linkOf(lab, 'c1-nat', 'inet'),
      (e) => void (e.impairment = { upstream: { rateKbit: 2000 }, downstream: {} }),
    );
    const views = linkViews(lab, live);
    const by = (n: string) => views.find((v) => v.link === n)!;
    assert.deepEqual(
      views.map((v) => v.link),
      ['c0--c0-nat', 'c0-nat--inet', 'c1--c1-nat', 'c1-nat--inet'],
    );
    assert.deepEqual([by('c0-nat--inet').from, describeShaping(by('c0-nat--inet').impairment)], ['lab file', 'rate 5mbit']);
    assert.deepEqual([by('c1-nat--inet').from, describeShaping(by('c1-nat--inet').impairment)], ['live', 'upstream: rate 2mbit; downstream: none']);
    assert.deepEqual([by('c1--c1-nat').down, by('c1--c1-nat').from], [true, 'none']);
    assert.deepEqual(by('c1--c1-nat').member, { member: 'c1', netns: 'ns-c1', ifname: 've-c1' });
    assert.deepEqual(by('c1--c1-nat').router, { member: 'c1-nat', netns: 'ns-c1-nat', ifname: 've-c1-nat-node' });
    // Without a state (the lab is not up): the lab file's.
    assert.equal(
      linkViews(lab).every((v) => !v.down && v.from !== 'live'),
      true,
    );
  });
});
