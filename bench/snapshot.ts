/**
 * Snapshot figures: file size, save time (pause, drain, copy, encode) and restore time
 * (decode into a fresh machine's RAM and load: everything after the file is in memory; the
 * saving guest is paused meanwhile, so nothing else runs in the process, as in a real restore) for
 * an idle guest at its shell prompt and a busy one (32 MiB of random bytes on a tmpfs), at
 * 128 and 512 MiB of RAM, deflated and stored. The yardstick is QEMU's save and restore of
 * the same guest in the same state through a file (QMP `stop` + `migrate exec:cat > FILE`;
 * `-incoming defer` + `migrate-incoming exec:cat FILE` until the guest state is no longer
 * `inmigrate`): qemuSeconds is its restore time, which includes reading the (cached) file
 * and excludes the process start, as typevisor's excludes reading the file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { poll, qmp } from './migrate.js';
import { Machine, type MachineConfig } from '../src/machine/machine.js';
import { encodeSnapshot, decodeSnapshot, useDeflateCodec } from '../src/snapshot/format.js';
import { zlibCodec } from '../src/host/snapshot-zlib.js';
import { guestDir } from '../tests/lib/toolchain.js';
import { bench, type Row } from './lib.js';

const PROMPT = '~ # ';

async function until(get: () => string, text: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!get().endsWith(text)) {
    if (Date.now() > deadline) throw new Error(`no '${text}' after ${ms} ms: ${get().slice(-300)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Qmp = ReturnType<typeof qmp>;

/** Connect to QEMU's QMP socket once it listens (the file appears before listen()). */
async function qmpReady(path: string): Promise<Qmp> {
  let sock: Socket | null = null;
  await poll(async () => {
    if (!existsSync(path)) return false;
    sock = await new Promise<Socket | null>((res) => {
      const s = connect(path);
      s.once('connect', () => { s.removeAllListeners('error'); res(s); });
      s.once('error', () => res(null));
    });
    return sock !== null;
  }, 30_000, `QMP socket ${path}`);
  const q = qmp(sock!);
  await q.cmd('qmp_capabilities');
  return q;
}

/** QEMU with the same guest, a QMP socket and a console on stdio. */
function qemuProc(mib: number, sock: string, extra: string[] = []): ChildProcess {
  return spawn('qemu-system-riscv64', ['-M', 'virt', '-m', `${mib}M`, '-nographic', '-kernel', join(guestDir, 'Image'),
    '-initrd', join(guestDir, 'initramfs.cpio.gz'), '-append', 'console=ttyS0', '-qmp', `unix:${sock},server=on,wait=off`, ...extra],
  { stdio: ['pipe', 'pipe', 'ignore'] });
}

/** QEMU's save (stop + migrate to a file) and restore (migrate-incoming from it) of the guest in `load`'s state. */
async function qemuSaveRestore(mib: number, tmp: string): Promise<Map<string, { saveMs: number; restoreMs: number; sizeMiB: number }>> {
  const out = new Map<string, { saveMs: number; restoreMs: number; sizeMiB: number }>();
  const src = qemuProc(mib, join(tmp, 'src.qmp'));
  let text = '';
  src.stdout!.on('data', (d: Buffer) => { text += d.toString(); });
  try {
    await poll(async () => text.endsWith(PROMPT), 300_000, 'qemu guest prompt');
    const q = await qmpReady(join(tmp, 'src.qmp'));
    for (const load of ['idle', 'busy']) {
      if (load === 'busy') {
        text = '';
        src.stdin!.write('mount -t tmpfs none /mnt; dd if=/dev/urandom of=/mnt/r bs=1M count=32 2>/dev/null; echo FILL-$((1+1))\n');
        await poll(async () => text.includes('FILL-2\r\n'), 600_000, 'qemu busy fill');
        await new Promise((r) => setTimeout(r, 500));
      }
      const file = join(tmp, `qemu-${load}.state`);
      await q.cmd('stop');
      const t0 = performance.now();
      await q.cmd('migrate', { uri: `exec:cat > ${file}` });
      await poll(async () => {
        const st = ((await q.cmd('query-migrate')).return as { status?: string }).status;
        if (st === 'failed') throw new Error('qemu save failed');
        return st === 'completed';
      }, 120_000, 'qemu save');
      const saveMs = performance.now() - t0;
      await q.cmd('cont');
      let best = Infinity;
      for (let run = 0; run < bench.runs; run++) {
        const sock = join(tmp, `dst-${load}-${run}.qmp`);
        const dst = qemuProc(mib, sock, ['-incoming', 'defer']);
        try {
          const d = await qmpReady(sock);
          const t1 = performance.now();
          await d.cmd('migrate-incoming', { uri: `exec:cat ${file}` });
          for (;;) {
            const st = ((await d.cmd('query-status')).return as { status?: string }).status;
            if (st !== 'inmigrate') { if (st !== 'running' && st !== 'paused' && st !== 'postmigrate') throw new Error(`qemu restore: ${String(st)}`); break; }
            if (performance.now() - t1 > 120_000) throw new Error('qemu restore timed out');
            await new Promise((r) => setTimeout(r, 1));
          }
          best = Math.min(best, performance.now() - t1);
          d.close();
        } finally {
          dst.kill('SIGKILL');
        }
      }
      out.set(load, { saveMs, restoreMs: best, sizeMiB: statSync(file).size / 1048576 });
    }
    q.close();
  } finally {
    src.kill('SIGKILL');
  }
  return out;
}

export async function benchSnapshot(): Promise<Row[]> {
  useDeflateCodec(zlibCodec); // as the CLI and the daemon's runners
  const kernel = readFileSync(`${guestDir}/Image`), initrd = readFileSync(`${guestDir}/initramfs.cpio.gz`);
  const rows: Row[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'typevisor-bench-snapshot-'));
  try {
    for (const mib of [128, 512]) {
      const yard = await qemuSaveRestore(mib, tmp);
      let out = '';
      const cfg = (): MachineConfig => ({ memoryBytes: mib << 20, bios: null, append: 'console=ttyS0', kernel, initrd, serial: { write: (b) => { out += new TextDecoder().decode(b); } } });
      const m = new Machine(cfg());
      const done = m.run();
      await until(() => out, PROMPT, 300_000);
      for (const load of ['idle', 'busy']) {
        if (load === 'busy') {
          m.sendInput(new TextEncoder().encode('mount -t tmpfs none /mnt; dd if=/dev/urandom of=/mnt/r bs=1M count=32 2>/dev/null; echo FILL-$((1+1))\n'));
          await until(() => out, `FILL-2\r\n${PROMPT}`, 600_000);
          await new Promise((r) => setTimeout(r, 500));
        }
        for (const compression of ['deflate', 'none'] as const) {
          let best = { save: Infinity, restore: Infinity, size: 0, decode: 0 };
          const restores: number[] = [];
          for (let run = 0; run < bench.runs; run++) {
            const t0 = performance.now();
            const state = await m.snapshot();
            const bytes = await encodeSnapshot({ typevisor: 'bench', created: new Date().toISOString(), machine: null, memoryBytes: mib << 20, disks: [] }, state, { compression });
            const save = (performance.now() - t0) / 1000;
            const fresh = new Machine({ ...cfg(), initrd: null });
            // The source guest pauses meanwhile: its slices would otherwise run in this event loop while the restore awaits its inflating sections.
            m.pause();
            const t1 = performance.now();
            const snap = await decodeSnapshot(bytes, { into: fresh.board.bus.ram, intoWritten: fresh.ramWritten() });
            const t2 = performance.now();
            fresh.load(snap.state);
            const restore = (performance.now() - t1) / 1000;
            m.resume();
            restores.push(restore);
            if (restore < best.restore) best = { save: Math.min(best.save, save), restore, size: bytes.length, decode: (t2 - t1) / 1000 };
          }
          const y = yard.get(load)!;
          rows.push({
            name: `snapshot-${mib}M-${load}-${compression}`, unit: 'restore s (typevisor: file in memory; QEMU: migrate-incoming from a cached file)',
            typevisorSeconds: best.restore, qemuSeconds: y.restoreMs / 1000, ratio: best.restore / (y.restoreMs / 1000),
            detail: {
              sizeMiB: +(best.size / 1048576).toFixed(2), saveMs: Math.round(best.save * 1000), restoreMs: Math.round(best.restore * 1000), decodeMs: Math.round(best.decode * 1000),
              restoreMedianMs: Math.round(restores.sort((x, y) => x - y)[restores.length >> 1] * 1000),
              qemuSizeMiB: +y.sizeMiB.toFixed(2), qemuSaveMs: Math.round(y.saveMs), qemuRestoreMs: Math.round(y.restoreMs),
            },
          });
        }
      }
      m.stop();
      await done;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return rows;
}
