/**
 * Entry point of a VM runner process (forked by the daemon with an IPC channel).
 * The runner ends when its machine ends or when the manager goes away.
 */
import { VmRunner } from './runner.js';
import { ParentPort } from './node-port.js';
import { loadBase, openDrives } from './config.js';
import type { FromRunner, ToRunner } from './protocol.js';
import { readFileSync } from 'node:fs';
import { diskIdentity, checkDisks } from '../host/snapshot-file.js';

const version = ((): string => {
  try { return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version; } catch { return 'unknown'; }
})();

const port = new ParentPort<ToRunner, FromRunner>();
// Without a manager nobody can see or stop this VM: end with it.
port.onClose(() => process.exit(0));
new VmRunner(port, {
  load: async (cfg) => {
    const base = loadBase(cfg, process.env);
    return { base, disks: await openDrives(cfg) };
  },
  cpuSeconds: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; },
  rssBytes: () => process.memoryUsage.rss(),
  now: () => performance.now(),
  version,
  diskIdentities: (cfg) => (cfg.drives ?? []).map((d) => diskIdentity(d.file, d.format, d.readOnly ?? false)),
  checkDisks: (saved, cfg) => checkDisks(saved, (cfg.drives ?? []).map((d) => diskIdentity(d.file, d.format, d.readOnly ?? false))),
});
