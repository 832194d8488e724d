/**
 * The `typevisor` command as a user runs it: spawned as a process, checking exit statuses,
 * what reaches stdout, and that errors name the bad flag or file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot, buildElf } from '../lib/toolchain.js';
import { requireGuest } from '../lib/guest.js';
import { TerminalConsole, type ConsoleInput } from '../../src/host/terminal.js';
import { parseSize } from '../../src/cli/args.js';

const BIN = join(repoRoot, 'bin', 'typevisor.js');
const tmp = mkdtempSync(join(tmpdir(), 'typevisor-cli-'));

interface Run { status: number | null; stdout: string; stderr: string }

function tv(args: string[], opts: { input?: string | ((w: (s: string) => void) => void); env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('latin1'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`typevisor ${args.join(' ')} timed out; stdout: ${stdout.slice(-2000)}`)); }, opts.timeoutMs ?? 30_000);
    child.on('exit', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
    if (typeof opts.input === 'function') opts.input((s) => child.stdin.write(s));
    else { if (opts.input) child.stdin.write(opts.input); child.stdin.end(); }
  });
}

const UART_EXIT = `
  .section .text.init
  .globl _start
_start:
  li t0, 0x10000000
  li t1, 'h'
  sb t1, 0(t0)
  li t1, 'i'
  sb t1, 0(t0)
  li t0, 0x100000
  li t1, (7 << 16) | 0x3333
  sw t1, 0(t0)
1: j 1b
`;

const HTIF_EXIT = `
  .section .tohost, "aw", @progbits
  .align 6
  .globl tohost
tohost: .dword 0
  .align 6
  .globl fromhost
fromhost: .dword 0
  .section .text.init
  .globl _start
_start:
  la t0, tohost
  la a0, msg
1: lbu t1, 0(a0)
  beqz t1, 3f
  li t2, (1 << 56) | (1 << 48)
  or t1, t1, t2
  sd t1, 0(t0)
2: ld t1, 0(t0)          # wait for the host to take it
  bnez t1, 2b
  addi a0, a0, 1
  j 1b
3: li t1, (5 << 1) | 1   # exit code 5
  sd t1, 0(t0)
4: j 4b
msg: .asciz "htif!"
`;

test('--version and help', async () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const v = await tv(['--version']);
  assert.equal(v.status, 0);
  assert.equal(v.stdout.trim(), `typevisor ${pkg.version}`);
  const h = await tv(['help']);
  assert.equal(h.status, 0);
  assert.match(h.stdout, /typevisor run \[options\]/);
  assert.match(h.stdout, /Ctrl-A X/);
});


test('bin/typevisor.js runs as a command through its shebang, with one V8 worker thread', () => {
  // (How npm's bin link starts it: the kernel reads `#!/usr/bin/env -S node --v8-pool-size=1`.)
  const out = execFileSync(BIN, ['--version'], { encoding: 'utf8' });
  assert.match(out, /^typevisor \d+\.\d+\.\d+/);
  assert.match(readFileSync(BIN, 'utf8').split('\n', 1)[0], /^#!\/usr\/bin\/env -S node .*--v8-pool-size=1\b/);
});

test('the command loads no WebSocket library: only `vm console` needs it (each VM start would pay ~40 ms)', () => {
  const probe = `import { createRequire } from 'node:module';
await import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'cli', 'main.js'))});
const cache = createRequire(import.meta.url).cache;
console.log(Object.keys(cache).filter((k) => k.includes('node_modules/ws/')).length);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8' });
  assert.equal(out.trim(), '0');
});
test('`run` loads no other command\'s modules (HTTP servers and clients, disk tools: ~10 ms a VM start); help still lists them', () => {
  // A loader hook names every file module as it loads.
  const hook = 'data:text/javascript,' + encodeURIComponent(
    "export async function load(u, c, n) { if (u.startsWith('file:')) process.stderr.write('LOADED ' + u + '\\n'); return n(u, c); }");
  const r = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, join(repoRoot, 'bin', 'typevisor.js'), 'run', '--frobnicate'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  const loaded = r.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice(7));
  assert.ok(loaded.some((u) => u.endsWith('/dist/src/machine/machine.js')), 'the hook saw the machine load');
  for (const m of ['cli/vm.js', 'cli/web.js', 'cli/img.js']) assert.ok(!loaded.some((u) => u.endsWith(`/dist/src/${m}`)), `${m} loaded`);
  const help = execFileSync(process.execPath, [join(repoRoot, 'bin', 'typevisor.js'), 'help'], { encoding: 'utf8' });
  assert.match(help, /^typevisor daemon /m);
  assert.match(help, /^typevisor web /m);
});
test('bad usage exits 2 and names the flag or command', async () => {
  const r1 = await tv(['run', '--frobnicate']);
  assert.equal(r1.status, 2);
  assert.match(r1.stderr, /unknown option '--frobnicate'/);
  const r2 = await tv(['run', '-m', 'lots']);
  assert.equal(r2.status, 2);
  assert.match(r2.stderr, /invalid size 'lots' for -m/);
  const r3 = await tv(['run', '-m', '1M']);
  assert.equal(r3.status, 2);
  assert.match(r3.stderr, /-m 1M/);
  const r4 = await tv(['explode']);
  assert.equal(r4.status, 2);
  assert.match(r4.stderr, /unknown command 'explode'/);
  const r5 = await tv(['run', '--kernel']);
  assert.equal(r5.status, 2);
  assert.match(r5.stderr, /'--kernel' needs a value/);
  const r6 = await tv(['run', '--device', 'e1000,netdev=n0']);
  assert.equal(r6.status, 2);
  assert.match(r6.stderr, /unsupported device 'e1000'/);
});

test('-m accepts QEMU sizes', () => {
  assert.equal(parseSize('512M', '-m'), 512 << 20);
  assert.equal(parseSize('1G', '-m'), 1 << 30);
  assert.equal(parseSize('256', '-m'), 256 << 20);
  assert.equal(parseSize('65536k', '-m'), 64 << 20);
  assert.equal(parseSize('2GiB', '-m'), 2 ** 31);
});

test('missing, empty and corrupt files get clear errors naming the file', async () => {
  const missing = await tv(['run', '--kernel', join(tmp, 'no-such-Image')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read kernel '.*no-such-Image': no such file/);
  const empty = join(tmp, 'empty.bin');
  writeFileSync(empty, '');
  const e = await tv(['run', '--bios', empty]);
  assert.equal(e.status, 1);
  assert.match(e.stderr, /firmware '.*empty\.bin' is empty/);
  // A real ELF, truncated in the middle of its program headers.
  const good = readFileSync(await buildElf({ name: 'cli-uart', sources: { 'u.S': UART_EXIT } }));
  const truncated = join(tmp, 'truncated.elf');
  writeFileSync(truncated, good.subarray(0, 80));
  const t = await tv(['run', '--bios', truncated]);
  assert.equal(t.status, 1);
  assert.match(t.stderr, /firmware '.*truncated\.elf': .+/);
  assert.doesNotMatch(t.stderr, /\n\s+at /, 'no stack trace');
  const corrupt = join(tmp, 'corrupt.elf');
  const c = Buffer.from(good);
  c.writeUInt16LE(0xffff, 0x38); // e_phnum far beyond the file
  writeFileSync(corrupt, c);
  const r = await tv(['run', '--bios', corrupt]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /firmware '.*corrupt\.elf'/);
  const gz = join(tmp, 'bad.gz');
  writeFileSync(gz, Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3]));
  const g = await tv(['run', '--kernel', gz]);
  assert.equal(g.status, 1);
  assert.match(g.stderr, /kernel '.*bad\.gz' looks gzip-compressed but does not decompress/);
});

test('no kernel and no default guest: the error names the command that builds it', async () => {
  const r = await tv(['run'], { env: { TYPEVISOR_CACHE_DIR: join(tmp, 'cache'), TYPEVISOR_GUEST_DIR: '' } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /typevisor image build/);
  const p = await tv(['image', 'path'], { env: { TYPEVISOR_CACHE_DIR: join(tmp, 'cache'), TYPEVISOR_GUEST_DIR: '' } });
  assert.equal(p.status, 0);
  assert.equal(p.stdout.trim(), join(tmp, 'cache', 'guest'));
  assert.match(p.stderr, /not built/);
});

test('run --bios prog.elf: UART output and the SiFive test device exit status', { timeout: 60_000 }, async () => {
  const elf = await buildElf({ name: 'cli-uart', sources: { 'u.S': UART_EXIT } });
  const r = await tv(['run', '--bios', elf]);
  assert.equal(r.stdout, 'hi');
  assert.equal(r.status, 7);
});

test('--clock virtual and --icount shift=N select the virtual clock; bad values exit 2', { timeout: 60_000 }, async () => {
  const elf = await buildElf({ name: 'cli-uart', sources: { 'u.S': UART_EXIT } });
  for (const flags of [['--clock', 'virtual'], ['-icount', 'shift=3'], ['--icount=0'], ['--clock', 'host']]) {
    const r = await tv(['run', '--bios', elf, ...flags]);
    assert.equal(r.stdout, 'hi', flags.join(' '));
    assert.equal(r.status, 7);
  }
  const bad = await tv(['run', '--bios', elf, '--icount', 'shift=11']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--icount shift=11: expected shift=N with N from 0 to 10/);
  const auto = await tv(['run', '--bios', elf, '--icount', 'shift=auto']);
  assert.equal(auto.status, 2);
  const clash = await tv(['run', '--bios', elf, '--clock', 'host', '--icount', '2']);
  assert.equal(clash.status, 2);
  assert.match(clash.stderr, /--icount needs the virtual clock/);
  const what = await tv(['run', '--bios', elf, '--clock', 'fast']);
  assert.equal(what.status, 2);
  assert.match(what.stderr, /--clock fast: expected 'host' or 'virtual'/);
});

test('a gzip-compressed kernel is accepted (bios none: the kernel runs in M-mode)', { timeout: 60_000 }, async () => {
  const { gzipSync } = await import('node:zlib');
  const elf = readFileSync(await buildElf({ name: 'cli-uart', sources: { 'u.S': UART_EXIT } }));
  const gz = join(tmp, 'kernel.gz');
  writeFileSync(gz, gzipSync(elf));
  const r = await tv(['run', '--bios', 'none', '--kernel', gz]);
  assert.equal(r.stdout, 'hi');
  assert.equal(r.status, 7);
});

test('run --bios prog.elf: HTIF console and exit code through tohost', { timeout: 60_000 }, async () => {
  const elf = await buildElf({ name: 'cli-htif', sources: { 'h.S': HTIF_EXIT } });
  const r = await tv(['run', '--bios', elf]);
  assert.equal(r.stdout, 'htif!');
  assert.equal(r.status, 5);
});

test('--device loader places a raw file in guest memory', { timeout: 60_000 }, async () => {
  const src = `
  .section .text.init
  .globl _start
_start:
  li t0, 0x80100000
  lbu t1, 0(t0)          # exit code = first byte of the loaded file
  slli t1, t1, 16
  li t2, 0x3333
  or t1, t1, t2
  li t0, 0x100000
  sw t1, 0(t0)
1: j 1b
`;
  const elf = await buildElf({ name: 'cli-loader', sources: { 'l.S': src } });
  const blob = join(tmp, 'blob.bin');
  writeFileSync(blob, Buffer.from([42, 1, 2, 3]));
  const r = await tv(['run', '--bios', elf, '--device', `loader,file=${blob},addr=0x80100000`]);
  assert.equal(r.status, 42);
});

test('guest reset: the VM reboots (QEMU default), or exits with --no-reboot', { timeout: 60_000 }, async () => {
  const src = `
  .section .text.init
  .globl _start
_start:
  li t0, 0x10000000
  li t1, 'B'
  sb t1, 0(t0)
  li t0, 0x100000
  li t1, 0x7777
  sw t1, 0(t0)
1: j 1b
`;
  const elf = await buildElf({ name: 'cli-reset', sources: { 'r.S': src } });
  const once = await tv(['run', '--no-reboot', '--bios', elf]);
  assert.equal(once.status, 0);
  assert.equal(once.stdout, 'B');
  assert.match(once.stderr, /reset/);
  // Without --no-reboot the machine starts again: wait for a few boots, then stop it.
  const child = spawn(process.execPath, [BIN, 'run', '--bios', elf], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.length >= 3) resolve(); });
    setTimeout(resolve, 20_000);
  });
  child.kill('SIGTERM');
  const status = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.ok(out.startsWith('BBB'), `boots seen: ${JSON.stringify(out)}`);
  assert.equal(status, 0, 'SIGTERM stops the VM cleanly');
});

test('dumpdtb writes a device tree dtc decompiles', async () => {
  const out = join(tmp, 'virt.dtb');
  const r = await tv(['dumpdtb', '-m', '1G', '--append', 'console=ttyS0 loglevel=3', '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  const dts = await new Promise<string>((resolve, reject) => {
    const d = spawn('dtc', ['-I', 'dtb', '-O', 'dts', out]);
    let s = '', err = '';
    d.stdout.on('data', (b: Buffer) => { s += b; });
    d.stderr.on('data', (b: Buffer) => { err += b; });
    d.on('exit', (code) => (code === 0 && err === '' ? resolve(s) : reject(new Error(`dtc: ${code} ${err}`))));
  });
  assert.match(dts, /compatible = "riscv-virtio"/);
  assert.match(dts, /bootargs = "console=ttyS0 loglevel=3"/);
  assert.match(dts, /reg = <0x00 0x80000000 0x00 0x40000000>/);
  assert.match(dts, /rng-seed = <(0x[0-9a-f]+ ){7}0x[0-9a-f]+>;/, 'a 32-byte rng-seed, as QEMU gives');
});

test('-seed N makes /chosen/rng-seed reproducible; without it every machine gets fresh bytes; bad values exit 2', async () => {
  const dtb = async (name: string, extra: string[]): Promise<Buffer> => {
    const out = join(tmp, name);
    const r = await tv(['dumpdtb', ...extra, '-o', out]);
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(out);
  };
  const [a, b, c, d, e] = [await dtb('s1a.dtb', ['-seed', '1']), await dtb('s1b.dtb', ['--seed=1']), await dtb('s2.dtb', ['-seed', '2']),
    await dtb('r1.dtb', []), await dtb('r2.dtb', [])];
  assert.ok(a.equals(b), 'the same seed, the same device tree');
  assert.ok(!a.equals(c), 'another seed, another rng-seed');
  assert.ok(!d.equals(e), 'no seed: random bytes each time');
  for (const bad of ['-1', 'x', '4294967296', '0x10']) {
    const r = await tv(['dumpdtb', '-seed', bad, '-o', join(tmp, 'bad.dtb')]);
    assert.equal(r.status, 2, `-seed ${bad}`);
    assert.match(r.stderr, /-seed .*: expected a whole number from 0 to 4294967295/);
  }
});

test('Linux through the CLI on a pipe: commands run and poweroff exits 0', { timeout: 300_000 }, async () => {
  const g = requireGuest();
  const child = spawn(process.execPath, [BIN, 'run', '--kernel', g.kernel, '--initrd', g.initrd, '--append', 'console=ttyS0'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', typed = false;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString('latin1');
    // Type once the shell is up (input typed while the kernel is still booting may be lost, as on hardware).
    if (!typed && out.includes('~ # ')) { typed = true; child.stdin.write('echo sum=$((40+2))\npoweroff\n'); }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 280_000);
  const status = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  assert.match(out, /sum=42/);
  assert.match(out, /reboot: Power down/);
  assert.equal(status, 0);
});

test('Linux through the CLI: input piped before boot survives the UART set-up (echo X; poweroff)', { timeout: 300_000 }, async () => {
  const g = requireGuest();
  const r = await tv(['run', '--kernel', g.kernel, '--initrd', g.initrd, '--append', 'console=ttyS0'],
    { input: 'echo X$((6*7))\npoweroff\n', timeoutMs: 280_000 });
  assert.match(r.stdout, /^X42\r?$/m, `the command ran, every byte intact:\n${r.stdout.slice(-1500)}`);
  assert.match(r.stdout, /reboot: Power down/);
  assert.equal(r.status, 0);
});

test('console escapes: Ctrl-A X quits, Ctrl-A H helps, Ctrl-A Ctrl-A sends Ctrl-A; pipes pass bytes through', () => {
  const fakeInput = (tty: boolean): ConsoleInput => ({
    isTTY: tty, setRawMode: tty ? () => undefined : undefined,
    on: () => undefined, removeAllListeners: () => undefined, resume: () => undefined, pause: () => undefined,
  });
  const sent: number[] = [];
  let quit = 0;
  let messages = '';
  const t = new TerminalConsole(fakeInput(true), { write: (s) => { messages += String(s); } }, (b) => sent.push(...b), () => quit++);
  t.onData(Buffer.from('ab\x01\x01c\x01h'));
  assert.deepEqual(sent, [0x61, 0x62, 0x01, 0x63]);
  assert.match(messages, /C-a x\s+exit/);
  assert.equal(quit, 0);
  t.onData(Buffer.from('\x01'));
  t.onData(Buffer.from('x'));
  assert.equal(quit, 1);
  let power = 0;
  const pw = new TerminalConsole(fakeInput(true), { write: () => undefined }, (b) => sent.push(...b), () => quit++, () => power++);
  pw.onData(Buffer.from('\x01p\x01P'));
  assert.equal(power, 2, 'Ctrl-A P presses the power button');
  assert.deepEqual(sent, [0x61, 0x62, 0x01, 0x63], 'and sends nothing to the guest');
  const piped: number[] = [];
  const p = new TerminalConsole(fakeInput(false), { write: () => undefined }, (b) => piped.push(...b), () => quit++);
  p.onData(Buffer.from('\x01x'));
  assert.deepEqual(piped, [0x01, 0x78]);
  assert.equal(quit, 1);
});
