/**
 * One typevisor measurement in a process of its own: `node dist/bench/child.js MODULE FN ARGS`
 * imports dist/bench/MODULE, calls its export FN with the JSON array ARGS (paths, numbers)
 * and prints `RESULT <json>` on stdout.
 *
 * Why: QEMU starts afresh for every measurement, and so does each `typevisor run` (and each
 * VM runner under the daemon). Measured in the bench's own process, typevisor ran warm: V8
 * had optimized its JavaScript in earlier rows, and V8's in-process cache of compiled
 * WebAssembly modules returned the translator's modules of an earlier boot of the same
 * guest without compiling them. A Linux boot's second run in one process took ~1.3 s
 * where a fresh process takes ~1.85 s (docs/PERFORMANCE.md, "Fresh processes").
 */
import { setWasmTier, WASM_TIERS, type WasmTier } from '../src/host/wasm-tier.js';

const MODULES = ['lib.js', 'workload.js', 'disk.js'];

async function main(): Promise<void> {
  const [module, fn, args] = process.argv.slice(2);
  if (!MODULES.includes(module)) throw new Error(`bench child: unknown module '${module}'`);
  const tier = (process.env.TYPEVISOR_WASM_TIER ?? 'late') as WasmTier;
  if (!WASM_TIERS.includes(tier)) throw new Error(`TYPEVISOR_WASM_TIER must be one of ${WASM_TIERS.join(', ')}`);
  setWasmTier(tier);
  const mod = await import(`./${module}`) as Record<string, unknown>;
  const f = mod[fn];
  if (typeof f !== 'function') throw new Error(`bench child: ${module} exports no function '${fn}'`);
  const result: unknown = await (f as (...a: unknown[]) => Promise<unknown>)(...(JSON.parse(args) as unknown[]));
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

main().then(() => { process.exit(0); }, (e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
