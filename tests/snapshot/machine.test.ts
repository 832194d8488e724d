/**
 * The whole machine as data, virtio included: a Linux guest reading its virtio-blk disk
 * (requests in flight at the save) and running a shell on hvc0 is saved, loaded into a fresh
 * Machine, and keeps working: the interrupted read finishes with the host's digest, hvc0
 * still answers, the serial console too, and guest time continues from the saved tick.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, type MachineConfig, type MachineState } from '../../src/machine/machine.js';
import type { BlockBackend } from '../../src/devices/device.js';
import type { VirtioConsole } from '../../src/devices/virtio/console.js';
import type { VirtioBlk } from '../../src/devices/virtio/blk.js';
import { ConsoleText, commandOutput } from '../lib/expect.js';
import { MemDisk } from '../lib/memdisk.js';
import { guestDir } from '../lib/toolchain.js';
import { prng } from '../lib/prng.js';

const PROMPT = '~ # ';

/** A disk whose reads take a few ms of host time, so requests are in flight when the save comes. */
class SlowDisk implements BlockBackend {
  inflight = 0;
  constructor(readonly mem: MemDisk, private readonly delayMs: number) {}
  get sizeBytes(): number { return this.mem.sizeBytes; }
  get readOnly(): boolean { return this.mem.readOnly; }
  get serial(): string { return this.mem.serial; }
  async read(offset: number, dst: Uint8Array): Promise<void> {
    this.inflight++;
    await new Promise((r) => setTimeout(r, this.delayMs));
    this.inflight--;
    return this.mem.read(offset, dst);
  }
  write(offset: number, src: Uint8Array): Promise<void> { return this.mem.write(offset, src); }
  flush(): Promise<void> { return this.mem.flush(); }
  discard(o: number, l: number): Promise<void> { return this.mem.discard(o, l); }
  writeZeroes(o: number, l: number, u: boolean): Promise<void> { return this.mem.writeZeroes(o, l, u); }
  close(): Promise<void> { return this.mem.close(); }
}

class Guest extends ConsoleText {
  readonly machine: Machine;
  hvc = '';
  done: Promise<unknown> | null = null;
  private exitText: string | null = null;
  constructor(cfg: Omit<MachineConfig, 'serial'>, disk: BlockBackend) {
    super();
    const dec = new TextDecoder(), hdec = new TextDecoder();
    this.machine = new Machine({
      ...cfg, serial: { write: (b) => this.append(dec.decode(b, { stream: true })) },
      virtio: [{ kind: 'blk', disk }, { kind: 'console', serial: { write: (b) => { this.hvc += hdec.decode(b, { stream: true }); } } }],
    });
  }
  protected ended(): string | null { return this.exitText; }
  start(): void { this.done = this.machine.run().then((e) => { this.exitText = `guest exited (${e.reason}: ${e.message ?? ''})`; this.notify(); }); }
  type(t: string): void { this.machine.sendInput(new TextEncoder().encode(t)); }
  async sh(cmd: string, timeoutMs = 60_000): Promise<string> { this.type(cmd + '\n'); return commandOutput(await this.expect(PROMPT, timeoutMs), PROMPT); }
  get hvcDevice(): VirtioConsole { return this.machine.virtioDevices[1] as VirtioConsole; }
  get blk(): VirtioBlk { return this.machine.virtioDevices[0] as VirtioBlk; }
  async waitHvc(re: RegExp, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.hvc)) {
      if (Date.now() > deadline) throw new Error(`hvc0: no ${String(re)} in ${JSON.stringify(this.hvc.slice(-500))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

test('Linux with virtio-blk (requests in flight) and hvc0 saved and loaded into a fresh Machine keeps working', { timeout: 240_000 }, async () => {
  const rand = prng(0x5a4e);
  const data = new Uint8Array(8 << 20).map(() => rand() & 0xff);
  const digest = createHash('md5').update(data).digest('hex');
  const cfg: Omit<MachineConfig, 'serial'> = {
    memoryBytes: 128 << 20, bios: null, append: 'console=ttyS0',
    kernel: readFileSync(join(guestDir, 'Image')), initrd: readFileSync(join(guestDir, 'initramfs.cpio.gz')),
  };
  const a = new Guest(cfg, new SlowDisk(new MemDisk(data.length, { data: data.slice() }), 4));
  const b = new Guest(cfg, new SlowDisk(new MemDisk(data.length, { data: data.slice() }), 4));
  try {
  a.start();
  await a.expect(PROMPT, 120_000);
  await a.sh("(setsid sh -c 'exec sh </dev/hvc0 >/dev/hvc0 2>&1' &)");
  a.hvcDevice.receive(new TextEncoder().encode('echo before-$((6 * 7))\n'));
  await a.waitHvc(/before-42/);

  // A read of the whole disk, interrupted by the save while requests are in flight.
  a.type('md5sum /dev/vda; echo read-$((40 + 2))\n');
  const t0 = Date.now();
  while (!a.blk.busy) {
    assert.ok(Date.now() - t0 < 60_000, 'the guest started reading the disk');
    await new Promise((r) => setImmediate(r));
  }
  a.machine.pause(); // snapshot() leaves a paused machine paused, so the drain can be checked
  const state: MachineState = structuredClone(await a.machine.snapshot());
  assert.equal(a.blk.busy, false, 'in-flight requests were completed before the save');
  assert.ok(a.machine.paused);
  assert.ok(!a.output.includes('read-42'), 'saved before the read finished');
  assert.equal(state.v, 2);
  assert.ok(state.virtio.some((s) => s.deviceId === 2 && s.queues[0].ready), 'the disk queue is in the state');
  a.machine.stop();
  await a.done;
  b.machine.load(state);
  const ticks = b.machine.board.clock.now();
  assert.ok(ticks >= state.clock.ticks && ticks < state.clock.ticks + 10_000_000, `guest time continues from the saved tick (${state.clock.ticks} -> ${ticks})`);
  b.start();
  const out = await b.expect('read-42', 120_000);
  assert.ok(out.includes(`${digest}  /dev/vda`), `the interrupted read completed with the host's digest: ${out.slice(-300)}`);
  await b.expect(PROMPT);
  assert.equal((await b.sh('echo after-$((6 * 7))')).trim(), 'after-42');
  b.hvcDevice.receive(new TextEncoder().encode('echo hvc-after-$((6 * 7))\n'));
  await b.waitHvc(/hvc-after-42/);
  // And the disk keeps working for new requests.
  await b.sh('echo 3 > /proc/sys/vm/drop_caches');
  assert.equal((await b.sh('dd if=/dev/vda bs=4k skip=100 count=1 2>/dev/null|md5sum')).trim().split(' ')[0],
    createHash('md5').update(data.subarray(100 * 4096, 101 * 4096)).digest('hex'));
  } finally {
    a.machine.stop(); b.machine.stop();
    await a.done; await b.done;
  }
});

test('load refuses a state whose virtio devices differ, and leaves the machine as it was', async () => {
  const base = { memoryBytes: 16 << 20, bios: null, append: '', kernel: new Uint8Array(64), initrd: null, serial: { write() {} } };
  const withDisk = new Machine({ ...base, virtio: [{ kind: 'blk', disk: new MemDisk(1 << 20) }] });
  const withRng = new Machine({ ...base, virtio: [{ kind: 'rng' }] });
  const plain = new Machine(base);
  const s = withDisk.save();
  assert.throws(() => withRng.load(structuredClone(s)), /virtio_mmio7: saved state is for a different device \(saved 2, here 4\)/);
  assert.throws(() => plain.load(structuredClone(s)), /virtio_mmio7: saved state is for a different device/);
  const v1 = { ...plain.save(), v: 1 } as unknown as MachineState;
  delete (v1 as Partial<MachineState>).virtio;
  delete (v1 as Partial<MachineState>).timers;
  plain.load(structuredClone(v1)); // version 1 (no virtio) migrates into a machine without virtio
  assert.throws(() => withDisk.load(structuredClone({ ...v1, memoryBytes: 16 << 20 })), /version 1 has no virtio devices, this machine has virtio-blk/);
  const bad = structuredClone(s);
  bad.virtio[7].queues[0].desc = -5;
  assert.throws(() => withDisk.load(bad), /malformed state/);
  const t = structuredClone(s);
  t.timers = [{ owner: 'nobody', kind: 'x', at: 5 }];
  assert.throws(() => withDisk.load(t), /no device 'nobody'/);
});

test('device timers are saved as data and re-armed in the loaded machine', async () => {
  const base = { memoryBytes: 16 << 20, bios: null, append: '', kernel: new Uint8Array(64), initrd: null, serial: { write() {} }, clock: { kind: 'virtual' as const, shift: 4 } };
  const fired: string[] = [];
  const mk = (): Machine => {
    const m = new Machine(base);
    m.board.addTimerOwner({ timerId: 'dev0', onTimer: (k) => { fired.push(`${k}@${m.board.clock.now()}`); } });
    return m;
  };
  const a = mk();
  const owner = { timerId: 'dev0', onTimer() {} };
  assert.throws(() => a.board.schedule(10, owner, 'k'), /not registered/, 'only the registered owner object schedules');
  const b = mk();
  const s = a.save();
  s.timers = [{ owner: 'dev0', kind: 'tick', at: 1234 }];
  b.load(s);
  assert.deepEqual(b.save().timers, [{ owner: 'dev0', kind: 'tick', at: 1234 }]);
  b.board.clock.advanceTo(2000);
  b.board.service();
  assert.deepEqual(fired, ['tick@2000']);
  assert.deepEqual(b.save().timers, []);
});
