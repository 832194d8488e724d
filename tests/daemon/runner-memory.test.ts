/**
 * What a runner keeps in memory (docs/PERFORMANCE.md, "Where a runner's memory goes"):
 * - the boot images are not kept once copied into guest RAM: a reboot reads them again
 *   (the file changed between boots: the new one runs), a missing file ends the reboot
 *   clearly, and the first images are garbage once the machine runs;
 * - an idle guest's decode cache is dropped (and the heap collected), a busy one's is not.
 * Tiny M-mode programs (bios none) on a MessageChannel, as in runner.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { VmRunner, type IdleTrim, type RunnerHost } from '../../src/vmm/runner.js';
import { WorkerPort, type MessageEndpoint } from '../../src/vmm/worker-port.js';
import { loadBase } from '../../src/vmm/config.js';
import { PROTOCOL_VERSION, type FromRunner, type RunnerConfig, type ToRunner } from '../../src/vmm/protocol.js';

const words = (...w: number[]): Uint8Array => new Uint8Array(new Uint32Array(w).buffer);
// lui t2,0x10000; li t3,CH; sb t3,0(t2); lui t0,0x100 (the SiFive test device); lui t1,V>>12; addi t1,t1,V&0xfff; sw t1,0(t0); j .
const printThen = (ch: number, finisher: 0x5555 | 0x7777): Uint8Array => words(0x100003b7, 0x00000e13 | (ch << 20), 0x01c38023, 0x001002b7,
  0x00000337 | (finisher & 0xf000), 0x00030313 | ((finisher & 0xfff) << 20), 0x0062a023, 0x0000006f);
const PRINT_A_RESET = printThen(0x41, 0x7777);
const PRINT_B_POWEROFF = printThen(0x42, 0x5555);
const IDLE = words(0x10500073, 0xffdff06f); // wfi; j .-4 (nothing enabled: it sleeps for good)
const BUSY = words(0x0000006f); // j .

function session(host: Partial<RunnerHost>, trim?: IdleTrim): { manager: WorkerPort<FromRunner, ToRunner>; got: FromRunner[]; ended: Promise<void>; close(): void } {
  const ch = new MessageChannel();
  const ep = (p: MessagePort): MessageEndpoint => p as unknown as MessageEndpoint;
  new VmRunner(new WorkerPort<ToRunner, FromRunner>(ep(ch.port2)), {
    load: async (cfg) => ({ base: loadBase(cfg, process.env), disks: [] }),
    cpuSeconds: () => 0, rssBytes: () => 0, now: () => performance.now(),
    ...host,
  }, trim);
  const manager = new WorkerPort<FromRunner, ToRunner>(ep(ch.port1));
  const got: FromRunner[] = [];
  const ended = new Promise<void>((resolve) => {
    manager.onMessage((m) => { got.push(m); if (m.type === 'exit') resolve(); });
  });
  return { manager, got, ended, close: () => { ch.port1.close(); ch.port2.close(); } };
}

const consoleText = (got: FromRunner[]): string => got.filter((m) => m.type === 'console').map((m) => new TextDecoder().decode(m.data)).join('');
const until = async (cond: () => boolean, ms: number): Promise<boolean> => {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
};

test('runner memory: a reboot reads the boot images again; a missing one ends the reboot with reason config', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-runmem-'));
  try {
    const kernel = join(dir, 'prog.bin');
    const config: RunnerConfig = { name: 't', memoryBytes: 16 << 20, bios: 'none', kernel };
    writeFileSync(kernel, PRINT_A_RESET);
    let reloads = 0;
    const a = session({ reloadBase: (cfg) => { reloads++; writeFileSync(kernel, PRINT_B_POWEROFF); return loadBase(cfg, process.env); } });
    // A runner that kept the first image would print A and reset forever: stop it after a few.
    let reboots = 0;
    a.manager.onMessage((m) => { if (m.type === 'rebooted' && ++reboots >= 3) a.manager.post({ type: 'stop' }); });
    a.manager.post({ type: 'start', version: PROTOCOL_VERSION, config });
    await a.ended;
    a.close();
    assert.equal(consoleText(a.got), 'AB');
    assert.equal(reloads, 1);
    assert.deepEqual(a.got.map((m) => m.type).filter((t) => t !== 'console'), ['hello', 'started', 'rebooted', 'exit']);
    assert.deepEqual(a.got.at(-1), { type: 'exit', reason: 'poweroff', code: 0 });

    writeFileSync(kernel, PRINT_A_RESET);
    const b = session({ reloadBase: (cfg) => { rmSync(kernel); return loadBase(cfg, process.env); } });
    b.manager.post({ type: 'start', version: PROTOCOL_VERSION, config });
    await b.ended;
    b.close();
    const exit = b.got.at(-1);
    assert.ok(exit?.type === 'exit' && exit.reason === 'config' && /^reboot: .*prog\.bin/.test(exit.message ?? ''), JSON.stringify(exit));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runner memory: the first boot images are garbage once the machine runs', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-runmem-'));
  try {
    const kernel = join(dir, 'prog.bin');
    writeFileSync(kernel, BUSY);
    let image: WeakRef<Uint8Array> | null = null;
    const s = session({
      load: async (cfg) => { const base = loadBase(cfg, process.env); image = new WeakRef(base.kernel!); return { base, disks: [] }; },
      reloadBase: (cfg) => loadBase(cfg, process.env),
    });
    s.manager.post({ type: 'start', version: PROTOCOL_VERSION, config: { name: 't', memoryBytes: 16 << 20, bios: 'none', kernel } });
    assert.ok(await until(() => s.got.some((m) => m.type === 'started'), 10_000), 'started');
    assert.ok(image !== null);
    const ref: WeakRef<Uint8Array> = image;
    // A WeakRef holds its target until the current job ends: collect from a later one.
    const gone = await until(() => { gc(); return ref.deref() === undefined; }, 5000);
    s.manager.post({ type: 'stop' });
    await s.ended;
    s.close();
    assert.ok(gone, 'the kernel image is still reachable while the machine runs');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runner memory: an idle guest\'s caches are dropped, a busy guest\'s are not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-runmem-'));
  const trim: IdleTrim = { checkMs: 40, insns: 1000, checks: 2 };
  try {
    const run = async (program: Uint8Array, ms: number): Promise<number> => {
      const kernel = join(dir, 'prog.bin');
      writeFileSync(kernel, program);
      let collections = 0;
      const s = session({ collectGarbage: () => { collections++; } }, trim);
      s.manager.post({ type: 'start', version: PROTOCOL_VERSION, config: { name: 't', memoryBytes: 16 << 20, bios: 'none', kernel } });
      await until(() => collections > 0, ms);
      await new Promise((r) => setTimeout(r, 8 * trim.checkMs)); // more idle checks
      s.manager.post({ type: 'stop' });
      await s.ended;
      s.close();
      return collections;
    };
    // Idle: dropped once after two idle checks, and not again while it stays idle.
    const idle = await run(IDLE, 1500);
    assert.equal(idle, 1);
    // Busy (millions of instructions a check): never.
    assert.equal(await run(BUSY, 1000), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
