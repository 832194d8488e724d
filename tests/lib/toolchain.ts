/**
 * Test-time toolchain: builds guest programs with Debian's riscv64 cross gcc/binutils and
 * runs them under qemu-riscv64 (the oracle). Builds are cached by content hash in the OS
 * temp directory so reruns are quick.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findGuest } from './guest.js';
import { cacheDir } from '../../src/host/guest-cache.js';
import { setWasmTier } from '../../src/host/wasm-tier.js';

// Test processes tier the translator's WebAssembly as `typevisor run` does (nearly every test
// that runs a guest imports this module).
setWasmTier('late');

const execFileP = promisify(execFile);

/** The repository root (tests run from dist/tests/lib). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * Directory of the Linux guest (the cache directory when there is none yet). Kept for older
 * callers: new code uses requireGuest() from ./guest.js, which says how to build a missing guest.
 */
export const guestDir = ((): string => { try { return findGuest().dir; } catch { return join(cacheDir(), 'guest'); } })();

export const CC = 'riscv64-linux-gnu-gcc';

/**
 * Default linker script: everything from 0x8000_0000 (start of RAM on the virt board, and a
 * free user address for qemu-riscv64). `.text.init` first so `_start` is at the base;
 * `.tohost` page-aligned for HTIF.
 */
export const DEFAULT_LINKER_SCRIPT = `
OUTPUT_ARCH(riscv)
ENTRY(_start)
SECTIONS
{
  . = 0x80000000;
  .text : { *(.text.init) *(.text .text.*) }
  . = ALIGN(0x1000);
  .tohost : { *(.tohost) }
  . = ALIGN(0x1000);
  .rodata : { *(.rodata .rodata.*) *(.srodata .srodata.*) }
  .data : { *(.data .data.*) *(.sdata .sdata.*) }
  .bss : { *(.sbss .sbss.*) *(.bss .bss.*) *(COMMON) }
  . = ALIGN(16);
  _end = .;
}
`;

export interface BuildOptions {
  /** A short name for error messages and the cache directory. */
  name: string;
  /** File name -> contents (.S, .s, .c, .h). */
  sources: Record<string, string>;
  linkerScript?: string;
  cflags?: string[];
}

/** Build a static, -nostdlib ELF. Returns its path. */
export function buildElf(opts: BuildOptions): Promise<string> {
  const script = opts.linkerScript ?? DEFAULT_LINKER_SCRIPT;
  const cflags = ['-march=rv64gc', '-mabi=lp64d', '-nostdlib', '-static', '-no-pie', '-ffreestanding',
    '-fno-pic', '-mcmodel=medany', '-Wl,--build-id=none', '-Wl,--no-warn-rwx-segments', ...(opts.cflags ?? [])];
  return compileCached(opts.name, { ...opts.sources, 'link.ld': script }, [...cflags, '-T', 'link.ld']);
}

/** Build a static Linux user program against Debian's riscv64 glibc (libc6-dev-riscv64-cross). Returns its path. */
export function buildLinuxElf(opts: BuildOptions): Promise<string> {
  return compileCached(opts.name, opts.sources, ['-march=rv64gc', '-mabi=lp64d', '-static', ...(opts.cflags ?? [])], ['-lm']);
}

/** Compile the sources (files named in the arguments are relative to the build directory), cached by content hash. */
async function compileCached(name: string, sources: Record<string, string>, args: string[], libs: string[] = []): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify([sources, args, libs]));
  const key = h.digest('hex').slice(0, 20);
  const dir = join(tmpdir(), 'typevisor-test-build', `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${key}`);
  const out = join(dir, 'prog.elf');
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(sources)) writeFileSync(join(dir, file), text);
  const inputs = Object.keys(sources).filter((f) => /\.(S|s|c)$/.test(f));
  const tmpOut = join(dir, `prog.${process.pid}.tmp`);
  try {
    await execFileP(CC, [...args, '-o', tmpOut, ...inputs, ...libs], { cwd: dir, maxBuffer: 16 << 20 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`building ${name} failed:\n${err.stderr ?? err.message}`);
  }
  renameSync(tmpOut, out);
  return out;
}

export interface QemuUserResult { stdout: Buffer; stderr: string; code: number }

/** Run an ELF under qemu-riscv64 (Debian qemu-user). */
export function runQemuUser(elfPath: string, stdin?: Uint8Array): Promise<QemuUserResult> {
  return new Promise((resolveP, reject) => {
    const p = spawn('qemu-riscv64', [elfPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      resolveP({ stdout: Buffer.concat(out), stderr: err, code: code ?? (signal ? 128 : 1) });
    });
    if (stdin) p.stdin.end(stdin); else p.stdin.end();
  });
}
