/**
 * virtio-input, the power button: a bare-metal driver negotiates, reads the config space
 * (name, EV_KEY bits) and powers off on KEY_POWER; Linux's virtio_input driver (the default
 * guest's kernel) binds the device and lists its keys in /proc/bus/input/devices.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Machine } from '../../src/machine/machine.js';
import { GuestConsole } from '../lib/console.js';
import { requireGuest } from '../lib/guest.js';
import { buildPowerKeyGuest } from '../lib/power-key-guest.js';

test('power button: a guest driver sees KEY_POWER and powers off', { timeout: 30_000 }, async () => {
  const elf = readFileSync(await buildPowerKeyGuest());
  let out = '';
  const m = new Machine({ memoryBytes: 16 << 20, bios: 'none', kernel: elf, initrd: null, append: '', virtio: [{ kind: 'input' }],
    serial: { write(b) { out += String.fromCharCode(...b); if (out.endsWith('ready\n')) setTimeout(() => assert.equal(m.powerButton(), true), 50); } } });
  const stop = setTimeout(() => m.stop(), 20_000);
  const exit = await m.run();
  clearTimeout(stop);
  assert.equal(out, 'name: typevisor power button\nready\npower key\n');
  assert.equal(exit.reason, 'poweroff');
  // No device, no button.
  const bare = new Machine({ memoryBytes: 16 << 20, bios: 'none', kernel: elf, initrd: null, append: '', serial: { write() {} } });
  assert.equal(bare.powerButton(), false);
});

test('Linux binds the virtio-input device: name and KEY_POWER in /proc/bus/input/devices', { timeout: 300_000 }, async () => {
  const g = requireGuest();
  const c = new GuestConsole({ memoryBytes: 256 << 20, bios: null, kernel: readFileSync(g.kernel), initrd: readFileSync(g.initrd),
    append: 'console=ttyS0 quiet', clock: { kind: 'virtual', shift: 3 }, virtio: [{ kind: 'input' }] });
  try {
    await c.expect('~ # ', 240_000);
    const devs = await c.run('cat /proc/bus/input/devices');
    assert.match(devs, /N: Name="typevisor power button"/);
    assert.match(devs, /I: Bus=0006 Vendor=0627 Product=0001 Version=0001/);
    // KEY bitmap, highest word first: bit 116 (KEY_POWER), 111 (Delete), 56 (Alt), 29 (Ctrl).
    assert.match(devs, /B: KEY=10800000000000 100000020000000\s/);
    c.machine.powerButton(); // the defconfig guest has no handler for it: nothing happens, nothing breaks
    assert.match(await c.run('echo still here'), /still here/);
  } finally {
    await c.stop();
  }
});
