#!/usr/bin/env node
// Builds native/ (typevisor's optional helper: preadv2 with RWF_NOWAIT) with node-gyp.
// A failure is reported, not fatal: disks then read through libuv's thread pool only.
// (npm puts its own node-gyp on PATH for scripts and names it in npm_config_node_gyp.)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'native');
if (process.env.TYPEVISOR_NATIVE === '0') process.exit(0);
const prefix = resolve(dirname(process.execPath), '..');
// npm's node-gyp: named by npm when a script runs, else the one npm ships beside this Node.
const bundled = join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const gyp = process.env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : undefined);
const [cmd, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
// This Node's own headers when they are installed beside it (no download).
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
const r = spawnSync(cmd, [...args, 'rebuild', '--release', ...nodedir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-6).join('\n');
  console.warn(`typevisor: the native disk helper did not build (disks read through the thread pool only):\n${why}`);
}
