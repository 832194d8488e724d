/** Integer throughput: the same bare-metal program on typevisor and qemu-system-riscv64. */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGuest, runTypevisor, runQemu, bench, type Row, type TypevisorRun } from './lib.js';

/** Translator threshold for the bench's jit rows (the CLI's --accel jit default). */
const JIT_THRESHOLD = 50;

/** Two rows: the interpreter alone (`name`), and with the translator (`name (jit)`). */
export async function benchGuestProgram(name: string, cfile: string, scale: number, startup: number): Promise<Row[]> {
  const elf = await buildGuest(name, cfile, scale);
  const path = join(mkdtempSync(join(tmpdir(), 'tv-bench-')), `${name}.elf`);
  writeFileSync(path, elf);
  const rows: Row[] = [];
  for (const jit of [Infinity, JIT_THRESHOLD]) rows.push(await benchOne(jit === Infinity ? name : `${name} (jit)`, path, startup, jit));
  return rows;
}

async function benchOne(name: string, path: string, startup: number, jit: number): Promise<Row> {
  // Rounds of one typevisor run (in a fresh process, as QEMU's: bench/child.ts) and one QEMU
  // run, in turn, so host drift affects both; QEMU finishes in a fraction of a second, so its
  // time is noisy: at least three of its runs. The best of each.
  let tv: TypevisorRun | null = null, q: Awaited<ReturnType<typeof runQemu>> | null = null;
  for (let r = 0; r < Math.max(bench.runs, 3); r++) {
    if (r < bench.runs) {
      const t = await runTypevisor(path, jit);
      if (tv === null || t.seconds < tv.seconds) tv = t;
    }
    const again = await runQemu(path);
    if (q !== null && (again.code !== q.code || again.output !== q.output)) throw new Error(`${name}: qemu runs disagree`);
    if (q === null || again.seconds < q.seconds) q = again;
  }
  if (tv === null || q === null) throw new Error(`${name}: no runs`);
  if (tv.code !== 0 || q.code !== 0) throw new Error(`${name}: exit codes typevisor ${tv.code}, qemu ${q.code}`);
  const sumTv = /checksum (\S+)/.exec(tv.output)?.[1], sumQ = /checksum (\S+)/.exec(q.output)?.[1];
  if (!sumTv || sumTv !== sumQ) throw new Error(`${name}: checksums differ: typevisor ${sumTv}, qemu ${sumQ}`);
  const qemuCompute = Math.max(q.seconds - startup, 1e-3);
  const detail: Record<string, number | string> = {
    instructions: tv.instructions,
    typevisorMIPS: +(tv.instructions / tv.seconds / 1e6).toFixed(1),
    qemuMIPS: +(tv.instructions / qemuCompute / 1e6).toFixed(1),
    qemuWallSeconds: +q.seconds.toFixed(3),
    // CPU seconds (user + sys): typevisor's whole process, QEMU's best run with its start-up.
    typevisorCpuSeconds: +tv.cpuSeconds.toFixed(3),
    qemuCpuSeconds: +q.cpuSeconds.toFixed(2),
    wallRatio: +(tv.seconds / q.seconds).toFixed(1),
    checksum: sumTv,
  };
  const flops = /flops (\d+)/.exec(tv.output)?.[1];
  if (flops) {
    detail.typevisorMflops = +(Number(flops) / tv.seconds / 1e6).toFixed(1);
    detail.qemuMflops = +(Number(flops) / qemuCompute / 1e6).toFixed(1);
  }
  return {
    name, unit: 'seconds (qemu: best of 3, minus its start-up)',
    typevisorSeconds: tv.seconds, qemuSeconds: qemuCompute, ratio: tv.seconds / qemuCompute, detail,
  };
}

export function benchCpu(startup: number): Promise<Row[]> {
  return benchGuestProgram('cpu', 'cpu.c', 12, startup);
}
