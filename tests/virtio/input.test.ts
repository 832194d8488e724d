/**
 * virtio-input, the power button: a bare-metal driver negotiates, reads the config space
 * (name, EV_KEY bits) and powers off on KEY_POWER; Linux's virtio_input driver (the default
 * guest's kernel) binds the device and lists its keys in /proc/bus/input/devices; the
 * recipe's rcS runs acpid, which powers off on the key (with a kernel that has evdev).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, mkdirSync, copyFileSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Machine } from '../../src/machine/machine.js';
import { GuestConsole } from '../lib/console.js';
import { requireGuest } from '../lib/guest.js';
import { buildPowerKeyGuest } from '../lib/power-key-guest.js';
import { repoRoot } from '../lib/toolchain.js';

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

/** The recipe's rcS and acpi action laid over the found guest's initramfs (a second cpio archive). */
function recipeOverlay(): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-power-overlay-'));
  const put = (src: string, dst: string): void => {
    mkdirSync(join(dir, dst, '..'), { recursive: true });
    copyFileSync(join(repoRoot, 'scripts', 'guest', src), join(dir, dst));
    chmodSync(join(dir, dst), 0o755);
  };
  put('rcS', 'etc/init.d/rcS');
  put('acpi-power', 'etc/acpi/PWRF/00000080');
  const list = 'etc\netc/init.d\netc/init.d/rcS\netc/acpi\netc/acpi/PWRF\netc/acpi/PWRF/00000080\n';
  return gzipSync(execFileSync('cpio', ['--quiet', '-o', '-H', 'newc', '-R', '0:0'], { cwd: dir, input: list }));
}

test('the default guest recipe powers off on the power button (kernels with evdev)', { timeout: 300_000 }, async (t) => {
  const g = requireGuest();
  const initrd = Buffer.concat([readFileSync(g.initrd), recipeOverlay()]);
  const c = new GuestConsole({ memoryBytes: 256 << 20, bios: null, kernel: readFileSync(g.kernel), initrd,
    append: 'console=ttyS0 quiet', clock: { kind: 'virtual', shift: 3 }, virtio: [{ kind: 'input' }] });
  try {
    await c.expect('~ # ', 240_000);
    const evdev = /yes/.test(await c.run('[ -e /dev/input/event0 ] && echo y""es || echo n""o'));
    if (!evdev) {
      // Debian's defconfig kernel (../shared/guest) has CONFIG_INPUT_EVDEV off: no userspace sees keys.
      t.skip(`${g.kernel} has no evdev (CONFIG_INPUT_EVDEV): the recipe's kernel has it`);
      return;
    }
    assert.match(await c.run('pidof acpid >/dev/null && echo acpid-r""unning'), /acpid-running/);
    c.machine.powerButton();
    const exit = await c.done;
    assert.equal(exit.reason, 'poweroff');
  } finally {
    await c.stop();
  }
});
