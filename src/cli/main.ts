/**
 * The `typevisor` command: run a VM, dump its device tree, build the default guest.
 * `main` returns the exit status; only bin/typevisor.js touches process.exitCode.
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setWasmTier, type WasmTier } from '../host/wasm-tier.js';
import { Machine, BootError, DEFAULT_JIT_THRESHOLD, rngSeedFrom, randomRngSeed, type MachineConfig, type MachineExit, type RawImage, type MachineState } from '../machine/machine.js';
import { VirtBoard } from '../machine/virt.js';
import { MAX_ICOUNT_SHIFT, type ClockMode } from '../machine/clock.js';
import { ElfError } from '../machine/elf.js';
import { UserError, loadImage } from '../host/images.js';
import { findDefaultGuest, guestDir, cacheDir } from '../host/guest-cache.js';
import { TerminalConsole, ESCAPE_HELP, type ConsoleInput, type ConsoleOutput } from '../host/terminal.js';
import { parseFlags, parseSize, parseAddress, USAGE_STATUS, type FlagSpec, type Parsed } from './args.js';
import { parseVirtio, isVirtioDevice, openVirtio, type VirtioRequest } from './devices.js';
import { encodeSnapshot, decodeSnapshot, readSnapshotHeader, SnapshotError, useDeflateCodec, type SnapshotHeader } from '../snapshot/format.js';
import { zlibCodec } from '../host/snapshot-zlib.js';
import { writeFileAtomic, readSnapshotFile, diskIdentity, checkDisks, bundleDisks, writeBundle } from '../host/snapshot-file.js';
import { DirtyBlock } from '../host/storage/dirty.js';
import { RESTORE_KERNEL, portableMachine } from '../snapshot/portable.js';
import type { RunnerConfig } from '../vmm/protocol.js';

export interface CliIo {
  stdin: ConsoleInput;
  stdout: ConsoleOutput & { isTTY?: boolean; on?(event: 'error', cb: (e: Error) => void): unknown; off?(event: 'error', cb: (e: Error) => void): unknown };
  stderr: ConsoleOutput;
  env: NodeJS.ProcessEnv;
}

useDeflateCodec(zlibCodec); // snapshots deflate and inflate on zlib's thread pool

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const MiB = 1 << 20;
const DEFAULT_MEMORY = 512 * MiB;
const MIN_MEMORY = 4 * MiB;
const MAX_MEMORY = 0xf000_0000;
const DEFAULT_GUEST_APPEND = 'console=ttyS0';

/**
 * The other commands' modules load when they run (their HTTP servers and clients, disk
 * tools): `typevisor run`, what each VM start pays for, loads ~10 ms less.
 */
const vmModule = (): Promise<typeof import('./vm.js')> => import('./vm.js');
const webModule = (): Promise<typeof import('./web.js')> => import('./web.js');
const imgModule = (): Promise<typeof import('./img.js')> => import('./img.js');

async function helpText(): Promise<string> {
  const [{ VM_HELP }, { WEB_HELP }] = await Promise.all([vmModule(), webModule()]);
  return `${HELP}

${VM_HELP}
${WEB_HELP}`;
}

const HELP = `Usage: typevisor <command> [options]

Commands:
  run       boot a virtual machine (the default guest if no --kernel or --bios file)
  dumpdtb   write the machine's device tree blob
  image     build (image build [--force]) or locate (image path) the default guest
  img       disk images: create, info, convert, check (qemu-img spelling; 'img help')
  daemon    the VM manager: many VMs, each in its own process, behind a REST API
  vm        talk to the daemon: list, define, start, console, ... ('vm help')
  web       serve a page that runs a VM inside the browser
  help      this text
  --version print the version

typevisor run [options]
  -m, --memory SIZE         guest RAM (default 512M; K/M/G suffixes, plain numbers are MiB)
  --kernel FILE             Linux Image (gzip accepted), ELF or raw binary
  --initrd FILE             initial ramdisk
  --append "ARGS"           kernel command line
  --bios FILE|none|default  M-mode firmware (OpenSBI fw_dynamic/fw_jump, U-Boot via OpenSBI,
                            a bare-metal ELF or raw binary at 0x80000000); 'none' starts the
                            kernel in M-mode; default: the built-in SBI (no firmware needed)
  --device loader,file=FILE,addr=ADDR
                            place a raw file in guest memory (repeatable)
  -drive file=FILE[,format=raw|qcow2][,if=virtio][,readonly=on][,snapshot=on][,cache=writeback|none]
                            a virtio-blk disk (repeatable; the first is /dev/vda)
  -hda FILE                 the same as -drive file=FILE, before any -drive
  -snapshot                 write to throw-away overlays: no image is modified
  -device virtio-rng-device an entropy source fed by the host's CSPRNG (/dev/hwrng)
  -chardev socket,id=ID,path=SOCK,server=on[,wait=off] | -chardev file,id=ID,path=FILE
  -device virtio-serial-device -device virtconsole,chardev=ID
                            a virtio console (hvc0) on a unix socket or an output file
  -nic user[,hostfwd=tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT][,restrict=on][,mac=MAC][,pcap=FILE]
                            a virtio-net NIC on user-mode networking (NAT; the guest is
                            10.0.2.15 by DHCP, the host's 127.0.0.1 is 10.0.2.2)
  -nic socket,connect=|listen=HOST:PORT   a NIC on QEMU's socket netdev (another VM/switch)
  -nic switch,name=NAME[,listen=|connect=HOST:PORT][,uplink=on]
                            a NIC on a named switch (VMs in one or several processes)
  -netdev user|socket|switch,id=ID,... -device virtio-net-device,netdev=ID[,mac=MAC]
                            the same in two parts; MACs default to 52:54:00:12:34:56, :57, ...
  -object filter-dump,id=F,netdev=ID,file=FILE
                            capture a netdev's frames to a pcap file (or pcap=FILE on it)
  --accel interp|jit[,threshold=N][,tier=late|v8|baseline]
                            execution: hot code translated to WebAssembly after N entries
                            (the default: jit, N = 50, tier late), or the interpreter alone
  --no-reboot               exit instead of rebooting when the guest resets
  --clock host|virtual      guest time: the host's clock (default), or virtual time that
                            advances with instructions (deterministic; WFI skips ahead)
  --icount shift=N          virtual time, 2^N ns per instruction (QEMU's -icount; default 4)
  -seed N                   the device tree's /chosen/rng-seed from N (0 to 4294967295), not
                            random: with --icount, runs repeat exactly
  --restore FILE            resume a snapshot (with no machine flags: the flags it was saved with,
                            or a browser's or daemon's machine: its RAM size and boot path)
  --snapshot-file FILE      where Ctrl-A S saves (default typevisor-YYYYMMDD-HHMMSS.tvs)
  --with-disks              Ctrl-A S writes a bundle: a directory (default .tvb) holding the
                            snapshot and consistent copies of the disks; --restore takes it too
                            (the VM then runs on the bundle's disks)
  -M virt, -nographic       accepted for QEMU compatibility

  The console is the board's 16550 UART (ttyS0). On a terminal: Ctrl-A X quits,
  Ctrl-A P presses the power button, Ctrl-A S saves a snapshot, Ctrl-A H shows the escapes. Exit status: 0 on guest poweroff, the guest's failure code
  (SiFive test device or HTIF), 1 on errors, 2 on bad usage.

typevisor dumpdtb [-m SIZE] [--append ARGS] [--kernel F --initrd F] [-o FILE]

Options take one or two dashes, and --opt=value or --opt value.`;

const MACHINE_FLAGS: FlagSpec[] = [
  { name: 'm', aliases: ['memory'], value: true },
  { name: 'kernel', value: true },
  { name: 'initrd', value: true },
  { name: 'append', value: true },
  { name: 'bios', value: true },
  { name: 'device', value: true, repeat: true },
  { name: 'drive', value: true, repeat: true },
  { name: 'hda', value: true },
  { name: 'snapshot', value: false },
  { name: 'chardev', value: true, repeat: true },
  { name: 'M', aliases: ['machine'], value: true },
  { name: 'smp', value: true },
  { name: 'accel', value: true },
  { name: 'seed', value: true },
];
/** --clock virtual without --icount: 16 ns per instruction, near the interpreter's real speed. */
const DEFAULT_ICOUNT_SHIFT = 4;
/** Networking flags (-nic, -netdev), kept apart from the machine flags. */
const NET_FLAGS: FlagSpec[] = [{ name: 'nic', value: true, repeat: true }, { name: 'netdev', value: true, repeat: true },
  { name: 'object', value: true, repeat: true }];
const RUN_FLAGS: FlagSpec[] = [...MACHINE_FLAGS, ...NET_FLAGS, { name: 'nographic', value: false }, { name: 'no-reboot', value: false },
  { name: 'clock', value: true }, { name: 'icount', value: true }, { name: 'restore', value: true }, { name: 'snapshot-file', value: true },
  { name: 'with-disks', value: false }];
/** Flags that do not define the machine: with only these, --restore takes the saved flags. */
const NON_MACHINE_FLAGS = new Set(['restore', 'snapshot-file', 'nographic', 'no-reboot', 'with-disks']);

/** --clock host|virtual and QEMU's -icount [shift=]N. */
function clockMode(p: Parsed): ClockMode {
  const kind = one(p, 'clock'), icount = one(p, 'icount');
  if (kind !== undefined && kind !== 'host' && kind !== 'virtual') {
    throw new UserError(`--clock ${kind}: expected 'host' or 'virtual'`, USAGE_STATUS);
  }
  if (icount === undefined) return kind === 'virtual' ? { kind: 'virtual', shift: DEFAULT_ICOUNT_SHIFT } : { kind: 'host' };
  if (kind === 'host') throw new UserError('--icount needs the virtual clock, not --clock host', USAGE_STATUS);
  const m = /^(?:shift=)?(\d+)$/.exec(icount);
  const shift = m ? Number(m[1]) : NaN;
  if (!(shift <= MAX_ICOUNT_SHIFT)) throw new UserError(`--icount ${icount}: expected shift=N with N from 0 to ${MAX_ICOUNT_SHIFT}`, USAGE_STATUS);
  return { kind: 'virtual', shift };
}
/** QEMU's -seed N: a reproducible /chosen/rng-seed instead of random bytes. */
function seedFlag(p: Parsed): Uint8Array | undefined {
  const text = one(p, 'seed');
  if (text === undefined) return undefined;
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffff_ffff) throw new UserError(`-seed ${text}: expected a whole number from 0 to 4294967295`, USAGE_STATUS);
  return rngSeedFrom(Number(text));
}
const DTB_FLAGS: FlagSpec[] = [...MACHINE_FLAGS, ...NET_FLAGS, { name: 'o', aliases: ['output'], value: true }];

function defaultIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}

function one(p: Parsed, name: string): string | undefined { return p.flags.get(name)?.[0]; }

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

type BaseConfig = Omit<MachineConfig, 'serial'>;

/** Turn machine flags into a MachineConfig (files read and checked here). */
function machineConfig(p: Parsed, io: CliIo, command: string, standInKernel?: Uint8Array): BaseConfig {
  const jitThreshold = parseAccel(one(p, 'accel'), command);
  const machineType = one(p, 'M');
  if (machineType !== undefined && machineType.split(',')[0] !== 'virt') {
    throw new UserError(`${command}: unsupported machine '${machineType}' (only 'virt')`, USAGE_STATUS);
  }
  const smp = one(p, 'smp');
  if (smp !== undefined && smp !== '1') throw new UserError(`${command}: -smp ${smp}: only one hart is supported`, USAGE_STATUS);
  const mText = one(p, 'm');
  const memoryBytes = mText === undefined ? DEFAULT_MEMORY : parseSize(mText, '-m');
  if (memoryBytes < MIN_MEMORY || memoryBytes > MAX_MEMORY || memoryBytes % 4096 !== 0) {
    throw new UserError(`-m ${mText}: memory must be a multiple of 4 KiB between 4 MiB and 3840 MiB`, USAGE_STATUS);
  }
  const loaders: Array<{ file: string; address: number }> = [];
  for (const d of p.flags.get('device') ?? []) {
    if (isVirtioDevice(d)) continue;
    const parts = d.split(',');
    if (parts[0] !== 'loader') throw new UserError(`${command}: unsupported device '${parts[0]}' (supported: loader,file=FILE,addr=ADDR; virtio-rng-device; virtio-serial-device; virtconsole,chardev=ID; virtio-net-device,netdev=ID)`, USAGE_STATUS);
    const kv = new Map(parts.slice(1).map((s) => { const i = s.indexOf('='); return [s.slice(0, i), s.slice(i + 1)] as const; }));
    const file = kv.get('file'), addr = kv.get('addr');
    if (!file || !addr) throw new UserError(`${command}: --device loader needs file= and addr=`, USAGE_STATUS);
    loaders.push({ file, address: parseAddress(addr, `--device loader,file=${file}`) });
  }
  const biosArg = one(p, 'bios');
  let bios: MachineConfig['bios'] = null;
  if (biosArg === 'none') bios = 'none';
  else if (biosArg !== undefined && biosArg !== 'default') bios = loadImage(biosArg, 'firmware', { gunzip: false });

  let kernelPath = one(p, 'kernel');
  let initrdPath = one(p, 'initrd');
  let append = one(p, 'append');
  if (kernelPath === undefined && !(bios instanceof Uint8Array) && command === 'run' && !standInKernel) {
    const g = findDefaultGuest(io.env);
    if (!g) {
      throw new UserError(`no --kernel given and no default guest in ${guestDir(io.env)}.\n` +
        `Build it with:  typevisor image build   (or: npm run guest)`);
    }
    kernelPath = g.kernel;
    initrdPath ??= g.initrd;
    append ??= DEFAULT_GUEST_APPEND;
  }
  const kernel = kernelPath === undefined ? standInKernel ?? null : loadImage(kernelPath, 'kernel');
  const initrd = initrdPath === undefined ? null : loadImage(initrdPath, 'initrd', { gunzip: false });
  if (initrd && !kernel) throw new UserError(`${command}: --initrd needs --kernel`, USAGE_STATUS);

  const images: RawImage[] = loaders.map((l) => ({ name: l.file, address: l.address, data: loadImage(l.file, 'image', { gunzip: false }) }));
  return { memoryBytes, bios, kernel, initrd, append: append ?? '', images, jitThreshold, rngSeed: seedFlag(p) };
}


/**
 * --accel interp | jit[,threshold=N][,tier=late|v8|baseline] (QEMU's -accel names the
 * execution engine). tier picks how V8 optimizes translated code (host/wasm-tier.ts);
 * process-wide, so it is set here, before any compile.
 */
export function parseAccel(text: string | undefined, command: string): number {
  // The translator is the default: with V8's late tiering a Linux boot is faster with it.
  if (text === 'interp') return Infinity;
  text ??= 'jit';
  const [kind, ...opts] = text.split(',');
  if (kind !== 'jit' && kind !== 'tcg') throw new UserError(`${command}: unknown accelerator '${kind}' (interp or jit)`, USAGE_STATUS);
  let threshold = DEFAULT_JIT_THRESHOLD;
  let tier: WasmTier = 'late';
  for (const o of opts) {
    const t = /^tier=(late|v8|baseline)$/.exec(o);
    if (t) { tier = t[1] as WasmTier; continue; }
    const m = /^threshold=(\d+)$/.exec(o);
    if (!m) throw new UserError(`${command}: --accel ${kind}: unknown option '${o}' (threshold=N, tier=late|v8|baseline)`, USAGE_STATUS);
    threshold = Number(m[1]);
  }
  setWasmTier(tier);
  return threshold;
}

/** The virtio devices the flags ask for (checked, nothing opened yet). */
function virtioRequests(p: Parsed): VirtioRequest[] {
  return parseVirtio({
    hda: one(p, 'hda'), drives: p.flags.get('drive') ?? [], devices: p.flags.get('device') ?? [],
    chardevs: p.flags.get('chardev') ?? [], snapshot: p.flags.has('snapshot'),
    netdevs: p.flags.get('netdev') ?? [], nics: p.flags.get('nic') ?? [], objects: p.flags.get('object') ?? [],
  });
}

/** Machine construction errors that are the user's (bad ELF, images that do not fit). */
function newMachine(cfg: MachineConfig, paths: Parsed): Machine {
  try {
    return new Machine(cfg);
  } catch (e) {
    if (e instanceof ElfError) {
      const which = cfg.bios instanceof Uint8Array ? `firmware '${one(paths, 'bios')}'` : `kernel '${one(paths, 'kernel') ?? 'default guest'}'`;
      throw new UserError(`${which}: ${e.message}`);
    }
    if (e instanceof BootError) throw new UserError(e.message);
    throw e;
  }
}

function exitStatus(e: MachineExit, io: CliIo): number {
  switch (e.reason) {
    case 'poweroff': return 0;
    case 'stopped': return 0;
    case 'reset': io.stderr.write('typevisor: the guest requested a reset\n'); return 0;
    case 'fail': case 'htif': return e.code & 0xff || (e.code === 0 ? 0 : 1);
    case 'panic': io.stderr.write(`typevisor: guest panic: ${e.message ?? 'unknown'}\n`); return 1;
    case 'error': io.stderr.write(`typevisor: machine error: ${e.message ?? 'unknown'}\n`); return 1;
  }
}

async function cmdRun(argvIn: readonly string[], io: CliIo): Promise<number> {
  let argv = argvIn;
  let p = parseFlags(argv, RUN_FLAGS, 'run');
  if (p.positional.length) throw new UserError(`run: unexpected argument '${p.positional[0]}'`, USAGE_STATUS);
  const restoreFile = one(p, 'restore');
  let restore: { bytes: Uint8Array; header: SnapshotHeader } | null = null;
  /** A runner's snapshot (the browser's, the daemon's): restored into a stand-in kernel. */
  let standIn = false;
  if (restoreFile !== undefined) {
    const bytes = (() => { try { return readSnapshotFile(restoreFile); } catch (e) { throw new UserError((e as Error).message); } })();
    let header: SnapshotHeader;
    try { header = readSnapshotHeader(bytes); } catch (e) { throw new UserError(`--restore ${restoreFile}: ${(e as Error).message}`); }
    restore = { bytes, header };
    const saved = header.machine as { kind?: string; argv?: unknown };
    if ([...p.flags.keys()].every((k) => NON_MACHINE_FLAGS.has(k)) && saved?.kind === 'runner') {
      argv = [...runnerArgv(header, restoreFile), ...argv];
      p = parseFlags(argv, RUN_FLAGS, 'run');
      standIn = true;
    } else if ([...p.flags.keys()].every((k) => NON_MACHINE_FLAGS.has(k))) {
      if (saved?.kind !== 'cli' || !Array.isArray(saved.argv) || !saved.argv.every((a) => typeof a === 'string')) {
        throw new UserError(`--restore ${restoreFile}: the snapshot was not saved by 'typevisor run'; give the machine's flags`, USAGE_STATUS);
      }
      argv = [...(saved.argv as string[]), ...argv];
      p = parseFlags(argv, RUN_FLAGS, 'run');
    }
  }
  const base = { ...machineConfig(p, io, 'run', standIn ? RESTORE_KERNEL : undefined), clock: clockMode(p) };
  const reqs = virtioRequests(p);
  const drives = reqs.flatMap((r) => (r.kind === 'blk' ? [r.drive] : []));
  if (restoreFile !== undefined) {
    // A bundle: the machine runs on the bundle's copies of its disks, in drive order.
    let copies;
    try { copies = bundleDisks(restoreFile); } catch (e) { throw new UserError(`--restore ${restoreFile}: ${(e as Error).message}`); }
    if (copies) {
      if (copies.length !== drives.length) throw new UserError(`--restore ${restoreFile}: the bundle holds ${copies.length} disk(s), the machine has ${drives.length}`);
      copies.forEach((c, i) => Object.assign(drives[i], { file: c.file, format: c.format, readOnly: c.readOnly }));
    }
  }
  const identities = () => drives.map((d) => diskIdentity(d.file, d.format, d.readOnly));
  // Identities before the disks are opened (opening a qcow2 image for writing may touch it).
  if (restore) {
    try { checkDisks(restore.header.disks, identities()); } catch (e) { throw new UserError(`--restore ${restoreFile ?? ''}: ${(e as Error).message}`); }
  }
  const vio = await openVirtio(reqs, io.stderr);
  // --with-disks: the disks are copied while the guest runs, tracking what it writes meanwhile.
  const withDisks = p.flags.has('with-disks');
  const tracked: DirtyBlock[] = [];
  if (withDisks) {
    vio.specs = vio.specs.map((s) => {
      if (s.kind !== 'blk') return s;
      const t = new DirtyBlock(s.disk);
      tracked.push(t);
      return { ...s, disk: t };
    });
  }
  const machineArgv = withoutFlags(argv, NON_MACHINE_FLAGS);
  const snapshots: Snapshots = {
    file: one(p, 'snapshot-file'),
    ...(withDisks ? {
      bundle: tracked.map((disk, i) => ({ disk, file: drives[i].file, readOnly: drives[i].readOnly, format: diskIdentity(drives[i].file, drives[i].format, false).format })),
    } : {}),
    header: () => {
      const overlay = drives.find((d) => d.snapshot);
      if (overlay) throw new Error(`drive '${overlay.file}' writes to a -snapshot overlay, which is not kept: a snapshot could not be restored`);
      // A runner's machine saved again keeps its definition (the stand-in kernel is not a flag).
      const machine = standIn && restore ? restore.header.machine : { kind: 'cli', argv: machineArgv };
      return { typevisor: version(), created: new Date().toISOString(), machine, memoryBytes: base.memoryBytes, disks: identities() };
    },
  };
  try {
    // Always a power button (virtio-input), for Ctrl-A P.
    return await runMachine(p, io, { ...base, virtio: [...vio.specs, { kind: 'input' }] }, async (m, first) => {
      vio.attach(m);
      if (!first || !restore) return;
      try {
        const snap = await decodeSnapshot(restore.bytes, { into: m.board.bus.ram, intoWritten: m.ramWritten() });
        m.load(snap.state);
      } catch (e) {
        throw new UserError(`--restore ${restoreFile ?? ''}: ${e instanceof SnapshotError ? '' : 'cannot load: '}${(e as Error).message}`);
      }
    }, snapshots);
  } finally {
    // Disks are flushed and closed on every exit path.
    await vio.close();
  }
}

/**
 * The flags of a runner's machine (a snapshot saved by the daemon or the in-browser VM):
 * memory, boot path and host disks. Its kernel is not needed (a restore overwrites RAM)
 * and may be a URL; a reset would boot the stand-in, so the machine exits instead.
 */
function runnerArgv(header: SnapshotHeader, file: string): string[] {
  const c = (header.machine as { config?: Partial<RunnerConfig> }).config ?? {};
  const argv = ['-m', `${header.memoryBytes / 1024}K`, '--no-reboot'];
  const boot = portableMachine(header).boot;
  if (boot === 'none') argv.push('--bios', 'none');
  if (boot === 'firmware') {
    if (typeof c.bios !== 'string' || !c.bios.startsWith('/')) throw new UserError(`--restore ${file}: its firmware '${String(c.bios)}' is not a host file; give the machine's flags`, USAGE_STATUS);
    argv.push('--bios', c.bios);
  }
  for (const d of Array.isArray(c.drives) ? c.drives : []) {
    if (typeof d?.file !== 'string' || !d.file.startsWith('/')) {
      throw new UserError(`--restore ${file}: its disk '${String(d?.file)}' is not a host file (a browser's disk lives in its memory, not in the snapshot)`);
    }
    argv.push('-drive', `file=${d.file}${d.format ? `,format=${d.format}` : ''}${d.readOnly ? ',readonly=on' : ''}`);
  }
  return argv;
}

/** argv without the named flags (and their values). */
function withoutFlags(argv: readonly string[], names: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([^=]+)(=.*)?$/.exec(argv[i]);
    if (m && names.has(m[1])) {
      if (m[2] === undefined && RUN_FLAGS.find((f) => f.name === m[1])?.value) i++;
      continue;
    }
    out.push(argv[i]);
  }
  return out;
}

interface Snapshots {
  file: string | undefined;
  /** --with-disks: the disks a bundle copies. */
  bundle?: Parameters<typeof writeBundle>[1];
  /** The header for a snapshot now (throws if this machine cannot be saved). */
  header(): SnapshotHeader;
}

/** Ctrl-A S: pause, drain, save, write atomically, resume. */
async function saveSnapshot(machine: Machine, snaps: Snapshots, io: CliIo): Promise<void> {
  const file = snaps.file ?? `typevisor-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}.${snaps.bundle ? 'tvb' : 'tvs'}`;
  const t0 = performance.now();
  if (snaps.bundle) { await saveBundle(machine, snaps, snaps.bundle, file, io); return; }
  const wasPaused = machine.paused;
  machine.pause();
  try {
    const state = await machine.snapshot();
    const header = snaps.header(); // disk identities while the guest cannot write
    const bytes = await encodeSnapshot(header, state);
    writeFileAtomic(file, bytes);
    io.stderr.write(`\r\ntypevisor: saved ${file} (${(bytes.length / (1 << 20)).toFixed(1)} MiB in ${Math.round(performance.now() - t0)} ms)\r\n`);
  } catch (e) {
    io.stderr.write(`\r\ntypevisor: snapshot not saved: ${(e as Error).message}\r\n`);
  } finally {
    if (!wasPaused) machine.resume();
  }
}

/** Ctrl-A S with --with-disks: the disks are copied while the guest runs; it pauses for the state and the last dirty blocks. */
async function saveBundle(machine: Machine, snaps: Snapshots, disks: NonNullable<Snapshots['bundle']>, file: string, io: CliIo): Promise<void> {
  const t0 = performance.now();
  try {
    let state: MachineState | null = null, header: SnapshotHeader | null = null;
    const r = await writeBundle(file, disks, async (finalPass) => {
      const wasPaused = machine.paused;
      machine.pause();
      try {
        state = await machine.snapshot();
        header = snaps.header();
        await finalPass();
      } finally {
        if (!wasPaused) machine.resume();
      }
    }, (ids) => encodeSnapshot({ ...header!, disks: ids }, state!));
    io.stderr.write(`\r\ntypevisor: saved ${file} (${(r.bytes / (1 << 20)).toFixed(1)} MiB, ${(r.diskBytes / (1 << 20)).toFixed(1)} MiB of disk copied in ${Math.round(performance.now() - t0)} ms)\r\n`);
  } catch (e) {
    io.stderr.write(`\r\ntypevisor: snapshot not saved: ${(e as Error).message}\r\n`);
  }
}

async function runMachine(p: Parsed, io: CliIo, base: BaseConfig, attach: (m: Machine, first: boolean) => Promise<void>, snaps?: Snapshots): Promise<number> {
  const noReboot = p.flags.has('no-reboot');
  const serial = { write: (b: Uint8Array) => { io.stdout.write(b); } };
  let machine = newMachine({ ...base, serial }, p);
  await attach(machine, true);
  let saving = false;
  const save = snaps ? (): void => {
    if (saving) return;
    saving = true;
    void saveSnapshot(machine, snaps, io).finally(() => { saving = false; });
  } : undefined;
  const term = new TerminalConsole(io.stdin, io.stderr, (b) => machine.sendInput(b), () => { stopped = true; machine.stop(); }, () => { machine.powerButton(); }, save);
  let stopped = false;
  const onSignal = (): void => { stopped = true; machine.stop(); };
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  if (!term.interactive) process.on('SIGINT', onSignal);
  // The reader of our output went away (a closed pipe): stop the VM, as QEMU would on SIGPIPE.
  const onOutputError = (): void => { stopped = true; machine.stop(); };
  io.stdout.on?.('error', onOutputError);
  term.attach();
  try {
    for (;;) {
      const exit = await machine.run();
      if (exit.reason === 'reset' && !noReboot && !stopped) {
        // Let the event loop run (signals, input) between boots: a guest may reset at once, forever.
        await new Promise<void>((r) => setImmediate(r));
        if (stopped) return 0;
        machine = newMachine({ ...base, serial }, p);
        await attach(machine, false);
        continue;
      }
      return exitStatus(exit, io);
    }
  } finally {
    term.detach();
    io.stdout.off?.('error', onOutputError);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('SIGINT', onSignal);
  }
}

function cmdDumpDtb(argv: readonly string[], io: CliIo): number {
  const p = parseFlags(argv, DTB_FLAGS, 'dumpdtb');
  if (p.positional.length) throw new UserError(`dumpdtb: unexpected argument '${p.positional[0]}'`, USAGE_STATUS);
  const base = machineConfig(p, io, 'dumpdtb');
  virtioRequests(p); // checked; the device tree lists every slot whether plugged or not
  let dtb: Uint8Array;
  if (base.kernel) {
    dtb = newMachine({ ...base, serial: { write() {} } }, p).dtb;
  } else {
    const board = new VirtBoard({
      memoryBytes: base.memoryBytes, serial: { write() {} }, monoClockMs: () => 0, wallClockMs: () => 0,
      onPowerOff() {}, onReset() {},
    });
    dtb = board.buildDtb({ bootargs: base.append, rngSeed: base.rngSeed ?? randomRngSeed() });
  }
  const out = one(p, 'o');
  if (out !== undefined) {
    try { writeFileSync(out, dtb); } catch (e) { throw new UserError(`cannot write '${out}': ${(e as Error).message}`); }
  } else {
    if (io.stdout.isTTY) throw new UserError('dumpdtb: refusing to write binary to a terminal; give -o FILE', USAGE_STATUS);
    io.stdout.write(dtb);
  }
  return 0;
}

async function cmdImage(argv: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'path') {
    const p = parseFlags(rest, [], 'image path');
    if (p.positional.length) throw new UserError(`image path: unexpected argument '${p.positional[0]}'`, USAGE_STATUS);
    const dir = guestDir(io.env);
    io.stdout.write(`${dir}\n`);
    io.stderr.write(findDefaultGuest(io.env) ? 'default guest: present\n' : 'default guest: not built (typevisor image build)\n');
    return 0;
  }
  if (sub === 'build') {
    const p = parseFlags(rest, [{ name: 'force', value: false }, { name: 'jobs', aliases: ['j'], value: true }, { name: 'check', value: false }], 'image build');
    if (p.positional.length) throw new UserError(`image build: unexpected argument '${p.positional[0]}'`, USAGE_STATUS);
    const dir = io.env.TYPEVISOR_GUEST_DIR ? guestDir(io.env) : join(cacheDir(io.env), 'guest');
    if (!p.flags.has('force') && !p.flags.has('check') && findDefaultGuest({ ...io.env, TYPEVISOR_GUEST_DIR: dir })) {
      io.stderr.write(`typevisor: the default guest is already built in ${dir} (use --force to rebuild)\n`);
      return 0;
    }
    const script = join(repoRoot, 'scripts', 'build-guest.sh');
    if (!existsSync(script)) throw new UserError(`the guest recipe is missing: ${script}`);
    const args = [script, '--out', dir];
    const jobs = one(p, 'jobs');
    if (jobs !== undefined) args.push('--jobs', jobs);
    if (p.flags.has('check')) args.push('--check');
    return await new Promise<number>((resolveStatus) => {
      const child = spawn('bash', args, { stdio: ['ignore', 'inherit', 'inherit'], env: io.env });
      child.on('error', (e) => { io.stderr.write(`typevisor: cannot run ${script}: ${e.message}\n`); resolveStatus(1); });
      child.on('exit', (code, signal) => resolveStatus(code ?? (signal ? 1 : 0)));
    });
  }
  throw new UserError(`image: expected 'build' or 'path'${sub ? `, got '${sub}'` : ''}`, USAGE_STATUS);
}

export async function main(argv: readonly string[], ioIn?: Partial<CliIo>): Promise<number> {
  const io: CliIo = { ...defaultIo(), ...ioIn };
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined: case 'help': case '--help': case '-h':
        io.stdout.write(await helpText());
        return cmd === undefined ? USAGE_STATUS : 0;
      case '--version': case '-V': case 'version':
        io.stdout.write(`typevisor ${version()}\n`);
        return 0;
      case 'run': return await cmdRun(rest, io);
      case 'dumpdtb': return cmdDumpDtb(rest, io);
      case 'image': return await cmdImage(rest, io);
      case 'img': return await (await imgModule()).cmdImg(rest, io);
      case 'daemon': return await (await vmModule()).cmdDaemon(rest, io);
      case 'vm': return await (await vmModule()).cmdVm(rest, io);
      case 'web': return await (await webModule()).cmdWeb(rest, io);
      default:
        // QEMU habit: options straight away mean `run`.
        if (cmd.startsWith('-')) return await cmdRun(argv, io);
        throw new UserError(`unknown command '${cmd}' (see 'typevisor help')`, USAGE_STATUS);
    }
  } catch (e) {
    if (e instanceof UserError) {
      io.stderr.write(`typevisor: ${e.message}\n`);
      return e.status;
    }
    throw e;
  }
}

export { ESCAPE_HELP };
