// The build steps. Each is a named function over the one BuildContext; plan.ts
// decides which run and in what order. Every host command goes through run(). What the
// steps do inside the new root is in rootfs.ts, what they ask of the host in
// host-check.ts, and the removal of an unfinished build in stale-build.ts.
import { constants as fsc, renameSync } from 'node:fs';
import { access, chmod, copyFile, mkdir, open, readFile, rename, rm, rmdir, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { formatCommand } from '../exec/quote.js';
import { CommandError, run, type RunOptions, type RunResult } from '../exec/run.js';
import { acquireLock, withLock } from '../host/lock.js';
import { UsageError } from '../util/errors.js';
import { AptProgress } from './apt-progress.js';
import { describeBase, dropBase, noteBootstrapHash, pruneBaseCache } from './base-cache.js';
import { formatBytes } from './bytes.js';
import { DebootstrapProgress, DownloadMeter, debootstrapCommand } from './debootstrap.js';
import { ImageInUseError } from './errors.js';
import { missingHostTools, missingKeyringError } from './host-check.js';
import { imageInUseBy } from './inuse.js';
import { readFsid, writeJsonAtomic, imageState, type ImageMeta } from './meta.js';
import { detachLoops, loopMount, mountAt, unmountTree, warnings } from './mount.js';
import type { BuildContext, Step, StepIO } from './plan.js';
import { bootstrapHash } from './recipe.js';
import { cleanPackageCaches, exists, inNewRoot, lockRootPassword, maskIn, safeTarget, writeAptSources } from './rootfs.js';
import { removeNewBuild } from './stale-build.js';

/**
 * Throws once the build is interrupted. Called before every host command a step starts:
 * after a signal no new command may start, since the cleanup that follows must find
 * everything a command makes (a loop mount started after it would stay).
 */
function stopIfInterrupted(ctx: BuildContext, step: string): void {
  if (ctx.interrupted) throw new Error(`${step}: interrupted`);
}

/** Runs a host command for a step: output streams to io.log (shown with --verbose). */
async function sh(ctx: BuildContext, step: string, command: string[], options: RunOptions = {}): Promise<RunResult> {
  stopIfInterrupted(ctx, step);
  if (ctx.options.verbose) ctx.io.log(`$ ${formatCommand(command)}`);
  const verboseTap = ctx.options.verbose ? (line: string) => ctx.io.log(line) : undefined;
  const userTap = options.onLine;
  return run(command, {
    step,
    ...options,
    ...(verboseTap || userTap
      ? {
          onLine: (line: string, stream: 'stdout' | 'stderr') => {
            verboseTap?.(line);
            userTap?.(line, stream);
          },
        }
      : {}),
  });
}

// ---------------------------------------------------------------------------

export const checkHost: Step = {
  name: 'check-host',
  title: 'Check the host',
  async run(ctx, io) {
    const { recipe } = ctx;
    const bootstraps = !ctx.cacheHit && !ctx.extendBase;
    // A fault of the recipe or the host's files, not of the privileges: said first, to anyone.
    if (ctx.options.verify && bootstraps && !(await exists(recipe.keyring))) throw missingKeyringError(ctx);
    if (process.getuid?.() !== 0) throw new UsageError('building an image needs root (loop devices, mounts, debootstrap)');
    const tools = ['mkfs.btrfs', 'btrfs', 'losetup', 'mount', 'umount', 'chroot', 'dpkg'];
    if (bootstraps) tools.push('debootstrap');
    if (recipe.commands.length || ctx.extendBase) tools.push('systemd-nspawn');
    const missing = await missingHostTools(tools);
    if (missing.length) throw new UsageError(`missing host tools: ${missing.join(', ')}`);
    const hostArch = (await sh(ctx, 'check-host', ['dpkg', '--print-architecture'])).stdout.trim();
    if (hostArch !== recipe.architecture) {
      throw new UsageError(
        `${recipe.sourceFile ?? recipe.name}: architecture ${recipe.architecture} differs from the host's ${hostArch}; foreign-architecture builds are not supported`,
      );
    }
    if (bootstraps && !(await exists(ctx.distro.debootstrapScript))) {
      throw new UsageError(`debootstrap script ${ctx.distro.debootstrapScript} is missing (package debootstrap)`);
    }
    for (const f of recipe.files) {
      if (f.source && !(await exists(f.source)))
        throw new UsageError(`${recipe.sourceFile ?? recipe.name}: files: source ${f.source} (for ${f.path}) does not exist`);
    }
    if (recipe.rootPasswordFile) {
      try {
        await access(recipe.rootPasswordFile, fsc.R_OK);
      } catch {
        throw new UsageError(`${recipe.sourceFile ?? recipe.name}: root-password-file ${recipe.rootPasswordFile} cannot be read`);
      }
    }
    // The previous image is swapped out at the end: that needs it unused.
    const users = await imageInUseBy(ctx.name, { dataDir: ctx.paths.dataDir });
    if (users.length) throw new ImageInUseError(ctx.name, users, 'rebuild');
    const base = ctx.cacheHit ? 'from cache' : ctx.extendBase ? `from cache + apt (${ctx.extendBase.missing.join(' ')})` : 'by debootstrap';
    io.progress(`${ctx.distro.label} ${recipe.suite} ${recipe.architecture}, base ${base}`);
  },
};

export const prepare: Step = {
  name: 'prepare',
  title: 'Prepare the data directory',
  async run(ctx) {
    const p = ctx.paths;
    for (const d of [p.dataDir, p.imagesDir, p.mntRoot, p.locksDir, p.cacheDir, dirname(ctx.baseStream), ctx.debCache]) {
      await mkdir(d, { recursive: true });
    }
    // One build per image at a time (a second one fails at once rather than waiting).
    ctx.releaseBuildLock = await acquireLock(p.buildLock, { waitMs: 0, what: `another build of image ${ctx.name} is running` });
    // Leftovers of a build that was killed hard (SIGKILL, power loss), its processes first.
    const stopped = await removeNewBuild(ctx);
    if (stopped.length) {
      const what = [...new Map(stopped.map((u) => [u.pid, `${u.pid} (${u.comm})`])).values()];
      warnings.emit(`stopped ${what.length} process(es) of an earlier build of image ${ctx.name} that was killed: ${what.join(', ')}`);
    }
    await mkdir(p.newMountDir, { recursive: true });
  },
};

export const createImageFile: Step = {
  name: 'create-image-file',
  title: 'Create the sparse image file',
  async run(ctx, io) {
    const f = await open(ctx.paths.newImageFile, 'wx', 0o600);
    await f.close();
    await truncate(ctx.paths.newImageFile, ctx.recipe.sizeBytes);
    io.progress(`${ctx.recipe.size} sparse: ${ctx.paths.newImageFile}`);
  },
};

export const makeFilesystem: Step = {
  name: 'mkfs',
  title: 'Make the btrfs filesystem',
  async run(ctx) {
    await sh(ctx, 'mkfs', ['mkfs.btrfs', '--quiet', '--uuid', ctx.fsid, '--label', `labctl-${ctx.name}`.slice(0, 255), ctx.paths.newImageFile]);
  },
};

export const mountImage: Step = {
  name: 'mount',
  title: 'Loop-mount the new image',
  async run(ctx, io) {
    stopIfInterrupted(ctx, 'mount');
    await loopMount(ctx.paths.newImageFile, ctx.paths.newMountDir, { step: 'mount' });
    io.progress(ctx.paths.newMountDir);
  },
};

export const createSubvolume: Step = {
  name: 'create-subvolume',
  title: 'Create the rootfs subvolume',
  async run(ctx) {
    await sh(ctx, 'create-subvolume', ['btrfs', 'subvolume', 'create', ctx.paths.newRootfs]);
  },
};

export const debootstrap: Step = {
  name: 'debootstrap',
  title: 'Bootstrap the system (debootstrap)',
  async run(ctx, io) {
    const command = debootstrapCommand(ctx, ctx.paths.newRootfs);
    // Where debootstrap puts the .debs it downloads (see debootstrapCommand's --cache-dir).
    const archives = join(ctx.paths.newRootfs, 'var/cache/apt/archives');
    const meter = new DownloadMeter(ctx.options.cache ? [ctx.debCache] : [archives, join(archives, 'partial')]);
    await meter.start();
    const progress = new DebootstrapProgress(() => meter.bytes);
    const suite = `${ctx.recipe.suite} from ${ctx.recipe.mirror}`;
    io.progress(`starting: ${suite}`, 'start');
    // A large package can take a while: the byte count moves on between debootstrap's lines.
    const ticker = setInterval(() => {
      if (progress.stage !== 'download') return;
      void meter.poll().then((changed) => {
        const text = progress.stage === 'download' && changed ? progress.downloadText() : undefined;
        if (text) io.progress(text, 'download');
      });
    }, 1000);
    ticker.unref();
    try {
      await sh(ctx, 'debootstrap', command, {
        onLine(line) {
          const update = progress.feed(line);
          if (update) io.progress(update.text, update.stage);
        },
      });
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      // Say what went wrong in debootstrap's words: its E:/W: lines and the end of its log.
      const said = [
        ...new Set(
          `${e.stdout}\n${e.stderr}`
            .split('\n')
            .map((l) => l.trim())
            .filter((l) => /^[EW]: /.test(l)),
        ),
      ].slice(-6);
      const log = await readFile(join(ctx.paths.newRootfs, 'debootstrap', 'debootstrap.log'), 'utf8').catch(() => '');
      const tail = log.trim().split('\n').slice(-6);
      const firstError = said.find((l) => l.startsWith('E: ')) ?? said[0];
      const detail = [...said.filter((l) => l !== firstError), ...(tail.length ? ['debootstrap.log ends with:', ...tail.map((l) => `  ${l}`)] : [])];
      throw new Error(
        `debootstrap ${ctx.recipe.suite} from ${ctx.recipe.mirror} failed (exit ${e.exitCode ?? '?'})${firstError ? `: ${firstError}` : ''}` +
          (detail.length ? `\n${detail.join('\n')}` : ''),
        { cause: e },
      );
    } finally {
      clearInterval(ticker);
    }
    await meter.poll();
    const bytes = meter.bytes > 0 ? ` (${formatBytes(meter.bytes)})` : '';
    io.progress(`${progress.total} packages: ${progress.downloaded} downloaded${bytes}, ${progress.total - progress.downloaded} from the cache`, 'done');
  },
};

export const configureApt: Step = {
  name: 'configure-apt',
  title: 'Configure the package sources',
  async run(ctx, io) {
    const signedBy = await writeAptSources(ctx);
    io.progress(signedBy ? `signed-by ${signedBy}` : 'no keyring (--insecure-no-verify)');
  },
};

export const cleanPackages: Step = {
  name: 'clean-packages',
  title: 'Clean the package caches',
  async run(ctx) {
    await cleanPackageCaches(ctx);
  },
};

export const cleanAfterCommands: Step = {
  name: 'clean-after-commands',
  title: 'Clean the package caches again',
  async run(ctx) {
    await cleanPackageCaches(ctx);
  },
};

const BASE_SUBVOLUME = 'base';

export const saveBase: Step = {
  name: 'save-base',
  title: 'Save the bootstrapped base to the cache',
  async run(ctx, io) {
    const snap = join(ctx.paths.newMountDir, BASE_SUBVOLUME);
    const partial = `${ctx.baseStream}.partial-${process.pid}`;
    await sh(ctx, 'save-base', ['btrfs', 'subvolume', 'snapshot', '-r', ctx.paths.newRootfs, snap]);
    try {
      await saveStream(ctx, io, snap, partial);
    } catch (e) {
      // The cache only speeds up later builds: without it this image is still good.
      if (ctx.interrupted) throw e;
      warnings.emit(`could not save the base to the cache (${(e as Error).message.split('\n')[0]}); the next build bootstraps again`);
      io.progress('not cached (see warning)');
    } finally {
      await rm(partial, { force: true });
      await sh(ctx, 'save-base', ['btrfs', 'subvolume', 'delete', snap], { allowFailure: true });
    }
    await pruneBaseCache(dirname(ctx.baseStream), ctx.baseStream);
  },
};

async function saveStream(ctx: BuildContext, io: StepIO, snap: string, partial: string): Promise<void> {
  await sh(ctx, 'save-base', ['btrfs', 'send', '--quiet', '-f', partial, snap]);
  await rename(partial, ctx.baseStream);
  describeBase(ctx.baseStream, {
    baseHash: ctx.hashes.base,
    bootstrapHash: bootstrapHash(ctx.recipe, ctx.options.verify),
    distribution: ctx.recipe.distribution,
    suite: ctx.recipe.suite,
    architecture: ctx.recipe.architecture,
    mirror: ctx.recipe.mirror,
    packages: ctx.packages,
    created: new Date().toISOString(),
  });
  io.progress(`${ctx.baseStream} (${formatBytes((await stat(ctx.baseStream)).size)})`);
}

export const restoreBase: Step = {
  name: 'restore-base',
  title: 'Restore the base from the cache',
  async run(ctx, io) {
    // This recipe's own base, or (extendBase) one with fewer packages that apt completes.
    const stream = ctx.extendBase?.stream ?? ctx.baseStream;
    const received = join(ctx.paths.newMountDir, BASE_SUBVOLUME);
    try {
      await sh(ctx, 'restore-base', ['btrfs', 'receive', '-f', stream, ctx.paths.newMountDir]);
    } catch (e) {
      if (ctx.interrupted) throw e;
      // A damaged cache entry must not fail every later build: drop it.
      await dropBase(stream);
      throw new Error(`the cached base ${stream} could not be restored and was removed; build again to bootstrap it afresh: ${(e as Error).message}`, {
        cause: e,
      });
    }
    await sh(ctx, 'restore-base', ['btrfs', 'subvolume', 'snapshot', received, ctx.paths.newRootfs]);
    await sh(ctx, 'restore-base', ['btrfs', 'subvolume', 'delete', received]);
    // Mark it recently used so pruning keeps it.
    const now = new Date();
    await utimes(stream, now, now).catch(() => undefined);
    if (!ctx.extendBase) noteBootstrapHash(stream, bootstrapHash(ctx.recipe, ctx.options.verify));
    io.progress(`base ${basename(stream).slice(0, 12)} from ${stream}`);
  },
};

export const installPackages: Step = {
  name: 'install-packages',
  title: 'Install the packages the cached base lacks (apt-get)',
  async run(ctx, io) {
    const missing = ctx.extendBase!.missing;
    // apt's archive is debootstrap's .deb cache, bind-mounted: what either downloaded once
    // is not downloaded again. apt checks the archive's signatures with the recipe's keyring
    // (only verified bases are extended), copied in again: the base's copy may be older.
    await writeAptSources(ctx);
    await mkdir(ctx.debCache, { recursive: true });
    const archives = [`--bind=${ctx.debCache}:/var/cache/apt/archives`];
    io.progress('apt-get update', 'update');
    const update = new AptProgress();
    await sh(ctx, 'install-packages', inNewRoot(ctx, archives, ['apt-get', '-q', 'update']), {
      onLine(line) {
        const u = update.feed(line);
        if (u) io.progress(`apt-get update: ${u.text}`, 'update');
      },
    });
    io.progress(`installing ${missing.join(' ')}`, 'install');
    const install = new AptProgress();
    try {
      await sh(ctx, 'install-packages', inNewRoot(ctx, archives, ['apt-get', '-q', '-y', '--no-install-recommends', 'install', '--', ...missing]), {
        onLine(line) {
          const u = install.feed(line);
          if (u) io.progress(u.text, u.stage);
        },
      });
    } catch (e) {
      if (ctx.interrupted || !(e instanceof CommandError)) throw e;
      const said = `${e.stdout}\n${e.stderr}`
        .split('\n')
        .filter((l) => /^E: /.test(l.trim()))
        .slice(-4);
      throw new Error(
        `apt-get install ${missing.join(' ')} in the cached base failed${said.length ? `:\n${said.join('\n')}` : ` (exit ${e.exitCode ?? '?'})`}\n(--no-cache bootstraps the image afresh)`,
        { cause: e },
      );
    }
    io.progress(
      `${missing.length} package(s) added, ${install.unpacked} unpacked, ${formatBytes(install.fetched)} downloaded (apt-get update: ${formatBytes(update.fetched)})`,
      'done',
    );
  },
};

export const addFiles: Step = {
  name: 'add-files',
  title: 'Add files',
  async run(ctx, io) {
    for (const f of ctx.recipe.files) {
      const target = await safeTarget(ctx.paths.newRootfs, f.path);
      if (f.source) await copyFile(f.source, target);
      else await writeFile(target, f.content ?? '');
      await chmod(target, f.mode);
      io.progress(f.path);
    }
  },
};

export const runCommands: Step = {
  name: 'run-commands',
  title: 'Run the recipe commands',
  async run(ctx, io) {
    for (const [i, command] of ctx.recipe.commands.entries()) {
      io.progress(`${i + 1}/${ctx.recipe.commands.length}: ${formatCommand(command)}`);
      await sh(ctx, `run-commands[${i}]`, inNewRoot(ctx, [], command, 'off'));
    }
  },
};

export const setRootPassword: Step = {
  name: 'set-root-password',
  title: 'Set the root password (from root-password-file)',
  async run(ctx) {
    const file = ctx.recipe.rootPasswordFile!;
    const password = (await readFile(file, 'utf8')).split('\n')[0]?.replace(/\r$/, '') ?? '';
    if (!password) throw new UsageError(`root-password-file ${file} is empty`);
    if (/[:\n]/.test(password)) throw new UsageError(`root-password-file ${file}: the password may not contain ':'`);
    // The password goes on standard input, never on a command line (nor in --verbose's log).
    await sh(ctx, 'set-root-password', ['chroot', ctx.paths.newRootfs, 'chpasswd'], { input: `root:${password}\n` });
  },
};

export const tuneBoot: Step = {
  name: 'tune-boot',
  title: 'Mark the image up to date; mask the units and generators the recipe names',
  async run(ctx, io) {
    const root = ctx.paths.newRootfs;
    // The image was just built, so nothing under /usr is newer than /etc and /var. Saying so
    // (as systemd-update-done would at the first boot) keeps the ConditionNeedsUpdate= units
    // (systemd-sysusers, ldconfig, hwdb and catalog updates) from running at every boot of
    // every ephemeral copy, where their work would be thrown away anyway.
    const usr = await stat(join(root, 'usr'), { bigint: true });
    // utimes() takes float seconds: round up to the next millisecond, so the stamp is never older than /usr.
    const stampTime = (Number(usr.mtimeNs / 1_000_000n) + 1) / 1000;
    for (const dir of ['etc', 'var']) {
      const stamp = join(root, dir, '.updated');
      await writeFile(stamp, `# Written by labctl image build: this tree is up to date with /usr.\nTIMESTAMP_NSEC=${usr.mtimeNs}\n`, { mode: 0o644 });
      await utimes(stamp, stampTime, stampTime);
    }
    // Masking is a symlink to /dev/null in /etc/systemd/system, exactly what `systemctl mask`
    // makes; a generator is masked the same way in /etc/systemd/system-generators (systemd.generator(7)).
    await maskIn(join(root, 'etc/systemd/system'), ctx.recipe.mask, 'masked', io);
    await maskIn(join(root, 'etc/systemd/system-generators'), ctx.recipe.maskGenerators, 'masked generator', io);
  },
};

export const resetIdentity: Step = {
  name: 'reset-identity',
  title: 'Reset machine-id and hostname (fresh in each booted copy)',
  async run(ctx) {
    const root = ctx.paths.newRootfs;
    // Empty /etc/machine-id: systemd (or nspawn) makes a new one for every booted copy.
    const machineId = join(root, 'etc/machine-id');
    await rm(machineId, { force: true });
    await writeFile(machineId, '', { mode: 0o444 });
    const dbusId = join(root, 'var/lib/dbus/machine-id');
    if (await exists(dbusId)) {
      await rm(dbusId, { force: true });
      await symlink('/etc/machine-id', dbusId);
    }
    // No baked hostname: nspawn gives each machine its name.
    await rm(join(root, 'etc/hostname'), { force: true });
    await writeFile(
      join(root, 'etc/hosts'),
      '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n',
    );
    // systemd's first-boot logic must not try to ask questions.
    await rm(join(root, 'var/lib/systemd/random-seed'), { force: true });
    if (!ctx.recipe.rootPasswordFile) await lockRootPassword(root);
  },
};

export const setReadOnly: Step = {
  name: 'set-read-only',
  title: 'Make the rootfs subvolume read-only',
  async run(ctx) {
    await sh(ctx, 'set-read-only', ['btrfs', 'property', 'set', '-ts', ctx.paths.newRootfs, 'ro', 'true']);
  },
};

export const verifyImage: Step = {
  name: 'verify',
  title: 'Verify the image',
  async run(ctx, io) {
    const root = ctx.paths.newRootfs;
    const ro = (await sh(ctx, 'verify', ['btrfs', 'property', 'get', '-ts', root, 'ro'])).stdout.trim();
    if (ro !== 'ro=true') throw new Error(`verify: ${root} is not read-only (${ro})`);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format: ${...} is for dpkg-query
    const query = await sh(ctx, 'verify', ['chroot', root, 'dpkg-query', '-W', '-f', '${Package} ${db:Status-Status}\\n', ...ctx.packages], {
      allowFailure: true,
    });
    const installed = new Set(
      query.stdout
        .split('\n')
        .filter((l) => l.endsWith(' installed'))
        .map((l) => l.split(' ')[0]),
    );
    const missing = ctx.packages.filter((p) => !installed.has(p));
    if (missing.length) throw new Error(`verify: packages not installed in the image: ${missing.join(', ')}`);
    if ((await stat(join(root, 'etc/machine-id'))).size !== 0) throw new Error('verify: /etc/machine-id is not empty');
    if (await exists(join(root, 'etc/hostname'))) throw new Error('verify: /etc/hostname is baked into the image');
    const rootLine = (await readFile(join(root, 'etc/shadow'), 'utf8')).split('\n').find((l) => l.startsWith('root:'));
    const field = rootLine?.split(':')[1] ?? '';
    if (!ctx.recipe.rootPasswordFile && !['*', '!', '!*'].includes(field)) throw new Error('verify: root has a password set');
    io.progress(
      `${ctx.packages.length} required packages installed, machine-id empty, no hostname, root ${ctx.recipe.rootPasswordFile ? 'password from file' : 'without password'}`,
    );
  },
};

export const writeMetadata: Step = {
  name: 'write-metadata',
  title: 'Write the image metadata',
  async run(ctx) {
    const fsid = readFsid(ctx.paths.newImageFile);
    if (fsid !== ctx.fsid) throw new Error(`write-metadata: image filesystem ${fsid ?? 'unreadable'} is not the one made (${ctx.fsid})`);
    const meta: ImageMeta = {
      format: 1,
      name: ctx.name,
      ...(ctx.recipe.description ? { description: ctx.recipe.description } : {}),
      distribution: ctx.recipe.distribution,
      suite: ctx.recipe.suite,
      architecture: ctx.recipe.architecture,
      variant: ctx.recipe.variant,
      mirror: ctx.recipe.mirror,
      packages: ctx.packages,
      ...(ctx.recipe.sourceFile ? { recipeFile: ctx.recipe.sourceFile } : {}),
      recipeHash: ctx.hashes.recipe,
      baseHash: ctx.hashes.base,
      fsid: ctx.fsid,
      sizeBytes: ctx.recipe.sizeBytes,
      verified: ctx.options.verify,
      rootPassword: Boolean(ctx.recipe.rootPasswordFile),
      created: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - ctx.startedAt) / 100) / 10,
      baseFromCache: ctx.cacheHit,
    };
    writeJsonAtomic(ctx.paths.newMetaFile, meta);
    ctx.meta = meta;
  },
};

export const unmountNew: Step = {
  name: 'unmount',
  title: 'Unmount the new image',
  async run(ctx) {
    await sh(ctx, 'unmount', ['sync', '-f', ctx.paths.newRootfs], { allowFailure: true });
    // Give the blocks btrfs freed (downloaded .debs, dpkg's churn) back to the sparse file.
    await sh(ctx, 'unmount', ['fstrim', ctx.paths.newMountDir], { allowFailure: true });
    await unmountTree(ctx.paths.newMountDir, { step: 'unmount' });
    await detachLoops(ctx.paths.newImageFile);
    await rmdir(ctx.paths.newMountDir).catch(() => undefined);
  },
};

export const swap: Step = {
  name: 'swap',
  title: 'Replace the previous image',
  async run(ctx, io) {
    const p = ctx.paths;
    await withLock(p.imageLock, { waitMs: 60_000, what: `image ${ctx.name} is busy` }, async () => {
      // Waiting for the lock can take a while: an interrupted build leaves the previous image alone.
      stopIfInterrupted(ctx, 'swap');
      const wasMounted = Boolean(mountAt(p.mountDir));
      if (wasMounted) {
        const users = await imageInUseBy(ctx.name, { dataDir: p.dataDir });
        if (users.length) throw new ImageInUseError(ctx.name, users, 'replace');
        ctx.oldWasMounted = true;
        await unmountTree(p.mountDir, { step: 'swap' });
        await detachLoops(p.imageFile);
      }
      const hadOld = imageState(p).state !== 'absent';
      // Both renames back to back, with no await between them: a signal handler cannot
      // run in the middle, so the file and its metadata always change together.
      renameSync(p.newImageFile, p.imageFile);
      renameSync(p.newMetaFile, p.metaFile);
      ctx.swapped = true;
      if (wasMounted) {
        await mkdir(p.mountDir, { recursive: true });
        await loopMount(p.imageFile, p.mountDir, { step: 'swap' });
      }
      io.progress(`${hadOld ? 'replaced' : 'created'} ${p.imageFile}${wasMounted ? `, mounted at ${p.mountDir}` : ''}`);
    });
  },
};
