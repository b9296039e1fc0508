#!/usr/bin/env node
// Entry point. Runs, in order of preference: the bundled CLI (dist/bundle/labctl.cjs, from
// `npm run build`), the compiled modules (dist/cli), or the TypeScript sources through tsx
// (a checkout without a build). LABCTL_FROM_SOURCE=1 forces the sources.
//
// The bundle is loaded through vm.Script with V8's code cache beside it, so that a start
// deserializes compiled code instead of parsing ~1 MB of JavaScript: about 100 ms less for
// every command on a 2-core VM. When the cache is missing, or V8 rejects it (another Node
// version), this process writes a fresh one as it exits; a cache that cannot be written
// (a read-only install) only costs the speed. This file is CommonJS (bin/package.json):
// an ES module entry would cost Node's ES module loader, ~20 ms more per start.
'use strict';
const { existsSync, readFileSync, renameSync, rmSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { pathToFileURL } = require('node:url');
const Module = require('node:module');
const vm = require('node:vm');

const root = join(__dirname, '..');
const bundle = join(root, 'dist', 'bundle', 'labctl.cjs');
const compiled = join(root, 'dist', 'cli', 'main.js');

function runBundle(file) {
  const cacheFile = `${file}.cache`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  // esbuild writes ASCII only (it escapes other characters), so latin1 reads it exactly, faster.
  const script = new vm.Script(Module.wrap(readFileSync(file, 'latin1')), { filename: file, cachedData });
  if (cachedData === undefined || script.cachedDataRejected) {
    process.once('exit', () => {
      // Written beside it and renamed over it: a concurrent start reads the old or the new.
      const tmp = `${cacheFile}.${process.pid}`;
      try {
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile);
      } catch {
        // not writable here: run without a cache
        try {
          rmSync(tmp, { force: true });
        } catch {
          // nothing was written
        }
      }
    });
  }
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(dirname(file));
  mod.loaded = true;
  script.runInThisContext().call(mod.exports, mod.exports, (id) => mod.require(id), mod, file, dirname(file));
}

async function runModules() {
  if (!process.env.LABCTL_FROM_SOURCE && existsSync(compiled)) {
    await import(pathToFileURL(compiled).href);
    return;
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}

if (!process.env.LABCTL_FROM_SOURCE && existsSync(bundle)) runBundle(bundle);
else {
  runModules().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
