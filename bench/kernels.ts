/**
 * Kernel configs: seconds to the shell prompt for the kernel built for the typevisor board
 * (scripts/guest/typevisor-virt.config, the cached default guest) against Debian's riscv
 * `defconfig` kernel, with the same initramfs, under typevisor (built-in SBI) and under
 * qemu-system-riscv64 (its bundled OpenSBI) in the same run.
 *
 * The tailored kernel comes from the cache (`typevisor image path`, or $TYPEVISOR_VIRT_GUEST_DIR);
 * the defconfig kernel from $TYPEVISOR_DEFCONFIG_KERNEL, else the prebuilt ../shared/guest/Image,
 * else the cache's guest-defconfig/Image (`scripts/build-guest.sh --defconfig --out ...`).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from '../src/host/guest-cache.js';
import { bestInTurn, bootQemu, bootTypevisor } from './boot.js';
import type { Row } from './lib.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function tailoredDir(): string {
  return process.env.TYPEVISOR_VIRT_GUEST_DIR || join(cacheDir(), 'guest');
}

function defconfigKernel(): string | null {
  const candidates = [process.env.TYPEVISOR_DEFCONFIG_KERNEL, resolve(repoRoot, '..', 'shared', 'guest', 'Image'),
    join(cacheDir(), 'guest-defconfig', 'Image')];
  return candidates.find((p): p is string => !!p && existsSync(p)) ?? null;
}

export async function benchKernels(): Promise<Row[]> {
  const dir = tailoredDir();
  const tailored = join(dir, 'Image'), initrdPath = join(dir, 'initramfs.cpio.gz');
  if (!existsSync(tailored) || !existsSync(initrdPath)) throw new Error(`no tailored guest in ${dir}; build it with: npm run guest`);
  const defconfig = defconfigKernel();
  if (!defconfig) throw new Error('no defconfig kernel: set TYPEVISOR_DEFCONFIG_KERNEL or run scripts/build-guest.sh --defconfig');
  const rows: Row[] = [];
  for (const [label, path] of [['typevisor-virt config', tailored], ['Debian defconfig', defconfig]] as const) {
    const [q, t] = await bestInTurn([() => bootQemu(null, path, initrdPath), () => bootTypevisor(null, path, initrdPath)]);
    rows.push({ name: `boot kernel (${label})`, unit: 'seconds to the shell prompt', typevisorSeconds: t, qemuSeconds: q,
      ratio: t / q, detail: { kernel: path, kernelMiB: +(statSync(path).size / 2 ** 20).toFixed(1), initrd: initrdPath } });
  }
  return rows;
}
