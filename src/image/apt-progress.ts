// apt-get's output lines as progress: what it is downloading and how many bytes so far
// ("Need to get ...", "Get:N ... [SIZE]", "Fetched ..."), then what it unpacks and sets up.
import { formatBytes } from './bytes.js';

const APT_SIZE = String.raw`[\d.,]+ [kMGTPEZY]?B`;
const UNIT_POWER: Record<string, number> = { '': 0, k: 1, M: 2, G: 3, T: 4, P: 5, E: 6, Z: 7, Y: 8 };

/**
 * A size as apt prints it (SI units, 1 kB = 1000 B): "305 kB", "12.3 MB", "0 B", and with a
 * locale's digit grouping "8,786 kB" (a comma before exactly three digits groups them; any
 * other comma is a decimal comma). Pure.
 */
export function parseAptSize(text: string): number | undefined {
  const m = /^([\d.,]+) ?([kMGTPEZY]?)B$/.exec(text.trim());
  if (!m) return undefined;
  const digits = m[1]!.replace(/,(?=\d{3}(?!\d))/g, '').replace(',', '.');
  const value = Number(digits);
  if (!Number.isFinite(value)) return undefined;
  return Math.round(value * 1000 ** UNIT_POWER[m[2]!]!);
}

type AptStage = 'download' | 'unpack' | 'configure';

interface AptProgressUpdate {
  stage: AptStage;
  text: string;
}

/**
 * Reads `apt-get -q update` or `apt-get -q install` output. With -q apt prints one
 * "Get:N URI SUITE/COMPONENT ARCH NAME ARCH VERSION [SIZE]" line per file it starts to
 * fetch (index files: "Get:N URI SUITE[/COMPONENT ARCH] NAME [SIZE]"), and "Fetched SIZE in
 * TIME (RATE)" at the end; install also says "Need to get SIZE[/TOTAL] of archives." first
 * (SIZE to download, TOTAL with what its archive already holds).
 */
export class AptProgress {
  /** bytes to download, from "Need to get" */
  needed: number | undefined;
  /** bytes of the whole set, cached ones included, from "Need to get X/TOTAL" */
  total: number | undefined;
  /** bytes downloaded so far: the sizes of the files started, then the "Fetched" total */
  fetched = 0;
  files = 0;
  unpacked = 0;
  configured = 0;

  feed(rawLine: string): AptProgressUpdate | undefined {
    const line = rawLine.trim();
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^Need to get (${APT_SIZE})(?:/(${APT_SIZE}))? of archives`).exec(line))) {
      this.needed = parseAptSize(m[1]!);
      this.total = m[2] ? parseAptSize(m[2]) : this.needed;
      if (this.needed === undefined) return undefined;
      const cached = this.total !== undefined && this.total > this.needed ? ` (${formatBytes(this.total - this.needed)} already downloaded)` : '';
      return { stage: 'download', text: this.needed ? `${formatBytes(this.needed)} to download${cached}` : `nothing to download${cached}` };
    }
    if ((m = new RegExp(`^Get:\\d+ \\S+ (.+) \\[(${APT_SIZE})\\]$`).exec(line))) {
      this.files++;
      this.fetched += parseAptSize(m[2]!) ?? 0;
      const words = m[1]!.split(' ');
      // A package is "SUITE/COMPONENT ARCH NAME ARCH VERSION"; an index file ends with its name.
      const name = words.length >= 5 ? words[2]! : words.at(-1)!;
      return { stage: 'download', text: `downloading ${name}: ${this.soFar()}` };
    }
    if ((m = new RegExp(`^Fetched (${APT_SIZE}) in `).exec(line))) {
      this.fetched = parseAptSize(m[1]!) ?? this.fetched;
      return { stage: 'download', text: `downloaded ${formatBytes(this.fetched)} in ${this.files} file(s)` };
    }
    if ((m = /^Unpacking (\S+) /.exec(line))) {
      this.unpacked++;
      return { stage: 'unpack', text: `unpacking ${this.unpacked}: ${m[1]}` };
    }
    if ((m = /^Setting up (\S+) /.exec(line))) {
      this.configured++;
      return { stage: 'configure', text: `setting up ${this.configured}: ${m[1]}` };
    }
    return undefined;
  }

  /** "1.2 MiB of 3.4 MiB" (of what "Need to get" announced, when it did). */
  private soFar(): string {
    // The Get: sizes are rounded as printed: their sum may pass the announced total.
    return this.needed ? `${formatBytes(Math.min(this.fetched, this.needed))} of ${formatBytes(this.needed)}` : formatBytes(this.fetched);
  }
}
