/*
 * Unrolled straight-line code: BLAKE2s hashing (RFC 7693, section 3.2), its compression
 * function's ten rounds written out in full as Linux's lib/crypto does (the kernel runs it
 * for its random pool at every boot). ~2,300 instructions without a branch, over three
 * 4 KiB pages. Prints a checksum (the digest of the last pass, folded).
 */
#include "common.h"
#ifndef SCALE
#define SCALE 4
#endif

static const uint8_t SIGMA[10][16] = {
  {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
  {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
  {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
  {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
  {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};
static const uint32_t IV[8] = {
  0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
};

static inline uint32_t rotr(uint32_t w, unsigned c) { return (w >> c) | (w << (32 - c)); }

/* The mixing function G (RFC 7693 3.1) on v[a], v[b], v[c], v[d] with message words x, y. */
#define G(a, b, c, d, x, y) do { \
  v[a] += v[b] + (x); v[d] = rotr(v[d] ^ v[a], 16); v[c] += v[d]; v[b] = rotr(v[b] ^ v[c], 12); \
  v[a] += v[b] + (y); v[d] = rotr(v[d] ^ v[a], 8); v[c] += v[d]; v[b] = rotr(v[b] ^ v[c], 7); } while (0)
#define ROUND(r) do { \
  G(0, 4, 8, 12, m[SIGMA[r][0]], m[SIGMA[r][1]]); G(1, 5, 9, 13, m[SIGMA[r][2]], m[SIGMA[r][3]]); \
  G(2, 6, 10, 14, m[SIGMA[r][4]], m[SIGMA[r][5]]); G(3, 7, 11, 15, m[SIGMA[r][6]], m[SIGMA[r][7]]); \
  G(0, 5, 10, 15, m[SIGMA[r][8]], m[SIGMA[r][9]]); G(1, 6, 11, 12, m[SIGMA[r][10]], m[SIGMA[r][11]]); \
  G(2, 7, 8, 13, m[SIGMA[r][12]], m[SIGMA[r][13]]); G(3, 4, 9, 14, m[SIGMA[r][14]], m[SIGMA[r][15]]); } while (0)

/* Compress one 64-byte block into h (t: bytes so far, last: the final block). */
__attribute__((noinline)) static void compress(uint32_t h[8], const uint32_t m[16], uint32_t t, int last) {
  uint32_t v[16];
  for (int i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = IV[i]; }
  v[12] ^= t;
  if (last) v[14] = ~v[14];
  ROUND(0); ROUND(1); ROUND(2); ROUND(3); ROUND(4); ROUND(5); ROUND(6); ROUND(7); ROUND(8); ROUND(9);
  for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* BLAKE2s-256 (no key) of n 64-byte blocks of buf. */
static void blake2s(uint32_t out[8], const uint32_t *buf, uint32_t n) {
  for (int i = 0; i < 8; i++) out[i] = IV[i];
  out[0] ^= 0x01010000u ^ 32u;
  for (uint32_t b = 0; b < n; b++) compress(out, buf + 16 * b, 64u * (b + 1), b + 1 == n);
}

#define BLOCKS 256
static uint32_t data[16 * BLOCKS];

int main(void) {
  uint32_t s = 0x9e3779b9u;
  for (uint32_t i = 0; i < 16 * BLOCKS; i++) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; data[i] = s; }
  uint32_t h[8];
  uint64_t sum = 0;
  for (int r = 0; r < 40 * SCALE; r++) {
    data[r % (16 * BLOCKS)] ^= (uint32_t)sum;
    blake2s(h, data, BLOCKS);
    for (int i = 0; i < 8; i++) sum = sum * 31 + h[i];
  }
  puts_("checksum ");
  puthex(sum);
  puts_("\n");
  return 0;
}
