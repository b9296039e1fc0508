// Running a build: the plan's steps as listr2 tasks, cleanup on failure or signal.
import { existsSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { Listr, type ListrRendererFactory, type ListrTaskWrapper } from 'listr2';
import { InterruptedError } from '../util/errors.js';
import type { ImageMeta } from './meta.js';
import { resolveDataDir } from '../host/dirs.js';
import { cachedBases } from './base-cache.js';
import { chooseBaseToExtend, createContext, planBuild, type BuildContext, type BuildOptions, type StepIO } from './plan.js';
import { bootstrapHash, loadRecipe, unknownSuiteWarning, withMirror, type Recipe } from './recipe.js';
import { mountAt, loopMount, warnings } from './mount.js';
import { imageState, readFsid, readMeta } from './meta.js';
import { killProcessesUsing } from './procs.js';
import { removeNewBuild } from './stale-build.js';

const buildInterrupted = (signal: string) => new InterruptedError(`interrupted by ${signal}; the partial build was cleaned up`);

/** How long an interrupted build waits for its running step to end before it cleans up anyway. */
const STEP_SETTLE_MS = 20_000;

export type RendererName = 'default' | 'simple' | 'verbose' | 'silent';

export interface BuildImageOptions {
  dataDir?: string;
  /** where caches live (default DATA/cache); lets several data dirs share downloads */
  cacheDir?: string;
  /** replaces the recipe's mirror */
  mirror?: string;
  /** build the recipe under another image name */
  name?: string;
  /** default true; false = --no-cache (rebuild from nothing, then refresh the cache) */
  cache?: boolean;
  /** default true; false = --insecure-no-verify */
  verify?: boolean;
  /** stream every command's output to log */
  verbose?: boolean;
  renderer?: RendererName;
  /** install SIGINT/SIGTERM handlers that clean up and exit 130 (the CLI does) */
  handleSignals?: boolean;
  /** where NAME recipes are looked up (default images/ of the project) */
  recipesDir?: string;
  /** where --verbose lines go (default stderr) */
  log?: (line: string) => void;
}

export interface BuildResult {
  name: string;
  dataDir: string;
  imageFile: string;
  metaFile: string;
  /** DATA/mnt/NAME/rootfs: where the read-only rootfs is once mounted */
  rootfs: string;
  mounted: boolean;
  baseFromCache: boolean;
  /** packages apt added to a cached base of the same bootstrap (instead of a debootstrap) */
  baseExtendedWith?: string[];
  seconds: number;
  steps: { name: string; seconds: number }[];
  meta: ImageMeta;
}

/** Resolves NAME/FILE to a recipe with the build's mirror. */
export function resolveRecipe(nameOrRecipe: string | Recipe, options: Pick<BuildImageOptions, 'mirror' | 'name' | 'recipesDir'> = {}): Recipe {
  let recipe =
    typeof nameOrRecipe === 'string'
      ? loadRecipe(nameOrRecipe, { ...(options.recipesDir ? { recipesDir: options.recipesDir } : {}), ...(options.name ? { name: options.name } : {}) })
      : { ...nameOrRecipe, ...(options.name ? { name: options.name } : {}) };
  recipe = withMirror(recipe, options.mirror);
  return recipe;
}

/** Builds an image: NAME (images/NAME.yaml), a recipe FILE, or a parsed recipe. */
export async function buildImage(nameOrRecipe: string | Recipe, options: BuildImageOptions = {}): Promise<BuildResult> {
  const recipe = resolveRecipe(nameOrRecipe, options);
  const suiteWarning = unknownSuiteWarning(recipe);
  if (suiteWarning) warnings.emit(suiteWarning);
  const buildOptions: BuildOptions = {
    cache: options.cache !== false,
    verify: options.verify !== false,
    verbose: Boolean(options.verbose),
  };
  const dataDir = resolveDataDir(options.dataDir);
  const ctx = createContext({ recipe, options: buildOptions, dataDir, ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}) });
  ctx.cacheHit = buildOptions.cache && existsSync(ctx.baseStream);
  // Signatures: apt inside the base checks them with the recipe's keyring (install-packages
  // copies it in); an unverified base is not extended.
  if (!ctx.cacheHit && buildOptions.cache && buildOptions.verify) {
    const extend = chooseBaseToExtend(cachedBases(dirname(ctx.baseStream)), bootstrapHash(recipe, true), ctx.packages);
    if (extend) ctx.extendBase = extend;
  }
  const plan = planBuild({ recipe, options: buildOptions, cacheHit: ctx.cacheHit, extend: Boolean(ctx.extendBase) });
  const log = options.log ?? ((line: string) => process.stderr.write(`  ${line}\n`));
  const renderer = options.renderer ?? (buildOptions.verbose ? 'simple' : 'default');
  const interactive = renderer === 'default' && Boolean(process.stdout.isTTY);

  let cleanup: Promise<void> | undefined;
  const cleanUp = () => (cleanup ??= cleanupFailedBuild(ctx));
  /** the running step, settled either way (so an interrupted build can wait for it) */
  let inFlight: Promise<void> | undefined;
  // The cleanup must not run beside a step: a command the step starts meanwhile (a loop
  // mount) would come after it and stay. So stop the step first: ctx.interrupted keeps it
  // from starting another command, killing what uses the new image ends the one it runs
  // (a Ctrl-C on a terminal reaches it too, a kill of labctl alone does not), and its end
  // is awaited, within a bound, since a command stuck in the kernel cannot be killed.
  const stopAndCleanUp = async () => {
    // Before the build lock is taken, the .new files may be another build's.
    if (ctx.releaseBuildLock) await killProcessesUsing([ctx.paths.newMountDir, ctx.paths.newImageFile]);
    await settleWithin(inFlight, STEP_SETTLE_MS);
    await cleanUp();
  };
  let signalHandler: ((signal: NodeJS.Signals) => void) | undefined;
  if (options.handleSignals) {
    signalHandler = (signal) => {
      if (ctx.interrupted) {
        process.stderr.write(`\nlabctl: still cleaning up after ${ctx.interrupted}, please wait\n`);
        return;
      }
      ctx.interrupted = signal;
      process.stderr.write(`\nlabctl: ${signal}: stopping the build and cleaning up\n`);
      void stopAndCleanUp()
        .then(() => process.stderr.write('labctl: build interrupted; cleaned up (no mount, loop device or partial image left)\n'))
        .catch((e: unknown) => process.stderr.write(`labctl: cleanup failed: ${(e as Error).message}\n`))
        .finally(() => {
          if (process.stderr.isTTY) process.stderr.write('\x1b[?25h');
          process.exit(130);
        });
    };
    process.on('SIGINT', signalHandler);
    process.on('SIGTERM', signalHandler);
  }

  const timings: { name: string; seconds: number }[] = [];
  let failure: unknown;
  const tasks = new Listr<BuildContext>(
    plan.map((step) => ({
      title: step.title,
      task: async (_: BuildContext, task: ListrTaskWrapper<BuildContext, ListrRendererFactory, ListrRendererFactory>) => {
        if (ctx.interrupted) throw buildInterrupted(ctx.interrupted);
        const started = Date.now();
        let lastStage: string | undefined;
        const io: StepIO = {
          progress(text, stage) {
            // In a log (no TTY) only a change of stage is worth a line.
            if (!interactive && stage !== undefined && stage === lastStage) return;
            lastStage = stage;
            task.output = text;
          },
          log,
        };
        ctx.io = io;
        const running = step.run(ctx, io);
        inFlight = running.then(
          () => undefined,
          () => undefined,
        );
        try {
          await running;
        } catch (error) {
          // A step killed by the cleanup of an interrupted build failed because of the signal.
          if (ctx.interrupted) throw buildInterrupted(ctx.interrupted);
          // The task list shows the first line; the caller gets the whole error.
          failure = error;
          const first = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
          throw new Error(first.length > 160 ? `${first.slice(0, 157)}...` : first);
        }
        timings.push({ name: step.name, seconds: (Date.now() - started) / 1000 });
        if (ctx.interrupted) throw buildInterrupted(ctx.interrupted);
      },
    })),
    {
      concurrent: false,
      exitOnError: true,
      registerSignalListeners: false,
      renderer,
      fallbackRenderer: 'simple',
      rendererOptions: { collapseSubtasks: false },
      ctx,
    } as never,
  );

  try {
    await tasks.run();
  } catch (error) {
    await cleanUp();
    if (ctx.interrupted) {
      // The signal handler exits the process; when it does not (no handler), say so.
      throw buildInterrupted(ctx.interrupted);
    }
    throw failure ?? error;
  } finally {
    ctx.releaseBuildLock?.();
    if (signalHandler) {
      process.off('SIGINT', signalHandler);
      process.off('SIGTERM', signalHandler);
    }
  }
  const paths = ctx.paths;
  return {
    name: ctx.name,
    dataDir,
    imageFile: paths.imageFile,
    metaFile: paths.metaFile,
    rootfs: paths.rootfs,
    mounted: Boolean(mountAt(paths.mountDir)),
    baseFromCache: ctx.cacheHit,
    ...(ctx.extendBase ? { baseExtendedWith: ctx.extendBase.missing } : {}),
    seconds: (Date.now() - ctx.startedAt) / 1000,
    steps: timings,
    meta: ctx.meta!,
  };
}

/** Resolves when promise settles or after ms, whichever comes first. */
function settleWithin(promise: Promise<void> | undefined, ms: number): Promise<void> {
  if (!promise) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function cleanupFailedBuild(ctx: BuildContext): Promise<void> {
  // Only a build that took the image's build lock made anything (and may remove it).
  if (!ctx.releaseBuildLock) return;
  if (ctx.swapped) return; // the new image is in place: nothing half-made is left
  const p = ctx.paths;
  if (readFsid(p.imageFile) === ctx.fsid && readMeta(p.newMetaFile)?.fsid === ctx.fsid) {
    // Stopped between the two renames of the swap: finish it rather than break both images.
    renameSync(p.newMetaFile, p.metaFile);
    ctx.swapped = true;
    return;
  }
  await removeNewBuild(ctx);
  // A failed swap may have unmounted the previous image: put it back as it was.
  if (ctx.oldWasMounted && !mountAt(ctx.paths.mountDir) && imageState(ctx.paths).state === 'ready') {
    await loopMount(ctx.paths.imageFile, ctx.paths.mountDir, { step: 'cleanup', allowFailure: true });
  }
}
