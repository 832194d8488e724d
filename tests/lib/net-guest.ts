/** Helpers for network tests with a typevisor guest driven through GuestConsole. */
import assert from 'node:assert/strict';
import type { GuestConsole } from './console.js';

export const PROMPT = '~ # ';
/** udhcpc's event script, written into the guest with printf (no '%' in it). */
export const UDHCPC_SCRIPT = '#!/bin/sh\\ncase "$1" in bound|renew) ifconfig $interface $ip netmask $subnet up; ' +
  'route add default gw $router; echo "nameserver $dns" > /etc/resolv.conf;; esac\\n';

/** A shell command's output between two computed markers (long command lines wrap in the echo). */
export async function sh(c: GuestConsole, cmd: string, timeoutMs = 120_000): Promise<string> {
  const out = await c.run(`echo B$((6*7))G; ${cmd}; echo E$((6*7))D`, PROMPT, timeoutMs);
  const a = out.indexOf('B42G\n'), b = out.lastIndexOf('E42D');
  assert.ok(a >= 0 && b > a, `markers missing in: ${out}`);
  return out.slice(a + 5, b).trim();
}
