// `labctl doctor` on this host, as root: the JSON is an array of {check, ok, severity,
// detail, fix}, root passes, netem is reported as this kernel really has it (tried here
// with tc in a throwaway namespace: missing on this test machine's kernel, with the fix),
// the exit code follows the error-severity checks, and doctor leaves the host as it found
// it (its network, its namespaces, its loaded modules).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { hostNetworkFingerprint, isRoot, labctl, netnsList } from '../support/cli.js';

const skip = isRoot ? false : 'needs root: doctor tries kernel features in throwaway network namespaces';

interface Check {
  check: string;
  ok: boolean;
  severity: string;
  detail: string;
  fix: string | null;
}

const modules = () => {
  try {
    return readFileSync('/proc/modules', 'utf8');
  } catch {
    return '';
  }
};

test('doctor --json: its shape, root, netem as the kernel has it, the exit code, and nothing changed', { skip }, async () => {
  const before = { net: hostNetworkFingerprint(), netns: netnsList(), modules: modules() };
  const r = await labctl(['doctor', '--json']);
  assert.ok(r.exitCode === 0 || r.exitCode === 1, `exit ${r.exitCode}: ${r.stderr}`);
  const checks = JSON.parse(r.stdout) as Check[];
  assert.ok(Array.isArray(checks) && checks.length > 20);
  for (const c of checks) {
    assert.deepEqual(Object.keys(c), ['check', 'ok', 'severity', 'detail', 'fix'], JSON.stringify(c));
    assert.equal(typeof c.check, 'string');
    assert.equal(typeof c.ok, 'boolean');
    assert.ok(['error', 'warning', 'info'].includes(c.severity), c.severity);
    assert.ok(c.detail.length > 0);
    assert.equal(c.ok ? c.fix === null : typeof c.fix === 'string' && c.fix.length > 0, true, `${c.check}: a fix exactly when it failed`);
  }
  const byName = new Map(checks.map((c) => [c.check, c]));
  assert.equal(byName.get('root')?.ok, true);
  for (const name of [
    'kernel: network namespaces',
    'kernel: veth',
    'kernel: nf_tables',
    'tool: ip',
    'tool: nft',
    'machine backend',
    'cgroup version',
    'free space',
  ]) {
    assert.ok(byName.has(name), `${name} is checked`);
  }
  // The witness: does this kernel take a netem qdisc? (In a namespace of its own, gone at once.)
  const netemWorks = spawnSync('unshare', ['--net', 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], { encoding: 'utf8' }).status === 0;
  const netem = byName.get('kernel: sch_netem')!;
  assert.equal(netem.severity, 'warning');
  assert.equal(netem.ok, netemWorks, netem.detail);
  if (!netemWorks) {
    assert.match(netem.detail, /^missing/);
    assert.match(netem.fix!, /a stock distribution kernel has it \(module sch_netem, package linux-modules-extra on Ubuntu\)/);
  }
  const failedErrors = checks.filter((c) => !c.ok && c.severity === 'error');
  assert.equal(r.exitCode, failedErrors.length ? 1 : 0, `failed: ${failedErrors.map((c) => c.check).join(', ')}`);

  const after = { net: hostNetworkFingerprint(), netns: netnsList(), modules: modules() };
  assert.deepEqual(after, before, 'doctor changed nothing on the host');
});

test('doctor as text: one line per check, the fix under a failed one, and the verdict', { skip }, async () => {
  const r = await labctl(['doctor']);
  assert.match(r.stdout, /^ok {4}root +running as root$/m);
  assert.match(r.stdout, /^(ok|warn) {2}kernel: sch_netem /m);
  for (const line of r.stdout.split('\n').filter((l) => /^(FAIL|warn) /.test(l))) {
    const next = r.stdout.split('\n')[r.stdout.split('\n').indexOf(line) + 1]!;
    assert.match(next, /^ +fix: /, `a fix under: ${line}`);
  }
  assert.match(r.stdout, r.exitCode === 0 ? /Everything the default lab .* needs is here/ : /cannot come up here/);
});
