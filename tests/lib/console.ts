/**
 * Drives a guest's serial console from a test: wait for text, type commands, collect output.
 */
import { Machine, type MachineConfig, type MachineExit } from '../../src/machine/machine.js';
import { testJitThreshold } from './user.js';
import { ConsoleText, commandOutput } from './expect.js';

export class GuestConsole extends ConsoleText {
  readonly machine: Machine;
  readonly done: Promise<MachineExit>;
  exit: MachineExit | null = null;

  constructor(cfg: Omit<MachineConfig, 'serial'>) {
    super();
    const dec = new TextDecoder();
    this.machine = new Machine({
      jitThreshold: testJitThreshold(),
      ...cfg,
      serial: { write: (b: Uint8Array) => this.append(dec.decode(b, { stream: true })) },
    });
    this.done = this.machine.run().then((e) => { this.exit = e; this.notify(); return e; });
  }

  protected ended(): string | null {
    const e = this.exit;
    return e ? `guest exited (${e.reason} ${e.code}${e.message ? ': ' + e.message : ''})` : null;
  }

  type(text: string): void {
    this.machine.sendInput(new TextEncoder().encode(text));
  }

  /** Type a shell command and return its output (between the echoed command line and the next prompt). */
  async run(cmd: string, prompt = '~ # ', timeoutMs = 60_000): Promise<string> {
    this.type(cmd + '\n');
    return commandOutput(await this.expect(prompt, timeoutMs), prompt);
  }

  stop(): Promise<MachineExit> {
    this.machine.stop();
    return this.done;
  }
}
