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
import { spawn, execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Machine } from '../src/machine/machine.js';
import { requireGuest } from '../tests/lib/guest.js';
import { buildLinuxElf } from '../tests/lib/toolchain.js';
import { benchRoot, bestOf, type Row } from './lib.js';

/** The busybox shell's prompt, at the end of the output so far. */
const PROMPT_END = /~ # $/;
const JIT_THRESHOLD = 50;
/** Rounds of the program's phases (about 0.9 s under QEMU here). */
const SCALE = 6;
const MEMORY = '512M';
const APPEND = 'console=ttyS0 quiet';
const TIMEOUT_MS = 600_000;
/** The program's last line. */
const DONE = /phases[^\n]*\n/;

/** One run of the program, as the host saw it. */
interface Run { seconds: number; cpuSeconds: number; checksum: string; guestMs: number; phases: string }
/** One boot: the cold run, then the warm one. */
interface Boot { seconds: number; cold: Run; warm: Run }

/** A console to drive: text arrives through `feed`, keys go out through `type`. */
class Driver {
  private text = '';
  private waiter: { re: RegExp; resolve: (s: string) => void } | null = null;
  constructor(private readonly type: (s: string) => void) {}
  feed(s: string): void {
    this.text += s;
    const w = this.waiter;
    if (w !== null && w.re.test(this.text)) { this.waiter = null; const t = this.text; this.text = ''; w.resolve(t); }
  }
  /** Resolves with everything since the last match once `re` matches it. */
  until(re: RegExp, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`workload: no ${what} in ${TIMEOUT_MS / 1000} s; last output: ${this.text.slice(-300)}`)), TIMEOUT_MS);
      this.waiter = { re, resolve: (s) => { clearTimeout(timer); resolve(s); } };
      this.feed('');
    });
  }
  /** Type the command and time it to the program's last line; cpu() is the machine's CPU seconds so far. */
  async run(cpu: () => number): Promise<Run> {
    const t0 = performance.now(), c0 = cpu();
    this.type('/bin/workload\n');
    const out = await this.until(DONE, 'workload output');
    const seconds = (performance.now() - t0) / 1000, cpuSeconds = cpu() - c0;
    const checksum = /checksum (\S+)/.exec(out)?.[1], ms = /elapsed (\d+) ms/.exec(out)?.[1];
    const phases = /phases([^\r\n]*)/.exec(out)?.[1]?.trim();
    if (checksum === undefined || ms === undefined || phases === undefined) throw new Error(`workload: unexpected output: ${out.slice(-300)}`);
    await this.until(PROMPT_END, 'prompt after the workload');
    return { seconds, cpuSeconds, checksum, guestMs: Number(ms), phases };
  }
}

async function bootTypevisor(kernel: Uint8Array, initrd: Uint8Array, jitThreshold: number): Promise<Boot> {
  const dec = new TextDecoder();
  const d = new Driver((s) => m.sendInput(new TextEncoder().encode(s)));
  const m: Machine = new Machine({
    memoryBytes: 512 << 20, bios: null, kernel, initrd, append: APPEND, jitThreshold,
    serial: { write(b: Uint8Array) { d.feed(dec.decode(b, { stream: true })); } },
  });
  const t0 = performance.now();
  const exit = m.run();
  const ended = exit.then((e): never => { throw new Error(`typevisor: guest ended early (${JSON.stringify(e)})`); });
  ended.catch(() => {});
  const cpu = (): number => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6; };
  try {
    return await Promise.race([(async (): Promise<Boot> => {
      await d.until(PROMPT_END, 'prompt');
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, cold: await d.run(cpu), warm: await d.run(cpu) };
    })(), ended]);
  } finally {
    m.stop();
    await exit;
  }
}

/** QEMU's CPU seconds so far (/proc/PID/stat utime + stime, clock ticks of 10 ms). */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const v = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(v[11]) + Number(v[12])) / 100;
}

async function bootQemu(kernelPath: string, initrdPath: string): Promise<Boot> {
  const q = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', MEMORY, '-nographic', '-kernel', kernelPath, '-initrd', initrdPath, '-append', APPEND],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  const dec = new TextDecoder();
  const d = new Driver((s) => q.stdin.write(s));
  q.stdout.on('data', (b: Buffer) => d.feed(dec.decode(b, { stream: true })));
  const ended = new Promise<never>((_, reject) => {
    q.on('error', reject);
    q.on('exit', (code) => reject(new Error(`qemu exited early (${code})`)));
  });
  ended.catch(() => {});
  const t0 = performance.now();
  const pid = q.pid!;
  try {
    return await Promise.race([(async (): Promise<Boot> => {
      await d.until(PROMPT_END, 'prompt');
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, cold: await d.run(() => procCpu(pid)), warm: await d.run(() => procCpu(pid)) };
    })(), ended]);
  } finally {
    q.removeAllListeners('exit');
    q.kill('SIGKILL');
  }
}

/** The found guest's initramfs with /bin/workload added. */
async function workloadInitrd(initrdPath: string): Promise<{ path: string; bytes: Uint8Array }> {
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
  return { path, bytes };
}

export async function benchWorkload(): Promise<Row[]> {
  const g = requireGuest();
  const initrd = await workloadInitrd(g.initrd);
  const kernel = new Uint8Array(readFileSync(g.kernel));
  // Best of bench.runs boots, by the warm run.
  const best = async (f: () => Promise<Boot>): Promise<Boot> => (await bestOf(async () => { const b = await f(); return { seconds: b.warm.seconds, b }; })).b;
  const q = await best(() => bootQemu(g.kernel, initrd.path));
  const rows: Row[] = [];
  for (const jit of [Infinity, JIT_THRESHOLD]) {
    const t = await best(() => bootTypevisor(kernel, initrd.bytes, jit));
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
