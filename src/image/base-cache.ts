// The cache of bootstrapped bases: cache/base/HASH.stream (a `btrfs send` stream) and, beside
// it, HASH.json describing it. The one place that knows the description's file and shape:
// saving writes it, a build reads them all to find a base apt can extend, and a damaged or
// pruned base goes with its description.
import { existsSync, readFileSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { listDir } from '../util/fs.js';
import { writeJsonAtomic } from './meta.js';
import type { CachedBase } from './plan.js';

interface BaseDescription {
  baseHash: string;
  /** the bootstrap without its package list (see recipe.ts bootstrapHash) */
  bootstrapHash: string;
  distribution: string;
  suite: string;
  architecture: string;
  mirror: string;
  packages: string[];
  created: string;
}

/** HASH.json beside HASH.stream. */
function descriptionFile(stream: string): string {
  return stream.replace(/\.stream$/, '.json');
}

export function describeBase(stream: string, description: BaseDescription): void {
  writeJsonAtomic(descriptionFile(stream), description);
}

/** A base and its description, gone from the cache. */
export async function dropBase(stream: string): Promise<void> {
  await rm(stream, { force: true });
  await rm(descriptionFile(stream), { force: true });
}

/** The described bases in a cache's base directory (what a build may extend). */
export function cachedBases(dir: string): CachedBase[] {
  const out: CachedBase[] = [];
  for (const name of listDir(dir).filter((n) => n.endsWith('.stream'))) {
    const stream = join(dir, name);
    const json = descriptionFile(stream);
    if (!existsSync(json)) continue;
    try {
      const d = JSON.parse(readFileSync(json, 'utf8')) as Partial<BaseDescription>;
      if (typeof d.bootstrapHash !== 'string' || !Array.isArray(d.packages)) continue;
      out.push({ stream, bootstrapHash: d.bootstrapHash, packages: d.packages.map(String) });
    } catch {
      // unreadable: not a candidate
    }
  }
  return out;
}

/** Bases cached before labctl recorded their bootstrap lack its hash: add it, so later builds can extend them. */
export function noteBootstrapHash(stream: string, bootstrapHash: string): void {
  try {
    const d = JSON.parse(readFileSync(descriptionFile(stream), 'utf8')) as Record<string, unknown>;
    if (d.bootstrapHash === undefined) writeJsonAtomic(descriptionFile(stream), { ...d, bootstrapHash });
  } catch {
    // no description: the base is still good for the recipe it was made for
  }
}

/** Keeps the newest few cached bases (each is a full root filesystem). */
export async function pruneBaseCache(dir: string, keep: string, max = 4): Promise<void> {
  const entries = listDir(dir).filter((f) => f.endsWith('.stream'));
  const withTimes = await Promise.all(entries.map(async (f) => ({ f: join(dir, f), t: (await stat(join(dir, f))).mtimeMs })));
  withTimes.sort((a, b) => b.t - a.t);
  for (const { f } of withTimes.slice(max)) {
    if (f === keep) continue;
    await dropBase(f);
  }
}
