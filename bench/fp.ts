/** Double-precision throughput: n-body, Mandelbrot with fmadd, dot products. */
import { benchGuestProgram } from './cpu.js';
import type { Row } from './lib.js';

export function benchFp(startup: number): Promise<Row[]> {
  return benchGuestProgram('fp', 'fp.c', 6, startup);
}
