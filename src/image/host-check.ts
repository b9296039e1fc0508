// What a build needs of the host before it creates anything: its tools, and the recipe's
// keyring. The check-host step asks; these say what is missing and how to get it.
import { constants as fsc } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../util/errors.js';
import { readHostOs } from './host-os.js';
import type { BuildContext } from './plan.js';

async function hostHas(tool: string): Promise<boolean> {
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    try {
      await access(join(dir, tool), fsc.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

const TOOL_PACKAGES: Record<string, string> = {
  debootstrap: 'debootstrap',
  'mkfs.btrfs': 'btrfs-progs',
  btrfs: 'btrfs-progs',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  chroot: 'coreutils',
  'systemd-nspawn': 'systemd-container',
  dpkg: 'dpkg',
};

/** The tools the host lacks, each with the package that has it: "debootstrap (package debootstrap)". */
export async function missingHostTools(tools: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const t of tools) if (!(await hostHas(t))) missing.push(`${t} (package ${TOOL_PACKAGES[t] ?? t})`);
  return missing;
}

/** The recipe's keyring is not on the host: which file, which recipe field, and how to get it on this host. */
export function missingKeyringError(ctx: BuildContext): UsageError {
  const { recipe } = ctx;
  const file = recipe.sourceFile ?? `recipe ${recipe.name}`;
  return new UsageError(
    `${file}: keyring: ${recipe.keyring} does not exist (debootstrap checks the ${ctx.distro.label} archive's signatures for ${recipe.suite} with it); nothing was created.\n` +
      `${ctx.distro.keyringProvider(recipe.keyring, readHostOs())}.\n` +
      `Put the keyring at ${recipe.keyring}, or set keyring: in ${file} to where it is.\n` +
      '--insecure-no-verify skips the signature checks instead, which is insecure.',
  );
}
