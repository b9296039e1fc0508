// systemd/labctl-stun-server.service run as its comment tells users to install it, under a
// real systemd: inside a booted systemd host container (test/support/systemd-host.ts), with
// labctl on PATH as /usr/local/bin/labctl, the two addresses on the host's own network
// namespace (the container's: --private-network) and set in a drop-in. The service starts
// as a throwaway user (DynamicUser=), answers RFC 5780 Binding requests on both addresses
// and ports (labctl probe, from the same host, gets the other address from OTHER-ADDRESS),
// logs where it listens to the journal, and stops and goes away as the comment says.
// Nothing of it reaches the real host: the container has its own network and /etc.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../support/cli.js';
import { HOST_PROJECT, execInHost, isClean, startHost, stopHost, type LeakReport, type SystemdHost } from '../support/systemd-host.js';

const isRoot = process.getuid?.() === 0;
const UNIT = 'labctl-stun-server.service';
const UNIT_FILE = join(ROOT, 'systemd', UNIT);
// RFC 5737's documentation ranges, on the container's loopback only.
const ADDRESS = '198.51.100.10';
const ALT_ADDRESS = '198.51.100.11';

const inside = (h: SystemdHost, path: string) => `/proc/${h.leader}/root${path}`;

describe('the labctl-stun-server unit under systemd', { skip: !isRoot && 'needs root: boots a systemd host container' }, () => {
  let h: SystemdHost;
  let report: LeakReport | undefined;
  const sh = async (argv: string[], timeoutMs = 60_000) => {
    const r = await execInHost(argv, { allowFailure: true, timeoutMs });
    return { code: r.exitCode, out: `${r.stdout}${r.stderr}` };
  };
  const ok = async (argv: string[], timeoutMs?: number) => {
    const r = await sh(argv, timeoutMs);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.out}`);
    return r.out;
  };
  const show = async (property: string) => (await ok(['systemctl', 'show', '-p', property, '--value', UNIT])).trim();

  before(
    async () => {
      h = await startHost();
      // As the unit's comment says: labctl on PATH where ExecStart= looks, the unit installed, the addresses in a drop-in.
      await ok(['ln', '-sfn', `${HOST_PROJECT}/bin/labctl.js`, '/usr/local/bin/labctl']);
      for (const a of [ADDRESS, ALT_ADDRESS]) await ok(['ip', 'addr', 'add', `${a}/32`, 'dev', 'lo']);
      await ok(['ip', 'link', 'set', 'lo', 'up']);
      await ok(['install', '-m', '0644', `${HOST_PROJECT}/systemd/${UNIT}`, '/etc/systemd/system/']);
      await ok(['mkdir', '-p', `/etc/systemd/system/${UNIT}.d`]);
      writeFileSync(inside(h, `/etc/systemd/system/${UNIT}.d/addresses.conf`), `[Service]\nEnvironment=ADDRESS=${ADDRESS} ALT_ADDRESS=${ALT_ADDRESS}\n`);
    },
    { timeout: 40 * 60_000 },
  );

  after(
    async () => {
      report ??= await stopHost();
      assert.ok(isClean(report), JSON.stringify(report, null, 2));
    },
    { timeout: 120_000 },
  );

  it('the installed file is the shipped one, and its comment gives the commands used here', () => {
    const shipped = readFileSync(UNIT_FILE, 'utf8');
    assert.equal(readFileSync(inside(h, `/etc/systemd/system/${UNIT}`), 'utf8'), shipped);
    assert.match(shipped, /^#\s+printf '\[Service\]\\nEnvironment=ADDRESS=10\.0\.0\.5 ALT_ADDRESS=10\.0\.0\.6\\n'/m);
    assert.match(shipped, /^#\s+systemctl daemon-reload && systemctl enable --now labctl-stun-server\.service$/m);
    assert.match(shipped, /^#\s+Uninstall:\s+systemctl disable --now labctl-stun-server$/m);
  });

  it('enable --now: it runs as a throwaway user and answers on both addresses (labctl probe)', { timeout: 120_000 }, async () => {
    await ok(['systemctl', 'daemon-reload']);
    await ok(['systemctl', 'enable', '--now', UNIT]);
    // Type=exec: active once it runs; it answers once it has bound its sockets.
    let probe = { code: -1, out: '' };
    for (let i = 0; i < 40 && probe.code !== 0; i++) {
      probe = await sh(['labctl', 'probe', '--server', ADDRESS, '--json']);
      if (probe.code !== 0) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(probe.code, 0, `labctl probe against the service: ${probe.out}\n${await sh(['journalctl', '-u', UNIT, '--no-pager'])}`);
    const p = JSON.parse(probe.out) as {
      server: { other: { address: string; port: number }; otherFrom: string };
      mapped: { address: string };
      measured: { mapping: string; filtering: string };
      notes: string[];
    };
    assert.deepEqual(p.server.other, { address: ALT_ADDRESS, port: 3479 }, "the server's OTHER-ADDRESS: the drop-in's second address");
    assert.equal(p.server.otherFrom, 'OTHER-ADDRESS');
    // From the same host nothing translates: the server sees the probe's own source, one of the
    // loopback's addresses (the one the kernel picks per destination, which reads as
    // address-dependent mapping), and every answer, from either address and port, gets in.
    assert.ok([ADDRESS, ALT_ADDRESS].includes(p.mapped.address), p.mapped.address);
    assert.equal(p.measured.filtering, 'endpoint-independent');
    assert.match(p.notes.join('\n'), /an address of this host: nothing translates addresses on the way/);

    assert.equal(await show('ActiveState'), 'active');
    assert.equal(await show('Result'), 'success');
    const pid = await show('MainPID');
    const status = readFileSync(inside(h, `/proc/${pid}/status`), 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
    assert.ok(uid >= 61184 && uid <= 65519, `DynamicUser= gives a uid from systemd's dynamic range, got ${uid}`);
    assert.match(status, /^CapEff:\s+0+$/m, 'no capabilities');
    assert.match(status, /^NoNewPrivs:\s+1$/m);
    const journal = await ok(['journalctl', '-u', UNIT, '--no-pager', '-o', 'cat']);
    assert.match(
      journal,
      new RegExp(`${ADDRESS.replaceAll('.', '\\.')}.*${ALT_ADDRESS.replaceAll('.', '\\.')}`),
      `where it listens, in the journal: ${journal}`,
    );
  });

  it('disable --now stops it: nothing answers, no process is left', { timeout: 60_000 }, async () => {
    await ok(['systemctl', 'disable', '--now', UNIT]);
    assert.equal(await show('ActiveState'), 'inactive');
    assert.equal(await show('MainPID'), '0');
    const probe = await sh(['labctl', 'probe', '--server', ADDRESS, '--json'], 60_000);
    assert.notEqual(probe.code, 0, 'no answer once stopped');
    assert.match(probe.out, /no answer from the STUN server/);
    assert.equal((await sh(['pgrep', '-f', 'stun-server'])).code, 1, 'no stun-server process is left');
  });
});
