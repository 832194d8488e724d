/**
 * `npm run bench`: typevisor against qemu-system-riscv64 in the same run.
 * `node dist/bench/run.js [--runs N] [cpu] [fp] [unrolled] [boot] [workload] [kernels] [disk] [idle] [vms20] [snapshot] [migrate]` runs a subset, keeping the best of N runs. Results go to bench/results.json;
 * a subset run replaces only its own rows there and keeps the others.
 */
import { writeFileSync, readFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { benchCpu } from './cpu.js';
import { benchFp } from './fp.js';
import { benchUnrolled } from './unrolled.js';
import { benchBoot } from './boot.js';
import { benchDisk } from './disk.js';
import { benchKernels } from './kernels.js';
import { benchIdle } from './idle.js';
import { benchVms20 } from './vms20.js';
import { benchSnapshot } from './snapshot.js';
import { benchMigrate } from './migrate.js';
import { benchWorkload } from './workload.js';
import { qemuStartupSeconds, benchRoot, bench, type Row } from './lib.js';
import { setWasmTier, WASM_TIERS, type WasmTier } from '../src/host/wasm-tier.js';

const BENCHES = ['cpu', 'fp', 'unrolled', 'boot', 'workload', 'kernels', 'disk', 'idle', 'vms20', 'snapshot', 'migrate'] as const;

interface Results { date: string; command: string; runs: number; node: string; cpu: string; cores: number; loadavg: number[]; qemu: string; rows: (Row & { date?: string; loadavg?: number[] })[] }

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const ri = args.indexOf('--runs');
  if (ri >= 0) {
    const n = Number(args[ri + 1]);
    if (!Number.isInteger(n) || n < 1 || n > 100) { console.error(`--runs needs a whole number from 1 to 100, not '${args[ri + 1] ?? ''}'`); return 2; }
    bench.runs = n;
    args.splice(ri, 2);
  }
  const bad = args.filter((a) => !(BENCHES as readonly string[]).includes(a));
  if (bad.length) {
    console.error(`unknown benchmark ${bad.map((b) => `'${b}'`).join(', ')}; choose from: ${BENCHES.join(' ')}`);
    return 2;
  }
  const want = new Set<string>(args.length ? args : BENCHES);
  // The translator's rows run with the CLI's default V8 tiering unless told otherwise.
  const tier = (process.env.TYPEVISOR_WASM_TIER ?? 'late') as WasmTier;
  if (!WASM_TIERS.includes(tier)) { console.error(`TYPEVISOR_WASM_TIER must be one of ${WASM_TIERS.join(', ')}`); return 2; }
  setWasmTier(tier);
  const argv = process.argv.slice(2);
  const command = argv.length ? `node dist/bench/run.js ${argv.join(' ')}` : 'npm run bench';
  let qemuVersion = 'unknown';
  try { qemuVersion = execFileSync('qemu-system-riscv64', ['--version'], { encoding: 'utf8' }).split('\n')[0]; } catch { /* reported by the rows */ }
  const cpu = cpus()[0]?.model ?? 'unknown CPU', cores = cpus().length;
  console.log(`command: ${command}`);
  console.log(`host: node ${process.version}, ${cpu} x${cores}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`yardstick: ${qemuVersion}`);
  console.log(`translator rows: V8 tier ${tier} (TYPEVISOR_WASM_TIER)`);
  if (bench.runs > 1) console.log(`best of ${bench.runs} runs for each time`);
  const load0 = loadavg().map((l) => +l.toFixed(2));
  const rows: Row[] = [];
  const errors: string[] = [];
  let startup = 0;
  if (want.has('cpu') || want.has('fp') || want.has('unrolled')) {
    startup = await qemuStartupSeconds();
    console.log(`qemu start-up + exit: ${startup.toFixed(3)} s (subtracted from qemu's bare-metal times)`);
  }
  const attempt = async (name: string, f: () => Promise<Row | Row[]>): Promise<void> => {
    if (!want.has(name)) return;
    try {
      const r = await f();
      for (const row of Array.isArray(r) ? r : [r]) { rows.push(row); printRow(row); }
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
      console.log(`${name}: FAILED: ${(e as Error).message}`);
    }
  };
  await attempt('cpu', () => benchCpu(startup));
  await attempt('fp', () => benchFp(startup));
  await attempt('unrolled', () => benchUnrolled(startup));
  await attempt('boot', () => benchBoot());
  await attempt('workload', () => benchWorkload());
  await attempt('kernels', () => benchKernels());
  await attempt('disk', () => benchDisk());
  await attempt('idle', () => benchIdle());
  await attempt('vms20', () => benchVms20());
  await attempt('snapshot', () => benchSnapshot());
  await attempt('migrate', () => benchMigrate());

  console.log('\n' + table(rows));
  for (const e of errors) console.log(`FAILED ${e}`);

  const file = join(benchRoot, 'results.json');
  const date = new Date().toISOString();
  let kept: Results['rows'] = [];
  if (want.size < BENCHES.length && existsSync(file)) {
    try {
      const old = JSON.parse(readFileSync(file, 'utf8')) as Partial<Results>;
      const fresh = new Set(rows.map((r) => r.name));
      kept = (old.rows ?? []).filter((r) => !fresh.has(r.name)).map((r) => ({ ...r, date: r.date ?? old.date }));
    } catch { /* unreadable: start afresh */ }
  }
  const out: Results = { date, command, runs: bench.runs, node: process.version, cpu, cores, loadavg: loadavg().map((l) => +l.toFixed(2)), qemu: qemuVersion, rows: [...kept, ...rows.map((r) => ({ ...r, date, loadavg: load0 }))] };
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`results: ${file}`);
  return errors.length ? 1 : 0;
}

function printRow(r: Row): void {
  const d = Object.entries(r.detail).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`${r.name}: typevisor ${r.typevisorSeconds.toFixed(2)} s, qemu ${r.qemuSeconds.toFixed(3)} s, ratio ${r.ratio.toFixed(1)}x  ${d}`);
}

function table(rows: Row[]): string {
  const speed = (r: Row): string => {
    const d = r.detail;
    if (d.typevisorMflops !== undefined) return `${d.typevisorMflops} Mflop/s vs ${d.qemuMflops}`;
    if (d.typevisorMIPS !== undefined) return `${d.typevisorMIPS} MIPS vs ${d.qemuMIPS}`;
    if (d.typevisorMBps !== undefined) return `${d.typevisorMBps} MB/s vs ${d.qemuMBps}`;
    if (d.typevisorCpuPercent !== undefined) return `${d.typevisorCpuPercent} % of a core vs ${d.qemuCpuPercent}`;
    if (d.typevisorOverheadMiB !== undefined) return `${d.typevisorOverheadMiB} MiB/VM over RAM (PSS ${d.typevisorOverheadPssMiB}) vs ${d.qemuOverheadMiB} (PSS ${d.qemuOverheadPssMiB}); idle ${d.typevisorIdleCpuPercent} % vs ${d.qemuIdleCpuPercent}`;
    return '';
  };
  const lines = [['benchmark', 'typevisor s', 'qemu s', 'ratio', 'rate (typevisor vs qemu)'],
    ...rows.map((r) => [r.name, r.typevisorSeconds.toFixed(2), r.qemuSeconds.toFixed(3), `${r.ratio.toFixed(1)}x`, speed(r)])];
  const w = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l) => l.map((c, i) => (i === 0 || i === 4 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd()).join('\n');
}

main().then((c) => { process.exitCode = c; }, (e: unknown) => { console.error(e); process.exitCode = 1; });
