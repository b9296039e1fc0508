// The system bus client of the systemd backend (src/machine/dbus.ts) against a private
// dbus-daemon: calls, error replies, timeouts, a dead bus, and that an open connection
// never keeps a process alive. No root, no systemd.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';

const hasDaemon = spawnSync('dbus-daemon', ['--version']).status === 0;
const DBUS_TS = fileURLToPath(new URL('../../src/machine/dbus.ts', import.meta.url));
const SYSTEMD_BUS_TS = fileURLToPath(new URL('../../src/machine/systemd-bus.ts', import.meta.url));

describe('SystemBus (a private dbus-daemon)', { skip: !hasDaemon && 'dbus-daemon is not installed' }, () => {
  let dir: string;
  let daemon: ChildProcess;
  let address: string;
  let bus: typeof import('../../src/machine/dbus.js');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'labctl-dbus-'));
    const socket = join(dir, 'bus');
    address = `unix:path=${socket}`;
    daemon = spawn('dbus-daemon', ['--session', '--nofork', '--nopidfile', `--address=${address}`], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(existsSync(socket), 'dbus-daemon is listening');
    process.env.DBUS_SYSTEM_BUS_ADDRESS = address;
    bus = await import('../../src/machine/dbus.js');
  });

  after(() => {
    bus?.closeSystemBus();
    daemon?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
  });

  it('calls methods and unwraps properties', async () => {
    const b = bus.systemBus();
    const [id] = await b.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId');
    assert.match(String(id), /^[0-9a-f]{32}$/);
    const features = await b.getProperty('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Features');
    assert.ok(Array.isArray(features), 'a variant unwrapped to its value');
    assert.equal(bus.systemBus(), b, 'one connection per process');
  });

  it('turns error replies into BusError with the D-Bus error name', async () => {
    const b = bus.systemBus();
    await assert.rejects(
      b.call('org.freedesktop.machine1', '/org/freedesktop/machine1', 'org.freedesktop.machine1.Manager', 'GetMachine', 's', ['x']),
      (e: unknown) => bus.isBusError(e, 'ServiceUnknown') && e instanceof bus.BusError && /GetMachine/.test(e.message),
    );
  });

  it('adds a match rule once and delivers signals to handlers', async () => {
    const b = bus.systemBus();
    const rule = "type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged'";
    await b.addMatch(rule);
    await b.addMatch(rule);
    const seen: string[] = [];
    const off = b.onSignal((msg) => {
      if (msg.member === 'NameOwnerChanged') seen.push(String(msg.body[0]));
    });
    // Another client connecting makes the daemon announce its unique name.
    const other = spawnSync('busctl', [`--address=${address}`, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId'], {
      encoding: 'utf8',
    });
    assert.equal(other.status, 0, other.stderr);
    for (let i = 0; i < 100 && !seen.length; i++) await new Promise((r) => setTimeout(r, 20));
    off();
    assert.ok(
      seen.some((n) => n.startsWith(':')),
      `NameOwnerChanged seen: ${seen.join(' ')}`,
    );
  });

  it('times a call out instead of waiting forever', async () => {
    // A peer that owns a name and swallows every call without an answer.
    const silent = dbus.sessionBus({ busAddress: address });
    try {
      silent.addMethodHandler(() => true);
      await silent.requestName('org.labctl.Silent', 4);
      const started = Date.now();
      await assert.rejects(bus.systemBus().call('org.labctl.Silent', '/', 'org.labctl.Silent', 'Nothing', '', [], 300), (e: unknown) =>
        bus.isBusError(e, 'Timeout'),
      );
      const took = Date.now() - started;
      assert.ok(took >= 250 && took < 5_000, `timed out after ${took} ms`);
    } finally {
      silent.disconnect();
    }
  });

  it('an open connection does not keep the process alive; closing twice is fine', () => {
    const code = `
      const { systemBus, closeSystemBus } = await import(${JSON.stringify(DBUS_TS)});
      const b = systemBus();
      await b.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId');
      console.log('called');
      ${'' /* no closeSystemBus(): the process must still exit */}
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address },
    });
    assert.equal(r.signal, null, 'exited by itself (not killed by the timeout)');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /called/);
    bus.closeSystemBus();
    bus.closeSystemBus();
    assert.equal(bus.systemBusOpen(), false);
  });

  it('a bus that is not there fails calls at once, and systemdAvailable() says false', async () => {
    const code = `
      const { systemBus } = await import(${JSON.stringify(DBUS_TS)});
      const { systemdAvailable } = await import(${JSON.stringify(SYSTEMD_BUS_TS)});
      const started = Date.now();
      try {
        await systemBus().call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId');
        console.log('answered');
      } catch (e) {
        console.log('failed', e.errorName, Date.now() - started < 5000);
      }
      console.log('available', await systemdAvailable());
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${join(dir, 'nothing-here')}` },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /failed org\.freedesktop\.DBus\.Error\.Disconnected true/);
    // No /run/systemd/system here (or no systemd answering on this address).
    assert.match(r.stdout, /available false/);
  });
});
