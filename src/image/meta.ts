// Image metadata (DATA/images/NAME.json) and the check that an image file is the
// complete one its metadata describes.
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';
import type { ImagePaths } from './paths.js';

export interface ImageMeta {
  format: 1;
  name: string;
  description?: string;
  distribution: string;
  suite: string;
  architecture: string;
  variant: string;
  mirror: string;
  packages: string[];
  recipeFile?: string;
  recipeHash: string;
  baseHash: string;
  /** uuid of the btrfs filesystem inside the image file: ties this JSON to that file */
  fsid: string;
  sizeBytes: number;
  /** signatures were checked while bootstrapping */
  verified: boolean;
  rootPassword: boolean;
  created: string;
  buildSeconds: number;
  baseFromCache: boolean;
}

export function readMeta(file: string): ImageMeta | undefined {
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as Partial<ImageMeta>;
    if (data && data.format === 1 && typeof data.name === 'string' && typeof data.fsid === 'string' && typeof data.recipeHash === 'string') {
      return data as ImageMeta;
    }
  } catch {
    /* missing or broken */
  }
  return undefined;
}

/** Writes JSON atomically (temp file + rename). */
export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

const SUPERBLOCK = 0x10000;
const MAGIC = '_BHRfS_M';

/** The filesystem uuid from a btrfs image file's primary superblock, or undefined if it is not btrfs. */
export function readFsid(imageFile: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(imageFile, 'r');
    const buf = Buffer.alloc(0x48);
    const n = readSync(fd, buf, 0, buf.length, SUPERBLOCK);
    if (n < buf.length || buf.subarray(0x40, 0x48).toString('latin1') !== MAGIC) return undefined;
    const hex = buf.subarray(0x20, 0x30).toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

type ImageState =
  /** image file and metadata agree */
  | 'ready'
  /** no image file and no metadata */
  | 'absent'
  /** something is there but it is not a complete image (never used) */
  | 'broken';

export function imageState(paths: ImagePaths): { state: ImageState; meta?: ImageMeta; reason?: string } {
  const hasFile = existsSync(paths.imageFile);
  const meta = readMeta(paths.metaFile);
  if (!hasFile && !meta) return { state: 'absent' };
  if (!hasFile) return { state: 'broken', reason: `metadata without image file ${paths.imageFile}` };
  if (!meta) return { state: 'broken', reason: `image file without valid metadata ${paths.metaFile}` };
  const fsid = readFsid(paths.imageFile);
  if (fsid !== meta.fsid)
    return { state: 'broken', meta, reason: `image file does not match its metadata (filesystem ${fsid ?? 'unreadable'} != ${meta.fsid})` };
  return { state: 'ready', meta };
}
