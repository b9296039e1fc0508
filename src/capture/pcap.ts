// A streaming reader of the classic pcap format, as `tcpdump -w -` writes it: a 24-byte
// global header, then one 16-byte record header and the packet's bytes per packet. Pure:
// bytes in (in chunks of any size, as they come out of a pipe), header and records out.
//
// Layout (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html), every field in
// the writer's byte order, which the magic number tells:
//   global header  magic u32 · version major u16, minor u16 · thiszone i32 · sigfigs u32 ·
//                  snaplen u32 · linktype u32 (the low 16 bits; the upper ones carry FCS flags)
//   record header  ts_sec u32 · ts_frac u32 (µs, or ns with the nanosecond magic) ·
//                  captured length u32 · original length u32
// The magic 0xa1b2c3d4 means microsecond timestamps, 0xa1b23c4d nanosecond ones.

export const PCAP_MAGIC_MICRO = 0xa1b2c3d4;
export const PCAP_MAGIC_NANO = 0xa1b23c4d;
const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;
/** Larger than any snapshot length libpcap allows (262144): a record claiming more means the stream is not pcap. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;

export interface PcapHeader {
  littleEndian: boolean;
  /** Timestamps' fractions are nanoseconds (else microseconds). */
  nanosecond: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  /** The LINKTYPE_ value (1: Ethernet). */
  linktype: number;
}

export interface PcapRecord {
  seconds: number;
  /** Microseconds or nanoseconds past `seconds`, as the header says. */
  fraction: number;
  originalLength: number;
  /** The captured bytes (captured length = data.length). */
  data: Buffer;
}

export class PcapFormatError extends Error {
  override name = 'PcapFormatError';
}

/** The packet's time in nanoseconds since the epoch (what orders packets of streams with different resolutions). */
export function recordTimeNs(header: PcapHeader, record: PcapRecord): bigint {
  return BigInt(record.seconds) * 1_000_000_000n + BigInt(record.fraction) * (header.nanosecond ? 1n : 1000n);
}

/** Reads a pcap byte stream chunk by chunk. */
export class PcapStreamReader {
  private pending: Buffer = Buffer.alloc(0);
  private headerRead: PcapHeader | undefined;

  get header(): PcapHeader | undefined {
    return this.headerRead;
  }

  /** Takes the next bytes; returns the header when it is complete in them (once), and every record completed. */
  push(chunk: Buffer): { header?: PcapHeader; records: PcapRecord[] } {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const out: { header?: PcapHeader; records: PcapRecord[] } = { records: [] };
    let at = 0;
    if (!this.headerRead) {
      if (this.pending.length < GLOBAL_HEADER_BYTES) return out;
      this.headerRead = parseGlobalHeader(this.pending.subarray(0, GLOBAL_HEADER_BYTES));
      out.header = this.headerRead;
      at = GLOBAL_HEADER_BYTES;
    }
    const h = this.headerRead;
    const u32 = (offset: number) => (h.littleEndian ? this.pending.readUInt32LE(offset) : this.pending.readUInt32BE(offset));
    while (this.pending.length - at >= RECORD_HEADER_BYTES) {
      const captured = u32(at + 8);
      if (captured > MAX_RECORD_BYTES) throw new PcapFormatError(`a pcap record claims ${captured} captured bytes: not a pcap stream, or a corrupt one`);
      if (this.pending.length - at - RECORD_HEADER_BYTES < captured) break;
      const start = at + RECORD_HEADER_BYTES;
      // A copy: the records outlive the chunk they came in (they wait in the merge window).
      out.records.push({
        seconds: u32(at),
        fraction: u32(at + 4),
        originalLength: u32(at + 12),
        data: Buffer.from(this.pending.subarray(start, start + captured)),
      });
      at = start + captured;
    }
    this.pending = this.pending.subarray(at);
    return out;
  }

  /** Bytes left over that make no whole record (a stream cut in the middle of one). */
  get leftover(): number {
    return this.pending.length;
  }
}

export function parseGlobalHeader(b: Buffer): PcapHeader {
  if (b.length < GLOBAL_HEADER_BYTES) throw new PcapFormatError(`a pcap global header has ${GLOBAL_HEADER_BYTES} bytes, got ${b.length}`);
  const le = b.readUInt32LE(0);
  const be = b.readUInt32BE(0);
  let littleEndian: boolean;
  let nanosecond: boolean;
  if (le === PCAP_MAGIC_MICRO || le === PCAP_MAGIC_NANO) {
    littleEndian = true;
    nanosecond = le === PCAP_MAGIC_NANO;
  } else if (be === PCAP_MAGIC_MICRO || be === PCAP_MAGIC_NANO) {
    littleEndian = false;
    nanosecond = be === PCAP_MAGIC_NANO;
  } else {
    throw new PcapFormatError(`not a pcap stream (magic number 0x${be.toString(16).padStart(8, '0')})`);
  }
  const u16 = (o: number) => (littleEndian ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (littleEndian ? b.readUInt32LE(o) : b.readUInt32BE(o));
  return { littleEndian, nanosecond, versionMajor: u16(4), versionMinor: u16(6), snaplen: u32(16), linktype: u32(20) & 0xffff };
}
