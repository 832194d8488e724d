/**
 * Snapshots across platforms: Node → browser → Node. `typevisor run` (on a pty) boots the
 * test guest, which counts on its console and keeps a file on tmpfs; Ctrl-A S saves it.
 * `typevisor web --restore` serves that file and the page (headless Chromium) resumes it:
 * the count goes on from where it was saved and the file is there. The page's Save snapshot
 * downloads the machine again, and `typevisor run --restore` (no other flags) continues it
 * in Node. Also: corrupt, truncated and wrong-version files picked in the page are refused
 * with the format's message and no machine starts, as are machines with disks or a NIC.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { repoRoot } from '../lib/toolchain.js';
import { requireGuest } from '../lib/guest.js';
import { launchBrowser, pageErrors, printedUrl, screenshot } from '../lib/browser.js';
import { decodeSnapshot, encodeSnapshot, readSnapshotHeader, type SnapshotHeader } from '../../src/snapshot/format.js';
import { Tty } from '../lib/tty.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');
const guest = requireGuest();
const tmp = mkdtempSync(join(tmpdir(), 'typevisor-xplat-'));
const procs: ChildProcess[] = [];
let browser: Browser | null = null;
after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await browser?.close();
  rmSync(tmp, { recursive: true, force: true });
});


function counts(text: string): number[] {
  return [...text.matchAll(/count (\d+)\r*\n/g)].map((m) => Number(m[1]));
}

/** `typevisor web` with its printed URL. */
async function web(args: string[]): Promise<string> {
  const s = spawn(process.execPath, [BIN, 'web', '--listen', '127.0.0.1:0', '--kernel', guest.kernel, '--initrd', guest.initrd, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(s);
  return printedUrl(s);
}

const screen = (page: Page): Promise<string> => page.evaluate(() => window.typevisorVm.screen());

/** Wait for the page's terminal to match; fail at once (with the page's message) if the machine stops. */
async function waitScreen(page: Page, re: RegExp, what: string, ms = 60_000): Promise<void> {
  try {
    await page.waitForFunction(([src, flags]) => new RegExp(src, flags).test(window.typevisorVm.screen()) || window.typevisorVm.state() === 'stopped',
      [re.source, re.flags] as const, { timeout: ms, polling: 200 });
  } catch (e) {
    await screenshot(page, 'snapshot-xplat-failed');
    throw new Error(`${what}: ${(e as Error).message}\n--- status: ${await page.textContent('#status')}\n--- screen:\n${(await screen(page)).slice(-1500)}`);
  }
  assert.notEqual(await page.evaluate(() => window.typevisorVm.state()), 'stopped', `${what}: ${await page.textContent('#status')}`);
}

test('a snapshot goes Node → browser → Node: the count continues and the tmpfs file is kept', { timeout: 240_000 }, async () => {
  const token = `xp-${Math.floor(Math.random() * 1e6)}`;
  const nodeFile = join(tmp, 'node.tvs');
  // 1. Node: boot, count, save with Ctrl-A S, quit.
  const a = new Tty(['run', '-m', '128M', '--kernel', guest.kernel, '--initrd', guest.initrd, '--append', 'console=ttyS0', '--snapshot-file', nodeFile], { cwd: tmp, track: procs });
  await a.wait(/~ # /);
  // The file's content is computed by the guest, so the typed command does not contain it.
  a.write(`mount -t tmpfs none /mnt && echo ${token}-$((6*7)) > /mnt/f\r`);
  a.write('(i=0; while true; do i=$((i+1)); echo "count $i"; usleep 300000; done) &\r');
  await a.wait(/count 4\r*\n/, 60_000);
  a.write(Uint8Array.of(0x01, 0x73)); // Ctrl-A s
  await a.wait(/typevisor: saved .*node\.tvs/);
  const nodeCounts = counts(a.out.slice(0, a.out.indexOf('typevisor: saved')));
  const savedAt = nodeCounts[nodeCounts.length - 1];
  a.write(Uint8Array.of(0x01, 0x78)); // Ctrl-A x
  assert.equal(await a.exited, 0);
  assert.equal((readSnapshotHeader(new Uint8Array(readFileSync(nodeFile))).machine as { kind: string }).kind, 'cli');

  // 2. The browser: typevisor web --restore serves it; the page resumes it without booting.
  const url = await web(['--restore', nodeFile]);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?restore=\/snapshot\.tvs$/);
  browser = await launchBrowser();
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 960, height: 640 } });
  const page = await ctx.newPage();
  const errors = pageErrors(page);
  page.on('worker', (w) => w.on('console', (m) => { if (m.type() === 'error') errors.push(`worker: ${m.text()}`); }));
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => window.typevisorVm.state() !== 'idle' && window.typevisorVm.state() !== 'loading', undefined, { timeout: 60_000, polling: 50 });
  const restoreMs = Date.now() - t0;
  await waitScreen(page, /count \d+\n(.*\n)*count \d+\n/, 'the restored count in the browser');
  assert.equal(await page.evaluate(() => window.typevisorVm.state()), 'running');
  assert.match(await page.textContent('#message') ?? '', /^restored '\/snapshot\.tvs' \(saved .* by typevisor run, typevisor /);
  const firstInBrowser = counts(await screen(page) + '\n')[0];
  assert.ok(firstInBrowser > savedAt && firstInBrowser <= savedAt + 2, `the browser's count goes on from ${savedAt}: first ${firstInBrowser}`);
  assert.doesNotMatch(await screen(page), /Linux version|count 1\n/, 'nothing booted, the count did not start again');
  await page.click('#term');
  await page.keyboard.type('cat /mnt/f\n');
  await waitScreen(page, new RegExp(`\n${token}-42\n`), 'the tmpfs file in the browser');
  await waitScreen(page, new RegExp(`count ${firstInBrowser + 3}\n`), 'the browser keeps counting');

  // Save in the browser: the download is the machine as it is.
  const beforeSave = Math.max(...counts(await screen(page) + '\n'));
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('#save')]);
  assert.match(download.suggestedFilename(), /^typevisor-\d{8}-\d{6}\.tvs$/);
  const browserFile = join(tmp, 'browser.tvs');
  await download.saveAs(browserFile);
  await page.waitForFunction(() => /^saved typevisor-/.test(document.getElementById('message')!.textContent ?? ''), undefined, { timeout: 10_000 });
  const afterSave = Math.max(...counts(await screen(page) + '\n'));
  await screenshot(page, 'snapshot-xplat');
  const header = readSnapshotHeader(new Uint8Array(readFileSync(browserFile)));
  assert.equal((header.machine as { kind: string }).kind, 'runner');
  assert.deepEqual(header.disks, []);
  assert.equal(header.memoryBytes, 128 << 20);
  // A restored machine has no kernel to boot again (the page's stand-in): a reset stops it.
  assert.ok(await page.isDisabled('#reboot'));
  await page.click('#term');
  await page.keyboard.type('reboot\n');
  await page.waitForFunction(() => window.typevisorVm.state() === 'stopped', undefined, { timeout: 30_000 });
  assert.equal(await page.textContent('#message'), 'the guest reset; a restored machine has no kernel to boot again (Boot starts a new one)');
  assert.deepEqual(errors, []);

  // 3. Node again: only --restore; the count goes on from the browser's and the file is kept.
  const b = new Tty(['run', '--restore', browserFile], { cwd: tmp, track: procs });
  const firstInNode = Number((await b.wait(/count (\d+)\r*\n/, 60_000))[1]);
  assert.ok(firstInNode > beforeSave && firstInNode <= afterSave + 2, `Node's count goes on from the browser's (${beforeSave}..${afterSave}): first ${firstInNode}`);
  await b.wait(new RegExp(`count ${firstInNode + 2}\\r*\\n`), 30_000);
  b.write('kill %1; cat /mnt/f\r');
  await b.wait(new RegExp(`${token}-42`), 30_000);
  // Rebuilt from the browser's runner config: a reset exits (the kernel was only in RAM).
  b.write('reboot\r');
  assert.equal(await b.exited, 0);
  assert.match(b.out, /typevisor: the guest requested a reset/);
  console.log(`# counts: saved in Node after ${savedAt}, browser went on at ${firstInBrowser}, saved at ${beforeSave}..${afterSave}, Node went on at ${firstInNode}`);
  console.log(`# snapshots (128 MiB guest): Node's ${(readFileSync(nodeFile).length / 1048576).toFixed(1)} MiB, the browser's ` +
    `${(readFileSync(browserFile).length / 1048576).toFixed(1)} MiB; page load to running in the browser ${restoreMs} ms`);

  // 4. Bad files picked in the page: refused with the format's message, no machine started.
  const good = new Uint8Array(readFileSync(browserFile));
  const flipped = good.slice(); flipped[good.length >> 1] ^= 0x10;
  const newer = good.slice(); newer[8] = 9; // major version 9
  // Machines the page cannot build: a disk (referenced by host path, not carried) or a NIC.
  const fixture = await decodeSnapshot(new Uint8Array(readFileSync(join(repoRoot, 'tests', 'snapshot', 'fixtures', 'counter-v1.tvs'))));
  const withMachine = (machine: unknown, disks: SnapshotHeader['disks']): Promise<Uint8Array> =>
    encodeSnapshot({ ...fixture.header, machine, disks }, fixture.state);
  const disk = { path: '/srv/disk.raw', format: 'raw' as const, readOnly: false, size: 1 << 20, mtimeMs: 1, headSha256: '00'.repeat(32) };
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['fixture.tvs', new Uint8Array(readFileSync(join(repoRoot, 'tests', 'snapshot', 'fixtures', 'counter-v1.tvs'))),
      /^snapshot 'fixture\.tvs' refused: the snapshot does not say how its machine was built/],
    ['disk.tvs', await withMachine({ kind: 'cli', argv: ['-m', '4M', '-drive', 'file=/srv/disk.raw'] }, [disk]),
      /^snapshot 'disk\.tvs' refused: the snapshot's machine has a disk \(\/srv\/disk\.raw\): a snapshot refers to its disks by path and does not carry them/],
    ['nic.tvs', await withMachine({ kind: 'cli', argv: ['-m', '4M', '-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0'] }, []),
      /^snapshot 'nic\.tvs' refused: the snapshot's machine has devices this page does not have \(-netdev user,id=n0, -device virtio-net-device,netdev=n0\)/],
    ['flip.tvs', flipped, /^snapshot 'flip\.tvs' refused: corrupt: checksum mismatch in section 'RAM' at byte \d+$/],
    ['short.tvs', good.subarray(0, good.length - 1000), /^snapshot 'short\.tvs' refused: truncated: /],
    ['newer.tvs', newer, /^snapshot 'newer\.tvs' refused: snapshot format 9\.0 is newer than this typevisor reads \(1\.x\): upgrade typevisor$/],
  ];
  const workers: string[] = [];
  page.on('worker', (w) => workers.push(w.url()));
  for (const [name, bytes, re] of cases) {
    writeFileSync(join(tmp, name), bytes);
    await page.setInputFiles('#restore-file', join(tmp, name));
    await page.waitForFunction((n) => (document.getElementById('message')!.textContent ?? '').startsWith(`snapshot '${n}' refused`), name, { timeout: 20_000 });
    assert.match(await page.textContent('#message') ?? '', re);
    assert.equal(await page.evaluate(() => window.typevisorVm.state()), 'idle');
    assert.match(await screen(page), /^typevisor: snapshot '.*' refused: /);
    assert.ok(await page.isDisabled('#save') && await page.isDisabled('#pause'), 'no machine to save or pause');
  }
  assert.deepEqual(workers, [], 'no worker was started for a refused file');
  await screenshot(page, 'snapshot-xplat-refused');

  // A file that passes every check but whose machine the runner cannot build as saved (flags
  // that say 'no firmware' for a machine that had the built-in SBI): refused before it runs.
  const wrongBoot = join(tmp, 'wrong-boot.tvs');
  const browserSnap = await decodeSnapshot(good);
  writeFileSync(wrongBoot, await encodeSnapshot({ ...browserSnap.header, machine: { kind: 'cli', argv: ['-bios', 'none'] } }, browserSnap.state));
  await page.setInputFiles('#restore-file', wrongBoot);
  await page.waitForFunction(() => window.typevisorVm.state() === 'stopped', undefined, { timeout: 30_000 });
  assert.match(await page.textContent('#message') ?? '', /^config \(code 1\): restore: machine state: saved with boot path 'builtin', this machine uses 'none'$/);
  assert.doesNotMatch(await screen(page), /count \d+/, 'the guest did not run');

  // A machine with a disk in the page's memory is not saved: the snapshot would lose the disk.
  writeFileSync(join(tmp, 'disk.raw'), new Uint8Array(1 << 20));
  await page.click('summary');
  await page.setInputFiles('#disk-file', join(tmp, 'disk.raw'));
  await page.click('button[type=submit]');
  await page.waitForFunction(() => window.typevisorVm.state() === 'booting', undefined, { timeout: 30_000 });
  await page.click('#save');
  assert.equal(await page.textContent('#message'), 'snapshot not saved: the disk lives in this page\'s memory, and a snapshot does not carry disks');
  await page.click('#stop');
  await page.waitForFunction(() => window.typevisorVm.state() === 'stopped', undefined, { timeout: 10_000 });
  assert.deepEqual(errors, []);
});

test('typevisor web --restore refuses a corrupt snapshot before serving', { timeout: 30_000 }, async () => {
  const bad = join(tmp, 'bad.tvs');
  writeFileSync(bad, 'TVSNAP\r\n not really');
  const s = spawn(process.execPath, [BIN, 'web', '--listen', '127.0.0.1:0', '--kernel', guest.kernel, '--restore', bad], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  s.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((r) => s.on('exit', r));
  assert.equal(code, 1);
  assert.match(err, /web: --restore .*bad\.tvs: /);
});
