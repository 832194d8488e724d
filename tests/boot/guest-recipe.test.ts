/**
 * The guest recipe (scripts/build-guest.sh, scripts/guest/): the kernel config fragment asks
 * for what the board has and nothing it lacks, and the initramfs scripts (/init, rcS, the
 * udhcpc script) work. Those run on the real thing: they are laid over the found guest's
 * initramfs (a second cpio archive, which Linux unpacks over the first) and booted in
 * qemu-system-riscv64 with and without a virtio network card on QEMU's user network, whose
 * DHCP server hands out 10.0.2.15/24, router 10.0.2.2 and DNS 10.0.2.3.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { repoRoot } from '../lib/toolchain.js';
import { requireGuest } from '../lib/guest.js';

const SCRIPTS = join(repoRoot, 'scripts');
const PROMPT = '~ # ';

function fragment(): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(join(SCRIPTS, 'guest', 'typevisor-virt.config'), 'utf8').split('\n')) {
    const on = /^(CONFIG_\w+)=(.*)$/.exec(line);
    const off = /^# (CONFIG_\w+) is not set$/.exec(line);
    if (on) { assert.ok(!m.has(on[1]), `${on[1]} twice`); m.set(on[1], on[2]); }
    if (off) { assert.ok(!m.has(off[1]), `${off[1]} twice`); m.set(off[1], 'n'); }
  }
  return m;
}

test('kernel config fragment: the board\'s devices built in; no modules, PCI, USB, sound, GPUs or wireless', () => {
  const f = fragment();
  const want = [
    'SOC_VIRT', 'SMP', 'FPU', 'RISCV_ISA_C', 'MMU', '64BIT', 'NO_HZ_IDLE', 'RISCV_TIMER', 'SIFIVE_PLIC',
    'SERIAL_8250', 'SERIAL_8250_CONSOLE', 'SERIAL_OF_PLATFORM', 'SERIAL_EARLYCON_RISCV_SBI',
    'RTC_CLASS', 'RTC_DRV_GOLDFISH', 'POWER_RESET_SYSCON', 'POWER_RESET_SYSCON_POWEROFF',
    'VIRTIO_MMIO', 'VIRTIO_BLK', 'VIRTIO_NET', 'VIRTIO_CONSOLE', 'HW_RANDOM_VIRTIO', 'RANDOM_TRUST_BOOTLOADER', 'NET_9P_VIRTIO', '9P_FS',
    'VIRTIO_BALLOON', 'VIRTIO_INPUT', 'INPUT_EVDEV', 'EXT4_FS', 'TMPFS', 'DEVTMPFS', 'PROC_FS', 'SYSFS',
    'NET', 'INET', 'IPV6', 'UNIX', 'PACKET', 'BLK_DEV_INITRD', 'RD_GZIP', 'BINFMT_ELF', 'BINFMT_SCRIPT',
    'TTY', 'PRINTK', 'FUTEX', 'EPOLL', 'MULTIUSER', 'POSIX_TIMERS',
  ];
  for (const o of want) assert.equal(f.get(`CONFIG_${o}`), 'y', `CONFIG_${o}=y`);
  for (const o of ['MODULES', 'PCI', 'USB_SUPPORT', 'SOUND', 'DRM', 'WLAN', 'WIRELESS']) {
    assert.equal(f.get(`CONFIG_${o}`), 'n', `# CONFIG_${o} is not set`);
  }
  assert.deepEqual([...f].filter(([, v]) => v === 'm'), [], 'nothing as a module');
});

test('build-guest.sh: valid bash; --help shows the usage; a bad option is refused', () => {
  const script = join(SCRIPTS, 'build-guest.sh');
  execFileSync('bash', ['-n', script]);
  assert.match(execFileSync('bash', [script, '--help'], { encoding: 'utf8' }), /Usage: build-guest\.sh/);
  assert.throws(() => execFileSync('bash', [script, '--bogus'], { stdio: 'pipe' }), /unknown option '--bogus'/);
  assert.throws(() => execFileSync('bash', [script, '--jobs', 'x'], { stdio: 'pipe' }), /--jobs wants a positive number/);
});

/** A gzipped cpio archive holding the recipe's scripts where build-guest.sh installs them. */
function overlay(): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-guest-overlay-'));
  const put = (src: string, dst: string, mode: number): void => {
    mkdirSync(join(dir, dst, '..'), { recursive: true });
    copyFileSync(join(SCRIPTS, 'guest', src), join(dir, dst));
    chmodSync(join(dir, dst), mode);
  };
  put('init', 'init', 0o755);
  put('inittab', 'etc/inittab', 0o644);
  put('rcS', 'etc/init.d/rcS', 0o755);
  put('profile', 'etc/profile', 0o644);
  put('udhcpc.script', 'usr/share/udhcpc/default.script', 0o755);
  put('acpi-power', 'etc/acpi/PWRF/00000080', 0o755);
  const list = ['init', 'etc', 'etc/inittab', 'etc/init.d', 'etc/init.d/rcS', 'etc/profile',
    'usr', 'usr/share', 'usr/share/udhcpc', 'usr/share/udhcpc/default.script',
    'etc/acpi', 'etc/acpi/PWRF', 'etc/acpi/PWRF/00000080'].join('\n') + '\n';
  const cpio = execFileSync('cpio', ['--quiet', '-o', '-H', 'newc', '-R', '0:0'], { cwd: dir, input: list, maxBuffer: 16 << 20 });
  return gzipSync(cpio);
}

interface QemuGuest { expect(s: string, ms: number): Promise<string>; type(s: string): void; exited: Promise<number | null>; kill(): void }

function bootQemu(kernel: string, initrd: string, net: boolean): QemuGuest {
  const args = ['-M', 'virt', '-m', '256M', '-nographic', '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0',
    ...(net ? ['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0'] : [])];
  const q = spawn('qemu-system-riscv64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', seen = 0;
  const waiters: Array<() => void> = [];
  q.stdout.on('data', (d: Buffer) => { out += d.toString('latin1'); for (const w of waiters.splice(0)) w(); });
  const exited = new Promise<number | null>((resolve) => q.on('exit', (c) => { resolve(c); for (const w of waiters.splice(0)) w(); }));
  return {
    expect(s, ms) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no '${s}' within ${ms} ms; console:\n${out.slice(-1500)}`)), ms);
        const check = (): void => {
          const i = out.indexOf(s, seen);
          if (i >= 0) { clearTimeout(timer); const got = out.slice(seen, i + s.length); seen = i + s.length; resolve(got); return; }
          if (q.exitCode !== null) { clearTimeout(timer); reject(new Error(`qemu exited before '${s}'; console:\n${out.slice(-1500)}`)); return; }
          waiters.push(check);
        };
        check();
      });
    },
    type(s) { q.stdin.write(s); },
    exited,
    kill() { q.kill('SIGKILL'); },
  };
}

test('guest /init: DHCP on eth0 sets address, route and resolv.conf; applets present; poweroff', { timeout: 180_000 }, async () => {
  const g = requireGuest();
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-guest-init-'));
  const initrd = join(dir, 'initrd.cpio.gz');
  writeFileSync(initrd, Buffer.concat([readFileSync(g.initrd), overlay()]));
  const vm = bootQemu(g.kernel, initrd, true);
  try {
    await vm.expect('udhcpc: eth0 10.0.2.15/24 via 10.0.2.2', 120_000);
    await vm.expect(PROMPT, 60_000);
    vm.type('ip -4 addr show dev eth0; ip route; cat /etc/resolv.conf; echo ==E""ND\n');
    const net = await vm.expect('==END', 30_000);
    assert.match(net, /inet 10\.0\.2\.15\/24 /);
    assert.match(net, /^default via 10\.0\.2\.2 dev eth0/m);
    assert.match(net, /^nameserver 10\.0\.2\.3/m);
    await vm.expect(PROMPT, 10_000);
    vm.type('for a in httpd wget nc ip md5sum sha256sum mount mkfs.ext2 dd sync udhcpc acpid poweroff; do command -v $a >/dev/null || echo MISS""ING-$a; done; echo ==E""ND\n');
    assert.doesNotMatch(await vm.expect("==END", 30_000), /MISSING-/);
    await vm.expect(PROMPT, 10_000);
    vm.type('poweroff\n');
    await vm.expect('reboot: Power down', 60_000);
    assert.equal(await vm.exited, 0);
  } finally {
    vm.kill();
  }
});

test('guest /init without a network card: straight to the shell, no DHCP', { timeout: 180_000 }, async () => {
  const g = requireGuest();
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-guest-init-'));
  const initrd = join(dir, 'initrd.cpio.gz');
  writeFileSync(initrd, Buffer.concat([readFileSync(g.initrd), overlay()]));
  const vm = bootQemu(g.kernel, initrd, false);
  try {
    const boot = await vm.expect(PROMPT, 120_000);
    assert.doesNotMatch(boot, /udhcpc/);
    vm.type('test -e /sys/class/net/eth0 && echo HAS""-eth0; test -e /etc/resolv.conf && echo HAS""-resolv; echo ==E""ND\n');
    assert.doesNotMatch(await vm.expect('==END', 30_000), /HAS-/);
    await vm.expect(PROMPT, 10_000);
    vm.type('poweroff\n');
    await vm.expect('reboot: Power down', 60_000);
    assert.equal(await vm.exited, 0);
  } finally {
    vm.kill();
  }
});
