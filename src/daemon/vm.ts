/**
 * One VM as the daemon sees it: its definition, its state (libvirt's names), its runner
 * process, the console's last 64 KiB, and its CPU cap. A runner that dies without
 * reporting an exit leaves the VM `crashed` with the reason and the console's last lines;
 * the daemon itself never throws on a dying runner.
 */
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { EventEmitter } from 'node:events';
import { getPriority, setPriority } from 'node:os';
import { SocketPort, connectRunner, MAX_SOCKET_PATH } from '../vmm/socket-port.js';
import { PROTOCOL_VERSION, asFromRunner, type FromRunner, type RunnerConfig, type RunnerStats, type ToRunner } from '../vmm/protocol.js';
import { memoryBytes, nicMac, nicNetdev, type VmDef } from './store.js';
import { switchSocketPath } from './switches.js';
import { readSnapshotFile, writeFileAtomic } from '../host/snapshot-file.js';
import { RUNNER_NODE_FLAGS } from '../vmm/config.js';

export type VmState = 'shutoff' | 'running' | 'paused' | 'crashed';
export const VM_STATES: readonly VmState[] = ['shutoff', 'running', 'paused', 'crashed'];

export const CONSOLE_LOG_BYTES = 64 * 1024;
/** cgroup cpu.max's default period. */
export const CPU_PERIOD_MS = 100;

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string) { super(message); }
}

/** A byte ring of the console's last output. */
class ConsoleLog {
  private chunks: Uint8Array[] = [];
  private size = 0;
  push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - this.chunks[0].length >= CONSOLE_LOG_BYTES) this.size -= this.chunks.shift()!.length;
  }
  bytes(): Uint8Array {
    const all = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) { all.set(c, o); o += c.length; }
    return all.length > CONSOLE_LOG_BYTES ? all.subarray(all.length - CONSOLE_LOG_BYTES) : all;
  }
  text(): string { return new TextDecoder().decode(this.bytes()); }
  clear(): void { this.chunks = []; this.size = 0; }
}

/** Process CPU seconds (user + system) from /proc; null when the process is gone. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at state (field 3).
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in USER_HZ (100 on Linux)
  } catch {
    return null;
  }
}

/**
 * cpu.weight → a nice offset: CFS weights step by about 1.25× per nice level; `reference`
 * (default 100) is the weight that runs at the daemon's own nice value.
 */
export function niceOffset(weight: number, reference = 100): number {
  return Math.round(Math.log(reference / weight) / Math.log(1.25));
}

/** The process's resident set in bytes (VmRSS), or null when it is gone. */
export function procRssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The process's start time (field 22 of /proc/PID/stat), or null. */
export function procStartTime(pid: number): string | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * CPU cap by duty-cycling the runner with SIGSTOP/SIGCONT: in each period it may run for
 * cap × period, corrected by the CPU time it actually used since the cap was set (an
 * integral controller on /proc's counter), so the long-run share is the cap even when the
 * host is busy or the counter is coarse. Unused budget carries over up to one period of
 * CPU time (a burst, like cgroup cpu.max.burst), not more.
 */
export class CpuCap {
  private timer: NodeJS.Timeout | null = null;
  private cpu0 = 0;
  private wall0 = 0;
  constructor(private readonly pid: number, private capValue: number) {}

  get cap(): number { return this.capValue; }
  set cap(c: number) { this.capValue = c; this.rebase(); }

  private rebase(): void {
    this.cpu0 = procCpuSeconds(this.pid) ?? 0;
    this.wall0 = performance.now();
  }

  start(): void {
    this.rebase();
    this.cycle();
  }

  private signal(s: NodeJS.Signals): boolean {
    try { process.kill(this.pid, s); return true; } catch { this.stop(); return false; }
  }

  private cycle(): void {
    const cpu = procCpuSeconds(this.pid);
    if (cpu === null) { this.stop(); return; }
    // Budget owed (ms): what the cap allowed so far minus what was used.
    let owed = this.capValue * (performance.now() - this.wall0) - (cpu - this.cpu0) * 1000;
    // Credit beyond one period is forgotten: after an idle spell the VM may run at most one
    // extra period at full speed. Up to that, a runner the host starves in its window
    // (a contended host) catches up in the next ones.
    if (owed > CPU_PERIOD_MS) { this.cpu0 -= (owed - CPU_PERIOD_MS) / 1000; owed = CPU_PERIOD_MS; }
    const window = Math.min(CPU_PERIOD_MS, Math.max(0, this.capValue * CPU_PERIOD_MS + owed));
    if (window <= 0) { this.signal('SIGSTOP'); this.timer = setTimeout(() => this.cycle(), CPU_PERIOD_MS); return; }
    if (!this.signal('SIGCONT')) return;
    if (window >= CPU_PERIOD_MS) { this.timer = setTimeout(() => this.cycle(), CPU_PERIOD_MS); return; }
    this.timer = setTimeout(() => {
      if (!this.signal('SIGSTOP')) return;
      this.timer = setTimeout(() => this.cycle(), CPU_PERIOD_MS - window);
    }, window);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try { process.kill(this.pid, 'SIGCONT'); } catch { /* gone */ }
  }
}

export interface VmInfo {
  name: string;
  state: VmState;
  definition: VmDef;
  pid?: number;
  /** Seconds since the runner started (while it runs). */
  uptimeSeconds?: number;
  /** How the last run ended. */
  lastExit?: { reason: string; code: number; message?: string };
  /** For a crash: the console's last lines. */
  lastConsole?: string;
}

export interface VmEvents {
  state: [info: VmInfo];
  console: [data: Uint8Array];
  /** The runner resumed the definition's snapshot (the daemon clears `restore`). */
  restored: [];
}

export class Vm extends EventEmitter<VmEvents> {
  state: VmState = 'shutoff';
  private port: SocketPort<FromRunner, ToRunner> | null = null;
  /** The runner's pid while one runs (spawned by this daemon or adopted from an earlier one). */
  private runnerPid: number | undefined;
  private readonly log = new ConsoleLog();
  private lastExit: VmInfo['lastExit'];
  private lastConsole: string | undefined;
  private exitMsg: Extract<FromRunner, { type: 'exit' }> | null = null;
  private statsId = 0;
  private statsWaiters = new Map<number, (s: RunnerStats) => void>();
  private lastStats: RunnerStats | null = null;
  private cap: CpuCap | null = null;
  private shutdownTimer: NodeJS.Timeout | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** Resolves when the current runner has exited. */
  get runnerExited(): Promise<void> { return this.exited; }
  private destroying = false;
  /** Set by detach(): the daemon lets go of a runner that keeps running. */
  private detached = false;
  private startedAt = 0;

  /** runDir holds NAME.pid (pid, start time, socket) and NAME.sock for each live runner, so a restarted daemon finds them. */
  constructor(public def: VmDef, private readonly runnerScript: string, private readonly env: NodeJS.ProcessEnv, private readonly runDir: string) {
    super();
  }

  private get pidFile(): string { return join(this.runDir, `${this.name}.pid`); }
  private get socketPath(): string { return join(this.runDir, `${this.name}.sock`); }
  private get stderrFile(): string { return join(this.runDir, `${this.name}.log`); }

  /**
   * A runner left by an earlier daemon: connect to its socket, check its hello (protocol
   * version, machine running) and take it over, state and console included. One that does
   * not answer properly is stopped. The process start time guards against a reused pid.
   */
  async adopt(): Promise<void> {
    let rec: { pid: number; start: string; socket?: string; startedAt?: number };
    try { rec = JSON.parse(readFileSync(this.pidFile, 'utf8')) as typeof rec; } catch { return; }
    const alive = (): boolean => Number.isSafeInteger(rec.pid) && rec.pid > 1 && procStartTime(rec.pid) === rec.start;
    if (!alive()) { rmSync(this.pidFile, { force: true }); return; }
    // A CPU cap may have left it stopped: it must run to answer.
    try { process.kill(rec.pid, 'SIGCONT'); } catch { /* gone */ }
    let port: SocketPort<FromRunner, ToRunner> | null = null;
    try {
      if (rec.socket !== this.socketPath) throw new Error('no socket');
      port = new SocketPort<FromRunner, ToRunner>(await connectRunner(this.socketPath, 2000, alive));
      const p = port;
      const hello = await new Promise<Extract<FromRunner, { type: 'hello' }>>((res, rej) => {
        const t = setTimeout(() => rej(new Error('no hello')), 2000);
        p.onMessage((raw) => { const m = asFromRunner(raw); if (m?.type === 'hello') { clearTimeout(t); res(m); } });
        p.onClose(() => { clearTimeout(t); rej(new Error('closed')); });
      });
      if (hello.version !== PROTOCOL_VERSION || !hello.running) throw new Error('not adoptable');
      this.log.clear();
      // Uptime counts from the runner's start, not from this daemon's takeover.
      this.startedAt = typeof rec.startedAt === 'number' && Number.isFinite(rec.startedAt) ? rec.startedAt : Date.now();
      this.attach(port, rec.pid, null, hello.running);
      this.applyLimits();
    } catch {
      port?.close();
      try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ }
      this.lastExit = { reason: 'stopped', code: 0, message: 'the daemon restarted: its runner did not answer and was stopped' };
      rmSync(this.pidFile, { force: true });
    }
  }

  get name(): string { return this.def.name; }
  get pid(): number | undefined { return this.runnerPid; }

  info(): VmInfo {
    return {
      name: this.name, state: this.state, definition: this.def,
      ...(this.pid !== undefined ? { pid: this.pid, uptimeSeconds: (Date.now() - this.startedAt) / 1000 } : {}),
      ...(this.lastExit ? { lastExit: this.lastExit } : {}),
      ...(this.lastConsole !== undefined ? { lastConsole: this.lastConsole } : {}),
    };
  }

  private setState(s: VmState): void {
    this.state = s;
    this.emit('state', this.info());
  }

  private need(ok: readonly VmState[], verb: string): void {
    if (!ok.includes(this.state)) throw new ApiError(409, 'wrong_state', `cannot ${verb} '${this.name}': it is ${this.state}`);
  }

  consoleLog(): string { return this.log.text(); }

  runnerConfig(): RunnerConfig {
    const d = this.def;
    return {
      name: d.name, memoryBytes: memoryBytes(d.memory),
      ...(d.kernel !== undefined ? { kernel: resolve(d.kernel) } : {}),
      ...(d.initrd !== undefined ? { initrd: resolve(d.initrd) } : {}),
      ...(d.append !== undefined ? { append: d.append } : {}),
      ...(d.bios !== undefined ? { bios: d.bios === 'none' || d.bios === 'default' ? d.bios : resolve(d.bios) } : {}),
      drives: (d.drives ?? []).map((x) => ({ ...x, file: resolve(x.file) })),
      ...(d.limits?.disk ? { diskLimit: d.limits.disk } : {}),
      ...(d.nics?.length ? { nics: d.nics.map((n, i) => ({ netdev: nicNetdev(n, (sw) => switchSocketPath(this.runDir, sw)), mac: nicMac(d.name, n, i) })) } : {}),
      ...(d.limits?.net ? { netLimit: d.limits.net } : {}),
      ...(d.accel ? { accel: d.accel } : {}),
    };
  }

  /**
   * Start a runner (a detached process listening on NAME.sock, so it survives a daemon
   * restart); resolves when the machine runs, rejects (400) if it cannot be built.
   * `incoming`: the destination of a live migration (paused until migrateFinish).
   */
  async start(opts: { incoming?: boolean } = {}): Promise<void> {
    this.need(['shutoff', 'crashed'], 'start');
    this.log.clear();
    this.lastExit = undefined;
    this.lastConsole = undefined;
    this.exitMsg = null;
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH) {
      throw new ApiError(400, 'start_failed', `cannot start '${this.name}': runner socket path too long (${this.socketPath}); use a shorter --state-dir`);
    }
    const errFd = openSync(this.stderrFile, 'w', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [...RUNNER_NODE_FLAGS, this.runnerScript, '--socket', this.socketPath], { detached: true, stdio: ['ignore', 'ignore', errFd], env: this.env });
    } finally {
      closeSync(errFd);
    }
    child.on('error', () => { /* reported through 'exit' */ });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new ApiError(400, 'start_failed', `cannot start '${this.name}': the runner process did not start`);
    this.startedAt = Date.now();
    try { writeFileSync(this.pidFile, JSON.stringify({ pid, start: procStartTime(pid) ?? '', socket: this.socketPath, startedAt: this.startedAt }), { mode: 0o600 }); } catch { /* best effort */ }
    let childExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    child.on('exit', (code, signal) => { childExit = { code, signal }; });
    this.runnerPid = pid;
    this.setState(opts.incoming ? 'paused' : 'running');
    let port: SocketPort<FromRunner, ToRunner>;
    let connected!: (ok: boolean) => void;
    this.connecting = new Promise<boolean>((r) => { connected = r; });
    try {
      port = new SocketPort<FromRunner, ToRunner>(await connectRunner(this.socketPath, 10_000, () => childExit === null));
      connected(true);
    } catch {
      connected(false);
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      this.runnerPid = undefined;
      rmSync(this.pidFile, { force: true });
      this.lastExit = { reason: 'runner exited before it listened', code: 1, ...(this.stderrTail() ? { message: this.stderrTail() } : {}) };
      this.setState('shutoff');
      throw new ApiError(400, 'start_failed', `cannot start '${this.name}': ${this.lastExit.message ?? this.lastExit.reason}`);
    }
    return this.attach(port, pid, child, null, opts.incoming ?? false);
  }

  private stderrTail(): string {
    try { return readFileSync(this.stderrFile, 'utf8').slice(-4096).trim(); } catch { return ''; }
  }

  /**
   * Talk to a runner over `port`. `child`: the process, when this daemon spawned it (its
   * exit status is then known). `running`: the machine already runs (adopted), else the
   * runner gets `start` after its hello (`incoming`: as a live migration's destination).
   * Resolves once the machine runs.
   */
  private attach(port: SocketPort<FromRunner, ToRunner>, pid: number, child: ChildProcess | null, running: 'running' | 'paused' | null, incoming = false): Promise<void> {
    this.port = port;
    this.runnerPid = pid;
    let resolveExit!: () => void;
    this.exited = new Promise((r) => { resolveExit = r; });
    if (running) this.setState(running);
    return new Promise<void>((resolveStart, rejectStart) => {
      let startSettled = running !== null;
      if (startSettled) resolveStart();
      port.onMessage((raw) => {
        const m = asFromRunner(raw);
        if (!m) return;
        switch (m.type) {
          case 'hello':
            if (m.version !== PROTOCOL_VERSION) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } return; }
            if (!m.running) {
              try {
                const restore = this.def.restore !== undefined ? readSnapshotFile(resolve(this.def.restore)) : undefined;
                port.post({ type: 'start', version: PROTOCOL_VERSION, config: this.runnerConfig(), ...(restore ? { restore } : {}), ...(incoming ? { incoming: true } : {}) });
              } catch (e) {
                this.exitMsg = { type: 'exit', reason: 'config', code: 1, message: (e as Error).message };
                try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
              }
            }
            return;
          case 'started':
            startSettled = true;
            if (incoming) this.setState('running');
            if (this.def.restore !== undefined) this.emit('restored');
            this.applyLimits();
            resolveStart();
            return;
          case 'console':
            if (!(m.data instanceof Uint8Array)) return;
            this.log.push(m.data);
            this.emit('console', m.data);
            return;
          case 'stats': {
            const w = this.statsWaiters.get(m.id);
            this.statsWaiters.delete(m.id);
            this.lastStats = m.stats;
            w?.(m.stats);
            return;
          }
          case 'state': this.setState(m.state); return;
          case 'rebooted': return;
          case 'migrate-data': case 'migrate-ack': {
            const w = this.replyWaiters.get(m.id);
            this.replyWaiters.delete(m.id);
            w?.(m);
            return;
          }
          case 'snapshot': {
            const w = this.snapshotWaiters.get(m.id);
            this.snapshotWaiters.delete(m.id);
            w?.(m);
            return;
          }
          case 'exit': this.exitMsg = m; return;
        }
      });
      // The runner is gone once its socket closed and its process ended (our child: its
      // exit event; adopted: /proc no longer has it).
      const gone = async (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
        // The VM moved away; its process stays a while to relay the user network's connections.
        if (this.exitMsg?.relaying === true) return { code: 0, signal: null };
        if (child) {
          if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
          return await new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
        }
        for (let i = 0; i < 60 && procCpuSeconds(pid) !== null; i++) await new Promise((r) => setTimeout(r, 50));
        if (procCpuSeconds(pid) !== null) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
        return { code: null, signal: null };
      };
      port.onClose(() => { if (!this.detached) void gone().then(({ code, signal }) => {
        this.cap?.stop();
        this.cap = null;
        if (this.shutdownTimer) clearTimeout(this.shutdownTimer);
        this.shutdownTimer = null;
        this.port = null;
        this.runnerPid = undefined;
        if (this.memTimer) clearInterval(this.memTimer);
        this.memTimer = null;
        rmSync(this.pidFile, { force: true });
        for (const w of this.statsWaiters.values()) w(this.lastStats ?? emptyStats());
        this.statsWaiters.clear();
        const e = this.exitMsg;
        const stderr = this.stderrTail();
        if (e) {
          this.lastExit = { reason: e.reason, code: e.code, ...(e.message !== undefined ? { message: e.message } : {}) };
        } else if (child) {
          this.lastExit = { reason: signal ? `killed by ${signal}` : `runner exited with status ${code ?? 0}`, code: code ?? 1, ...(stderr ? { message: stderr } : {}) };
        } else {
          this.lastExit = { reason: 'runner ended without reporting an exit', code: 1, ...(stderr ? { message: stderr } : {}) };
        }
        if (this.memKill !== null) { this.lastExit = { reason: 'memory', code: 1, message: this.memKill }; this.memKill = null; }
        const crashed = !this.destroying && (!e || e.reason === 'panic' || e.reason === 'error');
        this.destroying = false;
        if (crashed) this.lastConsole = this.log.text().split('\n').slice(-20).join('\n');
        if (!startSettled) {
          startSettled = true;
          rejectStart(new ApiError(400, 'start_failed', `cannot start '${this.name}': ${this.lastExit.message ?? this.lastExit.reason}`));
        }
        this.setState(crashed && e?.reason !== 'config' ? 'crashed' : 'shutoff');
        resolveExit();
      }); });
    });
  }

  input(data: Uint8Array): void {
    this.need(['running', 'paused'], 'send input to');
    this.port?.post({ type: 'input', data });
  }

  suspend(): void { this.need(['running'], 'suspend'); this.port?.post({ type: 'suspend' }); this.state = 'paused'; }
  resume(): void { this.need(['paused'], 'resume'); this.port?.post({ type: 'resume' }); this.state = 'running'; }
  reboot(): void { this.need(['running', 'paused'], 'reboot'); this.port?.post({ type: 'reboot' }); }

  /** Stop now: the runner is asked, then killed if it does not end within 2 s. */
  async destroy(): Promise<void> {
    this.need(['running', 'paused'], 'destroy');
    const port = this.port;
    if (!port) return;
    this.cap?.stop();
    this.cap = null;
    this.destroying = true;
    port.post({ type: 'stop' });
    const pid = this.runnerPid;
    const t = setTimeout(() => { if (pid !== undefined) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 2000);
    await this.exited;
    clearTimeout(t);
  }

  /**
   * Let go of the runner and leave it running, as libvirtd leaves its QEMUs when it stops:
   * a CPU cap's SIGSTOP is lifted, the socket closed; the next daemon adopts the runner.
   */
  detach(): void {
    if (!this.port) return;
    this.detached = true;
    this.cap?.stop();
    this.cap = null;
    if (this.shutdownTimer) clearTimeout(this.shutdownTimer);
    this.shutdownTimer = null;
    if (this.memTimer) clearInterval(this.memTimer);
    this.memTimer = null;
    this.port.close();
    this.port = null;
  }

  /** shutdown(), then wait until the runner has ended (powered off, or destroyed at the timeout). */
  async shutdownAndWait(timeoutMs: number): Promise<void> {
    this.shutdown(timeoutMs);
    await this.exited;
  }

  /**
   * Graceful shutdown: press the guest's power button (virtio-input KEY_POWER; the default
   * guest's acpid runs poweroff), wait for the guest to power off within timeoutMs, and
   * destroy it after that. Pressing again while waiting presses the button again.
   */
  shutdown(timeoutMs: number): void {
    this.need(['running', 'paused'], 'shut down');
    if (this.state === 'paused') this.resume();
    this.port?.post({ type: 'powerButton' });
    if (this.shutdownTimer) return;
    this.shutdownTimer = setTimeout(() => { this.shutdownTimer = null; if (this.port) void this.destroy().catch(() => {}); }, timeoutMs);
  }

  /** Apply limits to the running runner (called on start and on PATCH). */
  applyLimits(): void {
    const pid = this.pid;
    const cpu = this.def.limits?.cpu;
    if (pid === undefined) return;
    this.watchMemory(pid);
    this.applyWeight(pid);
    this.port?.post({ type: 'limits', disk: this.def.limits?.disk ?? null, net: this.def.limits?.net ?? null });
    if (cpu === undefined || cpu >= 1) { this.cap?.stop(); this.cap = null; return; }
    if (this.cap) { this.cap.cap = cpu; return; }
    this.cap = new CpuCap(pid, cpu);
    this.cap.start();
  }

  /**
   * The weight that runs at the daemon's nice value (the daemon sets it: the highest weight of
   * its running VMs, at least 100). Weights are relative, like cgroup cpu.shares/cpu.weight
   * (libvirt's `<shares>`): raising a VM above the rest lowers the others, which needs no
   * privilege, where a nice value below the daemon's would need CAP_SYS_NICE.
   */
  weightReference: () => number = () => 100;

  /** Set the runner's nice value again (another VM's weight changed the reference). */
  reapplyWeight(): void { if (this.pid !== undefined) this.applyWeight(this.pid); }

  private applyWeight(pid: number): void {
    const base = getPriority();
    const nice = Math.max(-20, Math.min(19, base + niceOffset(this.def.limits?.cpuWeight ?? 100, this.weightReference())));
    try {
      setPriority(pid, nice);
    } catch {
      // Lowering a nice value needs privilege: stay at the daemon's own.
      try { setPriority(pid, base); } catch { /* gone */ }
    }
  }

  private memTimer: NodeJS.Timeout | null = null;
  private memKill: string | null = null;

  /** Enforce limits.hostMemory by polling the runner's RSS (twice a second). */
  private watchMemory(pid: number): void {
    if (this.memTimer) clearInterval(this.memTimer);
    this.memTimer = null;
    const lim = this.def.limits?.hostMemory;
    if (lim === undefined) return;
    const max = memoryBytes(lim);
    const check = (): void => {
      const rss = procRssBytes(pid);
      if (rss === null || this.pid !== pid) { if (this.memTimer) clearInterval(this.memTimer); this.memTimer = null; return; }
      if (rss > max) {
        this.memKill = `host memory limit: runner RSS ${rss} bytes > ${max}`;
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    };
    this.memTimer = setInterval(check, 500);
    check();
  }

  private replyWaiters = new Map<number, (m: FromRunner | null) => void>();

  /** One request to the runner and its reply (null if the runner exited first). */
  private ask<T extends FromRunner>(msg: (id: number) => ToRunner): Promise<T> {
    const port = this.port;
    if (!port) return Promise.reject(new ApiError(409, 'wrong_state', `'${this.name}' has no runner`));
    const id = ++this.statsId;
    return new Promise<T>((res, rej) => {
      this.replyWaiters.set(id, (m) => (m ? res(m as T) : rej(new Error('the runner exited'))));
      void this.exited?.then(() => { this.replyWaiters.get(id)?.(null); this.replyWaiters.delete(id); });
      port.post(msg(id));
    });
  }

  /** Live migration, source: the pages of one round (and on the final round the device state; the vCPU stays paused). */
  async migrateRound(round: number, final: boolean, throttle: number, relayHost?: string): Promise<{ pages: number; data: Uint8Array; state?: Uint8Array; pausedAt?: number }> {
    const m = await this.ask<Extract<FromRunner, { type: 'migrate-data' }>>((id) => ({ type: 'migrate-round', id, round, final, throttle, ...(relayHost ? { relayHost } : {}) }));
    if (m.error !== undefined || !(m.data instanceof Uint8Array)) throw new Error(m.error ?? 'no data');
    return { pages: m.pages, data: m.data, ...(m.state instanceof Uint8Array ? { state: m.state } : {}), ...(typeof m.pausedAt === 'number' ? { pausedAt: m.pausedAt } : {}) };
  }

  /** Live migration with --copy-storage, source: the next block set of the disks and the granules still to send. */
  async migrateDisks(final: boolean, maxBytes: number): Promise<{ granules: number; data: Uint8Array; remaining: number }> {
    const m = await this.ask<Extract<FromRunner, { type: 'migrate-data' }>>((id) => ({ type: 'migrate-disks', id, final, maxBytes }));
    if (m.error !== undefined || !(m.data instanceof Uint8Array)) throw new Error(m.error ?? 'no data');
    return { granules: m.pages, data: m.data, remaining: m.remaining ?? 0 };
  }

  /** Live migration, source: stop (the destination runs it) or carry on untouched. */
  migrateEnd(ok: boolean): void { this.port?.post({ type: 'migrate-end', ok }); }

  /** The last started runner's connection: resolves once it listens (false: it never did). */
  private connecting: Promise<boolean> | null = null;

  /** Live migration, destination: pages into RAM, then the device state (the VM then runs). */
  async migrateIn(kind: 'pages' | 'blocks' | 'finish', data: Uint8Array, pages?: Uint8Array): Promise<void> {
    // The source may send as soon as POST /v1/migrations answered, before the runner listens.
    if (!this.port && this.connecting) await this.connecting;
    const m = await this.ask<Extract<FromRunner, { type: 'migrate-ack' }>>((id) => (kind === 'pages' ? { type: 'migrate-pages', id, data }
      : kind === 'blocks' ? { type: 'migrate-blocks', id, data } : { type: 'migrate-finish', id, state: data, ...(pages ? { pages } : {}) }));
    if (m.error !== undefined) throw new ApiError(400, 'migration_failed', m.error);
  }

  private snapshotWaiters = new Map<number, (m: Extract<FromRunner, { type: 'snapshot' }>) => void>();

  /** Save the running (or paused) VM to `file` atomically; it keeps running. `withDisks`: a bundle directory with copies of the disks, written by the runner. */
  async snapshot(file: string, withDisks = false): Promise<{ file: string; bytes: number; ms: number; diskBytes?: number }> {
    this.need(['running', 'paused'], 'snapshot');
    const port = this.port;
    if (!port) throw new ApiError(409, 'wrong_state', `'${this.name}' has no runner`);
    const t0 = performance.now();
    const id = ++this.statsId;
    const m = await new Promise<Extract<FromRunner, { type: 'snapshot' }>>((res) => {
      this.snapshotWaiters.set(id, res);
      void this.exited?.then(() => res({ type: 'snapshot', id, error: 'the runner exited' }));
      port.post({ type: 'snapshot', id, ...(withDisks ? { bundle: resolve(file) } : {}) });
    });
    this.snapshotWaiters.delete(id);
    if (withDisks) {
      if (typeof m.bytes !== 'number') throw new ApiError(409, 'snapshot_failed', `cannot snapshot '${this.name}' with its disks: ${m.error ?? 'no answer'}`);
      return { file: resolve(file), bytes: m.bytes, diskBytes: m.diskBytes ?? 0, ms: Math.round(performance.now() - t0) };
    }
    if (!(m.data instanceof Uint8Array)) throw new ApiError(409, 'snapshot_failed', `cannot snapshot '${this.name}': ${m.error ?? 'no data'}`);
    try { writeFileAtomic(file, m.data); } catch (e) { throw new ApiError(400, 'snapshot_failed', (e as Error).message, '/file'); }
    return { file: resolve(file), bytes: m.data.length, ms: Math.round(performance.now() - t0) };
  }

  /** The runner's stats (the last known ones if it does not answer within 1 s). */
  async stats(): Promise<RunnerStats | null> {
    const port = this.port;
    // Between a runner's spawn (state running) and its socket connecting there is no port
    // yet: the last (or empty) figures, not a 409, for a VM that is running.
    if (!port) return this.runnerPid !== undefined ? (this.lastStats ?? emptyStats()) : null;
    const id = ++this.statsId;
    return await new Promise<RunnerStats>((res) => {
      const t = setTimeout(() => { this.statsWaiters.delete(id); res(this.lastStats ?? emptyStats()); }, 1000);
      this.statsWaiters.set(id, (s) => { clearTimeout(t); res(s); });
      port.post({ type: 'stats', id });
    });
  }
}

function emptyStats(): RunnerStats { return { instructions: 0, cpuSeconds: 0, rssBytes: 0, pausedMs: 0, disks: [] }; }
