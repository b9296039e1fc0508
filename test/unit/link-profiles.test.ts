// The named link profiles: each is a sane netem/tbf impairment, each value it sets comes
// from one of its sources or its notes say why it was chosen, and the README's table is
// the one formatProfilesMarkdown() writes. No root needed.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  formatProfilesMarkdown,
  IMPAIRMENT_KEYS,
  isSourced,
  LINK_PROFILES,
  type LinkImpairment,
  type LinkProfile,
  profileFields,
} from '../../src/lab/link-profiles.js';

const profiles = Object.values(LINK_PROFILES);

/** The word a profile's notes use for a field they explain. */
const NOTE_WORD: Record<keyof LinkImpairment, string> = {
  delayMs: 'delay',
  jitterMs: 'jitter',
  lossPercent: 'loss',
  rateKbit: 'rate',
  corruptPercent: 'corrupt',
  duplicatePercent: 'duplicate',
  reorderPercent: 'reorder',
};

const PERCENT_KEYS: (keyof LinkImpairment)[] = ['lossPercent', 'corruptPercent', 'duplicatePercent', 'reorderPercent'];

const directions = (p: LinkProfile): [string, LinkImpairment][] => [
  ['upstream', { ...p.values, ...(p.upstream ?? {}) }],
  ['downstream', { ...p.values, ...(p.downstream ?? {}) }],
];

describe('link profiles', () => {
  test('the access links a lab needs are there', () => {
    for (const name of ['lte', '3g', '5g', 'dsl', 'cable', 'fiber', 'satellite-geo', 'satellite-leo', 'wifi-lossy']) {
      assert.ok(LINK_PROFILES[name], `profile ${name}`);
    }
  });

  test('names are lowercase-dashed and each is its own key', () => {
    for (const [key, p] of Object.entries(LINK_PROFILES)) {
      assert.equal(p.name, key);
      assert.match(p.name, /^[a-z0-9]+(-[a-z0-9]+)*$/, p.name);
    }
  });

  test('each has a one-line description and sources with a citation', () => {
    for (const p of profiles) {
      assert.ok(p.description.trim().length > 0 && !p.description.includes('\n'), `${p.name}: description`);
      assert.ok(p.sources.length > 0, `${p.name}: no source`);
      for (const s of p.sources) {
        assert.ok(s.citation.trim().length > 0, `${p.name}: a source without a citation`);
        if (s.url !== undefined) assert.match(s.url, /^https?:\/\/\S+$/, `${p.name}: ${s.url}`);
        if (s.fields !== 'all') {
          assert.ok(s.fields.length > 0, `${p.name}: a source that gives no field (${s.citation})`);
          for (const f of s.fields) {
            assert.ok(IMPAIRMENT_KEYS.includes(f), `${p.name}: unknown field ${f}`);
            assert.ok(profileFields(p).includes(f), `${p.name}: a source gives ${f}, which the profile does not set (${s.citation})`);
          }
        }
      }
    }
  });

  test('values are in range in each direction', () => {
    for (const p of profiles) {
      assert.ok(profileFields(p).length > 0, `${p.name}: sets nothing`);
      for (const [dir, i] of directions(p)) {
        const at = `${p.name} ${dir}`;
        for (const [k, v] of Object.entries(i) as [keyof LinkImpairment, number][]) {
          assert.ok(IMPAIRMENT_KEYS.includes(k), `${at}: unknown field ${k}`);
          assert.ok(Number.isFinite(v) && v >= 0, `${at}: ${k} ${v}`);
        }
        if (i.jitterMs !== undefined) assert.ok(i.delayMs !== undefined && i.jitterMs <= i.delayMs, `${at}: jitter ${i.jitterMs} over delay ${i.delayMs}`);
        if (i.reorderPercent !== undefined) assert.ok(i.delayMs !== undefined, `${at}: reorder needs a delay`);
        for (const k of PERCENT_KEYS) if (i[k] !== undefined) assert.ok(i[k]! > 0 && i[k]! <= 100, `${at}: ${k} ${i[k]}`);
        if (i.rateKbit !== undefined) assert.ok(i.rateKbit > 0 && Number.isInteger(i.rateKbit), `${at}: rate ${i.rateKbit}`);
        if (i.delayMs !== undefined) assert.ok(i.delayMs > 0 && i.delayMs <= 60_000, `${at}: delay ${i.delayMs}`);
      }
    }
  });

  test('every value is a source’s, or the notes say why it was chosen', () => {
    for (const p of profiles) {
      for (const f of profileFields(p)) {
        if (isSourced(p, f)) continue;
        assert.ok(p.notes?.toLowerCase().includes(NOTE_WORD[f]), `${p.name}: ${f} has no source and the notes do not explain it`);
      }
    }
  });

  test('where the directions differ in rate, upstream (towards the internet) is the slower', () => {
    for (const p of profiles) {
      const up = { ...p.values, ...p.upstream }.rateKbit ?? Infinity;
      const down = { ...p.values, ...p.downstream }.rateKbit ?? Infinity;
      if (up !== down) assert.ok(up < down, `${p.name}: up ${up}, down ${down}`);
    }
  });
});

describe('the generated Markdown', () => {
  const fake = (over: Partial<LinkProfile>): LinkProfile => ({
    name: 'x',
    description: 'a link',
    values: {},
    sources: [{ fields: ['delayMs'], citation: 'Someone, Something, 2024', url: 'https://example.org/a' }],
    ...over,
  });

  test('same both ways, down and up when they differ, † for a chosen value, shared sources once', () => {
    const shared = { fields: ['delayMs'] as (keyof LinkImpairment)[], citation: 'Shared, 2020' };
    const md = formatProfilesMarkdown([
      fake({
        name: 'a',
        values: { delayMs: 13, lossPercent: 0.5 },
        downstream: { rateKbit: 24_000 },
        upstream: { rateKbit: 1_400 },
        notes: 'Loss chosen.',
        sources: [shared],
      }),
      fake({
        name: 'b',
        values: { delayMs: 300, rateKbit: 200_000 },
        sources: [shared, { fields: ['rateKbit'], citation: 'Other, 2021', url: 'https://example.org/b' }],
      }),
    ]);
    const lines = md.split('\n');
    assert.equal(lines[0], '| Profile | Link | Delay | Jitter | Loss | Rate | Sources |');
    assert.equal(lines[2], '| `a` | a link | 13ms | – | 0.5% † | 24mbit down, 1.4mbit up † | 1 |');
    assert.equal(lines[3], '| `b` | a link | 300ms | – | – | 200mbit | 1, 2 |');
    assert.ok(lines.includes('1. Shared, 2020.'));
    assert.ok(lines.includes('2. Other, 2021. <https://example.org/b>'));
    assert.ok(lines.includes('- `a`: Loss chosen.'));
  });

  test('an Other column only when a profile corrupts, duplicates or reorders', () => {
    assert.ok(!formatProfilesMarkdown([fake({ values: { delayMs: 5 } })]).includes('Other'));
    const md = formatProfilesMarkdown([fake({ values: { delayMs: 5, reorderPercent: 25 }, notes: 'Reorder chosen.' })]);
    assert.ok(md.startsWith('| Profile | Link | Delay | Jitter | Loss | Rate | Other | Sources |'));
    assert.ok(md.includes('| reorder 25% † |'));
  });

  test("README's Link profiles section holds the generated table, sources and notes", () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const start = readme.indexOf('\n## Link profiles\n');
    assert.ok(start >= 0, 'README.md has no "## Link profiles" section');
    const end = readme.indexOf('\n## ', start + 1);
    const section = readme.slice(start, end < 0 ? undefined : end);
    assert.ok(
      section.includes(formatProfilesMarkdown()),
      "README.md's Link profiles section is stale: replace its table, sources and notes with formatProfilesMarkdown()'s output",
    );
  });
});
