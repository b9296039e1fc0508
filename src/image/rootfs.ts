// What the build steps write and clean inside the new image's root tree, and the commands
// they run in it. Every path inside the root goes through inRoot() or safeTarget(), so that
// nothing the recipe names (nor a symlink the image's packages made) writes outside it.
import { chmod, copyFile, lstat, mkdir, readFile, readdir, realpath, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UsageError } from '../util/errors.js';
import { inRoot } from './paths.js';
import type { BuildContext, StepIO } from './plan.js';
import { imageKeyringPath } from './recipe.js';

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes sure writing root+path stays inside root (no symlink out of it). */
export async function safeTarget(root: string, path: string): Promise<string> {
  const target = inRoot(root, path);
  await mkdir(dirname(target), { recursive: true });
  const parent = await realpath(dirname(target));
  const realRoot = await realpath(root);
  if (parent !== realRoot && !parent.startsWith(`${realRoot}/`)) throw new UsageError(`files: ${path} resolves outside the image (through a symlink)`);
  const finalTarget = join(parent, target.slice(dirname(target).length + 1));
  try {
    if ((await lstat(finalTarget)).isSymbolicLink()) await unlink(finalTarget);
  } catch {
    /* does not exist yet */
  }
  return finalTarget;
}

/**
 * Puts the recipe's keyring in the image and writes sources.list naming it (signed-by), so
 * that apt in the image (install-packages, and later the machines) checks the archive with
 * the keyring debootstrap checked it with, not just the keys the image's own packages trust
 * (which a private mirror's are not). The distribution's own keyring, when its package
 * installed it, is left as it is. Returns the keyring's path in the image, if it has one.
 */
export async function writeAptSources(ctx: BuildContext): Promise<string | undefined> {
  const root = ctx.paths.newRootfs;
  const keyring = imageKeyringPath(ctx.recipe);
  const packaged = keyring === ctx.distro.defaultKeyring && (await exists(inRoot(root, keyring)));
  if (!packaged && (await exists(ctx.recipe.keyring))) {
    const target = await safeTarget(root, keyring);
    await copyFile(ctx.recipe.keyring, target);
    await chmod(target, 0o644);
  }
  // No keyring on the host is only possible with --insecure-no-verify: apt keeps its own trust then.
  const signedBy = (await exists(inRoot(root, keyring))) ? keyring : undefined;
  await writeFile(inRoot(root, '/etc/apt/sources.list'), ctx.distro.sourcesList(ctx.recipe, signedBy));
  return signedBy;
}

async function emptyDir(dir: string, keep: string[] = []): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return;
  }
  for (const e of entries) if (!keep.includes(e)) await rm(join(dir, e), { recursive: true, force: true });
}

/** Empties apt's and debootstrap's caches in the new root (downloaded .debs, package lists). */
export async function cleanPackageCaches(ctx: BuildContext): Promise<void> {
  const root = ctx.paths.newRootfs;
  await emptyDir(join(root, 'var/cache/apt/archives'), ['partial', 'lock']);
  await emptyDir(join(root, 'var/cache/apt/archives/partial'));
  for (const f of await readdir(join(root, 'var/cache/apt')).catch(() => [] as string[])) {
    if (f.endsWith('.bin')) await rm(join(root, 'var/cache/apt', f), { force: true });
  }
  await emptyDir(join(root, 'var/lib/apt/lists'), ['partial', 'lock', 'auxfiles']);
  await emptyDir(join(root, 'var/lib/apt/lists/partial'));
  await rm(join(root, 'debootstrap'), { recursive: true, force: true });
}

/** Makes root's password field "*" (no password, no login by password) unless one was asked for. */
export async function lockRootPassword(root: string): Promise<void> {
  const shadow = join(root, 'etc/shadow');
  const text = await readFile(shadow, 'utf8');
  const lines = text.split('\n').map((line) => {
    const fields = line.split(':');
    if (fields[0] === 'root' && fields.length > 2 && !['*', '!', '!*'].includes(fields[1] ?? '')) {
      fields[1] = '*';
      return fields.join(':');
    }
    return line;
  });
  await writeFile(shadow, lines.join('\n'));
}

/** Masks each name in dir: a symlink to /dev/null, what `systemctl mask` makes. */
export async function maskIn(dir: string, names: string[], what: string, io: StepIO): Promise<void> {
  if (names.length) await mkdir(dir, { recursive: true });
  for (const name of names) {
    const link = join(dir, name);
    await rm(link, { force: true, recursive: true });
    await symlink('/dev/null', link);
    io.log(`${what} ${name}`);
  }
}

/**
 * A command run in the new root with systemd-nspawn, sharing the host's network. resolv.conf:
 * 'off' leaves the image's own; 'bind-host' lends the host's for the run (apt downloads).
 */
export function inNewRoot(ctx: BuildContext, extra: string[], command: string[], resolvConf: 'off' | 'bind-host' = 'bind-host'): string[] {
  return [
    'systemd-nspawn',
    '--register=no',
    '--keep-unit',
    '--quiet',
    '--as-pid2',
    `--resolv-conf=${resolvConf}`,
    '--timezone=off',
    '--link-journal=no',
    `--directory=${ctx.paths.newRootfs}`,
    '--setenv=DEBIAN_FRONTEND=noninteractive',
    ...extra,
    '--',
    ...command,
  ];
}
