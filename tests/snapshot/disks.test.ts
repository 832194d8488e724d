/**
 * Disks in snapshots and migration, with one booted guest and two daemons on this machine.
 * The guest's disk is a qcow2 overlay over a raw ext4 base, in a directory only the source
 * uses. It writes a file; `vm save --with-disks` writes a bundle; the guest then changes the
 * disk. A plain snapshot taken before the change is refused (its disk changed). With
 * `--copy-storage` the VM moves to the other daemon while a loop appends to a log on the
 * disk: there, with the page cache dropped, the file's md5 matches and the log is whole.
 * A move cut in the middle of the disk stream leaves the source running and nothing on the
 * destination, not even its disk copies.
 * `typevisor run --restore BUNDLE` reads the old content (nothing written after the save
 * leaked in), and its Ctrl-A S with --with-disks writes a second bundle, which the daemon
 * restores (on a copy of the bundle's disk: the bundle restores a second time, to the same
 * state): it holds what was written before that save and nothing after. Restoring the
 * first bundle again is refused (`typevisor run` ran the guest on its disk in place). qemu-img check and e2fsck are
 * clean on the bundles' disks and on the migrated one after the guests unmount.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { guestDir, repoRoot } from '../lib/toolchain.js';
import { fsckClean, qemuImg, replayJournal } from '../lib/ext4.js';
import { killRunners } from '../lib/daemon-client.js';
import { Tty } from '../lib/tty.js';

const execFileP = promisify(execFile);
const BIN = join(repoRoot, 'bin', 'typevisor.js');
const root = mkdtempSync(join(tmpdir(), 'typevisor-disks-'));
const daemons: ChildProcess[] = [];
after(() => { for (const d of daemons) d.kill('SIGKILL'); killRunners(root); rmSync(root, { recursive: true, force: true }); });

interface Daemon { url: string; token: string; dir: string }

async function startDaemon(dir: string): Promise<Daemon> {
  const env = { ...process.env, TYPEVISOR_GUEST_DIR: guestDir, TYPEVISOR_STATE_DIR: dir };
  const d = spawn(process.execPath, [BIN, 'daemon', '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  daemons.push(d);
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    d.stderr!.on('data', (b: Buffer) => { err += b.toString(); const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(m[1]); });
    d.once('exit', (c) => reject(new Error(`daemon exited ${c}: ${err}`)));
  });
  return { url, token: readFileSync(join(dir, 'token'), 'utf8').trim(), dir };
}

async function vm(d: Daemon, ...a: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [BIN, 'vm', '--connect', d.url, ...a], { env: { ...process.env, TYPEVISOR_STATE_DIR: d.dir }, timeout: 200_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** A TCP relay to `port` that cuts its first connection after `cutAt` bytes from the client. */
function cuttingProxy(port: number, cutAt: number): Promise<{ url: string; close: () => void; cut: () => boolean }> {
  let cut = false;
  const server = createServer((a: Socket) => {
    const b = connect(port, '127.0.0.1');
    let n = 0;
    a.on('data', (d: Buffer) => {
      n += d.length;
      if (!cut && n >= cutAt) { cut = true; a.destroy(); b.destroy(); return; }
      b.write(d);
    });
    b.on('data', (d: Buffer) => a.write(d));
    a.on('error', () => b.destroy()); b.on('error', () => a.destroy());
    a.on('close', () => b.destroy()); b.on('close', () => a.destroy());
  });
  return new Promise((res) => server.listen(0, '127.0.0.1', () => {
    res({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, close: () => server.close(), cut: () => cut });
  }));
}


/**
 * A qcow2 image's ext4 file system checked with e2fsck -fn (through a raw conversion). The
 * images here were saved while the guest had the file system mounted: crash consistent, so
 * the journal is replayed first, as mounting does (ext4's background work, e.g. lazy inode
 * table init, can commit a transaction between the guest's `sync` and the save).
 */
function fsckQcow2(img: string): void {
  const c = qemuImg(['check', img]);
  assert.equal(c.status, 0, `qemu-img check ${img}: ${c.out}`);
  assert.match(c.out, /No errors were found/);
  const raw = join(root, 'fsck.raw');
  rmSync(raw, { force: true });
  assert.equal(qemuImg(['convert', '-O', 'raw', img, raw]).status, 0);
  const j = replayJournal(raw);
  assert.ok(j.status === 0 || j.status === 1, `e2fsck -E journal_only ${img}: ${j.out}`);
  const f = fsckClean(raw);
  assert.equal(f.status, 0, `e2fsck -fn ${img}: ${f.out}`);
}

test('disks: a bundle keeps the disk as it was at the save, --copy-storage moves it, changed disks are refused', { timeout: 400_000 }, async () => {
  // The disk: a raw ext4 base and a qcow2 overlay, in a directory only the source uses.
  const srcDisks = join(root, 'src-only');
  mkdirSync(srcDisks);
  const base = join(srcDisks, 'base.raw');
  execFileSync('mkfs.ext4', ['-q', '-F', base, '32M'], { env: { ...process.env, PATH: `/usr/sbin:/sbin:${process.env.PATH ?? ''}` } });
  const disk = join(srcDisks, 'disk.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', disk]).status, 0);

  const a = await startDaemon(join(root, 'a')), b = await startDaemon(join(root, 'b'));
  const api = async (d: Daemon, method: string, path: string, body?: string): Promise<Response> =>
    fetch(d.url + path, { method, headers: { authorization: `Bearer ${d.token}`, ...(body !== undefined ? { 'content-type': 'text/plain' } : {}) }, body });
  const log = async (d: Daemon, name: string): Promise<string> => (await api(d, 'GET', `/v1/vms/${name}/console/log`)).text();
  const sh = async (d: Daemon, name: string, cmd: string, until: RegExp, ms = 60_000): Promise<RegExpExecArray> => {
    await api(d, 'POST', `/v1/vms/${name}/console/input`, cmd + '\n');
    const deadline = Date.now() + ms;
    for (;;) {
      const t = await log(d, name);
      const m = until.exec(t);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`${name}: no ${String(until)} in ${JSON.stringify(t.slice(-800))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  assert.equal((await vm(a, 'define', 'g', '-m', '64M', '--drive', disk)).code, 0);
  assert.equal((await vm(a, 'start', 'g')).code, 0);
  await sh(a, 'g', '', /~ # $/, 150_000);
  await sh(a, 'g', 'mount -t ext4 /dev/vda /mnt && echo old-$((1+1)) > /mnt/f && sync && echo ok-$((1+2))', /ok-3/);

  // A plain snapshot (disks referenced), then a bundle (disks copied), both while it runs.
  const plain = join(root, 'plain.tvs');
  assert.equal((await vm(a, 'save', 'g', plain)).code, 0);
  const bundle = join(root, 'g.tvb');
  let r = await vm(a, 'save', 'g', bundle, '--with-disks');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Domain 'g' saved to .*g\.tvb \(\d+\.\d MiB, \d+\.\d MiB of disk copied in \d+ ms\)\n$/);
  console.log(r.stdout.trim());
  const copy = join(bundle, 'disk0.qcow2');
  assert.ok(existsSync(join(bundle, 'snapshot.tvs')) && existsSync(join(bundle, 'bundle.json')) && existsSync(copy));
  const info = JSON.parse(qemuImg(['info', '--output=json', copy]).out) as { format: string; 'backing-filename'?: string };
  assert.equal(info.format, 'qcow2');
  assert.equal(info['backing-filename'], undefined, 'the backing chain is flattened into the copy');
  const ck = qemuImg(['check', copy]);
  assert.equal(ck.status, 0, ck.out);

  // The guest changes the disk after the save; a loop keeps appending to a log on it.
  const md5 = (await sh(a, 'g', 'echo new-$((2+2)) > /mnt/f; dd if=/dev/urandom of=/mnt/r bs=64k count=48 2>/dev/null; sync; md5sum /mnt/r', /([0-9a-f]{32}) {2}\/mnt\/r/))[1];
  await sh(a, 'g', '(i=0; while true; do i=$((i+1)); echo "line $i" >> /mnt/log; sync; usleep 50000; done) & echo bg-$((3+4))', /bg-7/);

  // The plain snapshot's disk has changed since: refused, naming the disk.
  r = await vm(a, 'restore', 'p', plain);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /disk 1 '.*disk\.qcow2' is not the disk the snapshot was taken with .*modified/);
  assert.equal((await vm(a, 'undefine', 'p')).code, 0);

  // Cut in the middle of the disk stream (it goes before the memory): nothing changes.
  const proxy = await cuttingProxy(Number(new URL(b.url).port), 3 << 20);
  r = await vm(a, 'migrate', 'g', '--to', proxy.url, '--to-token-file', join(b.dir, 'token'), '--copy-storage');
  proxy.close();
  assert.ok(proxy.cut(), 'the cut point was inside the migration');
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /migration of 'g' failed, it keeps running here/);
  assert.match((await vm(a, 'list')).stdout, /^ g\s+running$/m);
  assert.deepEqual(await (await api(b, 'GET', '/v1/vms')).json(), [], 'the destination holds no VM');
  assert.ok(!existsSync(join(b.dir, 'disks', 'g')), 'nor its disk copies');

  // Live migration with the disk streamed to the other daemon.
  r = await vm(a, 'migrate', 'g', '--to', b.url, '--to-token-file', join(b.dir, 'token'), '--copy-storage');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^storage: \d+\.\d MiB sent, [\d.]+ MiB left$/m);
  assert.match(r.stderr, /^round 0: \d+\.\d MiB sent, \d+ pages, .*, disk [\d.]+ MiB left$/m);
  console.log(r.stderr.trim());
  const res = JSON.parse(r.stdout) as { totalMs: number; downtimeMs: number; bytes: number; diskBytes: number };
  assert.ok(res.diskBytes > 3 << 20 && res.bytes > res.diskBytes, JSON.stringify(res));
  console.log(`migration with --copy-storage: ${JSON.stringify(res)}`);
  const moved = await (await api(b, 'GET', '/v1/vms/g')).json() as { state: string; definition: { drives: Array<{ file: string; format: string }> } };
  assert.equal(moved.state, 'running');
  const there = moved.definition.drives[0];
  assert.equal(there.file, join(b.dir, 'disks', 'g', 'vda.qcow2'));
  // Read from the copied disk, not the page cache that came along with RAM.
  await sh(b, 'g', 'kill %1; sync; echo 3 > /proc/sys/vm/drop_caches; md5sum /mnt/r; cat /mnt/f; echo done-$((4+5))', /done-9/);
  let t = await log(b, 'g');
  assert.ok(t.includes(`${md5}  /mnt/r`), `md5 on the destination: ${t.slice(-400)}`);
  assert.match(t, /new-4/);
  const seq = await sh(b, 'g', 'i=0; ok=1; while read a n; do i=$((i+1)); [ "$n" = "$i" ] || ok=0; done < /mnt/log; echo seq-$ok-$i', /seq-(\d)-(\d+)\r?\n/);
  assert.ok(seq[1] === '1' && Number(seq[2]) > 0, `the log written across the move is whole: ${seq[0]}`);
  await sh(b, 'g', 'umount /mnt && echo um-$((5+6))', /um-11/);
  assert.equal((await vm(b, 'destroy', 'g')).code, 0);
  fsckQcow2(there.file);
  assert.equal(qemuImg(['check', disk]).status, 0, 'the source disk is intact');

  // The bundle restored by `typevisor run` (its own flags from the snapshot, the disk from the
  // bundle): the guest reads what the disk held at the save.
  const bundle2 = join(root, 'cli.tvb');
  const cli = new Tty(['run', '--restore', bundle, '--with-disks', '--snapshot-file', bundle2], { cwd: root, env: { ...process.env, TYPEVISOR_GUEST_DIR: guestDir }, track: daemons });
  await cli.sh('echo 3 > /proc/sys/vm/drop_caches; cat /mnt/f; [ -e /mnt/r ] || echo absent-$((6+7))', /absent-13/);
  assert.match(cli.out, /old-2/);
  assert.doesNotMatch(cli.out, /new-4/);
  // Its Ctrl-A S writes a bundle while a file written before it is on the disk, and one after it.
  await cli.sh('echo cli-$((8+9)) > /mnt/c; sync; echo w-$((9+9))', /w-18/);
  const saved = await cli.sh(Uint8Array.of(0x01, 0x73), /typevisor: saved .*cli\.tvb \(\d+\.\d MiB, (\d+\.\d) MiB of disk copied in \d+ ms\)/);
  assert.ok(Number(saved[1]) > 0, saved[0]);
  await cli.sh('echo after > /mnt/c2; sync; umount /mnt && echo um-$((7+8))', /um-15/);
  cli.child.stdin!.write('poweroff -f\r');
  assert.equal(await cli.exited, 0, cli.out.slice(-500));
  fsckQcow2(copy);

  r = await vm(b, 'restore', 'h', bundle2);
  assert.equal(r.code, 0, r.stderr);
  await sh(b, 'h', 'echo 3 > /proc/sys/vm/drop_caches; cat /mnt/f /mnt/c; [ -e /mnt/c2 ] || echo absent-$((10+11))', /absent-21/);
  t = await log(b, 'h');
  assert.match(t, /old-2[\s\S]*cli-17/);
  await sh(b, 'h', 'umount /mnt && echo um-$((8+9))', /um-17/);
  assert.equal((await vm(b, 'destroy', 'h')).code, 0);
  fsckQcow2(join(bundle2, 'disk0.qcow2'));
  // The daemon ran 'h' on a copy of the bundle's disk (its state dir's disks/h/): the bundle is
  // as saved and restores again, to the same state.
  assert.ok(existsSync(join(b.dir, 'disks', 'h', 'vda.qcow2')));
  r = await vm(b, 'restore', 'h3', bundle2);
  assert.equal(r.code, 0, r.stderr);
  await sh(b, 'h3', 'echo 3 > /proc/sys/vm/drop_caches; cat /mnt/f /mnt/c; [ -e /mnt/c2 ] || echo absent-$((11+11))', /absent-22/);
  assert.match(await log(b, 'h3'), /old-2[\s\S]*cli-17/);
  assert.equal((await vm(b, 'destroy', 'h3')).code, 0);
  // The first bundle's disk was run on: restoring it again would swap the disk under the guest.
  r = await vm(b, 'restore', 'h2', bundle);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /is not the disk the snapshot was taken with/);
});
