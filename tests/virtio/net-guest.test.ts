/**
 * The real Linux guest on virtio-net in typevisor, on user-mode networking (one boot, several
 * checks): DHCP with busybox udhcpc, a name the host's resolver knows, a 16 MiB wget from a
 * host HTTP server with matching digest, a guest→host upload through the NAT, busybox httpd
 * answering curl on the host through hostfwd, nc in the guest receiving a host upload through
 * hostfwd, and a pcap that tcpdump reads.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VirtioNet } from '../../src/devices/virtio/net.js';
import { GuestConsole } from '../lib/console.js';
import { guestDir } from '../lib/toolchain.js';
import { httpServer, nextUploadMd5, userNetFixture, type UserNetFixture } from '../lib/net-servers.js';
import { PROMPT, UDHCPC_SCRIPT, sh } from '../lib/net-guest.js';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

describe('Linux on virtio-net in typevisor, user-mode networking', { timeout: 400_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-vnet-'));
  const pcapPath = join(dir, 'guest.pcap');
  const body = randomBytes(16 << 20);
  let net: UserNetFixture;
  let c: GuestConsole;
  let nic: VirtioNet;
  let http: Awaited<ReturnType<typeof httpServer>>;
  let webPort = 0, ncPort = 0;

  before(async () => {
    http = await httpServer(body);
    net = await userNetFixture(`user,id=n0,hostfwd=tcp:127.0.0.1:0-:80,hostfwd=tcp:127.0.0.1:0-:1234,pcap=${pcapPath}`);
    [webPort, ncPort] = net.fwdPorts;
    c = new GuestConsole({
      memoryBytes: 256 << 20, bios: null, append: 'console=ttyS0',
      kernel: readFileSync(join(guestDir, 'Image')), initrd: readFileSync(join(guestDir, 'initramfs.cpio.gz')),
      virtio: [{ kind: 'net', backend: net.tapped }],
    });
    nic = c.machine.virtioDevices[0] as VirtioNet;
    await c.expect(PROMPT, 200_000);
  });

  after(async () => {
    await c?.stop();
    net?.close();
    http?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('eth0 has the default MAC and the offered features; DHCP (udhcpc) gives address, router and DNS', async () => {
    const out = await sh(c, `printf '${UDHCPC_SCRIPT}' > /tmp/dhcp.sh; chmod +x /tmp/dhcp.sh; cat /sys/class/net/eth0/address; ` +
      'cat /sys/bus/virtio/devices/*/features; ip link set eth0 up; udhcpc -i eth0 -n -q -s /tmp/dhcp.sh 2>&1; ip -4 addr show eth0; ip route; cat /etc/resolv.conf');
    assert.match(out, /^52:54:00:12:34:56$/m);
    // Bits 0 (CSUM), 1 (GUEST_CSUM), 5 (MAC), 7 (GUEST_TSO4), 11 (HOST_TSO4), 15 (MRG_RXBUF),
    // 16 (STATUS) and 32 (VERSION_1) negotiated.
    const feat = /^([01]{64})$/m.exec(out);
    assert.ok(feat, out);
    for (const b of [0, 1, 5, 7, 11, 15, 16, 32]) assert.equal(feat[1][b], '1', `feature bit ${b}`);
    for (const b of [8, 10, 12, 14]) assert.equal(feat[1][b], '0', `no TSO6/UFO bit ${b}`);
    assert.match(out, /lease of 10\.0\.2\.15 obtained from 10\.0\.2\.2/);
    assert.match(out, /inet 10\.0\.2\.15\/24/);
    assert.match(out, /default via 10\.0\.2\.2/);
    assert.match(out, /nameserver 10\.0\.2\.3/);
  });

  it('pings the gateway and resolves a name the host resolver knows (localhost)', async () => {
    assert.match(await sh(c, 'ping -c 2 -W 2 10.0.2.2'), /2 packets transmitted, 2 packets received/);
    assert.match(await sh(c, 'nslookup localhost'), /Address:?\s+127\.0\.0\.1/);
  });

  it('downloads 16 MiB from a host HTTP server with wget; the digest matches', async () => {
    const t0 = Date.now();
    const out = await sh(c, `wget -q -O - http://10.0.2.2:${http.port}/blob | md5sum`, 240_000);
    const ms = Date.now() - t0;
    assert.match(out, new RegExp(`^${md5(body)}  -$`, 'm'));
    console.log(`# 16 MiB host->guest (wget | md5sum) in ${ms} ms: ${(16 / (ms / 1000)).toFixed(2)} MiB/s`);
  });

  it('uploads 4 MiB from the guest to a host TCP server through the NAT; the digest matches', async () => {
    const done = nextUploadMd5(net.sink);
    const sent = await sh(c, 'dd if=/dev/urandom of=/tmp/f bs=1024 count=4096 2>/dev/null; md5sum < /tmp/f');
    const t0 = Date.now();
    await sh(c, `nc 10.0.2.2 ${net.sinkPort} < /tmp/f; rm /tmp/f`, 120_000);
    const ms = Date.now() - t0;
    assert.match(sent, new RegExp(`^${await done}  -$`, 'm'));
    console.log(`# 4 MiB guest->host (nc) in ${ms} ms: ${(4 / (ms / 1000)).toFixed(2)} MiB/s`);
  });

  it('busybox httpd in the guest answers curl on the host through hostfwd', async () => {
    await sh(c, "mkdir -p /tmp/www && echo '<h1>typevisor guest</h1>' > /tmp/www/index.html && httpd -p 80 -h /tmp/www");
    // Asynchronously: the guest runs on this process's event loop.
    const { stdout } = await promisify(execFile)('curl', ['-sS', '--max-time', '60', `http://127.0.0.1:${webPort}/index.html`], { encoding: 'utf8' });
    assert.equal(stdout.trim(), '<h1>typevisor guest</h1>');
  });

  it('uploads 4 MiB from the host to nc in the guest through hostfwd; the digest matches', async () => {
    c.type('nc -l -p 1234 < /dev/null > /tmp/up &\n');
    await c.expect(PROMPT);
    await new Promise((r) => setTimeout(r, 1000));
    const data = randomBytes(4 << 20);
    const t0 = Date.now();
    await new Promise<void>((resolve, reject) => {
      const s = connect(ncPort, '127.0.0.1');
      s.on('error', reject);
      s.on('connect', () => s.end(data));
      s.on('close', () => resolve());
      s.resume();
    });
    const out = await sh(c, 'wait; md5sum < /tmp/up; rm /tmp/up', 120_000);
    const ms = Date.now() - t0;
    assert.match(out, new RegExp(`^${md5(data)}  -$`, 'm'));
    console.log(`# 4 MiB host->guest (nc via hostfwd) in ${ms} ms (with md5sum): ${(4 / (ms / 1000)).toFixed(2)} MiB/s`);
  });

  it('wrote a pcap that tcpdump reads; nothing was dropped', () => {
    const text = execFileSync('tcpdump', ['-nn', '-r', pcapPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20 });
    assert.match(text, /BOOTP\/DHCP, Request/);
    assert.match(text, /10\.0\.2\.15 > 10\.0\.2\.2: ICMP echo request/);
    assert.match(text, /10\.0\.2\.2\.\d+ > 10\.0\.2\.15\.80: Flags \[S\]/);
    console.log(`# nic ${JSON.stringify(nic.stats)} net ${JSON.stringify(net.un.stats)}`);
    assert.equal(nic.stats.txDropped, 0);
    assert.equal(nic.stats.rxDropped, 0);
    assert.equal(net.un.stats.dropBadFrame, 0, 'every checksum the NIC completed was right');
    // TSO both ways: the 16 MiB download came mostly as large segments, the uploads went out
    // as GSO frames that the NAT took whole (each one frame: sent = taken, no MTU-sized pieces).
    assert.ok(nic.stats.rxGsoFrames > 100, `${nic.stats.rxGsoFrames} large segments received`);
    assert.ok(nic.stats.txGsoFrames > 20, `${nic.stats.txGsoFrames} GSO frames sent`);
    assert.equal(net.un.stats.fromGuest, nic.stats.txFrames, 'every frame sent reached the NAT as sent');
    assert.ok(nic.stats.txFrames < 4 * nic.stats.txGsoFrames, `${nic.stats.txFrames} frames for ${nic.stats.txGsoFrames} GSO frames: not cut`);
  });
});
