/** Unrolled straight-line code (BLAKE2s, as Linux hashes its random pool): the same bare-metal program on both engines. */
import { benchGuestProgram } from './cpu.js';
import type { Row } from './lib.js';

export function benchUnrolled(startup: number): Promise<Row[]> {
  return benchGuestProgram('unrolled', 'unrolled.c', 12, startup);
}
