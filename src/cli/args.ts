/**
 * Command-line parsing in QEMU's habits: `-kernel f` and `--kernel f` and `--kernel=f` are
 * the same; sizes take K/M/G suffixes with MiB as the default unit.
 */
import { UserError } from '../host/images.js';

export const USAGE_STATUS = 2;

export interface FlagSpec {
  /** Canonical name without dashes. */
  name: string;
  /** Other spellings (without dashes). */
  aliases?: string[];
  /** Takes a value. */
  value: boolean;
  /** May be given more than once (values accumulate). */
  repeat?: boolean;
}

export interface Parsed {
  flags: Map<string, string[]>;
  positional: string[];
}

export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[], command: string): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) { byName.set(s.name, s); for (const a of s.aliases ?? []) byName.set(a, s); }
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') { positional.push(...argv.slice(i + 1)); break; }
    if (!arg.startsWith('-') || arg === '-') { positional.push(arg); continue; }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const key = eq >= 0 ? body.slice(0, eq) : body;
    const spec = byName.get(key);
    if (!spec) throw new UserError(`${command}: unknown option '${arg}' (see 'typevisor help')`, USAGE_STATUS);
    let value = '';
    if (spec.value) {
      if (eq >= 0) value = body.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i];
      else throw new UserError(`${command}: option '${arg}' needs a value`, USAGE_STATUS);
    } else if (eq >= 0) {
      throw new UserError(`${command}: option '${arg}' takes no value`, USAGE_STATUS);
    }
    const list = flags.get(spec.name) ?? [];
    if (list.length > 0 && !spec.repeat) throw new UserError(`${command}: option '-${spec.name}' given twice`, USAGE_STATUS);
    list.push(value);
    flags.set(spec.name, list);
  }
  return { flags, positional };
}

/** QEMU's -m: a number with an optional K/M/G/T suffix (optionally followed by B or iB); plain numbers are MiB. */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(text.trim());
  if (!m) throw new UserError(`invalid size '${text}' for ${flag} (examples: 512M, 1G, 256)`, USAGE_STATUS);
  const unit = { '': 1 << 20, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.round(Number(m[1]) * unit);
  return bytes;
}

/** A number in decimal or 0x hex. */
export function parseAddress(text: string, what: string): number {
  const v = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(v)) throw new UserError(`invalid address '${text}' for ${what}`, USAGE_STATUS);
  return v;
}
