#!/usr/bin/env node
/* global setTimeout, fetch, window */
// Retakes docs/dashboard.png: a daemon with three VMs, two running (one with a disk under a
// read/write loop), the dashboard in chromium with web1's console and ~45 s of charts.
// Needs `npm run build`, chromium and a guest (as the tests find them). Takes about a minute.
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { Daemon } = await import(join(root, 'dist/src/daemon/server.js'));
const { launchBrowser } = await import(join(root, 'dist/tests/lib/browser.js'));
const { requireGuest } = await import(join(root, 'dist/tests/lib/guest.js'));
const out = process.argv[2] ?? join(root, 'docs/dashboard.png');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'typevisor-shot-'));
const disk = join(dir, 'data.img');
writeFileSync(disk, '');
truncateSync(disk, 32 << 20);
const daemon = new Daemon({ stateDir: join(dir, 'state'), port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: requireGuest().dir }, log: () => {} });
const browser = await launchBrowser();
try {
  const base = await daemon.listen();
  const headers = { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json' };
  for (const def of [{ name: 'web1', memory: '128M', drives: [{ file: disk }] }, { name: 'db', memory: '256M', limits: { cpu: 0.25 } }, { name: 'build', memory: '64M' }]) {
    const r = await fetch(`${base}/v1/vms`, { method: 'POST', headers, body: JSON.stringify(def) });
    if (r.status !== 201) throw new Error(`define ${def.name}: ${await r.text()}`);
  }
  const page = await (await browser.newContext({ viewport: { width: 1200, height: 1010 } })).newPage();
  await page.goto(`${base}/?token=${daemon.token}`);
  await page.locator('article.vm[data-name="web1"] button[data-action="start"]').click();
  await page.locator('article.vm[data-name="db"] button[data-action="start"]').click();
  await page.locator('article.vm[data-name="web1"] button[data-action="console"]').click();
  await page.waitForFunction(() => window.typevisor.consoleText().includes('~ # '), null, { timeout: 120_000 });
  await page.click('#terminal');
  const type = async (s) => { await page.keyboard.type(s); await page.keyboard.press('Enter'); };
  await sleep(8000);
  await type('dmesg -n 1; (while true; do dd if=/dev/zero of=/dev/vda bs=64k count=128 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null; sleep 4; done) &');
  await sleep(30_000);
  for (const cmd of ['clear', 'uname -a', 'cat /proc/cpuinfo | head -6', 'free -m', 'cat /sys/block/vda/size']) await type(cmd);
  await sleep(3000);
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
}
