/** A small client of the daemon's API for tests: bearer-token calls and console-log waits. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
export interface ApiCall { (method: string, path: string, body?: string | object): Promise<{ status: number; text: string }> }

/** JSON bodies for objects, text/plain for strings (console input). */
export function apiClient(base: string, token: string): ApiCall {
  return async (method, path, body) => {
    const r = await fetch(base + path, {
      method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return { status: r.status, text: await r.text() };
  };
}

/** Poll VM `name`'s console log until it contains `pattern`; throw with its tail at the deadline. */
export async function waitConsole(call: ApiCall, name: string, pattern: string, timeoutMs: number, pollMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = (await call('GET', `/v1/vms/${name}/console/log`)).text;
    if (log.includes(pattern)) return;
    if (Date.now() > deadline) throw new Error(`${name}: no ${pattern}; tail:\n${log.slice(-800)}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Runners outlive their daemon by design (a killed or stopped daemon leaves its VMs running):
 * a test that kills its daemons must stop their runners too. SIGKILLs the pid of every
 * `run/NAME.pid` under `root` (a state dir, or a directory of state dirs, two levels deep).
 */
export function killRunners(root: string): void {
  const dirs = [root];
  try { for (const e of readdirSync(root, { withFileTypes: true })) if (e.isDirectory()) dirs.push(join(root, e.name)); } catch { return; }
  for (const d of dirs) {
    let files: string[] = [];
    try { files = readdirSync(join(d, 'run')).filter((f) => f.endsWith('.pid')); } catch { continue; }
    for (const f of files) {
      try { process.kill((JSON.parse(readFileSync(join(d, 'run', f), 'utf8')) as { pid: number }).pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}
