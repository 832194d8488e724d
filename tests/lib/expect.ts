/**
 * Text from a guest's console, and waiting for patterns in it: the part shared by the
 * in-process console (console.ts) and the QEMU reference guest (qemu-guest.ts).
 */
export abstract class ConsoleText {
  /** Everything the guest has printed. */
  output = '';
  /** Offset in `output` up to which expect() has consumed. */
  private mark = 0;
  private waiters: Array<() => void> = [];

  /** Why no more output will come (the guest exited), or null while it runs. */
  protected abstract ended(): string | null;

  protected append(text: string): void {
    this.output += text;
    this.notify();
  }

  protected notify(): void {
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
      const why = this.ended();
      if (why !== null) throw new Error(`${why} before ${String(pattern)} appeared. Last output:\n${this.output.slice(-2000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)}. Last output:\n${this.output.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }
}

/** The output of a shell command: between the echoed command line and the next prompt. */
export function commandOutput(text: string, prompt: string): string {
  const nl = text.indexOf('\n');
  return (nl >= 0 ? text.slice(nl + 1) : text).slice(0, -prompt.length).replace(/\r/g, '');
}
