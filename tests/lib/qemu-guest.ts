/**
 * Boots the prebuilt Linux guest in qemu-system-riscv64 (the reference machine) with extra
 * arguments (e.g. a netdev), and drives its serial console on stdio: wait for text, type
 * commands, collect output. Used by the network tests to run a real Linux network stack
 * against ours.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { guestDir } from './toolchain.js';

export const OPENSBI_FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
export const PROMPT = '~ # ';

export class QemuGuest {
  private readonly proc: ChildProcess;
  output = '';
  private mark = 0;
  private waiters: Array<() => void> = [];
  exited: number | null = null;

  constructor(extraArgs: string[], memory = '256M') {
    this.proc = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', memory, '-nographic', '-bios', OPENSBI_FW_JUMP,
      '-kernel', join(guestDir, 'Image'), '-initrd', join(guestDir, 'initramfs.cpio.gz'),
      '-append', 'console=ttyS0 quiet', ...extraArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
    const dec = new TextDecoder();
    const on = (b: Buffer): void => { this.output += dec.decode(b, { stream: true }); this.notify(); };
    this.proc.stdout!.on('data', on);
    this.proc.stderr!.on('data', on);
    this.proc.on('exit', (code) => { this.exited = code ?? -1; this.notify(); });
    this.proc.on('error', (e) => { this.output += `\n[spawn qemu-system-riscv64: ${e.message}]`; this.exited = -1; this.notify(); });
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async expect(pattern: string | RegExp, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rest = this.output.slice(this.mark);
      let end = -1;
      if (typeof pattern === 'string') {
        const i = rest.indexOf(pattern);
        if (i >= 0) end = i + pattern.length;
      } else {
        const m = pattern.exec(rest);
        if (m) end = m.index + m[0].length;
      }
      if (end >= 0) { this.mark += end; return rest.slice(0, end); }
      if (this.exited !== null) throw new Error(`qemu exited (${this.exited}) before ${String(pattern)}. Last output:\n${this.output.slice(-2000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)}. Last output:\n${this.output.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  type(text: string): void { this.proc.stdin!.write(text); }

  /** Boot to the shell prompt. */
  async boot(timeoutMs = 120_000): Promise<void> {
    await this.expect('Welcome to the riscv64 busybox guest', timeoutMs);
    await this.expect(PROMPT, timeoutMs);
  }

  /** Run a shell command; its output between the echoed line and the next prompt. */
  async run(cmd: string, timeoutMs = 60_000): Promise<string> {
    this.type(cmd + '\n');
    const text = await this.expect(PROMPT, timeoutMs);
    const nl = text.indexOf('\n');
    return (nl >= 0 ? text.slice(nl + 1) : text).slice(0, -PROMPT.length).replace(/\r/g, '');
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
