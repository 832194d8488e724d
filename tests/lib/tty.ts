/** `typevisor run` on a pty (script(1) gives it a terminal, so the Ctrl-A escapes work), for tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './toolchain.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');

export class Tty {
  out = '';
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** `track`: the test's list of processes to kill at the end. */
  constructor(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; track?: ChildProcess[] }) {
    const cmd = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    this.child = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
    opts.track?.push(this.child);
    this.child.stdout!.on('data', (d: Buffer) => { this.out += d.toString('latin1'); });
    this.child.stderr!.on('data', (d: Buffer) => { this.out += d.toString('latin1'); });
    this.exited = new Promise((res) => this.child.once('exit', res));
  }
  write(s: string | Uint8Array): void { this.child.stdin!.write(s); }
  /** The first match of `re` in the output from `from` on. */
  async wait(re: RegExp, ms = 120_000, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.out.slice(from));
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no ${String(re)} in: ${JSON.stringify(this.out.slice(-1500))}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  /** Type a command line (or raw bytes) and wait for `until`. */
  sh(cmd: string | Uint8Array, until: RegExp, ms = 60_000): Promise<RegExpExecArray> {
    this.write(typeof cmd === 'string' ? cmd + '\r' : cmd);
    return this.wait(until, ms);
  }
  kill(): void { this.child.kill('SIGKILL'); }
}
