// `labctl graph` as a user runs it: Mermaid to stdout by default, SVG into a file through the
// real Graphviz, the message when Graphviz is missing, bad input, and no root needed.
// Creates nothing on the host (no namespace), so it may run beside the other e2e files.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { execa } from 'execa';
import { BIN, isRoot, labctl, labctlOk } from '../support/cli.js';

const PATH = process.env.PATH ?? '/usr/bin:/bin';
const dir = mkdtempSync(join(tmpdir(), 'labctl-graph-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ARTICLE_MEMBERS = ['inet', 'c0-nat', 'c1-nat', 'c0', 'c1'];

test("labctl graph: the article's lab as a Mermaid flowchart on stdout", async () => {
  const r = await labctlOk(['graph'], { env: { PATH } });
  assert.match(r.stdout, /^%% labctl graph: lab article\nflowchart TB\n/);
  for (const m of ARTICLE_MEMBERS) assert.match(r.stdout, new RegExp(`m_${m.replace(/-/g, '_')}\\S*"${m}<br/>`));
  assert.ok(r.stdout.includes('inet: ve-c0-inet 100.64.1.254/24<br/>c0-nat: ve-c0-nat-inet 100.64.1.100/24'));
  assert.equal(r.stderr, '');
});

test('labctl graph --format svg -o FILE: an SVG naming every member', async () => {
  const out = join(dir, 'article.svg');
  const r = await labctlOk(['graph', 'machines/article.yaml', '--format', 'svg', '-o', out], { env: { PATH } });
  assert.equal(r.stdout, '');
  const svg = readFileSync(out, 'utf8');
  assert.match(svg, /<svg[\s\S]*<\/svg>/);
  for (const m of ARTICLE_MEMBERS) assert.ok(svg.includes(`<title>${m.replace(/-/g, '&#45;')}</title>`), m);
});

test('labctl graph --format svg without Graphviz: exit 1 and how to install it', async () => {
  const r = await labctl(['graph', '--format', 'svg'], { env: { PATH: '/nonexistent' } });
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /^labctl: .*install graphviz \(apt-get install graphviz\)$/);
  assert.equal(r.stdout, '');
});

test('labctl graph: bad input is exit 2', async () => {
  const format = await labctl(['graph', '--format', 'png'], { env: { PATH } });
  assert.equal(format.exitCode, 2);
  assert.match(format.stderr, /png.*(mermaid, dot, svg, json|choices)/s);
  const lab = await labctl(['graph', 'no-such-lab'], { env: { PATH } });
  assert.equal(lab.exitCode, 2);
  assert.match(lab.stderr, /no such lab file/);
});

test('labctl graph needs no root', { skip: isRoot ? false : 'already not root' }, async () => {
  const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'graph', '--format', 'json'], {
    reject: false,
    env: { PATH, HOME: dir },
  });
  assert.equal(r.exitCode, 0, r.stderr);
  const g = JSON.parse(r.stdout) as { members: { name: string }[] };
  assert.deepEqual(
    g.members.map((m) => m.name),
    ARTICLE_MEMBERS,
  );
});
