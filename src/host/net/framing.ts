/**
 * QEMU's stream netdev framing (`-netdev socket,connect=|listen=` and `-netdev stream`):
 * each Ethernet frame is preceded by its length as a 4-byte big-endian number. The decoder
 * takes arbitrary chunks and yields whole frames; a length beyond `maxFrame` is an error
 * (the peer is not speaking this protocol), reported once.
 */
export const STREAM_MAX_FRAME = 65536 + 14;

/**
 * The first frame a typevisor stream end sends: "I take large TCP segments (GSO frames)".
 * A peer that sends it too gets them whole; QEMU does not, and hands this one frame to its
 * guest, which drops it (a locally administered group address, the IEEE local experimental
 * ethertype 0x88B5). Padded to the 60-byte minimum.
 */
export const GSO_HELLO = (() => {
  const f = new Uint8Array(60);
  f.set([0x03, 0x74, 0x76, 0x67, 0x73, 0x6f, 0x02, 0x74, 0x76, 0x00, 0x00, 0x00, 0x88, 0xb5], 0);
  f.set(new TextEncoder().encode('typevisor-gso/1'), 14);
  return f;
})();

/** Whether a frame is GSO_HELLO (compared up to the end of its text). */
export function isGsoHello(f: Uint8Array): boolean {
  if (f.length !== GSO_HELLO.length || f[12] !== 0x88 || f[13] !== 0xb5) return false;
  for (let i = 0; i < 29; i++) if (f[i] !== GSO_HELLO[i]) return false;
  return true;
}

export function encodeFrame(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.length);
  out[0] = frame.length >>> 24; out[1] = (frame.length >>> 16) & 0xff; out[2] = (frame.length >>> 8) & 0xff; out[3] = frame.length & 0xff;
  out.set(frame, 4);
  return out;
}

export class StreamDecoder {
  private buf = new Uint8Array(0);
  private failed = false;
  constructor(private readonly onFrame: (f: Uint8Array) => void, private readonly onError: (msg: string) => void, private readonly maxFrame = STREAM_MAX_FRAME) {}

  push(chunk: Uint8Array): void {
    if (this.failed) return;
    let b: Uint8Array;
    if (this.buf.length) { b = new Uint8Array(this.buf.length + chunk.length); b.set(this.buf); b.set(chunk, this.buf.length); } else b = chunk;
    let i = 0;
    while (b.length - i >= 4) {
      const len = ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
      if (len > this.maxFrame) { this.failed = true; this.buf = new Uint8Array(0); this.onError(`frame length ${len} exceeds ${this.maxFrame}`); return; }
      if (b.length - i - 4 < len) break;
      this.onFrame(b.slice(i + 4, i + 4 + len));
      i += 4 + len;
    }
    this.buf = i === b.length ? new Uint8Array(0) : b.slice(i);
  }
}
