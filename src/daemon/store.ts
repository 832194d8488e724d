/**
 * VM definitions on disk: one JSON file per VM in the state directory (DIR/vms/NAME.json),
 * written atomically (temp file, fsync, rename, fsync of the directory), as libvirt keeps
 * one file per domain. The JSON schema here is also the API's request schema.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
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
   * weights); above 100 needs the privilege to lower nice values, else it stays at 100.
   */
  cpuWeight?: number;
  /**
   * Host memory ceiling of the runner process (its RSS: guest RAM actually touched, the
   * code cache, Node itself). Bytes or "512M"; a runner above it is killed (`crashed`).
   */
  hostMemory?: number | string;
  /** CPU cap as a fraction of one core (cgroup cpu.max quota/period); absent = no cap. */
  cpu?: number;
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
  limits?: LimitsDef;
  autostart?: boolean;
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
  },
} as const;

const defProperties = {
  memory: { anyOf: [{ type: 'integer', minimum: 4 << 20, maximum: 0xf000_0000 }, { type: 'string', pattern: '^[0-9]{1,10}[KMG]?$' }] },
  kernel: { type: 'string', minLength: 1, maxLength: 4096 },
  initrd: { type: 'string', minLength: 1, maxLength: 4096 },
  append: { type: 'string', maxLength: 4096 },
  bios: { type: 'string', minLength: 1, maxLength: 4096 },
  drives: { type: 'array', maxItems: 8, items: driveSchema },
  limits: limitsSchema,
  autostart: { type: 'boolean' },
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
    const path = this.file(def.name);
    const tmp = `${path}.tmp-${process.pid}`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(def, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    syncDir(this.dir);
  }

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
