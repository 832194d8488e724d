#!/usr/bin/env -S node --v8-pool-size=1
// One V8 worker thread, not Node's four: on a small host V8's background compiles and GC
// otherwise take cores from the vCPU thread (a Linux boot ~12 % slower on 2 cores;
// docs/PERFORMANCE.md, "Fresh processes"). Also in package.json's start script.
import { main } from '../dist/src/cli/main.js';
main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`typevisor: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
