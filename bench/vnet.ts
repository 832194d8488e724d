/**
 * Network throughput with the guest in typevisor (its virtio-net on the user-mode NAT, and two
 * typevisor VMs on a switch) against the same guest in qemu-system-riscv64 on QEMU's own
 * `-nic user`, in one run. Host->guest: wget of a blob from a Node HTTP server to /dev/null;
 * guest->host: dd of zeroes into nc to a Node TCP sink (byte count checked); VM->VM: dd | nc
 * from one VM to `nc -l` in the other: two typevisor VMs in this process (`switch`), two
 * `typevisor run` processes on a daemon-style switch over a unix socket, and two QEMU VMs on
 * the same kind of switch (`procs`). Wall time from typing the command to the
 * prompt, best of N runs after K untimed ones (default 1: both emulators' translation caches
 * and, for typevisor, V8's optimizing tier warm up, as in a VM that has been serving). For typevisor guests also the guest instructions executed per MiB
 * moved (mean over the runs; includes the shell and wget/dd/nc themselves), a figure the host's
 * load does not disturb.
 *   node dist/bench/vnet.js [--runs N] [--warmup K] [--mib M] [--parts user,switch,procs,qemu] [--accel jit|interp]
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

/** The translator's threshold for typevisor guests (Infinity: the interpreter alone). */
let jitThreshold = 50;

/** Untimed transfers before the timed ones (translation caches and V8's tiers warm up, QEMU's TCG cache too). */
let warmup = 1;

async function measure(run: Runner, cmd: string, runs: number): Promise<number> {
  let best = Infinity;
  for (let i = -warmup; i < runs; i++) {
    const t0 = performance.now();
    const out = await run(cmd);
    if (/error|refused|failed/i.test(out)) throw new Error(`${cmd}: ${out}`);
    if (i >= 0) best = Math.min(best, (performance.now() - t0) / 1000);
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
  const parts = (args.includes('--parts') ? args[args.indexOf('--parts') + 1] : 'user,switch,procs,qemu').split(',');
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
  const checkSink = async (): Promise<void> => {
    await new Promise((r) => setTimeout(r, 500));
    if (received !== (warmup + runs) * (mib << 20)) throw new Error(`the sink received ${received} bytes, not ${(warmup + runs) * (mib << 20)}`);
    received = 0;
  };

  // typevisor guest on typevisor's user-mode NAT: all offloads, checksums only, none.
  const modes = [{ what: 'CSUM/GUEST_CSUM + TSO4', offloads: true, tso: true }, { what: 'CSUM/GUEST_CSUM, no TSO', offloads: true, tso: false }, { what: 'no offloads', offloads: false, tso: false }];
  for (const m of parts.includes('user') ? modes : []) {
    const un = new UserNet(new NodeHostNet());
    await un.start();
    const g = tvGuest(un, 1, m.offloads, m.tso);
    try {
      await g.expect(PROMPT, 300_000);
      const run: Runner = (cmd) => g.run(cmd, PROMPT, 600_000);
      await run(dhcp);
      const i0 = g.machine.hart.icount;
      const d = await measure(run, down, runs);
      const i1 = g.machine.hart.icount;
      const u = await measure(run, up, runs);
      const i2 = g.machine.hart.icount;
      await checkSink();
      const per = (n: number): string => `${(n / (warmup + runs) / mib / 1e6).toFixed(1)} M instructions/MiB`;
      row(`typevisor guest, typevisor -nic user, ${m.what}`, d, u);
      console.log(`  guest CPU: host->guest ${per(i1 - i0)}, guest->host ${per(i2 - i1)}; NAT retransmissions: ${un.stats.tcpTimeouts} timeouts, ${un.stats.tcpFastRetransmits} fast`);
    } finally { await g.stop(); un.close(); }
  }
  // VM -> VM: dd | nc from `a` to `nc -l` in `b`, best of the runs, in MiB/s.
  const vmToVm = async (a: Runner, b: Runner): Promise<number> => {
    await a('ip addr add 10.0.3.1/24 dev eth0; ip link set eth0 up');
    await b('ip addr add 10.0.3.2/24 dev eth0; ip link set eth0 up');
    let best = Infinity;
    for (let i = -warmup; i < runs; i++) {
      await b('nc -l -p 5000 > /dev/null < /dev/null &');
      await new Promise((r) => setTimeout(r, 500));
      const t0 = performance.now();
      const out = await a(`dd if=/dev/zero bs=65536 count=${mib * 16} 2>/dev/null | nc 10.0.3.2 5000`);
      if (/error|refused|failed/i.test(out)) throw new Error(`VM->VM: ${out}`);
      if (i >= 0) best = Math.min(best, (performance.now() - t0) / 1000);
      await b('wait');
    }
    return mib / best;
  };
  // Two typevisor guests on a switch, both in this process (one thread for both).
  if (parts.includes('switch')) {
    const sw = new Switch('bench');
    const a = tvGuest(sw.createPort(), 0x0a), b = tvGuest(sw.createPort(), 0x0b);
    try {
      await Promise.all([a.expect(PROMPT, 300_000), b.expect(PROMPT, 300_000)]);
      const ia = a.machine.hart.icount, ib = b.machine.hart.icount, c0 = process.cpuUsage();
      const r = await vmToVm((c) => a.run(c, PROMPT, 600_000), (c) => b.run(c, PROMPT, 600_000));
      const cpu = process.cpuUsage(c0);
      console.log(`typevisor guests in one process, VM->VM through a switch: ${r.toFixed(2)} MiB/s`);
      console.log(`  guest CPU per MiB: sender ${((a.machine.hart.icount - ia) / (warmup + runs) / mib / 1e6).toFixed(1)} M, receiver ${((b.machine.hart.icount - ib) / (warmup + runs) / mib / 1e6).toFixed(1)} M instructions; host CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s`);
      const na = a.machine.virtioDevices[0] as VirtioNet, nb = b.machine.virtioDevices[0] as VirtioNet;
      console.log(`  sender: ${na.stats.txFrames} frames, ${na.stats.txGsoFrames} from GSO; receiver: ${nb.stats.rxFrames} frames, ${nb.stats.rxGsoFrames} as GSO; switch drops ${sw.dropped}`);
    } finally { await a.stop(); await b.stop(); }
  }
  // Each VM in a process of its own (`typevisor run`, as the daemon runs them), on a switch
  // served over a unix socket the way the daemon's named switches are; then two QEMU VMs on
  // the same kind of switch (QEMU's -netdev stream), the VM->VM yardstick.
  if (parts.includes('procs')) {
    const dir = mkdtempSync(join(tmpdir(), 'tv-vnet-'));
    const switches = new Switches(dir);
    try {
      await switches.ensure('bench');
      const nic = (mac: string): string[] => ['-netdev', `stream,id=n0,server=off,addr.type=unix,addr.path=${switchSocketPath(dir, 'bench')}`,
        '-device', `virtio-net-device,netdev=n0,mac=52:54:00:00:00:${mac}`];
      const a = new CliGuest([...nic('0a'), '--accel', accel]), b = new CliGuest([...nic('0b'), '--accel', accel]);
      try {
        await Promise.all([a.expect(PROMPT, 300_000), b.expect(PROMPT, 300_000)]);
        const r = await vmToVm((c) => a.run(c, 600_000), (c) => b.run(c, 600_000));
        console.log(`typevisor guests, one process each, VM->VM through a switch: ${r.toFixed(2)} MiB/s`);
      } finally { await a.kill(); await b.kill(); }
      const qa = new QemuGuest(nic('0c')), qb = new QemuGuest(nic('0d'));
      try {
        await Promise.all([qa.boot(), qb.boot()]);
        const r = await vmToVm((c) => qa.run(c, 600_000), (c) => qb.run(c, 600_000));
        console.log(`QEMU guests, VM->VM through the same kind of switch (-netdev stream): ${r.toFixed(2)} MiB/s`);
      } finally { await qa.kill(); await qb.kill(); }
    } finally { switches.close(); rmSync(dir, { recursive: true, force: true }); }
  }
  // The same guest in QEMU on QEMU's -nic user.
  if (parts.includes('qemu')) {
    const g = new QemuGuest(['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0']);
    try {
      await g.boot();
      const run: Runner = (cmd) => g.run(cmd, 600_000);
      await run(dhcp);
      const d = await measure(run, down, runs);
      const u = await measure(run, up, runs);
      await checkSink();
      row('QEMU guest, QEMU -nic user', d, u);
    } finally { await g.kill(); }
  }
  http.server.close();
  sink.close();
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
