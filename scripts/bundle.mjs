// Bundles the CLI into dist/bundle/ (ES modules, split at dynamic imports so that each
// command loads only what it uses). One file per chunk instead of hundreds of small
// modules halves labctl's start-up time, which dominates `labctl net up`.
// dbus-next stays external: it is CommonJS with optional native parts.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names carry content hashes: start empty, or old chunks pile up beside the new ones.
rmSync('dist/bundle', { recursive: true, force: true });

await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  sourcemap: true,
  external: ['dbus-next'],
  // Bundled CommonJS dependencies call require(); give ES modules one.
  banner: { js: "import { createRequire as __labctlRequire } from 'node:module'; const require = __labctlRequire(import.meta.url);" },
  logLevel: 'warning',
});
