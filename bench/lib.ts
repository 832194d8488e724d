/**
 * Shared benchmark plumbing: build a guest program, run it on typevisor and on
 * qemu-system-riscv64 (the yardstick), time both.
 */
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildElf, DEFAULT_LINKER_SCRIPT } from '../tests/lib/toolchain.js';
import { Machine } from '../src/machine/machine.js';

export const benchRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');

const LINKER = DEFAULT_LINKER_SCRIPT.replace('  _end = .;', '  _end = .;\n  . = ALIGN(16) + 0x10000;\n  __stack_top = .;');

/** Rounds per row (`--runs N`): each engine runs once a round, the best time is kept, as the least disturbed by other load. */
export const bench = { runs: 1 };

export interface Row {
  name: string;
  /** What the figures measure. */
  unit: string;
  typevisorSeconds: number;
  qemuSeconds: number;
  /** typevisor time / qemu time: how many times slower. */
  ratio: number;
  /** Extra figures (MIPS, Mflop/s, ...). */
  detail: Record<string, number | string>;
}

export async function buildGuest(name: string, cfile: string, scale: number): Promise<Uint8Array> {
  const src = (f: string): string => readFileSync(join(benchRoot, 'guest', f), 'utf8');
  const path = await buildElf({
    name: `bench-${name}`,
    sources: { 'start.S': src('start.S'), 'common.h': src('common.h'), [cfile]: src(cfile) },
    linkerScript: LINKER,
    cflags: ['-O2', `-DSCALE=${scale}`],
  });
  return new Uint8Array(readFileSync(path));
}

/**
 * Call `fn` of dist/bench/`module` with `args` (JSON: paths and numbers) in a fresh Node
 * process (bench/child.ts), as every `typevisor run` starts: nothing of typevisor compiled
 * by V8 yet, and with the command's Node flags. The child gets the bench's V8 tier
 * (TYPEVISOR_WASM_TIER).
 */
export function inFreshProcess<T>(module: string, fn: string, args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...cliNodeFlags(), join(benchDist, 'child.js'), module, fn, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || line === undefined) { reject(new Error(`bench child ${module} ${fn} exited ${signal ?? code}: ${err.slice(-2000)}`)); return; }
      resolve(JSON.parse(line.slice(7)) as T);
    });
  });
}

/** Where the compiled bench modules are (bench/child.ts's directory). */
const benchDist = dirname(fileURLToPath(import.meta.url));

/** The `typevisor` command, bin/typevisor.js. */
export const CLI = join(benchRoot, '..', 'bin', 'typevisor.js');

/**
 * The Node flags `typevisor` runs with: those on its `#!/usr/bin/env -S node ...` line, so
 * the bench's typevisor processes start as the installed command does.
 */
export function cliNodeFlags(): string[] {
  const first = readFileSync(CLI, 'utf8').split('\n', 1)[0];
  const m = /^#!\S*env -S node((?: --\S+)*)\s*$/.exec(first);
  if (!m) throw new Error(`${CLI}: unexpected first line '${first}'`);
  return m[1].trim().split(' ').filter((f) => f !== '');
}

export interface TypevisorRun { seconds: number; cpuSeconds: number; instructions: number; output: string; code: number }

/** runTypevisorFile in a fresh process; jitThreshold Infinity runs the interpreter alone. */
export function runTypevisor(elfPath: string, jitThreshold = Infinity): Promise<TypevisorRun> {
  return inFreshProcess('lib.js', 'runTypevisorFile', [elfPath, jitThreshold === Infinity ? null : jitThreshold]);
}

/** Run the bare-metal ELF at `elfPath` in this process (bench/child.ts); jitThreshold null: the interpreter alone. */
export async function runTypevisorFile(elfPath: string, jitThreshold: number | null): Promise<TypevisorRun> {
  let output = '';
  const m = new Machine({
    memoryBytes: 128 << 20, bios: new Uint8Array(readFileSync(elfPath)), kernel: null, initrd: null, append: '', jitThreshold: jitThreshold ?? Infinity,
    serial: { write(b: Uint8Array) { output += Buffer.from(b).toString('latin1'); } },
  });
  const t0 = performance.now(), c0 = process.cpuUsage();
  const exit = await m.run();
  const seconds = (performance.now() - t0) / 1000;
  // The whole process: V8's background compiles of the translator's modules included.
  const c = process.cpuUsage(c0);
  return { seconds, cpuSeconds: (c.user + c.system) / 1e6, instructions: m.hart.icount, output, code: exit.reason === 'poweroff' ? 0 : exit.code || 1 };
}

/**
 * Run under qemu-system-riscv64 -M virt with the program as firmware; wall time includes
 * QEMU's start-up. QEMU runs under a shell that then prints its own /proc stat, whose
 * cutime and cstime are QEMU's CPU time (clock ticks of 10 ms).
 */
export function runQemu(elfPath: string): Promise<{ seconds: number; cpuSeconds: number; output: string; code: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const script = 'qemu-system-riscv64 "$@"; s=$?; cat /proc/$$/stat >&2; exit $s';
    const q = spawn('sh', ['-c', script, 'sh', '-M', 'virt', '-m', '128M', '-nographic', '-bios', elfPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '', err = '';
    q.stdout.on('data', (d: Buffer) => { output += d.toString('latin1'); });
    q.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    q.on('error', reject);
    q.on('exit', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const stat = /\) \S+(( -?\d+){14})/.exec(err.slice(err.lastIndexOf('\n', err.length - 2) + 1));
      if (code === null || code >= 128 || stat === null) { reject(new Error(`qemu killed or failed: ${err}`)); return; }
      const f = stat[1].trim().split(' ').map(Number); // ppid .. cstime: cutime and cstime last
      resolve({ seconds, cpuSeconds: (f[12] + f[13]) / 100, output, code });
    });
  });
}

/** QEMU's own start-up and exit time: a program that exits at once. */
export async function qemuStartupSeconds(): Promise<number> {
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'tv-bench-'));
  const words = [0x001002b7, 0x00005337, 0x5553031b, 0x0062a023, 0x0000006f]; // write 0x5555 to the test device
  const bin = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => bin.writeUInt32LE(w, i * 4));
  const f = join(dir, 'exit.bin');
  writeFileSync(f, bin);
  let best = Infinity;
  for (let i = 0; i < 3; i++) best = Math.min(best, (await runQemu(f)).seconds);
  return best;
}
