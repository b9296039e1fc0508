#!/usr/bin/env node
// Entry point. Runs, in order of preference: the bundled CLI (dist/bundle, fastest to
// start), the compiled modules (dist/cli), or the TypeScript sources through tsx (a
// checkout without `npm run build`). LABCTL_FROM_SOURCE=1 forces the sources.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = process.env.LABCTL_FROM_SOURCE ? [] : [join(root, 'dist', 'bundle', 'main.js'), join(root, 'dist', 'cli', 'main.js')];
const built = candidates.find((c) => existsSync(c));
if (built) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}
