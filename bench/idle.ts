/**
 * An idle VM's cost: boot the same kernel and initramfs in `typevisor run` (the CLI, as a
 * user runs it; interpreter and --accel jit) and in qemu-system-riscv64, wait for the shell
 * prompt, let each settle, then read each process's CPU time (/proc/PID/stat utime+stime)
 * over the same window. The figure is the share of one host core.
 */
import { readFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { requireGuest } from '../tests/lib/guest.js';
import { CLI, cliNodeFlags, type Row } from './lib.js';

const PROMPT = '~ # ';
const BOOT_TIMEOUT_MS = 300_000;
const SETTLE_MS = 5_000;
export const IDLE_WINDOW_MS = 30_000;
const FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';

/** utime + stime of a process, in seconds (Linux /proc). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
}

interface Booted { name: string; child: ChildProcess; prompt: Promise<void> }

function boot(name: string, cmd: string, args: string[]): Booted {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let tail = '';
  const prompt = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name}: no prompt within ${BOOT_TIMEOUT_MS / 1000} s; last output: ${tail}`)), BOOT_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      tail = (tail + d.toString('latin1')).slice(-2000);
      if (tail.includes(PROMPT)) { clearTimeout(t); resolve(); }
    });
    child.stderr!.on('data', (d: Buffer) => { tail = (tail + d.toString('latin1')).slice(-2000); });
    child.on('error', (e) => { clearTimeout(t); reject(e); });
    child.on('exit', (c) => { clearTimeout(t); reject(new Error(`${name} exited (${c}) before its prompt: ${tail}`)); });
  });
  return { name, child, prompt };
}

export async function benchIdle(): Promise<Row> {
  const g = requireGuest();
  const tvArgs = [...cliNodeFlags(), CLI, 'run', '--kernel', g.kernel, '--initrd', g.initrd, '--append', 'console=ttyS0'];
  const vms = [
    boot('qemu', 'qemu-system-riscv64', ['-M', 'virt', '-m', '512M', '-nographic', '-bios', FW_JUMP, '-kernel', g.kernel, '-initrd', g.initrd, '-append', 'console=ttyS0']),
    boot('typevisor', process.execPath, [...tvArgs, '--accel', 'interp']),
    boot('typevisor --accel jit', process.execPath, [...tvArgs, '--accel', 'jit']),
  ];
  try {
    await Promise.all(vms.map((v) => v.prompt));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const c0 = vms.map((v) => cpuSecondsOf(v.child.pid!));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, IDLE_WINDOW_MS));
    const wall = (performance.now() - t0) / 1000;
    const cpu = vms.map((v, i) => cpuSecondsOf(v.child.pid!) - c0[i]);
    const pct = (s: number): number => +(100 * s / wall).toFixed(2);
    return {
      name: 'idle', unit: `CPU seconds used in ${Math.round(wall)} s idle at the shell prompt`,
      typevisorSeconds: cpu[1], qemuSeconds: cpu[0], ratio: cpu[1] / cpu[0],
      detail: { typevisorCpuPercent: pct(cpu[1]), typevisorJitCpuPercent: pct(cpu[2]), qemuCpuPercent: pct(cpu[0]), qemuFirmware: 'OpenSBI fw_jump' },
    };
  } finally {
    for (const v of vms) v.child.kill('SIGKILL');
  }
}
