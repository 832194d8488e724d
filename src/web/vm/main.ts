/**
 * The in-browser VM page: a RISC-V machine running in a Web Worker (worker.ts), driven over
 * the runner protocol the daemon uses with its runner processes. The console is xterm.js;
 * the status line shows the machine's state, its speed (MIPS, from the runner's `stats`
 * replies) and the guest's uptime. Files come from URLs (query parameters or the form) or
 * from the user's disk (blob: URLs); the server's guest is the default. A snapshot (from
 * `typevisor run`, the daemon or this page) restores from a URL (`?restore=URL`) or a picked
 * file, and Save snapshot downloads the running machine's (src/snapshot/format.ts).
 */
import '../shared/csp.js';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import { WorkerPort } from '../../vmm/worker-port.js';
import { PROTOCOL_VERSION, asFromRunner, type FromRunner, type RunnerConfig, type RunnerStats, type ToRunner } from '../../vmm/protocol.js';
import { readSnapshotHeader } from '../../snapshot/format.js';
import { RESTORE_KERNEL, browserRefusal, portableMachine } from '../../snapshot/portable.js';

/** The server names its guest files (typevisor web leaves out the initrd when it has none). */
const served = document.querySelector<HTMLMetaElement>('meta[name="guest-defaults"]')?.content ?? '';
const guest = new URLSearchParams(served.startsWith('{{') ? 'kernel=/guest/kernel&initrd=/guest/initrd' : served);
const DEFAULTS = { kernel: guest.get('kernel') ?? '', initrd: guest.get('initrd') ?? '', memMiB: 256, append: 'console=ttyS0' };
const STATS_MS = 1000;

function el<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`page element #${id} missing`);
  return e as T;
}

const form = el<HTMLFormElement>('setup-form');
const field = (name: string): HTMLInputElement => form.elements.namedItem(name) as HTMLInputElement;
const stateEl = el('state'), mipsEl = el('mips'), uptimeEl = el('uptime'), messageEl = el('message');
const pauseBtn = el<HTMLButtonElement>('pause'), rebootBtn = el<HTMLButtonElement>('reboot'), stopBtn = el<HTMLButtonElement>('stop');
const saveBtn = el<HTMLButtonElement>('save'), restoreInput = el<HTMLInputElement>('restore-file');

// lineHeight above 1: at 1 the DOM renderer clips underscores at the bottom of the cell.
const term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: window.innerWidth < 640 ? 12 : 14, lineHeight: 1.1 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(el('term'));
fit.fit();
new ResizeObserver(() => fit.fit()).observe(el('term'));

type State = 'idle' | 'loading' | 'booting' | 'running' | 'paused' | 'stopped';

/** One boot: a worker, its port and its figures. */
interface Session {
  worker: Worker;
  port: WorkerPort<FromRunner, ToRunner>;
  state: State;
  blobs: string[];
  /** performance.now() at `started`/`rebooted`, for the guest's uptime. */
  bootAt: number;
  pausedAtBoot: number;
  last: { at: number; instructions: number } | null;
  timer: number;
  statsId: number;
  tail: string;
  config: RunnerConfig;
  /** A snapshot to resume instead of booting, and what to call it. */
  restore: { bytes: Uint8Array; label: string } | null;
  /** A snapshot request in flight (its id), or 0. */
  saving: number;
  /** A restored machine reset: it has no kernel to boot again, so it is stopped. */
  noKernel: boolean;
}

let session: Session | null = null;
/** Bumped by every new machine: a slow snapshot read that lost the race is dropped. */
let restoreGen = 0;
const enc = new TextEncoder();

function setState(s: Session, state: State, message = ''): void {
  s.state = state;
  stateEl.textContent = state;
  stateEl.className = `state ${state}`;
  messageEl.textContent = message;
  pauseBtn.disabled = !(state === 'running' || state === 'booting' || state === 'paused');
  pauseBtn.textContent = state === 'paused' ? 'Resume' : 'Pause';
  // A restored machine has only a stand-in kernel (RESTORE_KERNEL): nothing to boot again.
  rebootBtn.disabled = pauseBtn.disabled || s.restore !== null;
  saveBtn.disabled = pauseBtn.disabled || s.saving !== 0;
  stopBtn.disabled = state === 'stopped' || state === 'idle';
}

/** Form and query parameters use the same names: kernel, initrd, disk, mem, append, jit. */
function fillForm(q: URLSearchParams): void {
  field('kernel').value = q.get('kernel') ?? DEFAULTS.kernel;
  field('initrd').value = q.get('initrd') ?? DEFAULTS.initrd;
  field('disk').value = q.get('disk') ?? '';
  field('mem').value = q.get('mem') ?? String(DEFAULTS.memMiB);
  field('append').value = q.get('append') ?? DEFAULTS.append;
  field('jit').checked = q.get('jit') !== 'off'; // the translator unless asked not to
}

/** A picked file wins over the URL beside it; blob: URLs are same-origin for the worker. */
function source(name: string, blobs: string[]): string | undefined {
  const file = field(`${name}-file`).files?.[0];
  if (file) { const u = URL.createObjectURL(file); blobs.push(u); return u; }
  const v = field(name).value.trim();
  return v === '' ? undefined : new URL(v, location.href).href;
}

function boot(): void {
  end();
  const blobs: string[] = [];
  const memMiB = Number(field('mem').value);
  if (!Number.isInteger(memMiB) || memMiB < 16 || memMiB > 2048) { messageEl.textContent = 'memory: a whole number of MiB from 16 to 2048'; return; }
  const kernel = source('kernel', blobs), initrd = source('initrd', blobs), disk = source('disk', blobs);
  const config: RunnerConfig = {
    name: 'browser', memoryBytes: memMiB * 1048576,
    ...(kernel === undefined ? {} : { kernel }),
    ...(initrd === undefined ? {} : { initrd }),
    append: field('append').value,
    ...(disk === undefined ? {} : { drives: [{ file: disk, format: 'raw' as const }] }),
  };
  // The address bar keeps a shareable setup (URLs only: picked files cannot be shared).
  const q = new URLSearchParams();
  for (const n of ['kernel', 'initrd', 'disk', 'append']) {
    const v = field(n).value.trim();
    if (v !== '' && !field(`${n}-file`)?.files?.length) q.set(n, v);
  }
  q.set('mem', String(memMiB));
  if (!field('jit').checked) q.set('jit', 'off');
  history.replaceState(null, '', `?${q}`);
  launch(config, blobs, null);
}

/** Start a worker for `config`, booting it or resuming `restore`. */
function launch(config: RunnerConfig, blobs: string[], restore: Session['restore']): void {
  // Host settings travel in the worker's URL, as a runner process gets its environment.
  const workerUrl = new URL('worker.js', import.meta.url);
  if (!field('jit').checked) workerUrl.searchParams.set('jit', 'off');
  const worker = new Worker(workerUrl, { type: 'module', name: 'typevisor-vm' });
  const port = new WorkerPort<FromRunner, ToRunner>(worker);
  const s: Session = {
    worker, port, state: 'loading', blobs, bootAt: 0, pausedAtBoot: 0, last: null, timer: 0, statsId: 0, tail: '',
    config, restore, saving: 0, noKernel: false,
  };
  session = s;
  term.reset();
  setState(s, 'loading', restore ? `restoring ${restore.label}…` : 'fetching the kernel and initrd…');
  mipsEl.textContent = '– MIPS';
  uptimeEl.textContent = 'up –';
  port.onMessage((raw) => {
    const m = asFromRunner(raw);
    if (m && session === s) onRunner(s, m);
  });
  port.onClose(() => {
    if (session === s && s.state !== 'stopped') finish(s, 'stopped', 'the worker ended unexpectedly (see the browser console)');
  });
  s.timer = window.setInterval(() => { if (s.state !== 'loading') s.port.post({ type: 'stats', id: ++s.statsId }); }, STATS_MS);
}

function onRunner(s: Session, m: FromRunner): void {
  switch (m.type) {
    case 'hello':
      if (m.version !== PROTOCOL_VERSION) { finish(s, 'stopped', `runner protocol ${m.version}, page speaks ${PROTOCOL_VERSION}`); return; }
      s.port.post({ type: 'start', version: PROTOCOL_VERSION, config: s.config, ...(s.restore ? { restore: s.restore.bytes } : {}) });
      return;
    case 'started': case 'rebooted':
      if (s.restore && m.type === 'started') {
        // The guest was running when saved: no boot, no uptime from here.
        s.restore.bytes = new Uint8Array(0);
        setState(s, 'running', `restored ${s.restore.label}`);
        return;
      }
      if (s.restore) {
        s.noKernel = true;
        s.port.post({ type: 'stop' });
        return;
      }
      s.bootAt = performance.now();
      s.pausedAtBoot = -1;
      uptimeEl.textContent = 'up 0:00';
      setState(s, 'booting', m.type === 'rebooted' ? 'the guest rebooted' : '');
      return;
    case 'console':
      term.write(m.data);
      if (s.state === 'booting') {
        // Booting ends at the first shell prompt ("# " or "$ " closing the output).
        s.tail = (s.tail + new TextDecoder().decode(m.data)).slice(-64);
        if (/[#$>] $/.test(s.tail)) setState(s, 'running');
      }
      return;
    case 'stats': showStats(s, m.stats); return;
    case 'state': setState(s, m.state === 'paused' ? 'paused' : 'running'); return;
    case 'snapshot': saved(s, m); return;
    case 'exit': {
      const why = s.noKernel ? 'the guest reset; a restored machine has no kernel to boot again (Boot starts a new one)'
        : `${m.reason}${m.code ? ` (code ${m.code})` : ''}${m.message ? `: ${m.message.split('\n')[0]}` : ''}`;
      finish(s, 'stopped', why);
      if (m.reason !== 'poweroff' && m.reason !== 'stopped') term.write(`\r\n\x1b[31mtypevisor: ${why}\x1b[0m\r\n`);
      return;
    }
  }
}

/** The runner's answer to Save snapshot: download it as a file. */
function saved(s: Session, m: Extract<FromRunner, { type: 'snapshot' }>): void {
  if (m.id !== s.saving) return;
  s.saving = 0;
  setState(s, s.state, '');
  if (!m.data) { messageEl.textContent = `snapshot not saved: ${m.error ?? 'no data'}`; return; }
  // As `typevisor run` names its snapshots (UTC).
  const name = `typevisor-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}.tvs`;
  const url = URL.createObjectURL(new Blob([m.data as BlobPart], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has taken its copy once the click is handled; keep the URL a while for slow browsers.
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
  messageEl.textContent = `saved ${name} (${(m.data.length / 1048576).toFixed(1)} MiB)`;
}

function save(): void {
  const s = session;
  if (!s || s.saving) return;
  if (s.config.drives?.length) {
    messageEl.textContent = 'snapshot not saved: the disk lives in this page\'s memory, and a snapshot does not carry disks';
    return;
  }
  s.saving = ++s.statsId;
  setState(s, s.state, 'saving a snapshot…');
  s.port.post({ type: 'snapshot', id: s.saving });
}

/**
 * Restore a snapshot: checked whole (magic, version, every checksum) before a worker starts,
 * so a bad file leaves no machine behind, only the format's message.
 */
async function restoreFrom(label: string, read: () => Promise<Uint8Array>): Promise<void> {
  end();
  const gen = ++restoreGen;
  term.reset();
  showIdle('loading', `reading snapshot ${label}…`);
  let bytes: Uint8Array;
  try {
    bytes = await read();
  } catch (e) {
    if (gen === restoreGen) refuse(`cannot read snapshot ${label}: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  if (gen !== restoreGen) return;
  let config: RunnerConfig;
  const blobs: string[] = [];
  try {
    const header = readSnapshotHeader(bytes);
    const machine = portableMachine(header);
    const why = browserRefusal(machine);
    if (why) throw new Error(why);
    // Restore overwrites RAM and every device: a stand-in kernel gives the boot path.
    const stand = URL.createObjectURL(new Blob([RESTORE_KERNEL as BlobPart]));
    blobs.push(stand);
    config = {
      name: 'browser', memoryBytes: machine.memoryBytes, append: '',
      ...(machine.boot === 'firmware' ? { bios: stand } : { kernel: stand, ...(machine.boot === 'none' ? { bios: 'none' } : {}) }),
    };
    label = `${label} (saved ${header.created} by ${machine.savedBy}, typevisor ${header.typevisor})`;
  } catch (e) {
    refuse(`snapshot ${label} refused: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  launch(config, blobs, { bytes, label });
}

/** No machine: a state and a message only. */
function showIdle(state: 'idle' | 'loading', message: string): void {
  stateEl.textContent = state;
  stateEl.className = `state ${state}`;
  messageEl.textContent = message;
  for (const b of [pauseBtn, rebootBtn, stopBtn, saveBtn]) b.disabled = true;
}

function refuse(message: string): void {
  showIdle('idle', message);
  term.write(`\x1b[31mtypevisor: ${message}\x1b[0m\r\n`);
}

async function fetchSnapshot(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`HTTP ${r.status}${r.statusText ? ' ' + r.statusText : ''}`);
  return new Uint8Array(await r.arrayBuffer());
}

function showStats(s: Session, st: RunnerStats): void {
  const now = performance.now();
  if (s.pausedAtBoot < 0) s.pausedAtBoot = st.pausedMs;
  if (s.last && now > s.last.at) {
    // Guest instructions retired per host microsecond since the last reply.
    const mips = (st.instructions - s.last.instructions) / ((now - s.last.at) * 1000);
    mipsEl.textContent = `${mips.toFixed(1)} MIPS`;
  }
  s.last = { at: now, instructions: st.instructions };
  if (s.bootAt > 0) uptimeEl.textContent = `up ${clock((now - s.bootAt - (st.pausedMs - s.pausedAtBoot)) / 1000)}`;
}

function clock(sec: number): string {
  const t = Math.max(0, Math.floor(sec));
  const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, x = t % 60;
  return `${h ? `${h}:` : ''}${String(m).padStart(h ? 2 : 1, '0')}:${String(x).padStart(2, '0')}`;
}

function finish(s: Session, state: State, message: string): void {
  window.clearInterval(s.timer);
  setState(s, state, message);
  mipsEl.textContent = '– MIPS';
  for (const u of s.blobs) URL.revokeObjectURL(u);
  s.blobs = [];
}

/** Forget the current machine at once (a new boot replaces it). */
function end(): void {
  restoreGen++;
  const s = session;
  if (!s) return;
  session = null;
  window.clearInterval(s.timer);
  s.worker.terminate();
  for (const u of s.blobs) URL.revokeObjectURL(u);
}

term.onData((d) => { if (session) session.port.post({ type: 'input', data: enc.encode(d) }); });
// Bytes that are not UTF-8 text (some mouse reports) come through onBinary.
term.onBinary((d) => {
  if (!session) return;
  const b = new Uint8Array(d.length);
  for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
  session.port.post({ type: 'input', data: b });
});

form.addEventListener('submit', (e) => { e.preventDefault(); boot(); term.focus(); });
pauseBtn.addEventListener('click', () => {
  const s = session;
  if (s) s.port.post({ type: s.state === 'paused' ? 'resume' : 'suspend' });
  term.focus();
});
rebootBtn.addEventListener('click', () => { session?.port.post({ type: 'reboot' }); term.focus(); });
stopBtn.addEventListener('click', () => { session?.port.post({ type: 'stop' }); });
saveBtn.addEventListener('click', () => { save(); term.focus(); });
restoreInput.addEventListener('change', () => {
  const file = restoreInput.files?.[0];
  if (!file) return;
  restoreInput.value = '';
  history.replaceState(null, '', `?boot=0${field('jit').checked ? '' : '&jit=off'}`);
  void restoreFrom(`'${file.name}'`, async () => new Uint8Array(await file.arrayBuffer()));
  term.focus();
});

/** What tests (and curious users, from the devtools console) can read. */
declare global {
  interface Window {
    /** The in-browser VM page's test hook (the dashboard's is `typevisor`). */
    typevisorVm: { screen(): string; state(): State };
  }
}
window.typevisorVm = {
  screen(): string {
    const b = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n').trimEnd();
  },
  state: () => session?.state ?? 'idle',
};

const query = new URLSearchParams(location.search);
fillForm(query);
stateEl.textContent = 'idle';
const restoreUrl = query.get('restore');
if (restoreUrl !== null && restoreUrl !== '') {
  let url: string | null = null;
  try { url = new URL(restoreUrl, location.href).href; } catch { refuse(`snapshot '${restoreUrl}' refused: not a URL`); }
  if (url !== null) void restoreFrom(`'${restoreUrl}'`, () => fetchSnapshot(url));
} else if (query.get('boot') !== '0') boot();
term.focus();
