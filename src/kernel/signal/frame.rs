//! The x86_64 signal frame (`struct rt_sigframe`) the kernel builds on the
//! application stack before running a handler, and reads back in
//! `rt_sigreturn`.

use super::{SigInfo, SigSet, StackT};
use crate::platform::Regs;

/// `struct sigcontext` (x86_64), the saved registers.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)] // field names are the ABI's
pub struct SigContext {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub eflags: u64,
    pub cs: u16,
    pub gs: u16,
    pub fs: u16,
    pub ss: u16,
    pub err: u64,
    pub trapno: u64,
    pub oldmask: u64,
    pub cr2: u64,
    pub fpstate: u64,
    pub reserved1: [u64; 8],
}
static_assertions::assert_eq_size!(SigContext, [u8; 256]);
static_assertions::const_assert_eq!(std::mem::offset_of!(SigContext, rip), 128);
static_assertions::const_assert_eq!(std::mem::offset_of!(SigContext, fpstate), 184);

/// The kernel's `struct ucontext`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)] // field names are the ABI's
pub struct UContext {
    pub uc_flags: u64,
    pub uc_link: u64,
    pub uc_stack: StackT,
    pub uc_mcontext: SigContext,
    pub uc_sigmask: SigSet,
}
static_assertions::assert_eq_size!(UContext, [u8; 304]);
static_assertions::const_assert_eq!(std::mem::offset_of!(UContext, uc_mcontext), 40);
static_assertions::const_assert_eq!(std::mem::offset_of!(UContext, uc_sigmask), 296);

/// `struct rt_sigframe`: the return address (sa_restorer), the context and
/// the siginfo. The FP state follows separately, 64-byte aligned.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)] // field names are the ABI's
pub struct RtSigFrame {
    pub pretcode: u64,
    pub uc: UContext,
    pub info: SigInfo,
}
static_assertions::assert_eq_size!(RtSigFrame, [u8; 440]);
static_assertions::const_assert_eq!(std::mem::offset_of!(RtSigFrame, info), 312);

impl Default for RtSigFrame {
    fn default() -> Self {
        RtSigFrame {
            pretcode: 0,
            uc: UContext::default(),
            info: SigInfo([0; 128]),
        }
    }
}

/// uc_flags: the FP state is in XSAVE format.
pub const UC_FP_XSTATE: u64 = 1;
/// uc_flags: the saved SS is meaningful.
pub const UC_SIGCONTEXT_SS: u64 = 2;
/// uc_flags: restore SS strictly.
pub const UC_STRICT_RESTORE_SS: u64 = 4;
/// Magic in the fxsave sw_reserved area announcing an XSAVE frame.
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// Magic after the XSAVE area.
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

impl SigContext {
    /// Saves general registers.
    pub fn from_regs(r: &Regs) -> SigContext {
        SigContext {
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rdi: r.rdi,
            rsi: r.rsi,
            rbp: r.rbp,
            rbx: r.rbx,
            rdx: r.rdx,
            rax: r.rax,
            rcx: r.rcx,
            rsp: r.rsp,
            rip: r.rip,
            eflags: r.eflags,
            cs: r.cs as u16,
            gs: 0,
            fs: 0,
            ss: r.ss as u16,
            ..Default::default()
        }
    }

    /// Restores general registers (segment registers and fs/gs base are
    /// kept; flags limited to the user-changeable ones).
    pub fn to_regs(&self, r: &mut Regs) {
        r.r8 = self.r8;
        r.r9 = self.r9;
        r.r10 = self.r10;
        r.r11 = self.r11;
        r.r12 = self.r12;
        r.r13 = self.r13;
        r.r14 = self.r14;
        r.r15 = self.r15;
        r.rdi = self.rdi;
        r.rsi = self.rsi;
        r.rbp = self.rbp;
        r.rbx = self.rbx;
        r.rdx = self.rdx;
        r.rax = self.rax;
        r.rcx = self.rcx;
        r.rsp = self.rsp;
        r.rip = self.rip;
        const USER_FLAGS: u64 = 0x3f7fd5; // AC|OF|DF|TF|SF|ZF|AF|PF|CF|RF|ID...
        r.eflags = (r.eflags & !USER_FLAGS) | (self.eflags & USER_FLAGS);
        r.orig_rax = u64::MAX;
    }
}
