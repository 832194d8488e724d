/**
 * The daemon: a REST API under /v1 (fastify; requests validated against the same JSON
 * schemas that make /v1/openapi.json), bearer-token auth, Prometheus /metrics, server-sent
 * events of state changes, and a console WebSocket per VM. VMs run in runner processes.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyError } from 'fastify';
import fastifyWebsocket from '@fastify/websocket';
import fastifySwagger from '@fastify/swagger';
import { Registry, Gauge } from 'prom-client';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefinitionStore, vmDefSchema, vmPatchSchema, memoryBytes, NAME_PATTERN, type VmDef } from './store.js';
import { Vm, ApiError, VM_STATES, type VmInfo } from './vm.js';
import { Dashboard } from './web.js';
import { parseHostFwd } from '../host/net/netdev.js';
import { bundleDisks, checkDisks, copyDiskExact, diskIdentity, isBundle, readSnapshotFile } from '../host/snapshot-file.js';
import { createImage, syncDir } from '../host/storage/disk-copy.js';
import { migrate, relayHostToward, type MigrateRequest } from './migrate.js';
import { Switches } from './switches.js';
import { readSnapshotHeader } from '../snapshot/format.js';
import type { RunnerConfig } from '../vmm/protocol.js';

/** What the daemon does with running VMs when it stops. */
export type OnExit = 'keep' | 'shutdown' | 'destroy';

export interface DaemonOptions {
  stateDir: string;
  host?: string;
  port?: number;
  tls?: { cert: string; key: string };
  /** When set, every file a definition names must lie under it. */
  imageRoot?: string;
  env?: NodeJS.ProcessEnv;
  log?: (msg: string) => void;
  /** Default graceful shutdown timeout (ms). */
  shutdownTimeoutMs?: number;
}

const RUNNER = join(dirname(fileURLToPath(import.meta.url)), '..', 'vmm', 'runner-main.js');

/** The token file, created at first start with mode 0600. */
export function loadOrCreateToken(stateDir: string): string {
  const path = join(stateDir, 'token');
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    const t = randomBytes(32).toString('hex');
    writeFileSync(path, t + '\n', { mode: 0o600, flag: 'wx' });
    return t;
  }
}

const errorSchema = { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } }, required: ['code', 'message'] } as const;
const nameParams = { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: NAME_PATTERN } } } as const;
const vmInfoSchema = { type: 'object', additionalProperties: true, properties: { name: { type: 'string' }, state: { type: 'string', enum: VM_STATES } } } as const;

export class Daemon {
  readonly app: FastifyInstance;
  readonly token: string;
  private readonly store: DefinitionStore;
  private readonly vms = new Map<string, Vm>();
  private readonly sseClients = new Set<FastifyReply>();
  private readonly wsEventClients = new Set<(event: string) => void>();
  private readonly registry = new Registry();
  private readonly log: (msg: string) => void;
  private readonly runDir: string;
  private readonly switches: Switches;
  private readonly web: Dashboard;

  constructor(private readonly opts: DaemonOptions) {
    mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
    this.log = opts.log ?? ((m) => process.stderr.write(`typevisor daemon: ${m}\n`));
    this.token = loadOrCreateToken(opts.stateDir);
    this.web = new Dashboard(this.token, opts.tls !== undefined);
    this.store = new DefinitionStore(opts.stateDir);
    this.runDir = join(opts.stateDir, 'run');
    mkdirSync(this.runDir, { recursive: true, mode: 0o700 });
    this.switches = new Switches(this.runDir);
    this.app = Fastify({
      ...(opts.tls ? { https: { cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) } } : {}),
      // Strict: no silent coercion or stripping of unknown fields.
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
      bodyLimit: 1 << 20,
    });
    for (const d of this.store.loadAll(this.log)) this.addVm(d);
  }

  private addVm(def: VmDef): Vm {
    const vm = new Vm(def, RUNNER, this.opts.env ?? process.env, this.runDir);
    this.ensureSwitches(def);
    vm.weightReference = () => this.weightReference();
    vm.on('state', (info) => { this.broadcast(info); this.reweigh(); });
    // A VM defined from a snapshot resumes from it once; later starts boot.
    vm.on('restored', () => { const { restore: _r, ...rest } = vm.def; vm.def = rest; this.store.save(rest); });
    this.vms.set(def.name, vm);
    return vm;
  }

  /** The switches a definition's NICs name listen (runners connect and reconnect by themselves). */
  private ensureSwitches(def: VmDef): void {
    for (const n of def.nics ?? []) {
      if (n.type === 'switch' && n.switch !== undefined) this.switches.ensure(n.switch).catch((e: Error) => this.log(`switch ${n.switch}: ${e.message}`));
    }
  }

  /** CPU weights are relative: the highest weight among running VMs (at least 100) runs at the daemon's nice. */
  private weightReference(): number {
    let ref = 100;
    for (const v of this.vms.values()) if (v.pid !== undefined) ref = Math.max(ref, v.def.limits?.cpuWeight ?? 100);
    return ref;
  }

  /** Re-apply every running VM's nice value when the reference may have moved. */
  private lastReference = 100;
  private reweigh(): void {
    const ref = this.weightReference();
    if (ref === this.lastReference) return;
    this.lastReference = ref;
    for (const v of this.vms.values()) v.reapplyWeight();
  }

  private broadcast(info: VmInfo): void {
    const json = JSON.stringify({ name: info.name, state: info.state, ...(info.lastExit ? { lastExit: info.lastExit } : {}) });
    const data = `event: state\ndata: ${json}\n\n`;
    for (const r of this.sseClients) r.raw.write(data);
    for (const send of this.wsEventClients) send(json);
  }

  private vm(name: string): Vm {
    const v = this.vms.get(name);
    if (!v) throw new ApiError(404, 'not_found', `no VM named '${name}'`);
    return v;
  }

  /** Every file a definition names exists under --image-root (when set). */
  private checkPaths(def: Partial<VmDef>): void {
    if (def.memory !== undefined) {
      const m = memoryBytes(def.memory);
      if (m < 4 << 20 || m > 0xf000_0000 || m % 4096 !== 0) throw new ApiError(400, 'invalid', `memory: ${String(def.memory)} must be a multiple of 4 KiB between 4M and 3840M`, '/memory');
    }
    (def.nics ?? []).forEach((n, i) => {
      if (n.type === 'switch' && n.switch === undefined) throw new ApiError(400, 'invalid', `nics/${i}: a switch NIC needs 'switch' (the switch's name)`, `/nics/${i}/switch`);
      if (n.type === 'user' && n.switch !== undefined) throw new ApiError(400, 'invalid', `nics/${i}/switch: only for type 'switch'`, `/nics/${i}/switch`);
      if (n.type === 'switch' && (n.hostfwd !== undefined || n.restrict !== undefined)) {
        throw new ApiError(400, 'invalid', `nics/${i}: hostfwd and restrict are for type 'user'`, `/nics/${i}/${n.hostfwd !== undefined ? 'hostfwd' : 'restrict'}`);
      }
    });
    (def.nics ?? []).forEach((n, i) => (n.hostfwd ?? []).forEach((f, j) => {
      try { parseHostFwd(f); } catch (e) { throw new ApiError(400, 'invalid', `nics/${i}/hostfwd/${j}: ${(e as Error).message}`, `/nics/${i}/hostfwd/${j}`); }
    }));
    const root = this.opts.imageRoot;
    if (!root) return;
    const check = (p: string | undefined, field: string): void => {
      if (p === undefined || (field === '/bios' && (p === 'none' || p === 'default'))) return;
      const abs = resolve(p);
      if (!abs.startsWith(resolve(root) + sep)) throw new ApiError(400, 'forbidden_path', `${field}: '${p}' is outside the image root`, field);
    };
    check(def.kernel, '/kernel'); check(def.initrd, '/initrd'); check(def.bios, '/bios'); check(def.restore, '/restore');
    (def.drives ?? []).forEach((d, i) => check(d.file, `/drives/${i}/file`));
  }

  /**
   * A VM defined from a bundle runs on copies of the bundle's writable disks under the state
   * directory (disks/NAME/), so the bundle stays as saved and restores again; the copies are
   * byte-exact, so the snapshot's disk identities hold. Checked against those identities first.
   */
  private async copyBundleDisks(def: VmDef): Promise<void> {
    const drives = def.drives ?? [];
    try {
      const header = readSnapshotHeader(readSnapshotFile(def.restore!));
      checkDisks(header.disks, drives.map((d) => diskIdentity(d.file, d.format, d.readOnly ?? false)));
    } catch (e) {
      throw new ApiError(400, 'invalid_snapshot', (e as Error).message, '/restore');
    }
    const dir = join(this.opts.stateDir, 'disks', def.name);
    rmSync(dir, { recursive: true, force: true }); // an earlier VM of this name that was undefined
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      def.drives = await Promise.all(drives.map(async (d, i) => {
        if (d.readOnly) return d; // the guest cannot change it: used in place
        const file = join(dir, `vd${String.fromCharCode(97 + i)}.${d.format ?? 'raw'}`);
        await copyDiskExact(d.file, file);
        return { ...d, file };
      }));
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw new ApiError(400, 'invalid_snapshot', `cannot copy the bundle's disks: ${(e as Error).message}`, '/restore');
    }
  }

  /** VMs arriving by live migration (destination side), by name; kept a minute after they run, so a late abort still finds them. */
  private incoming = new Map<string, { vm: Vm; started: Promise<void>; idle?: NodeJS.Timeout; diskDir?: string; commit?: { def: string; run: () => Promise<void> }; committed?: Promise<void> }>();
  private incomingFailed = new Map<string, string>();

  /** Live migration: POST /v1/vms/{name}/migrate (source) and /v1/migrations (destination). */
  private migrationRoutes(err: Record<number, unknown>): void {
    const app = this.app;
    app.post<{ Params: { name: string }; Body: MigrateRequest }>('/v1/vms/:name/migrate', {
      schema: {
        summary: 'Move the running VM to another daemon (pre-copy); answers when it runs there and is gone here (Accept: application/x-ndjson streams progress lines first)',
        params: nameParams,
        body: {
          type: 'object', required: ['to', 'token'], additionalProperties: false,
          properties: {
            to: { type: 'string', pattern: '^https?://', maxLength: 2048 }, token: { type: 'string', minLength: 1, maxLength: 4096 },
            downtimeMs: { type: 'integer', minimum: 1, maximum: 60_000 }, maxRounds: { type: 'integer', minimum: 2, maximum: 1000 },
            copyStorage: { type: 'boolean', description: 'Stream the disks too; the destination creates them under its state directory (disks/NAME/)' },
          },
        },
        response: { 200: { type: 'object', properties: { totalMs: { type: 'number' }, downtimeMs: { type: 'number' }, stopMs: { type: 'number' }, bytes: { type: 'integer' }, rounds: { type: 'integer' }, diskBytes: { type: 'integer' } } }, ...err },
      },
    }, async (req, reply) => {
      const vm = this.vm(req.params.name);
      if (vm.state !== 'running') throw new ApiError(409, 'wrong_state', `cannot migrate '${vm.name}': it is ${vm.state}`);
      const stream = /application\/x-ndjson/.test(req.headers.accept ?? '');
      if (stream) { reply.hijack(); reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson' }); }
      try {
        const relayHost = await relayHostToward(this.opts.host ?? '127.0.0.1', req.body.to);
        const result = await migrate(vm, vm.def, req.body, (p) => { if (stream) reply.raw.write(JSON.stringify({ progress: p }) + '\n'); }, relayHost);
        await vm.runnerExited;
        this.store.remove(vm.name);
        this.vms.delete(vm.name);
        if (!stream) return result;
        reply.raw.end(JSON.stringify({ result }) + '\n');
      } catch (e) {
        const msg = `migration of '${vm.name}' failed, it keeps running here: ${(e as Error).message}`;
        if (!stream) throw new ApiError(409, 'migration_failed', msg);
        reply.raw.end(JSON.stringify({ error: { code: 'migration_failed', message: msg } }) + '\n');
      }
      return reply;
    });

    const diskSchema = { type: 'object', required: ['format', 'sizeBytes'], additionalProperties: false, properties: { format: { type: 'string', enum: ['raw', 'qcow2'] }, sizeBytes: { type: 'integer', minimum: 512, maximum: 2 ** 46 } } } as const;
    app.post<{ Body: { definition: VmDef; disks?: Array<{ format: 'raw' | 'qcow2'; sizeBytes: number } | null> } }>('/v1/migrations', {
      schema: {
        summary: 'Destination of a live migration: define the VM and start an incoming runner (`disks`: with copyStorage, empty disks of these formats and sizes are created under the state directory, disks/NAME/; null: a read-only drive on a shared path)',
        body: { type: 'object', required: ['definition'], additionalProperties: false, properties: { definition: vmDefSchema, disks: { type: 'array', maxItems: 64, items: { anyOf: [diskSchema, { type: 'null' }] } } } },
        response: { 201: vmInfoSchema, ...err },
      },
    }, async (req, reply) => {
      const { restore: _r, ...def } = req.body.definition; // the pages come from the source, not a file
      if (this.vms.has(def.name)) throw new ApiError(409, 'exists', `a VM named '${def.name}' already exists here`, '/definition/name');
      const disks = req.body.disks;
      let diskDir: string | undefined;
      if (disks) {
        if (disks.length !== (def.drives ?? []).length) throw new ApiError(400, 'invalid', `disks: ${disks.length} given for ${(def.drives ?? []).length} drives`, '/disks');
        this.checkPaths({ ...def, drives: (def.drives ?? []).filter((_, i) => disks[i] === null) }); // the others are created here
        const dir = join(this.opts.stateDir, 'disks', def.name);
        rmSync(dir, { recursive: true, force: true }); // left by an earlier, failed attempt (no VM of this name is here)
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        diskDir = dir;
        try {
          def.drives = await Promise.all((def.drives ?? []).map(async (d, i) => {
            const k = disks[i];
            if (k === null) return d;
            const file = join(dir, `vd${String.fromCharCode(97 + i)}.${k.format}`);
            await createImage(file, k.format, k.sizeBytes);
            return { ...d, file, format: k.format };
          }));
          syncDir(dir);
        } catch (e) {
          rmSync(dir, { recursive: true, force: true });
          throw new ApiError(400, 'invalid', `cannot create the disks: ${(e as Error).message}`, '/disks');
        }
      } else {
        this.checkPaths(def);
      }
      const vm = this.addVm(def);
      const started = vm.start({ incoming: true });
      started.catch((e: Error) => {
        this.log(`incoming migration of ${def.name}: ${e.message}`);
        if (this.incoming.get(def.name)?.vm === vm) {
          this.incoming.delete(def.name); this.vms.delete(def.name); this.incomingFailed.set(def.name, e.message);
          this.store.discard(def.name);
          if (diskDir) rmSync(diskDir, { recursive: true, force: true });
        }
      });
      // Its definition is written now (not yet loadable), and only renamed into place in the stop.
      const commit = { def: JSON.stringify(def), run: this.store.prepare(def) };
      const entry = { vm, started, commit, ...(diskDir ? { diskDir } : {}) };
      this.incoming.set(def.name, entry);
      touch(def.name);
      return reply.code(201).send(vm.info());
    });
    const abort = async (name: string): Promise<void> => {
      const m = this.incoming.get(name);
      if (!m) return;
      this.incoming.delete(name);
      if (m.idle) clearTimeout(m.idle);
      if (m.vm.state === 'running' || m.vm.state === 'paused') await m.vm.destroy();
      this.store.remove(m.vm.name);
      this.store.discard(m.vm.name);
      this.vms.delete(m.vm.name);
      if (m.diskDir) rmSync(m.diskDir, { recursive: true, force: true }); // the half-copied disks
    };
    // A source that goes quiet (it died, the network is gone) for 30 s: the half-copied VM here is dropped.
    const touch = (name: string): void => {
      const m = this.incoming.get(name);
      if (!m) return;
      if (m.idle) clearTimeout(m.idle);
      m.idle = setTimeout(() => { if (m.vm.state === 'paused') { this.log(`incoming migration of ${name}: the source went quiet, dropped`); void abort(name); } }, 30_000);
      m.idle.unref();
    };
    const incoming = (name: string): { vm: Vm; started: Promise<void>; commit?: { def: string; run: () => Promise<void> }; committed?: Promise<void> } => {
      const m = this.incoming.get(name);
      if (!m) throw new ApiError(404, 'not_found', `no incoming migration of '${name}'${this.incomingFailed.has(name) ? ` (its runner failed: ${this.incomingFailed.get(name)})` : ''}`);
      touch(name);
      return m;
    };
    const bytes = (b: unknown): Uint8Array => {
      if (!Buffer.isBuffer(b)) throw new ApiError(400, 'invalid', 'expected application/octet-stream', 'body');
      return new Uint8Array(b.buffer, b.byteOffset, b.length);
    };
    app.post<{ Params: { name: string }; Body: Buffer }>('/v1/migrations/:name/pages', { bodyLimit: 1 << 30, schema: { params: nameParams, response: { 204: { type: 'null' }, ...err } } },
      async (req, reply) => { await incoming(req.params.name).vm.migrateIn('pages', bytes(req.body)); return reply.code(204).send(); });
    app.post<{ Params: { name: string }; Body: Buffer }>('/v1/migrations/:name/blocks', { bodyLimit: 1 << 30, schema: { summary: 'copyStorage: a block set (granules of one disk, CRC-32C) onto the incoming disks', params: nameParams, response: { 204: { type: 'null' }, ...err } } },
      async (req, reply) => { await incoming(req.params.name).vm.migrateIn('blocks', bytes(req.body)); return reply.code(204).send(); });
    app.post<{ Params: { name: string }; Body: Buffer }>('/v1/migrations/:name/finish', { bodyLimit: 1 << 30, schema: { params: nameParams, response: { 200: vmInfoSchema, ...err } } },
      async (req) => {
        const m = incoming(req.params.name);
        // Body: state length u32 | device state | the last page set (one request: less downtime).
        const b = bytes(req.body);
        const len = b.length >= 4 ? new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) : -1;
        if (len < 0 || 4 + len > b.length) throw new ApiError(400, 'invalid', 'finish: malformed body', 'body');
        await m.vm.migrateIn('finish', b.subarray(4, 4 + len), b.length > 4 + len ? b.subarray(4 + len) : undefined);
        await m.started;
        // The guest runs here: answer (the downtime ends), then make its definition durable
        // (the prepared file renamed, the directory synced, on the thread pool: tens of ms on a busy disk).
        // The source lets its paused copy go only once /commit says that is done.
        const prepared = m.commit;
        m.commit = undefined;
        m.committed = prepared && prepared.def === JSON.stringify(m.vm.def) ? prepared.run()
          : new Promise<void>((res, rej) => setImmediate(() => { try { this.store.save(m.vm.def); res(); } catch (e) { rej(e as Error); } }));
        m.committed.catch((e: Error) => this.log(`incoming migration of ${req.params.name}: cannot save its definition: ${e.message}`));
        setTimeout(() => { if (this.incoming.get(req.params.name) === m) this.incoming.delete(req.params.name); }, 60_000).unref();
        return m.vm.info();
      });
    app.post<{ Params: { name: string } }>('/v1/migrations/:name/commit', {
      schema: { summary: 'After finish: answers once the VM\'s definition is durable here (the source then stops its copy)', params: nameParams, response: { 204: { type: 'null' }, ...err } },
    }, async (req, reply) => {
      const m = incoming(req.params.name);
      if (!m.committed) throw new ApiError(409, 'wrong_state', `the migration of '${req.params.name}' has not finished`);
      try {
        await m.committed;
      } catch (e) {
        throw new ApiError(409, 'migration_failed', `cannot save the definition of '${req.params.name}': ${(e as Error).message}`);
      }
      return reply.code(204).send();
    });
    app.delete<{ Params: { name: string } }>('/v1/migrations/:name', { schema: { summary: 'Abort an incoming migration (the VM here is destroyed)', params: nameParams, response: { 204: { type: 'null' }, ...err } } },
      async (req, reply) => {
        incoming(req.params.name);
        await abort(req.params.name);
        return reply.code(204).send();
      });
  }

  private authorized(req: FastifyRequest): boolean {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || !h.startsWith('Bearer ')) return false;
    const a = Buffer.from(h.slice(7)), b = Buffer.from(this.token);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  async listen(): Promise<string> {
    await this.setup();
    // Runners an earlier daemon left are taken over first: those VMs are running, not autostarted.
    await Promise.all([...this.vms.values()].map((v) => v.adopt()));
    const addr = await this.app.listen({ host: this.opts.host ?? '127.0.0.1', port: this.opts.port ?? 8446 });
    for (const v of this.vms.values()) {
      if (v.def.autostart && (v.state === 'shutoff' || v.state === 'crashed')) v.start().catch((e: Error) => this.log(`autostart ${v.name}: ${e.message}`));
    }
    return addr;
  }

  /**
   * Stop serving. What happens to running VMs (libvirt-guests' ON_SHUTDOWN): `destroy`
   * (the default here, for tests and embedders), `keep` (runners go on; the next daemon
   * adopts them), or `shutdown` (power button, then destroy after timeoutMs).
   * Resolves with the number of VMs that were running.
   */
  async close(opts: { vms?: OnExit; timeoutMs?: number } = {}): Promise<number> {
    for (const r of this.sseClients) r.raw.end();
    this.sseClients.clear();
    const live = [...this.vms.values()].filter((v) => v.state === 'running' || v.state === 'paused');
    const mode = opts.vms ?? 'destroy';
    if (mode === 'keep') for (const v of live) v.detach();
    else if (mode === 'shutdown') await Promise.allSettled(live.map((v) => v.shutdownAndWait(opts.timeoutMs ?? this.opts.shutdownTimeoutMs ?? 30_000)));
    else await Promise.allSettled(live.map((v) => v.destroy()));
    this.switches.close();
    await this.app.close();
    return live.length;
  }

  private async setup(): Promise<void> {
    const app = this.app;
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.0.3',
        info: { title: 'typevisor daemon', version: '1' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
        security: [{ bearer: [] }],
      },
    });
    await app.register(fastifyWebsocket, { options: { maxPayload: 1 << 20 } });
    app.addHook('onRequest', async (req, reply) => {
      // Without a bearer token: the dashboard's public pages, or its session cookie.
      const denied = this.authorized(req) ? null : this.web.deny(req);
      if (denied) await reply.code(denied.status).header('www-authenticate', 'Bearer').send({ code: denied.code, message: denied.message });
    });
    app.setErrorHandler((err: FastifyError | ApiError, _req, reply) => {
      if (err instanceof ApiError) {
        return reply.code(err.status).send({ code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) });
      }
      const fe = err as FastifyError;
      if (fe.validation) {
        const v = fe.validation[0];
        const missing = (v?.params as { missingProperty?: string; additionalProperty?: string } | undefined);
        const field = `${fe.validationContext ?? 'body'}${v?.instancePath ?? ''}${missing?.missingProperty ? '/' + missing.missingProperty : ''}${missing?.additionalProperty ? '/' + missing.additionalProperty : ''}`;
        return reply.code(400).send({ code: 'invalid', message: `${field}: ${v?.message ?? fe.message}`, field });
      }
      const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : 500;
      if (status === 500) this.log(`internal error: ${fe.stack ?? fe.message}`);
      return reply.code(status).send({ code: status === 500 ? 'internal' : (fe.code ?? 'bad_request'), message: fe.message });
    });
    app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${req.url}` }));
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

    const err = { 400: errorSchema, 401: errorSchema, 404: errorSchema, 409: errorSchema };
    app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

    app.get('/v1/vms', { schema: { summary: 'List VMs', response: { 200: { type: 'array', items: vmInfoSchema } } } },
      async () => [...this.vms.values()].map((v) => v.info()));

    app.post<{ Body: VmDef }>('/v1/vms', { schema: { summary: 'Define a VM (stored in the state directory)', body: vmDefSchema, response: { 201: vmInfoSchema, ...err } } },
      async (req, reply) => {
        const def = req.body;
        if (this.vms.has(def.name)) throw new ApiError(409, 'exists', `a VM named '${def.name}' already exists`, '/name');
        this.checkPaths(def);
        if (def.restore !== undefined) Object.assign(def, { ...fromSnapshot(def.restore), ...def });
        this.checkPaths(def);
        if (def.restore !== undefined && isBundle(def.restore)) await this.copyBundleDisks(def);
        this.store.save(def);
        const vm = this.addVm(def);
        return reply.code(201).send(vm.info());
      });

    app.get<{ Params: { name: string } }>('/v1/vms/:name', { schema: { params: nameParams, response: { 200: vmInfoSchema, ...err } } },
      async (req) => this.vm(req.params.name).info());

    app.patch<{ Params: { name: string }; Body: Omit<VmDef, 'name'> }>('/v1/vms/:name',
      { schema: { summary: 'Change a definition; limits apply to a running VM at once, the rest at its next start', params: nameParams, body: vmPatchSchema, response: { 200: vmInfoSchema, ...err } } },
      async (req) => {
        const vm = this.vm(req.params.name);
        this.checkPaths(req.body);
        const def: VmDef = { ...vm.def, ...req.body, name: vm.name };
        if (req.body.limits) def.limits = { ...vm.def.limits, ...req.body.limits };
        this.store.save(def);
        vm.def = def;
        vm.applyLimits();
        this.reweigh();
        return vm.info();
      });

    app.delete<{ Params: { name: string } }>('/v1/vms/:name', { schema: { summary: 'Undefine a stopped VM', params: nameParams, response: { 204: { type: 'null' }, ...err } } },
      async (req, reply) => {
        const vm = this.vm(req.params.name);
        if (vm.state === 'running' || vm.state === 'paused') throw new ApiError(409, 'wrong_state', `cannot undefine '${vm.name}': it is ${vm.state}`);
        this.store.remove(vm.name);
        this.vms.delete(vm.name);
        return reply.code(204).send();
      });

    const action = (verb: string, summary: string, run: (vm: Vm, body: { timeoutMs?: number } | undefined) => Promise<void> | void, code = 200): void => {
      app.post<{ Params: { name: string }; Body: { timeoutMs?: number } | undefined }>(`/v1/vms/:name/${verb}`, {
        schema: {
          summary, params: nameParams,
          ...(verb === 'shutdown' ? { body: { type: 'object', additionalProperties: false, properties: { timeoutMs: { type: 'integer', minimum: 0, maximum: 600_000 } } } } : {}),
          response: { [code]: vmInfoSchema, ...err },
        },
      }, async (req, reply) => {
        const vm = this.vm(req.params.name);
        await run(vm, req.body);
        return reply.code(code).send(vm.info());
      });
    };
    action('start', 'Boot the VM in a new runner process', (vm) => vm.start());
    action('shutdown', 'Press the power button, wait for the guest to power off, destroy it after timeoutMs', (vm, b) => vm.shutdown(b?.timeoutMs ?? this.opts.shutdownTimeoutMs ?? 30_000), 202);
    action('reboot', 'Reset the machine (a fresh boot)', (vm) => vm.reboot());
    action('suspend', 'Stop the vCPU and guest time', (vm) => vm.suspend());
    action('resume', 'Continue a suspended VM', (vm) => vm.resume());
    action('destroy', 'Stop the VM at once', (vm) => vm.destroy());

    app.post<{ Params: { name: string }; Body: { file: string; withDisks?: boolean } }>('/v1/vms/:name/snapshot', {
      schema: {
        summary: 'Save the running VM to a snapshot file (the VM keeps running; the file is under --image-root when set). withDisks: a bundle directory with the snapshot and consistent copies of the disks', params: nameParams,
        body: { type: 'object', required: ['file'], additionalProperties: false, properties: { file: { type: 'string', minLength: 1, maxLength: 4096 }, withDisks: { type: 'boolean' } } },
        response: { 200: { type: 'object', properties: { file: { type: 'string' }, bytes: { type: 'integer' }, ms: { type: 'integer' }, diskBytes: { type: 'integer' } } }, ...err },
      },
    }, async (req) => {
      const vm = this.vm(req.params.name);
      this.checkPaths({ restore: req.body.file });
      return await vm.snapshot(req.body.file, req.body.withDisks === true);
    });

    this.migrationRoutes(err);

    app.get<{ Params: { name: string } }>('/v1/vms/:name/stats', { schema: { summary: 'Runner figures: instructions retired, CPU seconds, RSS, disk counters (404 unless running)', params: nameParams, response: { 200: { type: 'object', additionalProperties: true }, ...err } } },
      async (req) => {
        const vm = this.vm(req.params.name);
        const st = await vm.stats();
        if (!st) throw new ApiError(409, 'wrong_state', `'${vm.name}' is ${vm.state}: no runner`);
        return { name: vm.name, state: vm.state, ...st };
      });

    app.get<{ Params: { name: string } }>('/v1/vms/:name/console/log', { schema: { summary: 'The console\'s last 64 KiB', params: nameParams, response: { 200: { type: 'string' }, ...err } } },
      async (req, reply) => reply.type('text/plain; charset=utf-8').send(this.vm(req.params.name).consoleLog()));

    app.post<{ Params: { name: string }; Body: Buffer | string }>('/v1/vms/:name/console/input', { schema: { summary: 'Raw bytes to the console (any content type)', params: nameParams, response: { 204: { type: 'null' }, ...err } } },
      async (req, reply) => {
        const vm = this.vm(req.params.name);
        const b = req.body;
        if (typeof b !== 'string' && !Buffer.isBuffer(b)) throw new ApiError(400, 'invalid', 'console input must be text or application/octet-stream', 'body');
        vm.input(typeof b === 'string' ? new TextEncoder().encode(b) : new Uint8Array(b));
        return reply.code(204).send();
      });

    // handler + wsHandler (not `websocket: true`) so the route shows in the OpenAPI document.
    app.route<{ Params: { name: string } }>({
      method: 'GET', url: '/v1/vms/:name/console',
      schema: { summary: 'Console as a WebSocket: binary frames both ways (a plain GET gets 426)', params: nameParams, response: { 426: errorSchema, ...err } },
      handler: async (req, reply) => {
        this.vm(req.params.name);
        return reply.code(426).header('upgrade', 'websocket').send({ code: 'upgrade_required', message: 'open this URL as a WebSocket' });
      },
      wsHandler: (socket, req) => {
        const vm = this.vms.get(req.params.name);
        if (!vm) { socket.close(4404, 'no such VM'); return; }
        const onOut = (d: Uint8Array): void => { socket.send(d); };
        vm.on('console', onOut);
        socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
          const b = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
          try { vm.input(new Uint8Array(b)); } catch { /* not running: dropped */ }
        });
        socket.on('close', () => vm.off('console', onOut));
      },
    });

    app.route({
      method: 'GET', url: '/v1/events',
      schema: { summary: 'One `state` event per VM state change: server-sent events, or JSON text frames on a WebSocket' },
      handler: (req, reply) => {
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        reply.raw.write(': typevisor events\n\n');
        this.sseClients.add(reply);
        req.raw.on('close', () => this.sseClients.delete(reply));
      },
      wsHandler: (socket) => {
        const send = (e: string): void => { socket.send(e); };
        this.wsEventClients.add(send);
        socket.on('close', () => this.wsEventClients.delete(send));
      },
    });

    this.setupMetrics();
    await this.web.register(app);
  }

  private setupMetrics(): void {
    const reg = this.registry;
    const g = (name: string, help: string, labels: string[] = ['vm']): Gauge => new Gauge({ name, help, labelNames: labels, registers: [reg] });
    const state = g('typevisor_vm_state', 'VM state (1 for the current state)', ['vm', 'state']);
    const cpu = g('typevisor_vm_cpu_seconds', 'Runner process CPU time (user + system)');
    const instr = g('typevisor_vm_instructions_retired', 'Instructions retired by the guest hart');
    const rss = g('typevisor_vm_rss_bytes', 'Runner process resident set size');
    const mem = g('typevisor_vm_memory_bytes', 'Guest RAM');
    const cap = g('typevisor_vm_cpu_cap', 'CPU cap as a fraction of one core (0 = none)');
    const dRB = g('typevisor_vm_disk_read_bytes', 'Bytes read by the guest', ['vm', 'disk']);
    const dWB = g('typevisor_vm_disk_write_bytes', 'Bytes written by the guest', ['vm', 'disk']);
    const dRO = g('typevisor_vm_disk_read_ops', 'Read requests', ['vm', 'disk']);
    const dWO = g('typevisor_vm_disk_write_ops', 'Write requests', ['vm', 'disk']);
    const nRB = g('typevisor_vm_net_rx_bytes', 'Bytes received by the guest', ['vm', 'nic']);
    const nRP = g('typevisor_vm_net_rx_packets', 'Frames received by the guest', ['vm', 'nic']);
    const nTB = g('typevisor_vm_net_tx_bytes', 'Bytes sent by the guest', ['vm', 'nic']);
    const nTP = g('typevisor_vm_net_tx_packets', 'Frames sent by the guest', ['vm', 'nic']);
    const nTD = g('typevisor_vm_net_tx_drops', 'Frames from the guest dropped by a full rate-limit queue', ['vm', 'nic']);
    this.app.get('/metrics', { schema: { summary: 'Prometheus text format', hide: true } }, async (_req, reply) => {
      reg.resetMetrics();
      await Promise.all([...this.vms.values()].map(async (v) => {
        for (const s of VM_STATES) state.set({ vm: v.name, state: s }, v.state === s ? 1 : 0);
        mem.set({ vm: v.name }, memoryBytes(v.def.memory));
        cap.set({ vm: v.name }, v.def.limits?.cpu ?? 0);
        const st = await v.stats();
        if (!st) return;
        cpu.set({ vm: v.name }, st.cpuSeconds);
        instr.set({ vm: v.name }, st.instructions);
        rss.set({ vm: v.name }, st.rssBytes);
        st.disks.forEach((d, i) => {
          const l = { vm: v.name, disk: `vd${String.fromCharCode(97 + i)}` };
          dRB.set(l, d.readBytes); dWB.set(l, d.writeBytes); dRO.set(l, d.readOps); dWO.set(l, d.writeOps);
        });
        (st.nics ?? []).forEach((n, i) => {
          const l = { vm: v.name, nic: `net${i}` };
          nRB.set(l, n.rxBytes); nRP.set(l, n.rxPackets); nTB.set(l, n.txBytes); nTP.set(l, n.txPackets); nTD.set(l, n.txDropped);
        });
      }));
      return reply.type(reg.contentType).send(await reg.metrics());
    });
  }
}

/** The definition a snapshot was saved with (a runner's config), as VmDef fields; the request's own fields win. */
function fromSnapshot(file: string): Partial<VmDef> {
  let header, bundle;
  try {
    header = readSnapshotHeader(readSnapshotFile(file));
    bundle = bundleDisks(file);
  } catch (e) {
    throw new ApiError(400, 'invalid_snapshot', (e as Error).message, '/restore');
  }
  // A bundle: the VM runs on the bundle's copies of its disks.
  const fromBundle = (drives: RunnerConfig['drives']): VmDef['drives'] => {
    if (!bundle) return drives;
    if ((drives ?? []).length !== bundle.length) throw new ApiError(400, 'invalid_snapshot', `the bundle holds ${bundle.length} disk(s), its snapshot's machine ${(drives ?? []).length}`, '/restore');
    return bundle.map((b, i) => ({ ...drives![i], file: b.file, format: b.format, readOnly: b.readOnly }));
  };
  const m = header.machine as { kind?: string; config?: RunnerConfig } | null;
  if (m?.kind !== 'runner' || typeof m.config !== 'object' || m.config === null) return { memory: header.memoryBytes };
  const c = m.config;
  return {
    memory: c.memoryBytes,
    ...(c.kernel !== undefined ? { kernel: c.kernel } : {}), ...(c.initrd !== undefined ? { initrd: c.initrd } : {}),
    ...(c.append !== undefined ? { append: c.append } : {}), ...(c.bios !== undefined ? { bios: c.bios } : {}),
    ...(c.drives?.length ? { drives: fromBundle(c.drives) } : {}),
  };
}
