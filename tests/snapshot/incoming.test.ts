/**
 * The destination of a live migration takes the source's requests as soon as it answered
 * POST /v1/migrations, even before its incoming runner listens (a runner takes a few hundred
 * milliseconds to start): the request waits for the runner instead of failing with 409.
 * A malformed page set or block set then gets the runner's 400, a commit before the finish
 * a 409, and the abort cleans up (the definition prepared at setup too).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/server.js';
import { crc32c } from '../../src/snapshot/crc32c.js';
import { requireGuest } from '../lib/guest.js';

const dir = mkdtempSync(join(tmpdir(), 'typevisor-incoming-'));
const daemon = new Daemon({ stateDir: dir, port: 0, log: () => {} });
after(async () => { await daemon.close(); rmSync(dir, { recursive: true, force: true }); });

test('a migration destination takes pages and blocks sent right after it accepted the VM', { timeout: 60_000 }, async () => {
  const g = requireGuest();
  const base = (await daemon.listen()).replace('localhost', '127.0.0.1');
  const auth = { authorization: `Bearer ${daemon.token}` };
  const bin = { ...auth, 'content-type': 'application/octet-stream' };
  for (const [i, kind] of (['pages', 'blocks'] as const).entries()) {
    const name = `in${i}`;
    const r = await fetch(base + '/v1/migrations', {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ definition: { name, memory: '64M', kernel: g.kernel, initrd: g.initrd } }),
    });
    assert.equal(r.status, 201, await r.text());
    // At once: the runner has not listened yet. A set claiming 2^31 entries in 8 bytes is malformed.
    const garbage = new Uint8Array([0, 0, 0, 0x80, 1, 2, 3, 4]);
    const t0 = performance.now();
    const sent = await fetch(`${base}/v1/migrations/${name}/${kind}`, { method: 'POST', headers: bin, body: garbage });
    const body = await sent.json() as { code: string; message: string };
    assert.equal(sent.status, 400, `${kind}: ${JSON.stringify(body)} after ${Math.round(performance.now() - t0)} ms`);
    assert.equal(body.code, 'migration_failed');
    assert.ok(body.message.length > 0);
    // The runner still waits: a good (empty) page set is taken.
    const none = new Uint8Array(8); // no entries, then the CRC-32C of the count
    new DataView(none.buffer).setUint32(4, crc32c(none.subarray(0, 4)), true);
    const empty = await fetch(`${base}/v1/migrations/${name}/pages`, { method: 'POST', headers: bin, body: none });
    assert.equal(empty.status, 204, await empty.text());
    const early = await fetch(`${base}/v1/migrations/${name}/commit`, { method: 'POST', headers: auth });
    assert.equal(early.status, 409, 'nothing to commit before the finish');
    assert.equal((await early.json() as { code: string }).code, 'wrong_state');
    assert.ok(readdirSync(join(dir, 'vms')).some((f) => f.startsWith(`${name}.json.tmp-`)), 'the definition is prepared at setup');
    assert.ok(!readdirSync(join(dir, 'vms')).includes(`${name}.json`), 'but is not a definition yet');
    const del = await fetch(`${base}/v1/migrations/${name}`, { method: 'DELETE', headers: auth });
    assert.equal(del.status, 204);
    assert.equal((await fetch(`${base}/v1/vms/${name}`, { headers: auth })).status, 404);
    assert.deepEqual(readdirSync(join(dir, 'vms')).filter((f) => f.startsWith(name)), [], 'the abort leaves no definition behind');
  }
});
