/**
 * The VM runner: one machine per runner, driven over a Port by the manager. It builds the
 * machine from a RunnerConfig, streams console output, takes console input, answers
 * stats, suspends and resumes without a jump in guest time, reboots by rebuilding the
 * machine, and reports how the machine ended. Host access (files, CPU time) is injected,
 * so the same class serves a child process (runner-main.ts) and, later, a Web Worker.
 */
import { Machine, BootError, type MachineConfig } from '../machine/machine.js';
import type { BlockBackend, NetBackend } from '../devices/device.js';
import type { MovableNet } from '../host/net/host.js';
import { RateLimitedNet } from './limited-net.js';
import { RateLimiter } from './rate-limiter.js';
import { RateLimitedBlock } from './limited-block.js';
import { encodeSnapshot, decodeSnapshot, readSnapshotHeader, encodeState, decodeState, type DiskIdentity } from '../snapshot/format.js';
import { encodePages, applyPages } from '../snapshot/pages.js';
import type { MachineState } from '../machine/machine.js';
import { DirtyBlock, GRANULE, allGranules, applyBlocks, encodeBlocks, granuleBytes } from '../host/storage/dirty.js';
import { PROTOCOL_VERSION, asToRunner, type FromRunner, type Port, type RunnerConfig, type RunnerStats, type ToRunner, type ExitReason } from './protocol.js';

type BaseConfig = Omit<MachineConfig, 'serial' | 'virtio' | 'monoClockMs'>;
type RunnerHostDisks = Array<BlockBackend & { counters?: RunnerStats['disks'][number] }>;

export interface RunnerHost {
  /** Build the machine's configuration (files read, disks opened). Throws a clear Error. */
  load(cfg: RunnerConfig, opts?: { incoming?: boolean }): Promise<{
    base: BaseConfig;
    disks: RunnerHostDisks;
    /**
     * NIC backends with their MACs, in cfg.nics order (absent: none); `movable`: the part
     * whose state follows a live migration (a user network's connections).
     */
    nics?: Array<{ backend: NetBackend; mac: Uint8Array; movable?: MovableNet }>;
  }>;
  /** The VM moved away and this process relays its connections until `done`: stay alive until then. */
  holdExit?(done: Promise<void>): void;
  /**
   * Read the boot images (kernel, initrd, firmware) again, for a reboot. With it the runner
   * keeps no copy of them once the machine is built (tens of MiB for a distribution kernel),
   * as Cloud Hypervisor re-reads its kernel on reboot; absent: the images are kept.
   */
  reloadBase?(cfg: RunnerConfig): Promise<BaseConfig> | BaseConfig;
  /** A full garbage collection, when the host offers one (an idle guest's caches were just dropped). */
  collectGarbage?(): void;
  cpuSeconds(): number;
  rssBytes(): number;
  now(): number;
  /** The typevisor version, for snapshot headers. */
  version?: string;
  /** The drives' identities now (snapshot headers); absent: none recorded (a browser's in-memory disks). */
  diskIdentities?(cfg: RunnerConfig): DiskIdentity[];
  /** Throw unless the drives are the ones a snapshot recorded (restore). */
  checkDisks?(saved: readonly DiskIdentity[], cfg: RunnerConfig): void;
  /**
   * Write a bundle (snapshot + disk copies) at `file`: copies the running disks, calls
   * `freeze` (pause, drain, take the state, run the final pass, resume), then `encode`
   * with the copies' identities. Absent: no bundles (a browser).
   */
  writeBundle?(file: string, cfg: RunnerConfig, disks: readonly DirtyBlock[], freeze: (finalPass: () => Promise<void>) => Promise<void>,
    encode: (disks: DiskIdentity[]) => Promise<Uint8Array>): Promise<{ bytes: number; diskBytes: number }>;
}

/** Console output is batched per host turn: one message per burst, not per byte. */
const CONSOLE_FLUSH_BYTES = 4096;
/**
 * Idle trimming: every `checkMs` the runner looks at the instructions retired since the
 * last look; fewer than `insns` counts as idle (an idle Linux at its prompt retires about
 * 60 000 a second, a busy one tens of millions). After `checks` idle looks in a row the
 * interpreter's decoded-instruction cache is dropped (it refills with what runs next) and
 * the heap is collected: an idle VM then costs the host little beyond its RAM.
 */
export interface IdleTrim { checkMs: number; insns: number; checks: number }
export const IDLE_TRIM: IdleTrim = { checkMs: 5000, insns: 1_000_000, checks: 2 };

export class VmRunner {
  private machine: Machine | null = null;
  private disks: RunnerHostDisks = [];
  /** The disks as the machine sees them, with dirty tracking for bundles and --copy-storage. */
  private tracked: DirtyBlock[] = [];
  /** A bundle or a storage migration is copying the disks (one at a time: they share the dirty marks). */
  private copying: 'bundle' | 'migration' | null = null;
  /** Storage migration: granules of each disk still to send in this round. */
  private pendingBlocks: number[][] = [];
  /** Destination: block sets arrived (the disks are flushed before the machine runs). */
  private blocksIn = false;
  private limiters: RateLimiter[] = [];
  private nics: RateLimitedNet[] = [];
  /** Per NIC, the state that follows a live migration (null: none). */
  private movable: Array<MovableNet | null> = [];
  /** Source: the networks were frozen in the final round. */
  private netsFrozen = false;
  /** Source: the moved connections are being relayed; the process stays until this settles. */
  private relaying: Promise<void> | null = null;
  private pausedAt: number | null = null;
  private pausedTotal = 0;
  private icountBefore = 0;
  /** Input that arrived while suspended: delivered on resume, none lost. */
  private pendingInput: Uint8Array[] = [];
  private out: Uint8Array[] = [];
  private outLen = 0;
  private flushQueued = false;
  private ended = false;

  /** `idleTrim`: when an idle guest's caches are dropped (tests shorten it). */
  constructor(private readonly port: Port<ToRunner, FromRunner>, private readonly host: RunnerHost, private readonly idleTrim: IdleTrim = IDLE_TRIM) {
    port.onMessage((m) => this.onMessage(asToRunner(m)));
    this.hello();
  }

  /** Say hello (again, to a manager that reconnects): the version, and whether the machine runs. */
  hello(): void {
    if (this.ended) return;
    this.port.post(this.started
      ? { type: 'hello', version: PROTOCOL_VERSION, running: this.pausedAt !== null ? 'paused' : 'running' }
      : { type: 'hello', version: PROTOCOL_VERSION });
  }

  private started = false;

  /** Guest time source: host time minus the time spent suspended. */
  private guestMono = (): number => (this.pausedAt ?? this.host.now()) - this.pausedTotal;

  private onMessage(m: ToRunner | null): void {
    if (!m || this.ended) return;
    switch (m.type) {
      case 'start':
        if (m.version !== PROTOCOL_VERSION) { this.end('config', 1, `protocol version ${m.version}, runner speaks ${PROTOCOL_VERSION}`); return; }
        if (this.started) return;
        this.started = true;
        this.incoming = m.incoming === true;
        void this.start(m.config, m.restore instanceof Uint8Array ? m.restore : null);
        return;
      case 'migrate-round': void this.migrateRound(m.id, m.round, m.final, m.throttle ?? 0, typeof m.relayHost === 'string' ? m.relayHost : undefined); return;
      case 'migrate-end': this.migrateEnd(m.ok); return;
      case 'migrate-pages': void this.migratePages(m.id, m.data); return;
      case 'migrate-finish': void this.migrateFinish(m.id, m.state, m.pages); return;
      case 'snapshot': void this.snapshot(m.id, typeof m.bundle === 'string' ? m.bundle : undefined); return;
      case 'migrate-disks': void this.migrateDisks(m.id, m.final, m.maxBytes); return;
      case 'migrate-blocks': void this.migrateBlocks(m.id, m.data); return;
      case 'input':
        if (!(m.data instanceof Uint8Array)) return;
        if (this.pausedAt !== null || !this.machine) this.pendingInput.push(m.data);
        else this.machine.sendInput(m.data);
        return;
      case 'stats': this.port.post({ type: 'stats', id: m.id, stats: this.stats() }); return;
      case 'suspend':
        if (!this.machine || this.pausedAt !== null) return;
        this.pausedAt = this.host.now();
        this.machine.pause();
        this.port.post({ type: 'state', state: 'paused' });
        return;
      case 'resume': this.resume(); return;
      case 'limits':
        try {
          for (const l of this.limiters) l.update(m.disk ?? {});
          if (m.net !== undefined) for (const n of this.nics) n.update(m.net ?? {});
        } catch { /* the manager validated them; a bad bucket leaves the old limits */ }
        return;
      case 'powerButton':
        this.resume();
        this.machine?.powerButton();
        return;
      case 'reboot':
        this.resume();
        this.machine?.stop();
        this.rebootRequested = true;
        return;
      case 'stop':
        // An incoming migration that never finished: nothing runs, just end.
        if (this.incomingReady) { this.incomingReady = null; void this.closeDisks().then(() => this.end('stopped', 0)); return; }
        this.resume();
        this.stopRequested = true;
        if (this.machine) this.machine.stop(); else this.end('stopped', 0);
        return;
    }
  }

  private rebootRequested = false;
  private stopRequested = false;

  private resume(): void {
    if (this.pausedAt === null || !this.machine) return;
    this.pausedTotal += this.host.now() - this.pausedAt;
    this.pausedAt = null;
    this.machine.resume();
    for (const b of this.pendingInput) this.machine.sendInput(b);
    this.pendingInput = [];
    this.port.post({ type: 'state', state: 'running' });
  }

  private stats(): RunnerStats {
    return {
      instructions: this.icountBefore + (this.machine?.hart.icount ?? 0),
      cpuSeconds: this.host.cpuSeconds(),
      rssBytes: this.host.rssBytes(),
      pausedMs: this.pausedTotal + (this.pausedAt === null ? 0 : this.host.now() - this.pausedAt),
      disks: this.disks.map((d) => d.counters ?? { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 }),
      nics: this.nics.map((n) => ({ ...n.counters })),
    };
  }

  private console(b: Uint8Array): void {
    // The UART may reuse its buffer: copy.
    this.out.push(b.slice());
    this.outLen += b.length;
    if (this.outLen >= CONSOLE_FLUSH_BYTES) this.flushConsole();
    else if (!this.flushQueued) { this.flushQueued = true; setTimeout(() => this.flushConsole(), 0); }
  }

  private flushConsole(): void {
    this.flushQueued = false;
    if (this.outLen === 0) return;
    const data = new Uint8Array(this.outLen);
    let o = 0;
    for (const b of this.out) { data.set(b, o); o += b.length; }
    this.out = []; this.outLen = 0;
    this.port.post({ type: 'console', data });
  }

  private config: RunnerConfig | null = null;
  /** Destination of a live migration: the machine waits for pages and the device state. */
  private incoming = false;
  private incomingReady: (() => void) | null = null;
  private throttleTimer: ReturnType<typeof setTimeout> | null = null;
  private migrating = false;

  private async migrateRound(id: number, round: number, final: boolean, throttle: number, relayHost?: string): Promise<void> {
    const m = this.machine;
    if (!m) { this.port.post({ type: 'migrate-data', id, pages: 0, error: 'the machine is not running' }); return; }
    try {
      this.migrating = true;
      this.setThrottle(final ? 0 : throttle);
      let state: (MachineState & { hostNet?: unknown[] }) | null = null;
      let pausedAt: number | undefined;
      if (final) {
        m.pause();
        pausedAt = performance.timeOrigin + performance.now();
        state = await m.snapshot({ ram: false });
        // The user networks' state (their TCP connections, relayed from here) goes with the device state.
        this.netsFrozen = true;
        state.hostNet = await Promise.all(this.movable.map((n) => (n ? n.freeze(relayHost ?? '127.0.0.1') : null)));
      }
      const ram = m.board.bus.ram;
      // Round 0 sends everything (an earlier, failed attempt may have taken dirty marks).
      const taken = m.hart.takeDirtyPages();
      const pages = round === 0 ? Array.from({ length: ram.length / 4096 }, (_, i) => i) : taken;
      const data = encodePages(ram, pages);
      const st = state ? encodeState(state) : null;
      this.port.post({ type: 'migrate-data', id, pages: pages.length, data, ...(st ? { state: st } : {}), ...(pausedAt !== undefined ? { pausedAt } : {}) });
    } catch (e) {
      this.port.post({ type: 'migrate-data', id, pages: 0, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Auto-converge: hold the vCPU for `share` of every 50 ms (pause/resume at slice boundaries). */
  private setThrottle(share: number): void {
    if (this.throttleTimer) { clearTimeout(this.throttleTimer); this.throttleTimer = null; }
    const m = this.machine;
    if (!m || share <= 0) return;
    const cycle = (): void => {
      if (this.pausedAt !== null || !this.migrating) return;
      m.pause();
      this.throttleTimer = setTimeout(() => {
        if (this.pausedAt === null) m.resume();
        this.throttleTimer = setTimeout(cycle, 50 * (1 - share));
      }, 50 * share);
    };
    cycle();
  }

  /** Storage migration, source: the next block set (see the `migrate-disks` message). */
  private async migrateDisks(id: number, final: boolean, maxBytes: number): Promise<void> {
    try {
      if (!this.machine) throw new Error('the machine is not running');
      if (this.copying === 'bundle') throw new Error('a snapshot bundle is being written');
      if ((this.config?.drives ?? []).some((d) => d.snapshot)) throw new Error('a drive writes to a throw-away overlay (snapshot: true), which cannot be copied');
      if (this.copying === null) {
        this.copying = 'migration';
        for (const d of this.tracked) d.startTracking();
        // Read-only disks are not copied (as libvirt's --copy-storage-all): they stay on a shared path.
        this.pendingBlocks = this.tracked.map((d) => (d.readOnly ? [] : allGranules(d)));
      }
      // A round is over when nothing is pending: the next one sends what was dirtied meanwhile.
      if (this.pendingBlocks.every((p) => p.length === 0)) this.pendingBlocks = this.tracked.map((d) => d.takeDirty());
      const i = this.pendingBlocks.findIndex((p) => p.length > 0);
      let data: Uint8Array = new Uint8Array(0), n = 0;
      if (i >= 0) {
        const p = this.pendingBlocks[i], size = this.tracked[i].sizeBytes;
        let bytes = 0;
        while (n < p.length && (n === 0 || final || bytes + GRANULE <= maxBytes)) bytes += granuleBytes(p[n++], size);
        data = await encodeBlocks(this.tracked[i].inner, i, p.splice(0, n));
      }
      const remaining = this.pendingBlocks.reduce((a, p) => a + p.length, 0) + this.tracked.reduce((a, d) => a + d.dirtyCount, 0);
      this.port.post({ type: 'migrate-data', id, pages: n, data, remaining });
    } catch (e) {
      this.port.post({ type: 'migrate-data', id, pages: 0, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Storage migration, destination: a block set onto its disk. */
  private async migrateBlocks(id: number, data: Uint8Array): Promise<void> {
    await this.built;
    try {
      if (!this.machine || !this.incoming || !(data instanceof Uint8Array)) throw new Error('not waiting for an incoming migration');
      await applyBlocks(data, this.tracked.map((d) => d.inner));
      this.blocksIn = true;
      this.port.post({ type: 'migrate-ack', id });
    } catch (e) {
      this.port.post({ type: 'migrate-ack', id, error: (e as Error).message });
    }
  }

  private migrateEnd(ok: boolean): void {
    const m = this.machine;
    this.migrating = false;
    if (this.copying === 'migration') { for (const d of this.tracked) d.stopTracking(); this.copying = null; this.pendingBlocks = []; }
    this.setThrottle(0);
    const frozen = this.netsFrozen;
    this.netsFrozen = false;
    if (ok) {
      if (frozen) {
        const moved = this.movable.map((n) => n?.commitMove());
        this.relaying = Promise.allSettled(moved).then(() => undefined);
      }
      m?.stop();
      return;
    }
    // The move failed: carry on as if nothing happened.
    if (frozen) for (const n of this.movable) void n?.thaw().catch(() => { /* the port stays unbound; the guest still runs */ });
    if (m && this.pausedAt === null) m.resume();
  }

  /** Destination: resolves once the incoming machine is built. */
  private markBuilt: () => void = () => {};
  private built: Promise<void> = new Promise((r) => { this.markBuilt = r; });

  private async migratePages(id: number, data: Uint8Array): Promise<void> {
    await this.built;
    const m = this.machine;
    try {
      if (!m || !this.incoming || !(data instanceof Uint8Array)) throw new Error('not waiting for an incoming migration');
      applyPages(data, m.board.bus.ram);
      this.port.post({ type: 'migrate-ack', id });
    } catch (e) {
      this.port.post({ type: 'migrate-ack', id, error: (e as Error).message });
    }
  }

  /**
   * Destination: run the stop's code once now, on this machine's own (boot) state, so that
   * it is not parsed and compiled cold in the downtime (3–5 ms of it on an idle host).
   */
  private async warmFinish(m: Machine): Promise<void> {
    try {
      const s = decodeState(encodeState(await m.snapshot({ ram: false }))) as MachineState;
      applyPages(encodePages(m.board.bus.ram, [0]), m.board.bus.ram);
      s.ram = { ...s.ram, bytes: m.board.bus.ram };
      m.load(s);
    } catch { /* only a warm-up: the real stop reports its errors */ }
  }

  private async migrateFinish(id: number, state: Uint8Array, pages: Uint8Array | undefined): Promise<void> {
    await this.built;
    const m = this.machine;
    try {
      if (!m || !this.incoming || !this.incomingReady || !(state instanceof Uint8Array)) throw new Error('not waiting for an incoming migration');
      const { hostNet, ...s } = decodeState(state) as MachineState & { hostNet?: unknown };
      // Copied disks (--copy-storage): what the guest flushed on the source is durable here before it runs.
      if (this.blocksIn) await Promise.all(this.tracked.map((d) => (d.readOnly ? undefined : d.inner.flush())));
      if (pages instanceof Uint8Array) applyPages(pages, m.board.bus.ram);
      s.ram = { ...s.ram, bytes: m.board.bus.ram };
      m.load(s as MachineState);
      // The user networks, once the NICs have their queues back (frames go straight in): their
      // connections (relayed from the source) and their forwarded ports.
      const nets = Array.isArray(hostNet) ? hostNet as unknown[] : [];
      await Promise.all(this.movable.map((n, i) => n?.adopt(nets[i] ?? null)));
      this.port.post({ type: 'migrate-ack', id });
      const go = this.incomingReady;
      this.incomingReady = null;
      go();
    } catch (e) {
      this.port.post({ type: 'migrate-ack', id, error: (e as Error).message });
    }
  }

  /** Save the machine while it runs (a pause of the vCPU for the drain and the copy). */
  private async snapshot(id: number, bundle?: string): Promise<void> {
    const m = this.machine, cfg = this.config;
    if (!m || !cfg) { this.port.post({ type: 'snapshot', id, error: 'the machine is not running' }); return; }
    if ((cfg.drives ?? []).some((d) => d.snapshot)) {
      this.port.post({ type: 'snapshot', id, error: 'a drive writes to a throw-away overlay (snapshot: true), which a snapshot cannot keep' });
      return;
    }
    if (bundle !== undefined) { await this.snapshotBundle(id, bundle, m, cfg); return; }
    const wasPaused = m.paused;
    m.pause();
    try {
      const state = await m.snapshot();
      const header = {
        typevisor: this.host.version ?? 'unknown', created: new Date().toISOString(), machine: { kind: 'runner', config: cfg },
        memoryBytes: cfg.memoryBytes, disks: this.host.diskIdentities?.(cfg) ?? [],
      };
      if (!wasPaused) m.resume(); // the guest goes on while the copy is encoded
      this.port.post({ type: 'snapshot', id, data: await encodeSnapshot(header, state) });
    } catch (e) {
      this.port.post({ type: 'snapshot', id, error: e instanceof Error ? e.message : String(e) });
    } finally {
      if (!wasPaused) m.resume();
    }
  }

  /** A bundle: the disks are copied while the guest runs; the state and the last dirty granules while it is paused. */
  private async snapshotBundle(id: number, file: string, m: Machine, cfg: RunnerConfig): Promise<void> {
    const write = this.host.writeBundle;
    if (!write) { this.port.post({ type: 'snapshot', id, error: 'this runner cannot copy disks into a bundle' }); return; }
    if (this.copying) { this.port.post({ type: 'snapshot', id, error: `cannot copy the disks now: a ${this.copying === 'bundle' ? 'bundle is' : 'storage migration is'} already copying them` }); return; }
    this.copying = 'bundle';
    try {
      let state: MachineState | null = null;
      const r = await write.call(this.host, file, cfg, this.tracked, async (finalPass) => {
        const wasPaused = m.paused;
        m.pause();
        try {
          state = await m.snapshot();
          await finalPass();
        } finally {
          if (!wasPaused) m.resume();
        }
      }, (disks) => encodeSnapshot({
        typevisor: this.host.version ?? 'unknown', created: new Date().toISOString(), machine: { kind: 'runner', config: cfg },
        memoryBytes: cfg.memoryBytes, disks,
      }, state!));
      this.port.post({ type: 'snapshot', id, bytes: r.bytes, diskBytes: r.diskBytes });
    } catch (e) {
      this.port.post({ type: 'snapshot', id, error: e instanceof Error ? e.message : String(e) });
    } finally {
      this.copying = null;
    }
  }

  private async start(cfg: RunnerConfig, restore: Uint8Array | null): Promise<void> {
    this.config = cfg;
    let loaded: Awaited<ReturnType<RunnerHost['load']>>;
    try {
      // Checked before anything is opened: a corrupt file or changed disks end the runner here.
      const header = restore ? readSnapshotHeader(restore) : null;
      if (header) this.host.checkDisks?.(header.disks, cfg);
      loaded = await this.host.load(cfg, { incoming: this.incoming });
    } catch (e) {
      this.end('config', 1, e instanceof Error ? e.message : String(e));
      return;
    }
    this.disks = loaded.disks;
    this.tracked = loaded.disks.map((d) => new DirtyBlock(d));
    try {
      this.limiters = loaded.disks.map(() => new RateLimiter(cfg.diskLimit ?? {}));
      this.nics = (loaded.nics ?? []).map((n) => new RateLimitedNet(n.backend, cfg.netLimit ?? {}));
      this.movable = (loaded.nics ?? []).map((n) => n.movable ?? null);
    } catch (e) {
      for (const n of loaded.nics ?? []) n.backend.close();
      await this.closeDisks();
      this.end('config', 1, `disk limits: ${(e as Error).message}`);
      return;
    }
    // Not awaited: this frame (and `loaded`) ends here, so nothing keeps the images alive.
    // The machine sees the disks through their dirty trackers (bundles, --copy-storage).
    return this.boot(cfg, restore, loaded.base, this.tracked, (loaded.nics ?? []).map((n) => n.mac));
  }

  /**
   * Build the machine and run it, again after each reboot. `base` (the boot images) is
   * dropped once copied into guest RAM when the host can read it again (reloadBase).
   */
  private async boot(cfg: RunnerConfig, restore: Uint8Array | null, base: BaseConfig | null, disks: RunnerHostDisks, macs: Uint8Array[]): Promise<void> {
    const serial = { write: (b: Uint8Array) => this.console(b) };
    const build = (b: BaseConfig): Machine => new Machine({
      ...b, serial, monoClockMs: this.guestMono,
      virtio: [
        ...disks.map((disk, i) => ({ kind: 'blk' as const, disk: new RateLimitedBlock(disk, this.limiters[i]) })),
        ...this.nics.map((backend, i) => ({ kind: 'net' as const, backend, mac: macs[i] })),
        { kind: 'input' as const }, // the power button that graceful shutdown presses
      ],
    });
    try {
      for (let first = true; ; first = false) {
        let m: Machine;
        try {
          base ??= await this.host.reloadBase!(cfg);
          m = build(base);
          if (this.host.reloadBase) base = null;
        } catch (e) {
          if (e instanceof BootError || e instanceof Error) { await this.closeDisks(); this.end('config', 1, first ? e.message : `reboot: ${e.message}`); return; }
          throw e;
        }
        if (first && restore) {
          try {
            m.load((await decodeSnapshot(restore, { into: m.board.bus.ram, intoWritten: m.ramWritten() })).state);
          } catch (e) {
            await this.closeDisks();
            this.end('config', 1, `restore: ${(e as Error).message}`);
            return;
          }
          restore = null; // the snapshot file's bytes: not kept for the VM's life
        }
        this.machine = m;
        if (first && this.incoming) {
          // Pages and then the device state arrive as messages; run only after the last.
          const ready = new Promise<void>((r) => { this.incomingReady = r; });
          await this.warmFinish(m);
          this.markBuilt();
          await ready;
        }
        for (const b of this.pendingInput) m.sendInput(b);
        this.pendingInput = [];
        this.port.post(first ? { type: 'started' } : { type: 'rebooted' });
        this.watchIdle(m);
        let exit = await m.run();
        this.watchIdle(null);
        this.icountBefore += m.hart.icount;
        if (exit.reason === 'reset' || (exit.reason === 'stopped' && this.rebootRequested)) {
          this.rebootRequested = false;
          // Let messages in between boots: a guest may reset at once, forever.
          await new Promise<void>((r) => setTimeout(r, 0));
          if (this.ended) return;
          // A stop that came in between boots met a finished machine: honour it here.
          if (!this.stopRequested) continue;
          exit = { reason: 'stopped', code: 0 };
        }
        this.flushConsole();
        await this.closeDisks();
        this.end(exit.reason as ExitReason, exit.code, exit.message);
        return;
      }
    } catch (e) {
      this.end('error', 1, e instanceof Error ? e.message : String(e));
    }
  }

  private idleTimer: ReturnType<typeof setInterval> | null = null;
  /** Idle checks in a row, and whether the caches were dropped in this idle spell. */
  private idleChecks = 0;
  private trimmed = false;
  /** Times the caches were dropped (stats). */
  private trims = 0;

  /** Watch `m` for idleness (null: stop watching); see IDLE_TRIM. */
  private watchIdle(m: Machine | null): void {
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = null;
    this.idleChecks = 0;
    this.trimmed = false;
    if (!m) return;
    let last = m.hart.icount;
    this.idleTimer = setInterval(() => {
      const n = m.hart.icount;
      const busy = n - last >= this.idleTrim.insns;
      last = n;
      if (busy) { this.idleChecks = 0; this.trimmed = false; return; }
      // Suspended or migrating: icount stands still but the guest is not idle.
      if (this.pausedAt !== null || this.migrating || this.trimmed || ++this.idleChecks < this.idleTrim.checks) return;
      this.trimmed = true;
      this.trims++;
      m.hart.flushCodeCache();
      this.host.collectGarbage?.();
    }, this.idleTrim.checkMs);
    // An idle check alone never keeps a process alive.
    (this.idleTimer as { unref?: () => void }).unref?.();
  }

  private async closeDisks(): Promise<void> {
    for (const l of this.limiters) l.close();
    for (const n of this.nics) n.close();
    this.nics = [];
    this.movable = [];
    await Promise.allSettled(this.disks.map((d) => d.close()));
  }

  private end(reason: ExitReason, code: number, message?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.watchIdle(null);
    this.flushConsole();
    const relaying = this.relaying !== null && this.host.holdExit !== undefined;
    if (relaying) this.host.holdExit!(this.relaying!);
    this.port.post({ type: 'exit', reason, code, ...(message === undefined ? {} : { message }), ...(relaying ? { relaying: true } : {}) });
    this.port.close();
  }
}
