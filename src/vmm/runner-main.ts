/**
 * Entry point of a VM runner process.
 * - `--socket PATH` (the daemon's way): the runner listens on a Unix socket and outlives its
 *   manager; a manager that reconnects takes the VM over. It ends when its machine ends.
 * - no arguments, forked with an IPC channel: it ends with the channel (tests, embedding).
 */
import { VmRunner, type RunnerHost } from './runner.js';
import { ParentPort } from './node-port.js';
import { RunnerSocketServer } from './socket-port.js';
import { loadBase, openDrives, openNics } from './config.js';
import type { FromRunner, ToRunner } from './protocol.js';
import { readFileSync } from 'node:fs';
import { diskIdentity, checkDisks, writeBundle } from '../host/snapshot-file.js';
import { setWasmTier } from '../host/wasm-tier.js';
import { useDeflateCodec } from '../snapshot/format.js';
import { zlibCodec } from '../host/snapshot-zlib.js';

// The translator's code: V8's optimizing tier only for code that runs long (as the CLI).
setWasmTier('late');
// Snapshots deflate and inflate on zlib's thread pool.
useDeflateCodec(zlibCodec);

const version = ((): string => {
  try { return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version; } catch { return 'unknown'; }
})();

const host: RunnerHost = {
  load: async (cfg, opts) => {
    const base = loadBase(cfg, process.env);
    const disks = await openDrives(cfg);
    try {
      return { base, disks, nics: await openNics(cfg, opts) };
    } catch (e) {
      await Promise.allSettled(disks.map((d) => d.close()));
      throw e;
    }
  },
  // Images are read again on reboot rather than kept (see RunnerHost.reloadBase).
  reloadBase: (cfg) => loadBase(cfg, process.env),
  // Present when started with --expose-gc (RUNNER_NODE_FLAGS).
  // Twice: the first collection frees the objects, the second gives most of their pages back.
  collectGarbage: () => { const gc = (globalThis as { gc?: () => void }).gc; gc?.(); gc?.(); },
  cpuSeconds: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; },
  rssBytes: () => process.memoryUsage.rss(),
  now: () => performance.now(),
  version,
  diskIdentities: (cfg) => (cfg.drives ?? []).map((d) => diskIdentity(d.file, d.format, d.readOnly ?? false)),
  checkDisks: (saved, cfg) => checkDisks(saved, (cfg.drives ?? []).map((d) => diskIdentity(d.file, d.format, d.readOnly ?? false))),
  writeBundle: (file, cfg, disks, freeze, encode) => writeBundle(file, (cfg.drives ?? []).map((d, i) => ({
    disk: disks[i], file: d.file, readOnly: d.readOnly ?? false, format: diskIdentity(d.file, d.format, false).format,
  })), freeze, encode),
};

const si = process.argv.indexOf('--socket');
if (si >= 0 && process.argv[si + 1]) {
  // Nobody reads our stdio once the daemon is gone: a closed pipe must not end the VM.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  host.holdExit = (done) => server.holdExitUntil(done);
  const server = new RunnerSocketServer(process.argv[si + 1], () => {
    const runner = new VmRunner(server, host);
    server.onConnect(() => runner.hello());
  }, (e) => { process.stderr.write(`runner: ${e.message}\n`); process.exit(1); });
} else {
  const port = new ParentPort<ToRunner, FromRunner>();
  // Without a manager nobody can see or stop this VM: end with it.
  port.onClose(() => process.exit(0));
  new VmRunner(port, host);
}
