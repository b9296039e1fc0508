// The build plan, mkosi style: one BuildContext and a flat list of named steps.
// planBuild() is pure: it picks the steps from the recipe and the options (and
// whether a cached base exists, which the caller found out), nothing runs here.
import { randomUUID } from 'node:crypto';
import { distributionOf, type Distribution } from './distro/index.js';
import type { ImageMeta } from './meta.js';
import { baseStreamFile, debCacheDir, imagePaths, type ImagePaths } from './paths.js';
import { baseHash, effectivePackages, recipeHash, type Recipe } from './recipe.js';
import * as steps from './steps.js';

export { debootstrapCommand, DebootstrapProgress } from './debootstrap.js';

export interface BuildOptions {
  /** use the caches (cached base subvolume, downloaded .debs); false = --no-cache */
  cache: boolean;
  /** check archive signatures with the recipe's keyring; false = --insecure-no-verify */
  verify: boolean;
  /** stream every command's output */
  verbose: boolean;
}

/** What a step reports while it runs. */
export interface StepIO {
  /** short progress text shown under the running step (stage: the part that, when it changes, is worth a line in a log) */
  progress(text: string, stage?: string): void;
  /** a line of command output (shown with --verbose) */
  log(line: string): void;
}

export interface BuildContext {
  recipe: Recipe;
  distro: Distribution;
  name: string;
  paths: ImagePaths;
  options: BuildOptions;
  hashes: { base: string; recipe: string };
  /** the recipe's packages plus the lab's required ones */
  packages: string[];
  /** where the cached base of this recipe is (or will be) */
  baseStream: string;
  /** debootstrap --cache-dir */
  debCache: string;
  /** a cached base exists and will be used instead of debootstrap */
  cacheHit: boolean;
  /**
   * No cached base of this package list, but one of the same bootstrap with fewer
   * packages: it is restored and apt installs what it lacks (instead of debootstrap).
   */
  extendBase?: BaseToExtend;
  /** uuid given to mkfs.btrfs: ties the metadata to the image file */
  fsid: string;
  startedAt: number;
  io: StepIO;
  /** set by the signal handler */
  interrupted?: string;
  /** the previous image was mounted when the swap started (remount it if the swap fails) */
  oldWasMounted: boolean;
  swapped: boolean;
  meta?: ImageMeta;
  /** set by the prepare step, released when the build ends */
  releaseBuildLock?: () => void;
}

export interface Step {
  name: string;
  title: string;
  run(ctx: BuildContext, io: StepIO): Promise<void>;
}

interface PlanInput {
  recipe: Recipe;
  options: BuildOptions;
  cacheHit: boolean;
  /** a cached base to extend with apt (when cacheHit is false) */
  extend?: boolean;
}

/** A cached base as its .json beside the .stream describes it. */
export interface CachedBase {
  stream: string;
  bootstrapHash?: string;
  packages: string[];
}

interface BaseToExtend {
  stream: string;
  /** what the recipe needs that the cached base lacks, in the recipe's order */
  missing: string[];
}

/**
 * The cached base a build can extend: same bootstrap (distribution, suite, mirror, keyring,
 * variant, components, verification), and a package list the recipe's contains. The one
 * lacking the fewest packages wins. A base with a package the recipe dropped is no use:
 * removing packages with apt leaves their dependencies behind, unlike a fresh debootstrap.
 * Pure.
 */
export function chooseBaseToExtend(cached: CachedBase[], bootstrapHash: string, packages: string[]): BaseToExtend | undefined {
  const wanted = new Set(packages);
  let best: BaseToExtend | undefined;
  for (const c of cached) {
    if (c.bootstrapHash !== bootstrapHash) continue;
    const has = new Set(c.packages);
    if (![...has].every((p) => wanted.has(p))) continue;
    const missing = packages.filter((p) => !has.has(p));
    if (missing.length === 0) continue; // that would be this recipe's own base (a cache hit)
    if (!best || missing.length < best.missing.length) best = { stream: c.stream, missing };
  }
  return best;
}

const quietIO: StepIO = { progress() {}, log() {} };

export function createContext(input: { recipe: Recipe; options: BuildOptions; dataDir: string; cacheDir?: string; cacheHit?: boolean }): BuildContext {
  const { recipe, options } = input;
  const paths = imagePaths(input.dataDir, recipe.name, input.cacheDir);
  const base = baseHash(recipe, options.verify);
  return {
    recipe,
    distro: distributionOf(recipe.distribution),
    name: recipe.name,
    paths,
    options,
    hashes: { base, recipe: recipeHash(recipe, options.verify) },
    packages: effectivePackages(recipe),
    baseStream: baseStreamFile(paths.cacheDir, base),
    debCache: debCacheDir(paths.cacheDir, recipe.distribution, recipe.suite, recipe.architecture),
    cacheHit: input.cacheHit ?? false,
    fsid: randomUUID(),
    startedAt: Date.now(),
    io: quietIO,
    oldWasMounted: false,
    swapped: false,
  };
}

/** The steps of one build, in order. */
export function planBuild(input: PlanInput): Step[] {
  const { recipe, cacheHit } = input;
  const plan: Step[] = [steps.checkHost, steps.prepare, steps.createImageFile, steps.makeFilesystem, steps.mountImage];
  if (cacheHit) {
    plan.push(steps.restoreBase);
  } else if (input.extend) {
    plan.push(steps.restoreBase, steps.installPackages, steps.cleanPackages, steps.saveBase);
  } else {
    plan.push(steps.createSubvolume, steps.debootstrap, steps.configureApt, steps.cleanPackages, steps.saveBase);
  }
  if (recipe.files.length) plan.push(steps.addFiles);
  if (recipe.commands.length) plan.push(steps.runCommands, steps.cleanAfterCommands);
  if (recipe.rootPasswordFile) plan.push(steps.setRootPassword);
  plan.push(steps.tuneBoot, steps.resetIdentity, steps.setReadOnly, steps.verifyImage, steps.writeMetadata, steps.unmountNew, steps.swap);
  return plan;
}
