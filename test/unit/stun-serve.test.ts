// `labctl stun-server`: its options (two addresses of one family, two ports), the words it
// shares with `check --serve`, and systemd/labctl-stun-server.service checked by systemd
// itself (systemd-analyze verify, and its offline security review) with its ExecStart=
// parsed by labctl's own command line. No root, no bus.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerStunServerCommand } from '../../src/cli/probe.js';
import { listeningLine, parseServePlan, servedEndpoints } from '../../src/stun/serve.js';
import { whichExecutable } from '../../src/util/process.js';
import { ROOT } from '../support/cli.js';

const UNIT = join(ROOT, 'systemd', 'labctl-stun-server.service');

describe('stun-server options', () => {
  it('two addresses, two ports; the alternate port defaults to the one next to the first', () => {
    assert.deepEqual(parseServePlan({ address: '192.0.2.10', altAddress: '192.0.2.11' }), { addresses: ['192.0.2.10', '192.0.2.11'], ports: [3478, 3479] });
    assert.deepEqual(parseServePlan({ address: '192.0.2.10', altAddress: '192.0.2.11', port: '5000' }).ports, [5000, 5001]);
    assert.deepEqual(parseServePlan({ address: '192.0.2.10', altAddress: '192.0.2.11', port: '3479' }).ports, [3479, 3478]);
    assert.deepEqual(parseServePlan({ address: '2001:db8::1', altAddress: '2001:db8::2', port: '478', altPort: '479' }), {
      addresses: ['2001:db8::1', '2001:db8::2'],
      ports: [478, 479],
    });
  });

  it('refuses what RFC 5780 cannot work with, naming the option', () => {
    const refused = (o: Parameters<typeof parseServePlan>[0], re: RegExp) => assert.throws(() => parseServePlan(o), { name: 'UsageError', message: re });
    refused({ address: '192.0.2.10' }, /--address and --alt-address are both needed/);
    refused({ address: '192.0.2.10', altAddress: '192.0.2.10' }, /--alt-address must differ from --address \(both are 192\.0\.2\.10\)/);
    refused({ address: 'stun.example', altAddress: '192.0.2.11' }, /--address wants an IPv4 or IPv6 address of this host \(got "stun\.example"\)/);
    refused({ address: '192.0.2.10', altAddress: '300.0.0.1' }, /--alt-address wants an IPv4 or IPv6 address/);
    refused({ address: '192.0.2.10', altAddress: '2001:db8::1' }, /must be of one family/);
    refused({ address: '192.0.2.10', altAddress: '192.0.2.11', port: '0' }, /--port wants a port number from 1 to 65535 \(got "0"\)/);
    refused({ address: '192.0.2.10', altAddress: '192.0.2.11', altPort: '3478' }, /--alt-port must differ from --port \(both are 3478\)/);
    refused({ address: '192.0.2.10', altAddress: '192.0.2.11', port: '34x' }, /--port wants a port number/);
  });

  it('says where it listens in the words check --serve uses', () => {
    assert.deepEqual(servedEndpoints(['192.0.2.10', '192.0.2.11'], [3478, 3479]), ['192.0.2.10:3478', '192.0.2.10:3479', '192.0.2.11:3478', '192.0.2.11:3479']);
    assert.equal(
      listeningLine(['203.0.113.1', '203.0.113.2'], [3478, 3479], 'ns-inet'),
      "labctl's STUN server (RFC 5389, RFC 5780) is listening in ns-inet on 203.0.113.1:3478, 203.0.113.1:3479, 203.0.113.2:3478 and 203.0.113.2:3479",
    );
  });
});

/** The unit's Environment= defaults and ExecStart= argv (no quoting in it: one word per space). */
function unitExec(): { program: string; argv: string[]; env: Record<string, string> } {
  const lines = readFileSync(UNIT, 'utf8').split('\n');
  const env: Record<string, string> = {};
  for (const l of lines.filter((x) => x.startsWith('Environment=')))
    for (const kv of l.slice('Environment='.length).split(/\s+/)) {
      const [k, v] = kv.split('=');
      env[k!] = v!;
    }
  const exec = lines.filter((l) => l.startsWith('ExecStart='));
  assert.equal(exec.length, 1, 'one ExecStart=');
  const [program, ...argv] = exec[0]!.slice('ExecStart='.length).split(/\s+/);
  return { program: program!, argv, env };
}

describe('systemd/labctl-stun-server.service', () => {
  it("runs labctl stun-server with options labctl's own command line takes, filled from Environment=", () => {
    const { program, argv, env } = unitExec();
    assert.equal(program, '/usr/local/bin/labctl');
    const filled = argv.map((a) => a.replace(/^\$\{(\w+)\}$/, (_, k: string) => env[k] ?? `<unset ${k}>`));
    assert.equal(filled[0], 'stun-server');
    const cmd = registerStunServerCommand(new Command().exitOverride()).exitOverride();
    const { operands, unknown } = cmd.parseOptions(filled.slice(1));
    assert.deepEqual([operands, unknown], [[], []], 'every option is one stun-server knows');
    assert.deepEqual(parseServePlan(cmd.opts()), { addresses: ['192.0.2.10', '192.0.2.11'], ports: [3478, 3479] });
  });

  it('is hardened: a dynamic user, no capabilities (ports from 1024 up), nothing to write', () => {
    const text = readFileSync(UNIT, 'utf8');
    for (const line of ['DynamicUser=yes', 'CapabilityBoundingSet=', 'AmbientCapabilities=', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes'])
      assert.match(text, new RegExp(`^${line}$`, 'm'), line);
    assert.doesNotMatch(text, /^MemoryDenyWriteExecute=yes$/m, "Node's JIT needs writable executable memory");
  });

  /** The unit with labctl's path made one that exists here (verify checks that ExecStart='s program is executable). */
  function unitHere(dir: string): string {
    const file = join(dir, 'labctl-stun-server.service');
    writeFileSync(file, readFileSync(UNIT, 'utf8').replace('ExecStart=/usr/local/bin/labctl ', `ExecStart=${join(ROOT, 'bin', 'labctl.js')} `));
    return file;
  }

  function analyze(args: string[]): { status: number | null; out: string } {
    const exe = whichExecutable('systemd-analyze');
    assert.ok(exe, 'systemd-analyze is missing: install systemd (scripts/install.sh installs systemd-container, which brings it)');
    const r = spawnSync(exe, args, { encoding: 'utf8' });
    return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
  }

  it('systemd-analyze verify accepts it, and would not accept a key it does not know', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labctl-stun-unit-'));
    try {
      const file = unitHere(dir);
      const ok = analyze(['verify', '--man=no', file]);
      assert.deepEqual([ok.status, ok.out.split('\n').filter((l) => l.includes('labctl-stun-server'))], [0, []], ok.out);
      writeFileSync(file, readFileSync(file, 'utf8').replace('[Service]\n', '[Service]\nDynamicUsr=yes\n'));
      assert.match(analyze(['verify', '--man=no', file]).out, /Unknown key 'DynamicUsr' in section \[Service\]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("systemd's own security review rates its exposure OK", () => {
    const dir = mkdtempSync(join(tmpdir(), 'labctl-stun-unit-'));
    try {
      const r = analyze(['security', '--offline=true', '--no-pager', unitHere(dir)]);
      const level = /Overall exposure level for labctl-stun-server\.service: ([\d.]+) (\w+)/.exec(r.out);
      assert.ok(level, r.out);
      assert.ok(Number(level[1]) <= 2, `exposure ${level[1]} ${level[2]} (2.0 or less is what the unit aims at)\n${r.out}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
