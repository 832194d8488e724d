/*
 * The Linux guest workload: a static glibc program run from the busybox shell. A mix of
 * what a small server does in user space, plus the kernel work it causes: libc qsort
 * (indirect calls), a chained hash table of malloc'd nodes (pointer chasing, brk/mmap),
 * snprintf/strcmp/memcpy, CRC-32, a double-precision n-body step and a single-precision
 * matrix product, and page faults and system calls (a fresh mmap touched page by page,
 * pipe writes and reads). Prints one checksum of everything (equal on any correct RV64GC
 * machine) and its own elapsed time.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef SCALE
#define SCALE 4
#endif

static uint64_t mix(uint64_t h, uint64_t v) { h ^= v; h *= 0x100000001b3ull; return h ^ (h >> 31); }

static uint32_t lcg(uint32_t *s) { *s = *s * 1103515245u + 12345u; return *s >> 8; }

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t sorting(uint32_t seed) {
  enum { N = 60000 };
  uint32_t *a = malloc(N * sizeof *a);
  for (int i = 0; i < N; i++) a[i] = lcg(&seed);
  qsort(a, N, sizeof *a, cmp_u32);
  uint64_t h = 0;
  for (int i = 0; i < N; i += 97) h = mix(h, a[i]);
  free(a);
  return h;
}

struct node { struct node *next; uint64_t key; char name[24]; };

static uint64_t hashing(uint32_t seed) {
  enum { BUCKETS = 4096, KEYS = 30000 };
  struct node **t = calloc(BUCKETS, sizeof *t);
  for (int i = 0; i < KEYS; i++) {
    struct node *n = malloc(sizeof *n);
    n->key = lcg(&seed) % (KEYS * 2);
    snprintf(n->name, sizeof n->name, "k%llu", (unsigned long long)n->key);
    n->next = t[n->key % BUCKETS];
    t[n->key % BUCKETS] = n;
  }
  uint64_t found = 0;
  char want[24];
  for (uint64_t k = 0; k < KEYS * 2; k += 3) {
    snprintf(want, sizeof want, "k%llu", (unsigned long long)k);
    for (struct node *n = t[k % BUCKETS]; n; n = n->next) if (n->key == k && strcmp(n->name, want) == 0) { found = mix(found, k); break; }
  }
  for (int b = 0; b < BUCKETS; b++) for (struct node *n = t[b]; n;) { struct node *x = n->next; free(n); n = x; }
  free(t);
  return found;
}

static uint32_t crc_table[256];
static uint64_t crc(uint32_t seed) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
  enum { LEN = 1 << 18 };
  uint8_t *buf = malloc(LEN), *copy = malloc(LEN);
  for (int i = 0; i < LEN; i++) buf[i] = (uint8_t)lcg(&seed);
  memcpy(copy, buf, LEN);
  uint32_t c = 0xffffffffu;
  for (int i = 0; i < LEN; i++) c = crc_table[(c ^ copy[i]) & 0xff] ^ (c >> 8);
  free(buf);
  free(copy);
  return c ^ 0xffffffffu;
}

static uint64_t nbody(void) {
  enum { B = 5, STEPS = 4000 };
  double x[B], y[B], z[B], vx[B], vy[B], vz[B], m[B];
  for (int i = 0; i < B; i++) {
    x[i] = i * 1.1; y[i] = i * -0.7 + 0.3; z[i] = i * 0.25; vx[i] = 0.01 * i; vy[i] = -0.02 * i; vz[i] = 0.005; m[i] = 1.0 + i * 0.5;
  }
  for (int s = 0; s < STEPS; s++) {
    for (int i = 0; i < B; i++) for (int j = i + 1; j < B; j++) {
      double dx = x[i] - x[j], dy = y[i] - y[j], dz = z[i] - z[j];
      double d2 = dx * dx + dy * dy + dz * dz + 0.01;
      double mag = 0.001 / (d2 * sqrt(d2));
      vx[i] -= dx * m[j] * mag; vy[i] -= dy * m[j] * mag; vz[i] -= dz * m[j] * mag;
      vx[j] += dx * m[i] * mag; vy[j] += dy * m[i] * mag; vz[j] += dz * m[i] * mag;
    }
    for (int i = 0; i < B; i++) { x[i] += 0.01 * vx[i]; y[i] += 0.01 * vy[i]; z[i] += 0.01 * vz[i]; }
  }
  uint64_t h = 0;
  for (int i = 0; i < B; i++) { uint64_t bits; double v = x[i] + y[i] + z[i]; memcpy(&bits, &v, 8); h = mix(h, bits); }
  return h;
}

static uint64_t matf(uint32_t seed) {
  enum { N = 40 };
  static float a[N][N], b[N][N], c[N][N];
  for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) { a[i][j] = (float)(lcg(&seed) % 1000) / 100.0f; b[i][j] = (float)(lcg(&seed) % 1000) / 250.0f; }
  for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) {
    float s = 0;
    for (int k = 0; k < N; k++) s += a[i][k] * b[k][j];
    c[i][j] = s;
  }
  uint64_t h = 0;
  for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) { uint32_t bits; memcpy(&bits, &c[i][j], 4); h = mix(h, bits); }
  return h;
}

/* Kernel work: demand-zero page faults over a fresh mapping, and pipe round trips. */
static uint64_t kernel(void) {
  enum { PAGES = 512 };
  uint64_t h = 0;
  uint8_t *p = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); exit(1); }
  for (int i = 0; i < PAGES; i++) p[i * 4096 + (i & 63)] = (uint8_t)i;
  for (int i = 0; i < PAGES; i++) h = mix(h, p[i * 4096 + (i & 63)]);
  munmap(p, PAGES * 4096);
  int fd[2];
  if (pipe(fd) != 0) { perror("pipe"); exit(1); }
  char buf[256];
  for (int i = 0; i < 400; i++) {
    memset(buf, i, sizeof buf);
    if (write(fd[1], buf, sizeof buf) != sizeof buf || read(fd[0], buf, sizeof buf) != sizeof buf) { perror("pipe io"); exit(1); }
    h = mix(h, buf[i & 255] + (uint64_t)getppid() * 0);
  }
  close(fd[0]);
  close(fd[1]);
  return h;
}

static long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000L + t.tv_nsec / 1000L;
}

int main(void) {
  static const char *names[] = { "sort", "hash", "crc", "nbody", "matf", "kernel" };
  long us[6] = { 0 };
  long t0 = now_us();
  uint64_t h = 0;
  for (uint32_t r = 0; r < SCALE; r++) {
    for (int k = 0; k < 6; k++) {
      long s = now_us();
      uint64_t v = k == 0 ? sorting(r + 1) : k == 1 ? hashing(r + 7) : k == 2 ? crc(r + 3) : k == 3 ? nbody() : k == 4 ? matf(r + 5) : kernel();
      us[k] += now_us() - s;
      h = mix(h, v);
    }
  }
  long ms = (now_us() - t0) / 1000;
  printf("checksum %016llx\nelapsed %ld ms\nphases", (unsigned long long)h, ms);
  for (int k = 0; k < 6; k++) printf(" %s=%ld", names[k], us[k] / 1000);
  printf("\n");
  return 0;
}
