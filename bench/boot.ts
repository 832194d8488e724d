/**
 * Linux boot: seconds from start to the busybox shell prompt for the same Image and
 * initramfs, on typevisor (built-in SBI, and OpenSBI fw_jump) and on qemu-system-riscv64
 * (OpenSBI fw_jump, as Debian ships it).
 */
import { readFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Machine } from '../src/machine/machine.js';
import { guestDir } from '../tests/lib/toolchain.js';
import type { Row } from './lib.js';

const PROMPT = '~ # ';
const FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const APPEND = 'console=ttyS0';

async function bootTypevisor(bios: Uint8Array | null, kernel: Uint8Array, initrd: Uint8Array): Promise<number> {
  let out = '';
  let m: Machine | null = null;
  const seconds = await new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    m = new Machine({
      memoryBytes: 512 << 20, bios, kernel, initrd, append: APPEND,
      serial: { write(b: Uint8Array) {
        out += Buffer.from(b).toString('latin1');
        if (out.includes(PROMPT)) { out = ''; resolve((performance.now() - t0) / 1000); m?.sendInput(Buffer.from('poweroff\n')); }
      } },
    });
    const timer = setTimeout(() => { m?.stop(); reject(new Error('typevisor boot timed out')); }, 300_000);
    m.run().then((e) => { clearTimeout(timer); if (e.reason !== 'poweroff') reject(new Error(`typevisor exit ${JSON.stringify(e)}`)); }, reject);
  });
  return seconds;
}

function bootQemu(kernelPath: string, initrdPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const q = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', '512M', '-nographic', '-bios', FW_JUMP,
      '-kernel', kernelPath, '-initrd', initrdPath, '-append', APPEND], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', t = 0;
    const timer = setTimeout(() => { q.kill('SIGKILL'); reject(new Error('qemu boot timed out')); }, 300_000);
    q.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (t === 0 && out.includes(PROMPT)) { t = (performance.now() - t0) / 1000; q.stdin.write('poweroff\n'); }
    });
    q.on('exit', () => { clearTimeout(timer); if (t > 0) resolve(t); else reject(new Error(`qemu exited before the prompt: ${out.slice(-500)}`)); });
  });
}

export async function benchBoot(): Promise<Row[]> {
  const kernelPath = join(guestDir, 'Image'), initrdPath = join(guestDir, 'initramfs.cpio.gz');
  if (!existsSync(kernelPath) || !existsSync(initrdPath)) throw new Error(`no guest in ${guestDir} (set TYPEVISOR_GUEST_DIR or run typevisor image build)`);
  const kernel = new Uint8Array(readFileSync(kernelPath)), initrd = new Uint8Array(readFileSync(initrdPath));
  const q = await bootQemu(kernelPath, initrdPath);
  const builtin = await bootTypevisor(null, kernel, initrd);
  const opensbi = await bootTypevisor(new Uint8Array(readFileSync(FW_JUMP)), kernel, initrd);
  return [
    { name: 'boot (built-in SBI)', unit: 'seconds to the shell prompt', typevisorSeconds: builtin, qemuSeconds: q, ratio: builtin / q, detail: { qemuFirmware: 'OpenSBI fw_jump' } },
    { name: 'boot (OpenSBI fw_jump)', unit: 'seconds to the shell prompt', typevisorSeconds: opensbi, qemuSeconds: q, ratio: opensbi / q, detail: { qemuFirmware: 'OpenSBI fw_jump' } },
  ];
}
