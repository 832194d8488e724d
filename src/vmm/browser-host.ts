/**
 * The VM runner's host in a browser (a Web Worker): RunnerConfig's file names are URLs
 * (http(s) on the page's origin, or blob: URLs of files the user picked), fetched here, so
 * the runner protocol is the daemon's unchanged. Disks live in memory: the guest's writes
 * are kept until the page goes away, never written back. No Node APIs.
 */
import type { BlockBackend } from '../devices/device.js';
import { DEFAULT_JIT_THRESHOLD, type MachineConfig } from '../machine/machine.js';
import { MemFile } from '../host/storage/file.js';
import { RawDisk } from '../host/storage/raw.js';
import type { RunnerConfig } from './protocol.js';
import type { RunnerHost } from './runner.js';

export const MIN_MEMORY = 4 << 20;
export const MAX_MEMORY = 0xf000_0000;
/** Largest file accepted (the guest's RAM is at most 3.75 GiB anyway). */
const MAX_IMAGE = 0xf000_0000;
/** An in-memory disk is an ArrayBuffer: keep it to what a browser tab can hold. */
const MAX_DISK = 2 ** 31 - 4096;
const QCOW2_MAGIC = 0x514649fb;

export interface BrowserHostOptions {
  /** Used when the config names no kernel (the runner's "default guest"). */
  defaultGuest?: { kernel: string; initrd?: string; append?: string };
  /** The translator's threshold (MachineConfig.jitThreshold); absent: the default (Infinity: the interpreter alone). */
  jitThreshold?: number;
  /** Injected for tests; default globalThis.fetch. */
  fetch?: (url: string) => Promise<Response>;
}

type Loaded = Awaited<ReturnType<RunnerHost['load']>>;

export class BrowserRunnerHost implements RunnerHost {
  private readonly fetchFn: (url: string) => Promise<Response>;

  constructor(private readonly opts: BrowserHostOptions = {}) {
    this.fetchFn = opts.fetch ?? ((u) => fetch(u));
  }

  async load(cfg: RunnerConfig): Promise<Loaded> {
    if (!Number.isSafeInteger(cfg.memoryBytes) || cfg.memoryBytes < MIN_MEMORY || cfg.memoryBytes > MAX_MEMORY || cfg.memoryBytes % 4096 !== 0) {
      throw new Error(`memory ${cfg.memoryBytes}: must be a multiple of 4 KiB between 4 MiB and 3840 MiB`);
    }
    let bios: MachineConfig['bios'] = null;
    if (cfg.bios === 'none') bios = 'none';
    else if (cfg.bios !== undefined && cfg.bios !== 'default') bios = await this.fetchImage(cfg.bios, 'firmware');
    let kernelUrl = cfg.kernel, initrdUrl = cfg.initrd, append = cfg.append;
    if (kernelUrl === undefined && !(bios instanceof Uint8Array)) {
      const g = this.opts.defaultGuest;
      if (!g) throw new Error('no kernel given and no default guest');
      kernelUrl = g.kernel;
      initrdUrl ??= g.initrd;
      append ??= g.append ?? 'console=ttyS0';
    }
    let kernel = kernelUrl === undefined ? null : await this.fetchImage(kernelUrl, 'kernel');
    // A gzip'd kernel is accepted, as QEMU and `typevisor run` accept one; an initrd stays as it is.
    if (kernel && kernel.length >= 2 && kernel[0] === 0x1f && kernel[1] === 0x8b) kernel = await gunzip(kernel, `kernel '${kernelUrl}'`);
    const initrd = initrdUrl === undefined ? null : await this.fetchImage(initrdUrl, 'initrd');
    if (initrd && !kernel) throw new Error('an initrd needs a kernel');
    const disks: BlockBackend[] = [];
    for (const d of cfg.drives ?? []) {
      if (d.format === 'qcow2') throw new Error(`drive ${d.file}: qcow2 is not supported in the browser (convert it: typevisor img convert -O raw)`);
      const data = await this.fetchImage(d.file, 'drive', MAX_DISK);
      if (data.length >= 4 && new DataView(data.buffer, data.byteOffset).getUint32(0) === QCOW2_MAGIC) {
        throw new Error(`drive ${d.file}: a qcow2 image; the browser takes raw images only (typevisor img convert -O raw)`);
      }
      if (data.length < 512) throw new Error(`drive ${d.file}: smaller than one 512-byte sector`);
      // MemFile copies the bytes: the guest's writes change only this copy.
      disks.push(await RawDisk.open(new MemFile(d.file, data, MAX_DISK), d.readOnly ?? false));
    }
    return {
      base: {
        memoryBytes: cfg.memoryBytes, bios, kernel, initrd, append: append ?? '',
        // The translator, as everywhere (the page's CSP must allow 'wasm-unsafe-eval').
        jitThreshold: this.opts.jitThreshold ?? DEFAULT_JIT_THRESHOLD,
      },
      disks,
    };
  }

  /** Fetch a whole file; every failure is one line naming what and where. */
  private async fetchImage(url: string, what: string, max = MAX_IMAGE): Promise<Uint8Array> {
    let r: Response;
    try {
      r = await this.fetchFn(url);
    } catch (e) {
      throw new Error(`cannot fetch ${what} '${url}': ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!r.ok) throw new Error(`cannot fetch ${what} '${url}': HTTP ${r.status}${r.statusText ? ' ' + r.statusText : ''}`);
    const declared = Number(r.headers.get('content-length') ?? NaN);
    if (declared > max) throw new Error(`${what} '${url}' is too large (${declared} bytes)`);
    const data = new Uint8Array(await r.arrayBuffer());
    if (data.length === 0) throw new Error(`${what} '${url}' is empty`);
    if (data.length > max) throw new Error(`${what} '${url}' is too large (${data.length} bytes)`);
    return data;
  }

  cpuSeconds(): number { return 0; }
  rssBytes(): number { return 0; }
  now(): number { return performance.now(); }
}

/** gunzip with the platform's DecompressionStream, refusing output beyond MAX_IMAGE. */
async function gunzip(data: Uint8Array, what: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    const stream = new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream('gzip'));
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > MAX_IMAGE) { await reader.cancel(); throw new Error('larger than 3.75 GiB'); }
      chunks.push(value);
    }
  } catch (e) {
    throw new Error(`${what} looks gzip-compressed but does not decompress: ${e instanceof Error ? e.message : String(e)}`);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}
