/**
 * The board's device tree: Debian's dtc decompiles it without warnings, and the nodes it
 * shares with QEMU's virt machine (dumped by qemu-system-riscv64 in the same run) carry
 * the same properties, so DTB consumers see the same board.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Machine, rngSeedFrom, RNG_SEED_BYTES } from '../../src/machine/machine.js';
import { FdtBuilder } from '../../src/machine/fdt.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'typevisor-dtb-'));

async function decompile(dtb: Uint8Array, name: string): Promise<{ dts: string; warnings: string }> {
  const f = join(dir, name);
  writeFileSync(f, dtb);
  const { stdout, stderr } = await run('dtc', ['-I', 'dtb', '-O', 'dts', f]);
  return { dts: stdout, warnings: stderr };
}

/** node path -> "prop = value" lines (phandle numbers blanked: they are allocation order). */
function nodes(dts: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const stack: string[] = [];
  for (const raw of dts.split('\n')) {
    const line = raw.trim();
    let m;
    if ((m = /^([^\s]+) \{$/.exec(line))) { stack.push(m[1] === '/' ? '' : m[1]); out.set(stack.join('/') || '/', []); continue; }
    if (line === '};') { stack.pop(); continue; }
    if (stack.length && line.endsWith(';')) {
      const key = stack.join('/') || '/';
      out.get(key)?.push(line.replace(/<0x[0-9a-f]+>/g, (s) => (/phandle|interrupt-parent|regmap|cpu = /.test(line) ? '<ph>' : s)));
    }
  }
  return out;
}

function machineDtb(mem: number, append: string, initrd: Uint8Array | null): Machine {
  const kernel = new Uint8Array(4096);
  return new Machine({ memoryBytes: mem, bios: null, kernel, initrd, append, serial: { write() {} } });
}

test('the DTB decompiles cleanly and describes memory, chosen, and every device', async () => {
  const m = machineDtb(256 << 20, 'console=ttyS0 quiet', new Uint8Array(1000));
  const { dts, warnings } = await decompile(m.dtb, 'tv.dtb');
  assert.equal(warnings.trim(), '', 'dtc reports no warnings');
  const n = nodes(dts);
  assert.ok(n.get('/memory@80000000')?.includes('reg = <0x00 0x80000000 0x00 0x10000000>;'));
  const chosen = n.get('/chosen') ?? [];
  assert.ok(chosen.includes('bootargs = "console=ttyS0 quiet";'));
  assert.ok(chosen.includes('stdout-path = "/soc/serial@10000000";'));
  const start = m.layout.initrdStart ?? 0;
  const hex = (v: number): string => `<0x00 0x${v.toString(16)}>`;
  assert.ok(chosen.includes(`linux,initrd-start = ${hex(start)};`), chosen.join('\n'));
  assert.ok(chosen.includes(`linux,initrd-end = ${hex(start + 1000)};`));
  const cpu = n.get('/cpus/cpu@0') ?? [];
  assert.ok(cpu.some((l) => l.startsWith('riscv,isa = "rv64imafdc')));
  assert.ok(cpu.includes('mmu-type = "riscv,sv57";'));
  for (const dev of ['soc/clint@2000000', 'soc/plic@c000000', 'soc/serial@10000000', 'soc/rtc@101000', 'soc/test@100000',
    ...Array.from({ length: 8 }, (_, i) => `soc/virtio_mmio@1000${i + 1}000`), 'poweroff', 'reboot']) {
    assert.ok(n.has('/' + dev), `node /${dev}`);
  }
  // The DTB in RAM is the one reported.
  const inRam = m.board.bus.readBytes(m.layout.dtbAddr, m.dtb.length);
  assert.deepEqual(inRam, m.dtb);
});

test('the nodes shared with QEMU virt carry the same properties', async () => {
  const qf = join(dir, 'qemu.dtb');
  await run('qemu-system-riscv64', ['-M', `virt,dumpdtb=${qf}`, '-m', '512M', '-nographic']);
  const q = nodes((await decompile(readFileSync(qf), 'q2.dtb')).dts);
  const t = nodes((await decompile(machineDtb(512 << 20, 'console=ttyS0', null).dtb, 'tv2.dtb')).dts);
  const shared = ['/', '/memory@80000000', '/cpus', '/cpus/cpu@0/interrupt-controller', '/poweroff', '/reboot', '/soc',
    '/soc/rtc@101000', '/soc/serial@10000000', '/soc/test@100000', '/soc/plic@c000000', '/soc/clint@2000000',
    '/soc/virtio_mmio@10001000', '/soc/virtio_mmio@10008000'];
  for (const path of shared) {
    const qp = (q.get(path) ?? []).filter((l) => !l.startsWith('#address-cells = <0x00>')).sort();
    const tp = (t.get(path) ?? []).filter((l) => !l.startsWith('#address-cells = <0x00>')).sort();
    assert.ok(qp.length > 0, `QEMU has ${path}`);
    assert.deepEqual(tp, qp, `properties of ${path}`);
  }
  // /chosen: both give a 32-byte rng-seed (random bytes, so compared by shape).
  const shape = (lines: string[] | undefined): string | undefined => lines?.find((l) => l.startsWith('rng-seed'))?.replace(/0x[0-9a-f]+/g, 'N');
  assert.equal(shape(t.get('/chosen')), shape(q.get('/chosen')));
  assert.ok(shape(q.get('/chosen')), 'QEMU gives an rng-seed');
});

test('/chosen/rng-seed: 32 fresh random bytes per machine as QEMU gives, given bytes verbatim, none on request, wrong sizes refused', async () => {
  const seedOf = async (m: Machine, name: string): Promise<string | undefined> =>
    (nodes((await decompile(m.dtb, name)).dts).get('/chosen') ?? []).find((l) => l.startsWith('rng-seed = '));
  const kernel = new Uint8Array(4096);
  const make = (rngSeed?: Uint8Array | null): Machine => new Machine({ memoryBytes: 64 << 20, bios: null, kernel, initrd: null, append: '', serial: { write() {} }, rngSeed });
  const a = await seedOf(make(), 'seed-a.dtb'), b = await seedOf(make(), 'seed-b.dtb');
  assert.match(a ?? '', /^rng-seed = <(0x[0-9a-f]+ ){7}0x[0-9a-f]+>;$/);
  assert.notEqual(a, b, 'each machine draws its own seed');
  const fixed = Uint8Array.from({ length: RNG_SEED_BYTES }, (_, i) => i + 1);
  assert.equal(await seedOf(make(fixed), 'seed-c.dtb'), 'rng-seed = <0x1020304 0x5060708 0x90a0b0c 0xd0e0f10 0x11121314 0x15161718 0x191a1b1c 0x1d1e1f20>;');
  assert.equal(await seedOf(make(null), 'seed-d.dtb'), undefined);
  assert.throws(() => make(new Uint8Array(16)), /rngSeed: expected 32 bytes, got 16/);
  assert.deepEqual(rngSeedFrom(7), rngSeedFrom(7));
  assert.notDeepEqual(rngSeedFrom(7), rngSeedFrom(8));
  assert.throws(() => rngSeedFrom(2 ** 32), /expected a whole number/);
});

test('FDT writer: structure errors are caught', () => {
  const f = new FdtBuilder();
  f.beginNode('');
  assert.throws(() => f.finish(), /left open/);
  const g = new FdtBuilder();
  assert.throws(() => g.endNode(), /without beginNode/);
});
