// Small pure parts of the systemd backend: addresses from machined (systemd-bus.ts), the
// snapshot a machine runs in (snapshots.ts), the journal tail of a failed start
// (journal.ts). No root, no bus.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tailOfJournal } from '../../src/machine/journal.js';
import { snapshotFromMountinfo } from '../../src/machine/snapshots.js';
import { formatAddress } from '../../src/machine/systemd-bus.js';

describe('formatAddress (GetMachineAddresses)', () => {
  it('formats IPv4 and IPv6 (RFC 5952 zero compression)', () => {
    assert.equal(formatAddress(2, [100, 64, 2, 100]), '100.64.2.100');
    assert.equal(formatAddress(2, Buffer.from([10, 0, 1, 1])), '10.0.1.1');
    const v6 = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');
    assert.equal(formatAddress(10, v6('fe80:0000:0000:0000:e4a2:31ff:fecb:c532')), 'fe80::e4a2:31ff:fecb:c532');
    assert.equal(formatAddress(10, v6('2001:0db8:0000:0001:0000:0000:0000:0001')), '2001:db8:0:1::1');
    assert.equal(formatAddress(10, v6('0000:0000:0000:0000:0000:0000:0000:0001')), '::1');
    assert.equal(formatAddress(10, v6('2001:0db8:0001:0002:0003:0004:0005:0006')), '2001:db8:1:2:3:4:5:6');
  });
});

describe('snapshotFromMountinfo', () => {
  const line = (root: string, point: string) => `510 480 0:63 ${root} ${point} rw,noatime master:1 - btrfs /dev/loop1 rw,subvol=${root}`;
  it('finds the ephemeral snapshot beside the image rootfs that / is mounted from', () => {
    const text = [line('/.#machine.rootfs0123abcd', '/'), '511 510 0:64 / /proc rw - proc proc rw'].join('\n');
    assert.equal(snapshotFromMountinfo(text, '/var/lib/labctl/mnt/bookworm/rootfs'), '/var/lib/labctl/mnt/bookworm/.#machine.rootfs0123abcd');
  });
  it('reads every octal escape of mountinfo (space, tab, newline, backslash), not only the space', () => {
    // The snapshot is named after the image's directory, so an odd directory name shows in it.
    const directory = '/var/lib/labctl/mnt/x/root fs\tx\ny\\z';
    const text = line('/.#machine.root\\040fs\\011x\\012y\\134z0123abcd', '/');
    assert.equal(snapshotFromMountinfo(text, directory), '/var/lib/labctl/mnt/x/.#machine.root fs\tx\ny\\z0123abcd');
  });
  it('is undefined for a machine that is not a snapshot', () => {
    assert.equal(snapshotFromMountinfo(line('/rootfs', '/'), '/x/rootfs'), undefined);
    assert.equal(snapshotFromMountinfo('', '/x/rootfs'), undefined);
  });
});

describe('tailOfJournal', () => {
  const entry = (message: string | number[], pid = '86') => JSON.stringify({ MESSAGE: message, _PID: pid });
  it("keeps the last lines, and systemd's own lines about the unit that scrolled out", () => {
    const json = [
      entry('Starting labctl-x.service...', '1'),
      entry('Welcome'),
      entry('labctl-x.service: start operation timed out. Terminating.', '1'),
      ...Array.from({ length: 30 }, (_, i) => entry(`console ${i}\r`)),
      entry([104, 105]), // a message journald stored as bytes
    ].join('\n');
    const lines = tailOfJournal(json, 5).split('\n');
    assert.deepEqual(lines, [
      'console 26',
      'console 27',
      'console 28',
      'console 29',
      'hi',
      '(systemd) Starting labctl-x.service...',
      '(systemd) labctl-x.service: start operation timed out. Terminating.',
    ]);
  });
  it('ignores what is not JSON and is empty for no entries', () => {
    assert.equal(tailOfJournal('-- No entries --\n'), '');
  });
});
