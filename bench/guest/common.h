/* Tiny bare-metal support for the benchmarks: UART output (16550 THR at 0x1000_0000). */
#include <stdint.h>
#define UART ((volatile uint8_t *)0x10000000)
static void putc_(char c) { while ((UART[5] & 0x20) == 0) {} UART[0] = (uint8_t)c; }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void puthex(uint64_t v) {
  for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]);
}
static void putdec(uint64_t v) {
  char b[24]; int n = 0;
  do { b[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n) putc_(b[--n]);
}
