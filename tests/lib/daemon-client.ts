/** A small client of the daemon's API for tests: bearer-token calls and console-log waits. */
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
