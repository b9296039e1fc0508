// The namespace configurator's shell plumbing, run for real with stand-ins for ip, nsenter
// and nft on PATH (no root needed): arguments arrive intact, every job runs once in its
// lane, failures come back with the job's own output, and sysctls are written as numbers.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { IN_NAMESPACE_SCRIPT, chunkJobs, configureNamespaces, jobDisplay, jobStep, sysctlWords, type NamespaceJob } from '../../src/apply/configure.js';

const dir = mkdtempSync(join(tmpdir(), 'labctl-configure-'));
const bin = join(dir, 'bin');
const log = join(dir, 'log');
mkdirSync(bin);
after(() => rmSync(dir, { recursive: true, force: true }));

// ip records where it ran and what it was fed; nsenter runs what follows `--`, telling the
// stand-ins which namespace it "entered"; nft records its ruleset and fails on "BAD".
function stub(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}
stub('ip', `if [ "$1" = -n ]; then ns=$2; else ns=$LABCTL_TEST_NS; fi\nprintf 'ip %s %s\\n' "$ns" "$(cat | tr '\\n' ';')" >>"${log}"`);
stub('nsenter', `ns=\${1#--net=/run/netns/}; shift; [ "$1" = -- ] && shift\nLABCTL_TEST_NS=$ns exec "$@"`);
stub('nft', `[ "$1" = -- ] && shift\ncase "$1" in *BAD*) echo "nft: syntax error in $LABCTL_TEST_NS" >&2; exit 1;; esac\nprintf 'nft %s %s\\n' "$LABCTL_TEST_NS" "$(printf '%s' "$1" | tr '\\n' ';')" >>"${log}"`);
const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` };

function logLines(): string[] {
  try {
    return readFileSync(log, 'utf8').trim().split('\n').sort();
  } catch {
    return [];
  }
}

const node = (n: number): NamespaceJob => ({ netns: `ns-n${n}`, ipBatch: `link set lo up\naddr add 10.0.${n}.1/24 dev ve-n${n}\n`, sysctls: [] });
const nat = (n: number, ruleset = `table ip labctl {\n  # site ${n}; "quotes", $dollars and 'apostrophes' stay as they are\n}`): NamespaceJob => ({
  netns: `ns-s${n}-nat`,
  ipBatch: 'link set lo up\n',
  ruleset,
  sysctls: [],
});

describe('configureNamespaces (with stand-in commands)', () => {
  test('runs every job once, in its namespace, with its batch and ruleset intact', async () => {
    rmSync(log, { force: true });
    const jobs = [node(1), nat(1), node(2), nat(2), node(3)];
    const saved = process.env.PATH;
    process.env.PATH = env.PATH;
    try {
      await configureNamespaces(jobs, join(dir, 'work1'), 2);
    } finally {
      process.env.PATH = saved;
    }
    assert.deepEqual(logLines(), [
      'ip ns-n1 link set lo up;addr add 10.0.1.1/24 dev ve-n1;',
      'ip ns-n2 link set lo up;addr add 10.0.2.1/24 dev ve-n2;',
      'ip ns-n3 link set lo up;addr add 10.0.3.1/24 dev ve-n3;',
      'ip ns-s1-nat link set lo up;',
      'ip ns-s2-nat link set lo up;',
      `nft ns-s1-nat table ip labctl {;  # site 1; "quotes", $dollars and 'apostrophes' stay as they are;}`,
      `nft ns-s2-nat table ip labctl {;  # site 2; "quotes", $dollars and 'apostrophes' stay as they are;}`,
    ]);
  });

  test('a failing job: the first in job order is reported with its own output, after all ran', async () => {
    rmSync(log, { force: true });
    const jobs = [node(1), nat(1, 'BAD ruleset one'), node(2), nat(2, 'BAD ruleset two'), node(3)];
    const saved = process.env.PATH;
    process.env.PATH = env.PATH;
    try {
      await assert.rejects(configureNamespaces(jobs, join(dir, 'work2'), 3), (e: Error) => {
        assert.match(e.message, /^addresses, routes, NAT rules in ns-s1-nat: `nsenter --net=\/run\/netns\/ns-s1-nat -- sh \(ip -batch -; nft -- <ruleset of 1 lines>\)` exited 1:/);
        assert.match(e.message, /nft: syntax error in ns-s1-nat\nlabctl: nft \(the NAT ruleset\) failed/);
        return true;
      });
    } finally {
      process.env.PATH = saved;
    }
    assert.equal(logLines().filter((l) => l.startsWith('ip ')).length, 5, 'every job still ran its ip batch');
    assert.throws(() => readFileSync(join(dir, 'work2')), /ENOENT/, 'the scratch directory is gone');
  });
});

describe('the in-namespace script', () => {
  test('writes each sysctl to its path and stops at the first that fails', () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const r = spawnSync('/bin/sh', ['-c', IN_NAMESPACE_SCRIPT, 'x', '', `${a}=30`, `${b}=120`], { env, input: 'link set lo up\n', encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(a, 'utf8'), '30\n');
    assert.equal(readFileSync(b, 'utf8'), '120\n');
    const bad = spawnSync('/bin/sh', ['-c', IN_NAMESPACE_SCRIPT, 'x', '', `${join(dir, 'missing', 'x')}=1`], { env, input: '', encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /labctl: sysctl .*missing\/x=1 failed/);
  });
});

describe('job descriptions', () => {
  test('sysctls become /proc/sys paths; anything but numbers and plain keys is refused', () => {
    const job: NamespaceJob = { netns: 'ns-x', ipBatch: '', sysctls: [['net.ipv4.ip_forward', '1'], ['net.netfilter.nf_conntrack_udp_timeout', '30']] };
    assert.equal(sysctlWords(job), '/proc/sys/net/ipv4/ip_forward=1 /proc/sys/net/netfilter/nf_conntrack_udp_timeout=30');
    assert.throws(() => sysctlWords({ ...job, sysctls: [['net.ipv4.ip_forward', '1 2']] }), /only numeric values/);
    assert.throws(() => sysctlWords({ ...job, sysctls: [['../../etc/x', '1']] }), /only numeric values of plain keys/);
  });

  test('steps and displays name the namespace and what runs there', () => {
    assert.equal(jobStep(node(1)), 'addresses, routes in ns-n1');
    assert.equal(jobStep({ ...nat(1), sysctls: [['net.ipv4.ip_forward', '1']] }), 'addresses, routes, NAT rules, sysctls in ns-s1-nat');
    assert.deepEqual(jobDisplay({ netns: 'ns-inet', ipBatch: '', sysctls: [['net.ipv4.ip_forward', '1']] }), ['nsenter', '--net=/run/netns/ns-inet', '--', 'sh (ip -batch -; sysctl net.ipv4.ip_forward=1)']);
  });

  test('chunks keep each launcher under its argument budget, in order', () => {
    const jobs = Array.from({ length: 10 }, (_, i) => nat(i, 'x'.repeat(1000)));
    const chunks = chunkJobs(jobs, 3500);
    assert.deepEqual(chunks.map((c) => c.length), [3, 3, 3, 1]);
    assert.deepEqual(chunks.flat(), jobs);
  });
});
