/**
 * The runner protocol without a daemon: a VmRunner on one end of a MessageChannel through
 * WorkerPort (the browser transport), the test on the other. A tiny M-mode program prints
 * 'A' on the UART and powers off through the SiFive test device: hello → started → console
 * → exit(poweroff). A wrong protocol version and a missing kernel end with reason 'config'.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmRunner } from '../../src/vmm/runner.js';
import { WorkerPort, type MessageEndpoint } from '../../src/vmm/worker-port.js';
import { loadBase, openDrives } from '../../src/vmm/config.js';
import { PROTOCOL_VERSION, type FromRunner, type RunnerConfig, type ToRunner } from '../../src/vmm/protocol.js';

// lui t2,0x10000; li t3,'A'; sb t3,0(t2); lui t0,0x100; lui t1,5; addi t1,t1,0x555; sw t1,0(t0); j .
const PROGRAM = new Uint32Array([0x100003b7, 0x04100e13, 0x01c38023, 0x001002b7, 0x00005337, 0x55530313, 0x0062a023, 0x0000006f]);

function session(): { manager: WorkerPort<FromRunner, ToRunner>; got: FromRunner[]; ended: Promise<void>; close(): void } {
  const ch = new MessageChannel();
  const ep = (p: MessagePort): MessageEndpoint => p as unknown as MessageEndpoint;
  new VmRunner(new WorkerPort<ToRunner, FromRunner>(ep(ch.port2)), {
    load: async (cfg) => ({ base: loadBase(cfg, process.env), disks: await openDrives(cfg) }),
    cpuSeconds: () => 0, rssBytes: () => 0, now: () => performance.now(),
  });
  const manager = new WorkerPort<FromRunner, ToRunner>(ep(ch.port1));
  const got: FromRunner[] = [];
  const ended = new Promise<void>((resolve) => {
    manager.onMessage((m) => { got.push(m); if (m.type === 'exit') resolve(); });
  });
  return { manager, got, ended, close: () => { ch.port1.close(); ch.port2.close(); } };
}

test('runner over a MessageChannel: boot, console bytes, poweroff', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-runner-'));
  try {
    const kernel = join(dir, 'prog.bin');
    writeFileSync(kernel, new Uint8Array(PROGRAM.buffer));
    const s = session();
    const config: RunnerConfig = { name: 't', memoryBytes: 16 << 20, bios: 'none', kernel };
    s.manager.post({ type: 'start', version: PROTOCOL_VERSION, config });
    await s.ended;
    s.close();
    assert.deepEqual(s.got[0], { type: 'hello', version: PROTOCOL_VERSION });
    assert.equal(s.got[1].type, 'started');
    const text = s.got.filter((m) => m.type === 'console').map((m) => new TextDecoder().decode(m.data)).join('');
    assert.equal(text, 'A');
    const exit = s.got.at(-1);
    assert.deepEqual(exit, { type: 'exit', reason: 'poweroff', code: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runner: a wrong protocol version or a missing kernel ends with reason config', async () => {
  const a = session();
  a.manager.post({ type: 'start', version: PROTOCOL_VERSION + 1, config: { name: 'x', memoryBytes: 16 << 20 } });
  await a.ended;
  a.close();
  const ea = a.got.at(-1);
  assert.ok(ea?.type === 'exit' && ea.reason === 'config' && /protocol version/.test(ea.message ?? ''), JSON.stringify(ea));

  const b = session();
  b.manager.post({ type: 'start', version: PROTOCOL_VERSION, config: { name: 'x', memoryBytes: 16 << 20, kernel: '/nonexistent/Image' } });
  await b.ended;
  b.close();
  const eb = b.got.at(-1);
  assert.ok(eb?.type === 'exit' && eb.reason === 'config' && /\/nonexistent\/Image/.test(eb.message ?? ''), JSON.stringify(eb));
  assert.ok(!b.got.some((m) => m.type === 'started'));
});
