/**
 * The dashboard page: a VM list with live figures and lifecycle buttons, a define form, and
 * for the selected VM its console (xterm.js over the console WebSocket) and charts (uPlot).
 * Everything goes through /v1 with the session cookie; state changes carry the
 * X-Typevisor header the daemon requires of cookie-authenticated requests (CSRF).
 * History lives here, in a ring buffer per VM filled by polling /v1/vms/{name}/stats.
 */
import '../shared/csp.js'; // before any Terminal: xterm's styles under the strict CSP
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import uPlot from 'uplot';
import '@xterm/xterm/css/xterm.css';
import 'uplot/dist/uPlot.min.css';

// --- API -----------------------------------------------------------------------------------
type VmState = 'shutoff' | 'running' | 'paused' | 'crashed';
interface VmDef {
  name: string; memory?: number | string; kernel?: string; initrd?: string; append?: string;
  drives?: Array<{ file: string; format?: 'raw' | 'qcow2'; readOnly?: boolean; snapshot?: boolean }>;
  nics?: Array<{ type: 'user' | 'switch'; switch?: string; hostfwd?: string[]; mac?: string; restrict?: boolean }>;
  limits?: Record<string, unknown>; autostart?: boolean;
}
interface VmInfo {
  name: string; state: VmState; definition: VmDef; pid?: number; uptimeSeconds?: number;
  lastExit?: { reason: string; code: number; message?: string };
}
interface Stats {
  cpuSeconds: number; rssBytes: number; instructions: number;
  disks: Array<{ readBytes: number; writeBytes: number }>;
  /** Per-NIC counters, when the daemon's runners report them. */
  nics?: Array<{ rxBytes: number; txBytes: number }>;
}
interface ApiErrorBody { code?: string; message?: string; field?: string }

class ApiFailure extends Error {
  constructor(readonly status: number, readonly body: ApiErrorBody) { super(body.message ?? `HTTP ${status}`); }
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { 'x-typevisor': '1' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (r.status === 401) { location.assign('/login'); throw new ApiFailure(401, { message: 'logged out' }); }
  const text = await r.text();
  if (!(r.headers.get('content-type') ?? '').includes('json')) {
    if (!r.ok) throw new ApiFailure(r.status, { message: text || `HTTP ${r.status}` });
    return text as T;
  }
  let json: unknown = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!r.ok) throw new ApiFailure(r.status, (json ?? { message: text }) as ApiErrorBody);
  return json as T;
}

// --- Formatting ------------------------------------------------------------------------------
function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${(i === 0 && Number.isInteger(n)) || n >= 100 ? n.toFixed(0) : n.toFixed(1)} ${u[i]}`;
}
function memoryBytes(m: number | string | undefined): number {
  if (m === undefined) return 128 * 2 ** 20;
  if (typeof m === 'number') return m;
  const mm = /^([0-9]+)([KMG]?)$/.exec(m);
  if (!mm) return NaN;
  return Number(mm[1]) * 2 ** (mm[2] === 'K' ? 10 : mm[2] === 'G' ? 30 : 20);
}
function duration(s: number): string {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  const two = (x: number): string => String(x).padStart(2, '0');
  return d ? `${d}d ${two(h)}h` : h ? `${h}h ${two(m)}m` : `${m}m ${two(s % 60)}s`;
}
function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing`);
  return e as T;
}

const statusEl = byId<HTMLSpanElement>('status');
function status(msg: string, error = false): void {
  statusEl.textContent = msg;
  statusEl.classList.toggle('error', error);
}

// --- History: a ring buffer of samples per VM ----------------------------------------------
const HISTORY = 600; // samples: 10 minutes at one a second
const COLS = ['cpu', 'rss', 'diskRead', 'diskWrite', 'netRx', 'netTx'] as const;
type Col = typeof COLS[number];

class Ring {
  private readonly t = new Float64Array(HISTORY);
  private readonly cols = COLS.map(() => new Float64Array(HISTORY));
  private head = 0;
  len = 0;

  push(t: number, v: Record<Col, number>): void {
    this.t[this.head] = t;
    COLS.forEach((c, i) => { this.cols[i][this.head] = v[c]; });
    this.head = (this.head + 1) % HISTORY;
    if (this.len < HISTORY) this.len++;
  }

  /** Oldest first: [time, ...the named columns]. */
  series(names: readonly Col[]): number[][] {
    const start = (this.head - this.len + HISTORY) % HISTORY;
    const pick = (a: Float64Array): number[] => {
      const out = new Array<number>(this.len);
      for (let i = 0; i < this.len; i++) out[i] = a[(start + i) % HISTORY];
      return out;
    };
    return [pick(this.t), ...names.map((n) => pick(this.cols[COLS.indexOf(n)]))];
  }

  last(c: Col): number { return this.len ? this.cols[COLS.indexOf(c)][(this.head - 1 + HISTORY) % HISTORY] : NaN; }
}

interface Prev { wall: number; cpu: number; read: number; write: number; rx: number; tx: number }
interface Track { ring: Ring; prev: Prev | null; hasNets: boolean }
const tracks = new Map<string, Track>();
function track(name: string): Track {
  let t = tracks.get(name);
  if (!t) { t = { ring: new Ring(), prev: null, hasNets: false }; tracks.set(name, t); }
  return t;
}

function record(name: string, s: Stats): void {
  const tr = track(name);
  const wall = performance.now() / 1000;
  const sum = (a: Array<Record<string, number>> | undefined, k: string): number => (a ?? []).reduce((x, d) => x + (d[k] ?? 0), 0);
  const cur: Prev = { wall, cpu: s.cpuSeconds, read: sum(s.disks, 'readBytes'), write: sum(s.disks, 'writeBytes'), rx: sum(s.nics, 'rxBytes'), tx: sum(s.nics, 'txBytes') };
  tr.hasNets = (s.nics?.length ?? 0) > 0;
  const p = tr.prev;
  tr.prev = cur;
  if (!p || cur.cpu < p.cpu) return; // first sample, or a new runner: no rates yet
  const dt = cur.wall - p.wall;
  if (dt <= 0) return;
  const rate = (a: number, b: number): number => Math.max(0, (a - b) / dt);
  tr.ring.push(Date.now() / 1000, {
    cpu: rate(cur.cpu, p.cpu) * 100, rss: s.rssBytes,
    diskRead: rate(cur.read, p.read), diskWrite: rate(cur.write, p.write),
    netRx: rate(cur.rx, p.rx), netTx: rate(cur.tx, p.tx),
  });
}

function sparkline(canvas: HTMLCanvasElement, values: number[]): void {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const g = canvas.getContext('2d');
  if (!g) return;
  g.clearRect(0, 0, w, h);
  const v = values.slice(-90);
  if (v.length < 2) return;
  const max = Math.max(100, ...v);
  g.beginPath();
  v.forEach((y, i) => {
    const px = (i / (v.length - 1)) * (w - 2) + 1, py = h - 1 - (y / max) * (h - 2);
    if (i) g.lineTo(px, py); else g.moveTo(px, py);
  });
  g.strokeStyle = '#4aa3ff';
  g.lineWidth = 1.5 * dpr;
  g.stroke();
}

// --- The VM list -----------------------------------------------------------------------------
const ACTIONS: Array<{ verb: string; label: string; when: VmState[]; danger?: boolean }> = [
  { verb: 'start', label: 'Start', when: ['shutoff', 'crashed'] },
  { verb: 'shutdown', label: 'Shutdown', when: ['running', 'paused'] },
  { verb: 'suspend', label: 'Suspend', when: ['running'] },
  { verb: 'resume', label: 'Resume', when: ['paused'] },
  { verb: 'reboot', label: 'Reboot', when: ['running', 'paused'] },
  { verb: 'destroy', label: 'Destroy', when: ['running', 'paused'], danger: true },
  { verb: 'undefine', label: 'Undefine', when: ['shutoff', 'crashed'], danger: true },
];

interface Card {
  root: HTMLElement; state: HTMLSpanElement; mem: HTMLElement; cpu: HTMLElement; rss: HTMLElement;
  uptime: HTMLElement; spark: HTMLCanvasElement; exit: HTMLParagraphElement; buttons: Map<string, HTMLButtonElement>;
}
const cards = new Map<string, Card>();
const vmsEl = byId<HTMLDivElement>('vms');
let vms: VmInfo[] = [];
let selected: string | null = null;

function figure(parent: HTMLElement, label: string): HTMLElement {
  const d = el('div');
  d.append(el('dt', undefined, label));
  const dd = el('dd', undefined, '–');
  d.append(dd);
  parent.append(d);
  return dd;
}

function makeCard(name: string): Card {
  const root = el('article', 'vm');
  root.dataset.name = name;
  const head = el('div', 'vm-head');
  head.append(el('h3', undefined, name));
  const state = el('span', 'state');
  head.append(state);
  const figs = el('dl', 'figures');
  const card: Card = {
    root, state, mem: figure(figs, 'memory'), cpu: figure(figs, 'CPU'), rss: figure(figs, 'RSS'), uptime: figure(figs, 'uptime'),
    spark: el('canvas', 'spark'), exit: el('p', 'exit muted'), buttons: new Map(),
  };
  card.spark.setAttribute('aria-label', 'CPU over the last minute');
  const actions = el('div', 'actions');
  const consoleBtn = el('button', 'ghost', 'Console');
  consoleBtn.type = 'button';
  consoleBtn.dataset.action = 'console';
  consoleBtn.addEventListener('click', () => select(name));
  actions.append(consoleBtn);
  for (const a of ACTIONS) {
    const b = el('button', a.danger ? 'danger' : undefined, a.label);
    b.type = 'button';
    b.dataset.action = a.verb;
    b.addEventListener('click', () => void act(name, a.verb));
    card.buttons.set(a.verb, b);
    actions.append(b);
  }
  root.append(head, figs, card.spark, card.exit, actions);
  return card;
}

function renderList(): void {
  const names = new Set(vms.map((v) => v.name));
  for (const [n, c] of cards) if (!names.has(n)) { c.root.remove(); cards.delete(n); tracks.delete(n); }
  for (const v of vms) {
    let c = cards.get(v.name);
    if (!c) { c = makeCard(v.name); cards.set(v.name, c); }
    vmsEl.append(c.root); // keeps the API's order
    c.root.classList.toggle('selected', v.name === selected);
    c.root.dataset.state = v.state;
    c.state.textContent = v.state;
    c.state.className = `state state-${v.state}`;
    c.mem.textContent = bytes(memoryBytes(v.definition.memory));
    const live = v.state === 'running' || v.state === 'paused';
    const tr = tracks.get(v.name);
    c.cpu.textContent = live && tr && tr.ring.len ? `${tr.ring.last('cpu').toFixed(1)} %` : '–';
    c.rss.textContent = live && tr && tr.ring.len ? bytes(tr.ring.last('rss')) : '–';
    c.uptime.textContent = live && v.uptimeSeconds !== undefined ? duration(v.uptimeSeconds) : '–';
    sparkline(c.spark, live && tr ? tr.ring.series(['cpu'])[1] : []);
    const ex = v.lastExit;
    c.exit.hidden = !ex || live;
    c.exit.textContent = ex ? `last exit: ${ex.reason}${ex.message ? ` (${ex.message.split('\n')[0]})` : ''}` : '';
    for (const a of ACTIONS) c.buttons.get(a.verb)!.disabled = !a.when.includes(v.state);
  }
  byId('empty').hidden = vms.length > 0;
}

async function act(name: string, verb: string): Promise<void> {
  try {
    if (verb === 'undefine') {
      if (!confirm(`Undefine ${name}? Its definition is deleted (disk images stay).`)) return;
      await api('DELETE', `/v1/vms/${encodeURIComponent(name)}`);
      if (selected === name) closeDetail();
    } else {
      status(`${verb} ${name}…`);
      await api('POST', `/v1/vms/${encodeURIComponent(name)}/${verb}`);
    }
    status(`${verb} ${name}: done`);
  } catch (e) {
    status(`${verb} ${name}: ${(e as Error).message}`, true);
  }
  await poll();
}

// --- Polling and events ----------------------------------------------------------------------
let polling: Promise<void> | null = null;
let pollTimer = 0;

async function pollOnce(): Promise<void> {
  vms = await api<VmInfo[]>('GET', '/v1/vms');
  await Promise.all(vms.filter((v) => v.state === 'running' || v.state === 'paused').map(async (v) => {
    try { record(v.name, await api<Stats>('GET', `/v1/vms/${encodeURIComponent(v.name)}/stats`)); } catch { /* stopped meanwhile */ }
  }));
  for (const v of vms) if (v.state !== 'running' && v.state !== 'paused') { const t = tracks.get(v.name); if (t) t.prev = null; }
  if (selected !== null && !vms.some((v) => v.name === selected)) closeDetail(); // undefined elsewhere
  renderList();
  updateDetail();
}

/**
 * One poll at a time; a call during a poll waits for it and polls again. Each poll asks every
 * live runner for its stats, so a hidden tab polls every 10 s rather than every second.
 */
function poll(): Promise<void> {
  clearTimeout(pollTimer);
  const run = (polling ?? Promise.resolve()).then(pollOnce).catch((e: Error) => status(`cannot reach the daemon: ${e.message}`, true))
    .finally(() => { if (polling === run) { polling = null; pollTimer = window.setTimeout(() => void poll(), document.hidden ? 10_000 : 1000); } });
  polling = run;
  return run;
}

function listenEvents(): void {
  const es = new EventSource('/v1/events');
  es.addEventListener('state', () => void poll());
  // EventSource reconnects by itself after an error.
}

// --- The define form -------------------------------------------------------------------------
const form = byId<HTMLFormElement>('define');
const defineError = byId<HTMLParagraphElement>('define-error');

/** A number when the text is one, else the text (the API then names the field). */
function num(s: string): number | string { const n = Number(s); return s !== '' && Number.isFinite(n) ? n : s; }

function definitionFrom(f: FormData): VmDef {
  const text = (k: string): string => String(f.get(k) ?? '').trim();
  const def: VmDef = { name: text('name') };
  if (text('memory')) def.memory = text('memory');
  for (const k of ['kernel', 'initrd', 'append'] as const) if (text(k)) def[k] = text(k);
  const drives = text('drives').split('\n').map((l) => l.trim()).filter((l) => l);
  if (drives.length) {
    def.drives = drives.map((line) => {
      const [file, ...opts] = line.split(',');
      const d: NonNullable<VmDef['drives']>[number] = { file };
      for (const o of opts) {
        if (o === 'readonly' || o === 'ro') d.readOnly = true;
        else if (o === 'snapshot') d.snapshot = true;
        else if (o === 'format=qcow2' || o === 'format=raw') d.format = o.slice(7) as 'raw' | 'qcow2';
      }
      return d;
    });
  }
  if (f.get('nic') !== null) {
    // One user-mode NIC; forwards separated by spaces or commas, in QEMU's hostfwd spelling.
    const nic: NonNullable<VmDef['nics']>[number] = { type: 'user' };
    const fwd = text('hostfwd').split(/[\s,]+/).filter((x) => x);
    if (fwd.length) nic.hostfwd = fwd;
    if (text('mac')) nic.mac = text('mac');
    if (f.get('restrict') !== null) nic.restrict = true;
    def.nics = [nic];
  }
  if (text('switch')) {
    // A port on the daemon's named switch, after the user-mode NIC if there is one.
    def.nics = [...def.nics ?? [], { type: 'switch', switch: text('switch') }];
    const input = form.querySelector<HTMLInputElement>('input[name="switch"]');
    if (input) input.dataset.field = `/nics/${def.nics.length - 1}/switch`;
  }
  const limits: Record<string, unknown> = {};
  if (text('cpu')) limits.cpu = num(text('cpu'));
  if (text('cpuWeight')) limits.cpuWeight = num(text('cpuWeight'));
  if (text('hostMemory')) limits.hostMemory = num(text('hostMemory'));
  const disk: Record<string, unknown> = {};
  // Per second: a bucket of that size refilled every second.
  if (text('diskBandwidth')) disk.bandwidth = { size: num(text('diskBandwidth')), refillTimeMs: 1000 };
  if (text('diskOps')) disk.ops = { size: num(text('diskOps')), refillTimeMs: 1000 };
  if (Object.keys(disk).length) limits.disk = disk;
  const net: Record<string, unknown> = {};
  if (text('netRx')) net.rx = { bandwidth: { size: num(text('netRx')), refillTimeMs: 1000 } };
  if (text('netTx')) net.tx = { bandwidth: { size: num(text('netTx')), refillTimeMs: 1000 } };
  if (Object.keys(net).length) limits.net = net;
  if (Object.keys(limits).length) def.limits = limits;
  if (f.get('autostart') !== null) def.autostart = true;
  return def;
}

function markField(field: string | undefined): void {
  const path = (field ?? '').replace(/^body/, '');
  let best: HTMLElement | null = null as HTMLElement | null, bestLen = -1;
  form.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>('[data-field]').forEach((input) => {
    input.removeAttribute('aria-invalid');
    const f = input.dataset.field ?? '';
    if (path && (path === f || path.startsWith(f + '/')) && f.length > bestLen) { best = input; bestLen = f.length; }
  });
  if (best) { best.setAttribute('aria-invalid', 'true'); best.focus(); }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const def = definitionFrom(new FormData(form));
  defineError.hidden = true;
  markField(undefined);
  api<VmInfo>('POST', '/v1/vms', def).then(async () => {
    form.reset();
    byId<HTMLDetailsElement>('define-box').open = false;
    status(`defined ${def.name}`);
    await poll();
  }).catch((e: unknown) => {
    const body = e instanceof ApiFailure ? e.body : { message: String(e) };
    defineError.textContent = body.field ? `${body.field.replace(/^body\/?/, '') || 'body'}: ${body.message ?? ''}` : body.message ?? 'failed';
    defineError.hidden = false;
    markField(body.field);
  });
});

// --- The selected VM: console and charts -----------------------------------------------------
const detail = byId<HTMLElement>('detail');
const consoleState = byId<HTMLSpanElement>('console-state');
let term: Terminal | null = null;
let fit: FitAddon | null = null;
let socket: WebSocket | null = null;
let reconnectTimer = 0;
const encoder = new TextEncoder();

function ensureTerminal(): Terminal {
  if (term) return term;
  const t = new Terminal({
    convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: window.innerWidth < 480 ? 12 : 13,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
    theme: { background: '#000000', foreground: '#dde3ea' },
  });
  fit = new FitAddon();
  t.loadAddon(fit);
  t.open(byId('terminal'));
  t.onData((d) => { if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(d)); });
  t.onBinary((d) => {
    if (socket?.readyState !== WebSocket.OPEN) return;
    const b = new Uint8Array(d.length);
    for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
    socket.send(b);
  });
  // Ctrl+Shift+C copies the selection; Ctrl+Shift+V is left to the browser, whose paste
  // event xterm turns into input (as a right-click paste or the Paste button do).
  t.attachCustomKeyEventHandler((e) => {
    if (e.type === 'keydown' && e.ctrlKey && e.shiftKey && e.code === 'KeyC') { void copySelection(); return false; }
    if (e.ctrlKey && e.shiftKey && e.code === 'KeyV') return false;
    return true;
  });
  new ResizeObserver(() => fit?.fit()).observe(byId('terminal'));
  term = t;
  return t;
}

async function copySelection(): Promise<void> {
  const s = term?.getSelection() ?? '';
  if (!s) { status('nothing selected'); return; }
  try { await navigator.clipboard.writeText(s); status('copied'); } catch (e) { status(`copy: ${(e as Error).message}`, true); }
}
byId('copy').addEventListener('click', () => void copySelection());
byId('paste').addEventListener('click', () => {
  navigator.clipboard.readText().then((s) => { term?.paste(s); term?.focus(); }, (e: Error) => status(`paste: ${e.message} (use Ctrl+Shift+V)`, true));
});

function connect(name: string): void {
  clearTimeout(reconnectTimer);
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/v1/vms/${encodeURIComponent(name)}/console`);
  ws.binaryType = 'arraybuffer';
  socket = ws;
  consoleState.textContent = 'connecting…';
  ws.addEventListener('open', () => { consoleState.textContent = 'connected'; });
  ws.addEventListener('message', (m: MessageEvent<ArrayBuffer | string>) => {
    if (socket === ws) term?.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data));
  });
  ws.addEventListener('close', () => {
    if (socket !== ws) return;
    socket = null;
    consoleState.textContent = 'disconnected; retrying';
    reconnectTimer = window.setTimeout(() => { if (selected === name) connect(name); }, 2000);
  });
}

function select(name: string): void {
  if (selected === name) { term?.focus(); return; }
  selected = name;
  detail.hidden = false;
  byId('detail-title').textContent = name;
  const t = ensureTerminal();
  t.reset();
  if (socket) { const s = socket; socket = null; s.close(); }
  // The output so far, then the live stream.
  api<string>('GET', `/v1/vms/${encodeURIComponent(name)}/console/log`).catch(() => '').then((log) => {
    if (selected !== name) return;
    if (typeof log === 'string') t.write(log.replace(/\r?\n/g, '\r\n'));
    connect(name);
  }, () => {});
  requestAnimationFrame(() => { fit?.fit(); t.focus(); });
  renderList();
  updateDetail();
  if (window.innerWidth <= 900) detail.scrollIntoView({ block: 'start' });
}

function closeDetail(): void {
  selected = null;
  detail.hidden = true;
  clearTimeout(reconnectTimer);
  if (socket) { const s = socket; socket = null; s.close(); }
  renderList();
}
byId('close').addEventListener('click', closeDetail);

interface Chart { plot: uPlot | null; box: HTMLElement; cols: readonly Col[] }
const charts: Chart[] = [];

function makeChart(id: string, cols: readonly Col[], labels: string[], colors: string[], fmt: (v: number) => string): Chart {
  const box = byId(id);
  const c: Chart = { plot: null, box, cols };
  const opts: uPlot.Options = {
    width: Math.max(200, box.clientWidth), height: 150,
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i], width: 1.5, value: (_u: uPlot, v: number | null) => (v === null ? '–' : fmt(v)) }))],
    axes: [
      { stroke: '#8b98a5', grid: { stroke: '#2a3440', width: 1 }, ticks: { stroke: '#2a3440', width: 1 } },
      { stroke: '#8b98a5', grid: { stroke: '#2a3440', width: 1 }, ticks: { stroke: '#2a3440', width: 1 }, size: 76, values: (_u: uPlot, vals: number[]) => vals.map(fmt) },
    ],
    scales: { x: { time: true }, y: { range: (_u: uPlot, _min: number, max: number) => [0, max > 0 ? max * 1.1 : 1] } },
    legend: { show: true, live: false },
  };
  c.plot = new uPlot(opts, [[], ...cols.map(() => [])] as uPlot.AlignedData, box);
  charts.push(c);
  return c;
}

const rate = (v: number): string => `${bytes(v)}/s`;
makeChart('chart-cpu', ['cpu'], ['CPU %'], ['#4aa3ff'], (v) => `${v.toFixed(v < 10 ? 1 : 0)} %`);
makeChart('chart-mem', ['rss'], ['RSS'], ['#3ccf7a'], bytes);
makeChart('chart-disk', ['diskRead', 'diskWrite'], ['read', 'write'], ['#4aa3ff', '#e8b443'], rate);
makeChart('chart-net', ['netRx', 'netTx'], ['rx', 'tx'], ['#3ccf7a', '#f2555a'], rate);
new ResizeObserver(() => { for (const c of charts) c.plot?.setSize({ width: Math.max(200, c.box.clientWidth), height: 150 }); }).observe(detail);

function updateDetail(): void {
  if (selected === null) return;
  const tr = tracks.get(selected);
  for (const c of charts) c.plot?.setData((tr ? tr.ring.series(c.cols) : [[], ...c.cols.map(() => [])]) as uPlot.AlignedData);
  byId('net-note').textContent = tr?.hasNets ? '' : '(no NIC counters from this VM)';
}

// --- For tests: a read-only view of what the page shows --------------------------------------
declare global {
  interface Window { typevisor: { consoleText(): string; chartPoints(): number; selected(): string | null } }
}
Object.defineProperty(window, 'typevisor', {
  value: Object.freeze({
    /** The terminal's buffer as text (what xterm shows, scrollback included). */
    consoleText(): string {
      if (!term) return '';
      const b = term.buffer.active, out: string[] = [];
      for (let i = 0; i < b.length; i++) out.push(b.getLine(i)?.translateToString(true) ?? '');
      return out.join('\n');
    },
    /** Samples the selected VM's charts hold. */
    chartPoints(): number { return charts[0]?.plot?.data[0]?.length ?? 0; },
    selected(): string | null { return selected; },
  }),
  writable: false,
});

window.addEventListener('resize', () => fit?.fit());
document.addEventListener('visibilitychange', () => { if (!document.hidden) void poll(); });
listenEvents();
void poll();
