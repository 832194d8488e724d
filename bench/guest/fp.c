/* Double-precision benchmark: n-body, Mandelbrot, dot products with fused multiply-add.
 * Counts nominal floating-point operations as it goes and prints them with a checksum. */
#include "common.h"
#include <stdint.h>
#ifndef SCALE
#define SCALE 4
#endif

static double sqrt_(double x) { double r; __asm__("fsqrt.d %0, %1" : "=f"(r) : "f"(x)); return r; }
static double fma_(double a, double b, double c) { double r; __asm__("fmadd.d %0, %1, %2, %3" : "=f"(r) : "f"(a), "f"(b), "f"(c)); return r; }

#define NB 5
static double px[NB], py[NB], pz[NB], vx[NB], vy[NB], vz[NB], m[NB];
static uint64_t flops;

static void nbody_init(void) {
  for (int i = 0; i < NB; i++) {
    px[i] = i * 1.1 - 2.0; py[i] = i * 0.7 + 0.3; pz[i] = (i & 1) ? 0.5 : -0.25;
    vx[i] = 0.01 * i; vy[i] = -0.02 * i; vz[i] = 0.005; m[i] = 1.0 + 0.1 * i;
  }
}

static void nbody_step(double dt) {
  for (int i = 0; i < NB; i++)
    for (int j = i + 1; j < NB; j++) {
      double dx = px[i] - px[j], dy = py[i] - py[j], dz = pz[i] - pz[j];
      double d2 = dx * dx + dy * dy + dz * dz + 0.01;
      double d = sqrt_(d2);
      double mag = dt / (d2 * d);
      vx[i] -= dx * m[j] * mag; vy[i] -= dy * m[j] * mag; vz[i] -= dz * m[j] * mag;
      vx[j] += dx * m[i] * mag; vy[j] += dy * m[i] * mag; vz[j] += dz * m[i] * mag;
      flops += 32;
    }
  for (int i = 0; i < NB; i++) { px[i] += dt * vx[i]; py[i] += dt * vy[i]; pz[i] += dt * vz[i]; flops += 6; }
}

static uint64_t mandel(int w, int h, int maxit) {
  uint64_t total = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double cr = -2.0 + 3.0 * x / w, ci = -1.2 + 2.4 * y / h, zr = 0, zi = 0;
      int it = 0;
      while (it < maxit && zr * zr + zi * zi < 4.0) {
        double t = fma_(zr, zr, fma_(-zi, zi, cr));
        zi = fma_(2.0 * zr, zi, ci);
        zr = t;
        it++;
      }
      flops += (uint64_t)it * 9;
      total += (uint64_t)it;
    }
  return total;
}

#define DN 256
static double da[DN], db[DN];
static double dots(int reps) {
  for (int i = 0; i < DN; i++) { da[i] = 1.0 / (i + 1); db[i] = (i % 7) - 3.0; }
  double s = 0;
  for (int r = 0; r < reps; r++) {
    double acc = 0;
    for (int i = 0; i < DN; i++) acc = fma_(da[i], db[i], acc);
    s += acc * 1e-3;
    flops += 2 * DN + 2;
  }
  return s;
}

int main(void) {
  union { double d; uint64_t u; } h;
  uint64_t sum = 0;
  for (int r = 0; r < SCALE; r++) {
    nbody_init();
    for (int s = 0; s < 20000; s++) nbody_step(0.001);
    h.d = px[0] + py[1] + pz[2] + vx[3];
    sum = sum * 31 + h.u;
    sum = sum * 31 + mandel(96, 64, 200);
    h.d = dots(1500);
    sum = sum * 31 + h.u;
  }
  puts_("checksum ");
  puthex(sum);
  puts_(" flops ");
  putdec(flops);
  puts_("\n");
  return 0;
}
