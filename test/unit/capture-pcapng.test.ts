// The pcapng blocks of `labctl capture -w` (known byte layouts), and the merger that turns
// several tcpdumps' pcap streams into one pcapng stream: interfaces, ids, timestamps, the
// ordering window, the packet limit; and tcpdump itself reading what it wrote.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PcapngMerger } from '../../src/capture/merge.js';
import { enhancedPacketBlock, interfaceDescriptionBlock, sectionHeaderBlock } from '../../src/capture/pcapng.js';
import { whichExecutable } from '../../src/util/process.js';
import { readPcapng } from '../support/pcapng-reader.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const dir = mkdtempSync(join(tmpdir(), 'labctl-pcapng-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('blocks', () => {
  test('a section header without options', () => {
    assert.deepEqual(sectionHeaderBlock(), hex('0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffff ffffffff 1c000000'));
  });

  test('a section header with shb_userappl, padded to 4 bytes', () => {
    assert.deepEqual(
      sectionHeaderBlock({ application: 'labctl' }),
      hex('0a0d0d0a 2c000000 4d3c2b1a 0100 0000 ffffffff ffffffff  0400 0600 6c616263 746c 0000  0000 0000  2c000000'),
    );
  });

  test('an interface with if_name, if_description and if_tsresol 9', () => {
    assert.deepEqual(
      interfaceDescriptionBlock({ linktype: 1, snaplen: 262144, name: 'eth0', description: 'c1', tsresol: 9 }),
      hex('01000000 30000000 0100 0000 00000400  0200 0400 65746830  0300 0200 6331 0000  0900 0100 09 000000  0000 0000  30000000'),
    );
  });

  test('an interface in microseconds says nothing of its resolution (the default)', () => {
    assert.deepEqual(
      interfaceDescriptionBlock({ linktype: 1, snaplen: 65535, name: 'eth0', tsresol: 6 }),
      hex('01000000 20000000 0100 0000 ffff0000  0200 0400 65746830  0000 0000  20000000'),
    );
  });

  test('a packet: interface id, 64-bit timestamp in two halves, lengths, data padded', () => {
    assert.deepEqual(
      enhancedPacketBlock({ interfaceId: 2, timestamp: 0x0001_0203_0405_0607n, originalLength: 90, data: hex('aabbccddee') }),
      hex('06000000 28000000 02000000 03020100 07060504 05000000 5a000000 aabbccddee000000 28000000'),
    );
  });
});

// pcap streams as tcpdump writes them (little-endian, nanoseconds, Ethernet).
const pcapHeader = (nano = true, snaplen = 262144) => {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(nano ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(1, 20);
  return b;
};
const pcapRecord = (seconds: number, fraction: number, data: Buffer) => {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(seconds, 0);
  b.writeUInt32LE(fraction, 4);
  b.writeUInt32LE(data.length, 8);
  b.writeUInt32LE(data.length, 12);
  return Buffer.concat([b, data]);
};
/** An Ethernet frame carrying an IPv4 UDP datagram from 10.0.0.(from) to 10.0.0.9 port 9, payload `tag`. */
function udpFrame(from: number, tag: string): Buffer {
  const payload = Buffer.from(tag);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(9, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  const ip = hex('4500 0000 0000 4000 4011 0000 0a000000 0a000009');
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip[15] = from;
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  return Buffer.concat([hex('020000000009 020000000001 0800'), ip, udp, payload]);
}

const T = 1_800_000_000;

describe('the merger', () => {
  const sources = [
    { name: 've-c1-nat-node', description: 'c1-nat: link to c1 (lab article)' },
    { name: 've-c1-nat-inet', description: 'c1-nat: link to inet (lab article)' },
  ];

  test('the section header comes at once; the interfaces once every stream has its header', () => {
    const m = new PcapngMerger(sources, { windowMs: 100, application: 'labctl' });
    const first = m.take(0);
    assert.deepEqual(readPcapng(first).blocks, [0x0a0d0d0a]);
    m.push(1, pcapHeader(), 1);
    assert.equal(m.take(2).length, 0, 'no interface block before both headers are in');
    m.push(0, pcapHeader(false, 65535), 3);
    const f = readPcapng(Buffer.concat([first, m.take(4)]));
    assert.equal(f.application, 'labctl');
    assert.deepEqual(f.interfaces, [
      { linktype: 1, snaplen: 65535, name: 've-c1-nat-node', description: 'c1-nat: link to c1 (lab article)', tsresol: 6 },
      { linktype: 1, snaplen: 262144, name: 've-c1-nat-inet', description: 'c1-nat: link to inet (lab article)', tsresol: 9 },
    ]);
  });

  test('packets wait out the window and leave in capture order, tagged with their interface', () => {
    const m = new PcapngMerger(sources, { windowMs: 100 });
    const out: Buffer[] = [m.take(0)];
    m.push(0, pcapHeader(), 0);
    m.push(1, pcapHeader(), 0);
    // The forwarded packet (on the uplink, 40 µs later) reaches labctl first.
    m.push(1, pcapRecord(T, 40_000, udpFrame(2, 'out')), 10);
    m.push(0, pcapRecord(T, 0, udpFrame(1, 'lan')), 30);
    out.push(m.take(50));
    assert.equal(readPcapng(Buffer.concat(out)).packets.length, 0, 'held within the window');
    out.push(m.take(110));
    let f = readPcapng(Buffer.concat(out));
    assert.deepEqual(
      f.packets.map((p) => [p.interfaceId, p.data.subarray(-3).toString()]),
      [
        [0, 'lan'],
        [1, 'out'],
      ],
      'the one due (arrived at 10) takes the one captured before it (arrived at 30) along, in capture order',
    );
    assert.deepEqual(
      f.packets.map((p) => p.time),
      [T, T + 0.00004],
    );
    // A later packet, then the end of the capture: everything left goes out.
    m.push(0, pcapRecord(T + 1, 5, udpFrame(1, 'two')), 500);
    out.push(m.finish());
    f = readPcapng(Buffer.concat(out));
    assert.equal(f.packets.length, 3);
    assert.equal(m.received, 3);
    assert.equal(m.written, 3);
  });

  test('equal timestamps keep their arrival order', () => {
    const m = new PcapngMerger(sources, { windowMs: 0 });
    m.push(0, pcapHeader(), 0);
    m.push(1, pcapHeader(), 0);
    m.push(1, pcapRecord(T, 7, udpFrame(2, 'aaa')), 1);
    m.push(0, pcapRecord(T, 7, udpFrame(1, 'bbb')), 1);
    const f = readPcapng(Buffer.concat([m.take(1), m.finish()]));
    assert.deepEqual(
      f.packets.map((p) => p.interfaceId),
      [1, 0],
    );
  });

  test('a stream that ends without a header gets no interface, and the ids stay dense', () => {
    const m = new PcapngMerger(sources, { windowMs: 0 });
    m.push(1, pcapHeader(), 0);
    m.push(1, pcapRecord(T, 1, udpFrame(2, 'one')), 0);
    m.end(0);
    const f = readPcapng(Buffer.concat([m.take(0), m.finish()]));
    assert.deepEqual(
      f.interfaces.map((i) => i.name),
      ['ve-c1-nat-inet'],
    );
    assert.deepEqual(
      f.packets.map((p) => p.interfaceId),
      [0],
    );
  });

  test('no packet at all still makes a complete file', () => {
    const m = new PcapngMerger(sources, { windowMs: 100 });
    const f = readPcapng(Buffer.concat([m.take(0), m.finish()]));
    assert.deepEqual(f.blocks, [0x0a0d0d0a]);
  });

  test('the limit: at most N packets are written, the first N in capture order', () => {
    const m = new PcapngMerger(sources, { windowMs: 100, limit: 2 });
    m.push(0, pcapHeader(), 0);
    m.push(1, pcapHeader(), 0);
    for (let i = 0; i < 3; i++) m.push(i % 2, pcapRecord(T, 100 - i, udpFrame(1, `p${i}-`)), 0);
    const f = readPcapng(Buffer.concat([m.take(0), m.finish()]));
    assert.equal(m.received, 3);
    assert.equal(m.written, 2);
    assert.deepEqual(
      f.packets.map((p) => p.data.subarray(-3).toString()),
      ['p2-', 'p1-'],
    );
  });

  test('a stream that is not pcap is refused', () => {
    const m = new PcapngMerger(sources, { windowMs: 0 });
    assert.throws(() => m.push(0, Buffer.from('tcpdump: ve-x: No such device exists\n'), 0), /not a pcap stream/);
  });

  test('tcpdump reads the file: every packet, its time to the microsecond, two interfaces of one link type', {
    skip: whichExecutable('tcpdump') ? false : 'tcpdump is not installed',
  }, () => {
    const m = new PcapngMerger(sources, { windowMs: 100, application: 'labctl' });
    const parts = [m.take(0)];
    m.push(0, pcapHeader(), 0);
    m.push(1, pcapHeader(false), 0);
    m.push(0, pcapRecord(T, 123_456_789, udpFrame(1, 'first')), 0);
    m.push(1, pcapRecord(T, 123_460, udpFrame(2, 'second')), 0);
    parts.push(m.finish());
    const file = join(dir, 'merged.pcapng');
    writeFileSync(file, Buffer.concat(parts));
    const r = spawnSync('tcpdump', ['-r', file, '-n', '-tt'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      `${T}.123456 IP 10.0.0.1.40000 > 10.0.0.9.9: UDP, length 5`,
      `${T}.123460 IP 10.0.0.2.40000 > 10.0.0.9.9: UDP, length 6`,
    ]);
  });
});
