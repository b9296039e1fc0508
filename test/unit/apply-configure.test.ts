// The namespace configurator's shell plumbing, run for real with stand-ins for ip, nsenter
// and nft on PATH (no root needed): arguments arrive intact, every job runs once in its
// lane, failures come back with the job's own output, and sysctls are written as numbers.
// Batches and rulesets travel as files (root's alone), so neither is bound by the kernel's
// 128 KiB limit on one argument.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import {
  IN_NAMESPACE_SCRIPT,
  chunkJobs,
  configureNamespaces,
  jobArgs,
  jobDisplay,
  jobStep,
  sysctlWords,
  type NamespaceJob,
} from '../../src/apply/configure.js';

const dir = mkdtempSync(join(tmpdir(), 'labctl-configure-'));
const bin = join(dir, 'bin');
// One record file per stand-in process: the lanes run at once, and a shell's printf of a
// 200 KB line is more than one write(), so records appended to one shared file could interleave.
const log = join(dir, 'log');
mkdirSync(bin);
after(() => rmSync(dir, { recursive: true, force: true }));

// ip records where it ran, the modes of its batch file's directory and of the file, and
// what the file holds; nsenter runs what follows `--`, telling the stand-ins which namespace
// it "entered"; nft records the same of its ruleset file and fails on "BAD".
function stub(name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}
const modes = (file: string) => `"$(stat -c %a "$(dirname "${file}")")/$(stat -c %a "${file}")"`;
stub(
  'ip',
  `if [ "$1" = -n ]; then ns=$2; shift 2; else ns=$LABCTL_TEST_NS; fi\n[ "$1" = -batch ] || { echo "ip stand-in: want -batch FILE, got $*" >&2; exit 2; }\nprintf 'ip %s %s %s\\n' "$ns" ${modes('$2')} "$(tr '\\n' ';' <"$2")" >"${log}/$$"`,
);
stub('nsenter', `ns=\${1#--net=/run/netns/}; shift; [ "$1" = -- ] && shift\nLABCTL_TEST_NS=$ns exec "$@"`);
stub(
  'nft',
  `[ "$1" = -f ] || { echo "nft stand-in: want -f FILE, got $*" >&2; exit 2; }\ncase "$(cat "$2")" in *BAD*) echo "nft: syntax error in $LABCTL_TEST_NS" >&2; exit 1;; esac\nprintf 'nft %s %s %s\\n' "$LABCTL_TEST_NS" ${modes('$2')} "$(tr '\\n' ';' <"$2")" >"${log}/$$"`,
);
const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` };

/** Runs fn with the stand-ins first on PATH (run() spawns with this process's environment) and no records yet. */
async function withStandIns<T>(fn: () => Promise<T>): Promise<T> {
  rmSync(log, { recursive: true, force: true });
  mkdirSync(log);
  const saved = process.env.PATH;
  process.env.PATH = env.PATH;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

function logLines(): string[] {
  try {
    return readdirSync(log)
      .map((f) => readFileSync(join(log, f), 'utf8').replace(/\n$/, ''))
      .sort();
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
    const jobs = [node(1), nat(1), node(2), nat(2), node(3)];
    await withStandIns(() => configureNamespaces(jobs, join(dir, 'work1'), 2));
    assert.deepEqual(logLines(), [
      'ip ns-n1 700/600 link set lo up;addr add 10.0.1.1/24 dev ve-n1;',
      'ip ns-n2 700/600 link set lo up;addr add 10.0.2.1/24 dev ve-n2;',
      'ip ns-n3 700/600 link set lo up;addr add 10.0.3.1/24 dev ve-n3;',
      'ip ns-s1-nat 700/600 link set lo up;',
      'ip ns-s2-nat 700/600 link set lo up;',
      `nft ns-s1-nat 700/600 table ip labctl {;  # site 1; "quotes", $dollars and 'apostrophes' stay as they are;}`,
      `nft ns-s2-nat 700/600 table ip labctl {;  # site 2; "quotes", $dollars and 'apostrophes' stay as they are;}`,
    ]);
  });

  test('a ruleset and a batch over 128 KiB (the limit of one argument) arrive intact', async () => {
    // Many forwards make a large ruleset; 200 KiB of it, and of addresses for the internet's batch.
    const ruleset = Array.from({ length: 3200 }, (_, i) => `\t\tudp dport ${10000 + i} dnat to 10.0.1.1:${20000 + i} comment "forward ${i}"`).join('\n');
    const ipBatch = `${Array.from({ length: 4800 }, (_, i) => `addr add 100.64.${i >> 8}.${i & 255}/32 dev ve-inet-${i}`).join('\n')}\n`;
    assert.ok(ruleset.length > 200_000 && ipBatch.length > 200_000);
    const jobs = [nat(1, ruleset), { netns: 'ns-inet', ipBatch, sysctls: [] }];
    await withStandIns(() => configureNamespaces(jobs, join(dir, 'work-large'), 2));
    assert.deepEqual(logLines(), [
      `ip ns-inet 700/600 ${ipBatch.replaceAll('\n', ';')}`,
      'ip ns-s1-nat 700/600 link set lo up;',
      `nft ns-s1-nat 700/600 ${ruleset.replaceAll('\n', ';')}`,
    ]);
    assert.throws(() => readFileSync(join(dir, 'work-large')), /ENOENT/, 'the files are gone with the scratch directory');
  });

  test('a failing job: the first in job order is reported with its own output, after all ran', async () => {
    const jobs = [node(1), nat(1, 'BAD ruleset one'), node(2), nat(2, 'BAD ruleset two'), node(3)];
    await withStandIns(() =>
      assert.rejects(configureNamespaces(jobs, join(dir, 'work2'), 3), (e: Error) => {
        assert.match(
          e.message,
          /^addresses, routes, NAT rules in ns-s1-nat: `nsenter --net=\/run\/netns\/ns-s1-nat -- sh \(ip -batch <batch of 1 lines>; nft -f <ruleset of 1 lines>\)` exited 1:/,
        );
        assert.match(e.message, /nft: syntax error in ns-s1-nat\nlabctl: nft \(the NAT ruleset\) failed/);
        return true;
      }),
    );
    assert.equal(logLines().filter((l) => l.startsWith('ip ')).length, 5, 'every job still ran its ip batch');
    assert.throws(() => readFileSync(join(dir, 'work2')), /ENOENT/, 'the scratch directory is gone');
  });
});

describe('the in-namespace script', () => {
  test('writes each sysctl to its path and stops at the first that fails', () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const batch = join(dir, 'batch');
    writeFileSync(batch, 'link set lo up\n');
    const r = spawnSync('/bin/sh', ['-c', IN_NAMESPACE_SCRIPT, 'x', batch, '', `${a}=30`, `${b}=120`], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(a, 'utf8'), '30\n');
    assert.equal(readFileSync(b, 'utf8'), '120\n');
    const bad = spawnSync('/bin/sh', ['-c', IN_NAMESPACE_SCRIPT, 'x', batch, '', `${join(dir, 'missing', 'x')}=1`], { env, encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /labctl: sysctl .*missing\/x=1 failed/);
  });
});

describe('job descriptions', () => {
  test('sysctls become /proc/sys paths; anything but numbers and plain keys is refused', () => {
    const job: NamespaceJob = {
      netns: 'ns-x',
      ipBatch: '',
      sysctls: [
        ['net.ipv4.ip_forward', '1'],
        ['net.netfilter.nf_conntrack_udp_timeout', '30'],
      ],
    };
    assert.equal(sysctlWords(job), '/proc/sys/net/ipv4/ip_forward=1 /proc/sys/net/netfilter/nf_conntrack_udp_timeout=30');
    assert.throws(() => sysctlWords({ ...job, sysctls: [['net.ipv4.ip_forward', '1 2']] }), /only numeric values/);
    assert.throws(() => sysctlWords({ ...job, sysctls: [['../../etc/x', '1']] }), /only numeric values of plain keys/);
  });

  test('steps and displays name the namespace and what runs there', () => {
    assert.equal(jobStep(node(1)), 'addresses, routes in ns-n1');
    assert.equal(jobStep({ ...nat(1), sysctls: [['net.ipv4.ip_forward', '1']] }), 'addresses, routes, NAT rules, sysctls in ns-s1-nat');
    assert.deepEqual(
      jobDisplay({ netns: 'ns-inet', ipBatch: 'link set lo up\naddr add 100.64.1.254/24 dev ve-inet-c0\n', sysctls: [['net.ipv4.ip_forward', '1']] }),
      ['nsenter', '--net=/run/netns/ns-inet', '--', 'sh (ip -batch <batch of 2 lines>; sysctl net.ipv4.ip_forward=1)'],
    );
    assert.deepEqual(jobDisplay(nat(1, 'table ip labctl\ndelete table ip labctl\n')), [
      'nsenter',
      '--net=/run/netns/ns-s1-nat',
      '--',
      'sh (ip -batch <batch of 1 lines>; nft -f <ruleset of 2 lines>)',
    ]);
  });

  test("a job's launcher arguments: its namespace, the paths of its batch and ruleset files, its sysctls", () => {
    assert.deepEqual(jobArgs(node(1), 7, '/w'), ['ns-n1', '/w/7.ip', '', '']);
    assert.deepEqual(jobArgs({ ...nat(1), sysctls: [['net.ipv4.ip_forward', '1']] }, 8, '/w'), [
      'ns-s1-nat',
      '/w/8.ip',
      '/w/8.nft',
      '/proc/sys/net/ipv4/ip_forward=1',
    ]);
  });

  test('chunks keep each launcher under its argument budget, in order; batches and rulesets count only as paths', () => {
    const jobs = Array.from({ length: 10 }, (_, i) => ({ ...nat(i, 'x'.repeat(1_000_000)), sysctls: [['net.ipv4.ip_forward', '1']] as [string, string][] }));
    const args = jobs.map((j, n) => jobArgs(j, n, '/run/labctl/.lab.configure/configure-AbCdEf'));
    assert.deepEqual(chunkJobs(args), [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], 'ten 1 MB rulesets fit one launcher');
    // Each argument costs its bytes, a NUL and a pointer.
    const cost = args[0]!.reduce((sum, a) => sum + a.length + 9, 0);
    const chunks = chunkJobs(args, Math.floor(cost * 3.5));
    assert.deepEqual(
      chunks.map((c) => c.length),
      [3, 3, 3, 1],
    );
    assert.deepEqual(chunks.flat(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(chunkJobs([args[0]!], 1), [[0]], 'a job larger than the budget still gets a launcher of its own');
  });
});
