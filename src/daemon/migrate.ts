/**
 * Live migration, pre-copy, daemon to daemon (QEMU's phases: setup, iterate, complete).
 *
 * Setup: the destination daemon defines the VM and starts an incoming runner
 * (POST /v1/migrations). Iterate: round 0 sends all of RAM, each later round the pages the
 * guest dirtied meanwhile (the hart's dirty tracking), while the guest runs. When a round's
 * set took no longer to send than the downtime budget, or after the round limit (with the
 * vCPU throttled more each round past half of it: auto-converge), complete: the source
 * pauses, drains its disks, sends the last pages and the device state in one request; the destination
 * loads them and runs the VM, then answers (the downtime ends), then makes the definition
 * durable; once /commit says so the source stops its VM. Any failure before that aborts
 * the destination's copy and resumes the source untouched.
 *
 * With copyStorage (libvirt's --copy-storage-all, QEMU's drive-mirror): the destination
 * creates each writable disk afresh under its state directory (disks/NAME/), same format
 * and size (read-only ones stay on their shared path, as libvirt does);
 * before the memory rounds the disks are streamed in block sets of up to 32 MiB (CRC-32C
 * each) while the guest runs, then the granules it dirtied (tracked on the runner's write
 * path), a chunk per memory round, and the rest in the stop, after the vCPU paused and its
 * requests drained. The source's disks are only read.
 */
import { resolve } from 'node:path';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Vm } from './vm.js';
import type { VmDef } from './store.js';
import { diskInfo } from '../host/storage/disk-copy.js';
import { GRANULE } from '../host/storage/dirty.js';

export interface MigrateRequest {
  /** The destination daemon, e.g. http://127.0.0.1:8447. */
  to: string;
  /** The destination daemon's bearer token. */
  token: string;
  /** Downtime budget (default 50 ms). */
  downtimeMs?: number;
  /** Rounds before completing regardless (default 30); throttling starts at half of it. */
  maxRounds?: number;
  /** Stream the disks too (default: they are on paths both hosts share). */
  copyStorage?: boolean;
}

export interface MigrateProgress {
  round: number;
  /** Bytes sent so far. */
  bytes: number;
  /** This round's pages and the rate the guest dirtied memory at (MiB/s). */
  pages: number;
  dirtyMiBps: number;
  /** Time to send what the last round sent: the downtime to expect if we stopped now. */
  expectedDowntimeMs: number;
  throttle: number;
  /** copyStorage: 'storage' while the disks' bulk goes, before the memory rounds. */
  phase?: 'storage';
  /** copyStorage: disk bytes sent so far, and granules (64 KiB) still to send. */
  diskBytes?: number;
  diskRemaining?: number;
}

export interface MigrateResult {
  totalMs: number;
  /** From the vCPU's pause on the source to the destination's answer that it runs there. */
  downtimeMs: number;
  /** From asking the source runner to stop (it takes the request between two vCPU slices) to that answer: downtimeMs and the wait before the pause. */
  stopMs: number;
  bytes: number;
  rounds: number;
  diskBytes?: number;
}

/** Largest block set per request (copyStorage). */
const DISK_CHUNK = 32 << 20;

const PAGE = 4096;

/**
 * The address the destination reaches this host at, where the user networks' moved TCP
 * connections are relayed from: the daemon's own listen address when it is a specific one
 * the destination can use (a loopback address only for a destination on loopback), else
 * the local address of the route toward the destination (a connected UDP socket sends
 * nothing). The relay admits only holders of the per-connection keys sent with the state.
 */
export async function relayHostToward(listenHost: string, to: string): Promise<string> {
  const u = new URL(to);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const loopback = (h: string): boolean => h === 'localhost' || h === '::1' || /^127\./.test(h);
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '';
  if (!wildcard && (!loopback(listenHost) || loopback(host))) return listenHost;
  const s = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((res, rej) => { s.once('error', rej); s.connect(Number(u.port) || 80, host, () => res()); });
    return s.address().address;
  } finally {
    s.close();
  }
}

export async function migrate(vm: Vm, def: VmDef, req: MigrateRequest, progress: (p: MigrateProgress) => void, relayHost = '127.0.0.1'): Promise<MigrateResult> {
  const budget = req.downtimeMs ?? 50;
  const maxRounds = req.maxRounds ?? 30;
  const base = req.to.replace(/\/+$/, '');
  const name = encodeURIComponent(def.name);
  const call = async (method: string, path: string, body?: Uint8Array | string): Promise<Response> => {
    const r = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${req.token}`, ...(body === undefined ? {} : { 'content-type': typeof body === 'string' ? 'application/json' : 'application/octet-stream' }) },
      ...(body === undefined ? {} : { body: body as string | Uint8Array<ArrayBuffer> }),
    });
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg += ` ${(await r.json() as { message?: string }).message ?? ''}`; } catch { /* not JSON */ }
      throw new Error(`destination ${method} ${path}: ${msg}`);
    }
    return r;
  };
  const t0 = performance.now();
  const { restore: _r, autostart: _a, ...definition } = def;
  let bytes = 0, round = 0, throttle = 0, diskBytes = 0;
  const drives = def.drives ?? [];
  const storage = req.copyStorage === true && drives.length > 0;
  /** One block set to the destination; the granules still to send. */
  const sendDisks = async (final: boolean): Promise<number> => {
    const r = await vm.migrateDisks(final, DISK_CHUNK);
    if (r.granules > 0) {
      await call('POST', `/v1/migrations/${name}/blocks`, r.data);
      bytes += r.data.length;
      diskBytes += r.data.length;
    }
    return r.remaining;
  };
  try {
    if (req.copyStorage && drives.some((d) => d.snapshot)) throw new Error('a drive writes to a throw-away overlay (snapshot), which cannot be copied');
    // Read-only drives are not copied (libvirt skips them too): null, they stay on a shared path.
    const disks = storage ? await Promise.all(drives.map((d) => (d.readOnly ? null : diskInfo(resolve(d.file), d.format)))) : undefined;
    await call('POST', '/v1/migrations', JSON.stringify({ definition, ...(disks ? { disks } : {}) }));
    if (storage) {
      // The bulk of the disks while the guest runs, until what is left fits one chunk
      // (or, for a guest writing faster than this sends, after twice the disks' size).
      let budget = 2 * disks!.reduce((a, d) => a + (d?.sizeBytes ?? 0), 0) / DISK_CHUNK + 8;
      for (;;) {
        const left = await sendDisks(false);
        progress({ phase: 'storage', round, bytes, pages: 0, dirtyMiBps: 0, expectedDowntimeMs: 0, throttle, diskBytes, diskRemaining: left });
        if (left * GRANULE <= DISK_CHUNK || --budget <= 0) break;
      }
    }
    let roundStart = performance.now();
    for (;;) {
      const diskLeft = storage ? await sendDisks(false) : 0; // the granules dirtied meanwhile, a chunk a round
      const r = await vm.migrateRound(round, false, throttle);
      const ts = performance.now();
      await call('POST', `/v1/migrations/${name}/pages`, r.data);
      const sendMs = Math.max(1, performance.now() - ts);
      bytes += r.data.length;
      const now = performance.now();
      const dirtyMiBps = round === 0 ? 0 : r.pages * PAGE / (1 << 20) / ((now - roundStart) / 1000);
      roundStart = now;
      // The disk granules still to send go in the stop too: at the rate this round's pages went.
      const diskMs = diskLeft * GRANULE / Math.max(1, r.data.length / sendMs);
      const expectedDowntimeMs = Math.round(sendMs + diskMs);
      progress({ round, bytes, pages: r.pages, dirtyMiBps: +dirtyMiBps.toFixed(2), expectedDowntimeMs, throttle, ...(storage ? { diskBytes, diskRemaining: diskLeft } : {}) });
      round++;
      if (round > 1 && sendMs + diskMs <= budget) break;
      if (round >= maxRounds) break;
      if (round >= maxRounds / 2) throttle = Math.min(0.9, throttle + 0.1);
    }
    const tStop = performance.now();
    const f = await vm.migrateRound(round, true, 0, relayHost);
    const tGot = performance.now();
    if (!f.state) throw new Error('the source sent no device state');
    // Paused and drained: the last dirty granules, before the machine runs there.
    if (storage) while (await sendDisks(true) > 0) { /* one disk's block set per request */ }
    const body = new Uint8Array(4 + f.state.length + f.data.length);
    new DataView(body.buffer).setUint32(0, f.state.length, true);
    body.set(f.state, 4);
    body.set(f.data, 4 + f.state.length);
    bytes += body.length;
    await call('POST', `/v1/migrations/${name}/finish`, body);
    const tEnd = performance.now();
    const stopMs = tEnd - tStop;
    // The runner stamps the pause (same host, same clock); at least the time since its data
    // arrived here, at most the whole stop.
    const fromPause = f.pausedAt !== undefined ? performance.timeOrigin + tEnd - f.pausedAt : stopMs;
    const downtimeMs = Math.min(stopMs, Math.max(tEnd - tGot, fromPause));
    // The guest runs there; its definition is made durable there after that answer, and only then does this copy go.
    await call('POST', `/v1/migrations/${name}/commit`);
    round++;
    progress({ round, bytes, pages: f.pages, dirtyMiBps: 0, expectedDowntimeMs: Math.round(downtimeMs), throttle: 0 });
    vm.migrateEnd(true);
    return { totalMs: Math.round(performance.now() - t0), downtimeMs: +downtimeMs.toFixed(1), stopMs: +stopMs.toFixed(1), bytes, rounds: round, ...(storage ? { diskBytes } : {}) };
  } catch (e) {
    // Abort the destination's copy (best effort; a request that never arrived leaves nothing to abort).
    await call('DELETE', `/v1/migrations/${name}`).catch(() => {});
    vm.migrateEnd(false);
    throw e;
  }
}
