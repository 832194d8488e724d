/**
 * The runner protocol's Port over anything with postMessage and `message` events: a Web
 * Worker (manager side), the worker's global scope (runner side), or a MessagePort. No
 * Node APIs: this is the browser's transport. A Worker has no "closed" event, so onClose
 * fires on close() and on the endpoint's `error` event (an uncaught exception in the worker).
 */
import type { Port } from './protocol.js';

export interface MessageEndpoint {
  postMessage(msg: unknown): void;
  addEventListener(type: 'message', cb: (e: { data: unknown }) => void): void;
  addEventListener(type: 'error', cb: () => void): void;
  /** MessagePort: messages flow only after start(). */
  start?(): void;
  /** MessagePort / worker scope. */
  close?(): void;
  /** Worker (manager side). */
  terminate?(): void;
}

export class WorkerPort<In, Out> implements Port<In, Out> {
  private closeCbs: Array<() => void> = [];
  private closed = false;

  constructor(private readonly ep: MessageEndpoint) {
    ep.addEventListener('error', () => this.fireClose());
  }

  post(msg: Out): void {
    if (!this.closed) this.ep.postMessage(msg);
  }

  onMessage(cb: (msg: In) => void): void {
    this.ep.addEventListener('message', (e) => cb(e.data as In));
    this.ep.start?.();
  }

  onClose(cb: () => void): void { this.closeCbs.push(cb); }

  close(): void {
    if (this.closed) return;
    // Let messages already posted (often the runner's `exit`) go out first.
    setTimeout(() => {
      this.ep.close?.();
      this.ep.terminate?.();
      this.fireClose();
    }, 0);
    this.closed = true;
  }

  private fireClose(): void {
    const cbs = this.closeCbs;
    this.closeCbs = [];
    for (const cb of cbs) cb();
  }
}
