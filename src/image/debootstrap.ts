// debootstrap: its command line, reading its progress from its "I: ..." lines, and
// measuring the bytes it downloads (which it does not print).
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes } from './bytes.js';
import type { Distribution } from './distro/index.js';
import type { BuildOptions } from './plan.js';
import type { Recipe } from './recipe.js';

/** The debootstrap command of a build (pure). */
export function debootstrapCommand(
  ctx: { recipe: Recipe; distro: Distribution; options: BuildOptions; packages: string[]; debCache: string },
  target: string,
): string[] {
  const { recipe, distro, options } = ctx;
  const args = ['debootstrap'];
  if (recipe.variant !== 'default') args.push(`--variant=${recipe.variant}`);
  args.push(`--arch=${recipe.architecture}`);
  args.push(`--components=${recipe.components.join(',')}`);
  args.push(`--include=${ctx.packages.join(',')}`);
  if (options.cache) args.push(`--cache-dir=${ctx.debCache}`);
  if (options.verify) args.push(`--keyring=${recipe.keyring}`);
  else args.push('--no-check-gpg');
  args.push(...distro.debootstrapArgs(recipe));
  // The script is always explicit: a suite newer than the host's debootstrap still builds.
  args.push(recipe.suite, target, recipe.mirror, distro.debootstrapScript);
  return args;
}

type DebootstrapStage = 'index' | 'resolve' | 'download' | 'extract' | 'install' | 'unpack' | 'configure' | 'base' | 'done';

interface ProgressUpdate {
  stage: DebootstrapStage;
  /**
   * e.g. "downloading libc6 (12 downloaded, 3.1 MiB)",
   * "package 40: libc6 (cached; 12 downloaded, 3.1 MiB; 28 from cache)", "unpacking 3/150 libc6:amd64"
   */
  text: string;
}

/**
 * Turns debootstrap's output lines into progress. debootstrap prints
 * "I: Retrieving PKG VER" / "I: Validating PKG VER" per package it fetches
 * (only Validating when the .deb is already in --cache-dir), then
 * "I: Extracting PKG...", "I: Unpacking PKG...", "I: Configuring PKG...".
 * It prints no sizes: the bytes downloaded so far come from downloadedBytes
 * (a DownloadMeter's count), shown in the download stage when there are any.
 */
export class DebootstrapProgress {
  private packages = 0;
  private retrieved = 0;
  private extracted = 0;
  private unpacked = 0;
  private configured = 0;
  private lastRetrieving: string | undefined;
  /** the download stage's last text without its counts, to show again when only the bytes changed */
  private lastDownload: { what: string; from?: string } | undefined;
  stage: DebootstrapStage | undefined;

  constructor(private readonly downloadedBytes?: () => number) {}

  /** Packages fetched from the mirror rather than the cache. */
  get downloaded(): number {
    return this.retrieved;
  }
  get total(): number {
    return this.packages;
  }

  feed(rawLine: string): ProgressUpdate | undefined {
    const line = rawLine.trim();
    let m: RegExpExecArray | null;
    if (!line.startsWith('I: ')) return undefined;
    const msg = line.slice(3);
    if ((m = /^Retrieving (InRelease|Release|Release\.gpg|Packages)\b/.exec(msg))) return this.set('index', `fetching ${m[1]}`);
    if (/^(Checking Release signature|Valid Release signature|Validating Packages)/.test(msg)) return this.set('index', msg.replace(/ \(key id.*\)$/, ''));
    if (/^(Resolving dependencies|Found additional|Checking component)/.test(msg)) return this.set('resolve', 'resolving dependencies');
    if ((m = /^Retrieving (\S+) (\S+)$/.exec(msg))) {
      this.retrieved++;
      this.lastRetrieving = m[1];
      this.lastDownload = { what: `downloading ${m[1]}` };
      return this.set('download', this.downloadText()!);
    }
    if ((m = /^Validating (\S+) (\S+)$/.exec(msg))) {
      this.packages++;
      this.lastDownload = { what: `package ${this.packages}: ${m[1]}`, from: this.lastRetrieving === m[1] ? 'downloaded' : 'cached' };
      return this.set('download', this.downloadText()!);
    }
    if ((m = /^Extracting (\S+?)\.\.\.$/.exec(msg))) {
      this.extracted++;
      return this.set('extract', `extracting ${this.count(this.extracted)} ${m[1]}`);
    }
    if (/^Installing core packages/.test(msg)) return this.set('install', 'installing core packages');
    if (/^Unpacking the base system/.test(msg)) return this.set('base', 'unpacking the base system');
    if (/^Configuring the base system/.test(msg)) return this.set('base', 'configuring the base system');
    if ((m = /^Unpacking (?!required)(\S+?)\.\.\.$/.exec(msg))) {
      this.unpacked++;
      return this.set('unpack', `unpacking ${this.count(this.unpacked)} ${m[1]}`);
    }
    if (/^Unpacking required packages/.test(msg)) return this.set('unpack', 'unpacking required packages');
    if ((m = /^Configuring (?!required)(\S+?)\.\.\.$/.exec(msg))) {
      this.configured++;
      return this.set('configure', `configuring ${this.count(this.configured)} ${m[1]}`);
    }
    if (/^Configuring required packages/.test(msg)) return this.set('configure', 'configuring required packages');
    if (/^Base system installed successfully/.test(msg)) return this.set('done', 'base system installed');
    return undefined;
  }

  /** The download stage's text with the current counts and bytes (undefined before that stage). */
  downloadText(): string | undefined {
    if (!this.lastDownload) return undefined;
    const { what, from } = this.lastDownload;
    const bytes = this.downloadedBytes?.() ?? 0;
    const downloaded = `${this.retrieved} downloaded${bytes > 0 ? `, ${formatBytes(bytes)}` : ''}`;
    if (from === undefined) return `${what} (${downloaded})`;
    return `${what} (${from}; ${downloaded}${bytes > 0 ? ';' : ','} ${this.packages - this.retrieved} from cache)`;
  }

  private count(n: number): string {
    return this.packages ? `${n}/${this.packages}` : String(n);
  }

  private set(stage: DebootstrapStage, text: string): ProgressUpdate {
    this.stage = stage;
    return { stage, text };
  }
}

/** The .deb files in dir (none when it does not exist yet). */
async function debsIn(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((f) => f.endsWith('.deb'));
  } catch {
    return [];
  }
}

/**
 * Bytes debootstrap has downloaded so far, which it does not print: the sizes of the .deb
 * files that appeared, since start(), in the directories it downloads into (its --cache-dir;
 * without one, the target's var/cache/apt/archives and its partial/). A file that was there
 * before came from the cache and is not counted (nor is one fetched again because its checksum
 * failed: a rare undercount). Each poll() is one readdir per directory and one stat per new
 * file; the caller polls about once a second during the download stage.
 */
export class DownloadMeter {
  private readonly before = new Set<string>();
  private polling: Promise<boolean> | undefined;
  bytes = 0;

  /**
   * dirs in the reverse of the order a file moves through them (archives/ before partial/):
   * a file moved between two readdirs is then missed once, never counted twice.
   */
  constructor(private readonly dirs: string[]) {}

  async start(): Promise<void> {
    for (const dir of this.dirs) for (const name of await debsIn(dir)) this.before.add(join(dir, name));
  }

  /** Measures again; true when the count changed. A poll while one runs shares it. */
  poll(): Promise<boolean> {
    this.polling ??= this.measure().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async measure(): Promise<boolean> {
    let total = 0;
    for (const dir of this.dirs) {
      for (const name of await debsIn(dir)) {
        const path = join(dir, name);
        if (this.before.has(path)) continue;
        try {
          total += (await stat(path)).size;
        } catch {
          // moved or removed since the readdir
        }
      }
    }
    const changed = total !== this.bytes;
    this.bytes = total;
    return changed;
  }
}
