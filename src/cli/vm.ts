/**
 * `typevisor daemon` (run the VM manager) and `typevisor vm VERB` (talk to it), in virsh's
 * habits: `vm list`, `vm start NAME`, `vm console NAME` (Ctrl-] detaches), ... The client
 * reads the daemon's token from the state directory's token file.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { UserError } from '../host/images.js';
import { parseFlags, USAGE_STATUS, type Parsed } from './args.js';
import type { CliIo } from './main.js';

export const DEFAULT_LISTEN = '127.0.0.1:8446';

export const VM_HELP = `typevisor daemon [--listen HOST:PORT] [--state-dir DIR] [--image-root DIR]
                 [--tls-cert FILE --tls-key FILE | --insecure] [--show-url]
                 [--on-exit keep|shutdown|destroy] [--shutdown-timeout SECONDS]
  Runs VMs, each in its own runner process, behind a REST API (/v1, OpenAPI at
  /v1/openapi.json), /metrics and /v1/events, and a web dashboard at /. Listens on
  ${DEFAULT_LISTEN} by default; another address needs TLS or --insecure. The bearer token
  is DIR/token (created mode 0600); the dashboard logs in with it, and --show-url prints
  a URL with the token in it (as Jupyter does) on stdout. On SIGTERM/SIGINT the VMs keep
  running by default (as libvirtd leaves its guests; the next daemon takes them over);
  --on-exit shutdown presses their power buttons and waits (then destroys), destroy stops them.
  State dir: $TYPEVISOR_STATE_DIR or ~/.local/state/typevisor.

typevisor vm [--connect URL] [--state-dir DIR] VERB ...
  list                         names and states
  define FILE.json | define NAME [-m SIZE] [--kernel F] [--initrd F] [--append A] [--bios F]
                     [--drive FILE]... [--cpu FRACTION] [--autostart]
  start|shutdown|reboot|suspend|resume|destroy|undefine NAME
  console NAME                 attach the terminal (Ctrl-] detaches)
  stats NAME                   instructions, CPU seconds, RSS, disk counters
  save NAME FILE [--with-disks] snapshot the running VM to FILE (it keeps running); --with-disks:
                               FILE is a bundle directory holding the snapshot and copies of the disks
  restore NAME FILE            define NAME from a snapshot FILE (or bundle: it runs on the bundle's
                               disks) and start it where it was saved
  migrate NAME --to URL [--to-token-file F] [--downtime MS] [--copy-storage]
                               move the running VM to the daemon at URL (its token: the file F,
                               or $TYPEVISOR_MIGRATE_TOKEN); progress: round, bytes, dirty rate;
                               --copy-storage streams the disks too (created there under its state dir)
  set NAME [--cpu FRACTION] [-m SIZE] [--autostart on|off]
                               limits apply to a running VM at once
`;

export function stateDir(env: NodeJS.ProcessEnv, p?: Parsed): string {
  const d = p?.flags.get('state-dir')?.[0];
  if (d) return d;
  if (env.TYPEVISOR_STATE_DIR) return env.TYPEVISOR_STATE_DIR;
  return join(env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state'), 'typevisor');
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UserError(`--listen ${text}: expected HOST:PORT (e.g. ${DEFAULT_LISTEN})`, USAGE_STATUS);
  return { host: m[1] ?? m[2], port };
}

export async function cmdDaemon(argv: readonly string[], io: CliIo): Promise<number> {
  const p = parseFlags(argv, [
    { name: 'listen', value: true }, { name: 'state-dir', value: true }, { name: 'image-root', value: true },
    { name: 'tls-cert', value: true }, { name: 'tls-key', value: true }, { name: 'insecure', value: false },
    { name: 'show-url', value: false }, { name: 'on-exit', value: true }, { name: 'shutdown-timeout', value: true },
  ], 'daemon');
  const onExit = p.flags.get('on-exit')?.[0] ?? 'keep';
  if (onExit !== 'keep' && onExit !== 'shutdown' && onExit !== 'destroy') throw new UserError(`daemon: --on-exit ${onExit}: expected keep, shutdown or destroy`, USAGE_STATUS);
  const timeoutText = p.flags.get('shutdown-timeout')?.[0];
  if (timeoutText !== undefined && !/^\d{1,5}$/.test(timeoutText)) throw new UserError(`daemon: --shutdown-timeout ${timeoutText}: expected seconds`, USAGE_STATUS);
  const shutdownTimeoutMs = timeoutText === undefined ? undefined : Number(timeoutText) * 1000;
  if (p.positional.length) throw new UserError(`daemon: unexpected argument '${p.positional[0]}'`, USAGE_STATUS);
  const { host, port } = parseListen(p.flags.get('listen')?.[0] ?? DEFAULT_LISTEN);
  const cert = p.flags.get('tls-cert')?.[0], key = p.flags.get('tls-key')?.[0];
  if ((cert === undefined) !== (key === undefined)) throw new UserError('daemon: --tls-cert and --tls-key go together', USAGE_STATUS);
  if (!LOOPBACK.test(host) && cert === undefined && !p.flags.has('insecure')) {
    throw new UserError(`daemon: ${host} is not a loopback address: give --tls-cert/--tls-key, or --insecure to serve plain HTTP`, USAGE_STATUS);
  }
  // Loaded here so `typevisor run` does not pay for the HTTP stack.
  const { Daemon } = await import('../daemon/server.js');
  const dir = stateDir(io.env, p);
  let daemon: InstanceType<typeof Daemon>;
  try {
    daemon = new Daemon({
      stateDir: dir, host, port, env: io.env,
      ...(cert !== undefined && key !== undefined ? { tls: { cert, key } } : {}),
      ...(p.flags.has('image-root') ? { imageRoot: p.flags.get('image-root')![0] } : {}),
      log: (m) => io.stderr.write(`typevisor daemon: ${m}\n`),
      ...(shutdownTimeoutMs !== undefined ? { shutdownTimeoutMs } : {}),
    });
  } catch (e) {
    throw new UserError(`daemon: ${(e as Error).message}`);
  }
  const addr = await daemon.listen().catch((e: Error) => { throw new UserError(`daemon: cannot listen on ${host}:${port}: ${e.message}`); });
  io.stderr.write(`typevisor daemon: listening on ${addr} (state ${dir})\n`);
  io.stderr.write(`typevisor daemon: dashboard at ${addr}/ (log in with the token in ${join(dir, 'token')})\n`);
  if (p.flags.has('show-url')) io.stdout.write(`${addr}/?token=${daemon.token}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve(); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  const live = await daemon.close({ vms: onExit });
  if (live && onExit === 'keep') io.stderr.write(`typevisor daemon: ${live} VM${live === 1 ? '' : 's'} keep running; the next daemon on ${dir} takes them over\n`);
  return 0;
}

interface Client { call(method: string, path: string, body?: unknown, raw?: boolean): Promise<unknown>; url: string; token: string }

function client(p: Parsed, env: NodeJS.ProcessEnv): Client {
  const url = (p.flags.get('connect')?.[0] ?? env.TYPEVISOR_URL ?? `http://${DEFAULT_LISTEN}`).replace(/\/$/, '');
  const tokenFile = join(stateDir(env, p), 'token');
  let token: string;
  try { token = readFileSync(tokenFile, 'utf8').trim(); } catch (e) {
    throw new UserError(`cannot read the daemon's token ${tokenFile}: ${(e as Error).message} (is 'typevisor daemon' running with this --state-dir?)`);
  }
  return {
    url, token,
    async call(method, path, body, raw) {
      let r: Response;
      try {
        r = await fetch(url + path, {
          method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      } catch (e) {
        throw new UserError(`cannot reach the daemon at ${url}: ${((e as Error).cause as Error | undefined)?.message ?? (e as Error).message}`);
      }
      const text = await r.text();
      if (!r.ok) {
        let msg = text;
        try { msg = (JSON.parse(text) as { message: string }).message; } catch { /* plain text */ }
        throw new UserError(`error: ${msg}`);
      }
      if (raw) return text;
      return text === '' ? null : JSON.parse(text) as unknown;
    },
  };
}

const VM_FLAGS = [
  { name: 'connect', value: true }, { name: 'state-dir', value: true },
  { name: 'm', aliases: ['memory'], value: true }, { name: 'kernel', value: true }, { name: 'initrd', value: true },
  { name: 'append', value: true }, { name: 'bios', value: true }, { name: 'drive', value: true, repeat: true },
  { name: 'cpu', value: true }, { name: 'autostart', value: false }, { name: 'timeout', value: true },
  { name: 'to', value: true }, { name: 'to-token-file', value: true }, { name: 'downtime', value: true },
  { name: 'with-disks', value: false }, { name: 'copy-storage', value: false },
];

function cpuFlag(p: Parsed): number | undefined {
  const t = p.flags.get('cpu')?.[0];
  if (t === undefined) return undefined;
  const v = t.endsWith('%') ? Number(t.slice(0, -1)) / 100 : Number(t);
  if (!(v > 0 && v <= 64)) throw new UserError(`--cpu ${t}: a fraction of one core (0.25 or 25%)`, USAGE_STATUS);
  return v;
}

export async function cmdVm(argv: readonly string[], io: CliIo): Promise<number> {
  // `set NAME --autostart on|off` takes a value; elsewhere --autostart is a switch.
  const args = [...argv];
  let autostartValue: boolean | undefined;
  const ai = args.findIndex((a, i) => (a === '--autostart' || a === '-autostart') && (args[i + 1] === 'on' || args[i + 1] === 'off'));
  if (ai >= 0) { autostartValue = args[ai + 1] === 'on'; args.splice(ai, 2); }
  const p = parseFlags(args, VM_FLAGS, 'vm');
  const [verb, name, ...extra] = p.positional;
  if (verb === undefined || verb === 'help') { io.stdout.write(VM_HELP); return verb === undefined ? USAGE_STATUS : 0; }
  const needName = (): string => {
    if (name === undefined) throw new UserError(`vm ${verb}: give a VM name`, USAGE_STATUS);
    return encodeURIComponent(name);
  };
  const c = client(p, io.env);
  if (verb === 'save' || verb === 'restore') {
    const n = needName();
    if (extra.length !== 1) throw new UserError(`vm ${verb}: expected NAME FILE`, USAGE_STATUS);
    const file = resolve(extra[0]);
    if (verb === 'save') {
      const withDisks = p.flags.has('with-disks');
      const r = await c.call('POST', `/v1/vms/${n}/snapshot`, { file, ...(withDisks ? { withDisks } : {}) }) as { bytes: number; ms: number; diskBytes?: number };
      const disks = r.diskBytes !== undefined ? `, ${(r.diskBytes / (1 << 20)).toFixed(1)} MiB of disk copied` : '';
      io.stdout.write(`Domain '${name}' saved to ${file} (${(r.bytes / (1 << 20)).toFixed(1)} MiB${disks} in ${r.ms} ms)\n`);
    } else {
      await c.call('POST', '/v1/vms', { name, restore: file });
      await c.call('POST', `/v1/vms/${n}/start`);
      io.stdout.write(`Domain '${name}' restored from ${file}\n`);
    }
    return 0;
  }
  if (extra.length) throw new UserError(`vm ${verb}: unexpected argument '${extra[0]}'`, USAGE_STATUS);
  if (verb === 'migrate') return await migrateVm(c, needName(), p, io);
  switch (verb) {
    case 'list': {
      const vms = await c.call('GET', '/v1/vms') as Array<{ name: string; state: string }>;
      const w = Math.max(4, ...vms.map((v) => v.name.length));
      io.stdout.write(` ${'Name'.padEnd(w)}   State\n${'-'.repeat(w + 14)}\n`);
      for (const v of vms) io.stdout.write(` ${v.name.padEnd(w)}   ${v.state === 'shutoff' ? 'shut off' : v.state}\n`);
      return 0;
    }
    case 'define': {
      let def: Record<string, unknown>;
      if (name !== undefined && name.endsWith('.json')) {
        try { def = JSON.parse(readFileSync(name, 'utf8')) as Record<string, unknown>; } catch (e) { throw new UserError(`vm define: ${name}: ${(e as Error).message}`); }
      } else {
        needName();
        const one = (k: string): string | undefined => p.flags.get(k)?.[0];
        const cpu = cpuFlag(p);
        def = {
          name,
          ...(one('m') !== undefined ? { memory: one('m') } : {}),
          ...(one('kernel') !== undefined ? { kernel: one('kernel') } : {}),
          ...(one('initrd') !== undefined ? { initrd: one('initrd') } : {}),
          ...(one('append') !== undefined ? { append: one('append') } : {}),
          ...(one('bios') !== undefined ? { bios: one('bios') } : {}),
          ...(p.flags.has('drive') ? { drives: p.flags.get('drive')!.map((file) => ({ file })) } : {}),
          ...(cpu !== undefined ? { limits: { cpu } } : {}),
          ...(p.flags.has('autostart') ? { autostart: true } : {}),
        };
      }
      const r = await c.call('POST', '/v1/vms', def) as { name: string };
      io.stdout.write(`Domain '${r.name}' defined\n`);
      return 0;
    }
    case 'start': case 'reboot': case 'suspend': case 'resume': case 'destroy': {
      await c.call('POST', `/v1/vms/${needName()}/${verb}`);
      const said = { start: 'started', reboot: 'is being rebooted', suspend: 'suspended', resume: 'resumed', destroy: 'destroyed' }[verb];
      io.stdout.write(`Domain '${name}' ${said}\n`);
      return 0;
    }
    case 'shutdown': {
      const t = p.flags.get('timeout')?.[0];
      await c.call('POST', `/v1/vms/${needName()}/shutdown`, t === undefined ? {} : { timeoutMs: Math.round(Number(t) * 1000) });
      io.stdout.write(`Domain '${name}' is being shutdown\n`);
      return 0;
    }
    case 'undefine':
      await c.call('DELETE', `/v1/vms/${needName()}`);
      io.stdout.write(`Domain '${name}' has been undefined\n`);
      return 0;
    case 'stats': {
      const s = await c.call('GET', `/v1/vms/${needName()}/stats`);
      io.stdout.write(JSON.stringify(s, null, 2) + '\n');
      return 0;
    }
    case 'set': {
      const body: Record<string, unknown> = {};
      const cpu = cpuFlag(p);
      if (cpu !== undefined) body.limits = { cpu };
      if (p.flags.has('m')) body.memory = p.flags.get('m')![0];
      if (autostartValue !== undefined) body.autostart = autostartValue;
      if (Object.keys(body).length === 0) throw new UserError('vm set: nothing to set (--cpu, -m, --autostart on|off)', USAGE_STATUS);
      await c.call('PATCH', `/v1/vms/${needName()}`, body);
      return 0;
    }
    case 'console': return await consoleAttach(c, needName(), name!, io);
    default: throw new UserError(`vm: unknown verb '${verb}' (see 'typevisor vm help')`, USAGE_STATUS);
  }
}

const CTRL_RIGHT_BRACKET = 0x1d;

/** Attach the terminal to the VM's console WebSocket; Ctrl-] detaches (virsh console). */
async function consoleAttach(c: Client, path: string, name: string, io: CliIo): Promise<number> {
  // (Loaded here: `ws` takes ~40 ms to import, which every `typevisor run` would pay.)
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`${c.url.replace(/^http/, 'ws')}/v1/vms/${path}/console`, { headers: { authorization: `Bearer ${c.token}` } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', (e) => reject(new UserError(`console ${name}: ${e.message}`)));
  });
  io.stderr.write(`Connected to domain '${name}'\r\nEscape character is ^]\r\n`);
  const stdin = io.stdin;
  const raw = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  if (raw) stdin.setRawMode?.(true);
  return await new Promise<number>((resolve) => {
    let done = false;
    const finish = (status: number): void => {
      if (done) return;
      done = true;
      if (raw) stdin.setRawMode?.(false);
      stdin.removeAllListeners('data');
      stdin.pause();
      ws.close();
      io.stderr.write('\r\n');
      resolve(status);
    };
    ws.on('message', (d: Buffer) => { io.stdout.write(new Uint8Array(d.buffer, d.byteOffset, d.length)); });
    ws.on('close', () => finish(0));
    ws.on('error', () => finish(1));
    stdin.on('data', (chunk) => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const i = raw ? b.indexOf(CTRL_RIGHT_BRACKET) : -1;
      if (i >= 0) { if (i > 0) ws.send(b.subarray(0, i)); finish(0); return; }
      ws.send(b);
    });
    stdin.on('end', () => { /* piped input ended: keep showing output until the console closes */ });
    stdin.resume();
  });
}

/** `vm migrate NAME --to URL`: streams the daemon's progress lines, then prints the result. */
async function migrateVm(c: Client, name: string, p: Parsed, io: CliIo): Promise<number> {
  const to = p.flags.get('to')?.[0];
  if (!to) throw new UserError('vm migrate: give --to URL (the destination daemon)', USAGE_STATUS);
  const tf = p.flags.get('to-token-file')?.[0];
  let token = io.env.TYPEVISOR_MIGRATE_TOKEN;
  if (tf !== undefined) {
    try { token = readFileSync(tf, 'utf8').trim(); } catch (e) { throw new UserError(`vm migrate: ${tf}: ${(e as Error).message}`); }
  }
  if (!token) throw new UserError('vm migrate: the destination\'s token: --to-token-file FILE or $TYPEVISOR_MIGRATE_TOKEN', USAGE_STATUS);
  const dt = p.flags.get('downtime')?.[0];
  const body = { to, token, ...(dt !== undefined ? { downtimeMs: Number(dt) } : {}), ...(p.flags.has('copy-storage') ? { copyStorage: true } : {}) };
  let r: Response;
  try {
    r = await fetch(`${c.url}/v1/vms/${name}/migrate`, {
      method: 'POST', headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json', accept: 'application/x-ndjson' }, body: JSON.stringify(body),
    });
  } catch (e) {
    throw new UserError(`cannot reach the daemon at ${c.url}: ${(e as Error).message}`);
  }
  const text = r.ok ? '' : await r.text();
  if (!r.ok) {
    let msg = text;
    try { msg = (JSON.parse(text) as { message: string }).message; } catch { /* plain text */ }
    throw new UserError(`error: ${msg}`);
  }
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  let buf = '';
  const dec = new TextDecoder();
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = JSON.parse(buf.slice(0, nl)) as { progress?: Record<string, number> & { phase?: string }; result?: Record<string, number>; error?: { message: string } };
      buf = buf.slice(nl + 1);
      if (line.progress) {
        const g = line.progress;
        const diskLeft = g.diskRemaining !== undefined ? `${(g.diskRemaining * 64 / 1024).toFixed(1)} MiB left` : '';
        const text = g.phase === 'storage' ? `storage: ${((g.diskBytes ?? 0) / (1 << 20)).toFixed(1)} MiB sent, ${diskLeft}` : `round ${g.round}: ${(g.bytes / (1 << 20)).toFixed(1)} MiB sent, ${g.pages} pages, dirty ${g.dirtyMiBps} MiB/s, ` +
          `expected downtime ${g.expectedDowntimeMs} ms${g.throttle ? `, vCPU throttled ${Math.round(g.throttle * 100)}%` : ''}${diskLeft ? `, disk ${diskLeft}` : ''}`;
        io.stderr.write(tty ? `\r\x1b[K${text}` : `${text}\n`);
      } else if (line.result) {
        if (tty) io.stderr.write('\n');
        io.stdout.write(JSON.stringify(line.result) + '\n');
        return 0;
      } else if (line.error) {
        if (tty) io.stderr.write('\n');
        throw new UserError(`error: ${line.error.message}`);
      }
    }
  }
  throw new UserError('error: the daemon ended the migration without a result');
}
