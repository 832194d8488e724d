/**
 * The contract between the bus and a memory-mapped device.
 *
 * Offsets are relative to the device's base. `size` is 1, 2 or 4; the bus splits an
 * 8-byte access into two 4-byte accesses, low word first, so devices with 64-bit
 * registers (CLINT mtime/mtimecmp) see both halves. Values are returned as numbers;
 * the bus masks them to the access size. A device must never throw on guest input:
 * unknown offsets read as zero and ignore writes.
 */
export interface MmioDevice {
  readonly name: string;
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
}

/** A level-triggered interrupt line, as wired from a device to the PLIC. */
export interface IrqLine {
  set(level: boolean): void;
}

/** Something that happens in guest time: devices ask the machine to call them back. */
export interface TimeSource {
  /** Current guest time in ticks of the 10 MHz timebase (mtime). */
  now(): number;
}

/** Where the guest console's bytes go (a terminal, a test buffer, a WebSocket). */
export interface SerialBackend {
  write(data: Uint8Array): void;
}

/**
 * A disk as a device model sees it (host side: src/host/storage). Offsets and lengths are
 * in bytes, multiples of 512. Every method is asynchronous so host I/O never stalls the
 * vCPU; a rejected promise is an I/O error for that request only (the device reports
 * VIRTIO_BLK_S_IOERR), never a host crash.
 */
export interface BlockBackend {
  /** Capacity in bytes (a multiple of 512). */
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** Up to 20 bytes for VIRTIO_BLK_T_GET_ID (a serial number). */
  readonly serial: string;
  read(offset: number, dst: Uint8Array): Promise<void>;
  write(offset: number, src: Uint8Array): Promise<void>;
  /** Resolves only when every completed write is durable on the host (fsync). */
  flush(): Promise<void>;
  /** The range's contents become unspecified (may be deallocated). */
  discard(offset: number, length: number): Promise<void>;
  /** The range reads as zeroes afterwards; `mayUnmap` allows deallocating it. */
  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional, like QEMU's block status: how many bytes from `offset` (at least 1, at most
   * `length`) share one state, and whether they are known to read as zeroes without being
   * stored (unallocated with nothing below, or a zero cluster). Lets a copy skip them.
   */
  blockStatus?(offset: number, length: number): Promise<{ zero: boolean; length: number }>;
}

/** The guest side of a network link: what a NIC model offers to a host network backend. */
export interface NetReceiver {
  /**
   * Offer one Ethernet frame (no FCS) to the guest. Returns false if the guest has posted
   * no receive buffer: the frame was not taken, and the backend keeps it (bounded) or
   * drops and counts it. `rxReady` is called when buffers appear.
   */
  receive(frame: Uint8Array): boolean;
  /**
   * The largest frame receive() takes whole (no FCS). Absent: 1518 (1514 + a VLAN tag).
   * Larger only for TCP over IPv4 when the guest takes segmentation offload (virtio-net
   * GUEST_TSO4): a backend may then send TCP segments of up to 64 KiB as one frame.
   */
  readonly maxFrame?: number;
}

/** A host network backend (src/host/net): user-mode NAT, a switch port, a socket. */
export interface NetBackend {
  /** The NIC registers itself; called once before any traffic. */
  attach(nic: NetReceiver): void;
  /** One Ethernet frame from the guest (already length-checked). The backend copies what it keeps. */
  transmit(frame: Uint8Array): void;
  /**
   * Whether transmit() also takes large TCP/IPv4 segments (GSO frames of up to 64 KiB, one
   * whole IPv4 packet with complete checksums) meant to be cut at MTU − headers: a switch
   * port or a link to another typevisor passes them on whole, so the receiving guest gets one
   * frame instead of ~45. Absent: frames of at most 1518 bytes only.
   */
  readonly gso?: boolean;
  /** The guest posted receive buffers: the backend may retry frames it holds. */
  rxReady(): void;
  close(): void;
}

/**
 * A part of the machine whose state can be saved and loaded (snapshots, migration).
 * `S` is plain data that survives structuredClone and JSON (numbers, strings, booleans,
 * arrays, plain objects; Uint8Array for byte buffers), with a `v` version field so that
 * old states can be migrated or refused. Derived caches are rebuilt by load(), never saved.
 * Host backends (files, sockets) are not state: they are reattached by the host.
 */
export interface Stateful<S extends { v: number }> {
  save(): S;
  /** Throws a clear Error for an unknown version or malformed state; never half-loads. */
  load(state: S): void;
}
