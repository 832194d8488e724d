/**
 * Restoring a snapshot on another kind of host (Node ↔ browser). The header's machine
 * definition is opaque to the format: `{kind: 'cli', argv}` from `typevisor run`,
 * `{kind: 'runner', config}` from a runner (the daemon's, or the browser's Web Worker). Here
 * it is read for what a restore needs: the RAM size, the boot path and the devices. Disks
 * are host files (referenced by path and identity, not carried), so a host that cannot open
 * them refuses the snapshot. No Node APIs.
 */
import type { SnapshotHeader } from './format.js';

/**
 * The kernel a machine is built with to restore into: restore overwrites RAM, the hart and
 * every device, so only the boot path (built-in SBI) matters, not the kernel. Raw `j .`; a
 * restored machine that resets boots this, so hosts stop it instead of rebooting.
 */
export const RESTORE_KERNEL: Uint8Array = Uint8Array.of(0x6f, 0x00, 0x00, 0x00);

export interface PortableMachine {
  memoryBytes: number;
  /** The boot path: 'builtin' (built-in SBI), 'none' (kernel in M-mode), 'firmware'. */
  boot: 'builtin' | 'none' | 'firmware';
  /** Disks by path (host files the snapshot refers to). */
  disks: string[];
  /** Other virtio devices (network, console, rng), as the flags that made them. */
  devices: string[];
  /** How the snapshot was made: 'typevisor run', 'a runner', or 'unknown'. */
  savedBy: string;
}

/** Read a snapshot header's machine definition. Throws a clear Error when it has none. */
export function portableMachine(h: SnapshotHeader): PortableMachine {
  const m = h.machine as { kind?: unknown; argv?: unknown; config?: unknown } | null;
  const disks = h.disks.map((d) => d.path);
  if (m?.kind === 'cli' && Array.isArray(m.argv) && m.argv.every((a) => typeof a === 'string')) {
    const argv = m.argv as string[];
    const flags: Array<[string, string]> = [];
    for (let i = 0; i < argv.length; i++) {
      const f = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/.exec(argv[i]);
      if (!f) continue;
      flags.push([f[1], f[2] ?? argv[i + 1] ?? '']);
    }
    const bios = flags.filter(([n]) => n === 'bios').pop()?.[1];
    const devices = flags.filter(([n, v]) => n === 'netdev' || n === 'nic' || n === 'chardev' || (n === 'device' && !v.startsWith('loader')))
      .map(([n, v]) => `-${n} ${v}`);
    return { memoryBytes: h.memoryBytes, boot: bootOf(bios), disks, devices, savedBy: 'typevisor run' };
  }
  if (m?.kind === 'runner' && typeof m.config === 'object' && m.config !== null) {
    const c = m.config as { bios?: unknown; drives?: unknown };
    const drives = Array.isArray(c.drives) ? c.drives.map((d) => String((d as { file?: unknown } | null)?.file)) : [];
    // A browser's drives live in its memory: not recorded as disks, and not in the snapshot either.
    return { memoryBytes: h.memoryBytes, boot: bootOf(typeof c.bios === 'string' ? c.bios : undefined), disks: disks.length ? disks : drives, devices: [], savedBy: 'a runner' };
  }
  return { memoryBytes: h.memoryBytes, boot: 'builtin', disks, devices: [], savedBy: 'unknown' };
}

function bootOf(bios: string | undefined): PortableMachine['boot'] {
  return bios === undefined || bios === 'default' ? 'builtin' : bios === 'none' ? 'none' : 'firmware';
}

/**
 * Why a host without disks or other devices (the browser) cannot restore this machine, or
 * null if it can.
 */
export function browserRefusal(p: PortableMachine): string | null {
  if (p.savedBy === 'unknown') return 'the snapshot does not say how its machine was built (no typevisor run flags or runner config in its header)';
  if (p.disks.length) {
    return `the snapshot's machine has ${p.disks.length === 1 ? 'a disk' : `${p.disks.length} disks`} (${p.disks.join(', ')}): ` +
      'a snapshot refers to its disks by path and does not carry them, and this page cannot open host files; restore it with typevisor run --restore';
  }
  if (p.devices.length) {
    return `the snapshot's machine has devices this page does not have (${p.devices.join(', ')}); restore it with typevisor run --restore`;
  }
  return null;
}
