/** F and D extensions: placeholder until the FPU rows land (owned by the FPU work). */
import type { InsnSpec } from './types.js';

export const RV64FD: InsnSpec[] = [];
