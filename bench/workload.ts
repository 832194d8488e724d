/**
 * The Linux guest workload (issue #11): `bench/guest/workload.c`, a static glibc program
 * built at bench time, added to the found guest's initramfs as /bin/workload (a second
 * cpio archive, which Linux unpacks over the first). Each machine boots that guest, and
 * at the prompt the program runs twice: the first run meets cold code (the translator
 * compiles it, QEMU's TCG translates it), the second runs warm. Timed from the host, from
 * typing the command to the program's last line; the program's own clock and its
 * per-phase times are reported beside. Both runs' checksums must equal QEMU's.
 */
import { readFileSync, mkdtempSync, mkdirSync, copyFileSync, chmodSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ConsoleText } from '../tests/lib/expect.js';
import { GuestConsole } from '../tests/lib/console.js';
import { QemuGuest } from '../tests/lib/qemu-guest.js';
import { requireGuest } from '../tests/lib/guest.js';
import { buildLinuxElf } from '../tests/lib/toolchain.js';
import { bench, benchRoot, inFreshProcess, type Row } from './lib.js';

/** The busybox shell's prompt, at the end of the output so far. */
const PROMPT = '~ # ';
const JIT_THRESHOLD = 50;
/** Rounds of the program's phases (about 0.9 s under QEMU here). */
const SCALE = 6;
const MEMORY_MIB = 512;
const APPEND = 'console=ttyS0 quiet';
const TIMEOUT_MS = 600_000;
/** The program's last line. */
const DONE = /phases[^\n]*\n/;

/** One run of the program, as the host saw it. */
interface Run { seconds: number; cpuSeconds: number; checksum: string; guestMs: number; phases: string }
/** One boot: the cold run, then the warm one. */
interface Boot { seconds: number; cold: Run; warm: Run }

/** A booting guest's console (typevisor's or QEMU's). */
type Console = ConsoleText & { type(text: string): void };

/** Boot to the prompt, then run the program twice; cpu() is the machine's CPU seconds so far. */
async function bootAndRun(c: Console, cpu: () => number): Promise<Boot> {
  const t0 = performance.now();
  await c.expect(PROMPT, TIMEOUT_MS);
  const seconds = (performance.now() - t0) / 1000;
  const run = async (): Promise<Run> => {
    const t1 = performance.now(), c1 = cpu();
    c.type('/bin/workload\n');
    const out = await c.expect(DONE, TIMEOUT_MS);
    const wall = (performance.now() - t1) / 1000, cpuSeconds = cpu() - c1;
    const checksum = /checksum (\S+)/.exec(out)?.[1], ms = /elapsed (\d+) ms/.exec(out)?.[1];
    const phases = /phases([^\r\n]*)/.exec(out)?.[1]?.trim();
    if (checksum === undefined || ms === undefined || phases === undefined) throw new Error(`workload: unexpected output: ${out.slice(-300)}`);
    await c.expect(PROMPT, TIMEOUT_MS);
    return { seconds: wall, cpuSeconds, checksum, guestMs: Number(ms), phases };
  };
  return { seconds, cold: await run(), warm: await run() };
}

/** One typevisor boot and its two runs, in this process (bench/child.ts); jitThreshold null: the interpreter alone. */
export async function workloadTypevisor(kernelPath: string, initrdPath: string, jitThreshold: number | null): Promise<Boot> {
  const kernel = new Uint8Array(readFileSync(kernelPath)), initrd = new Uint8Array(readFileSync(initrdPath));
  const g = new GuestConsole({ memoryBytes: MEMORY_MIB << 20, bios: null, kernel, initrd, append: APPEND, jitThreshold: jitThreshold ?? Infinity });
  try {
    return await bootAndRun(g, () => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6; });
  } finally {
    await g.stop();
  }
}

/** QEMU's CPU seconds so far (/proc/PID/stat utime + stime, clock ticks of 10 ms). */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(v[11]) + Number(v[12])) / 100;
}

async function bootQemu(initrdPath: string): Promise<Boot> {
  // QEMU's bundled firmware, as the boot row's (typevisor boots with its built-in SBI).
  const q = new QemuGuest([], `${MEMORY_MIB}M`, { initrd: initrdPath, bios: null });
  try {
    return await bootAndRun(q, () => procCpu(q.pid));
  } finally {
    await q.kill();
  }
}

/** The found guest's initramfs with /bin/workload added. */
async function workloadInitrd(initrdPath: string): Promise<{ path: string }> {
  const elf = await buildLinuxElf({
    name: 'bench-workload', sources: { 'workload.c': readFileSync(join(benchRoot, 'guest', 'workload.c'), 'utf8') },
    cflags: ['-O2', `-DSCALE=${SCALE}`],
  });
  const dir = mkdtempSync(join(tmpdir(), 'tv-bench-workload-'));
  mkdirSync(join(dir, 'root', 'bin'), { recursive: true });
  copyFileSync(elf, join(dir, 'root', 'bin', 'workload'));
  chmodSync(join(dir, 'root', 'bin', 'workload'), 0o755);
  const overlay = gzipSync(execFileSync('cpio', ['--quiet', '-o', '-H', 'newc', '-R', '0:0'], { cwd: join(dir, 'root'), input: 'bin\nbin/workload\n' }));
  const bytes = new Uint8Array(Buffer.concat([readFileSync(initrdPath), overlay]));
  const path = join(dir, 'initramfs.cpio.gz');
  writeFileSync(path, bytes);
  return { path };
}

export async function benchWorkload(): Promise<Row[]> {
  const g = requireGuest();
  const initrd = await workloadInitrd(g.initrd);
  // Rounds of QEMU, the interpreter and the translator in turn (each typevisor boot in a
  // fresh process, as QEMU's: bench/child.ts); the best of bench.runs boots of each, by the
  // warm run.
  const engines = [() => bootQemu(initrd.path), ...[Infinity, JIT_THRESHOLD].map((jit) => () =>
    inFreshProcess<Boot>('workload.js', 'workloadTypevisor', [g.kernel, initrd.path, jit === Infinity ? null : jit]))];
  const best: Boot[] = [];
  for (let r = 0; r < bench.runs; r++) {
    for (let i = 0; i < engines.length; i++) {
      const b = await engines[i]();
      if (best[i] === undefined || b.warm.seconds < best[i].warm.seconds) best[i] = b;
    }
  }
  const q = best[0];
  const rows: Row[] = [];
  for (const [k, jit] of [Infinity, JIT_THRESHOLD].entries()) {
    const t = best[k + 1];
    for (const r of [t.cold, t.warm, q.cold]) {
      if (r.checksum !== q.warm.checksum) throw new Error(`workload: checksums differ: typevisor ${t.cold.checksum}/${t.warm.checksum}, qemu ${q.cold.checksum}/${q.warm.checksum}`);
    }
    rows.push({
      name: jit === Infinity ? 'linux workload' : 'linux workload (jit)',
      unit: 'seconds of the warm run, typed command to last line',
      typevisorSeconds: t.warm.seconds, qemuSeconds: q.warm.seconds, ratio: t.warm.seconds / q.warm.seconds,
      detail: {
        ...(jit === Infinity ? {} : { accel: `jit,threshold=${jit}` }),
        coldSeconds: +t.cold.seconds.toFixed(3), qemuColdSeconds: +q.cold.seconds.toFixed(3), coldRatio: +(t.cold.seconds / q.cold.seconds).toFixed(2),
        typevisorCpuSeconds: +t.warm.cpuSeconds.toFixed(2), qemuCpuSeconds: +q.warm.cpuSeconds.toFixed(2),
        bootSeconds: +t.seconds.toFixed(2), qemuBootSeconds: +q.seconds.toFixed(2),
        guestMs: t.warm.guestMs, qemuGuestMs: q.warm.guestMs,
        phasesMs: t.warm.phases, qemuPhasesMs: q.warm.phases,
        checksum: q.warm.checksum,
      },
    });
  }
  return rows;
}
