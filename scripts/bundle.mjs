// Bundles the CLI into one CommonJS file, dist/bundle/labctl.cjs, and seeds V8's code cache
// for it (dist/bundle/labctl.cjs.cache; bin/labctl.js loads both). Start-up dominates short
// commands like `labctl net up`: as ES modules, Node compiles the whole bundle from source at
// every start (~60 ms here, and ~20 ms more in garbage collection); Node 20 has no compile
// cache for ES modules, but vm.Script takes V8's cached data for a CommonJS wrapper.
// Modules reached only through `await import()` stay lazy: esbuild wraps them in functions
// that run on first import. dbus-next stays external: it is CommonJS with optional native parts.
import { rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';

rmSync('dist/bundle', { recursive: true, force: true });

const common = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: true,
  sourcemap: true,
  // CommonJS has no import.meta; the sources use import.meta.url to find machines/, images/
  // and systemd/ beside them, and the bundle sits as deep in the tree as src/*/*.ts do.
  // (import.meta.resolve is used only on the way that runs the sources through tsx.)
  define: { 'import.meta.url': '__labctlBundleUrl' },
  banner: { js: "var __labctlBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logOverride: { 'empty-import-meta': 'silent' },
  logLevel: 'warning',
};
await build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/bundle/labctl.cjs', external: ['dbus-next'] });
// The probe agent (src/stun/agent.ts) runs as its own process in a namespace, three or more
// at once during `labctl check`: a small file of its own, started by node directly.
await build({ ...common, entryPoints: ['src/stun/agent.ts'], outfile: 'dist/bundle/agent.cjs' });

// Seed the code cache with what a common command compiles: loading the lab file, validating
// and planning it. bin/labctl.js writes the cache when it finds none (or V8 rejects it).
execFileSync(process.execPath, ['bin/labctl.js', 'validate'], { stdio: 'ignore', env: { ...process.env, LABCTL_FROM_SOURCE: '' } });
