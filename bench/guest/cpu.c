/* Integer benchmark: sieve, CRC-32, matrix multiply, quicksort, hashing. Prints a checksum. */
#include "common.h"
#ifndef SCALE
#define SCALE 4
#endif

static uint8_t sieve_buf[1 << 20];
static uint32_t sieve(uint32_t n) {
  uint32_t count = 0;
  for (uint32_t i = 0; i < n; i++) sieve_buf[i] = 1;
  for (uint32_t i = 2; i < n; i++) {
    if (!sieve_buf[i]) continue;
    count++;
    for (uint32_t j = i + i; j < n; j += i) sieve_buf[j] = 0;
  }
  return count;
}

static uint32_t crc_table[256];
static uint32_t crc32(const uint8_t *p, uint32_t len) {
  uint32_t c = 0xffffffffu;
  for (uint32_t i = 0; i < len; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

#define N 48
static int32_t ma[N][N], mb[N][N], mc[N][N];
static uint64_t matmul(uint32_t seed) {
  for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) {
    seed = seed * 1103515245u + 12345u; ma[i][j] = (int32_t)(seed >> 20) - 2048;
    seed = seed * 1103515245u + 12345u; mb[i][j] = (int32_t)(seed >> 20) - 2048;
  }
  for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) {
    int64_t s = 0;
    for (int k = 0; k < N; k++) s += (int64_t)ma[i][k] * mb[k][j];
    mc[i][j] = (int32_t)(s / 7);
  }
  uint64_t h = 0;
  for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) h = h * 31 + (uint32_t)mc[i][j];
  return h;
}

#define QN 40000
static int64_t qa[QN];
static void qsort_(int64_t *a, int lo, int hi) {
  while (lo < hi) {
    int64_t p = a[(lo + hi) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] < p) i++;
      while (a[j] > p) j--;
      if (i <= j) { int64_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
    }
    if (j - lo < hi - i) { qsort_(a, lo, j); lo = i; } else { qsort_(a, i, hi); hi = j; }
  }
}

static uint64_t fnv(uint64_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < n; i++) { h ^= i & 0xff; h *= 0x100000001b3ull; h ^= h >> 29; }
  return h;
}

int main(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
  uint64_t sum = 0;
  for (int r = 0; r < SCALE; r++) {
    sum += sieve(1 << 19);
    sum = sum * 3 + crc32(sieve_buf, sizeof sieve_buf);
    sum ^= matmul(12345 + r);
    uint64_t s = 88172645463325252ull + r;
    for (int i = 0; i < QN; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; qa[i] = (int64_t)s; }
    qsort_(qa, 0, QN - 1);
    for (int i = 1; i < QN; i++) if (qa[i - 1] > qa[i]) return 3;
    sum += (uint64_t)qa[QN / 2];
    sum ^= fnv(200000);
  }
  puts_("checksum ");
  puthex(sum);
  puts_("\n");
  return 0;
}
