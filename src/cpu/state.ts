/**
 * Layout of one hart's architectural state inside the shared WebAssembly.Memory.
 *
 * Indices are in 64-bit slots (BigInt64Array / Float64Array over the hart's 4 KiB state
 * block); the Int32Array view of the same block addresses slot i's low half at 2*i and
 * high half at 2*i+1 (little-endian). Integer ops use BigInt64 with BigInt.asIntN(64, …)
 * (lowered to machine ops by V8); shifts by a register amount, unsigned compares and
 * address arithmetic use the 32-bit halves, because BigInt<->Number conversion is slow.
 */
export const X0 = 0;
/** Writes to x0 are redirected here at decode time, so x0 always reads zero without a check. */
export const SINK = 32;
/** Address of the instruction being executed. */
export const PC = 33;
/** Address of the next instruction; control transfers and traps write it. */
export const NPC = 34;
/** Scratch slot for 64-bit memory loads (avoids returning a BigInt or allocating). */
export const SCRATCH = 35;
/** Second scratch slot (AMO old values, FP temporaries). */
export const SCRATCH2 = 36;
/** Translated blocks write here how many instructions retired before a call that may trap. */
export const JIT_RETIRED = 37;
/** Set (non-zero) by the hart's memory helpers when a translated block must stop early. */
export const JIT_EXIT = 38;
/** Byte offsets of the current read and write TLBs (set when the privilege changes), for translated code. */
export const TLB_R_PTR = 39;
export const TLB_W_PTR = 40;
/**
 * Hot hart state that translated code reads and writes without calls (each an i32 in the
 * slot's low half): mstatus's low word (FS lives there), fflags and frm.
 */
export const MSTATUS_LO = 41;
export const FFLAGS = 42;
export const FRM = 43;
/**
 * More hot hart state, each an i32 in the slot's low half: the current privilege level,
 * mie, the software-writable and the hardware-driven mip bits (mip = MIP_SW | MIP_HW), the
 * run loop's attention flag (interrupts, WFI or a stop request to look at before the next
 * instruction) and WFI's waiting flag.
 */
export const PRIV = 44;
export const MIE = 45;
export const MIP_SW = 46;
export const MIP_HW = 47;
export const ATTENTION = 48;
export const WAITING = 49;
/** Instructions retired, as a float64 (exact up to 2^53). */
export const ICOUNT = 50;
/**
 * The indirect-branch target cache's context: (epoch << 2) | privilege. The epoch is bumped
 * whenever the virtual-to-code mapping may change (TLB flushes, dropped or replaced code),
 * so older cache entries stop matching.
 */
export const JIT_CTX = 51;
/**
 * Dispatcher entries a head's target-cache entry stood in for since the dispatcher last saw
 * it (added to Decoded.hits at the next entry, so hot pages still get compiled again).
 */
export const JIT_HOT = 52;
/** The LR reservation: the reserved address's host byte offset, -1 for none (an i32). */
export const RESV = 53;
/**
 * Translated code's return-address stack (jit/codegen.ts, "Calls and returns"): guest
 * calls that translated code made as host (Wasm) calls still waiting, an i32, 0 at every
 * dispatcher entry; and from slot JIT_RAS, the guest return address each one waits for.
 * Not machine state: meaningless between runs (Hart.save writes zeros).
 */
export const JIT_DEPTH = 54;
export const JIT_RAS = 96;
/** Host calls deep at most; deeper guest calls are tail calls, as before. */
export const JIT_RAS_SIZE = 32;
/** f0..f31: 64-bit registers; singles are NaN-boxed (upper 32 bits all ones). */
export const F0 = 64;
/** Size of one hart's state block in bytes. */
export const HART_STATE_BYTES = 4096;

/**
 * Software TLBs, in the shared memory after the hart state blocks: per hart 4 privilege
 * levels x (read, write, execute), each TLB_SIZE entries of TLB_ENTRY_BYTES (tag and host
 * offset side by side: one cache line serves a probe), then the hart's target cache.
 */
export const TLB_REGION = 0x8000;
export const TLB_SIZE = 1024;
/**
 * Bytes per TLB entry: tag low word, tag high word, host byte offset, host byte offset minus
 * the tag's low word (mmu.ts Tlb; X TLB entries leave the last unset).
 */
export const TLB_ENTRY_BYTES = 16;
/** Byte offset of an entry's host offset minus its tag's low word (mod 2^32). */
export const TLB_DELTA = 12;
export const TLB_BYTES = TLB_SIZE * TLB_ENTRY_BYTES;

/**
 * Indirect-branch target cache (translated `jalr` targets), after the hart's TLBs: per hart
 * IBTC_SIZE entries of 16 bytes (four to a cache line) in sets of two: a pc's entry is at
 * ibcIndex(pc) (even) or the next (the same cache line). The dispatcher fills the first
 * way, moving what was there to the second. (Direct-mapped, ~30 pairs of a QD1 disk
 * read's ~1,000 targets shared a slot and evicted each other at every request: a birthday
 * collision each, and ~30 returns to the dispatcher a request.) An entry is i32s pc low
 * word, pc high word, JIT_CTX when filled, and the function-table index of the page
 * function with a block there in the low IBTC_FN_BITS with the entry's hits above them
 * (counted in steps of 1 << IBTC_FN_BITS, so they wrap to 0 every IBTC_HOT hits, which then
 * go to the dispatcher: Translator.hot()).
 */
export const IBTC_SIZE = 32768;
export const IBTC_WORDS = 4;
export const IBTC_BYTES = IBTC_SIZE * IBTC_WORDS * 4;
export const IBTC_FN_BITS = 20;
export const IBTC_FN_MASK = (1 << IBTC_FN_BITS) - 1;
/** One hart's TLBs and target cache (hart n's start at TLB_REGION + n * HART_MMU_BYTES). */
export const HART_MMU_BYTES = 12 * TLB_BYTES + IBTC_BYTES;
export const IBTC_HOT = 2 ** (32 - IBTC_FN_BITS);
/** Hart.ibcPages: which virtual pages have entries, by page number modulo this + 1. */
export const IBTC_PAGE_MASK = 4095;
/**
 * A page's Hart.ibcPages slot: its number's low bits, the high word's folded in, so the
 * kernel's text (0xffffffff8...) and a process's (0x1...) do not share slots: a shared slot
 * sent every fence of a user page through the scan of the target cache.
 */
export function ibcPageSlot(lo: number, hi: number): number { return ((lo >>> 12) ^ (hi >>> 20)) & IBTC_PAGE_MASK; }
/**
 * Hart.ibcPages' second half, from here, holds the pages of U-mode entries, which all die
 * with the U-mode epoch (a new address space): a process's code pages, faulted in and fenced
 * one by one by the next process at the same addresses, no longer send each fence through
 * the scan for entries that cannot match anyway.
 */
export const IBC_U_PAGES = IBTC_PAGE_MASK + 1;
/** An ibcPages slot with no page's entries, and one shared by several pages' (page numbers are finite). */
export const IBC_NO_PAGE = Infinity, IBC_PAGES = -Infinity;
/** The first way of a pc's set (its low word): offsets in a page, spread over pages. The second is ibcIndex + 1. */
export function ibcIndex(lo: number): number { return (((lo >>> 1) ^ (lo >>> 12)) & (IBTC_SIZE / 2 - 1)) << 1; }
