/**
 * The in-browser VM as a user meets it: `typevisor web` spawned as a process, its page opened
 * in headless Chromium, the test guest booted inside the page's Web Worker to `~ # `, a
 * command typed into xterm.js and its answer read back from the terminal's buffer; pause and
 * resume, stop, a second boot from picked files with the translator (the guest reads the
 * picked disk, reboots itself and reads it again). Also the server's flags, headers and file
 * serving, and the page on a phone-sized screen.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { repoRoot } from '../lib/toolchain.js';
import { requireGuest } from '../lib/guest.js';
import { freePort } from '../lib/net-servers.js';
import { launchBrowser, pageErrors, printedUrl, screenshot } from '../lib/browser.js';

const execFileP = promisify(execFile);
const BIN = join(repoRoot, 'bin', 'typevisor.js');
const guest = requireGuest();
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let baseUrl: string | null = null;
const tmp = mkdtempSync(join(tmpdir(), 'typevisor-web-'));
after(async () => { server?.kill('SIGTERM'); await browser?.close(); rmSync(tmp, { recursive: true, force: true }); });
const diskFile = join(tmp, 'disk.raw');
const diskBytes = randomBytes(1 << 20);
writeFileSync(diskFile, diskBytes);
const diskMd5 = createHash('md5').update(diskBytes).digest('hex');

async function tv(...args: Array<string | NodeJS.ProcessEnv>): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, ...args.find((a) => typeof a === 'object') };
  try {
    const r = await execFileP(process.execPath, [BIN, ...args.filter((a) => typeof a === 'string')], { timeout: 30_000, env });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Start `typevisor web` on a free port; resolves with the URL it prints. */
async function startServer(): Promise<string> {
  const port = await freePort();
  const s = spawn(process.execPath, [BIN, 'web', '--listen', `127.0.0.1:${port}`, '--kernel', guest.kernel, '--initrd', guest.initrd],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  server = s;
  const url = await printedUrl(s);
  assert.equal(url, `http://127.0.0.1:${port}/`);
  return url;
}

test('typevisor web: bad flags and missing files give a clear error and a status', async () => {
  let r = await tv('web', '--bogus');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /typevisor: web: unknown option '--bogus'/);
  r = await tv('web', '--listen', 'nonsense');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--listen nonsense: expected HOST:PORT \(e\.g\. 127\.0\.0\.1:8080\)/);
  r = await tv('web', '--listen', '0.0.0.0:8080', '--kernel', guest.kernel);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /0\.0\.0\.0 is not a loopback address.*--insecure/);
  r = await tv('web', '--kernel', '/nonexistent/Image');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot read kernel '\/nonexistent\/Image': no such file/);
  r = await tv('web', '--initrd', guest.initrd);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--initrd needs --kernel/);
  assert.equal((await tv('web', 'extra')).code, 2);
});

test('typevisor web without --kernel serves the default guest; --insecure opens other addresses', { timeout: 30_000 }, async () => {
  const empty = join(tmp, 'no-guest');
  let r = await tv('web', { TYPEVISOR_GUEST_DIR: empty });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`no --kernel given and no default guest in ${empty} \\(build it: typevisor image build\\)`));
  const s = spawn(process.execPath, [BIN, 'web', '--listen', '0.0.0.0:0', '--insecure'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TYPEVISOR_GUEST_DIR: guest.dir } });
  try {
    const url = await printedUrl(s);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const k = await fetch(url + 'guest/kernel', { method: 'HEAD' });
    assert.equal(k.headers.get('content-length'), String(statSync(guest.kernel).size));
    const i = await fetch(url + 'guest/initrd', { method: 'HEAD' });
    assert.equal(i.headers.get('content-length'), String(statSync(guest.initrd).size));
    assert.match(await (await fetch(url)).text(), /<meta name="guest-defaults" content="kernel=%2Fguest%2Fkernel&amp;initrd=%2Fguest%2Finitrd">/);
  } finally {
    s.kill('SIGTERM');
  }
  // A kernel alone: the page is told there is no initrd, and /guest/initrd is not there.
  const s2 = spawn(process.execPath, [BIN, 'web', '--listen', '127.0.0.1:0', '--kernel', guest.kernel], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await printedUrl(s2);
    assert.equal((await fetch(url + 'guest/initrd')).status, 404);
    assert.match(await (await fetch(url)).text(), /<meta name="guest-defaults" content="kernel=%2Fguest%2Fkernel">/);
  } finally {
    s2.kill('SIGTERM');
  }
  r = await tv('web', '--kernel', tmp);
  assert.match(r.stderr, /kernel '.*' is not a regular file/);
});

test('typevisor web boots a VM inside the browser: ~ # , uname -m answers riscv64, no CSP violation', { timeout: 150_000 }, async () => {
  const url = await startServer();
  baseUrl = url;

  // The server: a strict policy on the page, nosniff, the guest's files byte-exact in size.
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const csp = res.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'(;|$)/);
  assert.match(csp, /style-src 'self' 'nonce-[A-Za-z0-9+/=]+'(;|$)/);
  assert.doesNotMatch(csp, /'unsafe-inline'|'unsafe-eval'|\*/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  const html = await res.text();
  const nonce = /'nonce-([^']+)'/.exec(csp)![1];
  assert.ok(html.includes(`content="${nonce}"`), 'the page carries its response\'s nonce');
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|<style/, 'no inline script or style in the page');
  const k = await fetch(url + 'guest/kernel');
  assert.equal(Number(k.headers.get('content-length')), statSync(guest.kernel).size);
  await k.body?.cancel();
  assert.equal((await fetch(url + 'guest/initrd', { method: 'HEAD' })).headers.get('content-length'), String(statSync(guest.initrd).size));
  assert.equal((await fetch(url + '..%2f..%2fpackage.json')).status, 404);
  assert.equal((await fetch(url + 'main.js', { method: 'POST' })).status, 405);
  // The bundles carry no Node-only code.
  for (const f of ['main.js', 'worker.js']) {
    const js = readFileSync(join(repoRoot, 'dist', 'web', 'vm', f), 'utf8');
    assert.doesNotMatch(js, /\bfrom\s*["']node:|\brequire\(["']/, `${f} imports Node`);
    assert.doesNotMatch(js, /(?<![\w$.])(Buffer\s*[.(]|process\.(env|exit|cwd|argv|std|nextTick|hrtime|memoryUsage|cpuUsage))/, `${f} uses Node globals`);
  }

  browser = await launchBrowser();
  const page = await browser.newPage({ viewport: { width: 960, height: 640 } });
  const errors = pageErrors(page);
  const violations: string[] = [];
  page.on('console', (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text()); });
  // The worker's console is its own: its errors (a CSP refusal of Wasm, say) count too.
  page.on('worker', (w) => w.on('console', (m) => { if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) errors.push(`worker: ${m.text()}`); }));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  const t0 = Date.now();
  await page.goto(url + '?mem=128');
  const screen = (): Promise<string> => page.evaluate(() => window.typevisorVm.screen());
  const prompt = async (what: string): Promise<void> => {
    // A prompt, or the machine's end (then fail at once, with the page's message).
    try {
      await page.waitForFunction(() => window.typevisorVm.screen().endsWith('~ #') || window.typevisorVm.state() === 'stopped', undefined, { timeout: 120_000, polling: 250 });
    } catch (e) {
      await screenshot(page, 'web-vm-failed');
      throw new Error(`${what}: no prompt: ${(e as Error).message}\n--- screen:\n${await screen()}\n--- errors:\n${errors.join('\n')}`);
    }
    assert.equal(await page.evaluate(() => window.typevisorVm.state()), 'running', `${what}: ${await page.textContent('#status')}\n${errors.join('\n')}`);
  };
  await prompt('default guest');
  const bootMs = Date.now() - t0;

  // Keys go through xterm.js to the guest, which echoes them.
  await page.click('#term');
  await page.keyboard.type('uname -m\n');
  await page.waitForFunction(() => /uname -m\n(.*)\n~ #$/.test(window.typevisorVm.screen()), undefined, { timeout: 30_000, polling: 100 });
  const answer = /uname -m\n(.*)\n~ #$/.exec(await screen())![1];
  assert.equal(answer.trim(), 'riscv64');

  // The status line: a measured speed and the guest's uptime.
  await page.waitForFunction(() => /^\d+\.\d MIPS$/.test(document.getElementById('mips')!.textContent ?? ''), undefined, { timeout: 10_000 });
  const mips = Number.parseFloat(await page.textContent('#mips') ?? '');
  assert.ok(mips > 0, `MIPS ${mips}`);
  assert.match(await page.textContent('#uptime') ?? '', /^up \d+:\d\d$/);
  await screenshot(page, 'web-vm');
  console.log(`# in-browser boot to ~ # : ${(bootMs / 1000).toFixed(1)} s, ${mips} MIPS (translator)`);

  // Pause: the vCPU stops (0 MIPS) and keys wait; on resume they arrive and the guest answers.
  await page.click('#pause');
  await page.waitForFunction(() => window.typevisorVm.state() === 'paused', undefined, { timeout: 10_000 });
  assert.equal(await page.textContent('#pause'), 'Resume');
  await page.click('#term');
  await page.keyboard.type('echo paused-$((6*7))\n');
  await page.waitForFunction(() => document.getElementById('mips')!.textContent === '0.0 MIPS', undefined, { timeout: 5_000 });
  assert.doesNotMatch(await screen(), /echo paused/, 'a paused guest echoes nothing');
  await page.click('#pause');
  await page.waitForFunction(() => /paused-42\n~ #$/.test(window.typevisorVm.screen()), undefined, { timeout: 30_000, polling: 100 });
  assert.equal(await page.evaluate(() => window.typevisorVm.state()), 'running');

  // Stop: the runner ends the machine and says why.
  await page.click('#stop');
  await page.waitForFunction(() => window.typevisorVm.state() === 'stopped', undefined, { timeout: 10_000 });
  assert.match(await page.textContent('#message') ?? '', /^stopped/);

  // Files picked from disk (blob: URLs), with the interpreter alone this time (the default
  // boot above translated: its Wasm compiles only because the policy has 'wasm-unsafe-eval').
  await page.click('summary');
  await page.setInputFiles('#kernel-file', guest.kernel);
  await page.setInputFiles('#initrd-file', guest.initrd);
  await page.setInputFiles('#disk-file', diskFile);
  await page.uncheck('#jit');
  await page.click('button[type=submit]');
  await prompt('picked files, interpreter');
  assert.equal(new URL(page.url()).searchParams.get('jit'), 'off');
  await page.click('#term');
  await page.keyboard.type('md5sum /dev/vda\n');
  await page.waitForFunction(() => /\/dev\/vda\n~ #$/.test(window.typevisorVm.screen()), undefined, { timeout: 30_000, polling: 100 });
  assert.match(await screen(), new RegExp(`md5sum /dev/vda\n${diskMd5}  /dev/vda\n~ #$`));
  // The guest reboots itself: the runner rebuilds the machine from the files it holds.
  await page.keyboard.type('reboot\n');
  await page.waitForFunction(() => window.typevisorVm.state() === 'booting', undefined, { timeout: 30_000, polling: 50 });
  assert.equal(await page.textContent('#message'), 'the guest rebooted');
  await prompt('after the guest rebooted');
  await page.keyboard.type('head -c 4096 /dev/vda | md5sum\n');
  const head = createHash('md5').update(diskBytes.subarray(0, 4096)).digest('hex');
  await page.waitForFunction((h) => window.typevisorVm.screen().endsWith(`${h}  -\n~ #`), head, { timeout: 30_000, polling: 100 });
  assert.deepEqual(errors, []);
  assert.deepEqual(violations, []);

  // A phone-sized screen: nothing wider than the viewport, the terminal still fills the width.
  const phone = await browser.newPage({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
  const phoneErrors = pageErrors(phone);
  await phone.goto(url + '?boot=0');
  await phone.waitForFunction(() => document.querySelector('.xterm-screen') !== null);
  const fits = await phone.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth, term: document.getElementById('term')!.getBoundingClientRect().width }));
  assert.ok(fits.scroll <= fits.inner, `page ${fits.scroll} px wide in a ${fits.inner} px viewport`);
  assert.ok(fits.term >= fits.inner - 16, `terminal ${fits.term} px of ${fits.inner}`);
  await phone.click('summary');
  await screenshot(phone, 'web-vm-phone');
  assert.deepEqual(phoneErrors, []);
});

test('the in-browser VM reports a kernel it cannot fetch, in the page', { timeout: 60_000 }, async () => {
  assert.ok(baseUrl && browser, 'needs the server and browser of the boot test');
  const page = await browser.newPage();
  await page.goto(baseUrl + '?kernel=/guest/missing');
  await page.waitForFunction(() => window.typevisorVm.state() === 'stopped', undefined, { timeout: 30_000 });
  assert.match(await page.textContent('#message') ?? '', /^config \(code 1\): cannot fetch kernel 'http:\/\/127\.0\.0\.1:\d+\/guest\/missing': HTTP 404/);
  assert.match(await page.evaluate(() => window.typevisorVm.screen()), /typevisor: config/);
});
