/** CSR numbers (privileged spec 1.12, chapter 2 "CSR Listing") and field masks used by the hart. */
export const CSR = {
  fflags: 0x001, frm: 0x002, fcsr: 0x003,
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, stimecmp: 0x14d,
  satp: 0x180,
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305,
  mcounteren: 0x306, menvcfg: 0x30a, mcountinhibit: 0x320,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  pmpcfg0: 0x3a0, pmpaddr0: 0x3b0,
  mcycle: 0xb00, minstret: 0xb02,
  cycle: 0xc00, time: 0xc01, instret: 0xc02,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
} as const;

/** mstatus fields (RV64: the upper word holds UXL/SXL, fixed to 2, and SD). */
export const MSTATUS = {
  SIE: 1 << 1, MIE: 1 << 3, SPIE: 1 << 5, UBE: 1 << 6, MPIE: 1 << 7, SPP: 1 << 8,
  VS: 3 << 9, MPP: 3 << 11, FS: 3 << 13, XS: 3 << 15, MPRV: 1 << 17, SUM: 1 << 18,
  MXR: 1 << 19, TVM: 1 << 20, TW: 1 << 21, TSR: 1 << 22,
} as const;
/** Bits of the low word of mstatus that software can change. */
export const MSTATUS_WMASK = MSTATUS.SIE | MSTATUS.MIE | MSTATUS.SPIE | MSTATUS.MPIE | MSTATUS.SPP |
  MSTATUS.MPP | MSTATUS.FS | MSTATUS.MPRV | MSTATUS.SUM | MSTATUS.MXR | MSTATUS.TVM | MSTATUS.TW | MSTATUS.TSR;
/** The sstatus view of mstatus (low word). */
export const SSTATUS_MASK = MSTATUS.SIE | MSTATUS.SPIE | MSTATUS.UBE | MSTATUS.SPP | MSTATUS.VS | MSTATUS.FS |
  MSTATUS.XS | MSTATUS.SUM | MSTATUS.MXR;

/** Interrupt bits of mip/mie. */
export const IRQ = { SSI: 1, MSI: 3, STI: 5, MTI: 7, SEI: 9, MEI: 11 } as const;
export const MIP_SSIP = 1 << IRQ.SSI, MIP_MSIP = 1 << IRQ.MSI, MIP_STIP = 1 << IRQ.STI, MIP_MTIP = 1 << IRQ.MTI;
export const MIP_SEIP = 1 << IRQ.SEI, MIP_MEIP = 1 << IRQ.MEI;
export const S_INTERRUPTS = MIP_SSIP | MIP_STIP | MIP_SEIP;
export const ALL_INTERRUPTS = S_INTERRUPTS | MIP_MSIP | MIP_MTIP | MIP_MEIP;
/** Interrupt priority order for delivery (privileged spec 3.1.9): MEI, MSI, MTI, SEI, SSI, STI. */
export const IRQ_PRIORITY = [IRQ.MEI, IRQ.MSI, IRQ.MTI, IRQ.SEI, IRQ.SSI, IRQ.STI] as const;

/** Exception causes (privileged spec table 3.6). */
export const CAUSE = {
  MISALIGNED_FETCH: 0, FETCH_ACCESS: 1, ILLEGAL_INSTRUCTION: 2, BREAKPOINT: 3,
  MISALIGNED_LOAD: 4, LOAD_ACCESS: 5, MISALIGNED_STORE: 6, STORE_ACCESS: 7,
  ECALL_U: 8, ECALL_S: 9, ECALL_M: 11, FETCH_PAGE_FAULT: 12, LOAD_PAGE_FAULT: 13, STORE_PAGE_FAULT: 15,
} as const;
/** Exceptions that medeleg can delegate (ecall from M cannot be delegated: medeleg[11] is read-only zero). */
export const MEDELEG_MASK = 0xb3ff;

/** Privilege levels. */
export const PRIV_U = 0, PRIV_S = 1, PRIV_M = 3;

/** misa: MXL=2 (64-bit) and the extensions I, M, A, F, D, C, S, U. */
export const MISA_VALUE = (2n << 62n) | BigInt(
  (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20));

/** satp MODE values (privileged spec 4.1.11). */
export const SATP_BARE = 0, SATP_SV39 = 8, SATP_SV48 = 9, SATP_SV57 = 10;
