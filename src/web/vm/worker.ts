/**
 * The in-browser VM's runner: a Web Worker running VmRunner over the worker's message port,
 * the daemon's runner protocol unchanged. The page gives host settings in the worker's URL
 * (as the daemon gives a runner process its environment): `jit=N` sets the translator's
 * threshold, `jit=off` leaves the interpreter alone (absent: the translator at its default);
 * `kernel`/`initrd` name the default guest.
 */
import { VmRunner } from '../../vmm/runner.js';
import { WorkerPort, type MessageEndpoint } from '../../vmm/worker-port.js';
import { BrowserRunnerHost } from '../../vmm/browser-host.js';
import type { FromRunner, ToRunner } from '../../vmm/protocol.js';

const params = new URL(self.location.href).searchParams;
const jit = params.get('jit');
const threshold = jit === null || jit === '' ? undefined : jit === 'off' ? Infinity : Number(jit);
new VmRunner(new WorkerPort<ToRunner, FromRunner>(self as unknown as MessageEndpoint), new BrowserRunnerHost({
  ...(threshold !== undefined && (threshold === Infinity || (Number.isInteger(threshold) && threshold >= 0)) ? { jitThreshold: threshold } : {}),
}));
