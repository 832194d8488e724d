/**
 * Boots the prebuilt Linux guest in qemu-system-riscv64 (the reference machine) with extra
 * arguments (e.g. a netdev), and drives its serial console on stdio: wait for text, type
 * commands, collect output. Used by the network tests to run a real Linux network stack
 * against ours.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { guestDir } from './toolchain.js';
import { ConsoleText, commandOutput } from './expect.js';

export const OPENSBI_FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
export const PROMPT = '~ # ';

export class QemuGuest extends ConsoleText {
  private readonly proc: ChildProcess;
  exited: number | null = null;

  /** `guest`: another initramfs, or QEMU's own firmware (`bios: null`) instead of Debian's fw_jump. */
  constructor(extraArgs: string[], memory = '256M', guest: { initrd?: string; bios?: string | null } = {}) {
    super();
    const bios = guest.bios === undefined ? OPENSBI_FW_JUMP : guest.bios;
    this.proc = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', memory, '-nographic', ...(bios === null ? [] : ['-bios', bios]),
      '-kernel', join(guestDir, 'Image'), '-initrd', guest.initrd ?? join(guestDir, 'initramfs.cpio.gz'),
      '-append', 'console=ttyS0 quiet', ...extraArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
    const dec = new TextDecoder();
    const on = (b: Buffer): void => this.append(dec.decode(b, { stream: true }));
    this.proc.stdout!.on('data', on);
    this.proc.stderr!.on('data', on);
    this.proc.on('exit', (code) => { this.exited = code ?? -1; this.notify(); });
    this.proc.on('error', (e) => { this.exited = -1; this.append(`\n[spawn qemu-system-riscv64: ${e.message}]`); });
  }

  protected ended(): string | null {
    return this.exited !== null ? `qemu exited (${this.exited})` : null;
  }

  type(text: string): void { this.proc.stdin!.write(text); }

  /** QEMU's process id (its CPU time in /proc). */
  get pid(): number { return this.proc.pid ?? -1; }

  /** Boot to the shell prompt. */
  async boot(timeoutMs = 120_000): Promise<void> {
    await this.expect('Welcome to the riscv64 busybox guest', timeoutMs);
    await this.expect(PROMPT, timeoutMs);
  }

  /** Run a shell command; its output between the echoed line and the next prompt. */
  async run(cmd: string, timeoutMs = 60_000): Promise<string> {
    this.type(cmd + '\n');
    return commandOutput(await this.expect(PROMPT, timeoutMs), PROMPT);
  }

  /** Write a file in the guest through the console (text only). */
  async writeFile(path: string, text: string): Promise<void> {
    await this.run(`cat > ${path} <<'EOF_TV'\n${text}\nEOF_TV`);
  }

  kill(): Promise<void> {
    if (this.exited !== null) return Promise.resolve();
    return new Promise((r) => { this.proc.once('exit', () => r()); this.proc.kill('SIGKILL'); });
  }
}
