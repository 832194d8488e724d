/**
 * A real browser for tests: Debian's chromium driven by playwright-core (never a downloaded
 * browser). .ci/run installs chromium; a missing one fails the test with the apt-get line.
 * Screenshots go to test-artifacts/ (kept by CI as artifacts, ignored by git).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

export function chromiumPath(): string {
  const env = process.env.TYPEVISOR_CHROMIUM;
  if (env) return env;
  const found = CANDIDATES.find((p) => existsSync(p));
  if (!found) throw new Error('no chromium found: apt-get install chromium (or set TYPEVISOR_CHROMIUM)');
  return found;
}

export async function launchBrowser(): Promise<Browser> {
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
}

/** The repository's test-artifacts/ directory (created on demand). */
export function artifactDir(): string {
  // dist/tests/lib -> repository root
  const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Save a full-page screenshot as test-artifacts/NAME.png and return its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const file = join(artifactDir(), `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Collect the page's console errors and uncaught exceptions (CSP violations show up here). */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  return errors;
}

/** The page address a `typevisor web` process prints (`open URL ...`), or a rejection with its output. */
export function printedUrl(s: ChildProcess): Promise<string> {
  let out = '', err = '';
  s.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`typevisor web printed no URL: ${out}${err}`)), 20_000);
    s.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /open (http:\/\/\S+) /.exec(out);
      if (m) { clearTimeout(t); resolve(m[1]); }
    });
    s.on('exit', (code) => { clearTimeout(t); reject(new Error(`typevisor web exited ${code}: ${err}`)); });
  });
}
