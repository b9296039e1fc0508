// Walking a source tree, for the tests' checks of what code they run.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Every regular file under dir, as full paths, sorted. */
export function filesUnder(dir: string): string[] {
  const files: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) files.push(...filesUnder(join(dir, e.name)));
    else if (e.isFile()) files.push(join(dir, e.name));
  }
  return files.sort();
}
