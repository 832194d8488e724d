/**
 * `typevisor web`: serves the in-browser VM page (dist/web/vm, built from src/web/vm) and the
 * guest it boots by default (/guest/kernel, /guest/initrd). The machine runs in the
 * visitor's browser; this server only hands out files, under a strict Content-Security-Policy.
 * It serves files from disk, so it listens on loopback unless told --insecure.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { UserError } from '../host/images.js';
import { findDefaultGuest, guestDir } from '../host/guest-cache.js';
import { parseFlags, USAGE_STATUS } from './args.js';
import { parseListen } from './vm.js';
import type { CliIo } from './main.js';
import { readSnapshotHeader } from '../snapshot/format.js';
import { browserRefusal, portableMachine } from '../snapshot/portable.js';

export const WEB_DEFAULT_LISTEN = '127.0.0.1:8080';
/** Where `--restore FILE` is served. */
export const SNAPSHOT_PATH = '/snapshot.tvs';

export const WEB_HELP = `typevisor web [--listen HOST:PORT] [--kernel F [--initrd F]] [--restore SNAPSHOT] [--insecure]
  Serves a page that boots a VM inside the browser (a Web Worker runs the machine; the
  console is xterm.js). The page boots the default guest (or --kernel/--initrd); other files
  can be picked in the page. --restore serves a snapshot (typevisor run's Ctrl-A S) at
  ${SNAPSHOT_PATH} and prints the page's URL that resumes it (?restore=${SNAPSHOT_PATH}).
  Listens on ${WEB_DEFAULT_LISTEN}; other than loopback needs --insecure.
`;

/** dist/src/cli -> dist/web/vm */
const WEB_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'vm');

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8',
  map: 'application/json', txt: 'text/plain; charset=utf-8', svg: 'image/svg+xml', png: 'image/png', ico: 'image/x-icon',
};
/** The page's own files: one flat directory, no dot files, no paths. */
const ASSET = /^\/([A-Za-z0-9_-][A-Za-z0-9._-]{0,80}\.(js|css|map|txt|svg|png|ico))$/;

/**
 * The page's policy: everything from this origin, nothing inline. `nonce` is the one
 * response's nonce that xterm's <style> elements get (see src/web/vm/csp.ts).
 */
export function webCsp(nonce: string): string {
  return [
    "default-src 'none'",
    // 'wasm-unsafe-eval': the translator compiles guest code to WebAssembly at run time
    // (WebAssembly.Module); it allows Wasm compilation only, never eval of JavaScript.
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    // blob: for files the user picks (the worker fetches them by their blob: URL).
    "connect-src 'self' blob:",
    "img-src 'self'",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

interface GuestFile { path: string; size: number }

function guestFile(path: string, what: string): GuestFile {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new UserError(`web: ${what} '${path}' is not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`web: cannot read ${what} '${path}': ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  if (size === 0) throw new UserError(`web: ${what} '${path}' is empty`);
  return { path, size };
}

export interface WebServerOptions {
  host: string;
  port: number;
  kernel: GuestFile;
  initrd: GuestFile | null;
  /** A snapshot to serve at SNAPSHOT_PATH. */
  snapshot?: GuestFile | null;
  webDir?: string;
}

/** The HTTP side of `typevisor web`; listen() resolves with the page's URL. */
export class WebServer {
  private readonly server = createServer((req, res) => this.handle(req, res));
  private readonly webDir: string;
  private readonly indexHtml: string;

  constructor(private readonly o: WebServerOptions) {
    this.webDir = o.webDir ?? WEB_DIR;
    try {
      this.indexHtml = readFileSync(join(this.webDir, 'index.html'), 'utf8');
    } catch {
      throw new UserError(`web: the page is not built (${join(this.webDir, 'index.html')} missing): npm run build`);
    }
  }

  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (e: NodeJS.ErrnoException) => {
        reject(new UserError(`web: cannot listen on ${this.o.host}:${this.o.port}: ${e.code === 'EADDRINUSE' ? 'address in use' : e.message}`));
      });
      this.server.listen(this.o.port, this.o.host, () => {
        const a = this.server.address() as AddressInfo;
        // Listening on every address: loopback is one of them, and a URL one can open.
        const host = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address;
        resolve(`http://${host.includes(':') ? `[${host}]` : host}:${a.port}/`);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const nonce = randomBytes(16).toString('base64');
    res.setHeader('Content-Security-Policy', webCsp(nonce));
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.text(res, 405, 'method not allowed');
    }
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/index.html') {
      const guest = new URLSearchParams({ kernel: '/guest/kernel', ...(this.o.initrd ? { initrd: '/guest/initrd' } : {}) });
      const body = this.indexHtml.replaceAll('{{NONCE}}', nonce).replaceAll('{{GUEST}}', guest.toString().replaceAll('&', '&amp;'));
      res.setHeader('Cache-Control', 'no-store');
      return this.send(req, res, 200, TYPES.html, Buffer.from(body));
    }
    if (path === '/guest/kernel') return this.file(req, res, this.o.kernel);
    if (path === '/guest/initrd' && this.o.initrd) return this.file(req, res, this.o.initrd);
    if (path === SNAPSHOT_PATH && this.o.snapshot) return this.file(req, res, this.o.snapshot);
    const m = ASSET.exec(path);
    if (m) {
      let body: Buffer;
      try { body = readFileSync(join(this.webDir, m[1])); } catch { return this.text(res, 404, 'not found'); }
      res.setHeader('Cache-Control', 'no-cache');
      return this.send(req, res, 200, TYPES[m[2]], body);
    }
    this.text(res, 404, 'not found');
  }

  private send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: Buffer): void {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private text(res: ServerResponse, status: number, msg: string): void {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(msg + '\n');
  }

  /** A guest file, streamed; its size is what it was at startup unless the file changed. */
  private file(req: IncomingMessage, res: ServerResponse, f: GuestFile): void {
    let size: number;
    try { size = statSync(f.path).size; } catch { return this.text(res, 404, 'the file is gone'); }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size, 'Cache-Control': 'no-cache' });
    if (req.method === 'HEAD') { res.end(); return; }
    const s = createReadStream(f.path);
    s.on('error', () => res.destroy());
    s.pipe(res);
  }
}

export async function cmdWeb(argv: readonly string[], io: CliIo): Promise<number> {
  const p = parseFlags(argv, [
    { name: 'listen', value: true }, { name: 'kernel', value: true }, { name: 'initrd', value: true }, { name: 'insecure', value: false },
    { name: 'restore', value: true },
  ], 'web');
  if (p.positional.length) throw new UserError(`web: unexpected argument '${p.positional[0]}'`, USAGE_STATUS);
  let listen: { host: string; port: number };
  try {
    listen = parseListen(p.flags.get('listen')?.[0] ?? WEB_DEFAULT_LISTEN);
  } catch (e) {
    throw new UserError(`web: ${(e as Error).message.replace(/\(e\.g\. [^)]*\)/, `(e.g. ${WEB_DEFAULT_LISTEN})`)}`, USAGE_STATUS);
  }
  if (!LOOPBACK.test(listen.host) && !p.flags.has('insecure')) {
    throw new UserError(`web: ${listen.host} is not a loopback address; this server hands out files from disk to anyone who connects: add --insecure to do it anyway`, USAGE_STATUS);
  }
  const kernelPath = p.flags.get('kernel')?.[0], initrdPath = p.flags.get('initrd')?.[0];
  let kernel: GuestFile, initrd: GuestFile | null;
  if (kernelPath === undefined) {
    if (initrdPath !== undefined) throw new UserError('web: --initrd needs --kernel', USAGE_STATUS);
    const g = findDefaultGuest(io.env);
    if (!g) throw new UserError(`web: no --kernel given and no default guest in ${guestDir(io.env)} (build it: typevisor image build)`);
    kernel = guestFile(g.kernel, 'kernel');
    initrd = guestFile(g.initrd, 'initrd');
  } else {
    kernel = guestFile(kernelPath, 'kernel');
    initrd = initrdPath === undefined ? null : guestFile(initrdPath, 'initrd');
  }
  const restorePath = p.flags.get('restore')?.[0];
  let snapshot: GuestFile | null = null;
  if (restorePath !== undefined) {
    // Checked here as the page checks it, so a file the page would refuse fails now.
    snapshot = guestFile(restorePath, 'snapshot');
    try {
      const why = browserRefusal(portableMachine(readSnapshotHeader(new Uint8Array(readFileSync(restorePath)))));
      if (why) throw new Error(why);
    } catch (e) {
      throw new UserError(`web: --restore ${restorePath}: ${(e as Error).message}`);
    }
  }
  const server = new WebServer({ ...listen, kernel, initrd, snapshot });
  const url = await server.listen();
  const open = snapshot ? `${url}?restore=${SNAPSHOT_PATH}` : url;
  io.stdout.write(`typevisor web: open ${open} (kernel ${kernel.path}${initrd ? `, initrd ${initrd.path}` : ''}${snapshot ? `, snapshot ${snapshot.path}` : ''}); Ctrl-C stops\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve(); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  return 0;
}
