/**
 * Disk throughput inside the guest (busybox dd on /dev/vda), typevisor against
 * qemu-system-riscv64 on the same kind of image in the same run: sequential 1 MiB writes
 * (conv=fsync) and reads (page cache dropped), 4 KiB O_DIRECT reads and writes at queue
 * depth 1, and random 4 KiB O_DIRECT reads and writes (one dd per block: these include the
 * guest's process start-up). For raw and qcow2 images; each engine gets a fresh image. Each
 * test runs twice, a cold pass and the measured one (the cold figures in the row's detail).
 * typevisor runs with the translator, as `typevisor run` does by default
 * (TYPEVISOR_BENCH_ACCEL=interp: the interpreter alone).
 */
import { readFileSync, existsSync, mkdtempSync, rmSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { spawn, execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from '../src/machine/machine.js';
import { openDisk, type DiskFormat } from '../src/host/storage/index.js';
import { guestDir } from '../tests/lib/toolchain.js';
import { inFreshProcess, type Row } from './lib.js';

const PROMPT = '~ # ';
const TIMEOUT_MS = 600_000;
const SIZE = 64 << 20;
const RANDOM_OPS = 64;
/** The CLI's default engine: the translator at its default threshold. */
const ACCEL = process.env.TYPEVISOR_BENCH_ACCEL === 'interp' ? 'interp' : 'jit';
const JIT_THRESHOLD = ACCEL === 'jit' ? 50 : Infinity;

/** The guest script: each test prints `T:<name> <bytes> <seconds>`. */
const lcg = 'x=$(( (x * 1103515245 + 12345) % 2147483648 ))';
const random = (name: string, dd: string): string =>
  `x=7; a=$(cut -d' ' -f1 /proc/uptime); i=0; while [ $i -lt ${RANDOM_OPS} ]; do ${lcg}; ${dd.replace('@', '$((x % 8192))')} 2>/dev/null; i=$((i+1)); done; ` +
  `b=$(cut -d' ' -f1 /proc/uptime); echo T:${name} ${RANDOM_OPS * 4096} $(echo "$a $b" | awk '{print $2-$1}')`;
const dd = (name: string, cmd: string): string =>
  `${cmd} 2>&1 | sed -n 's/^\\([0-9]*\\) bytes .* copied, \\([0-9.]*\\) seconds.*/T:${name} \\1 \\2/p'`;
/** The tests, each name prefixed with `prefix`. */
const tests = (prefix: string): string[] => [
  dd(`${prefix}seq-write-1M`, 'dd if=/dev/zero of=/dev/vda bs=1M count=32 conv=fsync'),
  'sync; echo 3 > /proc/sys/vm/drop_caches',
  dd(`${prefix}seq-read-1M`, 'dd if=/dev/vda of=/dev/null bs=1M count=32'),
  dd(`${prefix}read-4k-direct`, 'dd if=/dev/vda of=/dev/null bs=4k count=4096 iflag=direct'),
  dd(`${prefix}write-4k-direct`, 'dd if=/dev/zero of=/dev/vda bs=4k count=4096 oflag=direct'),
  random(`${prefix}rand-read-4k`, 'dd if=/dev/vda of=/dev/null bs=4k count=1 skip=@ iflag=direct'),
  random(`${prefix}rand-write-4k`, 'dd if=/dev/zero of=/dev/vda bs=4k count=1 seek=@ oflag=direct conv=notrunc'),
];
/**
 * Every test twice: a first (cold) pass, then the measured one, as fio's ramp_time: both
 * engines' translation caches (and V8's optimizing tier for typevisor) warm up on the same
 * code paths first. The cold figures go in each row's detail.
 */
const SCRIPT = [...tests('cold-'), 'sync; echo 3 > /proc/sys/vm/drop_caches', ...tests(''), 'echo BENCH-$((1+1))-DONE'];
const TESTS = ['seq-write-1M', 'seq-read-1M', 'read-4k-direct', 'write-4k-direct', 'rand-read-4k', 'rand-write-4k'];

/** MB/s per test from the guest's output. */
function parse(out: string, who: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of out.matchAll(/^T:(\S+) (\d+) ([\d.]+)\s*$/gm)) {
    const s = Number(x[3]);
    m.set(x[1], Number(x[2]) / 1e6 / Math.max(s, 0.001));
  }
  for (const t of TESTS) for (const n of [t, `cold-${t}`]) if (!m.has(n)) throw new Error(`${who}: no result for ${n}; output:\n${out.slice(-1500)}`);
  return m;
}

function makeImage(dir: string, fmt: DiskFormat, name: string): string {
  const path = join(dir, `${name}.${fmt}`);
  if (fmt === 'raw') { const fd = openSync(path, 'w'); ftruncateSync(fd, SIZE); closeSync(fd); }
  else execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(SIZE)]);
  return path;
}

/** Type the script once the prompt shows; resolve with everything printed after it. */
function driver(send: (s: string) => void, stop: () => void): { feed(s: string): void; result: Promise<string> } {
  let out = '', started = false, resolveFn: (s: string) => void = () => {};
  const result = new Promise<string>((r) => { resolveFn = r; });
  return {
    result,
    feed(s: string) {
      out += s;
      if (!started && out.includes(PROMPT)) { started = true; out = ''; send(SCRIPT.join('\n') + '\n'); }
      else if (started && out.includes('BENCH-2-DONE')) { resolveFn(out); stop(); }
    },
  };
}

/** The script on typevisor, in this process (bench/child.ts): [test, MB/s] pairs. */
export async function diskTypevisor(img: string, fmt: DiskFormat, kernelPath: string, initrdPath: string): Promise<[string, number][]> {
  const kernel = new Uint8Array(readFileSync(kernelPath)), initrd = new Uint8Array(readFileSync(initrdPath));
  const disk = await openDisk({ file: img, format: fmt });
  let m: Machine | null = null;
  const d = driver((s) => m?.sendInput(Buffer.from(s)), () => m?.stop());
  m = new Machine({
    memoryBytes: 256 << 20, bios: null, kernel, initrd, append: 'console=ttyS0',
    serial: { write: (b: Uint8Array) => d.feed(Buffer.from(b).toString('latin1')) },
    virtio: [{ kind: 'blk', disk }],
    jitThreshold: JIT_THRESHOLD,
  });
  const timer = setTimeout(() => m?.stop(), TIMEOUT_MS);
  try {
    await m.run();
  } finally {
    clearTimeout(timer);
    await disk.close();
  }
  return [...parse(await Promise.race([d.result, Promise.resolve('')]), 'typevisor')];
}

function runQemu(img: string, fmt: DiskFormat, kernelPath: string, initrdPath: string): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const q = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', '256M', '-nographic', '-kernel', kernelPath, '-initrd', initrdPath,
      '-append', 'console=ttyS0', '-drive', `file=${img},format=${fmt},if=virtio`], { stdio: ['pipe', 'pipe', 'pipe'] });
    const d = driver((s) => q.stdin.write(s), () => q.kill('SIGTERM'));
    q.stdout.on('data', (b: Buffer) => d.feed(b.toString('latin1')));
    const timer = setTimeout(() => q.kill('SIGKILL'), TIMEOUT_MS);
    q.on('error', reject);
    q.on('exit', () => {
      clearTimeout(timer);
      void Promise.race([d.result, Promise.resolve('')]).then((out) => {
        try { resolve(parse(out, 'qemu')); } catch (e) { reject(e as Error); }
      });
    });
  });
}

export async function benchDisk(): Promise<Row[]> {
  const kernelPath = join(guestDir, 'Image'), initrdPath = join(guestDir, 'initramfs.cpio.gz');
  if (!existsSync(kernelPath) || !existsSync(initrdPath)) throw new Error(`no guest in ${guestDir} (set TYPEVISOR_GUEST_DIR or run typevisor image build)`);
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-bench-disk-'));
  const rows: Row[] = [];
  try {
    for (const fmt of ['raw', 'qcow2'] as const) {
      const q = await runQemu(makeImage(dir, fmt, 'qemu'), fmt, kernelPath, initrdPath);
      // typevisor in a fresh process, as QEMU (bench/child.ts).
      const t = new Map(await inFreshProcess<[string, number][]>('disk.js', 'diskTypevisor', [makeImage(dir, fmt, 'typevisor'), fmt, kernelPath, initrdPath]));
      for (const name of TESTS) {
        const tv = t.get(name) ?? 0, qm = q.get(name) ?? 0;
        // Seconds per MB, so that the ratio reads like the other rows (typevisor / qemu time).
        rows.push({ name: `disk ${fmt} ${name}`, unit: 'seconds per MB in the guest', typevisorSeconds: 1 / tv, qemuSeconds: 1 / qm,
          ratio: qm / tv, detail: {
            typevisorMBps: +tv.toFixed(2), qemuMBps: +qm.toFixed(2), accel: ACCEL,
            coldTypevisorMBps: +(t.get(`cold-${name}`) ?? 0).toFixed(2), coldQemuMBps: +(q.get(`cold-${name}`) ?? 0).toFixed(2),
          } });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
