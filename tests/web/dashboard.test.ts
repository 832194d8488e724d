/**
 * The daemon's web dashboard in a real browser (Debian chromium through playwright-core):
 * login by `/?token=` and by the form, the session cookie's flags, CSRF rules on cookie
 * requests, the security headers, defining a VM through the form (a 400 names its field),
 * booting it with the Start button, typing `uname -a` into its xterm console and reading
 * `riscv64` back, the charts filling, no CSP violations, and a phone-sized layout without
 * horizontal overflow. Screenshots go to test-artifacts/.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Daemon } from '../../src/daemon/server.js';
import { launchBrowser, pageErrors, screenshot } from '../lib/browser.js';
import { requireGuest } from '../lib/guest.js';
import { repoRoot } from '../lib/toolchain.js';

const guest = requireGuest();
const webDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'dashboard');
const dir = mkdtempSync(join(tmpdir(), 'typevisor-dash-'));
const daemon = new Daemon({ stateDir: dir, port: 0, env: { ...process.env, TYPEVISOR_GUEST_DIR: guest.dir }, log: () => {}, shutdownTimeoutMs: 3000 });
let base = '';
let browser: Browser | null = null;
after(async () => {
  await browser?.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A VM that must not leak to a logged-out page; 63 characters, so the phone layout must wrap it. */
const SECRET = 'secret-vm-with-the-longest-name-allowed-to-test-wrapping-012345';
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async function api(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<number> {
  const r = await fetch(base + path, {
    method, redirect: 'manual',
    headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  await r.arrayBuffer();
  return r.status;
}

/** Resolves with the HTTP status of a WebSocket upgrade (101 when it opened). */
function wsStatus(path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + path, { headers });
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
    ws.on('error', reject);
  });
}

test('dashboard: login, cookie, CSRF, define, boot, console, charts, phone layout', { timeout: 240_000 }, async () => {
  assert.ok(existsSync(join(webDir, 'main.js')), `${webDir}/main.js missing: run node scripts/build-web.mjs`);
  base = await daemon.listen();
  const bearer = { authorization: `Bearer ${daemon.token}` };
  // A VM whose name must not leak to a page without a session.
  assert.equal(await api('POST', '/v1/vms', bearer, { name: SECRET, memory: '64M' }), 201);

  browser = await launchBrowser();
  const ctx: BrowserContext = await browser.newContext({ viewport: { width: 1280, height: 860 } });

  // A wrong token gets the login page (401) with an error and no VM data; no cookie.
  const bad = await ctx.newPage();
  const badErrors = pageErrors(bad);
  const badRes = await bad.goto(`${base}/?token=${'0'.repeat(64)}`);
  assert.equal(badRes?.status(), 401);
  assert.equal(await bad.locator('form[action="/login"] input[name="token"]').count(), 1);
  assert.match(await bad.locator('.error').innerText(), /wrong token/i);
  assert.ok(!(await bad.content()).includes(SECRET));
  assert.equal((await ctx.cookies()).length, 0);
  // The form with a wrong token: the login page again.
  await bad.fill('input[name="token"]', 'nope');
  await bad.click('button[type="submit"]');
  await bad.waitForSelector('.error');
  assert.match(await bad.locator('.error').innerText(), /wrong token/i);
  assert.ok(bad.url().endsWith('/login'), bad.url());
  // The form with the right token logs in (and a later /?token= makes a second session).
  await bad.fill('input[name="token"]', daemon.token);
  await bad.click('button[type="submit"]');
  await bad.waitForSelector(`article.vm[data-name="${SECRET}"]`);
  assert.equal(bad.url(), `${base}/`);
  await ctx.clearCookies();
  // Only the 401s of the refused logins.
  assert.deepEqual(badErrors.filter((e) => !/status of 401 \(Unauthorized\)/.test(e)), [], badErrors.join('\n'));
  await bad.close();
  // An unknown session cookie opens nothing.
  assert.equal(await api('GET', '/v1/vms', { cookie: 'typevisor_session=' + 'A'.repeat(43) }), 401);

  // The Jupyter-style URL: a session cookie, then the dashboard without the token in the URL.
  const page: Page = await ctx.newPage();
  const errors = pageErrors(page);
  const res = await page.goto(`${base}/?token=${daemon.token}`);
  assert.equal(res?.status(), 200);
  assert.equal(page.url(), `${base}/`);
  const headers = res!.headers();
  const csp = headers['content-security-policy'] ?? '';
  // The policy as specified, plus a per-response nonce for xterm's <style> elements.
  assert.equal(csp.replace(/ 'nonce-[A-Za-z0-9+/=]+'/, ''), CSP);
  assert.match(csp, /style-src 'self' 'nonce-[A-Za-z0-9+/=]{24}';/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  const cookies = await ctx.cookies();
  assert.equal(cookies.length, 1);
  const [c] = cookies;
  assert.equal(c.name, 'typevisor_session');
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Strict');
  assert.equal(c.path, '/');
  assert.notEqual(c.value, daemon.token);
  assert.ok(c.value.length >= 40);
  const cookie = { cookie: `${c.name}=${c.value}` };

  // Cookie requests: reads pass; state changes need X-Typevisor and no foreign Origin;
  // WebSockets need a same-origin Origin.
  assert.equal(await api('GET', '/v1/vms', cookie), 200);
  assert.equal(await api('GET', '/metrics', cookie), 200);
  assert.equal(await api('POST', `/v1/vms/${SECRET}/suspend`, cookie), 403);
  assert.equal(await api('POST', `/v1/vms/${SECRET}/suspend`, { ...cookie, 'x-typevisor': '1', origin: 'http://evil.example' }), 403);
  assert.equal(await api('POST', `/v1/vms/${SECRET}/suspend`, { ...cookie, 'x-typevisor': '1', origin: base }), 409);
  assert.equal(await wsStatus('/v1/events', { ...cookie, origin: 'http://evil.example' }), 403);
  assert.equal(await wsStatus('/v1/events', cookie), 403);
  assert.equal(await wsStatus('/v1/events', { ...cookie, origin: base }), 101);
  assert.equal(await wsStatus('/v1/events', { cookie: 'typevisor_session=x', origin: base }), 401);

  // The list shows the VM defined through the API.
  await page.waitForSelector(`article.vm[data-name="${SECRET}"][data-state="shutoff"]`);

  // Define through the form: a bad memory size is refused with the field named.
  await page.click('#define-box summary');
  await page.fill('#define input[name="name"]', 'web1');
  await page.fill('#define input[name="memory"]', '12X');
  await page.click('#define button[type="submit"]');
  await page.waitForSelector('#define-error:not([hidden])');
  assert.match(await page.locator('#define-error').innerText(), /^memory: /);
  assert.equal(await page.locator('#define input[name="memory"]').getAttribute('aria-invalid'), 'true');
  await page.fill('#define input[name="memory"]', '64M');
  await page.fill('#define input[name="kernel"]', guest.kernel);
  await page.fill('#define input[name="initrd"]', guest.initrd);
  // A NIC on user-mode networking with a port forward, and a network limit.
  await page.check('#define input[name="nic"]');
  await page.fill('#define input[name="hostfwd"]', 'tcp:127.0.0.1:0-:80');
  await page.fill('#define input[name="switch"]', 'lan0');
  await page.fill('#define input[name="netRx"]', '1048576');
  await page.click('#define button[type="submit"]');
  const card = page.locator('article.vm[data-name="web1"]');
  await card.waitFor();
  assert.equal(await card.locator('.state').innerText(), 'shutoff');
  assert.equal(await card.locator('button[data-action="shutdown"]').isDisabled(), true);

  // Start, open the console, wait for the shell.
  await card.locator('button[data-action="start"]').click();
  await page.waitForSelector('article.vm[data-name="web1"][data-state="running"]');
  assert.equal(await card.locator('button[data-action="start"]').isDisabled(), true);
  assert.equal(await card.locator('button[data-action="suspend"]').isDisabled(), false);
  await card.locator('button[data-action="console"]').click();
  await page.waitForFunction(() => window.typevisor.consoleText().includes('~ # '), null, { timeout: 150_000, polling: 250 });
  await page.click('#terminal');
  await page.keyboard.type('uname -a');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /uname -a\s*\nLinux [^\n]*riscv64/.test(window.typevisor.consoleText()), null, { timeout: 30_000, polling: 250 });
  // A 24-bit colour: xterm styles that cell through a style attribute, which the page turns
  // into CSSOM (CSP blocks style attributes); the cell must be red, with no violation.
  await page.keyboard.type("printf '\\033[38;2;255;0;0mTRUE%sRED\\033[0m\\n' COLOR");
  await page.keyboard.press('Enter');
  const red = page.locator('.xterm-rows span', { hasText: 'TRUECOLORRED' });
  await red.first().waitFor({ timeout: 20_000 });
  assert.equal(await red.first().evaluate((e) => getComputedStyle(e).color), 'rgb(255, 0, 0)');
  // Paste (the button; Ctrl+Shift+V and right-click go through the browser's paste event).
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((6*7))\n'));
  await page.click('#paste');
  await page.waitForFunction(() => window.typevisor.consoleText().includes('pasted-42'), null, { timeout: 20_000, polling: 250 });
  await page.evaluate(() => navigator.clipboard.writeText('echo shortcut-$((5*5))\n'));
  await page.click('#terminal');
  await page.keyboard.press('Control+Shift+V');
  await page.waitForFunction(() => window.typevisor.consoleText().includes('shortcut-25'), null, { timeout: 20_000, polling: 250 });
  // Copy: a double-click selects a word in xterm; the Copy button (then Ctrl+Shift+C) puts it
  // on the clipboard, asynchronously. Tried up to five times: a line of output that scrolls
  // the screen between finding the word and the click moves the word under the pointer.
  const copied = async (copy: () => Promise<void>): Promise<string> => {
    let got = '';
    for (let i = 0; i < 5 && got !== 'TRUECOLORRED'; i++) {
      await page.evaluate(() => navigator.clipboard.writeText(''));
      await page.locator('.xterm-rows span', { hasText: 'TRUECOLORRED' }).first().dblclick({ force: true }); // the event goes to xterm's screen layer on top
      await copy();
      await page.waitForFunction(async () => (await navigator.clipboard.readText()) !== '', null, { timeout: 5000, polling: 100 }).catch(() => undefined);
      got = await page.evaluate(() => navigator.clipboard.readText());
    }
    return got;
  };
  assert.equal(await copied(() => page.click('#copy')), 'TRUECOLORRED');
  assert.equal(await copied(() => page.keyboard.press('Control+Shift+C')), 'TRUECOLORRED');
  // The form's NIC and limit reached the definition; the network chart has the NIC's counters.
  const def = await (await fetch(`${base}/v1/vms/web1`, { headers: { authorization: `Bearer ${daemon.token}` } })).json() as { definition?: { nics?: unknown; limits?: unknown } } & { nics?: unknown; limits?: unknown };
  const d = def.definition ?? def;
  assert.deepEqual(d.nics, [{ type: 'user', hostfwd: ['tcp:127.0.0.1:0-:80'] }, { type: 'switch', switch: 'lan0' }]);
  assert.deepEqual(d.limits, { net: { rx: { bandwidth: { size: 1048576, refillTimeMs: 1000 } } } });
  // Charts: at least a few samples, and the card shows figures.
  await page.waitForFunction(() => window.typevisor.chartPoints() >= 3, null, { timeout: 20_000, polling: 250 });
  assert.equal(await page.locator('#net-note').innerText(), '', 'NIC counters are charted');
  assert.match(await card.locator('.figures dd').nth(1).innerText(), /^\d+(\.\d)? %$/);
  assert.match(await card.locator('.figures dd').nth(3).innerText(), /^\d+m \d\ds$/);
  await screenshot(page, 'dashboard');
  // Suspend and resume through the buttons, which follow the state.
  await card.locator('button[data-action="suspend"]').click();
  await page.waitForSelector('article.vm[data-name="web1"][data-state="paused"]', { timeout: 20_000 });
  assert.equal(await card.locator('button[data-action="suspend"]').isDisabled(), true);
  await card.locator('button[data-action="resume"]').click();
  await page.waitForSelector('article.vm[data-name="web1"][data-state="running"]', { timeout: 20_000 });
  assert.equal(await card.locator('button[data-action="resume"]').isDisabled(), true);
  // The one expected console error: the refused definition's 400 (chromium logs it).
  assert.equal(errors.filter((e) => /status of 400 \(Bad Request\)/.test(e)).length, 1, errors.join('\n'));
  assert.equal(errors.length, 1, errors.join('\n'));
  errors.length = 0;

  // Phone-sized: nothing wider than the screen.
  const phone = await ctx.newPage();
  const phoneErrors = pageErrors(phone);
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${base}/`);
  await phone.waitForSelector('article.vm[data-name="web1"][data-state="running"]');
  await phone.locator('article.vm[data-name="web1"] button[data-action="console"]').click();
  await phone.waitForFunction(() => window.typevisor.consoleText().includes('~ # '), null, { timeout: 20_000, polling: 250 });
  await phone.click('#define-box summary');
  const overflow = await phone.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  assert.ok(overflow.scroll <= overflow.client, `horizontal overflow at 390 px: ${overflow.scroll} > ${overflow.client}`);
  await screenshot(phone, 'dashboard-phone');
  assert.deepEqual(phoneErrors, [], `phone page errors: ${phoneErrors.join('\n')}`);
  await phone.close();

  // Destroy through the button, then log out: the cookie is dead.
  await card.locator('button[data-action="destroy"]').click();
  await page.waitForSelector('article.vm[data-name="web1"][data-state="shutoff"]', { timeout: 20_000 });
  await page.click('form[action="/logout"] button');
  await page.waitForURL(`${base}/login`);
  assert.equal(await api('GET', '/v1/vms', cookie), 401);
  // A stats poll that crosses the destroy gets a 409, which chromium logs; nothing else.
  assert.deepEqual(errors.filter((e) => !/status of 409 \(Conflict\)/.test(e)), [], `page errors: ${errors.join('\n')}`);
});

test('typevisor daemon prints the dashboard URL, and with --show-url one that logs in', { timeout: 60_000 }, async () => {
  const state = mkdtempSync(join(tmpdir(), 'typevisor-dash-cli-'));
  const d = spawn(process.execPath, [join(repoRoot, 'bin', 'typevisor.js'), 'daemon', '--listen', '127.0.0.1:0', '--state-dir', state, '--show-url'],
    { env: { ...process.env, TYPEVISOR_GUEST_DIR: guest.dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let out = '', err = '';
    d.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    d.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const deadline = Date.now() + 30_000;
    while (!out.includes('\n') || !err.includes('dashboard at')) {
      if (Date.now() > deadline || d.exitCode !== null) throw new Error(`no URL from the daemon; stderr:\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const token = readFileSync(join(state, 'token'), 'utf8').trim();
    const m = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/) \(log in with the token in (\S+)\)/.exec(err);
    assert.ok(m, err);
    assert.equal(m[2], join(state, 'token'));
    assert.ok(!err.includes(token), 'the token is not on stderr');
    const url = out.trim();
    assert.equal(url, `${m[1]}?token=${token}`);
    const r = await fetch(url, { redirect: 'manual' });
    assert.equal(r.status, 303);
    assert.equal(r.headers.get('location'), '/');
    assert.match(r.headers.get('set-cookie') ?? '', /^typevisor_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
  } finally {
    d.kill('SIGTERM');
    await new Promise((r) => d.once('exit', r));
    rmSync(state, { recursive: true, force: true });
  }
});

/** One HTTPS request trusting `ca`; the status and response headers. */
function httpsReq(url: string, ca: Buffer, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, method, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('over TLS the session cookie is Secure, and the https Origin counts as the same origin', { timeout: 60_000 }, async () => {
  const tdir = mkdtempSync(join(tmpdir(), 'typevisor-dash-tls-'));
  const cert = join(tdir, 'cert.pem'), key = join(tdir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const d = new Daemon({ stateDir: join(tdir, 'state'), port: 0, tls: { cert, key }, log: () => {} });
  try {
    const tbase = await d.listen();
    const ca = readFileSync(cert);
    const login = await httpsReq(`${tbase}/?token=${d.token}`, ca, 'GET', {});
    assert.equal(login.status, 303);
    const set = String(login.headers['set-cookie'] ?? '');
    assert.match(set, /; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/);
    const cookie = set.split(';')[0];
    const json = { cookie, 'x-typevisor': '1', 'content-type': 'application/json' };
    assert.equal((await httpsReq(`${tbase}/v1/vms`, ca, 'POST', { ...json, origin: tbase }, '{"name":"t"}')).status, 201);
    assert.equal((await httpsReq(`${tbase}/v1/vms`, ca, 'POST', { ...json, origin: tbase.replace('https', 'http') }, '{"name":"u"}')).status, 403);
  } finally {
    await d.close();
    rmSync(tdir, { recursive: true, force: true });
  }
});
