/**
 * Small loopback servers the network tests talk to: HTTP with a fixed body, a UDP echo, a
 * one-name DNS server, a TCP sink that digests one upload; and a free-port finder.
 */
import { createHash } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import type { NetBackend } from '../../src/devices/device.js';
import { NodeHostNet, pcapFileSink } from '../../src/host/net/node-host.js';
import { parseNetdev } from '../../src/host/net/netdev.js';
import { PcapWriter, pcapTap } from '../../src/host/net/pcap.js';
import { UserNet } from '../../src/host/net/slirp.js';

export async function httpServer(body: Uint8Array): Promise<{ port: number; server: Server }> {
  const server = createServer((_req, res) => { res.setHeader('content-length', body.length); res.end(body); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, server };
}

/** Replies to each datagram with its upper-cased text. */
export async function udpEcho(): Promise<{ port: number; sock: UdpSocket }> {
  const sock = createSocket('udp4');
  sock.on('message', (m, r) => sock.send(Buffer.from(m.toString().toUpperCase()), r.port, r.address));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, sock };
}

/** Answers A queries for `name` with `addr` (dotted); NXDOMAIN for anything else. */
export async function dnsServer(name: string, addr: string): Promise<{ port: number; sock: UdpSocket; queries: string[] }> {
  const sock = createSocket('udp4');
  const queries: string[] = [];
  sock.on('message', (q, r) => {
    if (q.length < 17) return;
    let i = 12;
    const labels: string[] = [];
    while (i < q.length && q[i] !== 0) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString()); i += q[i] + 1; }
    const qend = i + 5;
    if (qend > q.length) return;
    const qname = labels.join('.');
    const qtype = q.readUInt16BE(i + 1);
    queries.push(qname);
    const hit = qname.toLowerCase() === name && qtype === 1;
    const known = qname.toLowerCase() === name;
    const ans = hit ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...addr.split('.').map(Number)]) : Buffer.alloc(0);
    const h = Buffer.from(q.subarray(0, qend));
    h[2] = 0x81; h[3] = known ? 0x80 : 0x83;
    h.writeUInt16BE(hit ? 1 : 0, 6); h.writeUInt16BE(0, 8); h.writeUInt16BE(0, 10);
    sock.send(Buffer.concat([h, ans]), r.port, r.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, sock, queries };
}

/** The md5 (hex) of the next connection's whole upload to `sink` (it answers by closing). */
export function nextUploadMd5(sink: TcpServer): Promise<string> {
  return new Promise<string>((resolve) => {
    sink.once('connection', (s) => {
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => { s.end(); resolve(createHash('md5').update(Buffer.concat(got)).digest('hex')); });
    });
  });
}

/** A loopback TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/**
 * The user-mode network both guest tests use: a UserNet from a `-netdev user,...` spec with
 * its pcap tap, the ports its hostfwd rules bound (in order), and an upload sink on loopback.
 */
export interface UserNetFixture {
  un: UserNet;
  /** The NIC's backend: the UserNet seen through the pcap tap. */
  tapped: NetBackend;
  /** Host ports bound by the spec's hostfwd rules, in their order. */
  fwdPorts: number[];
  /** A TCP server for guest uploads (see nextUploadMd5). */
  sink: TcpServer;
  sinkPort: number;
  close(): void;
}

export async function userNetFixture(netdev: string): Promise<UserNetFixture> {
  const spec = parseNetdev(netdev);
  if (spec.type !== 'user') throw new Error(`userNetFixture: not a user netdev: ${netdev}`);
  const sink = createTcpServer({ allowHalfOpen: true });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const un = new UserNet(new NodeHostNet(), spec.user);
  await un.start();
  const pcapFile = spec.pcap ? pcapFileSink(spec.pcap) : null;
  const tapped = pcapFile ? pcapTap(un, new PcapWriter(pcapFile.sink, 128)) : un;
  return {
    un, tapped, sink, fwdPorts: un.boundPorts(), sinkPort: (sink.address() as AddressInfo).port,
    close() { un.close(); sink.close(); pcapFile?.close(); },
  };
}
