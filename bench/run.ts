/**
 * `npm run bench`: typevisor against qemu-system-riscv64 in the same run.
 * `node dist/bench/run.js [cpu] [fp] [boot]` runs a subset. Results also go to bench/results.json.
 */
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { benchCpu } from './cpu.js';
import { benchFp } from './fp.js';
import { benchBoot } from './boot.js';
import { qemuStartupSeconds, benchRoot, type Row } from './lib.js';

async function main(): Promise<number> {
  const want = new Set(process.argv.slice(2));
  const all = want.size === 0;
  let qemuVersion = 'unknown';
  try { qemuVersion = execFileSync('qemu-system-riscv64', ['--version'], { encoding: 'utf8' }).split('\n')[0]; } catch { /* reported below */ }
  console.log(`typevisor benchmarks: node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}, ${qemuVersion}`);
  const startup = await qemuStartupSeconds();
  console.log(`qemu start-up + exit: ${startup.toFixed(3)} s (subtracted from qemu's bare-metal times)`);
  const rows: Row[] = [];
  const errors: string[] = [];
  const attempt = async (name: string, f: () => Promise<Row | Row[]>): Promise<void> => {
    if (!all && !want.has(name)) return;
    try {
      const r = await f();
      for (const row of Array.isArray(r) ? r : [r]) { rows.push(row); print(row); }
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
      console.log(`${name}: FAILED: ${(e as Error).message}`);
    }
  };
  await attempt('cpu', () => benchCpu(startup));
  await attempt('fp', () => benchFp(startup));
  await attempt('boot', () => benchBoot());
  writeFileSync(join(benchRoot, 'results.json'), JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, qemu: qemuVersion, rows }, null, 2) + '\n');
  return errors.length ? 1 : 0;
}

function print(r: Row): void {
  const d = Object.entries(r.detail).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`${r.name.padEnd(24)} typevisor ${r.typevisorSeconds.toFixed(2).padStart(7)} s   qemu ${r.qemuSeconds.toFixed(3).padStart(7)} s   ratio ${r.ratio.toFixed(1).padStart(6)}x   ${d}`);
}

main().then((c) => { process.exitCode = c; }, (e: unknown) => { console.error(e); process.exitCode = 1; });
