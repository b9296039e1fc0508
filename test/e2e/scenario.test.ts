// `labctl test` on the network alone (no machines: fast): the shipped article scenario
// passes; a scenario that fails says in its JUnit file which step and why; a step that
// times out; params reaching the lab's NAT timers, link outages, background output and
// captures; bad scenario files (exit 2, the field named, nothing started); and Ctrl-C in a
// real terminal (tmux) leaves no process, namespace or state file. The shipped scenario
// brings up the article's lab under its own names, as other test files do: run this under
// `flock /tmp/labctl-e2e.lock flock /tmp/labctl-article-names.lock`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, isRoot, labctl, netnsList, ROOT } from '../support/cli.js';

const skip = isRoot ? false : 'needs root';
const dir = mkdtempSync(join(tmpdir(), 'labctl-scenario-'));
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const PREFIX = 'scn-';
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`) || ARTICLE_NS.includes(n));
const stateFiles = () => ['article', 'scenario-net'].filter((l) => existsSync(`/run/labctl/${l}.json`));
/** Processes of ours by a word only this file's scenarios use. */
const processesWith = (word: string) => spawnSync('pgrep', ['-af', word], { encoding: 'utf8' }).stdout.trim();

/** The article's lab under its own names (so that it does not collide with a user's article lab), with `extra` for c1-nat. */
function labFile(extra = ''): string {
  const file = join(dir, 'lab.yaml');
  writeFileSync(
    file,
    readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8')
      .replace(/^name: article$/m, `name: scenario-net\nprefix: ${PREFIX}`)
      .replace('type: restricted-cone', `type: restricted-cone${extra}`),
  );
  return file;
}

function scenario(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** The JUnit file read by python3's xml.etree (a real XML parser): every test case, with its failure or error. */
function junitCases(file: string): { name: string; classname: string; kind?: string; message?: string; text?: string; skipped: boolean; out?: string }[] {
  const script = `
import json, sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find('testsuite')
out = []
for c in suite.findall('testcase'):
    f = next((e for e in c if e.tag in ('failure', 'error')), None)
    o = c.find('system-out')
    out.append({'name': c.get('name'), 'classname': c.get('classname'), 'kind': None if f is None else f.tag,
                'message': None if f is None else f.get('message'), 'text': None if f is None else f.text,
                'skipped': c.find('skipped') is not None, 'out': None if o is None else o.text})
json.dump(out, sys.stdout)
`;
  const r = spawnSync('python3', ['-c', script, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

before(() => {
  if (!isRoot) return;
  assert.deepEqual(ours(), [], "neither the article's lab nor this file's may be up before this test");
});

after(async () => {
  if (!isRoot) return;
  await labctl(['net', 'down', 'scenario-net']);
  assert.deepEqual(ours(), [], 'nothing of the labs is left');
  assert.deepEqual(stateFiles(), [], 'no state file is left');
  rmSync(dir, { recursive: true, force: true });
});

test('the shipped article scenario passes: full cone delivers, restricted cone drops, then delivers once c1 has sent', { skip }, async () => {
  const junit = join(dir, 'article.xml');
  const r = await labctl(['test', join(ROOT, 'machines', 'article.test.yaml'), '--junit', junit]);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /scenario article: PASSED: 7 passed in /);
  assert.match(r.stdout, /lab "article" taken down/);
  const cases = junitCases(junit);
  assert.equal(cases.length, 7);
  assert.ok(cases.every((c) => c.classname === 'article' && !c.kind && !c.skipped));
  assert.match(cases[3]!.out!, /nothing arrived at c1:12345 in 1 s/);
  assert.deepEqual(ours(), [], 'the scenario took down the lab it brought up');
  assert.deepEqual(stateFiles(), []);
});

test('a scenario that fails: exit 1, and the JUnit file says which step and why', { skip }, async () => {
  const lab = labFile();
  const file = scenario(
    'fails.test.yaml',
    `name: wrong-about-c1
lab: ${lab}
machines: false
steps:
  - { name: fresh, flush: all }
  - name: c0 reaches c1 unasked
    expect-udp: { from: c0, from-port: 12345, to: "100.64.2.100:54321", within: 1 }
  - { name: never run, wait: 1 }
`,
  );
  const junit = join(dir, 'fails.xml');
  const r = await labctl(['test', file, '--junit', junit]);
  assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /FAILED: 1 passed, 1 failed, 1 skipped/);
  const cases = junitCases(junit);
  assert.deepEqual(
    cases.map((c) => [c.name, c.classname, c.kind ?? (c.skipped ? 'skipped' : 'passed')]),
    [
      ['fresh', 'wrong-about-c1', 'passed'],
      ['c0 reaches c1 unasked', 'wrong-about-c1', 'failure'],
      ['never run', 'wrong-about-c1', 'skipped'],
    ],
  );
  const failed = cases[1]!;
  assert.equal(
    failed.message,
    'expected udp from c0 port 12345 to 100.64.2.100:54321 delivered to c1:12345 within 1 s; happened: nothing arrived at c1:12345 within 1 s',
  );
  assert.equal(
    failed.text,
    [
      'step: c0 reaches c1 unasked (expect-udp)',
      'expected: udp from c0 port 12345 to 100.64.2.100:54321 delivered to c1:12345 within 1 s',
      'happened: nothing arrived at c1:12345 within 1 s',
      "note: receiver at c1:12345 (c1-nat's forward of udp 54321 to c1:12345)",
    ].join('\n'),
  );
  assert.deepEqual(ours(), []);
});

test('a step that times out fails, and its command is stopped', { skip }, async () => {
  const file = scenario(
    'timeout.test.yaml',
    `lab: ${labFile()}
machines: false
steps:
  - name: too slow
    exec: { on: c1, command: [sleep, "3001"], timeout: 0.5 }
`,
  );
  const t0 = Date.now();
  const r = await labctl(['test', file, '--json']);
  assert.equal(r.exitCode, 1, r.stderr);
  const doc = JSON.parse(r.stdout) as { passed: boolean; steps: { status: string; expected: string; happened: string; durationMs: number }[] };
  assert.equal(doc.passed, false);
  assert.deepEqual(
    [doc.steps[0]!.status, doc.steps[0]!.expected, doc.steps[0]!.happened],
    ['failed', 'exit 0, within 0.5 s', 'timed out after 0.5 s (killed with SIGTERM)'],
  );
  assert.ok(doc.steps[0]!.durationMs < 2000, `stopped at its timeout (${doc.steps[0]!.durationMs} ms)`);
  assert.ok(Date.now() - t0 < 30_000);
  assert.equal(processesWith('sleep 3001'), '', 'no sleep is left');
  assert.deepEqual(ours(), []);
});

test('params reach the NAT timers; a link outage drops, its end delivers; wait until, tcp, check; background output and captures are kept', {
  skip,
}, async () => {
  const lab = labFile(`\n      udp-timeouts: { unreplied: "\${udp_timeout}", stream: "\${udp_timeout}" }`);
  const file = scenario(
    'features.test.yaml',
    `name: features
lab: ${lab}
machines: false
params: { udp_timeout: 5, out: ${dir} }
capture: { on: c1-nat, link: inet, file: "\${out}/run.pcapng" }
steps:
  - name: the NAT's timer is the param's
    exec: { on: c1-nat, command: [sysctl, -n, net.netfilter.nf_conntrack_udp_timeout], expect: { stdout: { regex: "^5$" } } }
  - name: a background command
    background: { on: c0, command: [sh, -c, "echo bg-started-3002; exec sleep 3002"], ready: { stdout: bg-started } }
  - { name: uplink down, link: { down: [c1-nat, inet] } }
  - name: nothing crosses the outage
    expect-udp: { from: c1, from-port: 12345, to: "100.64.1.100:54321", expect: dropped, within: 0.5 }
  - { name: uplink up, link: { up: [c1-nat, inet] } }
  - name: delivered again
    expect-udp: { from: c1, from-port: 12345, to: "100.64.1.100:54321" }
    capture: { on: c0-nat, file: "\${out}/step.pcapng", filter: [udp] }
  - name: c1-nat's conntrack shows the flow
    wait: { until: { on: c1-nat, command: [conntrack, -L, -p, udp], expect: { stdout: "dport=54321" } }, timeout: 5 }
  - name: tcp through the full cone's forward
    expect-tcp: { from: c1, to: "100.64.1.100:54321" }
  - name: c1-nat measures as a restricted cone
    check: { nat: c1-nat, expect: { type: restricted-cone } }
`,
  );
  const junit = join(dir, 'features.xml');
  const r = await labctl(['test', file, '--junit', junit]);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /capture .*run\.pcapng: \d+ packets? captured/);
  assert.match(r.stdout, /capture .*step\.pcapng: [1-9]\d* packets? captured/);
  const cases = junitCases(junit);
  assert.match(cases[1]!.out!, /bg-started-3002/, "the background command's output is in the report");
  assert.match(cases[1]!.out!, /stopped at the end of the run/);
  assert.match(cases[2]!.out!, /c1-nat--inet is down/);
  assert.match(cases[7]!.out!, /arrived at c0:12345/, 'tcp to the forward reached c0');
  assert.match(cases[8]!.out!, /c1-nat: mapping endpoint-independent, filtering address-dependent/);
  for (const f of ['run.pcapng', 'step.pcapng']) {
    const bytes = readFileSync(join(dir, f));
    assert.equal(bytes.readUInt32LE(0), 0x0a0d0d0a, `${f} is pcapng`);
  }
  assert.equal(processesWith('sleep 3002'), '', 'the background command was stopped');
  assert.equal(processesWith(dir), '', 'no capture is left');
  assert.deepEqual(ours(), []);
  assert.ok(!existsSync('/run/labctl/scenario-net'), "the lab's run dir (the copy with the params) is gone");
});

test('bad scenario files: exit 2, the file, field and reason, nothing started', { skip }, async () => {
  const lab = labFile();
  const cases: [string, RegExp][] = [
    [`lab: ${lab}\nsteps: [{ name: a, exec: { on: c7, command: [true] } }]\n`, /bad1\.test\.yaml: steps\[0\]\.exec\.on: lab "scenario-net" has no member "c7"/],
    [`lab: ${lab}\nsteps: [{ name: a, wait: 1, flush: all }]\n`, /bad2\.test\.yaml: steps\[0\]: has wait and flush: one kind per step/],
    [
      `lab: ${lab}\nsteps: [{ name: a, expect-udp: { from: c0, to: "1.1.1.1:53" } }]\n`,
      /bad3\.test\.yaml: steps\[0\]\.expect-udp\.to: 1\.1\.1\.1 is no address of lab/,
    ],
  ];
  for (const [i, [text, expected]] of cases.entries()) {
    const r = await labctl(['test', scenario(`bad${i + 1}.test.yaml`, text), '--junit', join(dir, 'bad.xml')]);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, expected);
  }
  assert.ok(!existsSync(join(dir, 'bad.xml')), 'nothing was written');
  assert.deepEqual(ours(), [], 'nothing was started');
});

test('Ctrl-C in a terminal stops the background commands and captures and takes the lab down: nothing is left', { skip }, async () => {
  const file = scenario(
    'interrupted.test.yaml',
    `lab: ${labFile()}
machines: false
capture: { on: c1-nat, file: ${join(dir, 'interrupted.pcapng')} }
steps:
  - { name: a long-running command, background: { on: c1, command: [sleep, "3003"] } }
  - { name: a long wait, wait: 120 }
`,
  );
  // The socket in this test's folder: tmux 3.3a leaves its socket file behind after kill-server.
  const socket = join(dir, 'tmux.sock');
  const tmux = (...args: string[]) => spawnSync('tmux', ['-S', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  const screen = () => tmux('capture-pane', '-p', '-t', 'run').stdout;
  const waitFor = async (re: RegExp, what: string) => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (re.test(screen())) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`${what}: not on the screen:\n${screen()}`);
  };
  const made = tmux(
    'new-session',
    '-d',
    '-s',
    'run',
    '-x',
    '160',
    '-y',
    '40',
    '--',
    'sh',
    '-c',
    // The pane's sh must outlive the Ctrl-C (a trap, unlike an ignored signal, is not inherited by labctl).
    'trap : INT; "$@"; echo "labctl-exit=$?"; exec sleep 600',
    'sh',
    process.execPath,
    BIN,
    'test',
    file,
  );
  assert.equal(made.status, 0, made.stderr);
  try {
    await waitFor(/a long wait/, 'the wait step running');
    assert.notEqual(processesWith('sleep 3003'), '', 'the background command runs');
    tmux('send-keys', '-t', 'run', 'C-c');
    await waitFor(/labctl-exit=130/, 'labctl ending with 130 after Ctrl-C');
    assert.match(screen(), /SIGINT: stopping the scenario's commands and taking down what it brought up/);
  } finally {
    tmux('kill-server');
  }
  assert.equal(processesWith('sleep 3003'), '', 'no background command is left');
  assert.equal(processesWith(dir), '', 'no capture is left');
  assert.equal(readFileSync(join(dir, 'interrupted.pcapng')).readUInt32LE(0), 0x0a0d0d0a, 'the capture completed its file');
  assert.deepEqual(ours(), [], 'no namespace is left');
  assert.deepEqual(stateFiles(), [], 'no state file is left');
});
