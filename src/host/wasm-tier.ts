/**
 * How V8 tiers up the translator's WebAssembly (process-wide V8 flags, so host code sets
 * them before the first compile). V8's default budget sends about half of a Linux boot's
 * translated functions to its optimizing compiler, each costing more than it ever saves
 * (docs/PERFORMANCE.md); a 170-fold budget keeps that compiler for code that runs long
 * (hot loops) only.
 *  - late (the default): optimize only functions that run long (--wasm-tiering-budget).
 *  - v8: V8's own default.
 *  - baseline: never optimize (--liftoff-only).
 */
import { setFlagsFromString } from 'node:v8';

export type WasmTier = 'late' | 'v8' | 'baseline';
export const WASM_TIERS: readonly WasmTier[] = ['late', 'v8', 'baseline'];
/** V8's tiering budget for `late` (its default is 1.8 M). */
export const LATE_TIERING_BUDGET = 300_000_000;

export function setWasmTier(tier: WasmTier): void {
  if (tier === 'late') setFlagsFromString(`--wasm-tiering-budget=${LATE_TIERING_BUDGET}`);
  else if (tier === 'baseline') setFlagsFromString('--liftoff-only');
}
