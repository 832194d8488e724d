/**
 * The CPU cap controller on a plain busy process (no VM): idle first (credit must not pile
 * up), then spinning. The share measured from /proc over 4 s is the cap ±5 points, at 25%
 * and after a live change to 50%.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CpuCap, procCpuSeconds } from '../../src/daemon/vm.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function share(pid: number, ms: number): Promise<number> {
  const c0 = procCpuSeconds(pid)!, t0 = performance.now();
  await sleep(ms);
  return (procCpuSeconds(pid)! - c0) / ((performance.now() - t0) / 1000);
}

test('CPU cap: 25% then 50% (changed live) on a busy process, after an idle second', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => { for (;;); }, 1500)'], { stdio: 'ignore' });
  try {
    const pid = child.pid!;
    const cap = new CpuCap(pid, 0.25);
    cap.start();
    await sleep(2500);
    const a = await share(pid, 4000);
    cap.cap = 0.5;
    await sleep(1000);
    const b = await share(pid, 4000);
    cap.stop();
    const c = await share(pid, 1000);
    console.log(`cap 25%: ${(a * 100).toFixed(1)}%, 50%: ${(b * 100).toFixed(1)}%, uncapped: ${(c * 100).toFixed(1)}%`);
    assert.ok(Math.abs(a - 0.25) <= 0.05, `25% cap: ${(a * 100).toFixed(1)}%`);
    assert.ok(Math.abs(b - 0.5) <= 0.05, `50% cap: ${(b * 100).toFixed(1)}%`);
    assert.ok(c > 0.6, `after stop() the process runs freely: ${(c * 100).toFixed(1)}%`);
  } finally {
    child.kill('SIGKILL');
  }
});
