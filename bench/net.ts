/**
 * Network throughput: typevisor's user-mode NAT against QEMU's own `-nic user` (slirp), with
 * the same Linux guest in qemu-system-riscv64 in both cases (our stack is reached through
 * QEMU's socket netdev). Host->guest: the guest wgets a blob from a Node HTTP server on
 * 127.0.0.1; guest->host: the guest nc's zeroes to a Node TCP sink. Wall time from typing the
 * command to the prompt, best of N runs.
 *   node dist/bench/net.js [--runs N] [--mib M]
 */
import { createServer, type AddressInfo } from 'node:net';
import { loadavg, cpus } from 'node:os';
import { NodeHostNet } from '../src/host/net/node-host.js';
import { UserNet } from '../src/host/net/slirp.js';
import { listenStream } from '../src/host/net/socket-transport.js';
import { plug } from '../src/host/net/switch.js';
import { QemuGuest } from '../tests/lib/qemu-guest.js';
import { httpServer } from '../tests/lib/net-servers.js';

const UDHCPC_SCRIPT = '#!/bin/sh\ncase "$1" in bound|renew) ifconfig $interface $ip netmask $subnet up; route add default gw $router;; esac';

async function measure(g: QemuGuest, cmd: string, runs: number): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await g.run(cmd, 300_000);
    if (/error|refused|failed/i.test(out)) throw new Error(`${cmd}: ${out}`);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return best;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 2;
  const mib = args.includes('--mib') ? Number(args[args.indexOf('--mib') + 1]) : 64;
  const blob = new Uint8Array(mib << 20);
  const http = await httpServer(blob);
  let received = 0;
  const sink = createServer((s) => { s.on('data', (d: Buffer) => { received += d.length; }); s.on('end', () => s.end()); });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const sinkPort = (sink.address() as AddressInfo).port;
  console.log(`host: node ${process.version}, ${cpus()[0]?.model ?? '?'} x${cpus().length}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`command: node dist/bench/net.js --runs ${runs} --mib ${mib}`);
  const rows: string[] = [];
  for (const which of ['typevisor', 'qemu'] as const) {
    let un: UserNet | null = null;
    let link: { close(): void } | null = null;
    let netArgs: string[];
    if (which === 'typevisor') {
      const u = new UserNet(new NodeHostNet());
      un = u;
      await u.start();
      const l = await listenStream('127.0.0.1', 0, (s) => plug(s, u));
      link = l;
      netArgs = ['-netdev', `socket,id=n0,connect=127.0.0.1:${l.port}`, '-device', 'virtio-net-device,netdev=n0'];
    } else {
      netArgs = ['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0'];
    }
    const g = new QemuGuest(netArgs);
    try {
      await g.boot();
      await g.writeFile('/tmp/dhcp.sh', UDHCPC_SCRIPT);
      await g.run('chmod +x /tmp/dhcp.sh; ip link set eth0 up; udhcpc -i eth0 -n -q -s /tmp/dhcp.sh >/dev/null 2>&1');
      const down = await measure(g, `wget -q -O /dev/null http://10.0.2.2:${http.port}/blob`, runs);
      received = 0;
      const up = await measure(g, `dd if=/dev/zero bs=65536 count=${mib * 16} 2>/dev/null | nc 10.0.2.2 ${sinkPort}`, runs);
      await new Promise((r) => setTimeout(r, 500));
      if (received !== runs * (mib << 20)) throw new Error(`the sink received ${received} bytes, not ${runs * (mib << 20)}`);
      const row = `${which}: host->guest ${(mib / down).toFixed(1)} MiB/s (${down.toFixed(2)} s), guest->host ${(mib / up).toFixed(1)} MiB/s (${up.toFixed(2)} s)`;
      console.log(row);
      rows.push(row);
    } finally {
      await g.kill();
      link?.close();
      un?.close();
    }
  }
  http.server.close();
  sink.close();
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
