// `labctl check` on the article's names: the article's own script (a lab labctl did not
// build, classified with --namespace) and labctl's default lab. These use the default
// namespace names (ns-c0, ns-c1, ns-inet...): run this file under the lock everyone uses,
//   flock /tmp/labctl-article-names.lock node --import tsx --test test/e2e/check-article.test.ts
// It leaves nothing behind: the script's namespaces are cleaned, the default lab taken down.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { check, leftovers } from '../fixtures/check/support.js';

const skip = isRoot ? false : 'needs root';
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const SCRIPT = `${ROOT}bench/baseline/article-netns.sh`;
const present = () => netnsList().filter((n) => ARTICLE_NS.includes(n));

function script(cmd: 'create' | 'clean'): void {
  execFileSync('bash', [SCRIPT, cmd], { stdio: 'pipe' });
}

interface Report {
  exitCode: number;
  targets: {
    name: string;
    match?: boolean;
    measured: { mapping: string; filtering: string; port: unknown };
    rows: { test: string; measured: string; match?: boolean }[];
    notes: string[];
  }[];
}

before(() => {
  if (!isRoot) return;
  assert.deepEqual(present(), [], "the article's namespaces must not exist before this test (is another test using them without the lock?)");
});

after(async () => {
  if (!isRoot) return;
  // labctl's lab first (net down leaves namespaces no state file records alone), then the script's.
  await labctl(['net', 'down']);
  if (present().length) {
    try {
      script('clean');
    } catch {
      /* partly gone already */
    }
  }
  assert.deepEqual(present(), [], "nothing of the article's names is left");
});

test('the article\'s script: its "restricted cone" is address-and-port-dependent filtering', { skip }, async () => {
  script('create');
  try {
    const text = await check(['--namespace', 'ns-c1', '--server-namespace', 'ns-inet', '--expect', 'restricted-cone']);
    assert.equal(text.exitCode, 1, `declared restricted cone, measured otherwise: exit 1\n${text.stdout}\n${text.stderr}`);
    assert.match(text.stdout, /ns-c1-nat: probed from ns-c1, outside address 100\.64\.2\.100 -- DIFFERS from its declaration/);
    assert.match(
      text.stdout,
      /filtering\s+address-dependent\s+address-and-port-dependent\s+NO\s+answers let in after sending to A1:P1: run 1: :\d+ same yes, other port no, other address no, both no/,
    );
    assert.match(text.stdout, /type\s+restricted-cone \(EIM\+ADF\)\s+port-restricted-cone \(EIM\+APDF\)\s+NO/);
    assert.match(text.stdout, /note: declared address-dependent \("restricted cone"\), but answers from the same server address and another port were dropped/);
    assert.match(text.stdout, /note: path found by following default routes: ns-c1 -> ns-c1-nat -> ns-inet/);

    // Without --server-namespace the path is followed to its end; measured only, exit 0.
    const json = await check(['--namespace', 'ns-c1', '--json']);
    assert.equal(json.exitCode, 0, json.stderr);
    const r = JSON.parse(json.stdout) as Report;
    const t = r.targets[0]!;
    assert.equal(t.name, 'ns-c1-nat');
    assert.equal(t.measured.mapping, 'endpoint-independent');
    assert.equal(t.measured.filtering, 'address-and-port-dependent');
    assert.deepEqual(t.measured.port, { kind: 'fixed', port: 54321 }, 'every flow leaves from 54321');

    // Its full cone is one for inside port 12345 only (the port its DNAT and FORWARD rules name).
    const fc = await check(['--namespace', 'ns-c0', '--port', '12345', '--expect', 'full-cone', '--json']);
    assert.equal(fc.exitCode, 0, `${fc.stdout}\n${fc.stderr}`);
    const c0 = (JSON.parse(fc.stdout) as Report).targets[0]!;
    assert.equal(c0.measured.filtering, 'endpoint-independent');
    assert.equal(c0.measured.mapping, 'endpoint-independent');
    assert.deepEqual(leftovers('ns-inet', ARTICLE_NS), [], "check left nothing in the script's namespaces");
  } finally {
    script('clean');
  }
  assert.deepEqual(present(), []);
});

test("labctl's default lab: c0-nat a full cone, c1-nat a real (address-dependent) restricted cone", { skip }, async () => {
  await labctlOk(['net', 'up']);
  try {
    const t0 = Date.now();
    const r = await check([]);
    const took = Date.now() - t0;
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /c0-nat: probed from c0 \(ns-c0\), outside address 100\.64\.1\.100 -- behaves as declared/);
    assert.match(r.stdout, /c1-nat: probed from c1 \(ns-c1\), outside address 100\.64\.2\.100 -- behaves as declared/);
    assert.match(
      r.stdout,
      /filtering\s+address-dependent\s+address-dependent\s+yes\s+answers let in after sending to A1:P1: run 1: :12345 same yes, other port [\d.]+:\d+ yes, other address no, both no/,
    );
    assert.match(r.stdout, /port allocation\s+fixed 54321\s+fixed 54321\s+yes/);
    assert.match(r.stdout, /all 2 NAT\(s\) behave as declared/);
    process.stderr.write(`# labctl check of the default lab took ${took} ms\n`);
    assert.deepEqual(leftovers('ns-inet', ARTICLE_NS), []);
  } finally {
    await labctl(['net', 'down']);
  }
});
