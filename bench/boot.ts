/**
 * Linux boot: seconds from start to the busybox shell prompt for the same Image and
 * initramfs. QEMU boots with its bundled OpenSBI (fw_dynamic, its default) and with
 * Debian's OpenSBI fw_jump; typevisor with its built-in SBI and with the same fw_jump.
 * Both are timed the same way: from starting the program (`qemu-system-riscv64`, or
 * `typevisor run` in a new Node process) to the prompt on its standard output, process
 * start-up included. After the prompt each guest gets `poweroff`, and the next boot starts
 * only once it has exited, so boots never overlap.
 */
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { requireGuest } from '../tests/lib/guest.js';
import { CLI, cliNodeFlags, bench, type Row } from './lib.js';

const PROMPT = '~ # ';
/** The translator's threshold for the jit row (the CLI's --accel jit default). */
const JIT_THRESHOLD = 50;
const FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const APPEND = 'console=ttyS0';
const TIMEOUT_MS = 300_000;
/** After the prompt, how long poweroff may take before the guest is stopped. */
const POWEROFF_MS = 60_000;

/** Start `cmd args`, time it to the shell prompt on its stdout, type poweroff, wait for its exit. */
function bootToPrompt(who: string, cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '', t = 0;
    let timer = setTimeout(() => p.kill('SIGKILL'), TIMEOUT_MS);
    p.stdout.on('data', (d: Buffer) => {
      if (t > 0) return;
      out = (out + d.toString('latin1')).slice(-4096);
      if (out.includes(PROMPT)) {
        t = (performance.now() - t0) / 1000;
        clearTimeout(timer);
        timer = setTimeout(() => p.kill('SIGKILL'), POWEROFF_MS);
        p.stdin.write('poweroff\n');
      }
    });
    p.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000); });
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (t === 0) reject(new Error(`${who}: no shell prompt; last output: ${out.slice(-500)} ${err}`));
      else if (code !== 0) reject(new Error(`${who}: poweroff failed (exit ${signal ?? code}): ${err}`));
      else resolve(t);
    });
  });
}

/**
 * `typevisor run` to the prompt. bios: a firmware path or null for the built-in SBI;
 * jitThreshold: Infinity for the interpreter alone, else the translator's threshold (with
 * the bench's V8 tier, TYPEVISOR_WASM_TIER).
 */
export function bootTypevisor(bios: string | null, kernelPath: string, initrdPath: string, jitThreshold = Infinity): Promise<number> {
  const tier = process.env.TYPEVISOR_WASM_TIER ?? 'late';
  const accel = jitThreshold === Infinity ? 'interp' : `jit,threshold=${jitThreshold},tier=${tier}`;
  return bootToPrompt('typevisor', process.execPath, [...cliNodeFlags(), CLI, 'run', '-m', '512M', ...(bios ? ['-bios', bios] : []),
    '-kernel', kernelPath, '-initrd', initrdPath, '-append', APPEND, '--accel', accel]);
}

/** firmware: a -bios path, or null for QEMU's bundled default. */
export function bootQemu(firmware: string | null, kernelPath: string, initrdPath: string): Promise<number> {
  return bootToPrompt('qemu', 'qemu-system-riscv64', ['-M', 'virt', '-m', '512M', '-nographic', ...(firmware ? ['-bios', firmware] : []),
    '-kernel', kernelPath, '-initrd', initrdPath, '-append', APPEND]);
}

/**
 * The fastest of bench.runs rounds for each of `fs`, run in turn within each round (QEMU,
 * then typevisor, then QEMU again...), so a host that speeds up or slows down during the
 * row affects both engines alike.
 */
export async function bestInTurn(fs: (() => Promise<number>)[]): Promise<number[]> {
  const best = fs.map(() => Infinity);
  for (let r = 0; r < bench.runs; r++) {
    for (let i = 0; i < fs.length; i++) best[i] = Math.min(best[i], await fs[i]());
  }
  return best;
}

export async function benchBoot(): Promise<Row[]> {
  const { kernel: kernelPath, initrd: initrdPath } = requireGuest();
  const rows: Row[] = [];
  const [qDefault, builtin, jit] = await bestInTurn([
    () => bootQemu(null, kernelPath, initrdPath),
    () => bootTypevisor(null, kernelPath, initrdPath),
    () => bootTypevisor(null, kernelPath, initrdPath, JIT_THRESHOLD),
  ]);
  rows.push({ name: 'boot (built-in SBI)', unit: 'seconds to the shell prompt', typevisorSeconds: builtin, qemuSeconds: qDefault,
    ratio: builtin / qDefault, detail: { qemuFirmware: 'bundled OpenSBI fw_dynamic' } });
  rows.push({ name: 'boot (built-in SBI, jit)', unit: 'seconds to the shell prompt', typevisorSeconds: jit, qemuSeconds: qDefault,
    ratio: jit / qDefault, detail: { qemuFirmware: 'bundled OpenSBI fw_dynamic', accel: `jit,threshold=${JIT_THRESHOLD}` } });
  if (existsSync(FW_JUMP)) {
    const [qJump, opensbi] = await bestInTurn([() => bootQemu(FW_JUMP, kernelPath, initrdPath), () => bootTypevisor(FW_JUMP, kernelPath, initrdPath)]);
    rows.push({ name: 'boot (OpenSBI fw_jump)', unit: 'seconds to the shell prompt', typevisorSeconds: opensbi, qemuSeconds: qJump,
      ratio: opensbi / qJump, detail: { qemuFirmware: 'OpenSBI fw_jump (same file)' } });
  }
  return rows;
}
