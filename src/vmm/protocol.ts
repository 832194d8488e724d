/**
 * The message protocol between a VM manager (the daemon) and a VM runner. Messages are
 * plain structured-clone data (Uint8Array passes as is), so the same protocol runs over a
 * Node child process (node-port.ts, `serialization: 'advanced'`) and a Web Worker's
 * postMessage. Every session starts with the runner's `hello` carrying PROTOCOL_VERSION;
 * a manager refuses a runner of another version.
 */

import type { RateLimiterConfig } from './rate-limiter.js';

/** 2: runners listen on a Unix socket and outlive their manager; hello says if the machine runs. */
export const PROTOCOL_VERSION = 2;

/** One virtio-blk disk of a runner: a host file (raw or qcow2). */
export interface RunnerDrive {
  file: string;
  format?: 'raw' | 'qcow2';
  readOnly?: boolean;
  /** Writes go to a throw-away overlay. */
  snapshot?: boolean;
}

/** One virtio-net NIC of a runner. */
export interface RunnerNic {
  /** The backend in QEMU's -netdev spelling (src/host/net/netdev.ts), e.g. `user,restrict=on,hostfwd=tcp::8080-:80`. */
  netdev: string;
  /** aa:bb:cc:dd:ee:ff. */
  mac: string;
}

/** Token buckets for each NIC, per direction (Firecracker's rx_rate_limiter / tx_rate_limiter). */
export interface NetLimitConfig { rx?: RateLimiterConfig | null; tx?: RateLimiterConfig | null }

/** What a runner needs to build its machine. File paths are resolved by the manager. */
export interface RunnerConfig {
  name: string;
  memoryBytes: number;
  /** Absent: the default guest (kernel + initramfs from the guest directory). */
  kernel?: string;
  initrd?: string;
  append?: string;
  /** Absent or 'default': the built-in SBI; 'none': kernel in M-mode; else a firmware file. */
  bios?: string;
  drives?: RunnerDrive[];
  /** Token buckets for each drive (Firecracker's per-drive rate_limiter); absent = none. */
  diskLimit?: RateLimiterConfig;
  nics?: RunnerNic[];
  netLimit?: NetLimitConfig;
  /** The execution engine: the translator (absent or 'jit', as `typevisor run`) or the interpreter alone. */
  accel?: 'jit' | 'interp';
}

/** Why a runner's machine stopped; the machine's exit reasons plus the runner's own. */
export type ExitReason = 'poweroff' | 'fail' | 'htif' | 'stopped' | 'panic' | 'error' | 'config';

export interface RunnerStats {
  /** Instructions retired by the hart since the machine was (re)built, plus earlier boots. */
  instructions: number;
  /** Runner process CPU time, user + system (seconds); 0 in a Worker. */
  cpuSeconds: number;
  /** Runner resident set (bytes); 0 in a Worker. */
  rssBytes: number;
  /** Guest time spent paused (ms), excluded from the guest clock. */
  pausedMs: number;
  disks: Array<{ readBytes: number; writeBytes: number; readOps: number; writeOps: number }>;
  /** Per NIC, in definition order. */
  nics?: Array<{ rxBytes: number; rxPackets: number; txBytes: number; txPackets: number; txDropped: number }>;
}

/** Manager → runner. */
export type ToRunner =
  /** `restore`: a snapshot file's bytes; the machine resumes from it instead of booting. */
  | { type: 'start'; version: number; config: RunnerConfig; restore?: Uint8Array;
    /** Live migration's destination: build the machine, take `migrate-pages`, run on `migrate-finish`. */
    incoming?: boolean }
  /**
   * Live migration's source: the pages dirtied since the last round (round 0: all of RAM).
   * `final`: pause the vCPU first, drain the disks, and add the device state; the machine
   * stays paused until `migrate-end`. `throttle` (0..0.9): the share of time the vCPU is held (auto-converge).
   */
  | { type: 'migrate-round'; id: number; round: number; final: boolean; throttle?: number;
    /** Final round: the address the destination reaches this host at; the user networks' TCP connections are relayed from it. */
    relayHost?: string }
  /** Source: the destination runs the VM (ok: stop here) or the move failed (resume, untouched). */
  | { type: 'migrate-end'; ok: boolean }
  /** Destination: a page set (src/snapshot/pages.ts) into RAM; acknowledged with `migrate-ack`. */
  | { type: 'migrate-pages'; id: number; data: Uint8Array }
  /** Destination: the last page set and the device state (encodeState of a MachineState without RAM; toJson's UTF-8 from older sources); the VM then runs (`started`). */
  | { type: 'migrate-finish'; id: number; state: Uint8Array; pages?: Uint8Array }
  /**
   * Save the running machine (it keeps running); answered by a `snapshot` with the same id.
   * `bundle`: write a bundle directory there (the snapshot and copies of the disks, made by
   * the runner); the answer then carries its sizes instead of the bytes.
   */
  | { type: 'snapshot'; id: number; bundle?: string }
  /**
   * Live migration's source with --copy-storage: up to maxBytes of disk granules not yet
   * sent (first call: all of every writable disk, tracking starts; later: what the guest dirtied),
   * answered by `migrate-data` whose data is one block set and `remaining` the granules
   * still to send. `final` (the guest is paused and drained): everything left.
   */
  | { type: 'migrate-disks'; id: number; final: boolean; maxBytes: number }
  /** Destination: a block set (src/host/storage/dirty.ts) onto a disk; acknowledged with `migrate-ack`. */
  | { type: 'migrate-blocks'; id: number; data: Uint8Array }
  | { type: 'input'; data: Uint8Array }
  | { type: 'stats'; id: number }
  /** Stop running the vCPU; guest time stands still until resume. */
  | { type: 'suspend' }
  | { type: 'resume' }
  /** New limits for a running machine (null = unlimited). */
  | { type: 'limits'; disk: RateLimiterConfig | null; net?: NetLimitConfig | null }
  /** Reset: the machine is rebuilt from the same config (a fresh boot). */
  | { type: 'reboot' }
  /** Press the guest's power button (virtio-input KEY_POWER): a request, the guest decides. */
  | { type: 'powerButton' }
  /** Stop the machine now (destroy); the runner replies `exit` with reason 'stopped' and ends. */
  | { type: 'stop' };

/** Runner → manager. */
export type FromRunner =
  /**
   * First message on every connection. `running`: the machine already runs (a manager that
   * reconnects takes it over; it must not send `start`).
   */
  | { type: 'hello'; version: number; running?: 'running' | 'paused' }
  /** The machine is built and running. */
  | { type: 'started' }
  | { type: 'console'; data: Uint8Array }
  | { type: 'stats'; id: number; stats: RunnerStats }
  | { type: 'migrate-data'; id: number; pages: number; data?: Uint8Array; state?: Uint8Array; error?: string; remaining?: number;
    /** The final round: when the vCPU paused (performance.timeOrigin + performance.now(), ms; the manager is on the same host). */
    pausedAt?: number }
  | { type: 'migrate-ack'; id: number; error?: string }
  /** A snapshot file's bytes (src/snapshot/format.ts), or why none could be taken. */
  | { type: 'snapshot'; id: number; data?: Uint8Array; error?: string;
    /** A bundle was written: the snapshot's size and the disk bytes copied. */
    bytes?: number; diskBytes?: number }
  | { type: 'state'; state: 'running' | 'paused' }
  /** The guest rebooted (a reset or a reboot request); the machine was rebuilt. */
  | { type: 'rebooted' }
  /** The machine ended for good; the runner exits after sending this. */
  | { type: 'exit'; reason: ExitReason; code: number; message?: string;
    /** The VM moved, and this process stays to relay its user networks' TCP connections until they end: do not wait for it. */
    relaying?: boolean };

/**
 * One end of a message channel. Fits a child process (process.send / 'message') and a
 * Worker (postMessage / onmessage) alike.
 */
export interface Port<In, Out> {
  post(msg: Out): void;
  onMessage(cb: (msg: In) => void): void;
  /** The other end went away (process exited, worker terminated, channel closed). */
  onClose(cb: () => void): void;
  close(): void;
}

/** Narrow an untrusted message (structured-clone data) to a FromRunner, or null. */
export function asFromRunner(m: unknown): FromRunner | null {
  if (typeof m !== 'object' || m === null) return null;
  const t = (m as { type?: unknown }).type;
  switch (t) {
    case 'hello': case 'started': case 'console': case 'stats': case 'state': case 'rebooted': case 'exit': case 'snapshot': case 'migrate-data': case 'migrate-ack':
      return m as FromRunner;
    default: return null;
  }
}

/** Narrow an untrusted message to a ToRunner, or null. */
export function asToRunner(m: unknown): ToRunner | null {
  if (typeof m !== 'object' || m === null) return null;
  const t = (m as { type?: unknown }).type;
  switch (t) {
    case 'start': case 'input': case 'stats': case 'suspend': case 'resume': case 'reboot': case 'stop': case 'limits': case 'powerButton': case 'snapshot': case 'migrate-round': case 'migrate-end': case 'migrate-pages': case 'migrate-finish':
    case 'migrate-disks': case 'migrate-blocks':
      return m as ToRunner;
    default: return null;
  }
}
