/**
 * The user-mode network against a real Linux guest: Linux 6.1 with busybox runs in
 * qemu-system-riscv64, its virtio-net NIC connected to our stack through QEMU's socket
 * netdev (length-prefixed frames over loopback TCP). Everything the guest reaches is on
 * 127.0.0.1: an HTTP server, a UDP echo server, a DNS server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenStream } from '../../src/host/net/socket-transport.js';
import { plug } from '../../src/host/net/switch.js';
import { QemuGuest } from '../lib/qemu-guest.js';
import { dnsServer, httpServer, udpEcho, nextUploadMd5, userNetFixture, type UserNetFixture } from '../lib/net-servers.js';
import { UDHCPC_SCRIPT } from '../lib/net-guest.js';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

describe('user-mode network with a Linux guest in QEMU', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-net-'));
  const pcapPath = join(dir, 'usernet.pcap');
  const body = randomBytes(16 << 20);
  let net: UserNetFixture;
  let g: QemuGuest;
  let http: Awaited<ReturnType<typeof httpServer>>;
  let echo: Awaited<ReturnType<typeof udpEcho>>;
  let dns: Awaited<ReturnType<typeof dnsServer>>;
  let link: { port: number; close(): void };
  let webPort = 0, ncPort = 0;

  before(async () => {
    http = await httpServer(body);
    echo = await udpEcho();
    dns = await dnsServer('host.typevisor.test', '192.0.2.7');
    net = await userNetFixture(`user,id=n0,hostfwd=tcp:127.0.0.1:0-:80,hostfwd=tcp:127.0.0.1:0-:1234,dnsupstream=127.0.0.1:${dns.port},pcap=${pcapPath}`);
    [webPort, ncPort] = net.fwdPorts;
    link = await listenStream('127.0.0.1', 0, (l) => plug(l, net.tapped));
    g = new QemuGuest(['-netdev', `socket,id=n0,connect=127.0.0.1:${link.port}`, '-device', 'virtio-net-device,netdev=n0']);
    await g.boot();
    await g.writeFile('/tmp/dhcp.sh', UDHCPC_SCRIPT.replace(/\\n/g, '\n'));
  });

  after(async () => {
    await g?.kill();
    link?.close();
    net?.close();
    http?.server.close();
    echo?.sock.close();
    dns?.sock.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gets its address, router and DNS server by DHCP (busybox udhcpc)', async () => {
    const out = await g.run('chmod +x /tmp/dhcp.sh; ip link set eth0 up; udhcpc -i eth0 -n -q -s /tmp/dhcp.sh 2>&1; ip -4 addr show eth0; ip route; cat /etc/resolv.conf');
    assert.match(out, /lease of 10\.0\.2\.15 obtained from 10\.0\.2\.2/);
    assert.match(out, /inet 10\.0\.2\.15\/24/);
    assert.match(out, /default via 10\.0\.2\.2/);
    assert.match(out, /nameserver 10\.0\.2\.3/);
  });

  it('pings the gateway', async () => {
    assert.match(await g.run('ping -c 3 -W 2 10.0.2.2'), /3 packets transmitted, 3 packets received/);
  });

  it('resolves a name through the DNS forwarder', async () => {
    const out = await g.run('nslookup host.typevisor.test');
    assert.match(out, /192\.0\.2\.7/);
    assert.ok(dns.queries.includes('host.typevisor.test'));
    assert.doesNotMatch(await g.run('nslookup nothere.typevisor.test 2>&1'), /192\.0\.2\.7/);
  });

  it('downloads 16 MiB from a host HTTP server with wget; the digest matches', async () => {
    const t0 = Date.now();
    const out = await g.run(`wget -q -O - http://10.0.2.2:${http.port}/blob | md5sum`, 120_000);
    const ms = Date.now() - t0;
    assert.equal(out.trim(), `${md5(body)}  -`);
    console.log(`# 16 MiB guest<-host through the NAT in ${ms} ms (${(16 / (ms / 1000)).toFixed(1)} MiB/s)`);
  });

  it('uploads 8 MiB from the guest to a host TCP server through the NAT; the digest matches', async () => {
    const done = nextUploadMd5(net.sink);
    const sent = await g.run('dd if=/dev/urandom of=/tmp/f bs=1024 count=8192 2>/dev/null; md5sum < /tmp/f');
    const t0 = Date.now();
    await g.run(`nc 10.0.2.2 ${net.sinkPort} < /tmp/f; rm /tmp/f`, 120_000);
    const ms = Date.now() - t0;
    assert.match(sent, new RegExp(`^${await done} {2}-$`, 'm'));
    console.log(`# 8 MiB guest->host through the NAT in ${ms} ms`);
  });

  it('a closed host port is refused at once; a host peer that resets mid-transfer is a reset in the guest', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const t0 = Date.now();
    assert.match(await g.run(`wget -q -O /dev/null http://10.0.2.2:${port}/ 2>&1`), /refused/i);
    assert.ok(Date.now() - t0 < 5000, 'refused without waiting for timeouts');
    const rude = createServer((s) => { s.write(new Uint8Array(256 << 10)); setTimeout(() => s.resetAndDestroy(), 50); });
    await new Promise<void>((r) => rude.listen(0, '127.0.0.1', r));
    const out = await g.run(`nc 10.0.2.2 ${(rude.address() as AddressInfo).port} < /dev/null | wc -c; echo status-done`, 30_000);
    rude.close();
    assert.match(out, /status-done/);
    for (let i = 0; i < 30 && net.un.stats.tcpConnections > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(net.un.stats.tcpConnections, 0, 'the reset connection is gone');
  });

  it('exchanges UDP with a host server through the NAT', async () => {
    assert.match(await g.run(`echo hello-udp | nc -u -w 1 10.0.2.2 ${echo.port}`), /HELLO-UDP/);
  });

  it('serves a page from busybox httpd to the host through hostfwd', async () => {
    await g.run("mkdir -p /tmp/www && echo '<h1>typevisor guest</h1>' > /tmp/www/index.html && httpd -p 80 -h /tmp/www");
    const res = await fetch(`http://127.0.0.1:${webPort}/index.html`);
    assert.equal(res.status, 200);
    assert.equal((await res.text()).trim(), '<h1>typevisor guest</h1>');
  });

  it('uploads 4 MiB from the host to nc in the guest through hostfwd; the digest matches', async () => {
    g.type('nc -l -p 1234 < /dev/null > /tmp/up &\n');
    await g.expect('~ # ');
    await new Promise((r) => setTimeout(r, 500));
    const data = randomBytes(4 << 20);
    await new Promise<void>((resolve, reject) => {
      const s = connect(ncPort, '127.0.0.1');
      s.on('error', reject);
      s.on('connect', () => s.end(data));
      s.on('close', () => resolve());
      s.resume();
    });
    const out = await g.run('wait; md5sum /tmp/up; rm /tmp/up', 60_000);
    assert.match(out, new RegExp(`^${md5(data)}  /tmp/up$`, 'm'));
  });

  it('wrote a pcap that tcpdump reads', () => {
    const text = execFileSync('tcpdump', ['-nn', '-r', pcapPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
    assert.match(text, /BOOTP\/DHCP, Request/);
    assert.match(text, /BOOTP\/DHCP, Reply/);
    assert.match(text, /10\.0\.2\.15 > 10\.0\.2\.2: ICMP echo request/);
    assert.match(text, /10\.0\.2\.2 > 10\.0\.2\.15: ICMP echo reply/);
    assert.match(text, /10\.0\.2\.2\.80 > 10\.0\.2\.15\.\d+: Flags \[S\.?\]|10\.0\.2\.2\.\d+ > 10\.0\.2\.15\.80: Flags \[S\]/);
  });

  it('kept its bounds: nothing dropped for lack of room', () => {
    console.log(`# stats: ${JSON.stringify(net.un.stats)}`);
    assert.equal(net.un.stats.dropRxQueueFull, 0);
    assert.equal(net.un.stats.dropBadFrame, 0);
  });
});
