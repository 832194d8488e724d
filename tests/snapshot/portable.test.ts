/**
 * portable.ts: what a snapshot header's machine definition says to another kind of host
 * (the browser): RAM size, boot path, disks and other devices, from `typevisor run`'s flags
 * and from a runner's config; and why a host without disks refuses one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browserRefusal, portableMachine, RESTORE_KERNEL } from '../../src/snapshot/portable.js';
import type { SnapshotHeader } from '../../src/snapshot/format.js';

const header = (machine: unknown, disks: SnapshotHeader['disks'] = []): SnapshotHeader =>
  ({ typevisor: '0.1.0', created: '2026-11-26T06:00:00.000Z', machine, memoryBytes: 128 << 20, disks });
const disk = { path: '/srv/a.qcow2', format: 'qcow2' as const, readOnly: false, size: 65536, mtimeMs: 1, headSha256: 'ab'.repeat(32) };

test('typevisor run flags: boot path, devices (loaders are RAM, not devices), disks from the header', () => {
  let m = portableMachine(header({ kind: 'cli', argv: ['-m', '128M', '--kernel', '/k', '--append', 'console=ttyS0 -netdev'] }));
  assert.deepEqual(m, { memoryBytes: 128 << 20, boot: 'builtin', disks: [], devices: [], savedBy: 'typevisor run' });
  assert.equal(browserRefusal(m), null);
  assert.equal(portableMachine(header({ kind: 'cli', argv: ['-bios', 'none', '--kernel', '/k'] })).boot, 'none');
  assert.equal(portableMachine(header({ kind: 'cli', argv: ['--bios=/fw.elf'] })).boot, 'firmware');
  assert.equal(portableMachine(header({ kind: 'cli', argv: ['--bios', 'default'] })).boot, 'builtin');
  m = portableMachine(header({ kind: 'cli', argv: ['-device', 'loader,file=/x,addr=0x80200000', '-nic', 'user', '-device', 'virtio-rng-device'] }));
  assert.deepEqual(m.devices, ['-nic user', '-device virtio-rng-device']);
  assert.match(browserRefusal(m) ?? '', /^the snapshot's machine has devices this page does not have \(-nic user, -device virtio-rng-device\)/);
  m = portableMachine(header({ kind: 'cli', argv: ['-drive', 'file=/srv/a.qcow2'] }, [disk, { ...disk, path: '/srv/b.raw' }]));
  assert.deepEqual(m.disks, ['/srv/a.qcow2', '/srv/b.raw']);
  assert.match(browserRefusal(m) ?? '', /^the snapshot's machine has 2 disks \(\/srv\/a\.qcow2, \/srv\/b\.raw\): a snapshot refers to its disks by path and does not carry them/);
});

test("a runner's config: its drives count as disks even when not recorded (a browser's in-memory disk)", () => {
  let m = portableMachine(header({ kind: 'runner', config: { name: 'browser', memoryBytes: 128 << 20, kernel: 'blob:x' } }));
  assert.deepEqual(m, { memoryBytes: 128 << 20, boot: 'builtin', disks: [], devices: [], savedBy: 'a runner' });
  m = portableMachine(header({ kind: 'runner', config: { name: 'b', memoryBytes: 1, bios: 'none', drives: [{ file: 'blob:d' }] } }));
  assert.equal(m.boot, 'none');
  assert.deepEqual(m.disks, ['blob:d']);
  assert.match(browserRefusal(m) ?? '', /has a disk \(blob:d\)/);
  // Other and missing definitions: only the RAM size is known; the machine's load checks the rest.
  assert.deepEqual(portableMachine(header({ kind: 'fixture' })), { memoryBytes: 128 << 20, boot: 'builtin', disks: [], devices: [], savedBy: 'unknown' });
  assert.deepEqual(portableMachine(header(null)).savedBy, 'unknown');
  assert.match(browserRefusal(portableMachine(header({ kind: 'fixture' }))) ?? '', /^the snapshot does not say how its machine was built/);
  assert.deepEqual([...RESTORE_KERNEL], [0x6f, 0, 0, 0], 'the stand-in kernel is `j .`');
});
