/**
 * The web dashboard's server side: the pages (`/`, `/login`), their static assets
 * (`/dashboard/*`, built by scripts/build-web.mjs into dist/web/dashboard) and cookie
 * sessions. Logging in with the API token (a form, or `/?token=...` as Jupyter does)
 * creates a random session id kept here, never the token, in an HttpOnly SameSite=Strict
 * cookie. The page then uses /v1 like any client; the daemon's auth hook asks `deny()`
 * whether a request without a bearer token may pass.
 *
 * CSRF: SameSite=Strict keeps the cookie off cross-site requests, and on top of that a
 * cookie-authenticated POST/PATCH/DELETE needs the `X-Typevisor` header (a cross-origin
 * page cannot send it without a CORS preflight, which this server never grants) and a
 * same-origin Origin when one is sent; a cookie-authenticated WebSocket needs a same-origin
 * Origin (browsers always send one on upgrades).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SESSION_COOKIE = 'typevisor_session';
/** The header a cookie-authenticated state change must carry (any value). */
export const CSRF_HEADER = 'x-typevisor';
const SESSION_TTL_MS = 12 * 3600_000;
/** Oldest sessions are dropped beyond this many (each login makes one). */
const MAX_SESSIONS = 256;

/** dist/src/daemon -> dist/web/dashboard */
const WEB_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'dashboard');

/** The dashboard's policy: nothing inline, everything from this origin. See styleNonce below. */
export function contentSecurityPolicy(styleNonce?: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    // xterm's DOM renderer adds <style> elements for its cell sizes and theme; the page
    // gives those (and only those) this response's nonce rather than allowing inline styles.
    `style-src 'self'${styleNonce ? ` 'nonce-${styleNonce}'` : ''}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', map: 'application/json',
  txt: 'text/plain; charset=utf-8', png: 'image/png', svg: 'image/svg+xml', ico: 'image/x-icon',
};
const ASSET = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,80}\.(js|css|map|txt|png|svg|ico)$/;
/** Routes that need no authentication (they show no VM data). */
const PUBLIC = new Set(['/', '/login', '/logout', '/dashboard/:file']);

export interface Denial { status: number; code: string; message: string }

export class Dashboard {
  /** session id -> expiry (ms since the epoch) */
  private readonly sessions = new Map<string, number>();
  private readonly token: Buffer;

  constructor(token: string, private readonly secure: boolean, private readonly webDir = WEB_DIR) {
    this.token = Buffer.from(token);
  }

  private tokenMatches(t: string): boolean {
    const b = Buffer.from(t);
    return b.length === this.token.length && timingSafeEqual(b, this.token);
  }

  private sessionOf(req: FastifyRequest): string | null {
    const id = cookie(req.headers.cookie, SESSION_COOKIE);
    if (id === null) return null;
    const exp = this.sessions.get(id);
    if (exp === undefined) return null;
    if (exp < Date.now()) { this.sessions.delete(id); return null; }
    return id;
  }

  private sameOrigin(req: FastifyRequest): boolean {
    const origin = req.headers.origin;
    return origin === `${this.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
  }

  /**
   * For the login and logout forms: refuse only a foreign Origin. Under Referrer-Policy
   * no-referrer a browser sends `Origin: null` with our own form posts.
   */
  private foreignForm(req: FastifyRequest): boolean {
    const origin = req.headers.origin;
    return origin !== undefined && origin !== 'null' && !this.sameOrigin(req);
  }

  /**
   * For a request without a valid bearer token: null if it may pass (a public dashboard
   * route, or a live session cookie that meets the CSRF rules), else why not.
   */
  deny(req: FastifyRequest): Denial | null {
    const route = req.routeOptions.url;
    if (route !== undefined && PUBLIC.has(route)) return null;
    if (this.sessionOf(req) === null) return { status: 401, code: 'unauthorized', message: 'missing or wrong bearer token' };
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    if (upgrade && !this.sameOrigin(req)) return { status: 403, code: 'csrf', message: 'a cookie-authenticated WebSocket needs a same-origin Origin header' };
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') {
      if (req.headers[CSRF_HEADER] === undefined) return { status: 403, code: 'csrf', message: `a cookie-authenticated ${req.method} needs the ${CSRF_HEADER} header` };
      if (req.headers.origin !== undefined && !this.sameOrigin(req)) return { status: 403, code: 'csrf', message: 'cross-origin request' };
    }
    return null;
  }

  private newSession(reply: FastifyReply): void {
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    for (const [k, exp] of this.sessions) if (exp < now) this.sessions.delete(k);
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
    this.sessions.set(id, now + SESSION_TTL_MS);
    void reply.header('set-cookie', this.cookieLine(id, SESSION_TTL_MS / 1000));
  }

  private cookieLine(value: string, maxAge: number): string {
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${this.secure ? '; Secure' : ''}`;
  }

  private page(reply: FastifyReply, file: 'index.html' | 'login.html', status: number, error?: string): FastifyReply {
    const nonce = randomBytes(16).toString('base64');
    let html: string;
    try { html = readFileSync(join(this.webDir, file), 'utf8'); } catch {
      return reply.code(503).type('text/plain; charset=utf-8').send('the dashboard is not built: run npm run build\n');
    }
    html = html.replace('{{NONCE}}', nonce).replace('<!--error-->', error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '');
    return reply.code(status).header('content-security-policy', contentSecurityPolicy(file === 'index.html' ? nonce : undefined))
      .header('cache-control', 'no-store').type('text/html; charset=utf-8').send(html);
  }

  /** The routes, in their own plugin scope (the form parser and headers stay off /v1). */
  async register(app: FastifyInstance): Promise<void> {
    await app.register(async (web) => {
      web.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 },
        (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))));
      web.addHook('onSend', async (_req, reply) => {
        if (!reply.hasHeader('content-security-policy')) void reply.header('content-security-policy', contentSecurityPolicy());
        void reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').header('x-frame-options', 'DENY');
      });

      web.get<{ Querystring: { token?: string } }>('/', { schema: { hide: true } }, async (req, reply) => {
        const t = req.query.token;
        if (typeof t === 'string') {
          if (!this.tokenMatches(t)) return this.page(reply, 'login.html', 401, 'Wrong token.');
          this.newSession(reply);
          return reply.code(303).header('location', '/').send();
        }
        if (this.sessionOf(req) === null) return reply.code(303).header('location', '/login').send();
        return this.page(reply, 'index.html', 200);
      });

      web.get('/login', { schema: { hide: true } }, async (req, reply) => {
        if (this.sessionOf(req) !== null) return reply.code(303).header('location', '/').send();
        return this.page(reply, 'login.html', 200);
      });

      web.post<{ Body: { token?: unknown } }>('/login', { schema: { hide: true } }, async (req, reply) => {
        if (this.foreignForm(req)) return this.page(reply, 'login.html', 403, 'Cross-origin login refused.');
        const t = req.body?.token;
        if (typeof t !== 'string' || !this.tokenMatches(t.trim())) return this.page(reply, 'login.html', 401, 'Wrong token.');
        this.newSession(reply);
        return reply.code(303).header('location', '/').send();
      });

      web.post('/logout', { schema: { hide: true } }, async (req, reply) => {
        if (this.foreignForm(req)) return reply.code(403).send({ code: 'csrf', message: 'cross-origin request' });
        const id = this.sessionOf(req);
        if (id !== null) this.sessions.delete(id);
        return reply.code(303).header('location', '/login').header('set-cookie', this.cookieLine('', 0)).send();
      });

      web.get<{ Params: { file: string } }>('/dashboard/:file', { schema: { hide: true } }, async (req, reply) => {
        const m = ASSET.exec(req.params.file);
        if (!m) return reply.code(404).send({ code: 'not_found', message: 'no such file' });
        let data: Buffer;
        try { data = readFileSync(join(this.webDir, req.params.file)); } catch {
          return reply.code(404).send({ code: 'not_found', message: 'no such file' });
        }
        return reply.header('cache-control', 'no-cache').type(TYPES[m[1]]).send(data);
      });
    });
  }
}

/** One cookie's value from a Cookie header, or null. */
function cookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return null;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
