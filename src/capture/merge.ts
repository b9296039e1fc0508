// Merges the pcap streams of several tcpdumps (one per interface) into one pcapng stream:
// one Interface Description Block per interface, each packet an Enhanced Packet Block
// tagged with its interface. Pure: the caller passes the bytes as they arrive and the time
// they arrived, and writes out what take() returns.
//
// Order: by capture timestamp within a window. Two tcpdumps deliver their packets in
// whatever order the scheduler runs them, so a packet forwarded from one interface to
// another may arrive before the one it was forwarded from. A packet is held until
// `windowMs` after it arrived; when it is released, every held packet captured no later
// than it goes out with it, all sorted by capture time (ties in arrival order). So packets
// that reach labctl within the window of each other come out in capture order; one that
// arrives later than that behind packets captured after it (a stalled tcpdump) still goes
// out, out of order, rather than being held back or dropped.
import { type PcapHeader, type PcapRecord, PcapStreamReader, recordTimeNs } from './pcap.js';
import { enhancedPacketBlock, interfaceDescriptionBlock, sectionHeaderBlock } from './pcapng.js';

export interface MergeSource {
  /** The interface's name (if_name). */
  name: string;
  /** What it is, e.g. "c1-nat: link to inet (lab article)" (if_description). */
  description?: string;
}

interface Held {
  source: number;
  timeNs: bigint;
  arrivedMs: number;
  seq: number;
  record: PcapRecord;
}

interface SourceState {
  reader: PcapStreamReader;
  ended: boolean;
  /** Its interface id, once the IDBs are out (undefined: it gave no header, so it has no IDB). */
  interfaceId?: number;
}

export class PcapngMerger {
  private readonly sources: SourceState[];
  private held: Held[] = [];
  private seq = 0;
  private shbWritten = false;
  private idbsWritten = false;
  private receivedCount = 0;
  private writtenCount = 0;

  constructor(
    private readonly described: MergeSource[],
    private readonly options: { windowMs: number /** Write at most this many packets. */; limit?: number; application?: string; comment?: string },
  ) {
    this.sources = described.map(() => ({ reader: new PcapStreamReader(), ended: false }));
  }

  /** Packets read from all streams so far. */
  get received(): number {
    return this.receivedCount;
  }

  /** Packets in the bytes returned so far. */
  get written(): number {
    return this.writtenCount;
  }

  /** Bytes from source `i`'s stream; throws PcapFormatError when they are not pcap. */
  push(i: number, chunk: Buffer, nowMs: number): void {
    const { records } = this.sources[i]!.reader.push(chunk);
    for (const record of records) {
      this.held.push({ source: i, timeNs: recordTimeNs(this.sources[i]!.reader.header!, record), arrivedMs: nowMs, seq: this.seq++, record });
    }
    this.receivedCount += records.length;
  }

  /** Source `i`'s stream has ended: it will give no header if it has not yet. */
  end(i: number): void {
    this.sources[i]!.ended = true;
  }

  /** The bytes to write now: the section header at once, the interfaces once every stream has its header, and the packets due. */
  take(nowMs: number): Buffer {
    const out = this.head();
    if (!this.idbsWritten) return Buffer.concat(out);
    const due = this.held.filter((h) => h.arrivedMs + this.options.windowMs <= nowMs);
    if (due.length === 0) return Buffer.concat(out);
    // The latest capture time among them (bigint: Math.max does not take it).
    let until = due[0]!.timeNs;
    for (const h of due) if (h.timeNs > until) until = h.timeNs;
    const [release, keep] = partition(this.held, (h) => h.timeNs <= until);
    this.held = keep;
    out.push(...this.blocks(release));
    return Buffer.concat(out);
  }

  /** Everything left, in capture order (the streams have all ended, or the capture stops). */
  finish(): Buffer {
    for (const s of this.sources) s.ended = true;
    const out = this.head();
    out.push(...this.blocks(this.held));
    this.held = [];
    return Buffer.concat(out);
  }

  /** Stream bytes that made no whole packet, per source (a stream cut in the middle of a record). */
  leftovers(): number[] {
    return this.sources.map((s) => s.reader.leftover);
  }

  private head(): Buffer[] {
    const out: Buffer[] = [];
    if (!this.shbWritten) {
      this.shbWritten = true;
      out.push(sectionHeaderBlock({ application: this.options.application, comment: this.options.comment }));
    }
    if (!this.idbsWritten && this.sources.every((s) => s.reader.header || s.ended)) {
      this.idbsWritten = true;
      let id = 0;
      this.sources.forEach((s, i) => {
        const h = s.reader.header;
        if (!h) return;
        s.interfaceId = id++;
        out.push(
          interfaceDescriptionBlock({
            linktype: h.linktype,
            snaplen: h.snaplen,
            name: this.described[i]!.name,
            description: this.described[i]!.description,
            tsresol: tsresol(h),
          }),
        );
      });
    }
    return out;
  }

  private blocks(packets: Held[]): Buffer[] {
    packets.sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : a.seq - b.seq));
    const out: Buffer[] = [];
    for (const p of packets) {
      if (this.options.limit !== undefined && this.writtenCount >= this.options.limit) break;
      const s = this.sources[p.source]!;
      const h = s.reader.header!;
      const timestamp = BigInt(p.record.seconds) * 10n ** BigInt(tsresol(h)) + BigInt(p.record.fraction);
      out.push(enhancedPacketBlock({ interfaceId: s.interfaceId!, timestamp, originalLength: p.record.originalLength, data: p.record.data }));
      this.writtenCount++;
    }
    return out;
  }
}

const tsresol = (h: PcapHeader) => (h.nanosecond ? 9 : 6);

function partition<T>(items: T[], test: (t: T) => boolean): [T[], T[]] {
  const yes: T[] = [];
  const no: T[] = [];
  for (const i of items) (test(i) ? yes : no).push(i);
  return [yes, no];
}
