/**
 * A bare-metal guest with a minimal virtio-input driver (Virtio 1.2 §5.8 over virtio-mmio
 * v2): it finds the device, prints its name, posts 8 event buffers, prints "ready", and
 * powers off through the SiFive test device when KEY_POWER goes down. Run with bios 'none'
 * (M-mode from 0x8000_0000). It polls the used ring: it is a test, not a model guest.
 */
import { buildElf } from './toolchain.js';

const START = String.raw`
  .section .text.init
  .globl _start
_start:
  la sp, stack_top
  call main
1: j 1b
  .bss
  .align 4
  .space 8192
stack_top:
`;

const MAIN = String.raw`
typedef unsigned long u64; typedef unsigned int u32; typedef unsigned short u16; typedef unsigned char u8;
#define R32(a) (*(volatile u32 *)(a))
#define R8(a) (*(volatile u8 *)(a))
#define QN 8
static void put(const char *s) { while (*s) R8(0x10000000UL) = (u8)*s++; }
static void finish(u32 v) { R32(0x100000UL) = v; for (;;) {} }
static struct { u64 addr; u32 len; u16 flags, next; } desc[QN] __attribute__((aligned(16)));
static volatile struct { u16 flags, idx, ring[QN], used_event; } avail __attribute__((aligned(2)));
static volatile struct { u16 flags, idx; struct { u32 id, len; } ring[QN]; u16 avail_event; } used __attribute__((aligned(4)));
static volatile struct { u16 type, code; u32 value; } ev[QN];

void main(void) {
  u64 b = 0;
  for (u64 a = 0x10001000UL; a <= 0x10008000UL; a += 0x1000)
    if (R32(a) == 0x74726976 && R32(a + 8) == 18) { b = a; break; }
  if (!b) { put("no virtio-input\n"); finish(0x13333); }
  R32(b + 0x70) = 0;
  R32(b + 0x70) = 1; R32(b + 0x70) = 3;
  R32(b + 0x24) = 1; R32(b + 0x20) = 1;       /* VIRTIO_F_VERSION_1 */
  R32(b + 0x24) = 0; R32(b + 0x20) = 0;
  R32(b + 0x70) = 11;
  if (!(R32(b + 0x70) & 8)) { put("features refused\n"); finish(0x23333); }
  R8(b + 0x100) = 1; R8(b + 0x101) = 0;       /* VIRTIO_INPUT_CFG_ID_NAME */
  u8 n = R8(b + 0x102);
  char name[129];
  for (u8 i = 0; i < n && i < 128; i++) name[i] = (char)R8(b + 0x108 + i);
  name[n < 128 ? n : 128] = 0;
  put("name: "); put(name); put("\n");
  R8(b + 0x100) = 0x11; R8(b + 0x101) = 1;    /* EV_BITS for EV_KEY: KEY_POWER (116) set? */
  if (!(R8(b + 0x108 + 116 / 8) & (1 << (116 % 8)))) { put("no KEY_POWER\n"); finish(0x33333); }
  R32(b + 0x30) = 0; R32(b + 0x38) = QN;
  R32(b + 0x80) = (u32)(u64)desc; R32(b + 0x84) = 0;
  R32(b + 0x90) = (u32)(u64)&avail; R32(b + 0x94) = 0;
  R32(b + 0xa0) = (u32)(u64)&used; R32(b + 0xa4) = 0;
  for (int i = 0; i < QN; i++) { desc[i].addr = (u64)&ev[i]; desc[i].len = 8; desc[i].flags = 2; desc[i].next = 0; avail.ring[i] = (u16)i; }
  __asm__ volatile ("fence rw, rw");
  avail.idx = QN;
  R32(b + 0x44) = 1;
  R32(b + 0x70) = 15;                          /* DRIVER_OK */
  R32(b + 0x50) = 0;
  put("ready\n");
  u16 last = 0;
  for (;;) {
    while (used.idx == last) {}
    __asm__ volatile ("fence rw, rw");
    u32 id = used.ring[last % QN].id % QN;
    last++;
    if (ev[id].type == 1 && ev[id].code == 116 && ev[id].value == 1) { put("power key\n"); finish(0x5555); }
    avail.ring[avail.idx % QN] = (u16)id;
    __asm__ volatile ("fence rw, rw");
    avail.idx = avail.idx + 1;
    R32(b + 0x50) = 0;
  }
}
`;

/** Path of the built ELF. */
export function buildPowerKeyGuest(): Promise<string> {
  return buildElf({ name: 'power-key-guest', sources: { 'start.S': START, 'main.c': MAIN }, cflags: ['-O2'] });
}
