/**
 * Drives a guest's serial console from a test: wait for text, type commands, collect output.
 */
import { Machine, type MachineConfig, type MachineExit } from '../../src/machine/machine.js';
import { testJitThreshold } from './user.js';

export class GuestConsole {
  readonly machine: Machine;
  /** Everything the guest has printed. */
  output = '';
  /** Offset in `output` up to which expect() has consumed. */
  private mark = 0;
  private waiters: Array<() => void> = [];
  readonly done: Promise<MachineExit>;
  exit: MachineExit | null = null;

  constructor(cfg: Omit<MachineConfig, 'serial'>) {
    const dec = new TextDecoder();
    this.machine = new Machine({
      jitThreshold: testJitThreshold(),
      ...cfg,
      serial: {
        write: (b: Uint8Array) => {
          this.output += dec.decode(b, { stream: true });
          this.notify();
        },
      },
    });
    this.done = this.machine.run().then((e) => { this.exit = e; this.notify(); return e; });
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wait until `pattern` appears after the last match; returns the text up to and including it. */
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
      if (end >= 0) {
        this.mark += end;
        return rest.slice(0, end);
      }
      if (this.exit) throw new Error(`guest exited (${this.exit.reason} ${this.exit.code}${this.exit.message ? ': ' + this.exit.message : ''}) before ${String(pattern)} appeared. Last output:\n${this.output.slice(-2000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)}. Last output:\n${this.output.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  type(text: string): void {
    this.machine.sendInput(new TextEncoder().encode(text));
  }

  /** Type a shell command and return its output (between the echoed command line and the next prompt). */
  async run(cmd: string, prompt = '~ # ', timeoutMs = 60_000): Promise<string> {
    this.type(cmd + '\n');
    const text = await this.expect(prompt, timeoutMs);
    const nl = text.indexOf('\n');
    return (nl >= 0 ? text.slice(nl + 1) : text).slice(0, -prompt.length).replace(/\r/g, '');
  }

  stop(): Promise<MachineExit> {
    this.machine.stop();
    return this.done;
  }
}
