/**
 * The snapshot protocol over a MessageChannel (the Worker transport, no process): a runner
 * running an M-mode program that prints 'a'..'z' slowly (by mtime, so as slowly with the
 * translator as with the interpreter) answers `snapshot` with the file's
 * bytes while it keeps running; a second runner started with those bytes as `restore`
 * resumes at the letter after the save point and powers off normally. A corrupt file ends
 * the second runner with reason 'config' before anything runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { VmRunner } from '../../src/vmm/runner.js';
import { WorkerPort, type MessageEndpoint } from '../../src/vmm/worker-port.js';
import { loadBase, openDrives } from '../../src/vmm/config.js';
import { PROTOCOL_VERSION, type FromRunner, type RunnerConfig, type ToRunner } from '../../src/vmm/protocol.js';
import { readSnapshotHeader } from '../../src/snapshot/format.js';
import { buildElf } from '../lib/toolchain.js';

/** 'a'..'z' on the UART, one letter per 100 ms of mtime (the virt board's 10 MHz timebase), then poweroff. */
const TIMED_COUNTER_SRC = String.raw`
  .section .text.init
  .globl _start
_start:
  li t0, 0x10000000
  li t1, 'a'
  li t2, 'z' + 1
  li t4, 0x200bff8
1: sb t1, 0(t0)
  ld t5, 0(t4)
  li t6, 1000000
  add t5, t5, t6
2: ld t3, 0(t4)
  blt t3, t5, 2b
  addi t1, t1, 1
  blt t1, t2, 1b
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
3: j 3b
`;

function session(): { manager: WorkerPort<FromRunner, ToRunner>; got: FromRunner[]; out: () => string; ended: Promise<void> } {
  const ch = new MessageChannel();
  const ep = (p: MessagePort): MessageEndpoint => p as unknown as MessageEndpoint;
  new VmRunner(new WorkerPort<ToRunner, FromRunner>(ep(ch.port2)), {
    load: async (cfg) => ({ base: loadBase(cfg, process.env), disks: await openDrives(cfg) }),
    cpuSeconds: () => 0, rssBytes: () => 0, now: () => performance.now(), version: 'test',
  });
  const manager = new WorkerPort<FromRunner, ToRunner>(ep(ch.port1));
  const got: FromRunner[] = [];
  let text = '';
  const ended = new Promise<void>((resolve) => {
    manager.onMessage((m) => {
      got.push(m);
      if (m.type === 'console') text += new TextDecoder().decode(m.data);
      if (m.type === 'exit') { resolve(); ch.port1.close(); }
    });
  });
  return { manager, got, out: () => text, ended };
}

async function until(f: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('runner protocol: snapshot of a running machine, then start with restore in a new runner', { timeout: 60_000 }, async () => {
  // The counter program, a letter per 100 ms of guest time (whatever the engine's speed):
  // a save lands mid-alphabet.
  const bios = await buildElf({ name: 'snapshot-timed-counter', sources: { 'c.S': TIMED_COUNTER_SRC } });
  const config: RunnerConfig = { name: 'slow', memoryBytes: 4 << 20, bios };
  const a = session();
  a.manager.post({ type: 'start', version: PROTOCOL_VERSION, config });
  await until(() => a.out().includes('c'), 30_000, "'c' on the console");
  a.manager.post({ type: 'snapshot', id: 7 });
  await until(() => a.got.some((m) => m.type === 'snapshot'), 30_000, 'the snapshot reply');
  const reply = a.got.find((m) => m.type === 'snapshot') as Extract<FromRunner, { type: 'snapshot' }>;
  assert.equal(reply.id, 7);
  assert.ok(reply.data instanceof Uint8Array, reply.error);
  const printedBySave = a.out();
  const header = readSnapshotHeader(reply.data);
  assert.deepEqual(header.machine, { kind: 'runner', config });
  assert.equal(header.typevisor, 'test');
  await until(() => a.out().length > printedBySave.length, 30_000, 'the first runner to go on after the save');
  a.manager.post({ type: 'stop' });
  await a.ended;

  const b = session();
  b.manager.post({ type: 'start', version: PROTOCOL_VERSION, config, restore: reply.data });
  await b.ended;
  const exit = b.got.find((m) => m.type === 'exit') as Extract<FromRunner, { type: 'exit' }>;
  assert.equal(exit.reason, 'poweroff', exit.message);
  const rest = b.out();
  const first = rest.charCodeAt(0);
  assert.equal(rest, 'abcdefghijklmnopqrstuvwxyz'.slice(first - 97), `a contiguous run to 'z': ${rest}`);
  assert.ok(first > 'c'.charCodeAt(0) && printedBySave.includes(String.fromCharCode(first - 1)),
    `resumed after the save point: '${rest[0]}' first, '${printedBySave}' printed by the save`);

  const bad = reply.data.slice(); bad[bad.length - 20] ^= 1;
  const c = session();
  c.manager.post({ type: 'start', version: PROTOCOL_VERSION, config, restore: bad });
  await c.ended;
  const e = c.got.find((m) => m.type === 'exit') as Extract<FromRunner, { type: 'exit' }>;
  assert.equal(e.reason, 'config');
  assert.match(e.message ?? '', /checksum mismatch/);
  assert.ok(!c.got.some((m) => m.type === 'console' || m.type === 'started'), 'nothing ran');
});
