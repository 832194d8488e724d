/**
 * Snapshot figures: file size, save time (pause, drain, copy, encode) and restore time
 * (decode into a fresh machine's RAM and load: everything after the file is in memory) for
 * an idle guest at its shell prompt and a busy one (32 MiB of random bytes on a tmpfs), at
 * 128 and 512 MiB of RAM, deflated and stored. No QEMU yardstick yet (its savevm/migrate to
 * a file is the comparison still to add): qemuSeconds is 0 in these rows.
 */
import { readFileSync } from 'node:fs';
import { Machine, type MachineConfig } from '../src/machine/machine.js';
import { encodeSnapshot, decodeSnapshot } from '../src/snapshot/format.js';
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

export async function benchSnapshot(): Promise<Row[]> {
  const kernel = readFileSync(`${guestDir}/Image`), initrd = readFileSync(`${guestDir}/initramfs.cpio.gz`);
  const rows: Row[] = [];
  for (const mib of [128, 512]) {
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
        for (let run = 0; run < bench.runs; run++) {
          const t0 = performance.now();
          const state = await m.snapshot();
          const bytes = await encodeSnapshot({ typevisor: 'bench', created: new Date().toISOString(), machine: null, memoryBytes: mib << 20, disks: [] }, state, { compression });
          const save = (performance.now() - t0) / 1000;
          const fresh = new Machine({ ...cfg(), initrd: null });
          const t1 = performance.now();
          const snap = await decodeSnapshot(bytes, { into: fresh.board.bus.ram });
          const t2 = performance.now();
          fresh.load(snap.state);
          const restore = (performance.now() - t1) / 1000;
          if (restore < best.restore) best = { save: Math.min(best.save, save), restore, size: bytes.length, decode: (t2 - t1) / 1000 };
        }
        rows.push({
          name: `snapshot-${mib}M-${load}-${compression}`, unit: 'restore s (file in memory)',
          typevisorSeconds: best.restore, qemuSeconds: 0, ratio: 0,
          detail: { sizeMiB: +(best.size / 1048576).toFixed(2), saveMs: Math.round(best.save * 1000), restoreMs: Math.round(best.restore * 1000), decodeMs: Math.round(best.decode * 1000) },
        });
      }
    }
    m.stop();
    await done;
  }
  return rows;
}
