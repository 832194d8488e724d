/**
 * Live migration, pre-copy, daemon to daemon (QEMU's phases: setup, iterate, complete).
 *
 * Setup: the destination daemon defines the VM and starts an incoming runner
 * (POST /v1/migrations). Iterate: round 0 sends all of RAM, each later round the pages the
 * guest dirtied meanwhile (the hart's dirty tracking), while the guest runs. When a round's
 * set took no longer to send than the downtime budget, or after the round limit (with the
 * vCPU throttled more each round past half of it: auto-converge), complete: the source
 * pauses, drains its disks, sends the last pages and the device state in one request; the destination
 * loads them and runs the VM, then answers. Only then does the source stop its VM. Any
 * failure before that aborts the destination's copy and resumes the source untouched.
 */
import type { Vm } from './vm.js';
import type { VmDef } from './store.js';

export interface MigrateRequest {
  /** The destination daemon, e.g. http://127.0.0.1:8447. */
  to: string;
  /** The destination daemon's bearer token. */
  token: string;
  /** Downtime budget (default 50 ms). */
  downtimeMs?: number;
  /** Rounds before completing regardless (default 30); throttling starts at half of it. */
  maxRounds?: number;
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
}

export interface MigrateResult { totalMs: number; downtimeMs: number; bytes: number; rounds: number }

const PAGE = 4096;

export async function migrate(vm: Vm, def: VmDef, req: MigrateRequest, progress: (p: MigrateProgress) => void): Promise<MigrateResult> {
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
  let bytes = 0, round = 0, throttle = 0;
  try {
    await call('POST', '/v1/migrations', JSON.stringify({ definition }));
    let roundStart = performance.now();
    for (;;) {
      const r = await vm.migrateRound(round, false, throttle);
      const ts = performance.now();
      await call('POST', `/v1/migrations/${name}/pages`, r.data);
      const sendMs = Math.max(1, performance.now() - ts);
      bytes += r.data.length;
      const now = performance.now();
      const dirtyMiBps = round === 0 ? 0 : r.pages * PAGE / (1 << 20) / ((now - roundStart) / 1000);
      roundStart = now;
      const expectedDowntimeMs = Math.round(sendMs);
      progress({ round, bytes, pages: r.pages, dirtyMiBps: +dirtyMiBps.toFixed(2), expectedDowntimeMs, throttle });
      round++;
      if (round > 1 && sendMs <= budget) break;
      if (round >= maxRounds) break;
      if (round >= maxRounds / 2) throttle = Math.min(0.9, throttle + 0.1);
    }
    const tPause = performance.now();
    const f = await vm.migrateRound(round, true, 0);
    if (!f.state) throw new Error('the source sent no device state');
    const body = new Uint8Array(4 + f.state.length + f.data.length);
    new DataView(body.buffer).setUint32(0, f.state.length, true);
    body.set(f.state, 4);
    body.set(f.data, 4 + f.state.length);
    bytes += body.length;
    await call('POST', `/v1/migrations/${name}/finish`, body);
    const downtimeMs = performance.now() - tPause;
    round++;
    progress({ round, bytes, pages: f.pages, dirtyMiBps: 0, expectedDowntimeMs: Math.round(downtimeMs), throttle: 0 });
    vm.migrateEnd(true);
    return { totalMs: Math.round(performance.now() - t0), downtimeMs: +downtimeMs.toFixed(1), bytes, rounds: round };
  } catch (e) {
    // Abort the destination's copy (best effort; a request that never arrived leaves nothing to abort).
    await call('DELETE', `/v1/migrations/${name}`).catch(() => {});
    vm.migrateEnd(false);
    throw e;
  }
}
