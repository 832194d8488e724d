/**
 * `typevisor run` in a child process (the default guest, or any CLI flags), driven through
 * its serial console on stdin/stdout: the VM as a user runs it, in a process of its own.
 * The same interface as the in-process console (console.ts) and QEMU's (qemu-guest.ts).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { ConsoleText, commandOutput } from './expect.js';
import { guestDir, repoRoot } from './toolchain.js';

export const BIN = join(repoRoot, 'bin', 'typevisor.js');
const PROMPT = '~ # ';

export class CliGuest extends ConsoleText {
  readonly child: ChildProcessWithoutNullStreams;
  /** What the process wrote to stderr. */
  err = '';

  /** `args`: flags after `typevisor run -m MEMORY`. */
  constructor(args: string[], memory = '256M') {
    super();
    this.child = spawn(process.execPath, [BIN, 'run', '-m', memory, ...args], {
      env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout.on('data', (d: Buffer) => this.append(d.toString('latin1')));
    this.child.stderr.on('data', (d: Buffer) => { this.err += d.toString(); });
    this.child.on('exit', () => this.notify());
  }

  protected ended(): string | null {
    return this.child.exitCode !== null || this.child.signalCode !== null
      ? `typevisor run exited (${this.child.exitCode ?? this.child.signalCode}; stderr: ${this.err.slice(-500)})` : null;
  }

  type(text: string): void { this.child.stdin.write(text); }

  /** Run a shell command at the prompt; its output. */
  async run(cmd: string, timeoutMs = 60_000): Promise<string> {
    this.type(cmd + '\n');
    return commandOutput(await this.expect(PROMPT, timeoutMs), PROMPT);
  }

  kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((r) => { this.child.once('exit', () => r()); this.child.kill('SIGKILL'); });
  }
}
