// The pcap stream reader of `labctl capture -w`: known byte layouts (both byte orders, both
// timestamp resolutions), streams cut into chunks of every size, and what is not pcap.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  PCAP_MAGIC_MICRO,
  PCAP_MAGIC_NANO,
  PcapFormatError,
  type PcapRecord,
  PcapStreamReader,
  parseGlobalHeader,
  recordTimeNs,
} from '../../src/capture/pcap.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// What tcpdump 4.99.3 wrote (`tcpdump -w - -U` on a veth, little-endian host): version 2.4,
// thiszone 0, sigfigs 0, snaplen 262144, linktype 1 (Ethernet); then one record of 4 bytes.
const LE_MICRO_HEADER = hex('d4c3b2a1 0200 0400 00000000 00000000 00000400 01000000');
const LE_RECORD = hex('6d830f6b f0890600 04000000 5a000000 deadbeef');
// The same in big-endian with nanosecond timestamps, and the FCS bits set above the linktype.
const BE_NANO_HEADER = hex('a1b23c4d 0002 0004 00000000 00000000 0000ffff 10000001');
const BE_RECORD = hex('6b0f836d 3b9ac9ff 00000002 00000040 cafe');

describe('the global header', () => {
  test('little-endian, microseconds', () => {
    assert.deepEqual(parseGlobalHeader(LE_MICRO_HEADER), {
      littleEndian: true,
      nanosecond: false,
      versionMajor: 2,
      versionMinor: 4,
      snaplen: 262144,
      linktype: 1,
    });
  });
  test('big-endian, nanoseconds; the linktype is the low 16 bits', () => {
    assert.deepEqual(parseGlobalHeader(BE_NANO_HEADER), {
      littleEndian: false,
      nanosecond: true,
      versionMajor: 2,
      versionMinor: 4,
      snaplen: 65535,
      linktype: 1,
    });
  });
  test('the magic numbers', () => {
    assert.equal(PCAP_MAGIC_MICRO, 0xa1b2c3d4);
    assert.equal(PCAP_MAGIC_NANO, 0xa1b23c4d);
  });
  test('a pcapng file or text is not a pcap stream', () => {
    assert.throws(() => parseGlobalHeader(hex('0a0d0d0a 1c000000 4d3c2b1a 01000000 ffffffff ffffffff')), /not a pcap stream \(magic number 0x0a0d0d0a\)/);
    assert.throws(() => parseGlobalHeader(Buffer.from('tcpdump: syntax error in filter\n')), PcapFormatError);
    assert.throws(() => parseGlobalHeader(hex('d4c3b2a1')), /24 bytes, got 4/);
  });
});

describe('the stream reader', () => {
  test('a header and a record in one chunk', () => {
    const r = new PcapStreamReader();
    const out = r.push(Buffer.concat([LE_MICRO_HEADER, LE_RECORD]));
    assert.equal(out.header?.snaplen, 262144);
    assert.deepEqual(out.records, [{ seconds: 0x6b0f836d, fraction: 0x689f0, originalLength: 90, data: hex('deadbeef') }]);
    assert.equal(r.leftover, 0);
    assert.equal(recordTimeNs(out.header!, out.records[0]!), 0x6b0f836dn * 1_000_000_000n + 0x689f0n * 1000n);
  });

  test('big-endian nanosecond records', () => {
    const r = new PcapStreamReader();
    const { header, records } = r.push(Buffer.concat([BE_NANO_HEADER, BE_RECORD]));
    assert.deepEqual(records, [{ seconds: 0x6b0f836d, fraction: 999_999_999, originalLength: 64, data: hex('cafe') }]);
    assert.equal(recordTimeNs(header!, records[0]!), 0x6b0f836dn * 1_000_000_000n + 999_999_999n);
  });

  test('chunks of every size give the same records, the header once', () => {
    const stream = Buffer.concat([LE_MICRO_HEADER, LE_RECORD, LE_RECORD, hex('6d830f6b 00000000 00000000 00000000')]);
    const whole = new PcapStreamReader().push(stream).records;
    assert.equal(whole.length, 3, 'an empty record is a record');
    for (let size = 1; size <= stream.length; size++) {
      const r = new PcapStreamReader();
      const records: PcapRecord[] = [];
      let headers = 0;
      for (let at = 0; at < stream.length; at += size) {
        const out = r.push(stream.subarray(at, at + size));
        if (out.header) headers++;
        records.push(...out.records);
      }
      assert.equal(headers, 1, `chunks of ${size}`);
      assert.deepEqual(records, whole, `chunks of ${size}`);
      assert.equal(r.leftover, 0);
    }
  });

  test('a record cut short waits for the rest and is counted as left over', () => {
    const r = new PcapStreamReader();
    assert.equal(r.push(Buffer.concat([LE_MICRO_HEADER, LE_RECORD.subarray(0, 18)])).records.length, 0);
    assert.equal(r.leftover, 18);
    assert.equal(r.push(LE_RECORD.subarray(18)).records.length, 1);
    assert.equal(r.leftover, 0);
  });

  test('records do not share the chunk they came in (the caller may reuse it)', () => {
    const chunk = Buffer.concat([LE_MICRO_HEADER, LE_RECORD]);
    const { records } = new PcapStreamReader().push(chunk);
    chunk.fill(0);
    assert.deepEqual(records[0]!.data, hex('deadbeef'));
  });

  test('a record claiming an absurd length is refused', () => {
    const r = new PcapStreamReader();
    assert.throws(() => r.push(Buffer.concat([LE_MICRO_HEADER, hex('00000000 00000000 00000040 00000040')])), /claims 1073741824 captured bytes/);
  });
});
