/**
 * Network throughput with the guest in typevisor against the same guest in
 * qemu-system-riscv64, in one run. Host->guest: wget of a blob from a Node HTTP server to
 * /dev/null; guest->host: dd of zeroes into nc to a Node TCP sink (byte count checked);
 * VM->VM: dd | nc from one VM to `nc -l` in the other. Parts:
 *   user      typevisor's guest on its NAT (all offloads) and QEMU's on -nic user, both
 *             booted, their transfers taking turns;
 *   offloads  typevisor's guest with checksum offload only, and with none;
 *   switch    two typevisor VMs on a switch in this process (one thread for both);
 *   procs     two `typevisor run` processes on a daemon-style switch over a unix socket and
 *             two QEMU VMs on another switch of the same kind (-netdev stream), all four
 *             booted, the two pairs' transfers taking turns.
 * Wall time from typing the command to the prompt, best of N runs after K untimed ones
 * (default 1: both emulators' translation caches and, for typevisor, V8's optimizing tier
 * warm up, as in a VM that has been serving); taking turns, the engines compared see the
 * host's load alike. For typevisor guests also the guest instructions executed per MiB moved
 * (mean over all runs; includes the shell and wget/dd/nc themselves), a figure the host's
 * load does not disturb.
 *   node dist/bench/vnet.js [--runs N] [--warmup K] [--mib M] [--parts user,offloads,switch,procs] [--accel jit|interp]
 * typevisor guests run with the translator (the CLI's default) unless --accel interp.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { loadavg, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeHostNet } from '../src/host/net/node-host.js';
import { setWasmTier } from '../src/host/wasm-tier.js';
import { UserNet } from '../src/host/net/slirp.js';
import { Switch } from '../src/host/net/switch.js';
import type { VirtioNet } from '../src/devices/virtio/net.js';
import type { NetBackend } from '../src/devices/device.js';
import { GuestConsole } from '../tests/lib/console.js';
import { QemuGuest } from '../tests/lib/qemu-guest.js';
import { CliGuest } from '../tests/lib/cli-guest.js';
import { Switches, switchSocketPath } from '../src/daemon/switches.js';
import { guestDir } from '../tests/lib/toolchain.js';
import { httpServer } from '../tests/lib/net-servers.js';
import { PROMPT, UDHCPC_SCRIPT } from '../tests/lib/net-guest.js';

type Runner = (cmd: string) => Promise<string>;

const PARTS = ['user', 'offloads', 'switch', 'procs'];

/** The translator's threshold for typevisor guests (Infinity: the interpreter alone). */
let jitThreshold = 50;

/** Untimed transfers before the timed ones (translation caches and V8's tiers warm up, QEMU's TCG cache too). */
let warmup = 1;

/** One timed transfer: seconds from typing `cmd` to the prompt. */
function timed(run: Runner, cmd: string): () => Promise<number> {
  return async () => {
    const t0 = performance.now();
    const out = await run(cmd);
    if (/error|refused|failed/i.test(out)) throw new Error(`${cmd}: ${out}`);
    return (performance.now() - t0) / 1000;
  };
}

/**
 * Best seconds of `runs` timed transfers each, after `warmup` untimed ones, the transfers
 * taking turns (A B, then B A, ...) so that the engines compared see the host's load alike.
 */
async function inTurns(transfers: Array<() => Promise<number>>, runs: number): Promise<number[]> {
  const best = transfers.map(() => Infinity);
  for (let i = -warmup; i < runs; i++) {
    const order = transfers.map((_, k) => ((i + warmup) % 2 === 0 ? k : transfers.length - 1 - k));
    for (const k of order) {
      const s = await transfers[k]();
      if (i >= 0) best[k] = Math.min(best[k], s);
    }
  }
  return best;
}

function tvGuest(backend: NetBackend, mac: number, offloads = true, tso = offloads): GuestConsole {
  return new GuestConsole({
    memoryBytes: 256 << 20, bios: null, append: 'console=ttyS0 quiet',
    kernel: readFileSync(join(guestDir, 'Image')), initrd: readFileSync(join(guestDir, 'initramfs.cpio.gz')),
    virtio: [{ kind: 'net', backend, mac: Uint8Array.of(0x52, 0x54, 0, 0, 0, mac), offloads, tso }],
    jitThreshold,
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 2;
  const mib = args.includes('--mib') ? Number(args[args.indexOf('--mib') + 1]) : 8;
  const accel = args.includes('--accel') ? args[args.indexOf('--accel') + 1] : 'jit';
  if (accel !== 'jit' && accel !== 'interp') throw new Error(`--accel ${accel}: jit or interp`);
  if (accel === 'interp') jitThreshold = Infinity;
  else setWasmTier('late');
  if (args.includes('--warmup')) warmup = Number(args[args.indexOf('--warmup') + 1]);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup: a count of untimed runs (0 or more)');
  const parts = (args.includes('--parts') ? args[args.indexOf('--parts') + 1] : PARTS.join(',')).split(',');
  for (const p of parts) if (!PARTS.includes(p)) throw new Error(`--parts: unknown part '${p}' (${PARTS.join(', ')})`);
  const http = await httpServer(new Uint8Array(mib << 20));
  let received = 0;
  const sink = createServer((s) => { s.on('data', (d: Buffer) => { received += d.length; }); s.on('end', () => s.end()); });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const sinkPort = (sink.address() as AddressInfo).port;
  console.log(`host: node ${process.version}, ${cpus()[0]?.model ?? '?'} x${cpus().length}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`command: node dist/bench/vnet.js --runs ${runs} --warmup ${warmup} --mib ${mib} --parts ${parts.join(',')} --accel ${accel}`);
  const down = `wget -q -O /dev/null http://10.0.2.2:${http.port}/blob`;
  const up = `dd if=/dev/zero bs=65536 count=${mib * 16} 2>/dev/null | nc 10.0.2.2 ${sinkPort}`;
  const dhcp = `printf '${UDHCPC_SCRIPT}' > /tmp/dhcp.sh; chmod +x /tmp/dhcp.sh; ip link set eth0 up; udhcpc -i eth0 -n -q -s /tmp/dhcp.sh >/dev/null 2>&1`;
  const row = (what: string, d: number, u: number): void => {
    console.log(`${what}: host->guest ${(mib / d).toFixed(2)} MiB/s (${d.toFixed(2)} s), guest->host ${(mib / u).toFixed(2)} MiB/s (${u.toFixed(2)} s)`);
  };
  /** The sink got every upload of `guests` guests whole. */
  const checkSink = async (guests: number): Promise<void> => {
    await new Promise((r) => setTimeout(r, 500));
    const want = guests * (warmup + runs) * (mib << 20);
    if (received !== want) throw new Error(`the sink received ${received} bytes, not ${want}`);
    received = 0;
  };

  // VM -> VM: addresses on both, then each transfer is dd | nc from `a` to `nc -l` in `b`.
  const vmToVm = async (a: Runner, b: Runner): Promise<() => Promise<number>> => {
    await a('ip addr add 10.0.3.1/24 dev eth0; ip link set eth0 up');
    await b('ip addr add 10.0.3.2/24 dev eth0; ip link set eth0 up');
    return async () => {
      await b('nc -l -p 5000 > /dev/null < /dev/null &');
      await new Promise((r) => setTimeout(r, 500));
      const s = await timed(a, `dd if=/dev/zero bs=65536 count=${mib * 16} 2>/dev/null | nc 10.0.3.2 5000`)();
      await b('wait');
      return s;
    };
  };
  const per = (n: number): string => `${(n / (warmup + runs) / mib / 1e6).toFixed(1)} M instructions/MiB`;
  /** QEMU's -nic user guest->host seconds in this run (the yardstick for VM->VM too). */
  let qemuUp = 0;
  const ratio = (what: string, tv: number, qm: number): string => `${what} ${(qm / tv).toFixed(2)}`;

  // typevisor's guest on its NAT (all offloads) and the same guest in QEMU on -nic user,
  // booted together and measured in turns.
  if (parts.includes('user')) {
    const un = new UserNet(new NodeHostNet());
    await un.start();
    const g = tvGuest(un, 1);
    const q = new QemuGuest(['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0']);
    try {
      await Promise.all([g.expect(PROMPT, 300_000), q.boot()]);
      const tv: Runner = (cmd) => g.run(cmd, PROMPT, 600_000), qm: Runner = (cmd) => q.run(cmd, 600_000);
      await tv(dhcp);
      await qm(dhcp);
      const i0 = g.machine.hart.icount;
      const [d, qd] = await inTurns([timed(tv, down), timed(qm, down)], runs);
      const i1 = g.machine.hart.icount;
      const [u, qu] = await inTurns([timed(tv, up), timed(qm, up)], runs);
      const i2 = g.machine.hart.icount;
      await checkSink(2);
      row('typevisor guest, typevisor -nic user, CSUM/GUEST_CSUM + TSO4', d, u);
      console.log(`  guest CPU: host->guest ${per(i1 - i0)}, guest->host ${per(i2 - i1)}; NAT retransmissions: ${un.stats.tcpTimeouts} timeouts, ${un.stats.tcpFastRetransmits} fast`);
      row('QEMU guest, QEMU -nic user', qd, qu);
      console.log(`  typevisor/QEMU throughput: ${ratio('host->guest', d, qd)}, ${ratio('guest->host', u, qu)}`);
      qemuUp = qu;
    } finally { await g.stop(); un.close(); await q.kill(); }
  }
  // typevisor's guest with fewer offloads: checksums only, none.
  const modes = [{ what: 'CSUM/GUEST_CSUM, no TSO', offloads: true, tso: false }, { what: 'no offloads', offloads: false, tso: false }];
  for (const m of parts.includes('offloads') ? modes : []) {
    const un = new UserNet(new NodeHostNet());
    await un.start();
    const g = tvGuest(un, 1, m.offloads, m.tso);
    try {
      await g.expect(PROMPT, 300_000);
      const run: Runner = (cmd) => g.run(cmd, PROMPT, 600_000);
      await run(dhcp);
      const i0 = g.machine.hart.icount;
      const [d] = await inTurns([timed(run, down)], runs);
      const i1 = g.machine.hart.icount;
      const [u] = await inTurns([timed(run, up)], runs);
      const i2 = g.machine.hart.icount;
      await checkSink(1);
      row(`typevisor guest, typevisor -nic user, ${m.what}`, d, u);
      console.log(`  guest CPU: host->guest ${per(i1 - i0)}, guest->host ${per(i2 - i1)}; NAT retransmissions: ${un.stats.tcpTimeouts} timeouts, ${un.stats.tcpFastRetransmits} fast`);
    } finally { await g.stop(); un.close(); }
  }
  // Two typevisor guests on a switch, both in this process (one thread for both).
  if (parts.includes('switch')) {
    const sw = new Switch('bench');
    const a = tvGuest(sw.createPort(), 0x0a), b = tvGuest(sw.createPort(), 0x0b);
    try {
      await Promise.all([a.expect(PROMPT, 300_000), b.expect(PROMPT, 300_000)]);
      const ia = a.machine.hart.icount, ib = b.machine.hart.icount, c0 = process.cpuUsage();
      const [t] = await inTurns([await vmToVm((c) => a.run(c, PROMPT, 600_000), (c) => b.run(c, PROMPT, 600_000))], runs);
      const cpu = process.cpuUsage(c0);
      console.log(`typevisor guests in one process, VM->VM through a switch: ${(mib / t).toFixed(2)} MiB/s`);
      console.log(`  guest CPU per MiB: sender ${per(a.machine.hart.icount - ia)}, receiver ${per(b.machine.hart.icount - ib)}; host CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s`);
      const na = a.machine.virtioDevices[0] as VirtioNet, nb = b.machine.virtioDevices[0] as VirtioNet;
      console.log(`  sender: ${na.stats.txFrames} frames, ${na.stats.txGsoFrames} from GSO; receiver: ${nb.stats.rxFrames} frames, ${nb.stats.rxGsoFrames} as GSO; switch drops ${sw.dropped}`);
    } finally { await a.stop(); await b.stop(); }
  }
  // Each VM in a process of its own (`typevisor run`, as the daemon runs them) on a switch
  // served over a unix socket the way the daemon's named switches are, and two QEMU VMs on
  // another switch of the same kind (QEMU's -netdev stream), the VM->VM yardstick: all four
  // booted together, the two pairs measured in turns.
  if (parts.includes('procs')) {
    const dir = mkdtempSync(join(tmpdir(), 'tv-vnet-'));
    const switches = new Switches(dir);
    const guests: Array<{ kill(): Promise<void> }> = [];
    try {
      await switches.ensure('bench');
      await switches.ensure('benchq');
      const nic = (sw: string, mac: string): string[] => ['-netdev', `stream,id=n0,server=off,addr.type=unix,addr.path=${switchSocketPath(dir, sw)}`,
        '-device', `virtio-net-device,netdev=n0,mac=52:54:00:00:00:${mac}`];
      const a = new CliGuest([...nic('bench', '0a'), '--accel', accel]), b = new CliGuest([...nic('bench', '0b'), '--accel', accel]);
      guests.push(a, b);
      const qa = new QemuGuest(nic('benchq', '0c')), qb = new QemuGuest(nic('benchq', '0d'));
      guests.push(qa, qb);
      await Promise.all([a.expect(PROMPT, 300_000), b.expect(PROMPT, 300_000), qa.boot(), qb.boot()]);
      const [t, q] = await inTurns([
        await vmToVm((c) => a.run(c, 600_000), (c) => b.run(c, 600_000)),
        await vmToVm((c) => qa.run(c, 600_000), (c) => qb.run(c, 600_000)),
      ], runs);
      console.log(`typevisor guests, one process each, VM->VM through a switch: ${(mib / t).toFixed(2)} MiB/s`);
      console.log(`QEMU guests, VM->VM through the same kind of switch (-netdev stream): ${(mib / q).toFixed(2)} MiB/s`);
      console.log(`  typevisor/QEMU throughput: ${ratio('VM->VM', t, q)}` + (qemuUp ? `; against QEMU -nic user guest->host in this run ${(qemuUp / t).toFixed(2)}` : ''));
    } finally {
      for (const g of guests) await g.kill();
      switches.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  http.server.close();
  sink.close();
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
