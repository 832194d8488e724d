/**
 * The serial console on the host terminal, in QEMU's habits: raw mode on a TTY (every key,
 * Ctrl-C included, goes to the guest), with Ctrl-A as the escape key:
 * Ctrl-A X quits, Ctrl-A P presses the power button, Ctrl-A S saves a snapshot, Ctrl-A H
 * prints help, Ctrl-A Ctrl-A sends a literal Ctrl-A.
 * On a pipe or file, input bytes are forwarded as they come, with no escapes.
 */
export interface ConsoleInput {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  on(event: 'data', cb: (chunk: Buffer | string) => void): unknown;
  on(event: 'end', cb: () => void): unknown;
  removeAllListeners(event?: string): unknown;
  resume(): unknown;
  pause(): unknown;
}

export interface ConsoleOutput {
  write(chunk: Uint8Array | string): unknown;
}

const CTRL_A = 0x01;

export const ESCAPE_HELP =
  'C-a h    print this help\r\n' +
  'C-a x    exit typevisor\r\n' +
  'C-a p    press the power button (the guest decides: the default guest powers off)\r\n' +
  'C-a s    save a snapshot of the VM (--snapshot-file; the VM keeps running)\r\n' +
  'C-a C-a  send C-a to the guest\r\n';

export class TerminalConsole {
  private escape = false;
  private raw = false;

  constructor(
    private readonly input: ConsoleInput,
    private readonly messages: ConsoleOutput,
    private readonly send: (bytes: Uint8Array) => void,
    private readonly quit: () => void,
    private readonly power: () => void = () => {},
    /** Ctrl-A S: save a snapshot (absent: the escape is ignored). */
    private readonly save?: () => void,
  ) {}

  get interactive(): boolean { return this.input.isTTY === true && typeof this.input.setRawMode === 'function'; }

  attach(): void {
    if (this.interactive) {
      this.input.setRawMode?.(true);
      this.raw = true;
    }
    this.input.on('data', (chunk) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    this.input.resume();
  }

  detach(): void {
    this.input.removeAllListeners('data');
    this.input.removeAllListeners('end');
    if (this.raw) { this.input.setRawMode?.(false); this.raw = false; }
    this.input.pause();
  }

  /** Exposed for tests: feed bytes as if typed. */
  onData(chunk: Uint8Array): void {
    if (!this.interactive) { this.send(chunk); return; }
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (this.escape) {
        this.escape = false;
        const c = String.fromCharCode(b).toLowerCase();
        if (b === CTRL_A) this.send(Uint8Array.of(CTRL_A));
        else if (c === 'x') { this.messages.write('\r\ntypevisor: terminated\r\n'); this.quit(); return; }
        else if (c === 'p') { this.messages.write('\r\ntypevisor: power button pressed\r\n'); this.power(); }
        else if (c === 'h' || c === '?') this.messages.write('\r\n' + ESCAPE_HELP);
        else if (c === 's' && this.save) this.save();
        start = i + 1;
      } else if (b === CTRL_A) {
        if (i > start) this.send(chunk.subarray(start, i));
        this.escape = true;
        start = i + 1;
      }
    }
    if (start < chunk.length && !this.escape) this.send(chunk.subarray(start));
  }
}
