/**
 * TCP through the NAT over a bad link: between a Linux guest (in qemu-system-riscv64) and
 * our stack, a filter drops 2% of the frames each way and delays others so they arrive out
 * of order (seeded PRNG). Downloads and uploads must still arrive whole and in order
 * (digests), which exercises our retransmission timer, fast retransmit, go-back-N and the
 * in-order receive path against Linux's TCP.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import type { NetBackend, NetReceiver } from '../../src/devices/device.js';
import { NodeHostNet } from '../../src/host/net/node-host.js';
import { UserNet } from '../../src/host/net/slirp.js';
import { listenStream } from '../../src/host/net/socket-transport.js';
import { plug } from '../../src/host/net/switch.js';
import { prng } from '../lib/prng.js';
import { QemuGuest } from '../lib/qemu-guest.js';
import { httpServer, nextUploadMd5 } from '../lib/net-servers.js';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

/** Wrap a backend: drop `dropPct`% of frames each way and hold back some frames so later ones overtake them. */
function lossy(inner: NetBackend, seed: number, dropPct: number, stats: { dropped: number; reordered: number }): NetBackend {
  const rnd = prng(seed);
  const mangle = (deliver: (f: Uint8Array) => void) => (f: Uint8Array): void => {
    const r = rnd() % 1000;
    if (r < dropPct * 10) { stats.dropped++; return; }
    if (r < dropPct * 10 + 20) { stats.reordered++; const c = f.slice(); setTimeout(() => deliver(c), 2); return; }
    deliver(f);
  };
  return {
    attach(nic: NetReceiver): void { const d = mangle((f) => { nic.receive(f); }); inner.attach({ receive: (f) => { d(f); return true; } }); },
    transmit: mangle((f) => inner.transmit(f)),
    rxReady: () => inner.rxReady(),
    close: () => inner.close(),
  };
}

describe('TCP through the NAT over a lossy, reordering link', { timeout: 180_000 }, () => {
  const body = randomBytes(4 << 20);
  const stats = { dropped: 0, reordered: 0 };
  let un: UserNet;
  let g: QemuGuest;
  let http: Awaited<ReturnType<typeof httpServer>>;
  let link: { port: number; close(): void };
  const sink = createServer({ allowHalfOpen: true });

  before(async () => {
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    http = await httpServer(body);
    un = new UserNet(new NodeHostNet());
    await un.start();
    const bad = lossy(un, 0xbad11e, 2, stats);
    link = await listenStream('127.0.0.1', 0, (l) => plug(l, bad));
    g = new QemuGuest(['-netdev', `socket,id=n0,connect=127.0.0.1:${link.port}`, '-device', 'virtio-net-device,netdev=n0']);
    await g.boot();
    // Static address: DHCP over a lossy link would only add retries.
    await g.run('ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2');
  });

  after(async () => {
    await g?.kill();
    link?.close();
    un?.close();
    http?.server.close();
    sink.close();
  });

  it('a 4 MiB download arrives whole', async () => {
    const out = await g.run(`wget -q -O - http://10.0.2.2:${http.port}/b | md5sum`, 150_000);
    assert.equal(out.trim(), `${md5(body)}  -`);
    console.log(`# download: ${un.stats.tcpFastRetransmits} fast retransmits, ${un.stats.tcpTimeouts} timeouts`);
  });

  it('a 4 MiB upload arrives whole', async () => {
    const done = nextUploadMd5(sink);
    const sent = await g.run('dd if=/dev/urandom of=/tmp/f bs=1024 count=4096 2>/dev/null; md5sum < /tmp/f');
    await g.run(`nc 10.0.2.2 ${(sink.address() as AddressInfo).port} < /tmp/f`, 150_000);
    assert.match(sent, new RegExp(`^${await done} {2}-$`, 'm'));
  });

  it('the link really dropped and reordered frames', () => {
    assert.ok(stats.dropped > 50, `dropped ${stats.dropped}`);
    assert.ok(stats.reordered > 50, `reordered ${stats.reordered}`);
  });
});
