#!/usr/bin/env node
// Builds the browser side (src/web/<app>/) into dist/web/<app>/ with esbuild.
// Per app: main.ts (the page) and worker.ts (a Web Worker), when present, are bundled as
// ES modules for browsers; *.html, *.css, *.svg, *.png and *.ico files are copied as they are.
// A page imports CSS (e.g. @xterm/xterm/css/xterm.css) from main.ts: esbuild emits main.css.
// The bundles must not pull in Node: platform 'browser' fails the build on any node:* import.
import { build } from 'esbuild';
import { readdirSync, mkdirSync, copyFileSync, existsSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src/web');
const outRoot = join(root, 'dist/web');
const STATIC = /\.(html|css|svg|png|ico)$/;

const apps = existsSync(srcDir) ? readdirSync(srcDir).filter((d) => statSync(join(srcDir, d)).isDirectory() && d !== 'shared') : [];
for (const app of apps) {
  const dir = join(srcDir, app);
  const out = join(outRoot, app);
  mkdirSync(out, { recursive: true });
  const entryPoints = ['main.ts', 'worker.ts'].filter((f) => existsSync(join(dir, f))).map((f) => join(dir, f));
  if (entryPoints.length) {
    await build({
      entryPoints,
      outdir: out,
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome110', 'firefox115', 'safari16'],
      minify: true,
      sourcemap: true,
      legalComments: 'linked',
      logLevel: 'warning',
    });
  }
  for (const f of readdirSync(dir)) if (STATIC.test(f)) copyFileSync(join(dir, f), join(out, f));
}
console.log(`build-web: ${apps.length ? apps.join(', ') : 'no apps'} -> dist/web`);
