// The shipped WireGuard keepalive scenario (machines/wireguard.test.yaml on the lab
// machines/wireguard.yaml, image images/wireguard.yaml) end to end, as root: the image is
// built from the shared test cache, the scenario runs through `labctl test --junit` with
// short timers (the CGN's UDP timeout 6 s in a copy of the lab; params keepalive 2 s, idle
// 12 s and 8 s) and passes; the same
// scenario with the keepalive off must fail at the server's first attempt after the idle,
// so the pass is a measurement, not a formality.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { isRoot, labctl, netnsList, ROOT } from '../support/cli.js';
import { getTestImage, TEST_CACHE_DIR, TEST_DATA_DIR } from '../support/test-image.js';

const skip = isRoot ? false : 'needs root';
const PREFIX = 'wg-'; // the shipped lab's prefix
const IMAGE = 'wireguard';
const LAB = join(ROOT, 'machines', 'wireguard.yaml');
const dir = mkdtempSync(join(tmpdir(), 'labctl-wireguard-'));
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));
const nspawns = () => spawnSync('pgrep', ['-af', `systemd-nspawn.*--machine=${PREFIX}`], { encoding: 'utf8' }).stdout.trim();

/**
 * The shipped lab with the CGN's UDP timers shortened to 6 s (a copy: the shipped one is a
 * built-in lab on its own, so its timer is a number, not a scenario param).
 */
function shortLab(): string {
  const doc = parseDocument(readFileSync(LAB, 'utf8'));
  const timeouts = ['sites', 0, 'nat', 'udp-timeouts'];
  const shipped = (doc.toJS() as { sites: { nat: Record<string, unknown> }[] }).sites[0]!.nat['udp-timeouts'];
  assert.deepEqual(shipped, { unreplied: 30, stream: 30 }, 'the shipped CGN times UDP out after 30 s');
  doc.setIn([...timeouts, 'unreplied'], CGN_UDP_TIMEOUT);
  doc.setIn([...timeouts, 'stream'], CGN_UDP_TIMEOUT);
  const file = join(dir, 'wireguard.yaml');
  writeFileSync(file, String(doc));
  return file;
}

/** The shipped scenario with other params, on the short lab. */
function scenarioWith(name: string, params: Record<string, number>): string {
  const doc = parseDocument(readFileSync(join(ROOT, 'machines', 'wireguard.test.yaml'), 'utf8'));
  doc.set('lab', lab);
  for (const [key, value] of Object.entries(params)) {
    assert.ok(doc.hasIn(['params', key]), `the shipped scenario has the param ${key}`);
    doc.setIn(['params', key], value);
  }
  const file = join(dir, `${name}.test.yaml`);
  writeFileSync(file, String(doc));
  return file;
}

const CGN_UDP_TIMEOUT = 6;
const SHORT = { keepalive: 2, idle_with_keepalive: 12, idle_without_keepalive: 8 };
let lab = '';

before(async () => {
  if (!isRoot) return;
  // The shared bookworm image first: it fills the cache the wireguard image extends with apt.
  await getTestImage();
  lab = shortLab();
  const built = await labctl(['image', 'build', join(ROOT, 'images', 'wireguard.yaml'), '--data-dir', TEST_DATA_DIR, '--cache-dir', TEST_CACHE_DIR], {
    timeoutMs: 600_000,
  });
  assert.equal(built.exitCode, 0, `image build: ${built.stdout}\n${built.stderr}`);
});

after(async () => {
  if (!isRoot) return;
  if (lab) await labctl(['down', lab]);
  const rm = await labctl(['image', 'rm', IMAGE, '--data-dir', TEST_DATA_DIR]);
  rmSync(dir, { recursive: true, force: true });
  assert.equal(rm.exitCode, 0, `image rm: ${rm.stdout}\n${rm.stderr}`);
  assert.deepEqual(ours(), [], 'nothing of the lab is left');
  assert.equal(nspawns(), '', 'no machine is left');
});

/** The JUnit test cases as name, outcome and the text inside. */
function testCases(xml: string): { name: string; outcome: 'passed' | 'failure' | 'error' | 'skipped'; body: string }[] {
  return [...xml.matchAll(/<testcase name="([^"]*)"[^>]*?(?:\/>|>([\s\S]*?)<\/testcase>)/g)].map((m) => {
    const body = m[2] ?? '';
    const outcome = body.includes('<failure') ? 'failure' : body.includes('<error') ? 'error' : body.includes('<skipped') ? 'skipped' : 'passed';
    return {
      name: m[1]!
        .replace(/&apos;/g, "'")
        .replace(/&quot;/g, '"')
        .replace(/&amp;/g, '&'),
      outcome,
      body,
    };
  });
}

test('the keepalive keeps the tunnel through the CGN; without it the mapping expires; the device brings it back', { skip }, async () => {
  const junit = join(dir, 'pass.xml');
  const run = await labctl(['test', scenarioWith('pass', SHORT), '--data-dir', TEST_DATA_DIR, '--junit', junit], { timeoutMs: 180_000 });
  assert.equal(run.exitCode, 0, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /scenario wireguard: PASSED: 22 passed/);
  const xml = readFileSync(junit, 'utf8');
  assert.match(xml, /<testsuite name="wireguard" tests="22" failures="0" errors="0" skipped="0"/);
  assert.match(xml, /<property name="param.keepalive" value="2"\/>/);
  const cases = testCases(xml);
  assert.equal(cases.length, 22);
  assert.deepEqual(
    cases.filter((c) => c.outcome !== 'passed').map((c) => c.name),
    [],
  );
  // Which WireGuard ran is in the first step's output: the kernel's, or wireguard-go.
  assert.match(cases[0]!.body, /WireGuard: (the kernel module|wireguard-go v\S+, userspace)/);
  for (const name of [
    'the server reaches the device after 12 s of idle',
    "cgn-nat has forgotten the device's flow",
    'the server does not reach the device after 8 s of idle',
    'the server reaches the device again',
  ]) {
    assert.ok(
      cases.some((c) => c.name === name),
      `a step "${name}"`,
    );
  }
  assert.deepEqual(ours(), [], 'the scenario took its lab down');
});

test('with the keepalive off, the server does not reach the device after the idle: the scenario fails there', { skip }, async () => {
  // Part 1 with PersistentKeepalive = 0. Its idle counts from the handshake's ping, and the
  // device answers the ping's reply with WireGuard's passive keepalive 10 s later, which
  // refreshes the CGN's mapping: the idle must outlast 10 s + the CGN's 6 s to show the loss.
  const junit = join(dir, 'fail.xml');
  const run = await labctl(
    ['test', scenarioWith('keepalive-off', { ...SHORT, keepalive: 0, idle_with_keepalive: 20 }), '--data-dir', TEST_DATA_DIR, '--junit', junit],
    {
      timeoutMs: 180_000,
    },
  );
  assert.equal(run.exitCode, 1, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /scenario wireguard: FAILED/);
  const cases = testCases(readFileSync(junit, 'utf8'));
  const failed = cases.filter((c) => c.outcome === 'failure' || c.outcome === 'error');
  assert.deepEqual(
    failed.map((c) => c.name),
    ["cgn-nat still holds the device's flow"],
    'the first check after the idle fails: the CGN forgot the flow',
  );
  assert.match(failed[0]!.body, /<failure message="[^"]*dport=51820/);
  // Everything up to there passed (the tunnel worked), everything after is skipped.
  const at = cases.indexOf(failed[0]!);
  assert.ok(cases.slice(0, at).every((c) => c.outcome === 'passed'));
  assert.ok(cases.slice(at + 1).every((c) => c.outcome === 'skipped'));
  assert.ok(cases.some((c) => c.name === "the device's peer is the server, PersistentKeepalive = 0" && c.outcome === 'passed'));
  assert.deepEqual(ours(), [], 'the scenario took its lab down');
});
