/**
 * virtio disks through the `typevisor` command as a process: a guest `sync` followed by
 * kill -9 of typevisor loses nothing (the journal-replayed image holds the guest's file,
 * byte for byte); a second VM on the same image is refused while the first runs; bad
 * -drive/-device spellings are usage errors (exit 2) and missing or malformed images name
 * the file (exit 1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { repoRoot, guestDir } from '../lib/toolchain.js';
import { mkfsExt4, recoveredCopy, debugfsCat, md5 } from '../lib/ext4.js';
import { parseVirtio } from '../../src/cli/devices.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');
const tmp = mkdtempSync(join(tmpdir(), 'typevisor-vcli-'));
const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir, TYPEVISOR_LOCK_DIR: join(tmp, 'locks') };

function start(args: string[]): { child: ChildProcessWithoutNullStreams; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, 'run', '-m', '256M', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString('latin1'); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out: () => stdout, err: () => stderr, exited };
}

async function waitFor(get: () => string, re: RegExp, ms: number, what: string): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(get());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${get().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function quick(args: string[]): Promise<{ status: number | null; stderr: string }> {
  const p = start(args);
  p.child.stdin.end();
  const status = await p.exited;
  return { status, stderr: p.err() };
}

test('kill -9 right after a guest sync: the data is on disk; a second VM on a busy image is refused; snapshot=on; hvc0 on a socket', { timeout: 300_000 }, async () => {
  const src = join(tmp, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'hello.txt'), 'hello\n');
  const img = join(tmp, 'kill.img');
  mkfsExt4(img, src, '32M');
  const vm = start(['-drive', `file=${img},format=raw,if=virtio`]);
  try {
    await waitFor(vm.out, /~ # $/, 200_000, 'the shell prompt');
    vm.child.stdin.write('mount /dev/vda /mnt && dd if=/dev/urandom of=/mnt/k.bin bs=4096 count=64 2>/dev/null && md5sum /mnt/k.bin && sync && echo SY$((1+1))NC\n');
    const m = await waitFor(vm.out, /([0-9a-f]{32})\s+\/mnt\/k\.bin[\s\S]*SY2NC/, 120_000, 'sync');
    vm.child.kill('SIGKILL');
    await vm.exited;
    const r = recoveredCopy(img, join(tmp, 'recovered.img'));
    assert.ok(r.status === 0 || r.status === 1, `e2fsck -fy: ${r.out}`);
    assert.equal(md5(debugfsCat(join(tmp, 'recovered.img'), '/k.bin')), m[1]);
  } finally {
    vm.child.kill('SIGKILL');
  }

  // The image is locked while a VM writes it. That VM also has a snapshot=on disk (vdb), a
  // virtio console on a unix socket carrying a shell (hvc0), and virtio-rng.
  const sock = join(tmp, 'hvc.sock');
  const snap = join(tmp, 'snap.img');
  const bytes = new Uint8Array(4 << 20).map((_, i) => (i * 31) >> 3);
  writeFileSync(snap, bytes);
  const holder = start(['-hda', img, '-drive', `file=${snap},snapshot=on`, '-chardev', `socket,id=c0,path=${sock},server=on,wait=off`,
    '-device', 'virtio-serial-device', '-device', 'virtconsole,chardev=c0', '-device', 'virtio-rng-device']);
  try {
    await waitFor(holder.out, /Linux version/, 200_000, 'the first VM to boot');
    const second = await quick(['-drive', `file=${img},format=raw`]);
    assert.equal(second.status, 1);
    assert.ok(second.stderr.includes(img), second.stderr);
    assert.match(second.stderr, /lock|in use|busy/i);

    await waitFor(holder.out, /~ # $/, 200_000, 'the shell prompt');
    holder.child.stdin.write("(setsid sh -c 'exec sh </dev/hvc0 >/dev/hvc0 2>&1' &); cat /sys/class/misc/hw_random/rng_current\n");
    await waitFor(holder.out, /virtio_rng/, 30_000, 'virtio-rng as the current hwrng');
    let hvc = '';
    const s = createConnection(sock);
    s.on('data', (d: Buffer) => { hvc += d.toString(); });
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write('echo via-$((40 + 2)); tty\n');
    await waitFor(() => hvc, /via-42\s+\/dev\/hvc0/, 30_000, 'the hvc0 shell');
    s.destroy();

    // snapshot=on: the guest reads back its write (also past the page cache); the file is unchanged.
    holder.child.stdin.write('echo overwritten | dd of=/dev/vdb bs=512 seek=3 conv=sync,fsync 2>/dev/null; echo 3 > /proc/sys/vm/drop_caches; ' +
      'dd if=/dev/vdb bs=512 skip=3 count=1 2>/dev/null | head -c 11 | od -An -c | tr -d " "; poweroff\n');
    assert.equal(await holder.exited, 0, holder.err());
    assert.match(holder.out(), /^overwritten\s*$/m);
    assert.ok(Buffer.from(bytes).equals(readFileSync(snap)), 'the image changed under snapshot=on');
  } finally {
    holder.child.kill('SIGKILL');
    await holder.exited;
  }
});

test('-snapshot applies to every drive; -hda comes first', () => {
  const r = parseVirtio({ hda: 'a.img', drives: ['file=b.img,format=qcow2', 'file=c.img,snapshot=off'], devices: ['virtio-rng-device'], chardevs: [], snapshot: true });
  assert.deepEqual(r.map((x) => x.kind === 'blk' ? [x.drive.file, x.drive.snapshot] : [x.kind]), [['a.img', true], ['b.img', true], ['c.img', true], ['rng']]);
  const n = parseVirtio({ drives: ['file=x,,y.img,snapshot=on,readonly=on,cache=none'], devices: [], chardevs: [], snapshot: false });
  assert.deepEqual(n, [{ kind: 'blk', drive: { file: 'x,y.img', readOnly: true, snapshot: true, cache: 'none' } }]);
});

test('usage errors (exit 2) and image errors naming the file (exit 1)', async () => {
  const img = join(tmp, 'small.img');
  writeFileSync(img, new Uint8Array(1 << 20));
  const usage: Array<[string[], RegExp]> = [
    [['-drive', `file=${img},format=vmdk`], /unsupported format 'vmdk'/],
    [['-drive', `file=${img},if=ide`], /unsupported interface/],
    [['-drive', `file=${img},bogus=1`], /unknown key 'bogus'/],
    [['-drive', `file=${img},readonly=maybe`], /expected on or off/],
    [['-drive', `file=${img},cache=unsafe`], /cache mode 'unsafe'/],
    [['-drive', 'format=raw'], /file= is required/],
    [['-device', 'virtconsole,chardev=c0'], /virtio-serial-device/],
    [['-device', 'virtio-serial-device', '-device', 'virtconsole,chardev=nope'], /chardev= must name/],
    [['-chardev', 'pty,id=c0'], /unsupported backend 'pty'/],
    [['-device', 'virtio-gpu-device'], /unsupported device 'virtio-gpu-device'/],
  ];
  for (const [args, re] of usage) {
    const r = await quick(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const missing = join(tmp, 'nope.img');
  const m = await quick(['-hda', missing]);
  assert.equal(m.status, 1);
  assert.ok(m.stderr.includes(missing), m.stderr);
  const notQcow = await quick(['-drive', `file=${img},format=qcow2`]);
  assert.equal(notQcow.status, 1);
  assert.ok(notQcow.stderr.includes(img), notQcow.stderr);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
