/**
 * The daemon's named switches: one learning L2 switch per name (src/host/net/switch.ts) in
 * the daemon process, reached by each VM's runner over a unix stream socket
 * (`DIR/run/switch/NAME.sock`, QEMU's stream framing). Runners connect with `reconnect=1`,
 * so a restarted daemon's new switch is joined again by VMs that kept running. The socket
 * directory is the daemon's private run directory (0700): only its user can plug in.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Switch } from '../host/net/switch.js';
import { listenStreamAddr, type StreamLink } from '../host/net/socket-transport.js';

export const SWITCH_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,32}$';

/** Where switch `name` of the daemon with run directory `runDir` listens. */
export function switchSocketPath(runDir: string, name: string): string { return join(runDir, 'switch', `${name}.sock`); }

interface Hub { sw: Switch; close(): void; ready: Promise<void> }

export class Switches {
  private readonly hubs = new Map<string, Hub>();

  constructor(private readonly runDir: string) {
    mkdirSync(join(runDir, 'switch'), { recursive: true, mode: 0o700 });
  }

  /** Create switch `name` if it does not exist; resolves when it listens. */
  ensure(name: string): Promise<void> {
    if (!new RegExp(SWITCH_NAME_PATTERN).test(name)) return Promise.reject(new Error(`switch name '${name}': letters, digits, _ . - (1 to 32)`));
    let hub = this.hubs.get(name);
    if (!hub) {
      const sw = new Switch(name);
      const path = switchSocketPath(this.runDir, name);
      // A previous daemon's socket file; nobody listens on it any more.
      rmSync(path, { force: true });
      const links = new Set<StreamLink>();
      let close = (): void => {};
      const ready = listenStreamAddr({ kind: 'unix', path }, (link) => {
        const port = sw.connect(link);
        links.add(link);
        void link.closed.then(() => { port.close(); links.delete(link); });
      }).then((srv) => { close = () => srv.close(); });
      // Closing a server leaves its connections open: end them, as the daemon's exit would.
      hub = { sw, ready, close: () => { close(); for (const l of links) l.close(); } };
      this.hubs.set(name, hub);
      ready.catch(() => this.hubs.delete(name));
    }
    return hub.ready;
  }

  /** Names and figures of the switches (ports: connected VMs). */
  list(): Array<{ name: string; ports: number; dropped: number }> {
    return [...this.hubs].map(([name, h]) => ({ name, ports: h.sw.portCount, dropped: h.sw.dropped }));
  }

  close(): void {
    for (const h of this.hubs.values()) h.close();
    this.hubs.clear();
  }
}
