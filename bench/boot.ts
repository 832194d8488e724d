/**
 * Linux boot: seconds from start to the busybox shell prompt for the same Image and
 * initramfs. QEMU boots with its bundled OpenSBI (fw_dynamic, its default) and with
 * Debian's OpenSBI fw_jump; typevisor with its built-in SBI and with the same fw_jump.
 * After the prompt each guest gets `poweroff`, and the next boot starts only once it
 * has exited, so boots never overlap.
 */
import { readFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { Machine } from '../src/machine/machine.js';
import { requireGuest } from '../tests/lib/guest.js';
import { bestOf, type Row } from './lib.js';

const PROMPT = '~ # ';
/** The translator's threshold for the jit row (the CLI's --accel jit default). */
const JIT_THRESHOLD = 50;
const FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const APPEND = 'console=ttyS0';
const TIMEOUT_MS = 300_000;
/** After the prompt, how long poweroff may take before the guest is stopped. */
const POWEROFF_MS = 60_000;

/** jitThreshold: Infinity for the interpreter alone, else the translator's threshold. */
export async function bootTypevisor(bios: Uint8Array | null, kernel: Uint8Array, initrd: Uint8Array, jitThreshold = Infinity): Promise<number> {
  let tail = '';
  let seconds = 0;
  const t0 = performance.now();
  const m: Machine = new Machine({
    memoryBytes: 512 << 20, bios, kernel, initrd, append: APPEND, jitThreshold,
    serial: { write(b: Uint8Array) {
      if (seconds > 0) return;
      tail = (tail + Buffer.from(b).toString('latin1')).slice(-64);
      if (tail.includes(PROMPT)) {
        seconds = (performance.now() - t0) / 1000;
        clearTimeout(timer);
        timer = setTimeout(() => m.stop(), POWEROFF_MS);
        m.sendInput(Buffer.from('poweroff\n'));
      }
    } },
  });
  let timer = setTimeout(() => m.stop(), TIMEOUT_MS);
  const exit = await m.run();
  clearTimeout(timer);
  if (seconds === 0) throw new Error(`typevisor: no shell prompt (exit ${JSON.stringify(exit)})`);
  if (exit.reason !== 'poweroff') throw new Error(`typevisor: poweroff failed (exit ${JSON.stringify(exit)})`);
  return seconds;
}

/** firmware: a -bios path, or null for QEMU's bundled default. */
export function bootQemu(firmware: string | null, kernelPath: string, initrdPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const args = ['-M', 'virt', '-m', '512M', '-nographic', ...(firmware ? ['-bios', firmware] : []),
      '-kernel', kernelPath, '-initrd', initrdPath, '-append', APPEND];
    const q = spawn('qemu-system-riscv64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', t = 0;
    let timer = setTimeout(() => q.kill('SIGKILL'), TIMEOUT_MS);
    q.stdout.on('data', (d: Buffer) => {
      if (t > 0) return;
      out = (out + d.toString('latin1')).slice(-4096);
      if (out.includes(PROMPT)) {
        t = (performance.now() - t0) / 1000;
        clearTimeout(timer);
        timer = setTimeout(() => q.kill('SIGKILL'), POWEROFF_MS);
        q.stdin.write('poweroff\n');
      }
    });
    q.on('error', reject);
    q.on('exit', () => {
      clearTimeout(timer);
      if (t > 0) resolve(t); else reject(new Error(`qemu: no shell prompt; last output: ${out.slice(-500)}`));
    });
  });
}

export async function benchBoot(): Promise<Row[]> {
  const { kernel: kernelPath, initrd: initrdPath } = requireGuest();
  const kernel = new Uint8Array(readFileSync(kernelPath)), initrd = new Uint8Array(readFileSync(initrdPath));
  const rows: Row[] = [];
  const best = async (f: () => Promise<number>): Promise<number> => (await bestOf(async () => ({ seconds: await f() }))).seconds;
  const qDefault = await best(() => bootQemu(null, kernelPath, initrdPath));
  const builtin = await best(() => bootTypevisor(null, kernel, initrd));
  rows.push({ name: 'boot (built-in SBI)', unit: 'seconds to the shell prompt', typevisorSeconds: builtin, qemuSeconds: qDefault,
    ratio: builtin / qDefault, detail: { qemuFirmware: 'bundled OpenSBI fw_dynamic' } });
  const jit = await best(() => bootTypevisor(null, kernel, initrd, JIT_THRESHOLD));
  rows.push({ name: 'boot (built-in SBI, jit)', unit: 'seconds to the shell prompt', typevisorSeconds: jit, qemuSeconds: qDefault,
    ratio: jit / qDefault, detail: { qemuFirmware: 'bundled OpenSBI fw_dynamic', accel: `jit,threshold=${JIT_THRESHOLD}` } });
  if (existsSync(FW_JUMP)) {
    const fw = new Uint8Array(readFileSync(FW_JUMP));
    const qJump = await best(() => bootQemu(FW_JUMP, kernelPath, initrdPath));
    const opensbi = await best(() => bootTypevisor(fw, kernel, initrd));
    rows.push({ name: 'boot (OpenSBI fw_jump)', unit: 'seconds to the shell prompt', typevisorSeconds: opensbi, qemuSeconds: qJump,
      ratio: opensbi / qJump, detail: { qemuFirmware: 'OpenSBI fw_jump (same file)' } });
  }
  return rows;
}
