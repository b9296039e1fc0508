// debootstrap: its command line and reading its progress from its "I: ..." lines.
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

export type DebootstrapStage = 'index' | 'resolve' | 'download' | 'extract' | 'install' | 'unpack' | 'configure' | 'base' | 'done';

export interface ProgressUpdate {
  stage: DebootstrapStage;
  /** e.g. "downloading 42: libc6 (3.1 MB cached: 40)" */
  text: string;
}

/**
 * Turns debootstrap's output lines into progress. debootstrap prints
 * "I: Retrieving PKG VER" / "I: Validating PKG VER" per package it fetches
 * (only Validating when the .deb is already in --cache-dir), then
 * "I: Extracting PKG...", "I: Unpacking PKG...", "I: Configuring PKG...".
 */
export class DebootstrapProgress {
  private packages = 0;
  private retrieved = 0;
  private extracted = 0;
  private unpacked = 0;
  private configured = 0;
  private lastRetrieving: string | undefined;
  stage: DebootstrapStage | undefined;

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
      return this.set('download', `downloading ${m[1]} (${this.retrieved} downloaded)`);
    }
    if ((m = /^Validating (\S+) (\S+)$/.exec(msg))) {
      this.packages++;
      const cached = this.packages - this.retrieved;
      const from = this.lastRetrieving === m[1] ? 'downloaded' : 'cached';
      return this.set('download', `package ${this.packages}: ${m[1]} (${from}; ${this.retrieved} downloaded, ${cached} from cache)`);
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

  private count(n: number): string {
    return this.packages ? `${n}/${this.packages}` : String(n);
  }

  private set(stage: DebootstrapStage, text: string): ProgressUpdate {
    this.stage = stage;
    return { stage, text };
  }
}
