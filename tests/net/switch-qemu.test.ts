/**
 * Two Linux guests in two qemu-system-riscv64 processes on one typevisor switch: one joins
 * over QEMU's stream socket netdev, the other over its dgram (UDP) netdev, and the switch has
 * a user-mode NAT uplink. Both get addresses by DHCP through the uplink, see each other on
 * one L2 segment (ping), and nc moves a file between them. The uplink's DNS (default mode)
 * answers from the host's resolver: `localhost` resolves.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { NodeHostNet } from '../../src/host/net/node-host.js';
import { UserNet } from '../../src/host/net/slirp.js';
import { DgramLink, listenStream } from '../../src/host/net/socket-transport.js';
import { Switch } from '../../src/host/net/switch.js';
import { QemuGuest } from '../lib/qemu-guest.js';

const UDHCPC_SCRIPT = '#!/bin/sh\ncase "$1" in bound|renew) ifconfig $interface $ip netmask $subnet up; route add default gw $router;; esac';

function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function dhcp(g: QemuGuest): Promise<string> {
  await g.writeFile('/tmp/dhcp.sh', UDHCPC_SCRIPT);
  const out = await g.run('chmod +x /tmp/dhcp.sh; ip link set eth0 up; udhcpc -i eth0 -n -q -s /tmp/dhcp.sh 2>&1');
  const m = /lease of (10\.0\.2\.\d+) obtained/.exec(out);
  assert.ok(m, out);
  return m[1];
}

describe('two guests on one switch with a NAT uplink', { timeout: 180_000 }, () => {
  const sw = new Switch('sw0');
  let un: UserNet;
  let stream: { port: number; close(): void };
  let dgram: DgramLink;
  let a: QemuGuest, b: QemuGuest;
  let ipA = '', ipB = '';

  before(async () => {
    un = new UserNet(new NodeHostNet());
    await un.start();
    sw.connect(un);
    stream = await listenStream('127.0.0.1', 0, (l) => { sw.connect(l); });
    const qemuPort = await freeUdpPort();
    dgram = await DgramLink.open({ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: qemuPort });
    sw.connect(dgram);
    a = new QemuGuest(['-netdev', `socket,id=n0,connect=127.0.0.1:${stream.port}`, '-device', 'virtio-net-device,netdev=n0,mac=52:54:00:00:00:0a']);
    b = new QemuGuest(['-netdev', `dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=${qemuPort},remote.type=inet,remote.host=127.0.0.1,remote.port=${dgram.localPort}`,
      '-device', 'virtio-net-device,netdev=n0,mac=52:54:00:00:00:0b']);
    await Promise.all([a.boot(), b.boot()]);
  });

  after(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    stream?.close();
    dgram?.close();
    un?.close();
  });

  it('both get distinct addresses by DHCP through the uplink', async () => {
    ipA = await dhcp(a);
    ipB = await dhcp(b);
    assert.notEqual(ipA, ipB);
    assert.equal(sw.portCount, 3);
  });

  it('one pings the other', async () => {
    assert.match(await a.run(`ping -c 3 -W 2 ${ipB}`), /3 packets transmitted, 3 packets received/);
    assert.match(await b.run(`ping -c 2 -W 2 ${ipA}`), /2 packets transmitted, 2 packets received/);
  });

  it('nc moves a 2 MiB file from one to the other; the digest matches', async () => {
    b.type('nc -l -p 5000 < /dev/null > /tmp/got &\n');
    await b.expect('~ # ');
    const sent = await a.run('dd if=/dev/urandom of=/tmp/f bs=1024 count=2048 2>/dev/null; md5sum < /tmp/f');
    await new Promise((r) => setTimeout(r, 300));
    await a.run(`nc ${ipB} 5000 < /tmp/f`, 60_000);
    const got = await b.run('wait; md5sum < /tmp/got', 60_000);
    const digest = /^([0-9a-f]{32}) {2}-$/m.exec(sent);
    assert.ok(digest, sent);
    assert.match(got, new RegExp(`^${digest[1]}  -$`, 'm'));
  });

  it('both still reach the host through the uplink, and its DNS answers from the host resolver', async () => {
    assert.match(await b.run('ping -c 1 -W 2 10.0.2.2'), /1 packets received/);
    const out = await a.run('nslookup localhost 10.0.2.3');
    assert.match(out, /Address:?\s+127\.0\.0\.1/);
  });
});
