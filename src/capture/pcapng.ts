// The pcapng blocks `labctl capture -w` writes: one Section Header Block, one Interface
// Description Block per captured interface (its name and the lab member it belongs to),
// and one Enhanced Packet Block per packet, tagged with its interface's id. Pure: values
// in, bytes out. Always little-endian (a reader learns the byte order from the section
// header's byte-order magic).
//
// Layout (RFC draft-ietf-opsawg-pcapng): every block is
//   block type u32 · block total length u32 · body · block total length u32
// and is a multiple of 4 bytes long. Options are code u16 · length u16 · value, the value
// padded with zeros to 4 bytes, the list ended by opt_endofopt (code 0, length 0).
//   SHB  body: byte-order magic 0x1A2B3C4D · major 1 · minor 0 · section length i64 (-1: not given) · options
//   IDB  body: linktype u16 · reserved u16 · snaplen u32 · options
//   EPB  body: interface id u32 · timestamp high u32 · low u32 · captured length u32 ·
//              original length u32 · packet data (padded to 4 bytes) · options
// Interface ids are the order of the IDBs in the section (0, 1, ...). A timestamp counts
// units of the interface's if_tsresol (10^-6 s when the IDB has none).

export const BLOCK_SHB = 0x0a0d0d0a;
export const BLOCK_IDB = 0x00000001;
export const BLOCK_EPB = 0x00000006;
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

export const OPT_ENDOFOPT = 0;
export const OPT_COMMENT = 1;
export const OPT_SHB_USERAPPL = 4;
export const OPT_IF_NAME = 2;
export const OPT_IF_DESCRIPTION = 3;
export const OPT_IF_TSRESOL = 9;

interface Option {
  code: number;
  value: Buffer;
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function optionsBytes(options: Option[]): Buffer {
  if (options.length === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for (const o of options) {
    const head = Buffer.alloc(4);
    head.writeUInt16LE(o.code, 0);
    head.writeUInt16LE(o.value.length, 2);
    parts.push(head, o.value, Buffer.alloc(pad4(o.value.length)));
  }
  parts.push(Buffer.alloc(4)); // opt_endofopt
  return Buffer.concat(parts);
}

const textOption = (code: number, text: string | undefined): Option[] => (text ? [{ code, value: Buffer.from(text, 'utf8') }] : []);

/** A whole block: type, length, the body (already a multiple of 4 bytes), length again. */
function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(total, 4);
  body.copy(out, 8);
  out.writeUInt32LE(total, total - 4);
  return out;
}

export function sectionHeaderBlock(fields: { application?: string; comment?: string } = {}): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  fixed.writeUInt16LE(1, 4);
  fixed.writeUInt16LE(0, 6);
  fixed.writeBigInt64LE(-1n, 8);
  return block(
    BLOCK_SHB,
    Buffer.concat([fixed, optionsBytes([...textOption(OPT_COMMENT, fields.comment), ...textOption(OPT_SHB_USERAPPL, fields.application)])]),
  );
}

export interface InterfaceDescription {
  linktype: number;
  snaplen: number;
  name: string;
  description?: string;
  /** Timestamp units as 10^-tsresol s (6: µs, the pcapng default, then not written; 9: ns). */
  tsresol?: number;
}

export function interfaceDescriptionBlock(i: InterfaceDescription): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(i.linktype, 0);
  fixed.writeUInt32LE(i.snaplen, 4);
  const tsresol = i.tsresol !== undefined && i.tsresol !== 6 ? [{ code: OPT_IF_TSRESOL, value: Buffer.from([i.tsresol]) }] : [];
  return block(
    BLOCK_IDB,
    Buffer.concat([fixed, optionsBytes([...textOption(OPT_IF_NAME, i.name), ...textOption(OPT_IF_DESCRIPTION, i.description), ...tsresol])]),
  );
}

export interface EnhancedPacket {
  interfaceId: number;
  /** In the interface's if_tsresol units. */
  timestamp: bigint;
  originalLength: number;
  data: Buffer;
}

export function enhancedPacketBlock(p: EnhancedPacket): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32LE(p.interfaceId, 0);
  fixed.writeUInt32LE(Number((p.timestamp >> 32n) & 0xffffffffn), 4);
  fixed.writeUInt32LE(Number(p.timestamp & 0xffffffffn), 8);
  fixed.writeUInt32LE(p.data.length, 12);
  fixed.writeUInt32LE(p.originalLength, 16);
  return block(BLOCK_EPB, Buffer.concat([fixed, p.data, Buffer.alloc(pad4(p.data.length))]));
}
