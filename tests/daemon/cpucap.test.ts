/**
 * The CPU cap controller on a plain busy process (no VM): idle first (credit must not pile
 * up), then spinning. The share measured from /proc over 4 s is the cap ±5 points, at 25%
 * and after a live change to 50%. An uncapped spinning process runs alongside as the
 * control: on a host too busy to give the control a whole core, the capped one must never
 * get more than the cap, nor less than 60 % of the cap or of what the control gets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { getPriority, setPriority } from 'node:os';
import { CpuCap, niceOffset, procCpuSeconds } from '../../src/daemon/vm.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function share(pid: number, ms: number): Promise<number> {
  const c0 = procCpuSeconds(pid)!, t0 = performance.now();
  await sleep(ms);
  return (procCpuSeconds(pid)! - c0) / ((performance.now() - t0) / 1000);
}

test('CPU cap: 25% then 50% (changed live) on a busy process, after an idle second', { timeout: 60_000 }, async () => {
  const spin = (): ReturnType<typeof spawn> => spawn(process.execPath, ['-e', 'setTimeout(() => { for (;;); }, 1500)'], { stdio: 'ignore' });
  const child = spin(), control = spin();
  try {
    const pid = child.pid!;
    const cap = new CpuCap(pid, 0.25);
    cap.start();
    await sleep(2500);
    const [a, ca] = await Promise.all([share(pid, 4000), share(control.pid!, 4000)]);
    cap.cap = 0.5;
    await sleep(1000);
    const [b, cb] = await Promise.all([share(pid, 4000), share(control.pid!, 4000)]);
    cap.stop();
    const [c, cc] = await Promise.all([share(pid, 1500), share(control.pid!, 1500)]);
    const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
    console.log(`cap 25%: ${pct(a)} (control ${pct(ca)}), 50%: ${pct(b)} (control ${pct(cb)}), uncapped: ${pct(c)} (control ${pct(cc)})`);
    const check = (got: number, want: number, controlShare: number): void => {
      const msg = `${pct(want)} cap: ${pct(got)}, the uncapped control got ${pct(controlShare)}`;
      assert.ok(got <= want + 0.05, msg);
      if (controlShare >= 0.9) assert.ok(Math.abs(got - want) <= 0.05, msg);
      // A busy host (the control did not get a whole core): the capped process runs only in
      // its windows and competes there, so it may get less than the cap, but is not starved.
      else assert.ok(got >= 0.6 * Math.min(want, controlShare), msg);
    };
    check(a, 0.25, ca);
    check(b, 0.5, cb);
    // After stop() it runs freely: as much as the control, surely more than the old cap; on a
    // host too busy to give the control a whole core, at least 60 % of what the control got.
    assert.ok(Math.abs(c - cc) <= 0.1 || c > 0.6 || (cc < 0.9 && c >= 0.6 * cc), `after stop(): ${pct(c)}, the control ${pct(cc)}`);
  } finally {
    child.kill('SIGKILL');
    control.kill('SIGKILL');
  }
});

test('CPU weights: two busy processes on one core share it by their weights (cpu.weight via nice)', { timeout: 60_000 }, async () => {
  // Pin both to CPU 0 so they compete whatever the host's core count.
  const spin = (): ReturnType<typeof spawn> => spawn('taskset', ['-c', '0', process.execPath, '-e', 'for (;;);'], { stdio: 'ignore' });
  const heavy = spin(), light = spin();
  try {
    await sleep(300);
    const base = getPriority();
    // Weight 100 and weight 25: nice +0 and +6, CFS weights 1024 and 272 (about 4:1).
    assert.equal(niceOffset(100), 0);
    assert.equal(niceOffset(25), 6);
    assert.equal(niceOffset(1000), -10);
    setPriority(light.pid!, base + niceOffset(25));
    assert.equal(getPriority(light.pid!), base + 6);
    const [h, l] = await Promise.all([share(heavy.pid!, 3000), share(light.pid!, 3000)]);
    console.log(`weights 100:25 → ${(h * 100).toFixed(1)}% : ${(l * 100).toFixed(1)}% (ratio ${(h / l).toFixed(2)})`);
    assert.ok(h / l > 2.5, `ratio ${(h / l).toFixed(2)}, expected about 3.8`);
  } finally {
    heavy.kill('SIGKILL');
    light.kill('SIGKILL');
  }
});
