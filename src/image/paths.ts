// Where images live. One data dir (default /var/lib/labctl, or $LABCTL_DATA_DIR,
// or --data-dir) holds:
//   images/NAME.btrfs        the image file (sparse, one btrfs filesystem)
//   images/NAME.json         its metadata (hashes, suite, created, filesystem uuid)
//   images/NAME.btrfs.new    a build in progress (never taken for an image)
//   mnt/NAME                 where NAME.btrfs is loop-mounted; mnt/NAME/rootfs is the read-only subvolume
//   mnt/NAME.new             where a build in progress is mounted
//   cache/debs/DIST-SUITE-ARCH/   debootstrap --cache-dir (downloaded .debs)
//   cache/base/HASH.stream   `btrfs send` stream of a bootstrapped base keyed by its inputs' hash
//   locks/                   lock files
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/errors.js';

/** The directory with the shipped recipes (images/ at the project root). */
export const RECIPES_DIR = fileURLToPath(new URL('../../images/', import.meta.url));

const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export function checkImageName(name: string): string {
  if (!NAME_RE.test(name) || name.endsWith('.new') || name.includes('..')) {
    throw new UsageError(
      `invalid image name ${JSON.stringify(name)}: use 1-63 characters a-z 0-9 . _ - starting with a letter or digit (and not ending in .new)`,
    );
  }
  return name;
}

export interface ImagePaths {
  dataDir: string;
  cacheDir: string;
  imagesDir: string;
  mntRoot: string;
  locksDir: string;
  /** DATA/images/NAME.btrfs */
  imageFile: string;
  /** DATA/images/NAME.json */
  metaFile: string;
  /** DATA/mnt/NAME */
  mountDir: string;
  /** DATA/mnt/NAME/rootfs */
  rootfs: string;
  /** the same four for a build in progress */
  newImageFile: string;
  newMetaFile: string;
  newMountDir: string;
  newRootfs: string;
  /** lock held for the whole build */
  buildLock: string;
  /** lock held while mounting, unmounting, swapping or removing */
  imageLock: string;
}

export function imagePaths(dataDir: string, name: string, cacheDir?: string): ImagePaths {
  const data = resolve(dataDir);
  const imagesDir = join(data, 'images');
  const mntRoot = join(data, 'mnt');
  const locksDir = join(data, 'locks');
  return {
    dataDir: data,
    cacheDir: cacheDir ? resolve(cacheDir) : join(data, 'cache'),
    imagesDir,
    mntRoot,
    locksDir,
    imageFile: join(imagesDir, `${name}.btrfs`),
    metaFile: join(imagesDir, `${name}.json`),
    mountDir: join(mntRoot, name),
    rootfs: join(mntRoot, name, 'rootfs'),
    newImageFile: join(imagesDir, `${name}.btrfs.new`),
    newMetaFile: join(imagesDir, `${name}.json.new`),
    newMountDir: join(mntRoot, `${name}.new`),
    newRootfs: join(mntRoot, `${name}.new`, 'rootfs'),
    buildLock: join(locksDir, `${name}.build.lock`),
    imageLock: join(locksDir, `${name}.lock`),
  };
}

export function debCacheDir(cacheDir: string, distribution: string, suite: string, architecture: string): string {
  return join(cacheDir, 'debs', `${distribution}-${suite}-${architecture}`);
}

export function baseStreamFile(cacheDir: string, baseHash: string): string {
  return join(cacheDir, 'base', `${baseHash}.stream`);
}

/** Joins an absolute in-image path (like /etc/hostname) onto a root directory, refusing `..`. */
export function inRoot(root: string, absPath: string): string {
  if (!isAbsolute(absPath) || absPath.split('/').includes('..')) throw new UsageError(`bad path inside image: ${absPath}`);
  return join(root, absPath);
}
