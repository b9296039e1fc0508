// A lab file's machine software (README "Your software in the machines"): the schema of
// image, binds, files, env, services and commands on each kind of member, their resolution
// (paths against the lab file, defaults, unique names) and the host paths checked before
// `up` (sources.ts). No root.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseLab } from '../../src/lab/resolve.js';
import { softwareSourceIssues } from '../../src/lab/sources.js';
import { machineImages, plannedMachines } from '../../src/apply/lab.js';
import { UsageError } from '../../src/util/errors.js';

const SOURCE = '/labs/mine/lab.yaml';

/** A lab with one site (NAT router `home-nat`, node `dev`) and one internet node `server`, `extra` YAML lines under `dev`. */
const lab = (dev: string, more = '') =>
  `name: sw
sites:
  - name: home
    nat: { type: symmetric }
    nodes:
      - name: dev
${dev
  .split('\n')
  .map((l) => `        ${l}`)
  .join('\n')}
nodes:
  - name: server
${more}`;

function issues(text: string): string[] {
  try {
    parseLab(text, SOURCE);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail('resolved without error');
}

describe('machine software in a lab file', () => {
  it('resolves everything on a node: paths against the lab file, defaults filled in, env as text', () => {
    const l = parseLab(
      lab(`image: alt
binds:
  - { from: ./build, to: /opt/app/, readonly: true }
  - { from: /srv/data, to: /data }
files:
  - { path: /etc/app.conf, content: "port 80\\n" }
  - { path: /usr/local/bin/run, from: scripts/run.sh, mode: "0755" }
env: { GREETING: hello, PORT: 8080, DEBUG: true }
services:
  - { name: app, command: [/opt/app/server, --port, "8080"] }
  - { name: echo.v2, command: [socat, "UDP-LISTEN:9,fork", "EXEC:cat"], restart: always }
commands:
  - [sh, -c, "echo hi"]`),
      SOURCE,
    );
    const dev = l.nodes.find((n) => n.name === 'dev')!;
    assert.deepEqual(dev.software, {
      image: 'alt',
      binds: [
        { from: '/labs/mine/build', to: '/opt/app', readonly: true },
        { from: '/srv/data', to: '/data', readonly: false },
      ],
      files: [
        { path: '/etc/app.conf', content: 'port 80\n', mode: 0o644 },
        { path: '/usr/local/bin/run', from: '/labs/mine/scripts/run.sh', mode: 0o755 },
      ],
      env: { GREETING: 'hello', PORT: '8080', DEBUG: 'true' },
      services: [
        { name: 'app', command: ['/opt/app/server', '--port', '8080'], restart: 'on-failure' },
        { name: 'echo.v2', command: ['socat', 'UDP-LISTEN:9,fork', 'EXEC:cat'], restart: 'always' },
      ],
      commands: [['sh', '-c', 'echo hi']],
    });
    assert.equal(l.nodes.find((n) => n.name === 'server')!.software, undefined, 'a member without any has none');
  });

  it('takes the same keys on a NAT router, an internet node and the internet (when it is a machine)', () => {
    const l = parseLab(
      `name: sw
internet: { machine: true, services: [{ name: a, command: [sleep, infinity] }] }
sites:
  - name: home
    nat: { type: symmetric, image: router, commands: [[nft, list, ruleset]] }
    nodes: [{ name: dev }]
nodes:
  - { name: server, env: { X: "1" } }
`,
      SOURCE,
    );
    assert.equal(l.internet.software?.services[0]?.name, 'a');
    assert.equal(l.nats[0]!.software?.image, 'router');
    assert.deepEqual(l.nats[0]!.software?.commands, [['nft', 'list', 'ruleset']]);
    assert.deepEqual(l.nodes.find((n) => n.name === 'server')!.software?.env, { X: '1' });
  });

  it('gives each machine its own image, else --image, else the lab image, else bookworm', () => {
    const l = parseLab(`image: labimg\n${lab('image: alt')}`, SOURCE);
    const planned = plannedMachines(l);
    assert.deepEqual(Object.fromEntries(machineImages(l, planned)), { dev: 'alt', server: 'labimg', 'home-nat': 'labimg' });
    assert.deepEqual(Object.fromEntries(machineImages(l, planned, 'noble')), { dev: 'alt', server: 'noble', 'home-nat': 'noble' });
    const bare = parseLab(lab('machine: true'), SOURCE);
    assert.deepEqual([...new Set(machineImages(bare, plannedMachines(bare)).values())], ['bookworm']);
  });

  it('names the field of every problem, all at once', () => {
    const found = issues(
      lab(`binds:
  - { from: ./a, to: /x }
  - { from: ./b, to: /x/ }
  - { from: ./c, to: /run/labctl/y }
files:
  - { path: /etc/a, content: x, from: ./a }
  - { path: /etc/b }
  - { path: /etc/../c, content: x }
services:
  - { name: web, command: [a] }
  - { name: web, command: [b] }
  - { name: labctl-x, command: [c] }
  - { name: x.service, command: [c] }
  - { name: rel, command: [./server] }
  - { name: empty, command: [""] }`),
    );
    const at = 'sites[0].nodes[0]';
    for (const expected of [
      `${at}.binds[1].to: duplicate bind target "/x" (already at ${at}.binds[0].to)`,
      `${at}.binds[2].to: /run/labctl is labctl's own directory in the machine`,
      `${at}.files[0]: give exactly one of content (the text) or from`,
      `${at}.files[1]: give exactly one of content (the text) or from`,
      `${at}.files[2].path: must not contain ".."`,
      `${at}.services[1].name: duplicate service name "web" (already at ${at}.services[0].name)`,
      `${at}.services[2].name: names starting with "labctl-" are kept for labctl's own units`,
      `${at}.services[3].name: is the unit's name without ".service" (here: x)`,
      `${at}.services[4].command[0]: must be an absolute path in the machine`,
      `${at}.services[5].command[0]: must name the program`,
    ])
      assert.ok(
        found.some((f) => f.startsWith(expected)),
        `${expected}\nnot in:\n${found.join('\n')}`,
      );
  });

  it('refuses in the schema: a service name that is no unit name, a bad restart, an unquoted or bad mode, a relative target, an argv string, an env name', () => {
    const schema = issues(
      lab(`binds: [{ from: ./a, to: opt }]
files: [{ path: /a, content: x, mode: 644 }, { path: /b, content: x, mode: "0999" }]
env: { "1X": a, OK: [1] }
services:
  - { name: "my service", command: [a] }
  - { name: "tmpl@x", command: [a] }
  - { name: ok, command: "sleep 1", restart: sometimes }
  - { name: none, command: [] }
commands: ["echo hi"]`),
    );
    const at = 'sites[0].nodes[0]';
    for (const expected of [
      `${at}.binds[0].to: must be an absolute path inside the machine`,
      `${at}.files[1].mode: must be an octal mode like "0644"`,
      `${at}.env.1X: is not an environment variable name`,
      `${at}.env.OK: must be a string (or a number or true/false)`,
      `${at}.services[0].name: is not a valid systemd unit name`,
      `${at}.services[1].name: is not a valid systemd unit name`,
      `${at}.services[2].command: must be a list`,
      `${at}.services[2].restart: must be one of on-failure, always, no`,
      `${at}.services[3].command: must name at least the program`,
      `${at}.commands[0]: must be a list`,
    ])
      assert.ok(
        schema.some((f) => f.startsWith(expected)),
        `${expected}\nnot in:\n${schema.join('\n')}`,
      );
    // A mode YAML read as a number: after the schema, with why.
    assert.deepEqual(issues(lab('files: [{ path: /a, content: x, mode: 0644 }]')), [
      `${at}.files[0].mode: must be an octal mode in quotes, e.g. "0644" (YAML reads 0644 unquoted as the number 644)`,
    ]);
  });

  it('refuses software on a member without a machine, naming each key', () => {
    assert.deepEqual(issues(lab('machine: false\nservices: [{ name: a, command: [a] }]\nenv: { A: b }')), [
      'sites[0].nodes[0].env: needs a machine: this node has machine: false',
      'sites[0].nodes[0].services: needs a machine: this node has machine: false',
    ]);
    assert.deepEqual(issues(`internet: { commands: [[ls]] }\n${lab('machine: true')}`), [
      'internet.commands: needs a machine: the internet has no machine unless internet.machine: true',
    ]);
  });
});

describe('host paths of binds and files (checked before up)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-sources-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names each missing source by its field, and accepts what exists', () => {
    mkdirSync(join(dir, 'build'));
    writeFileSync(join(dir, 'conf'), 'x');
    const source = join(dir, 'lab.yaml');
    const text = lab('binds: [{ from: ./build, to: /a }, { from: ./missing, to: /b }]\nfiles: [{ path: /c, from: conf }, { path: /d, from: build }]').replace(
      'nat: { type: symmetric }',
      'nat: { type: symmetric, binds: [{ from: gone, to: /x }] }',
    );
    const l = parseLab(text, source);
    assert.deepEqual(
      softwareSourceIssues(l).map((i) => `${i.path}: ${i.message}`),
      [
        `sites[0].nodes[0].binds[1].from: ${join(dir, 'missing')} does not exist (a path relative to the lab file)`,
        `sites[0].nodes[0].files[1].from: ${join(dir, 'build')} is not a regular file`,
        `sites[0].nat.binds[0].from: ${join(dir, 'gone')} does not exist (a path relative to the lab file)`,
      ],
    );
  });
});
