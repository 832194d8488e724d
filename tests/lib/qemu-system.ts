/** Runs a bare-metal ELF under qemu-system-riscv64 -M virt (the reference machine) and collects its console. */
import { spawn } from 'node:child_process';

export function runQemuSystem(elfPath: string, opts: { memory?: string; timeoutMs?: number } = {}): Promise<{ output: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const q = spawn('qemu-system-riscv64', ['-M', 'virt', '-m', opts.memory ?? '128M', '-nographic', '-bios', elfPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '', err = '';
    const timer = setTimeout(() => { q.kill('SIGKILL'); reject(new Error(`qemu-system-riscv64 timed out; output: ${output.slice(-1000)}`)); }, opts.timeoutMs ?? 30_000);
    q.stdout.on('data', (d: Buffer) => { output += d.toString('latin1'); });
    q.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    q.on('error', (e) => { clearTimeout(timer); reject(e); });
    q.on('exit', (code) => { clearTimeout(timer); if (err.trim()) output += `\n[stderr] ${err}`; resolve({ output, code }); });
  });
}
