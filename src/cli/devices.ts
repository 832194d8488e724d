/**
 * virtio devices on the command line, in QEMU's spelling:
 *   -drive file=F[,format=raw|qcow2][,if=virtio][,readonly=on][,snapshot=on][,cache=writeback|none]
 *   -hda F, -snapshot
 *   -device virtio-rng-device
 *   -device virtio-serial-device -device virtconsole,chardev=ID
 *   -chardev socket,id=ID,path=P,server=on[,wait=off] | -chardev file,id=ID,path=P
 *   -netdev TYPE,id=ID,... -device virtio-net-device,netdev=ID[,mac=MAC]
 *   -nic TYPE[,...][,mac=MAC][,model=virtio-net-device] | -nic none   (TYPE: user, socket, stream, dgram, switch)
 *   -object filter-dump,id=F,netdev=ID,file=PCAP   (the same as pcap=PCAP on that netdev)
 * Parsing is pure (usage errors, exit 2); opening files and sockets happens in openVirtio.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { UserError } from '../host/images.js';
import { openDisk, DiskError, type DiskFormat } from '../host/storage/index.js';
import type { BlockBackend, SerialBackend } from '../devices/device.js';
import type { Machine, VirtioDeviceSpec } from '../machine/machine.js';
import { VirtioConsole } from '../devices/virtio/console.js';
import type { NetBackend } from '../devices/device.js';
import { parseNetdev } from '../host/net/netdev.js';
import { USAGE_STATUS } from './args.js';

export interface DriveSpec {
  file: string;
  format?: DiskFormat;
  readOnly: boolean;
  snapshot: boolean;
  cache?: 'writeback' | 'none';
}

export interface ChardevSpec {
  id: string;
  backend: 'socket' | 'file';
  path: string;
  /** socket only: wait for a client before the VM starts (QEMU's default for server=on). */
  wait: boolean;
}

/** What -drive/-hda/-device/-chardev asked for, in slot order. */
export type VirtioRequest = { kind: 'blk'; drive: DriveSpec } | { kind: 'rng' } | { kind: 'console'; chardev: ChardevSpec }
  /** A NIC: `netdev` is the backend's text for openNetdev; mac undefined = the board's default. */
  | { kind: 'net'; netdev: string; mac?: Uint8Array };

/** QEMU option syntax: comma-separated key=value, ',,' for a literal comma. */
export function parseOptionList(text: string): Array<[string, string | null]> {
  const out: Array<[string, string | null]> = [];
  let cur = '';
  const push = (): void => {
    const eq = cur.indexOf('=');
    out.push(eq < 0 ? [cur, null] : [cur.slice(0, eq), cur.slice(eq + 1)]);
    cur = '';
  };
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] === ',') { cur += ','; i++; continue; }
      push();
    } else cur += text[i];
  }
  push();
  return out;
}

function onOff(v: string | null, what: string): boolean {
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw new UserError(`${what}: expected on or off, got '${v ?? ''}'`, USAGE_STATUS);
}

export function parseDrive(text: string, snapshotAll: boolean): DriveSpec {
  const d: DriveSpec = { file: '', readOnly: false, snapshot: snapshotAll };
  for (const [k, v] of parseOptionList(text)) {
    const what = `-drive ${text}`;
    if (v === null) throw new UserError(`${what}: '${k}' needs a value (key=value)`, USAGE_STATUS);
    switch (k) {
      case 'file': d.file = v; break;
      case 'format':
        if (v !== 'raw' && v !== 'qcow2') throw new UserError(`${what}: unsupported format '${v}' (raw or qcow2)`, USAGE_STATUS);
        d.format = v; break;
      case 'if':
        if (v !== 'virtio') throw new UserError(`${what}: unsupported interface 'if=${v}' (only virtio)`, USAGE_STATUS);
        break;
      case 'media':
        if (v !== 'disk') throw new UserError(`${what}: unsupported media '${v}' (only disk)`, USAGE_STATUS);
        break;
      case 'readonly': d.readOnly = onOff(v, `${what}: readonly`); break;
      case 'snapshot': d.snapshot = onOff(v, `${what}: snapshot`) || snapshotAll; break;
      case 'cache':
        if (v !== 'writeback' && v !== 'none') throw new UserError(`${what}: unsupported cache mode '${v}' (writeback or none)`, USAGE_STATUS);
        d.cache = v; break;
      default:
        throw new UserError(`${what}: unknown key '${k}' (file, format, if, media, readonly, snapshot, cache)`, USAGE_STATUS);
    }
  }
  if (!d.file) throw new UserError(`-drive ${text}: file= is required`, USAGE_STATUS);
  return d;
}

export function parseChardev(text: string): ChardevSpec {
  const opts = parseOptionList(text);
  const backend = opts[0][1] === null ? opts[0][0] : '';
  if (backend !== 'socket' && backend !== 'file') {
    throw new UserError(`-chardev ${text}: unsupported backend '${backend}' (socket or file)`, USAGE_STATUS);
  }
  const c: ChardevSpec = { id: '', backend, path: '', wait: true };
  let server = backend === 'file';
  for (const [k, v] of opts.slice(1)) {
    const what = `-chardev ${text}`;
    switch (k) {
      case 'id': c.id = v ?? ''; break;
      case 'path': c.path = v ?? ''; break;
      case 'server': server = v === null ? true : onOff(v, `${what}: server`); break;
      case 'wait': c.wait = v === null ? true : onOff(v, `${what}: wait`); break;
      default: throw new UserError(`${what}: unknown key '${k}' (id, path, server, wait)`, USAGE_STATUS);
    }
  }
  if (!c.id || !c.path) throw new UserError(`-chardev ${text}: id= and path= are required`, USAGE_STATUS);
  if (!server) throw new UserError(`-chardev ${text}: only server=on sockets are supported`, USAGE_STATUS);
  if (backend === 'file') c.wait = false;
  return c;
}

const VIRTIO_DEVICE_NAMES = ['virtio-rng-device', 'virtio-rng', 'virtio-serial-device', 'virtio-serial', 'virtconsole', 'virtio-net-device', 'virtio-net'];

/** A MAC address as QEMU spells it (52:54:00:12:34:56); unicast only. */
export function parseMac(v: string, what: string): Uint8Array {
  const m = /^([0-9a-fA-F]{2})(?::([0-9a-fA-F]{2})){5}$/.test(v) ? v.split(':').map((x) => parseInt(x, 16)) : null;
  if (!m) throw new UserError(`${what}: bad MAC address '${v}' (expected six hex pairs like 52:54:00:12:34:56)`, USAGE_STATUS);
  if (m[0] & 1) throw new UserError(`${what}: '${v}' is a multicast address`, USAGE_STATUS);
  return Uint8Array.from(m);
}

/** Check a netdev text (usage error, exit 2, if bad); returns its id. */
function checkNetdev(text: string, flag: string): string {
  try { return parseNetdev(text).id; } catch (e) { throw new UserError(`${flag} ${text}: ${(e as Error).message}`, USAGE_STATUS); }
}

/** -nic TYPE,...: the netdev part (without mac=, model=, id=) and the MAC; null for -nic none. */
function parseNic(text: string): { netdev: string; mac?: Uint8Array } | null {
  const [[type], ...kv] = parseOptionList(text);
  if (type === 'none' && kv.length === 0) return null;
  const keep: string[] = [type];
  let mac: Uint8Array | undefined;
  for (const [k, v] of kv) {
    if (k === 'mac') mac = parseMac(v ?? '', `-nic ${text}`);
    else if (k === 'model') {
      if (v !== 'virtio-net-device' && v !== 'virtio' && v !== 'virtio-net') throw new UserError(`-nic ${text}: unsupported model '${v ?? ''}' (virtio-net-device)`, USAGE_STATUS);
    } else if (k !== 'id') keep.push(v === null ? k : `${k}=${v}`);
  }
  const netdev = keep.join(',');
  checkNetdev(netdev, '-nic');
  return { netdev, mac };
}
export function isVirtioDevice(text: string): boolean {
  return VIRTIO_DEVICE_NAMES.includes(parseOptionList(text)[0][0]);
}

/**
 * Put drives (-hda first, then -drive in order) and virtio -device entries (in order) into
 * slot order. virtconsole needs a virtio-serial-device, as in QEMU.
 */
export function parseVirtio(args: { hda?: string; drives: string[]; devices: string[]; chardevs: string[]; snapshot: boolean; netdevs?: string[]; nics?: string[]; objects?: string[] }): VirtioRequest[] {
  const out: VirtioRequest[] = [];
  if (args.hda !== undefined) out.push({ kind: 'blk', drive: { file: args.hda, readOnly: false, snapshot: args.snapshot } });
  for (const d of args.drives) out.push({ kind: 'blk', drive: parseDrive(d, args.snapshot) });
  const chardevs = new Map<string, ChardevSpec>();
  for (const c of args.chardevs) {
    const spec = parseChardev(c);
    if (chardevs.has(spec.id)) throw new UserError(`-chardev: duplicate id '${spec.id}'`, USAGE_STATUS);
    chardevs.set(spec.id, spec);
  }
  const netdevs = new Map<string, string>();
  for (const n of args.netdevs ?? []) {
    const id = checkNetdev(n, '-netdev');
    if (!id) throw new UserError(`-netdev ${n}: id= is required`, USAGE_STATUS);
    if (netdevs.has(id)) throw new UserError(`-netdev: duplicate id '${id}'`, USAGE_STATUS);
    netdevs.set(id, n);
  }
  for (const o of args.objects ?? []) {
    const [[type], ...kv] = parseOptionList(o);
    const keys = new Map(kv.map(([k, v]) => [k, v ?? '']));
    if (type !== 'filter-dump') throw new UserError(`-object ${o}: unsupported object '${type}' (filter-dump)`, USAGE_STATUS);
    for (const k of keys.keys()) if (!['id', 'netdev', 'file'].includes(k)) throw new UserError(`-object ${o}: unknown key '${k}' (id, netdev, file)`, USAGE_STATUS);
    const id = keys.get('netdev') ?? '', file = keys.get('file') ?? '';
    const n = netdevs.get(id);
    if (n === undefined) throw new UserError(`-object ${o}: netdev= must name a -netdev id`, USAGE_STATUS);
    if (!file) throw new UserError(`-object ${o}: file= is required`, USAGE_STATUS);
    if (parseOptionList(n).some(([k]) => k === 'pcap')) throw new UserError(`-object ${o}: netdev '${id}' is already captured`, USAGE_STATUS);
    netdevs.set(id, `${n},pcap=${file}`);
  }
  let serialBus = false;
  const used = new Set<string>();
  const usedNetdevs = new Set<string>();
  for (const d of args.devices) {
    const [[name], ...kv] = parseOptionList(d);
    const keys = new Map(kv.map(([k, v]) => [k, v ?? '']));
    const allow = (ok: string[]): void => {
      for (const k of keys.keys()) if (!ok.includes(k)) throw new UserError(`-device ${d}: unknown key '${k}'`, USAGE_STATUS);
    };
    switch (name) {
      case 'virtio-rng-device': case 'virtio-rng': allow(['id']); out.push({ kind: 'rng' }); break;
      case 'virtio-serial-device': case 'virtio-serial': allow(['id']); serialBus = true; break;
      case 'virtconsole': {
        allow(['chardev', 'id', 'name']);
        if (!serialBus) throw new UserError(`-device ${d}: needs a -device virtio-serial-device before it`, USAGE_STATUS);
        const id = keys.get('chardev');
        const c = id === undefined ? undefined : chardevs.get(id);
        if (!c) throw new UserError(`-device ${d}: chardev= must name a -chardev id`, USAGE_STATUS);
        if (used.has(c.id)) throw new UserError(`-device ${d}: chardev '${c.id}' is already in use`, USAGE_STATUS);
        used.add(c.id);
        out.push({ kind: 'console', chardev: c });
        break;
      }
      case 'virtio-net-device': case 'virtio-net': {
        allow(['netdev', 'mac', 'id']);
        const id = keys.get('netdev');
        const n = id === undefined ? undefined : netdevs.get(id);
        if (id === undefined || n === undefined) throw new UserError(`-device ${d}: netdev= must name a -netdev id`, USAGE_STATUS);
        if (usedNetdevs.has(id)) throw new UserError(`-device ${d}: netdev '${id}' is already in use`, USAGE_STATUS);
        usedNetdevs.add(id);
        const mac = keys.get('mac');
        out.push({ kind: 'net', netdev: n, mac: mac === undefined ? undefined : parseMac(mac, `-device ${d}`) });
        break;
      }
      default: break; // not a virtio device: handled by the caller
    }
  }
  for (const text of args.nics ?? []) {
    const nic = parseNic(text);
    if (nic) out.push({ kind: 'net', ...nic });
  }
  for (const id of netdevs.keys()) if (!usedNetdevs.has(id)) throw new UserError(`-netdev id=${id} is not used by any -device virtio-net-device,netdev=${id}`, USAGE_STATUS);
  if (out.length > 8) throw new UserError(`too many virtio devices (${out.length}); the virt board has 8 slots`, USAGE_STATUS);
  return out;
}

/** A console chardev's host side: the device's output goes to it; its input to the current machine. */
interface HostChar { serial: SerialBackend; close(): void }

function openChardev(c: ChardevSpec, input: (b: Uint8Array) => void, waitFor: Array<Promise<void>>): HostChar {
  if (c.backend === 'file') {
    let fd: number;
    try { fd = openSync(c.path, 'w'); } catch (e) { throw new UserError(`-chardev ${c.id}: cannot open '${c.path}': ${(e as Error).message}`); }
    return { serial: { write: (b) => { try { writeSync(fd, b); } catch { /* a full disk must not stop the VM */ } } }, close: () => closeSync(fd) };
  }
  // QEMU removes a stale socket file before listening.
  try { if (statSync(c.path).isSocket()) rmSync(c.path); } catch { /* absent */ }
  let client: Socket | null = null;
  const server: Server = createServer((s) => {
    if (client) { s.end(); return; } // one client at a time, as QEMU
    client = s;
    s.on('data', (d: Buffer) => input(new Uint8Array(d.buffer, d.byteOffset, d.length)));
    s.on('error', () => { /* peer vanished */ });
    s.on('close', () => { if (client === s) client = null; });
  });
  waitFor.push(new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new UserError(`-chardev ${c.id}: cannot listen on '${c.path}': ${e.message}`)));
    server.listen(c.path, () => {
      if (!c.wait) resolve();
      else server.once('connection', () => resolve());
    });
  }));
  return {
    serial: { write: (b) => { client?.write(b); } },
    close: () => { client?.destroy(); server.close(); try { rmSync(c.path); } catch { /* gone */ } },
  };
}

export interface OpenedVirtio {
  specs: VirtioDeviceSpec[];
  /** Bind host input to a (new) machine's devices: after a reboot the machine is rebuilt. */
  attach(m: Machine): void;
  /** Flush and close the disks; stop the sockets. */
  close(): Promise<void>;
}

/** Open disks and chardevs. Errors name the file (exit 1); on error everything opened is closed. */
export async function openVirtio(reqs: readonly VirtioRequest[], stderr: { write(s: string): unknown }): Promise<OpenedVirtio> {
  const disks: BlockBackend[] = [];
  const nets: NetBackend[] = [];
  const chars: HostChar[] = [];
  const specs: VirtioDeviceSpec[] = [];
  const consoleIndex: number[] = [];
  let machine: Machine | null = null;
  const closeAll = async (): Promise<void> => {
    for (const c of chars) c.close();
    for (const n of nets) n.close();
    const r = await Promise.allSettled(disks.map((d) => d.close()));
    for (const x of r) if (x.status === 'rejected') stderr.write(`typevisor: closing a disk: ${(x.reason as Error).message}\n`);
  };
  try {
    const waits: Array<Promise<void>> = [];
    for (const r of reqs) {
      if (r.kind === 'blk') {
        const d = r.drive;
        let disk: BlockBackend;
        try {
          disk = await openDisk({ file: d.file, format: d.format, readOnly: d.readOnly, snapshot: d.snapshot, cache: d.cache });
        } catch (e) {
          if (e instanceof DiskError) throw new UserError(`-drive file=${d.file}: ${e.message}`);
          throw e;
        }
        disks.push(disk);
        specs.push({ kind: 'blk', disk });
      } else if (r.kind === 'rng') {
        specs.push({ kind: 'rng' });
      } else if (r.kind === 'net') {
        let backend: NetBackend;
        // (The network stack loads only for a VM with a NIC: ~20 ms of every start otherwise.)
        try { backend = await (await import('../host/net/open.js')).openNetdev(r.netdev); } catch (e) { throw new UserError((e as Error).message); }
        nets.push(backend);
        specs.push({ kind: 'net', backend, mac: r.mac });
      } else {
        const idx = specs.length;
        consoleIndex.push(idx);
        const ch = openChardev(r.chardev, (b) => {
          const dev = machine?.virtioDevices[idx];
          if (dev instanceof VirtioConsole) dev.receive(b);
        }, waits);
        chars.push(ch);
        specs.push({ kind: 'console', serial: ch.serial });
      }
    }
    if (waits.length) {
      if (reqs.some((r) => r.kind === 'console' && r.chardev.wait)) stderr.write('typevisor: waiting for a connection on the console socket(s)\n');
      await Promise.all(waits);
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  return { specs, attach: (m) => { machine = m; }, close: closeAll };
}
