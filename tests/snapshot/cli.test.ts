/**
 * Save and restore through `typevisor run` on a terminal (a pty from script(1)): a guest
 * counting on its console, with a file on tmpfs, is saved with Ctrl-A S and quit; a new
 * process started with only `--restore FILE` continues the count where it was and reads the
 * file back. Also: corrupt and foreign snapshot files are refused with a clear message and
 * exit status 1, before any guest runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, guestDir } from '../lib/toolchain.js';
import { readSnapshotHeader } from '../../src/snapshot/format.js';
import { Tty } from '../lib/tty.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');


function counts(text: string): number[] {
  return [...text.matchAll(/count (\d+)\r*\n/g)].map((m) => Number(m[1]));
}

test('typevisor run: Ctrl-A S saves a counting guest, --restore FILE continues it in a new process', { timeout: 300_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'typevisor-snapcli-'));
  const file = join(tmp, 'vm.tvs');
  const a = new Tty(['run', '-m', '128M', '--kernel', join(guestDir, 'Image'), '--initrd', join(guestDir, 'initramfs.cpio.gz'),
    '--append', 'console=ttyS0', '--snapshot-file', file], { cwd: tmp });
  let b: Tty | null = null;
  try {
    await a.wait(/~ # /);
    a.write('mount -t tmpfs none /mnt && echo kept-$((6*7)) > /mnt/f\r');
    a.write('(i=0; while true; do i=$((i+1)); echo "count $i"; usleep 300000; done) &\r');
    await a.wait(/count 4\r*\n/, 60_000);
    a.write(Uint8Array.of(0x01, 0x73)); // Ctrl-A s
    const saved = await a.wait(/typevisor: saved .*vm\.tvs \((\d+\.\d) MiB in (\d+) ms\)/);
    const before = counts(a.out.slice(0, a.out.indexOf('typevisor: saved')));
    const last = before[before.length - 1];
    assert.ok(last >= 4, `counted to ${last} before the save`);
    await a.wait(new RegExp(`count ${last + 2}\\r*\\n`), 30_000); // the VM kept running after the save
    a.write(Uint8Array.of(0x01, 0x78)); // Ctrl-A x
    assert.equal(await a.exited, 0);
    const header = readSnapshotHeader(new Uint8Array(readFileSync(file)));
    assert.equal(header.memoryBytes, 128 << 20);
    assert.deepEqual((header.machine as { argv: string[] }).argv.slice(0, 2), ['-m', '128M'], 'the flags are in the header, without --snapshot-file');
    assert.ok(!(header.machine as { argv: string[] }).argv.includes('--snapshot-file'));

    b = new Tty(['run', '--restore', file], { cwd: tmp });
    const first = Number((await b.wait(/count (\d+)\r*\n/, 60_000))[1]);
    assert.equal(first, last + 1, `the count continues where it was saved (saved after ${last}), size ${saved[1]} MiB, save ${saved[2]} ms`);
    await b.wait(new RegExp(`count ${last + 3}\\r*\\n`), 30_000);
    b.write('kill %1; cat /mnt/f\r');
    await b.wait(/kept-42/, 30_000);
    b.write('poweroff\r');
    assert.equal(await b.exited, 0);
  } finally {
    a.kill(); b?.kill();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('typevisor run --restore refuses corrupt, truncated and foreign files before running anything', { timeout: 60_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'typevisor-snapcli-'));
  try {
    const fixture = new Uint8Array(readFileSync(join(repoRoot, 'tests', 'snapshot', 'fixtures', 'counter-v1.tvs')));
    const run = (file: string): Promise<{ code: number | null; err: string }> => new Promise((res) => {
      const c = spawn(process.execPath, [BIN, 'run', '--restore', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      c.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      c.on('exit', (code) => res({ code, err }));
    });
    const flipped = fixture.slice(); flipped[fixture.length >> 1] ^= 4;
    writeFileSync(join(tmp, 'flip.tvs'), flipped);
    writeFileSync(join(tmp, 'short.tvs'), fixture.subarray(0, fixture.length - 100));
    writeFileSync(join(tmp, 'text.tvs'), 'hello\n');
    let r = await run(join(tmp, 'flip.tvs'));
    assert.equal(r.code, 1); assert.match(r.err, /--restore .*flip\.tvs: corrupt: checksum mismatch in section/);
    r = await run(join(tmp, 'short.tvs'));
    assert.equal(r.code, 1); assert.match(r.err, /truncated/);
    r = await run(join(tmp, 'text.tvs'));
    assert.equal(r.code, 1); assert.match(r.err, /not a typevisor snapshot/);
    r = await run(join(tmp, 'missing.tvs'));
    assert.equal(r.code, 1); assert.match(r.err, /cannot read snapshot/);
    // The fixture was not saved by `typevisor run`: no flags to rebuild its machine from.
    r = await run(join(repoRoot, 'tests', 'snapshot', 'fixtures', 'counter-v1.tvs'));
    assert.equal(r.code, 2); assert.match(r.err, /not saved by 'typevisor run'; give the machine's flags/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
