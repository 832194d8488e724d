/**
 * Node-side machine configuration for a VM runner: files read and checked, disks opened.
 * (The same steps as `typevisor run` in src/cli/main.ts, which keeps its own flag-driven copy.)
 */
import { loadImage, UserError } from '../host/images.js';
import { findDefaultGuest, guestDir } from '../host/guest-cache.js';
import { openDisk, DiskError } from '../host/storage/index.js';
import type { BlockBackend } from '../devices/device.js';
import type { MachineConfig } from '../machine/machine.js';
import type { RunnerConfig } from './protocol.js';
import type { NetBackend } from '../devices/device.js';
import { openNetdevMovable } from '../host/net/open.js';
import type { MovableNet } from '../host/net/host.js';

export const MIN_MEMORY = 4 << 20;
export const MAX_MEMORY = 0xf000_0000;
export const DEFAULT_GUEST_APPEND = 'console=ttyS0';

/**
 * Node flags for a runner process (the daemon starts runners with them), chosen by measuring
 * one runner at its prompt (docs/PERFORMANCE.md, "Where a runner's memory goes"):
 * - a 1 MiB semi-space instead of V8's 16 MiB: the young generation holds short-lived
 *   messages and the decoded instructions on their way to the old generation; its two
 *   semi-spaces cost ~28 MiB resident, for no measurable boot time;
 * - one V8 worker thread instead of four (a runner is one vCPU; twenty runners share a few
 *   cores): each thread's malloc arena and stack cost ~1.5 MiB resident;
 * - `gc` exposed, so an idle runner that drops its decode cache can give the memory back.
 */
export const RUNNER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--v8-pool-size=1', '--expose-gc'];

/**
 * The runners' translator threshold: higher than the CLI's 50, so a block is compiled only
 * after 1,000 entries. Twenty runners booting at once on two cores then spend no time
 * compiling lukewarm boot code (87 s to all prompts against 99 s at 50, as fast as the
 * interpreter) and hold less memory (35 MiB PSS beyond guest RAM when idle, against 53),
 * while a single boot is as fast as at 50 and hot loops are still translated
 * (docs/PERFORMANCE.md, "Twenty VMs at once").
 */
export const RUNNER_JIT_THRESHOLD = 1000;

export type BaseConfig = Omit<MachineConfig, 'serial' | 'virtio' | 'monoClockMs'>;

/** Read kernel/initrd/firmware; no kernel and no firmware file = the default guest. */
export function loadBase(cfg: RunnerConfig, env: NodeJS.ProcessEnv): BaseConfig {
  if (!Number.isSafeInteger(cfg.memoryBytes) || cfg.memoryBytes < MIN_MEMORY || cfg.memoryBytes > MAX_MEMORY || cfg.memoryBytes % 4096 !== 0) {
    throw new UserError(`memory ${cfg.memoryBytes}: must be a multiple of 4 KiB between 4 MiB and 3840 MiB`);
  }
  let bios: MachineConfig['bios'] = null;
  if (cfg.bios === 'none') bios = 'none';
  else if (cfg.bios !== undefined && cfg.bios !== 'default') bios = loadImage(cfg.bios, 'firmware', { gunzip: false });
  let kernelPath = cfg.kernel, initrdPath = cfg.initrd, append = cfg.append;
  if (kernelPath === undefined && !(bios instanceof Uint8Array)) {
    const g = findDefaultGuest(env);
    if (!g) throw new UserError(`no kernel given and no default guest in ${guestDir(env)} (typevisor image build)`);
    kernelPath = g.kernel;
    initrdPath ??= g.initrd;
    append ??= DEFAULT_GUEST_APPEND;
  }
  const kernel = kernelPath === undefined ? null : loadImage(kernelPath, 'kernel');
  const initrd = initrdPath === undefined ? null : loadImage(initrdPath, 'initrd', { gunzip: false });
  if (initrd && !kernel) throw new UserError('an initrd needs a kernel');
  return { memoryBytes: cfg.memoryBytes, bios, kernel, initrd, append: append ?? '', jitThreshold: cfg.accel === 'interp' ? Infinity : RUNNER_JIT_THRESHOLD };
}

/** Byte and op counters per disk (for /metrics). */
export interface DiskCounters { readBytes: number; writeBytes: number; readOps: number; writeOps: number }

/** A BlockBackend that counts what passes through it. */
export class CountingBlock implements BlockBackend {
  readonly counters: DiskCounters = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
  constructor(private readonly inner: BlockBackend) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get serial(): string { return this.inner.serial; }
  async read(offset: number, dst: Uint8Array): Promise<void> {
    await this.inner.read(offset, dst);
    this.counters.readBytes += dst.length; this.counters.readOps++;
  }
  async write(offset: number, src: Uint8Array): Promise<void> {
    await this.inner.write(offset, src);
    this.counters.writeBytes += src.length; this.counters.writeOps++;
  }
  flush(): Promise<void> { return this.inner.flush(); }
  discard(offset: number, length: number): Promise<void> { return this.inner.discard(offset, length); }
  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> { return this.inner.writeZeroes(offset, length, mayUnmap); }
  close(): Promise<void> { return this.inner.close(); }
}

/** Open every drive; on an error the ones opened are closed and the error names the file. */
export async function openDrives(cfg: RunnerConfig): Promise<CountingBlock[]> {
  const out: CountingBlock[] = [];
  try {
    for (const d of cfg.drives ?? []) {
      try {
        out.push(new CountingBlock(await openDisk({ file: d.file, format: d.format, readOnly: d.readOnly ?? false, snapshot: d.snapshot ?? false })));
      } catch (e) {
        if (e instanceof DiskError) throw new UserError(`drive ${d.file}: ${e.message}`);
        throw e;
      }
    }
  } catch (e) {
    await Promise.allSettled(out.map((d) => d.close()));
    throw e;
  }
  return out;
}

/** aa:bb:cc:dd:ee:ff → bytes; throws a clear Error. */
export function macBytes(mac: string): Uint8Array {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new UserError(`mac '${mac}': expected aa:bb:cc:dd:ee:ff`);
  const b = Uint8Array.from(mac.split(':').map((x) => parseInt(x, 16)));
  if (b[0] & 1) throw new UserError(`mac '${mac}': a multicast address`);
  return b;
}

/**
 * Open every NIC's backend; on an error the ones opened are closed. `incoming`: a live
 * migration's destination (user networks bind their forwarded ports when the state arrives).
 */
export async function openNics(cfg: RunnerConfig, opts: { incoming?: boolean } = {}): Promise<Array<{ backend: NetBackend; mac: Uint8Array; movable?: MovableNet }>> {
  const out: Array<{ backend: NetBackend; mac: Uint8Array; movable?: MovableNet }> = [];
  try {
    for (const n of cfg.nics ?? []) {
      const mac = macBytes(n.mac);
      let o: Awaited<ReturnType<typeof openNetdevMovable>>;
      try { o = await openNetdevMovable(n.netdev, { deferListen: opts.incoming === true }); } catch (e) { throw new UserError((e as Error).message); }
      out.push({ backend: o.backend, mac, ...(o.movable ? { movable: o.movable } : {}) });
    }
  } catch (e) {
    for (const n of out) n.backend.close();
    throw e;
  }
  return out;
}
