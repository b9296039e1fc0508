// Finding and reading a lab file: a path, or the name of a built-in lab in machines/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/errors.js';
import type { Lab } from './model.js';
import { parseLab } from './resolve.js';

const DEFAULT_LAB = 'article';
/** machines/ of this checkout (src/lab or dist/lab are two levels below the root). */
const BUILTIN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'machines');

function labPath(fileOrName: string | undefined): string {
  const arg = fileOrName ?? DEFAULT_LAB;
  if (arg.includes('/') || arg.endsWith('.yaml') || arg.endsWith('.yml')) return resolve(arg);
  const builtin = join(BUILTIN_DIR, `${arg}.yaml`);
  return existsSync(builtin) ? builtin : resolve(arg);
}

export function loadLab(fileOrName?: string): Lab {
  const path = labPath(fileOrName);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw UsageError.forFile(path, [
      { path: '', message: code === 'ENOENT' ? 'no such lab file (nor a built-in lab of that name)' : `cannot be read: ${String(e)}` },
    ]);
  }
  return parseLab(text, path);
}
