/**
 * VM definitions on disk: one JSON file per VM in the state directory (DIR/vms/NAME.json),
 * written atomically (temp file, fsync, rename, fsync of the directory), as libvirt keeps
 * one file per domain. The JSON schema here is also the API's request schema.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';

export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';

export interface DriveDef { file: string; format?: 'raw' | 'qcow2'; readOnly?: boolean; snapshot?: boolean }
export interface BucketDef { size: number; refillTimeMs: number; oneTimeBurst?: number }
export interface LimitsDef {
  /** Token buckets for each drive (Firecracker semantics: bytes and ops). */
  disk?: { bandwidth?: BucketDef | null; ops?: BucketDef | null };
  /**
   * CPU weight as cgroup v2 cpu.weight (1..10000, default 100): the share a VM gets when
   * VMs compete for the host's cores. Applied as the runner's nice value (the same CFS
   * weights), relative to the highest weight among running VMs (at least 100), which runs
   * at the daemon's nice: no privilege needed (Daemon.weightReference).
   */
  cpuWeight?: number;
  /**
   * Host memory ceiling of the runner process (its RSS: guest RAM actually touched, the
   * code cache, Node itself). Bytes or "512M"; a runner above it is killed (`crashed`).
   */
  hostMemory?: number | string;
  /** CPU cap as a fraction of one core (cgroup cpu.max quota/period); absent = no cap. */
  cpu?: number;
  /** Token buckets for each NIC, per direction (Firecracker's rx/tx_rate_limiter: bytes and packets). */
  net?: { rx?: { bandwidth?: BucketDef | null; ops?: BucketDef | null }; tx?: { bandwidth?: BucketDef | null; ops?: BucketDef | null } };
}
/**
 * A virtio-net NIC: on its own user-mode network (QEMU's `-nic user,...` options), or a port
 * on one of the daemon's named switches (VMs on one switch share an L2 segment).
 */
export interface NicDef {
  type: 'user' | 'switch';
  /** type switch: the switch's name (created on first use). */
  switch?: string;
  /** QEMU's hostfwd: [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport. */
  hostfwd?: string[];
  /** Isolate the guest: no connections out, only hostfwd in. */
  restrict?: boolean;
  /** Default: 52:54:00 and three bytes from the VM's name, so VMs differ (+ the NIC index). */
  mac?: string;
}
export interface VmDef {
  name: string;
  /** Bytes, or "128M"-style text (K/M/G). Default 128M. */
  memory?: number | string;
  kernel?: string;
  initrd?: string;
  append?: string;
  bios?: string;
  drives?: DriveDef[];
  nics?: NicDef[];
  limits?: LimitsDef;
  autostart?: boolean;
  /** The execution engine: 'jit' (the default: hot code translated to WebAssembly) or 'interp'. */
  accel?: 'jit' | 'interp';
  /** A snapshot file the next start resumes from (instead of booting); cleared once it has. */
  restore?: string;
}

const driveSchema = {
  type: 'object', required: ['file'], additionalProperties: false,
  properties: {
    file: { type: 'string', minLength: 1, maxLength: 4096 },
    format: { type: 'string', enum: ['raw', 'qcow2'] },
    readOnly: { type: 'boolean' },
    snapshot: { type: 'boolean' },
  },
} as const;

const bucketSchema = {
  type: 'object', nullable: true, required: ['size', 'refillTimeMs'], additionalProperties: false,
  properties: {
    size: { type: 'integer', minimum: 1, maximum: 2 ** 40 },
    refillTimeMs: { type: 'integer', minimum: 1, maximum: 3_600_000 },
    oneTimeBurst: { type: 'integer', minimum: 0, maximum: 2 ** 40 },
  },
} as const;

export const limitsSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    cpu: { type: 'number', exclusiveMinimum: 0, maximum: 64 },
    cpuWeight: { type: 'integer', minimum: 1, maximum: 10000 },
    hostMemory: { anyOf: [{ type: 'integer', minimum: 1 << 20, maximum: 2 ** 44 }, { type: 'string', pattern: '^[0-9]{1,10}[KMG]?$' }] },
    disk: { type: 'object', additionalProperties: false, properties: { bandwidth: bucketSchema, ops: bucketSchema } },
    net: {
      type: 'object', additionalProperties: false,
      properties: {
        rx: { type: 'object', additionalProperties: false, properties: { bandwidth: bucketSchema, ops: bucketSchema } },
        tx: { type: 'object', additionalProperties: false, properties: { bandwidth: bucketSchema, ops: bucketSchema } },
      },
    },
  },
} as const;

export const MAC_PATTERN = '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$';

const nicSchema = {
  type: 'object', required: ['type'], additionalProperties: false,
  properties: {
    type: { type: 'string', enum: ['user', 'switch'] },
    switch: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,32}$' },
    hostfwd: { type: 'array', maxItems: 32, items: { type: 'string', pattern: '^((tcp|udp):)?[0-9.]*:[0-9]{1,5}-[0-9.]*:[0-9]{1,5}$' } },
    restrict: { type: 'boolean' },
    mac: { type: 'string', pattern: MAC_PATTERN },
  },
} as const;

const defProperties = {
  memory: { anyOf: [{ type: 'integer', minimum: 4 << 20, maximum: 0xf000_0000 }, { type: 'string', pattern: '^[0-9]{1,10}[KMG]?$' }] },
  kernel: { type: 'string', minLength: 1, maxLength: 4096 },
  initrd: { type: 'string', minLength: 1, maxLength: 4096 },
  append: { type: 'string', maxLength: 4096 },
  bios: { type: 'string', minLength: 1, maxLength: 4096 },
  drives: { type: 'array', maxItems: 8, items: driveSchema },
  nics: { type: 'array', maxItems: 4, items: nicSchema },
  limits: limitsSchema,
  autostart: { type: 'boolean' },
  accel: { type: 'string', enum: ['jit', 'interp'] },
  restore: { type: 'string', minLength: 1, maxLength: 4096 },
} as const;

/** POST /v1/vms body and the file format. */
export const vmDefSchema = {
  $id: 'VmDefinition',
  type: 'object', required: ['name'], additionalProperties: false,
  properties: { name: { type: 'string', pattern: NAME_PATTERN }, ...defProperties },
} as const;

/** PATCH /v1/vms/{name} body: any fields but the name. */
export const vmPatchSchema = {
  type: 'object', additionalProperties: false, minProperties: 1,
  properties: defProperties,
} as const;

/** Memory in bytes; text takes K/M/G suffixes (plain numbers in text are MiB, as -m). */
export function memoryBytes(m: number | string | undefined): number {
  if (m === undefined) return 128 << 20;
  if (typeof m === 'number') return m;
  const mm = /^([0-9]+)([KMG]?)$/.exec(m);
  if (!mm) throw new Error(`memory '${m}' is not a size`);
  const shift = mm[2] === 'K' ? 10 : mm[2] === 'G' ? 30 : 20;
  return Number(mm[1]) * 2 ** shift;
}

export class DefinitionStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'vms');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(name: string): string { return join(this.dir, `${name}.json`); }

  /** Every definition on disk; unreadable files are reported, not fatal. */
  loadAll(report: (msg: string) => void): VmDef[] {
    const out: VmDef[] = [];
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const d = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as VmDef;
        if (typeof d.name !== 'string' || `${d.name}.json` !== f) throw new Error('name does not match the file name');
        out.push(d);
      } catch (e) {
        report(`skipping definition ${f}: ${(e as Error).message}`);
      }
    }
    return out;
  }

  save(def: VmDef): void {
    renameSync(this.writeTmp(def), this.file(def.name));
    syncDir(this.dir);
  }

  /**
   * Write `def` durably beside its final name, where loadAll does not see it yet; the
   * returned commit() makes it the definition (a rename and a directory sync, on the
   * thread pool: the event loop goes on). A live migration's destination prepares at the
   * setup and commits after the guest runs. discard() drops one that was not committed.
   */
  prepare(def: VmDef): () => Promise<void> {
    const tmp = this.writeTmp(def), path = this.file(def.name);
    return async () => {
      await rename(tmp, path);
      try {
        const dir = await open(this.dir, 'r');
        try { await dir.sync(); } finally { await dir.close(); }
      } catch { /* not every file system syncs directories */ }
    };
  }

  /** `def` written and synced to a temporary file beside its own; returns its path. */
  private writeTmp(def: VmDef): string {
    const tmp = `${this.file(def.name)}.tmp-${process.pid}`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(def, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return tmp;
  }

  discard(name: string): void { rmSync(`${this.file(name)}.tmp-${process.pid}`, { force: true }); }

  remove(name: string): void {
    rmSync(this.file(name), { force: true });
    syncDir(this.dir);
  }
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try { fsyncSync(fd); } finally { closeSync(fd); }
  } catch { /* not every file system syncs directories */ }
}

/**
 * A NIC's MAC: its own, or 52:54:00 (QEMU's prefix) followed by three bytes of a hash of
 * the VM's name plus the NIC's index, so VMs on one network differ by default.
 */
export function nicMac(vmName: string, nic: NicDef, index: number): string {
  if (nic.mac !== undefined) return nic.mac.toLowerCase();
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < vmName.length; i++) { h ^= vmName.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  const n = (h + index) & 0xffffff;
  return ['52', '54', '00', (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].map((x) => typeof x === 'string' ? x : x.toString(16).padStart(2, '0')).join(':');
}

/**
 * The NIC as a -netdev backend spec (only what the schema allows: no files, no sockets
 * but the daemon's own switches). A switch port reconnects, so a restarted daemon's
 * switch is joined again.
 */
export function nicNetdev(nic: NicDef, switchSocket: (name: string) => string): string {
  if (nic.type === 'switch') return `stream,server=off,addr.type=unix,addr.path=${switchSocket(nic.switch ?? '')},reconnect=1`;
  return ['user', ...(nic.restrict ? ['restrict=on'] : []), ...(nic.hostfwd ?? []).map((f) => `hostfwd=${f}`)].join(',');
}
