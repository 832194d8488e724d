/** openNetdev: named switches in one process and across a stream connection, user networks, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namedSwitch, openNetdev } from '../../src/host/net/open.js';
import { eth } from '../lib/net-frames.js';
import { freePort } from '../lib/net-servers.js';

const BC = [255, 255, 255, 255, 255, 255];

function nic(): { got: Uint8Array[]; recv: { receive(f: Uint8Array): boolean } } {
  const got: Uint8Array[] = [];
  return { got, recv: { receive: (f) => { got.push(f.slice()); return true; } } };
}

async function until(f: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 20));
}

test('two NICs on one named switch see each other; the switch goes away with its last port', async () => {
  const a = await openNetdev('switch,id=a,name=unit-sw');
  const b = await openNetdev('switch,id=b,name=unit-sw');
  const na = nic(), nb = nic();
  a.attach(na.recv); b.attach(nb.recv);
  a.transmit(eth(BC, 0x0800, [1, 2, 3], [2, 0, 0, 0, 0, 1]));
  assert.equal(nb.got.length, 1);
  assert.equal(na.got.length, 0);
  await assert.rejects(openNetdev('switch,name=unit-sw,uplink=on'), /exists already/);
  a.close(); b.close();
  assert.equal(namedSwitch('unit-sw'), undefined);
});

test('switches in two "processes" joined by the stream transport; a NAT uplink answers DHCP-less ARP', async () => {
  const port = await freePort();
  const a = await openNetdev(`switch,name=unit-left,listen=127.0.0.1:${port},uplink=on`);
  const b = await openNetdev(`switch,name=unit-right,connect=127.0.0.1:${port}`);
  const na = nic(), nb = nic();
  a.attach(na.recv); b.attach(nb.recv);
  await until(() => (namedSwitch('unit-left')?.portCount ?? 0) === 3);
  b.transmit(eth(BC, 0x0800, [9], [2, 0, 0, 0, 0, 2]));
  await until(() => na.got.length > 0);
  assert.equal(na.got.length, 1);
  assert.deepEqual([...na.got[0].subarray(6, 12)], [2, 0, 0, 0, 0, 2]);
  // ARP who-has 10.0.2.2 from the right side: the uplink on the left answers across the link.
  b.transmit(eth(BC, 0x0806, [0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2], [2, 0, 0, 0, 0, 2]));
  await until(() => nb.got.some((f) => f[12] === 8 && f[13] === 6));
  const reply = nb.got.find((f) => f[12] === 8 && f[13] === 6)!;
  assert.deepEqual([...reply.subarray(22, 28)], [0x52, 0x55, 0x0a, 0, 2, 2]);
  b.close(); a.close();
});

test('openNetdev: user networks open and close; errors name the spec', async () => {
  const u = await openNetdev('user,id=n0,restrict=on');
  u.close();
  await assert.rejects(openNetdev('user,hostfwd=nope'), /^Error: -netdev user,hostfwd=nope: hostfwd=nope: expected/);
  await assert.rejects(openNetdev('socket,connect=127.0.0.1:1'), /-netdev socket,connect=127\.0\.0\.1:1: .*ECONNREFUSED/);
  await assert.rejects(openNetdev('switch,id=x'), /name=NAME is needed/);
  await assert.rejects(openNetdev('user,pcap=/nonexistent-dir/x.pcap'), /pcap: .*ENOENT/);
});
