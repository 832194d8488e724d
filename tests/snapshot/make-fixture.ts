/**
 * Writes tests/snapshot/fixtures/counter-v1.tvs: the counter machine (counter.ts) saved
 * halfway, as format 1.0 holding a version 1 MachineState (the shape before virtio devices
 * and timers were saved), so the tests keep checking that old states still load.
 *
 *   npx tsc -p . && node dist/tests/snapshot/make-fixture.js
 *
 * Regenerate it only when the format's major version changes (then keep the old file too).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSnapshot } from '../../src/snapshot/format.js';
import type { MachineStateV1 } from '../../src/machine/machine.js';
import { repoRoot } from '../lib/toolchain.js';
import { counterElf, counterMachine, COUNTER_HALF, COUNTER_MEMORY } from './counter.js';

const sink = { out: '' };
const m = counterMachine(await counterElf(), sink, { stepLimit: COUNTER_HALF });
await m.run();
const { virtio: _v, timers: _t, ...rest } = m.save();
const v1: MachineStateV1 = { ...rest, v: 1 };
const bytes = await encodeSnapshot({
  typevisor: '0.1.0', created: '2026-11-26T05:30:00.000Z', machine: { kind: 'fixture', program: 'tests/snapshot/counter.ts' },
  memoryBytes: COUNTER_MEMORY, disks: [],
}, v1, { version: { major: 1, minor: 0 } });
const file = join(repoRoot, 'tests', 'snapshot', 'fixtures', 'counter-v1.tvs');
writeFileSync(file, bytes);
console.log(`${file}: ${bytes.length} bytes, saved after ${JSON.stringify(sink.out)}`);
