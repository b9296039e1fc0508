// A strict reader of the pcapng that `labctl capture -w` writes, written from the format's
// description (not from src/capture/pcapng.ts), to check its files block by block: every
// block's two lengths agree, options are well formed, interface ids exist, and the file
// ends at a block boundary (a file cut in the middle of a block is not complete).
import assert from 'node:assert/strict';

export interface ReadInterface {
  linktype: number;
  snaplen: number;
  name?: string;
  description?: string;
  tsresol: number;
}

export interface ReadPacket {
  interfaceId: number;
  /** Seconds since the epoch, as a float (µs precision is plenty for tests). */
  time: number;
  capturedLength: number;
  originalLength: number;
  data: Buffer;
}

export interface ReadPcapng {
  application?: string;
  comment?: string;
  interfaces: ReadInterface[];
  packets: ReadPacket[];
  /** Block types in file order. */
  blocks: number[];
}

function readOptions(b: Buffer, from: number, to: number): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let at = from;
  while (at < to) {
    assert.ok(at + 4 <= to, `option header past the end of the options at ${at}`);
    const code = b.readUInt16LE(at);
    const len = b.readUInt16LE(at + 2);
    if (code === 0) {
      assert.equal(len, 0, 'opt_endofopt has length 0');
      return out;
    }
    const value = b.subarray(at + 4, at + 4 + len);
    out.set(code, [...(out.get(code) ?? []), Buffer.from(value)]);
    at += 4 + len + ((4 - (len % 4)) % 4);
  }
  assert.equal(at, to, 'options end where the block body ends');
  return out;
}

const text = (o: Map<number, Buffer[]>, code: number) => o.get(code)?.[0]?.toString('utf8');

/** Parses a little-endian pcapng section; throws (assert) on anything malformed or cut short. */
export function readPcapng(b: Buffer): ReadPcapng {
  const out: ReadPcapng = { interfaces: [], packets: [], blocks: [] };
  let at = 0;
  while (at < b.length) {
    assert.ok(at + 12 <= b.length, `a block header at ${at} is cut short (file of ${b.length} bytes)`);
    const type = b.readUInt32LE(at);
    const len = b.readUInt32LE(at + 4);
    assert.ok(len >= 12 && len % 4 === 0, `block at ${at}: length ${len} is a multiple of 4 and at least 12`);
    assert.ok(at + len <= b.length, `block at ${at} (type ${type}, ${len} bytes) is cut short: the file has ${b.length} bytes`);
    assert.equal(b.readUInt32LE(at + len - 4), len, `block at ${at}: trailing length equals leading length`);
    const body = at + 8;
    const end = at + len - 4;
    out.blocks.push(type);
    if (type === 0x0a0d0d0a) {
      assert.equal(at, 0, 'one section, its header first');
      assert.equal(b.readUInt32LE(body), 0x1a2b3c4d, 'byte-order magic');
      assert.equal(b.readUInt16LE(body + 4), 1, 'major version 1');
      assert.equal(b.readUInt16LE(body + 6), 0, 'minor version 0');
      const o = readOptions(b, body + 16, end);
      out.application = text(o, 4);
      out.comment = text(o, 1);
    } else if (type === 1) {
      const o = readOptions(b, body + 8, end);
      const tsresol = o.get(9)?.[0]?.[0];
      out.interfaces.push({
        linktype: b.readUInt16LE(body),
        snaplen: b.readUInt32LE(body + 4),
        name: text(o, 2),
        description: text(o, 3),
        tsresol: tsresol ?? 6,
      });
    } else if (type === 6) {
      const interfaceId = b.readUInt32LE(body);
      const iface = out.interfaces[interfaceId];
      assert.ok(iface, `packet block at ${at} names interface ${interfaceId}, which no IDB before it describes`);
      const ts = (BigInt(b.readUInt32LE(body + 4)) << 32n) | BigInt(b.readUInt32LE(body + 8));
      const captured = b.readUInt32LE(body + 12);
      const original = b.readUInt32LE(body + 16);
      assert.ok(captured <= original, 'captured length at most the original length');
      const data = Buffer.from(b.subarray(body + 20, body + 20 + captured));
      const padded = captured + ((4 - (captured % 4)) % 4);
      readOptions(b, body + 20 + padded, end);
      const unit = 10n ** BigInt(iface.tsresol);
      out.packets.push({ interfaceId, time: Number(ts / unit) + Number(ts % unit) / Number(unit), capturedLength: captured, originalLength: original, data });
    }
    at += len;
  }
  assert.equal(out.blocks[0], 0x0a0d0d0a, 'the file starts with a section header block');
  return out;
}
