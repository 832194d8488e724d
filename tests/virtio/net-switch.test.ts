/**
 * Two typevisor VMs on one switch, and the command line's NIC flags in a real process:
 * - VM A runs in this process, its NIC on a port of a Switch that also listens for QEMU's
 *   stream socket transport.
 * - VM B is `typevisor run` with two NICs: `-netdev socket,id=s0,connect=... -device
 *   virtio-net-device,netdev=s0` on A's switch (the first NIC: default MAC 52:54:00:12:34:56)
 *   and `-nic user,hostfwd=...` (the next default MAC, :57). Linux's eth names follow its
 *   probe order, so B's interfaces are found by MAC.
 * A pings B over the switch and nc moves a file between them with matching digests (B's large
 * TCP segments reach A whole: both ends of the stream link are typevisor's); busybox
 * httpd in B answers curl on the host through the forwarded port (issue #10's "done when");
 * `-object filter-dump` on B's switch NIC writes a pcap that tcpdump reads.
 * Plus the flags' usage errors.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Switch } from '../../src/host/net/switch.js';
import { listenStream } from '../../src/host/net/socket-transport.js';
import { parseVirtio } from '../../src/cli/devices.js';
import type { VirtioNet } from '../../src/devices/virtio/net.js';
import { GuestConsole } from '../lib/console.js';
import { guestDir } from '../lib/toolchain.js';
import { CliGuest } from '../lib/cli-guest.js';
import { sh, UDHCPC_SCRIPT } from '../lib/net-guest.js';
import { freePort } from '../lib/net-servers.js';

/** The CLI VM, with a marker protocol that also returns output of commands printing no newline. */
class MarkedCliGuest extends CliGuest {
  async sh(cmd: string, ms = 120_000): Promise<string> {
    const re = /\nB42G\r?\n([\s\S]*?)E42D/;
    this.type(`echo B$((6*7))G; ${cmd}; echo E$((6*7))D\n`);
    return re.exec(await this.expect(re, ms))![1].replace(/\r/g, '').trim();
  }
}

describe('two typevisor VMs on a switch; the CLI NIC flags', { timeout: 400_000 }, () => {
  const sw = new Switch('tvsw');
  let link: { port: number; close(): void };
  let a: GuestConsole;
  let b: MarkedCliGuest;
  let webPort = 0;
  const dir = mkdtempSync(join(tmpdir(), 'tv-vnet-sw-'));
  const pcapPath = join(dir, 's0.pcap');

  before(async () => {
    link = await listenStream('127.0.0.1', 0, (l) => { sw.connect(l); });
    webPort = await freePort();
    b = new MarkedCliGuest(['-nic', `user,hostfwd=tcp:127.0.0.1:${webPort}-:80`,
      '-netdev', `socket,id=s0,connect=127.0.0.1:${link.port}`, '-device', 'virtio-net-device,netdev=s0',
      '-object', `filter-dump,id=f0,netdev=s0,file=${pcapPath}`]);
    a = new GuestConsole({
      memoryBytes: 256 << 20, bios: null, append: 'console=ttyS0',
      kernel: readFileSync(join(guestDir, 'Image')), initrd: readFileSync(join(guestDir, 'initramfs.cpio.gz')),
      virtio: [{ kind: 'net', backend: sw.createPort(), mac: Uint8Array.of(0x52, 0x54, 0, 0, 0, 0x0a) }],
    });
    await Promise.all([a.expect('~ # ', 300_000), b.expect(/~ # /, 300_000)]);
  });

  after(async () => {
    await b?.kill();
    await a?.stop();
    link?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('B has two NICs with distinct default MACs; A has the MAC it was given', async () => {
    const macs = await b.sh('cat /sys/class/net/eth0/address /sys/class/net/eth1/address');
    assert.match(macs, /52:54:00:12:34:5[67]\s+52:54:00:12:34:5[67]/);
    assert.notEqual(/^(.*)$/m.exec(macs)?.[1], /\n(.*)$/.exec(macs)?.[1]);
    assert.match(await sh(a, 'cat /sys/class/net/eth0/address'), /52:54:00:00:00:0a/);
  });

  it('A pings B across the switch', async () => {
    await b.sh('for i in eth0 eth1; do case $(cat /sys/class/net/$i/address) in *:56) SW=$i;; *) US=$i;; esac; done; ' +
      'ip addr add 10.0.3.2/24 dev $SW; ip link set $SW up; ip link set $US up; ' +
      `printf '${UDHCPC_SCRIPT}' > /tmp/dhcp.sh; chmod +x /tmp/dhcp.sh; udhcpc -i $US -n -q -s /tmp/dhcp.sh >/dev/null 2>&1`);
    const out = await sh(a, 'ip addr add 10.0.3.1/24 dev eth0; ip link set eth0 up; ping -c 3 -W 3 10.0.3.2');
    assert.match(out, /3 packets transmitted, 3 packets received/);
    assert.equal(sw.portCount, 2);
    // -object filter-dump on B's switch NIC recorded the pings; tcpdump reads the file.
    const text = execFileSync('tcpdump', ['-nn', '-r', pcapPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(text, /10\.0\.3\.1 > 10\.0\.3\.2: ICMP echo request/);
    assert.match(text, /10\.0\.3\.2 > 10\.0\.3\.1: ICMP echo reply/);
  });

  it('nc moves a 1 MiB file from B to A; the digest matches', async () => {
    a.type('nc -l -p 5000 < /dev/null > /tmp/got &\n');
    await a.expect('~ # ');
    const sent = await b.sh('dd if=/dev/urandom of=/tmp/f bs=1024 count=1024 2>/dev/null; md5sum < /tmp/f');
    const digest = /^([0-9a-f]{32}) {2}-$/m.exec(sent);
    assert.ok(digest, sent);
    await new Promise((r) => setTimeout(r, 500));
    await b.sh('nc 10.0.3.1 5000 < /tmp/f');
    assert.match(await sh(a, 'wait; md5sum < /tmp/got'), new RegExp(`^${digest[1]}  -$`, 'm'));
    const nic = a.machine.virtioDevices[0] as VirtioNet;
    assert.equal(nic.stats.txDropped + nic.stats.rxDropped, 0);
    // B's large TCP segments crossed its stream link and the switch whole (GSO_HELLO both ways).
    assert.ok(nic.stats.rxGsoFrames > 0, `A received ${nic.stats.rxGsoFrames} GSO frames`);
  });

  it('busybox httpd in the CLI VM answers curl on the host through -nic user,hostfwd', async () => {
    await b.sh("mkdir -p /tmp/www && echo '<h1>typevisor cli guest</h1>' > /tmp/www/index.html && httpd -p 80 -h /tmp/www");
    const { stdout } = await promisify(execFile)('curl', ['-sS', '--max-time', '60', `http://127.0.0.1:${webPort}/index.html`], { encoding: 'utf8' });
    assert.equal(stdout.trim(), '<h1>typevisor cli guest</h1>');
  });

  it('flags: -nic and -netdev/-device parse in QEMU spelling; mistakes are usage errors', () => {
    const base = { drives: [], devices: [], chardevs: [], snapshot: false };
    const r = parseVirtio({ ...base, nics: ['user,hostfwd=tcp::8080-:80,restrict=on,mac=52:54:00:aa:bb:cc,model=virtio-net-device', 'none'] });
    assert.equal(r.length, 1);
    assert.ok(r[0].kind === 'net');
    assert.equal(r[0].netdev, 'user,hostfwd=tcp::8080-:80,restrict=on');
    assert.deepEqual(Array.from(r[0].mac ?? []), [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
    const r2 = parseVirtio({ ...base, netdevs: ['switch,id=n1,name=s'], devices: ['virtio-net-device,netdev=n1'] });
    assert.deepEqual(r2, [{ kind: 'net', netdev: 'switch,id=n1,name=s', mac: undefined }]);
    const r3 = parseVirtio({ ...base, netdevs: ['user,id=n0'], devices: ['virtio-net-device,netdev=n0'], objects: ['filter-dump,id=f0,netdev=n0,file=/tmp/x.pcap'] });
    assert.deepEqual(r3, [{ kind: 'net', netdev: 'user,id=n0,pcap=/tmp/x.pcap', mac: undefined }]);
    const bad: Array<[Partial<Parameters<typeof parseVirtio>[0]>, RegExp]> = [
      [{ nics: ['user,mac=01:00:00:00:00:01'] }, /multicast/],
      [{ nics: ['user,mac=52:54:00'] }, /bad MAC/],
      [{ nics: ['user,model=e1000'] }, /unsupported model/],
      [{ nics: ['user,bogus=1'] }, /unknown option 'bogus'/],
      [{ nics: ['tap,ifname=tap0'] }, /unknown type 'tap'/],
      [{ netdevs: ['user'] }, /id= is required/],
      [{ netdevs: ['user,id=a'] }, /not used/],
      [{ devices: ['virtio-net-device,netdev=x'] }, /must name a -netdev/],
      [{ netdevs: ['user,id=a'], devices: ['virtio-net-device,netdev=a', 'virtio-net-device,netdev=a'] }, /already in use/],
      [{ netdevs: ['user,id=a'], devices: ['virtio-net-device,netdev=a'], objects: ['filter-dump,id=f,netdev=b,file=x'] }, /must name a -netdev/],
      [{ netdevs: ['user,id=a,pcap=y'], devices: ['virtio-net-device,netdev=a'], objects: ['filter-dump,id=f,netdev=a,file=x'] }, /already captured/],
      [{ objects: ['memory-backend-ram,id=m'] }, /unsupported object/],
    ];
    for (const [args, re] of bad) {
      assert.throws(() => parseVirtio({ ...base, ...args }), (e: Error & { status?: number }) => re.test(e.message) && e.status === 2, re.source);
    }
  });
});
