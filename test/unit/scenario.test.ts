// Scenario files (labctl test): the schema and the checks against the lab, params put into
// the steps and the lab file, the JUnit writer (escaping, well-formed for a real XML parser),
// and how a step's facts become a verdict.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../../scripts/gen-schema.js';
import { UsageError } from '../../src/util/errors.js';
import { defaultName, loadScenario, parseScenario } from '../../src/scenario/load.js';
import { substituteParams, substituteString } from '../../src/scenario/params.js';
import { escapeAttribute, escapeText, junitXml } from '../../src/scenario/junit.js';
import { formatSummary, runExitCode, type ScenarioRun } from '../../src/scenario/report.js';
import type { DeliverySpec, OutputExpectation } from '../../src/scenario/model.js';
import { judgeCheck, judgeDelivery, judgeOutput, type StepResult } from '../../src/scenario/verdict.js';
import { linkCommand } from '../../src/scenario/steps.js';
import { describeEnding, liveProcesses, Proc, runCommand, stopAll } from '../../src/scenario/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'labctl-scenario-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A scenario file in the temporary folder (so that `lab:` paths are relative to it). */
function scenarioFile(text: string, name = 'x.test.yaml'): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** The problems of a bad scenario, as `FIELD: REASON` lines; fails when it loads. */
function problems(text: string): string[] {
  const file = scenarioFile(text);
  try {
    parseScenario(text, file);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    assert.equal(e.exitCode, 2);
    assert.equal(e.file, file);
    for (const line of e.message.split('\n')) assert.ok(line.startsWith(`${file}: `), `every line names the file: ${line}`);
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail('the scenario loaded');
}

const HEAD = 'lab: article\nmachines: false\n';

describe('scenario files', () => {
  test('the shipped example loads: defaults filled in, receivers found through the NAT forwards', () => {
    const s = loadScenario(join(ROOT, 'machines', 'article.test.yaml'));
    assert.equal(s.name, 'article');
    assert.equal(s.machines, false);
    assert.equal(s.lab.name, 'article');
    const first = s.steps.find((x) => x.kind === 'expect-udp')!;
    assert.ok(first.kind === 'expect-udp');
    assert.deepEqual(first.delivery.at, { member: 'c0', port: 12345 });
    assert.equal(first.delivery.fromPort, 12345, 'the param came in as a number');
    assert.equal(first.delivery.withinMs, 2000);
  });

  test('every kind of step, with its defaults', () => {
    const s = parseScenario(
      `${HEAD}capture: { on: c1-nat, link: inet, file: run.pcapng }
steps:
  - { name: e, exec: { on: c0, command: [true] } }
  - { name: b, background: { on: c0, command: [sleep, "9"], ready: { stdout: x } } }
  - { name: w1, wait: 0.5 }
  - { name: w2, wait: { until: { on: c1, command: [true], expect: { exit: [0, 1] } }, timeout: 3 } }
  - { name: t, expect-tcp: { from: c0, to: "100.64.2.100:54321", expect: dropped, at: "c1:80" } }
  - { name: f, flush: [c0-nat] }
  - { name: c, check: { nat: c1-nat, expect: { type: restricted-cone } } }
  - { name: l, link: { set: [c1-nat, inet], delay: 40ms }, capture: { on: c0, file: step.pcapng, filter: [udp] } }
  - { name: r, link: { reset: all } }
`,
      join(dir, 'kinds.test.yaml'),
    );
    assert.deepEqual(
      s.steps.map((x) => x.kind),
      ['exec', 'background', 'wait', 'wait', 'expect-tcp', 'flush', 'check', 'link', 'link'],
    );
    const [e, b, w1, w2, t, , c, l] = s.steps;
    assert.ok(e?.kind === 'exec' && e.exec.timeoutMs === 30_000 && e.exec.expect.exit[0] === 0);
    assert.ok(b?.kind === 'background' && b.background.timeoutMs === 10_000);
    assert.ok(w1?.kind === 'wait' && 'seconds' in w1.wait && w1.wait.seconds === 0.5);
    assert.ok(w2?.kind === 'wait' && 'until' in w2.wait && w2.wait.timeoutMs === 3000 && w2.wait.intervalMs === 500);
    assert.ok(t?.kind === 'expect-tcp');
    assert.deepEqual([t.delivery.protocol, t.delivery.at, t.delivery.withinMs], ['tcp', { member: 'c1', port: 80 }, 1000]);
    assert.ok(c?.kind === 'check');
    assert.deepEqual(c.check, { nat: 'c1-nat', expect: { type: 'restricted-cone', mapping: 'endpoint-independent', filtering: 'address-dependent' }, runs: 1 });
    assert.ok(l?.kind === 'link');
    assert.equal(linkCommand(l.link), 'labctl link set c1-nat inet --delay 40ms');
    assert.ok(l.link.action === 'set');
    assert.deepEqual(l.link.shaping.upstream?.delayMs, 40);
    assert.deepEqual(l.capture, { on: 'c0', file: join(process.cwd(), 'step.pcapng'), filter: ['udp'] });
    assert.deepEqual(s.captures, [{ on: 'c1-nat', link: 'inet', file: join(process.cwd(), 'run.pcapng'), filter: [] }]);
  });

  test('the default name drops .yaml and .test', () => {
    assert.equal(defaultName('/a/wireguard.test.yaml'), 'wireguard');
    assert.equal(defaultName('b.yml'), 'b');
  });

  // Each bad scenario, and the field and reason its error names.
  const BAD: [string, string, RegExp][] = [
    ['not YAML', 'lab: [article\n', /^: is not valid YAML/],
    ['a list', '- a\n', /^: must be a YAML mapping/],
    ['no lab', 'steps: [{ name: a, wait: 1 }]\n', /^lab: is required/],
    ['no steps', HEAD, /^steps: is required/],
    ['no such lab', 'lab: nosuch\nsteps: [{ name: a, wait: 1 }]\n', /^lab: "nosuch" is neither a lab file .* nor a built-in lab \(article/],
    ['a lab file that is not there', 'lab: ./gone.yaml\nsteps: [{ name: a, wait: 1 }]\n', /^lab: no such lab file: .*gone\.yaml/],
    ['an unknown key', `${HEAD}steps: [{ name: a, wait: 1, colour: red }]\n`, /^steps\[0\]\.colour: unknown key/],
    ['an unknown top-level key', `${HEAD}step: []\nsteps: [{ name: a, wait: 1 }]\n`, /^step: unknown key/],
    ['two kinds in a step', `${HEAD}steps: [{ name: a, wait: 1, flush: all }]\n`, /^steps\[0\]: has wait and flush: one kind per step/],
    ['no kind', `${HEAD}steps: [{ name: a }]\n`, /^steps\[0\]: must have one of exec, background, wait/],
    ['a step without a name', `${HEAD}steps: [{ wait: 1 }]\n`, /^steps\[0\]\.name: is required/],
    ['two steps of one name', `${HEAD}steps: [{ name: a, wait: 1 }, { name: a, wait: 2 }]\n`, /^steps\[1\]\.name: "a" is also the name of steps\[0\]/],
    [
      'an unknown member',
      `${HEAD}steps: [{ name: a, exec: { on: c9, command: [true] } }]\n`,
      /^steps\[0\]\.exec\.on: lab "article" has no member "c9" \(it has c0, c1/,
    ],
    ['a command as a string', `${HEAD}steps: [{ name: a, exec: { on: c0, command: "echo hi" } }]\n`, /^steps\[0\]\.exec\.command: must be a list/],
    ['an empty command', `${HEAD}steps: [{ name: a, exec: { on: c0, command: [] } }]\n`, /^steps\[0\]\.exec\.command: must be the command as a list of words/],
    [
      'a bad regex',
      `${HEAD}steps: [{ name: a, exec: { on: c0, command: [true], expect: { stdout: { regex: "(" } } } }]\n`,
      /^steps\[0\]\.exec\.expect\.stdout\.regex: is not a regular expression/,
    ],
    [
      'a wrong matcher',
      `${HEAD}steps: [{ name: a, exec: { on: c0, command: [true], expect: { stdout: { rx: a } } } }]\n`,
      /^steps\[0\]\.exec\.expect\.stdout\.regex: is required/,
    ],
    [
      'a negative timeout',
      `${HEAD}steps: [{ name: a, exec: { on: c0, command: [true], timeout: -1 } }]\n`,
      /^steps\[0\]\.exec\.timeout: must be more than 0 seconds/,
    ],
    ['a wait as text', `${HEAD}steps: [{ name: a, wait: soon }]\n`, /^steps\[0\]\.wait: must be a number or a mapping/],
    [
      'a wait with both',
      `${HEAD}steps: [{ name: a, wait: { seconds: 1, until: { on: c0, command: [true] } } }]\n`,
      /^steps\[0\]\.wait: must have either seconds .* or until/,
    ],
    [
      'an address outside the lab',
      `${HEAD}steps: [{ name: a, expect-udp: { from: c0, to: "8.8.8.8:53" } }]\n`,
      /^steps\[0\]\.expect-udp\.to: 8\.8\.8\.8 is no address of lab "article": expect-udp sends only to addresses inside the lab/,
    ],
    [
      'a port out of range',
      `${HEAD}steps: [{ name: a, expect-udp: { from: c0, to: "10.0.1.1:70000" } }]\n`,
      /^steps\[0\]\.expect-udp\.to: port 70000 is not 1-65535/,
    ],
    ['not an endpoint', `${HEAD}steps: [{ name: a, expect-udp: { from: c0, to: c1 } }]\n`, /^steps\[0\]\.expect-udp\.to: must be ADDRESS:PORT/],
    [
      'delivered or dropped',
      `${HEAD}steps: [{ name: a, expect-udp: { from: c0, to: "10.0.1.1:5", expect: lost } }]\n`,
      /^steps\[0\]\.expect-udp\.expect: must be delivered or dropped/,
    ],
    ['flush of a node', `${HEAD}steps: [{ name: a, flush: c0 }]\n`, /^steps\[0\]\.flush: lab "article" has no NAT "c0" \(it has c0-nat, c1-nat\)/],
    ['check of a node', `${HEAD}steps: [{ name: a, check: { nat: c1 } }]\n`, /^steps\[0\]\.check\.nat: lab "article" has no NAT "c1"/],
    [
      'check of a wrong type',
      `${HEAD}steps: [{ name: a, check: { expect: { type: cone } } }]\n`,
      /^steps\[0\]\.check\.expect\.type: must be full-cone, restricted-cone/,
    ],
    ['a link of no change', `${HEAD}steps: [{ name: a, link: { delay: 10ms } }]\n`, /^steps\[0\]\.link: must have one of set, reset, down, up/],
    [
      'a link that is not there',
      `${HEAD}steps: [{ name: a, link: { down: [c0, c1] } }]\n`,
      /^steps\[0\]\.link\.down: lab "article" has no link between c0 and c1/,
    ],
    [
      'a delay that is no time',
      `${HEAD}steps: [{ name: a, link: { set: [c1-nat, inet], delay: 40xs } }]\n`,
      /^steps\[0\]\.link\.delay: must be a time such as 40ms/,
    ],
    [
      'an unknown profile',
      `${HEAD}steps: [{ name: a, link: { set: [c1-nat, inet], profile: dialup } }]\n`,
      /^steps\[0\]\.link\.profile: unknown profile "dialup"; the profiles are: /,
    ],
    ['jitter beyond the delay', `${HEAD}steps: [{ name: a, link: { set: [c1-nat, inet], delay: 1ms, jitter: 5ms } }]\n`, /^steps\[0\]\.link\.jitter: /],
    [
      'a delay with down',
      `${HEAD}steps: [{ name: a, link: { down: [c1-nat, inet], delay: 1ms } }]\n`,
      /^steps\[0\]\.link\.delay: goes with set, not with down/,
    ],
    [
      'a capture of a link that is not there',
      `${HEAD}capture: { on: c0, link: inet, file: a.pcapng }\nsteps: [{ name: a, wait: 1 }]\n`,
      /^capture\.link: c0 has no link to inet/,
    ],
    [
      'two captures to one file',
      `${HEAD}capture: [{ on: c0, file: a.pcapng }, { on: c1, file: a.pcapng }]\nsteps: [{ name: a, wait: 1 }]\n`,
      /^capture\[1\]\.file: a\.pcapng is also written by capture\[0\]/,
    ],
    [
      'an unknown param',
      `${HEAD}steps: [{ name: a, wait: "\${pause}" }]\n`,
      /^steps\[0\]\.wait: uses \$\{pause\}, which params: does not define \(it defines none\)/,
    ],
    ['a bad param name', `${HEAD}params: { "a-b": 1 }\nsteps: [{ name: a, wait: 1 }]\n`, /^params\.a-b: \(the name\) must be a name/],
    ['a param that is a list', `${HEAD}params: { a: [1] }\nsteps: [{ name: a, wait: 1 }]\n`, /^params\.a: must be a string or a number or true or false/],
  ];
  for (const [what, text, expected] of BAD) {
    test(`bad: ${what}`, () => {
      const found = problems(text);
      assert.ok(
        found.some((p) => expected.test(p)),
        `expected ${expected} among:\n${found.join('\n')}`,
      );
    });
  }

  test('every problem of a file is reported at once', () => {
    const found = problems(`${HEAD}steps:\n  - { name: a, exec: { on: c9, command: [true] } }\n  - { name: b, flush: c0 }\n`);
    assert.equal(found.length, 2, found.join('\n'));
  });
});

describe('params', () => {
  const params = { port: 12345, host: '10.0.1.1', on: true };
  const say = (found: string[]) => (m: string) => found.push(m);

  test(`a whole \${NAME} keeps its type; inside a string it is text; $\${ is a literal`, () => {
    const found: string[] = [];
    assert.equal(substituteString(`\${port}`, params, say(found)), 12345);
    assert.equal(substituteString(`\${on}`, params, say(found)), true);
    assert.equal(substituteString(`\${host}:\${port}`, params, say(found)), '10.0.1.1:12345');
    assert.equal(substituteString(`echo $\${HOME} \${port}`, params, say(found)), `echo \${HOME} 12345`);
    assert.equal(substituteString('$HOME and $1', params, say(found)), '$HOME and $1');
    assert.deepEqual(found, []);
  });

  test(`unknown names and stray \${ are reported; values never become structure`, () => {
    const found: string[] = [];
    substituteString(`\${nope}`, params, say(found));
    substituteString(`x \${ y`, params, say(found));
    assert.match(found[0]!, /uses \$\{nope\}, which params: does not define \(it has port, host, on\)/);
    assert.match(found[1]!, /starts no parameter/);
    const issues: { path: string; message: string }[] = [];
    const evil = { 'a: b\nc': '[1, {d: e}]' };
    const out = substituteParams({ steps: [{ v: `\${x}`, k: 'keep' }] }, evil as never, '', issues);
    assert.deepEqual(issues, [{ path: 'steps[0].v', message: `uses \${x}, which params: does not define (it has a: b\nc)` }]);
    const typed = substituteParams({ cmd: ['sh', '-c', `echo \${v}`] }, { v: '$(reboot); `x`' }, '', []);
    assert.deepEqual(typed, { cmd: ['sh', '-c', 'echo $(reboot); `x`'] }, 'a value is one word of argv, as given');
    assert.ok(out);
  });

  test("params reach the lab file: a NAT's timers, and the lab's text for `up`", () => {
    const lab = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(
      'type: restricted-cone',
      `type: restricted-cone\n      udp-timeouts: { unreplied: "\${udp_timeout}", stream: "\${udp_timeout}" }`,
    );
    writeFileSync(join(dir, 'timers.yaml'), lab);
    const s = parseScenario('lab: ./timers.yaml\nparams: { udp_timeout: 7 }\nsteps: [{ name: a, wait: 1 }]\n', join(dir, 'timers.test.yaml'));
    assert.deepEqual(s.lab.nats.find((n) => n.name === 'c1-nat')!.behaviour.udpTimeouts, { unreplied: 7, stream: 7 });
    assert.match(s.labText!, /unreplied: 7/);
    assert.equal(s.lab.source, join(dir, 'timers.yaml'));
    // Without the param, the lab file's own error names the lab file and the field.
    try {
      parseScenario('lab: ./timers.yaml\nsteps: [{ name: a, wait: 1 }]\n', join(dir, 'timers2.test.yaml'));
      assert.fail('loaded');
    } catch (e) {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /timers\.yaml: sites\[1\]\.nat\.udp-timeouts\.unreplied: uses \$\{udp_timeout\}, which params: does not define/);
    }
  });

  test('words of a command stay text: YAML numbers as written, a number param as its text', () => {
    const s = parseScenario(
      `${HEAD}params: { t: 5 }\nsteps: [{ name: a, exec: { on: c0, command: [true, 010, 0x1F, 1.50, "\${t}"], timeout: "\${t}", expect: { stdout: 7 } } }]\n`,
      join(dir, 'words.test.yaml'),
    );
    const step = s.steps[0]!;
    assert.ok(step.kind === 'exec');
    assert.deepEqual(step.exec.command, ['true', '010', '0x1F', '1.50', '5']);
    assert.equal(step.exec.timeoutMs, 5000, 'a number field takes the param as a number');
    assert.deepEqual(step.exec.expect.stdout, { kind: 'substring', text: '7' });
  });

  test(`a lab without \${ is loaded as it is (no copy for up)`, () => {
    const s = parseScenario(`${HEAD}params: { x: 1 }\nsteps: [{ name: a, wait: "\${x}" }]\n`, join(dir, 'plain.test.yaml'));
    assert.equal(s.labText, undefined);
    assert.ok(s.steps[0]!.kind === 'wait' && 'seconds' in s.steps[0]!.wait && s.steps[0]!.wait.seconds === 1);
  });
});

// --- the JUnit writer ---

const PYTHON = '/usr/bin/python3';

/** Parses XML with python3's xml.etree (a real parser), returning what the checks need. */
function parseXml(xml: string): {
  cases: { name: string; classname: string; failure?: { tag: string; message: string; text: string }; skipped?: boolean; out?: string }[];
  suite: Record<string, string>;
} {
  const script = `
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
suite = root.find('testsuite')
cases = []
for c in suite.findall('testcase'):
    f = c.find('failure') if c.find('failure') is not None else c.find('error')
    out = c.find('system-out')
    cases.append({'name': c.get('name'), 'classname': c.get('classname'), 'skipped': c.find('skipped') is not None,
                  'failure': None if f is None else {'tag': f.tag, 'message': f.get('message'), 'text': f.text},
                  'out': None if out is None else out.text})
json.dump({'suite': dict(suite.attrib), 'cases': cases}, sys.stdout)
`;
  const r = spawnSync(PYTHON, ['-c', script], { input: xml, encoding: 'utf8' });
  assert.equal(r.status, 0, `python3 could not parse the XML:\n${r.stderr}\n${xml}`);
  return JSON.parse(r.stdout);
}

function runOf(steps: StepResult[], extra: Partial<ScenarioRun> = {}): ScenarioRun {
  const base = { steps, cleanupErrors: [] };
  const exitCode = runExitCode(base);
  return {
    scenario: 'weird <&> "name"',
    file: '/x.test.yaml',
    lab: 'article',
    passed: exitCode === 0,
    exitCode,
    startedAt: '2026-01-02T03:04:05.678Z',
    durationMs: 1234.5,
    params: { p: 'a"b' },
    captures: [],
    mode: 'network',
    broughtUp: true,
    labAtEnd: 'taken down',
    ...base,
    ...extra,
  };
}

describe('JUnit XML', () => {
  const nasty = 'a & b < c > d "e" \'f\'\ttab\r\nnew ]]> \u001b[31mred\u001b[0m \u0000 \uD800 end 😀';

  test('escaping: text and attributes', () => {
    assert.equal(escapeText('a & <b> ]]>'), 'a &amp; &lt;b&gt; ]]&gt;');
    assert.equal(escapeAttribute('"x"\n\'y\'\t'), '&quot;x&quot;&#10;&apos;y&apos;&#9;');
    assert.equal(escapeText('\u001b[0m\u0000'), '\\x1B[0m\\x00', 'control characters XML cannot hold are shown, not dropped');
    assert.equal(escapeText('\uD800x\uDC00 😀'), '\uFFFDx\uFFFD 😀', 'lone surrogates become U+FFFD, pairs stay');
  });

  test('one test case per step: failure with what was expected and what happened; skipped; error; a real parser reads it', () => {
    const steps: StepResult[] = [
      { name: `passes ${nasty}`, kind: 'exec', status: 'passed', durationMs: 12.3, notes: ['ran in namespace ns-c0: exited 0'], stdout: nasty },
      {
        name: 'fails',
        kind: 'expect-udp',
        status: 'failed',
        durationMs: 1000,
        expected: `delivered ${nasty}`,
        happened: 'nothing arrived at c1:12345 within 2 s',
        notes: ['receiver at c1:12345'],
      },
      { name: 'cannot run', kind: 'exec', status: 'failed', error: true, durationMs: 1, expected: 'exit 0', happened: 'could not run: nosuch', notes: [] },
      { name: 'after', kind: 'wait', status: 'skipped', durationMs: 0, skipped: 'after the failed step "fails"', notes: [] },
    ];
    const xml = junitXml(runOf(steps));
    const doc = parseXml(xml);
    assert.deepEqual([doc.suite.name, doc.suite.tests, doc.suite.failures, doc.suite.errors, doc.suite.skipped], ['weird <&> "name"', '4', '1', '1', '1']);
    assert.equal(doc.cases.length, 4);
    for (const c of doc.cases) assert.equal(c.classname, 'weird <&> "name"');
    const [ok, failed, error, skipped] = doc.cases;
    assert.equal(ok!.name, 'passes a & b < c > d "e" \'f\'\ttab\r\nnew ]]> \\x1B[31mred\\x1B[0m \\x00 \uFFFD end 😀');
    assert.match(ok!.out!, /ran in namespace ns-c0/);
    assert.equal(failed!.failure!.tag, 'failure');
    assert.match(failed!.failure!.message, /^expected delivered a & b < c > d "e" 'f'/);
    assert.match(failed!.failure!.message, /; happened: nothing arrived at c1:12345 within 2 s$/);
    assert.match(
      failed!.failure!.text,
      /^step: fails \(expect-udp\)\nexpected: delivered a & b.*\nhappened: nothing arrived at c1:12345 within 2 s\nnote: receiver at c1:12345$/s,
    );
    assert.equal(error!.failure!.tag, 'error');
    assert.equal(skipped!.skipped, true);
    assert.match(xml, /time="0\.012"/);
  });

  test('the run as a whole: exit codes and the summary', () => {
    const pass: StepResult = { name: 'a', kind: 'wait', status: 'passed', durationMs: 1, notes: [] };
    const fail: StepResult = { name: 'b', kind: 'exec', status: 'failed', durationMs: 1, expected: 'exit 0', happened: 'exited 1', notes: [] };
    assert.equal(runExitCode({ steps: [pass], cleanupErrors: [] }), 0);
    assert.equal(runExitCode({ steps: [pass, fail], cleanupErrors: [] }), 1);
    assert.equal(runExitCode({ steps: [pass], cleanupErrors: ['x'] }), 1, 'a lab that could not be taken down fails the run');
    assert.equal(runExitCode({ steps: [pass], cleanupErrors: [], interrupted: 'SIGINT' }), 130);
    assert.equal(runExitCode({ steps: [], cleanupErrors: [], setupError: 'no image' }, 2), 2);
    const text = formatSummary(runOf([pass, fail]), ['JUnit: /tmp/r.xml']);
    assert.match(text, /FAILED: 1 passed, 1 failed in 1\.23 s/);
    assert.match(text, /✖ b \(exec\)\n\s+expected: exit 0\n\s+happened: exited 1/);
    assert.match(text, /JUnit: \/tmp\/r\.xml/);
  });
});

// --- verdicts ---

describe('step verdicts', () => {
  const e: OutputExpectation = { exit: [0], stdout: { kind: 'substring', text: 'abc' } };

  test('exec: exit status, output, timeout, a command that cannot run', () => {
    assert.deepEqual(judgeOutput(e, { exitCode: 0 }, 'xabcx', '', 1000), { ok: true });
    const wrongExit = judgeOutput(e, { exitCode: 2 }, 'abc', 'boom\n', 1000);
    assert.deepEqual(wrongExit, { ok: false, expected: 'exit 0, stdout containing "abc"', happened: 'exited 2; stderr "boom"' });
    const wrongOut = judgeOutput({ exit: [0, 1], stdout: { kind: 'regex', source: '^a.c$', regex: /^a.c$/m } }, { exitCode: 1 }, 'xyz\n', '', 1000);
    assert.deepEqual(wrongOut, { ok: false, expected: 'exit 0 or 1, stdout matching /^a.c$/', happened: 'stdout "xyz"' });
    const slow = judgeOutput(e, { signal: 'SIGTERM', stopped: 'timeout' }, '', '', 1500);
    assert.deepEqual(slow, { ok: false, expected: 'exit 0, stdout containing "abc", within 1.5 s', happened: 'timed out after 1.5 s (killed with SIGTERM)' });
    const missing = judgeOutput(e, { spawnError: 'nosuch: No such file or directory' }, '', '', 1000);
    assert.ok(!missing.ok && missing.error && /could not run: nosuch/.test(missing.happened));
  });

  const d: DeliverySpec = {
    protocol: 'udp',
    from: 'c0',
    fromPort: 12345,
    to: { address: '100.64.2.100', port: 54321 },
    at: { member: 'c1', port: 12345 },
    atWhy: 'forward',
    expect: 'dropped',
    withinMs: 1000,
  };

  test('expect-udp: delivered and dropped, both ways', () => {
    assert.equal(judgeDelivery(d, { received: false }).ok, true);
    const leaked = judgeDelivery(d, { received: true, afterMs: 3.2 });
    assert.deepEqual(leaked, {
      ok: false,
      expected: 'udp from c0 port 12345 to 100.64.2.100:54321 dropped (nothing at c1:12345 for 1 s)',
      happened: 'it arrived at c1:12345 after 3 ms',
    });
    const lost = judgeDelivery({ ...d, expect: 'delivered', withinMs: 2000 }, { received: false, sender: 'exited 1: Connection refused' });
    assert.deepEqual(lost, {
      ok: false,
      expected: 'udp from c0 port 12345 to 100.64.2.100:54321 delivered to c1:12345 within 2 s',
      happened: 'nothing arrived at c1:12345 within 2 s (the sender: exited 1: Connection refused)',
    });
    const taken = judgeDelivery(d, { received: false, receiverProblem: 'Address in use' });
    assert.ok(!taken.ok && taken.error);
  });

  test('check: as declared, or a given behaviour', () => {
    const doc = {
      exitCode: 1,
      targets: [
        {
          name: 'c1-nat',
          measured: { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' },
          rows: [{ test: 'filtering', declared: 'address-dependent', measured: 'address-and-port-dependent', match: false }],
        },
      ],
      unmeasured: [],
    };
    const declared = judgeCheck('declared', doc, 1, '');
    assert.deepEqual(declared, {
      ok: false,
      expected: 'every NAT as the lab declares it',
      happened: 'c1-nat: filtering declared address-dependent, measured address-and-port-dependent',
    });
    assert.equal(judgeCheck({ type: 'port-restricted-cone', mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' }, doc, 1, '').ok, true);
    const other = judgeCheck({ filtering: 'address-dependent' }, doc, 1, '');
    assert.ok(!other.ok && other.happened === 'measured c1-nat: filtering address-and-port-dependent');
    const broken = judgeCheck('declared', undefined, 2, 'labctl: lab "article" is not up\n');
    assert.ok(!broken.ok && broken.error && /exit 2\): labctl: lab "article" is not up/.test(broken.happened));
  });
});

test('the shipped example is valid YAML with a name per step', () => {
  const data = parseYaml(readFileSync(join(ROOT, 'machines', 'article.test.yaml'), 'utf8')) as { steps: { name: string }[] };
  assert.ok(data.steps.length >= 5);
});

test('schema/scenario.schema.json (python3-jsonschema): one kind per step, params where numbers go', () => {
  const script = `
import json, sys
from jsonschema.validators import validator_for
r = json.load(sys.stdin)
v = validator_for(r["schema"])(r["schema"])
json.dump([len(list(v.iter_errors(i))) for i in r["instances"]], sys.stdout)
`;
  const schema = JSON.parse(readFileSync(join(ROOT, 'schema', 'scenario.schema.json'), 'utf8'));
  const step = (s: object) => ({ lab: 'article', steps: [{ name: 'a', ...s }] });
  const instances = [
    step({ wait: 1 }),
    step({ wait: 1, flush: 'all' }),
    step({}),
    step({ exec: { on: 'c0', command: ['true'], timeout: `\${t}` } }),
    step({ exec: { on: 'c0', command: ['true'], timeout: 'soon' } }),
    step({ 'expect-udp': { from: 'c0', to: '10.0.1.1:5', expect: 'lost' } }),
  ];
  const r = spawnSync(PYTHON, ['-c', script], { input: JSON.stringify({ schema, instances }), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(
    (JSON.parse(r.stdout) as number[]).map((n) => n === 0),
    [true, false, false, true, false, false],
  );
});

describe('the processes a scenario starts', () => {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  };

  test('a timeout stops the command and what it started', async () => {
    const { ended, proc } = await runCommand(['sh', '-c', 'sleep 30 & echo $!; wait'], { timeoutMs: 300 });
    assert.equal(ended.stopped, 'timeout');
    // The shell dies of the SIGTERM; on a heavily loaded host it was once seen to exit by
    // itself (status 0) as its group was signalled. Either way the timeout stopped it.
    assert.match(describeEnding(ended, 300), /^timed out after 0\.3 s \((killed with SIGTERM|exited \d+)\)$/);
    const child = Number(proc.stdout.trim());
    assert.ok(child > 0 && !alive(child), 'the sleep it started is gone too');
  });

  test('a gentle process gets SIGINT first and ends by itself; stopAll stops the rest', async () => {
    const gentle = new Proc(['sh', '-c', 'trap "echo got-int; exit 0" INT; echo ready; while :; do sleep 0.05; done'], { gentle: true });
    const plain = new Proc(['sleep', '30']);
    assert.ok(await gentle.waitUntil(() => gentle.stdout.includes('ready'), 5000));
    await stopAll();
    assert.match(gentle.stdout, /got-int/);
    assert.equal(gentle.done?.exitCode, 0);
    assert.equal(plain.done?.signal, 'SIGTERM');
    assert.deepEqual(liveProcesses(), []);
  });

  test('a command that does not exist could not run', async () => {
    const { ended } = await runCommand(['/nonexistent/labctl-test-command'], { timeoutMs: 5000 });
    assert.match(describeEnding(ended), /^could not run: /);
  });
});
