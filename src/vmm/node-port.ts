/**
 * The runner protocol's Port over a Node child process: `child_process.fork` with
 * `serialization: 'advanced'` (structured clone, so Uint8Array passes), and the child's
 * side over process.send.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Port } from './protocol.js';

/** The manager's end: fork `script` and talk to it. */
export class ChildPort<In, Out> implements Port<In, Out> {
  readonly child: ChildProcess;
  private closed = false;

  constructor(script: string, args: readonly string[] = [], env: NodeJS.ProcessEnv = process.env) {
    this.child = fork(script, [...args], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env });
    // A dead child's channel errors on send: the exit event reports it, not an exception.
    this.child.on('error', () => { /* reported through 'exit' */ });
  }

  get pid(): number | undefined { return this.child.pid; }

  post(msg: Out): void {
    if (this.closed || !this.child.connected) return;
    this.child.send(msg as object, (e) => { if (e) { /* the child is going away; 'exit' tells */ } });
  }

  onMessage(cb: (msg: In) => void): void { this.child.on('message', (m) => cb(m as In)); }

  onClose(cb: () => void): void { this.child.on('exit', () => cb()); }

  close(): void {
    this.closed = true;
    if (this.child.connected) this.child.disconnect();
  }
}

/** The runner's end: the parent over this process's IPC channel. */
export class ParentPort<In, Out> implements Port<In, Out> {
  private pending = 0;
  private closing = false;

  constructor() {
    if (!process.send) throw new Error('the VM runner must be started by a manager (no IPC channel)');
  }

  post(msg: Out): void {
    if (!process.connected) return;
    this.pending++;
    process.send?.(msg as object, undefined, undefined, () => {
      // An error means the parent is gone: onClose tells.
      this.pending--;
      if (this.closing && this.pending === 0) this.close();
    });
  }

  onMessage(cb: (msg: In) => void): void { process.on('message', (m) => cb(m as In)); }

  onClose(cb: () => void): void { process.on('disconnect', cb); }

  /** Disconnect once every message sent so far is written (the last one is often `exit`). */
  close(): void {
    this.closing = true;
    if (this.pending === 0 && process.connected) process.disconnect();
  }
}
