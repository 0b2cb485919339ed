//! Pseudo-terminals: `/dev/ptmx` masters, `/dev/pts/N` slaves, the line
//! discipline between them, controlling terminals, job control, and the
//! console relay that gives a container (`process.terminal: true`) a
//! terminal backed by the host's.
//!
//! A pty is a pair of character devices sharing one [`LineDiscipline`]:
//! the *master* (`/dev/ptmx`, 5:2; every open makes a new pair) and the
//! *slave* (`/dev/pts/N`, 136:N). Bytes written to the master are the
//! terminal's input: the line discipline maps them (ICRNL, INLCR, IGNCR),
//! edits lines (ICANON: VERASE, VKILL, VWERASE, VLNEXT, VREPRINT, VEOF),
//! echoes them (ECHO, ECHOE, ECHOK, ECHOKE, ECHOCTL, ECHOPRT, ECHONL),
//! turns VINTR/VQUIT/VSUSP into SIGINT/SIGQUIT/SIGTSTP for the foreground
//! process group (ISIG) and handles flow control (IXON, IXANY), before the
//! slave reads them (canonically by line, or by VMIN/VTIME). Bytes the
//! slave writes are post-processed (OPOST: ONLCR, OCRNL, ONOCR, ONLRET,
//! OLCUC, XTABS) and read from the master. This follows Linux's
//! `drivers/tty/n_tty.c`, `tty_io.c`, `tty_jobctrl.c` and `pty.c`; the
//! comments name the Linux function where behaviour is subtle.
//!
//! Buffers are bounded as in Linux: the slave's read buffer holds 4096
//! bytes (a canonical line at most 4095 characters and its terminator;
//! further characters overwrite the last one, as n_tty does), and the
//! master's unprocessed input and the slave's pending output hold 64 KiB
//! each; a writer that finds them full gets EAGAIN (and blocks on the
//! pty's wait queue unless non-blocking).
//!
//! **Hangup** (matching Linux): when the master closes, the slave is hung
//! up — a read waiting for input fails with EIO, later reads return 0
//! (end of file), writes and most ioctls fail with EIO,
//! poll reports `IN|OUT|ERR|HUP`, its session leader gets SIGHUP and
//! SIGCONT and the session loses it as controlling terminal; `/dev/pts/N`
//! disappears. When the last slave closes, master reads return what is
//! buffered, then EIO, and poll reports HUP (until a slave opens again).
//!
//! **Controlling terminals** are kept on the tty, by session id: the
//! pty's `session` is the session whose controlling terminal it is (with
//! its foreground process group), valid while the session leader lives.
//! A session leader acquires it by opening the slave without `O_NOCTTY`
//! or with TIOCSCTTY; `/dev/tty` opens the caller's controlling terminal
//! (ENXIO without one). Limits of tracking it per session rather than per
//! process: TIOCNOTTY by a process that is not the session leader does not
//! detach just that process, and a session leader's exit does not send
//! SIGHUP to the foreground group (the association is dropped lazily).
//!
//! **Job control**: reading the controlling terminal from a background
//! process group sends SIGTTIN to the group (EIO when SIGTTIN is ignored
//! or blocked, or the group is orphaned), as does writing with TOSTOP and
//! changing the terminal (TCSETS*, TIOCSPGRP, TCFLSH, ...) with SIGTTOU
//! (allowed when SIGTTOU is ignored or blocked). The kernel does not stop
//! thread groups yet, so while a group's SIGTTIN/SIGTTOU action is the
//! default (stop) the access is allowed instead of looping on a signal
//! that cannot stop it; see [`GROUP_STOP_SUPPORTED`].
//!
//! Not implemented: packet mode (TIOCPKT with a non-zero argument is
//! EINVAL), TIOCVHANGUP, exclusive mode (TIOCEXCL is accepted and has no
//! effect), VDISCARD, and the per-character inter-byte timer of VMIN>0,
//! VTIME>0 reads (the timer starts when a read first finds fewer than
//! VMIN bytes).

use super::Kernel;
use super::events::current_tid;
use super::fs::file::{FileOps, IoctlCtx, OpenFile, PollEvents, Stat};
use super::fs::vfs::{Timestamp, alloc_dev, now};
use super::signal::{self, SigInfo};
use super::task::{Task, TgState, lock};
use super::wait::WaitQueue;
use crate::errno::{Errno, KResult};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Size of the slave's read buffer (Linux `N_TTY_BUF_SIZE`).
pub const N_TTY_BUF_SIZE: usize = 4096;
/// Bound of the master's unprocessed input and of the slave's output.
pub const QUEUE_SIZE: usize = 65536;
/// Most ptys a kernel hands out at once (Linux `kernel.pty.max` default).
pub const MAX_PTYS: u32 = 4096;
/// Major number of `/dev/ptmx` and `/dev/tty` (`TTYAUX_MAJOR`).
pub const TTYAUX_MAJOR: u32 = 5;
/// Minor number of `/dev/ptmx`.
pub const PTMX_MINOR: u32 = 2;
/// Major number of `/dev/pts/N` (`UNIX98_PTY_SLAVE_MAJOR`).
pub const PTS_MAJOR: u32 = 136;
/// Group owning `/dev/pts/N` (the `tty` group), as container runtimes
/// mount devpts (`gid=5,mode=620`).
pub const TTY_GID: u32 = 5;

/// Whether the kernel stops thread groups on SIGTSTP/SIGTTIN/SIGTTOU. It
/// does not yet: the signal code treats a stop signal's default action as
/// "ignore". Job control then lets a background process whose
/// SIGTTIN/SIGTTOU action is the default read or write the terminal
/// instead of sending it a signal that cannot stop it and restarting the
/// call forever. Flip this when group stop lands.
pub const GROUP_STOP_SUPPORTED: bool = false;

/// Number of control characters in the kernel's termios (`NCCS`).
pub const NCCS: usize = 19;

/// The default control characters (Linux `INIT_C_CC`): ^C ^\ ^? ^U ^D,
/// VTIME 0, VMIN 1, VSWTC 0, ^Q ^S ^Z, VEOL 0, ^R ^O ^W ^V, VEOL2 0.
const INIT_C_CC: [u8; NCCS] = [
    3, 0x1c, 0x7f, 0x15, 4, 0, 1, 0, 0x11, 0x13, 0x1a, 0, 0x12, 0x0f, 0x17, 0x16, 0, 0, 0,
];

// ioctl request numbers (x86_64, include/uapi/asm-generic/ioctls.h).
const TCGETS: u32 = 0x5401;
const TCSETS: u32 = 0x5402;
const TCSETSW: u32 = 0x5403;
const TCSETSF: u32 = 0x5404;
const TCSBRK: u32 = 0x5409;
const TCXONC: u32 = 0x540A;
const TCFLSH: u32 = 0x540B;
const TIOCEXCL: u32 = 0x540C;
const TIOCNXCL: u32 = 0x540D;
const TIOCSCTTY: u32 = 0x540E;
const TIOCGPGRP: u32 = 0x540F;
const TIOCSPGRP: u32 = 0x5410;
const TIOCOUTQ: u32 = 0x5411;
const TIOCSTI: u32 = 0x5412;
const TIOCGWINSZ: u32 = 0x5413;
const TIOCSWINSZ: u32 = 0x5414;
const FIONREAD: u32 = 0x541B;
const TIOCPKT: u32 = 0x5420;
const TIOCNOTTY: u32 = 0x5422;
const TIOCSETD: u32 = 0x5423;
const TIOCGETD: u32 = 0x5424;
const TCSBRKP: u32 = 0x5425;
const TIOCSBRK: u32 = 0x5427;
const TIOCCBRK: u32 = 0x5428;
const TIOCGSID: u32 = 0x5429;
const TCGETS2: u32 = 0x802C_542A;
const TCSETS2: u32 = 0x402C_542B;
const TCSETSW2: u32 = 0x402C_542C;
const TCSETSF2: u32 = 0x402C_542D;
const TIOCGPTN: u32 = 0x8004_5430;
const TIOCSPTLCK: u32 = 0x4004_5431;
const TIOCSIG: u32 = 0x4004_5436;
const TIOCGPKT: u32 = 0x8004_5438;
const TIOCGPTLCK: u32 = 0x8004_5439;
const TIOCGEXCL: u32 = 0x8004_5440;
const TIOCGPTPEER: u32 = 0x5441;
const TIOCGLCKTRMIOS: u32 = 0x5456;
const TIOCSLCKTRMIOS: u32 = 0x5457;

// TCFLSH / TCXONC arguments.
const TCIFLUSH: u64 = 0;
const TCOFLUSH: u64 = 1;
const TCIOFLUSH: u64 = 2;
const TCOOFF: u64 = 0;
const TCOON: u64 = 1;
const TCIOFF: u64 = 2;
const TCION: u64 = 3;

// ---- ABI structures ----

/// The kernel's `struct termios` (TCGETS/TCSETS*), not glibc's 60-byte
/// one: glibc converts.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // field names are the ABI's
pub struct Termios {
    pub c_iflag: u32,
    pub c_oflag: u32,
    pub c_cflag: u32,
    pub c_lflag: u32,
    pub c_line: u8,
    pub c_cc: [u8; NCCS],
}
static_assertions::assert_eq_size!(Termios, [u8; 36]);
static_assertions::const_assert_eq!(std::mem::offset_of!(Termios, c_lflag), 12);
static_assertions::const_assert_eq!(std::mem::offset_of!(Termios, c_line), 16);
static_assertions::const_assert_eq!(std::mem::offset_of!(Termios, c_cc), 17);

/// The kernel's `struct termios2` (TCGETS2/TCSETS2*): `termios` plus the
/// input and output speeds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termios2 {
    /// The `struct termios` part.
    pub base: Termios,
    /// Input speed (baud).
    pub c_ispeed: u32,
    /// Output speed (baud).
    pub c_ospeed: u32,
}
static_assertions::assert_eq_size!(Termios2, [u8; 44]);
static_assertions::const_assert_eq!(std::mem::offset_of!(Termios2, c_ispeed), 36);
static_assertions::const_assert_eq!(std::mem::offset_of!(Termios2, c_ospeed), 40);

/// `struct winsize` (TIOCGWINSZ/TIOCSWINSZ).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // field names are the ABI's
pub struct WinSize {
    pub ws_row: u16,
    pub ws_col: u16,
    pub ws_xpixel: u16,
    pub ws_ypixel: u16,
}
static_assertions::assert_eq_size!(WinSize, [u8; 8]);
static_assertions::const_assert_eq!(std::mem::offset_of!(WinSize, ws_col), 2);

impl WinSize {
    /// The bytes the application sees.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        for (i, v) in [self.ws_row, self.ws_col, self.ws_xpixel, self.ws_ypixel]
            .iter()
            .enumerate()
        {
            b[2 * i..2 * i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// From the application's bytes.
    pub fn from_bytes(b: &[u8; 8]) -> WinSize {
        let f = |i: usize| u16::from_ne_bytes([b[2 * i], b[2 * i + 1]]);
        WinSize {
            ws_row: f(0),
            ws_col: f(1),
            ws_xpixel: f(2),
            ws_ypixel: f(3),
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(w)
}

/// Baud rates by `CBAUD` code (`tty_termios_baud_rate`): codes 0-15, then
/// `CBAUDEX` codes 1-15.
const BAUD_TABLE: [u32; 31] = [
    0, 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600,
    115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000,
    3000000, 3500000, 4000000,
];

/// The speed a `CBAUD` field encodes (None for `BOTHER`/invalid codes).
fn baud_of(code: u32) -> Option<u32> {
    let code = code & (libc::CBAUD | libc::CBAUDEX);
    let idx = if code & libc::CBAUDEX != 0 {
        let low = code & !libc::CBAUDEX;
        if low == 0 {
            return None;
        }
        15 + low as usize
    } else {
        code as usize
    };
    BAUD_TABLE.get(idx).copied()
}

impl Termios {
    /// The bytes the application sees.
    pub fn to_bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[0..4].copy_from_slice(&self.c_iflag.to_ne_bytes());
        b[4..8].copy_from_slice(&self.c_oflag.to_ne_bytes());
        b[8..12].copy_from_slice(&self.c_cflag.to_ne_bytes());
        b[12..16].copy_from_slice(&self.c_lflag.to_ne_bytes());
        b[16] = self.c_line;
        b[17..36].copy_from_slice(&self.c_cc);
        b
    }

    /// From the application's bytes.
    pub fn from_bytes(b: &[u8; 36]) -> Termios {
        let mut c_cc = [0u8; NCCS];
        c_cc.copy_from_slice(&b[17..36]);
        Termios {
            c_iflag: u32_at(b, 0),
            c_oflag: u32_at(b, 4),
            c_cflag: u32_at(b, 8),
            c_lflag: u32_at(b, 12),
            c_line: b[16],
            c_cc,
        }
    }
}

impl Default for Termios2 {
    /// A new pty slave's settings (`tty_std_termios` with the pty's
    /// `B38400 | CS8 | CREAD`).
    fn default() -> Termios2 {
        Termios2 {
            base: Termios {
                c_iflag: libc::ICRNL | libc::IXON,
                c_oflag: libc::OPOST | libc::ONLCR,
                c_cflag: libc::B38400 | libc::CS8 | libc::CREAD,
                c_lflag: libc::ISIG
                    | libc::ICANON
                    | libc::ECHO
                    | libc::ECHOE
                    | libc::ECHOK
                    | libc::ECHOCTL
                    | libc::ECHOKE
                    | libc::IEXTEN,
                c_line: 0,
                c_cc: INIT_C_CC,
            },
            c_ispeed: 38400,
            c_ospeed: 38400,
        }
    }
}

impl Termios2 {
    /// The bytes the application sees.
    pub fn to_bytes(&self) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[..36].copy_from_slice(&self.base.to_bytes());
        b[36..40].copy_from_slice(&self.c_ispeed.to_ne_bytes());
        b[40..44].copy_from_slice(&self.c_ospeed.to_ne_bytes());
        b
    }

    /// From a `struct termios` (TCSETS*): the speeds follow the `CBAUD`
    /// and `CIBAUD` fields (`set_termios`), keeping `old`'s where the
    /// field says `BOTHER`.
    pub fn from_termios(t: Termios, old: &Termios2) -> Termios2 {
        let ospeed = baud_of(t.c_cflag).unwrap_or(old.c_ospeed);
        let ibits = (t.c_cflag & libc::CIBAUD) >> 16;
        let ispeed = if ibits == 0 {
            ospeed
        } else {
            baud_of(ibits).unwrap_or(old.c_ispeed)
        };
        Termios2 {
            base: t,
            c_ispeed: ispeed,
            c_ospeed: ospeed,
        }
    }

    /// From the application's `struct termios2` bytes (TCSETS2*): given
    /// speeds are used with `BOTHER`, else the `CBAUD` field decides.
    pub fn from_bytes(b: &[u8; 44]) -> Termios2 {
        let mut base = [0u8; 36];
        base.copy_from_slice(&b[..36]);
        let base = Termios::from_bytes(&base);
        let (ispeed, ospeed) = (u32_at(b, 36), u32_at(b, 40));
        let ospeed = baud_of(base.c_cflag).unwrap_or(ospeed);
        let ibits = (base.c_cflag & libc::CIBAUD) >> 16;
        let ispeed = if ibits == 0 {
            if ispeed == 0 { ospeed } else { ispeed }
        } else {
            baud_of(ibits).unwrap_or(ispeed)
        };
        Termios2 {
            base,
            c_ispeed: ispeed,
            c_ospeed: ospeed,
        }
    }
}

// ---- the line discipline ----

/// `iscntrl` as the kernel's ctype table has it (0-31, 127 and 128-159).
fn iscntrl(c: u8) -> bool {
    c < 32 || c == 127 || (128..160).contains(&c)
}

/// `isalnum` as the kernel's ctype table has it (ASCII and Latin-1
/// letters).
fn isalnum(c: u8) -> bool {
    c.is_ascii_alphanumeric() || (c >= 192 && c != 215 && c != 247)
}

/// One complete line in canonical mode.
#[derive(Debug, Clone, Copy)]
struct Line {
    /// Bytes of it still unread.
    len: usize,
    /// Ended by VEOF (which is not stored but takes a byte of room, as
    /// Linux stores it as a disabled character).
    eof: bool,
}

/// The VTIME timer of a non-canonical read.
#[derive(Debug, Default, Clone, Copy)]
struct VTimer {
    deadline: Option<Instant>,
    expired: bool,
    /// A deadline armed but not yet handed to a timer thread.
    request: Option<Instant>,
}

/// The terminal line discipline between a master and its slave (Linux's
/// n_tty): input processing, line editing, echo, signals, output
/// processing and the queues. Pure state: it never blocks and sends no
/// signals itself; signals to send are appended to a caller's list.
#[derive(Debug)]
pub struct LineDiscipline {
    termios: Termios2,
    /// Input written by the master, not processed yet (the flip buffer).
    raw: VecDeque<u8>,
    /// Processed input: complete lines, then the line being edited.
    buf: VecDeque<u8>,
    /// Canonical mode: complete lines at the front of `buf`.
    lines: VecDeque<Line>,
    /// Bytes of `buf` in complete lines (canonical mode).
    committed: usize,
    /// Lines in `lines` ended by VEOF.
    markers: usize,
    /// The next character is literal (VLNEXT).
    lnext: bool,
    /// ECHOPRT erase in progress.
    erasing: bool,
    /// Output column (for tabs and ONOCR).
    column: usize,
    /// Column where the line being edited started.
    canon_column: usize,
    /// Output toward the master.
    out: VecDeque<u8>,
    /// Echoes produced while output is stopped.
    held: Vec<u8>,
    /// Output stopped (IXON VSTOP, TCOOFF).
    stopped: bool,
    /// Bytes a blocked non-canonical reader waits for (0: none).
    reader_need: usize,
    vtime: VTimer,
}

impl Default for LineDiscipline {
    fn default() -> LineDiscipline {
        LineDiscipline::new()
    }
}

impl LineDiscipline {
    /// A line discipline with a new slave's settings.
    pub fn new() -> LineDiscipline {
        LineDiscipline {
            termios: Termios2::default(),
            raw: VecDeque::new(),
            buf: VecDeque::new(),
            lines: VecDeque::new(),
            committed: 0,
            markers: 0,
            lnext: false,
            erasing: false,
            column: 0,
            canon_column: 0,
            out: VecDeque::new(),
            held: Vec::new(),
            stopped: false,
            reader_need: 0,
            vtime: VTimer::default(),
        }
    }

    /// The current settings.
    pub fn termios(&self) -> Termios2 {
        self.termios
    }

    fn iflag(&self, f: u32) -> bool {
        self.termios.base.c_iflag & f != 0
    }
    fn oflag(&self, f: u32) -> bool {
        self.termios.base.c_oflag & f != 0
    }
    fn lflag(&self, f: u32) -> bool {
        self.termios.base.c_lflag & f != 0
    }
    fn cc(&self, i: usize) -> u8 {
        self.termios.base.c_cc[i]
    }
    fn icanon(&self) -> bool {
        self.lflag(libc::ICANON)
    }
    fn is_continuation(&self, c: u8) -> bool {
        self.iflag(libc::IUTF8) && c & 0xc0 == 0x80
    }

    /// Changes the settings (`n_tty_set_termios`, `pty_set_termios`).
    /// Returns signals to send to the foreground process group.
    pub fn set_termios(&mut self, mut t: Termios2, sigs: &mut Vec<i32>) {
        // pty_set_termios: a pty is always 8 bits, no parity, readable.
        t.base.c_cflag = (t.base.c_cflag & !(libc::CSIZE | libc::PARENB)) | libc::CS8 | libc::CREAD;
        let old = self.termios;
        self.termios = t;
        if (old.base.c_lflag ^ t.base.c_lflag) & (libc::ICANON | libc::EXTPROC) != 0 {
            self.lines.clear();
            self.markers = 0;
            if self.icanon() && !self.buf.is_empty() {
                // Pending input becomes a line of its own ("push").
                self.lines.push_back(Line {
                    len: self.buf.len(),
                    eof: false,
                });
                self.committed = self.buf.len();
            } else {
                self.committed = 0;
            }
            self.erasing = false;
            self.lnext = false;
        }
        if old.base.c_cc[libc::VMIN] != t.base.c_cc[libc::VMIN]
            || old.base.c_cc[libc::VTIME] != t.base.c_cc[libc::VTIME]
            || self.icanon()
        {
            self.vtime = VTimer::default();
            self.reader_need = 0;
        }
        if !self.iflag(libc::IXON) && old.base.c_iflag & libc::IXON != 0 && self.stopped {
            self.start();
        }
        self.process(sigs);
    }

    // ---- input ----

    /// Takes input written to the master (up to the free room of the
    /// 64 KiB queue) and processes what fits the read buffer. Returns how
    /// many bytes were taken (0: the queue is full).
    pub fn master_write(&mut self, data: &[u8], sigs: &mut Vec<i32>) -> usize {
        let n = (QUEUE_SIZE - self.raw.len().min(QUEUE_SIZE)).min(data.len());
        self.raw.extend(&data[..n]);
        self.process(sigs);
        n
    }

    /// Whether the master can take input now.
    pub fn master_writable(&self) -> bool {
        self.raw.len() < QUEUE_SIZE
    }

    /// Processes queued input while the read buffer has room
    /// (`n_tty_receive_buf_common`).
    fn process(&mut self, sigs: &mut Vec<i32>) {
        while let Some(&c) = self.raw.front() {
            let used = self.buf.len() + self.markers;
            if used >= N_TTY_BUF_SIZE - 1 {
                // Full. A canonical line that is not complete keeps taking
                // characters, each replacing the last, so that it can
                // still be ended or edited; otherwise wait for a reader.
                if !(self.icanon() && self.lines.is_empty()) {
                    break;
                }
                if used >= N_TTY_BUF_SIZE {
                    self.buf.pop_back();
                }
            }
            self.raw.pop_front();
            self.receive(c, sigs);
        }
    }

    fn strip(&self, mut c: u8) -> u8 {
        if self.iflag(libc::ISTRIP) {
            c &= 0x7f;
        }
        if self.iflag(libc::IUCLC) && self.lflag(libc::IEXTEN) {
            c = c.to_ascii_lowercase();
        }
        c
    }

    fn receive(&mut self, c: u8, sigs: &mut Vec<i32>) {
        if self.lnext {
            // n_tty_receive_char_lnext
            self.lnext = false;
            let c = self.strip(c);
            self.receive_normal(c);
            return;
        }
        let c = self.strip(c);
        if self.lflag(libc::EXTPROC) {
            self.put(c);
            return;
        }
        if self.is_special(c) {
            self.receive_special(c, sigs);
        } else {
            self.receive_normal(c);
        }
    }

    /// Whether `c` is in n_tty's `char_map` (NUL, the disabled character,
    /// never is).
    fn is_special(&self, c: u8) -> bool {
        if c == 0 {
            return false;
        }
        let cc = |i| self.cc(i);
        (c == b'\r' && self.iflag(libc::IGNCR | libc::ICRNL))
            || (c == b'\n' && self.iflag(libc::INLCR))
            || (self.icanon()
                && (c == cc(libc::VERASE)
                    || c == cc(libc::VKILL)
                    || c == cc(libc::VEOF)
                    || c == b'\n'
                    || c == cc(libc::VEOL)
                    || (self.lflag(libc::IEXTEN)
                        && (c == cc(libc::VWERASE)
                            || c == cc(libc::VLNEXT)
                            || c == cc(libc::VEOL2)
                            || (self.lflag(libc::ECHO) && c == cc(libc::VREPRINT))))))
            || (self.iflag(libc::IXON) && (c == cc(libc::VSTART) || c == cc(libc::VSTOP)))
            || (self.lflag(libc::ISIG)
                && (c == cc(libc::VINTR) || c == cc(libc::VQUIT) || c == cc(libc::VSUSP)))
    }

    /// `n_tty_receive_char`.
    fn receive_normal(&mut self, c: u8) {
        if self.stopped && self.iflag(libc::IXON) && self.iflag(libc::IXANY) {
            self.start();
        }
        if self.lflag(libc::ECHO) {
            self.finish_erasing();
            if self.buf.len() == self.committed {
                self.canon_column = self.column;
            }
            self.echo_char(c);
        }
        if c == 0xff && self.iflag(libc::PARMRK) {
            self.put(c);
        }
        self.put(c);
    }

    /// `n_tty_receive_char_special`.
    fn receive_special(&mut self, mut c: u8, sigs: &mut Vec<i32>) {
        if self.iflag(libc::IXON) && (c == self.cc(libc::VSTART) || c == self.cc(libc::VSTOP)) {
            if c == self.cc(libc::VSTART) {
                self.start();
            } else {
                self.stopped = true;
            }
            return;
        }
        if self.lflag(libc::ISIG) {
            for (i, sig) in [
                (libc::VINTR, libc::SIGINT),
                (libc::VQUIT, libc::SIGQUIT),
                (libc::VSUSP, libc::SIGTSTP),
            ] {
                if c == self.cc(i) {
                    self.receive_signal_char(sig, c, sigs);
                    return;
                }
            }
        }
        if self.stopped && self.iflag(libc::IXON) && self.iflag(libc::IXANY) {
            self.start();
        }
        if c == b'\r' {
            if self.iflag(libc::IGNCR) {
                return;
            }
            if self.iflag(libc::ICRNL) {
                c = b'\n';
            }
        } else if c == b'\n' && self.iflag(libc::INLCR) {
            c = b'\r';
        }
        if self.icanon() {
            let iexten = self.lflag(libc::IEXTEN);
            if c == self.cc(libc::VERASE)
                || c == self.cc(libc::VKILL)
                || (c == self.cc(libc::VWERASE) && iexten)
            {
                self.eraser(c);
                return;
            }
            if c == self.cc(libc::VLNEXT) && iexten {
                self.lnext = true;
                if self.lflag(libc::ECHO) {
                    self.finish_erasing();
                    if self.lflag(libc::ECHOCTL) {
                        self.echo_raw(b'^');
                        self.echo_raw(b'\x08');
                    }
                }
                return;
            }
            if c == self.cc(libc::VREPRINT) && self.lflag(libc::ECHO) && iexten {
                self.finish_erasing();
                self.echo_char(c);
                self.echo_raw(b'\n');
                let line: Vec<u8> = self.buf.range(self.committed..).copied().collect();
                for b in line {
                    self.echo_char(b);
                }
                return;
            }
            if c == b'\n' {
                if self.lflag(libc::ECHO) || self.lflag(libc::ECHONL) {
                    self.echo_raw(b'\n');
                }
                self.end_line(Some(c));
                return;
            }
            if c == self.cc(libc::VEOF) {
                self.end_line(None);
                return;
            }
            if c == self.cc(libc::VEOL) || (c == self.cc(libc::VEOL2) && iexten) {
                if self.lflag(libc::ECHO) {
                    if self.buf.len() == self.committed {
                        self.canon_column = self.column;
                    }
                    self.echo_char(c);
                }
                if c == 0xff && self.iflag(libc::PARMRK) {
                    self.put(c);
                }
                self.end_line(Some(c));
                return;
            }
        }
        if self.lflag(libc::ECHO) {
            self.finish_erasing();
            if c == b'\n' {
                self.echo_raw(b'\n');
            } else {
                if self.buf.len() == self.committed {
                    self.canon_column = self.column;
                }
                self.echo_char(c);
            }
        }
        if c == 0xff && self.iflag(libc::PARMRK) {
            self.put(c);
        }
        self.put(c);
    }

    /// `n_tty_receive_signal_char` and `isig`.
    fn receive_signal_char(&mut self, sig: i32, c: u8, sigs: &mut Vec<i32>) {
        sigs.push(sig);
        if !self.lflag(libc::NOFLSH) {
            self.held.clear();
            self.reset_input();
        }
        if self.iflag(libc::IXON) {
            self.start();
        }
        if self.lflag(libc::ECHO) {
            self.echo_char(c);
        }
    }

    fn put(&mut self, c: u8) {
        self.buf.push_back(c);
    }

    /// Completes the line being edited, with its terminator (None: VEOF).
    fn end_line(&mut self, term: Option<u8>) {
        if let Some(t) = term {
            self.buf.push_back(t);
        } else {
            self.markers += 1;
        }
        self.lines.push_back(Line {
            len: self.buf.len() - self.committed,
            eof: term.is_none(),
        });
        self.committed = self.buf.len();
    }

    /// `reset_buffer_flags`: drops processed input.
    fn reset_input(&mut self) {
        self.buf.clear();
        self.lines.clear();
        self.committed = 0;
        self.markers = 0;
        self.erasing = false;
        self.lnext = false;
    }

    /// `eraser`: VERASE, VWERASE and VKILL.
    fn eraser(&mut self, c: u8) {
        #[derive(PartialEq)]
        enum Kind {
            Erase,
            Werase,
            Kill,
        }
        if self.buf.len() == self.committed {
            return;
        }
        let kind = if c == self.cc(libc::VERASE) {
            Kind::Erase
        } else if c == self.cc(libc::VWERASE) {
            Kind::Werase
        } else {
            if !self.lflag(libc::ECHO) {
                self.buf.truncate(self.committed);
                return;
            }
            if !self.lflag(libc::ECHOK) || !self.lflag(libc::ECHOKE) || !self.lflag(libc::ECHOE) {
                self.buf.truncate(self.committed);
                self.finish_erasing();
                self.echo_char(self.cc(libc::VKILL));
                if self.lflag(libc::ECHOK) {
                    self.echo_raw(b'\n');
                }
                return;
            }
            Kind::Kill
        };
        let mut seen_alnums = 0;
        while self.buf.len() > self.committed {
            let end = self.buf.len();
            let mut head = end;
            let mut ch;
            loop {
                head -= 1;
                ch = self.buf[head];
                if !(self.is_continuation(ch) && head > self.committed) {
                    break;
                }
            }
            // Do not erase part of a multi-byte character.
            if self.is_continuation(ch) {
                break;
            }
            if kind == Kind::Werase {
                if isalnum(ch) || ch == b'_' {
                    seen_alnums += 1;
                } else if seen_alnums > 0 {
                    break;
                }
            }
            let erased: Vec<u8> = self.buf.range(head..end).copied().collect();
            self.buf.truncate(head);
            if self.lflag(libc::ECHO) {
                if self.lflag(libc::ECHOPRT) {
                    if !self.erasing {
                        self.echo_raw(b'\\');
                        self.erasing = true;
                    }
                    self.echo_char(ch);
                    for &b in &erased[1..] {
                        self.echo_raw(b);
                        self.column = self.column.saturating_sub(1);
                    }
                } else if kind == Kind::Erase && !self.lflag(libc::ECHOE) {
                    self.echo_char(self.cc(libc::VERASE));
                } else if ch == b'\t' {
                    let mut num_chars = 0usize;
                    let mut after_tab = false;
                    let mut tail = self.buf.len();
                    while tail > self.committed {
                        tail -= 1;
                        let b = self.buf[tail];
                        if b == b'\t' {
                            after_tab = true;
                            break;
                        } else if iscntrl(b) {
                            if self.lflag(libc::ECHOCTL) {
                                num_chars += 2;
                            }
                        } else if !self.is_continuation(b) {
                            num_chars += 1;
                        }
                    }
                    self.echo_erase_tab(num_chars, after_tab);
                } else {
                    if iscntrl(ch) && self.lflag(libc::ECHOCTL) {
                        self.echo_str(b"\x08 \x08");
                    }
                    if !iscntrl(ch) || self.lflag(libc::ECHOCTL) {
                        self.echo_str(b"\x08 \x08");
                    }
                }
            }
            if kind == Kind::Erase {
                break;
            }
        }
        if self.buf.len() == self.committed && self.lflag(libc::ECHO) {
            self.finish_erasing();
        }
    }

    // ---- echo and output ----

    /// Room for output now (echoes while stopped go to `held`).
    fn room(&self, echo: bool) -> usize {
        if echo && self.stopped {
            N_TTY_BUF_SIZE.saturating_sub(self.held.len())
        } else {
            QUEUE_SIZE.saturating_sub(self.out.len())
        }
    }

    /// Queues output bytes if they all fit; echoes that do not are lost.
    fn emit(&mut self, bytes: &[u8], echo: bool) -> bool {
        if self.room(echo) < bytes.len() {
            return false;
        }
        if echo && self.stopped {
            self.held.extend_from_slice(bytes);
        } else {
            self.out.extend(bytes);
        }
        true
    }

    /// `do_output_char`: one byte with OPOST processing. False when there
    /// is no room for it (nothing changes then).
    fn output_char(&mut self, c: u8, echo: bool) -> bool {
        let room = self.room(echo);
        if room == 0 {
            return false;
        }
        let mut c = c;
        match c {
            b'\n' => {
                if self.oflag(libc::ONLCR) {
                    if room < 2 {
                        return false;
                    }
                    self.canon_column = 0;
                    self.column = 0;
                    return self.emit(b"\r\n", echo);
                }
                if self.oflag(libc::ONLRET) {
                    self.column = 0;
                }
                self.canon_column = self.column;
            }
            b'\r' => {
                if self.oflag(libc::ONOCR) && self.column == 0 {
                    return true;
                }
                if self.oflag(libc::OCRNL) {
                    c = b'\n';
                    if self.oflag(libc::ONLRET) {
                        self.canon_column = 0;
                        self.column = 0;
                    }
                } else {
                    self.canon_column = 0;
                    self.column = 0;
                }
            }
            b'\t' => {
                let spaces = 8 - (self.column & 7);
                if self.termios.base.c_oflag & libc::TABDLY == libc::XTABS {
                    if room < spaces {
                        return false;
                    }
                    self.column += spaces;
                    return self.emit(&b"        "[..spaces], echo);
                }
                self.column += spaces;
            }
            0x08 => self.column = self.column.saturating_sub(1),
            _ => {
                if !iscntrl(c) {
                    if self.oflag(libc::OLCUC) {
                        c = c.to_ascii_uppercase();
                    }
                    if !self.is_continuation(c) {
                        self.column += 1;
                    }
                }
            }
        }
        self.emit(&[c], echo)
    }

    /// `echo_char_raw`: a byte echoed through output processing.
    fn echo_raw(&mut self, c: u8) {
        if self.oflag(libc::OPOST) {
            self.output_char(c, true);
        } else {
            self.emit(&[c], true);
        }
    }

    fn echo_str(&mut self, s: &[u8]) {
        for &c in s {
            self.echo_raw(c);
        }
    }

    /// `echo_char`: control characters as `^X` with ECHOCTL.
    fn echo_char(&mut self, c: u8) {
        if c == 0xff {
            if self.emit(&[0xff], true) {
                self.column += 1;
            }
        } else if self.lflag(libc::ECHOCTL) && iscntrl(c) && c != b'\t' {
            if self.emit(&[b'^', c ^ 0o100], true) {
                self.column += 2;
            }
        } else {
            self.echo_raw(c);
        }
    }

    fn finish_erasing(&mut self) {
        if self.erasing {
            self.echo_raw(b'/');
            self.erasing = false;
        }
    }

    /// Backspaces over an erased tab (`ECHO_OP_ERASE_TAB`).
    fn echo_erase_tab(&mut self, num_chars: usize, after_tab: bool) {
        let n = if after_tab {
            num_chars
        } else {
            num_chars + self.canon_column
        };
        let num_bs = (8 - (n & 7)).min(self.column);
        for _ in 0..num_bs {
            if self.emit(b"\x08", true) {
                self.column = self.column.saturating_sub(1);
            }
        }
    }

    fn start(&mut self) {
        self.stopped = false;
        let held = std::mem::take(&mut self.held);
        let fit = held.len().min(QUEUE_SIZE.saturating_sub(self.out.len()));
        self.out.extend(&held[..fit]);
    }

    /// Stops output (TCOOFF), as VSTOP does.
    pub fn stop_output(&mut self) {
        self.stopped = true;
    }

    /// Restarts output (TCOON), as VSTART does.
    pub fn start_output(&mut self) {
        self.start();
    }

    /// Writes the slave's output: OPOST processing into the 64 KiB output
    /// queue. EAGAIN when nothing fits or output is stopped.
    pub fn slave_write(&mut self, data: &[u8]) -> KResult<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.stopped {
            return Err(Errno::EAGAIN);
        }
        let n = if self.oflag(libc::OPOST) {
            let mut n = 0;
            for &c in data {
                if !self.output_char(c, false) {
                    break;
                }
                n += 1;
            }
            n
        } else {
            let n = data.len().min(QUEUE_SIZE.saturating_sub(self.out.len()));
            self.out.extend(&data[..n]);
            n
        };
        if n == 0 { Err(Errno::EAGAIN) } else { Ok(n) }
    }

    /// Whether the slave can write now (room for any one character).
    pub fn slave_writable(&self) -> bool {
        !self.stopped && QUEUE_SIZE.saturating_sub(self.out.len()) >= 8
    }

    /// Takes the slave's output for the master; 0 when there is none.
    pub fn master_read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.out.len());
        for (d, s) in buf.iter_mut().zip(self.out.drain(..n)) {
            *d = s;
        }
        n
    }

    /// Output bytes waiting for the master.
    pub fn master_readable(&self) -> usize {
        self.out.len()
    }

    // ---- the slave's reads ----

    /// Reads input for the slave: a line in canonical mode (0 at VEOF on
    /// an empty line), else by VMIN/VTIME (`n_tty_read`). EAGAIN when the
    /// caller must wait; after EAGAIN, [`take_timer_request`] says
    /// whether a VTIME timer must be started.
    ///
    /// [`take_timer_request`]: LineDiscipline::take_timer_request
    pub fn slave_read(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        sigs: &mut Vec<i32>,
    ) -> KResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let r = if self.icanon() {
            self.read_canon(buf)
        } else {
            self.read_raw(buf, now)
        };
        if r.is_ok() {
            self.reader_need = 0;
            self.vtime = VTimer::default();
            self.process(sigs);
        }
        r
    }

    fn read_canon(&mut self, buf: &mut [u8]) -> KResult<usize> {
        let Some(line) = self.lines.front_mut() else {
            return Err(Errno::EAGAIN);
        };
        let n = line.len.min(buf.len());
        line.len -= n;
        let done = line.len == 0;
        let eof = line.eof;
        for (d, s) in buf.iter_mut().zip(self.buf.drain(..n)) {
            *d = s;
        }
        self.committed -= n;
        if done {
            self.lines.pop_front();
            if eof {
                self.markers -= 1;
            }
        }
        Ok(n)
    }

    fn take(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.buf.len());
        for (d, s) in buf.iter_mut().zip(self.buf.drain(..n)) {
            *d = s;
        }
        n
    }

    fn arm(&mut self, now: Instant) {
        if self.vtime.deadline.is_none() {
            let d = now + Duration::from_millis(100 * u64::from(self.cc(libc::VTIME)));
            self.vtime = VTimer {
                deadline: Some(d),
                expired: false,
                request: Some(d),
            };
        }
    }

    fn read_raw(&mut self, buf: &mut [u8], now: Instant) -> KResult<usize> {
        let avail = self.buf.len();
        let vmin = usize::from(self.cc(libc::VMIN));
        let vtime = self.cc(libc::VTIME);
        let need = vmin.min(buf.len());
        match (vmin, vtime) {
            (0, 0) => Ok(self.take(buf)),
            (_, 0) => {
                if avail >= need {
                    Ok(self.take(buf))
                } else {
                    self.reader_need = need;
                    Err(Errno::EAGAIN)
                }
            }
            (0, _) => {
                if avail > 0 {
                    Ok(self.take(buf))
                } else if self.vtime.expired {
                    Ok(0)
                } else {
                    self.arm(now);
                    Err(Errno::EAGAIN)
                }
            }
            _ => {
                if avail >= need || (avail > 0 && self.vtime.expired) {
                    Ok(self.take(buf))
                } else {
                    self.reader_need = need;
                    if avail > 0 {
                        self.arm(now);
                    }
                    Err(Errno::EAGAIN)
                }
            }
        }
    }

    /// The deadline of a VTIME timer armed by the last `slave_read`, once.
    pub fn take_timer_request(&mut self) -> Option<Instant> {
        self.vtime.request.take()
    }

    /// A VTIME timer for `deadline` went off; true if it is still the
    /// current one (readers must be woken).
    pub fn timer_fired(&mut self, deadline: Instant) -> bool {
        if self.vtime.deadline == Some(deadline) {
            self.vtime.expired = true;
            true
        } else {
            false
        }
    }

    /// Whether a slave read would return now (`input_available_p`).
    pub fn slave_readable(&self) -> bool {
        if self.icanon() {
            return !self.lines.is_empty();
        }
        let avail = self.buf.len();
        let vmin = usize::from(self.cc(libc::VMIN));
        let need = if self.reader_need > 0 {
            vmin.min(self.reader_need)
        } else {
            vmin
        }
        .max(1);
        match (vmin, self.cc(libc::VTIME)) {
            (0, _) => avail > 0 || self.vtime.expired,
            (_, 0) => avail >= need,
            _ if self.vtime.deadline.is_some() => {
                avail >= need || (avail > 0 && self.vtime.expired)
            }
            _ => avail > 0,
        }
    }

    /// Bytes a read could return (FIONREAD on the slave): in canonical
    /// mode, those of complete lines.
    pub fn inq(&self) -> usize {
        if self.icanon() {
            self.committed
        } else {
            self.buf.len()
        }
    }

    /// Input queued behind the read buffer (the master's view of its
    /// pending output, TIOCOUTQ on the master).
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Drops the slave's pending input (TCIFLUSH on the slave).
    pub fn flush_input(&mut self) {
        self.raw.clear();
        self.reset_input();
    }

    /// Drops the master's unprocessed input only (TCOFLUSH on the master).
    pub fn flush_raw(&mut self) {
        self.raw.clear();
    }

    /// Drops output not yet read by the master.
    pub fn flush_output(&mut self) {
        self.out.clear();
    }

    /// Puts one character into the input as if typed (TIOCSTI).
    pub fn inject(&mut self, c: u8, sigs: &mut Vec<i32>) {
        self.raw.push_front(c);
        self.process(sigs);
    }
}

// ---- the pty object ----

/// Shared state of a pty pair.
#[derive(Debug)]
struct PtyState {
    ld: LineDiscipline,
    winsize: WinSize,
    /// TIOCSPTLCK: slaves cannot be opened.
    locked: bool,
    master_open: bool,
    /// Open slave descriptions.
    slaves: usize,
    /// All slaves closed after one was open (Linux `TTY_OTHER_CLOSED` on
    /// the master).
    slave_closed: bool,
    /// The master closed: the slave is hung up.
    hung_up: bool,
    /// Session whose controlling terminal this is.
    session: Option<i32>,
    /// Its foreground process group.
    pgrp: Option<i32>,
}

/// One pseudo-terminal pair (see the module docs). Its master and slave
/// descriptions are [`PtyMaster`] and [`PtySlave`].
#[derive(Debug)]
pub struct Pty {
    index: u32,
    kernel: Weak<Kernel>,
    state: Mutex<PtyState>,
    wq: WaitQueue,
    /// Woken with `wq`, for the host-side console relay threads.
    relay_cv: Condvar,
    /// A console's slave: the first session leader without a controlling
    /// terminal that uses it acquires it, as if it had opened it.
    claim: AtomicBool,
    dev: u64,
    uid: u32,
    gid: u32,
    created: Timestamp,
}

/// The task making the current system call, as job control sees it.
struct Caller {
    task: Arc<Task>,
    tgid: i32,
    pgid: i32,
    sid: i32,
    euid: u32,
}

impl Caller {
    fn current(k: &Kernel) -> Option<Caller> {
        let task = k.task(current_tid()?)?;
        let (pgid, sid, euid) = {
            let i = lock(&task.tg.inner);
            (i.pgid, i.sid, i.cred.uid.1)
        };
        Some(Caller {
            tgid: task.tg.tgid,
            task,
            pgid,
            sid,
            euid,
        })
    }

    fn leader(&self) -> bool {
        self.tgid == self.sid
    }
}

/// Sends `sig` (from the kernel) to every live process of group `pgid`.
fn kill_pgrp(k: &Kernel, pgid: i32, sig: i32) {
    for g in k.thread_groups() {
        let hit = {
            let i = lock(&g.inner);
            i.pgid == pgid && i.state == TgState::Running
        };
        if hit {
            k.signal_group(&g, SigInfo::new(sig, signal::SI_KERNEL));
        }
    }
}

/// Whether session `sid`'s leader is alive (else the session has lost
/// its controlling terminal).
fn leader_alive(k: &Kernel, sid: i32) -> bool {
    k.group(sid)
        .is_some_and(|g| lock(&g.inner).state == TgState::Running)
}

/// The session of process group `pgid` (`session_of_pgrp`): of a member,
/// else of the process with that id; None if neither exists.
fn session_of_pgrp(k: &Kernel, pgid: i32) -> Option<i32> {
    let groups = k.thread_groups();
    for g in &groups {
        let i = lock(&g.inner);
        if i.pgid == pgid && i.state != TgState::Dead {
            return Some(i.sid);
        }
    }
    groups
        .iter()
        .find(|g| g.tgid == pgid)
        .map(|g| lock(&g.inner))
        .filter(|i| i.state != TgState::Dead)
        .map(|i| i.sid)
}

/// Whether process group `pgid` of session `sid` is orphaned: no member
/// has a parent in another group of the same session.
fn pgrp_orphaned(k: &Kernel, pgid: i32, sid: i32) -> bool {
    for g in k.thread_groups() {
        let parent = {
            let i = lock(&g.inner);
            if i.pgid != pgid || i.state != TgState::Running {
                continue;
            }
            i.parent.clone()
        };
        // Child's lock released before the parent's is taken.
        if let Some(p) = parent {
            let pi = lock(&p.inner);
            if pi.pgid != pgid && pi.sid == sid {
                return false;
            }
        }
    }
    true
}

fn read_int(ctx: &mut dyn IoctlCtx, arg: u64) -> KResult<i32> {
    let mut b = [0u8; 4];
    ctx.read_mem(arg, &mut b)?;
    Ok(i32::from_ne_bytes(b))
}

fn write_int(ctx: &mut dyn IoctlCtx, arg: u64, v: i32) -> KResult<u64> {
    ctx.write_mem(arg, &v.to_ne_bytes())?;
    Ok(0)
}

impl Pty {
    fn new(index: u32, kernel: Weak<Kernel>, dev: u64, uid: u32, gid: u32) -> Pty {
        Pty {
            index,
            kernel,
            state: Mutex::new(PtyState {
                ld: LineDiscipline::new(),
                winsize: WinSize::default(),
                locked: true,
                master_open: true,
                slaves: 0,
                slave_closed: false,
                hung_up: false,
                session: None,
                pgrp: None,
            }),
            wq: WaitQueue::new(),
            relay_cv: Condvar::new(),
            claim: AtomicBool::new(false),
            dev,
            uid,
            gid,
            created: now(),
        }
    }

    /// The pty's number N (`/dev/pts/N`).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The path of the slave.
    pub fn slave_path(&self) -> Vec<u8> {
        format!("/dev/pts/{}", self.index).into_bytes()
    }

    fn st(&self) -> MutexGuard<'_, PtyState> {
        lock(&self.state)
    }

    fn notify(&self) {
        self.wq.notify_all();
        self.relay_cv.notify_all();
    }

    /// `stat` of `/dev/pts/N`.
    pub fn slave_stat(&self) -> Stat {
        Stat {
            st_dev: self.dev,
            st_ino: u64::from(self.index) + 3,
            st_nlink: 1,
            st_mode: libc::S_IFCHR | 0o620,
            st_uid: self.uid,
            st_gid: self.gid,
            st_rdev: libc::makedev(PTS_MAJOR, self.index),
            st_blksize: 1024,
            st_atime: self.created.0,
            st_atime_nsec: self.created.1,
            st_mtime: self.created.0,
            st_mtime_nsec: self.created.1,
            st_ctime: self.created.0,
            st_ctime_nsec: self.created.1,
            ..Stat::default()
        }
    }

    /// Whether the master is still open (the slave is listed in
    /// `/dev/pts`).
    pub fn master_open(&self) -> bool {
        self.st().master_open
    }

    /// The session whose controlling terminal this is, if its leader
    /// lives (a dead leader's association is dropped here).
    pub fn session(&self) -> Option<i32> {
        let s = self.st().session?;
        let k = self.kernel.upgrade()?;
        if leader_alive(&k, s) {
            return Some(s);
        }
        let mut st = self.st();
        if st.session == Some(s) {
            st.session = None;
            st.pgrp = None;
        }
        None
    }

    /// The foreground process group, if the pty is a controlling terminal.
    pub fn foreground_pgrp(&self) -> Option<i32> {
        self.session()?;
        self.st().pgrp
    }

    /// Makes the pty the controlling terminal of session `sid` with
    /// foreground process group `pgrp` (what a container runtime's init
    /// does with setsid and TIOCSCTTY before exec).
    pub fn set_controlling(&self, sid: i32, pgrp: i32) {
        let mut st = self.st();
        st.session = Some(sid);
        st.pgrp = Some(pgrp);
        self.claim.store(false, Ordering::Relaxed);
    }

    /// The window size.
    pub fn window_size(&self) -> WinSize {
        self.st().winsize
    }

    /// Sets the window size; if it changed, the foreground process group
    /// gets SIGWINCH (`tty_do_resize`).
    pub fn set_window_size(&self, ws: WinSize) {
        let changed = {
            let mut st = self.st();
            let changed = st.winsize != ws;
            st.winsize = ws;
            changed
        };
        if changed {
            self.signal_foreground(&[libc::SIGWINCH]);
        }
    }

    /// Sends signals to the foreground process group, if there is one.
    fn signal_foreground(&self, sigs: &[i32]) {
        if sigs.is_empty() {
            return;
        }
        let Some(pgrp) = self.foreground_pgrp() else {
            return;
        };
        if let Some(k) = self.kernel.upgrade() {
            for &s in sigs {
                kill_pgrp(&k, pgrp, s);
            }
        }
    }

    /// A new master description on this pty.
    fn master(self: &Arc<Self>, stat: Stat) -> PtyMaster {
        PtyMaster {
            pty: self.clone(),
            stat,
        }
    }

    /// Opens the slave (`pty_open`, `tty_open_proc_set_tty`): EIO while
    /// locked or hung up. Without O_NOCTTY, a readable open by a session
    /// leader without a controlling terminal makes this one its own.
    fn open_slave(self: &Arc<Self>, flags: i32) -> KResult<PtySlave> {
        {
            let mut st = self.st();
            if st.locked || st.hung_up || !st.master_open {
                return Err(Errno::EIO);
            }
            st.slaves += 1;
            st.slave_closed = false;
        }
        let slave = PtySlave {
            pty: self.clone(),
            stat: None,
            read_waiting: AtomicBool::new(false),
        };
        let readable = flags & libc::O_ACCMODE != libc::O_WRONLY;
        if flags & libc::O_NOCTTY == 0
            && readable
            && let Some(k) = self.kernel.upgrade()
            && let Some(c) = Caller::current(&k)
        {
            self.acquire(&k, &c);
        }
        self.notify();
        Ok(slave)
    }

    /// Makes the pty `c`'s controlling terminal if `c` leads a session
    /// without one and the pty has no session (`__proc_set_tty`).
    fn acquire(&self, k: &Kernel, c: &Caller) -> bool {
        if !c.leader() || self.session().is_some() || k.ptys.controlling(c.sid).is_some() {
            return false;
        }
        let mut st = self.st();
        if st.session.is_some() || st.hung_up {
            return false;
        }
        st.session = Some(c.sid);
        st.pgrp = Some(c.pgid);
        self.claim.store(false, Ordering::Relaxed);
        true
    }

    /// A console's slave is adopted by the first session leader using it.
    fn check_claim(&self) {
        if !self.claim.load(Ordering::Relaxed) {
            return;
        }
        if let Some(k) = self.kernel.upgrade()
            && let Some(c) = Caller::current(&k)
        {
            self.acquire(&k, &c);
        }
    }

    /// `__tty_check_change`: a background process of the session this is
    /// the controlling terminal of gets `sig` (SIGTTIN/SIGTTOU) and the
    /// call restarts after it; EIO when SIGTTIN is ignored or blocked or
    /// the group is orphaned.
    fn check_change(&self, sig: i32) -> KResult<()> {
        if self.st().session.is_none() {
            return Ok(());
        }
        let Some(k) = self.kernel.upgrade() else {
            return Ok(());
        };
        let Some(c) = Caller::current(&k) else {
            return Ok(());
        };
        if self.session() != Some(c.sid) {
            return Ok(());
        }
        let Some(fg) = self.st().pgrp else {
            return Ok(());
        };
        if fg == c.pgid {
            return Ok(());
        }
        let act = lock(&c.task.tg.handlers()).get(sig);
        let blocked = lock(&c.task.sig).mask & signal::bit(sig) != 0;
        if blocked || act.handler == signal::SIG_IGN {
            return if sig == libc::SIGTTIN {
                Err(Errno::EIO)
            } else {
                Ok(())
            };
        }
        if pgrp_orphaned(&k, c.pgid, c.sid) {
            return Err(Errno::EIO);
        }
        if act.handler == signal::SIG_DFL && !GROUP_STOP_SUPPORTED {
            return Ok(());
        }
        kill_pgrp(&k, c.pgid, sig);
        Err(Errno::ERESTARTSYS)
    }

    /// Starts a thread that fires a VTIME timer at `deadline`.
    fn spawn_timer(self: &Arc<Self>, deadline: Instant) {
        let weak = Arc::downgrade(self);
        let r = std::thread::Builder::new()
            .name("pty-vtime".into())
            .spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                if let Some(p) = weak.upgrade() {
                    let fired = p.st().ld.timer_fired(deadline);
                    if fired {
                        p.notify();
                    }
                }
            });
        if r.is_err() {
            // No thread: expire at once rather than block forever.
            self.st().ld.timer_fired(deadline);
            self.notify();
        }
    }

    /// Called when the master closes: hangs the slave up (`pty_close`,
    /// `tty_vhangup`, `tty_signal_session_leader`).
    fn master_closed(&self) {
        // The session leader is signalled before readers wake to end of
        // file, so that its handler has run when its read returns 0.
        let session = self.session();
        if let (Some(k), Some(sid)) = (self.kernel.upgrade(), session)
            && let Some(g) = k.group(sid)
            && lock(&g.inner).state == TgState::Running
        {
            k.signal_group(&g, SigInfo::new(libc::SIGHUP, signal::SI_KERNEL));
            k.signal_group(&g, SigInfo::new(libc::SIGCONT, signal::SI_KERNEL));
        }
        {
            let mut st = self.st();
            st.master_open = false;
            st.hung_up = true;
            st.ld.flush_input();
            st.session = None;
            st.pgrp = None;
        }
        self.notify();
    }

    /// ioctls both ends share (`tty_ioctl`, `tty_mode_ioctl`,
    /// `n_tty_ioctl`). Termios, window size, process group and session
    /// requests on the master act on the slave, as in Linux.
    fn common_ioctl(
        &self,
        master: bool,
        cmd: u32,
        arg: u64,
        ctx: &mut dyn IoctlCtx,
    ) -> KResult<u64> {
        match cmd {
            TCGETS => {
                let t = self.st().ld.termios();
                ctx.write_mem(arg, &t.base.to_bytes())?;
                Ok(0)
            }
            TCGETS2 => {
                let t = self.st().ld.termios();
                ctx.write_mem(arg, &t.to_bytes())?;
                Ok(0)
            }
            TCSETS | TCSETSW | TCSETSF | TCSETS2 | TCSETSW2 | TCSETSF2 => {
                let two = matches!(cmd, TCSETS2 | TCSETSW2 | TCSETSF2);
                let mut b = [0u8; 44];
                ctx.read_mem(arg, &mut b[..if two { 44 } else { 36 }])?;
                self.check_change(libc::SIGTTOU)?;
                let mut sigs = Vec::new();
                {
                    let mut st = self.st();
                    let t = if two {
                        Termios2::from_bytes(&b)
                    } else {
                        let mut t = [0u8; 36];
                        t.copy_from_slice(&b[..36]);
                        Termios2::from_termios(Termios::from_bytes(&t), &st.ld.termios())
                    };
                    if matches!(cmd, TCSETSF | TCSETSF2) {
                        st.ld.flush_input();
                    }
                    // TCSETSW*: output "drains" at once (a pty has no
                    // transmitter; Linux waits for nothing either).
                    st.ld.set_termios(t, &mut sigs);
                }
                self.notify();
                self.signal_foreground(&sigs);
                Ok(0)
            }
            TIOCGWINSZ => {
                let ws = self.window_size();
                ctx.write_mem(arg, &ws.to_bytes())?;
                Ok(0)
            }
            TIOCSWINSZ => {
                let mut b = [0u8; 8];
                ctx.read_mem(arg, &mut b)?;
                self.set_window_size(WinSize::from_bytes(&b));
                Ok(0)
            }
            TIOCGPGRP | TIOCGSID => {
                let session = self.session();
                if !master {
                    let k = self.kernel.upgrade().ok_or(Errno::ENOTTY)?;
                    let c = Caller::current(&k).ok_or(Errno::ENOTTY)?;
                    if session != Some(c.sid) {
                        return Err(Errno::ENOTTY);
                    }
                }
                if cmd == TIOCGSID {
                    write_int(ctx, arg, session.ok_or(Errno::ENOTTY)?)
                } else {
                    let p = if session.is_some() {
                        self.st().pgrp.unwrap_or(0)
                    } else {
                        0
                    };
                    write_int(ctx, arg, p)
                }
            }
            TIOCSPGRP => {
                match self.check_change(libc::SIGTTOU) {
                    Err(Errno::EIO) => return Err(Errno::ENOTTY),
                    r => r?,
                }
                let p = read_int(ctx, arg)?;
                if p < 0 {
                    return Err(Errno::EINVAL);
                }
                let k = self.kernel.upgrade().ok_or(Errno::ENOTTY)?;
                let c = Caller::current(&k).ok_or(Errno::ENOTTY)?;
                if self.session() != Some(c.sid) {
                    return Err(Errno::ENOTTY);
                }
                match session_of_pgrp(&k, p) {
                    None => Err(Errno::ESRCH),
                    Some(s) if s != c.sid => Err(Errno::EPERM),
                    Some(_) => {
                        self.st().pgrp = Some(p);
                        Ok(0)
                    }
                }
            }
            TIOCSCTTY => self.tiocsctty(arg),
            TIOCNOTTY => {
                if master {
                    return Err(Errno::ENOTTY);
                }
                let k = self.kernel.upgrade().ok_or(Errno::ENOTTY)?;
                let c = Caller::current(&k).ok_or(Errno::ENOTTY)?;
                if self.session() != Some(c.sid) {
                    return Err(Errno::ENOTTY);
                }
                if c.leader() {
                    // disassociate_ctty(0): the foreground group gets
                    // SIGHUP and SIGCONT; the session loses the terminal.
                    let fg = {
                        let mut st = self.st();
                        st.session = None;
                        st.pgrp.take()
                    };
                    if let Some(fg) = fg {
                        kill_pgrp(&k, fg, libc::SIGHUP);
                        kill_pgrp(&k, fg, libc::SIGCONT);
                    }
                }
                Ok(0)
            }
            FIONREAD => {
                let n = {
                    let st = self.st();
                    if master {
                        st.ld.master_readable()
                    } else {
                        st.ld.inq()
                    }
                };
                write_int(ctx, arg, n.min(i32::MAX as usize) as i32)
            }
            TIOCOUTQ => {
                let n = {
                    let st = self.st();
                    if master {
                        st.ld.raw_len()
                    } else {
                        st.ld.master_readable()
                    }
                };
                write_int(ctx, arg, n.min(i32::MAX as usize) as i32)
            }
            TCFLSH => {
                if !master {
                    self.check_change(libc::SIGTTOU)?;
                }
                let (input, output) = match arg {
                    TCIFLUSH => (true, false),
                    TCOFLUSH => (false, true),
                    TCIOFLUSH => (true, true),
                    _ => return Err(Errno::EINVAL),
                };
                {
                    let mut st = self.st();
                    // The master's input is the slave's output, and
                    // the other way round.
                    if input {
                        if master {
                            st.ld.flush_output();
                        } else {
                            st.ld.flush_input();
                        }
                    }
                    if output {
                        if master {
                            st.ld.flush_raw();
                        } else {
                            st.ld.flush_output();
                        }
                    }
                }
                self.notify();
                Ok(0)
            }
            TCXONC => {
                if !master {
                    self.check_change(libc::SIGTTOU)?;
                }
                {
                    let mut st = self.st();
                    let ld = &mut st.ld;
                    match arg {
                        TCOOFF => ld.stop_output(),
                        TCOON => ld.start_output(),
                        TCIOFF | TCION => {
                            let c = ld.termios().base.c_cc[if arg == TCIOFF {
                                libc::VSTOP
                            } else {
                                libc::VSTART
                            }];
                            if c != 0 {
                                ld.emit(&[c], false);
                            }
                        }
                        _ => return Err(Errno::EINVAL),
                    }
                }
                self.notify();
                Ok(0)
            }
            TCSBRK | TCSBRKP => {
                if !master {
                    self.check_change(libc::SIGTTOU)?;
                }
                Ok(0)
            }
            TIOCSBRK | TIOCCBRK | TIOCEXCL | TIOCNXCL => Ok(0),
            TIOCGEXCL | TIOCGETD => write_int(ctx, arg, 0),
            TIOCSETD => match read_int(ctx, arg)? {
                0 => Ok(0),
                _ => Err(Errno::EINVAL),
            },
            TIOCSTI => {
                let k = self.kernel.upgrade().ok_or(Errno::EPERM)?;
                let c = Caller::current(&k).ok_or(Errno::EPERM)?;
                if c.euid != 0 {
                    return Err(Errno::EPERM);
                }
                let mut b = [0u8; 1];
                ctx.read_mem(arg, &mut b)?;
                let mut sigs = Vec::new();
                self.st().ld.inject(b[0], &mut sigs);
                self.notify();
                self.signal_foreground(&sigs);
                Ok(0)
            }
            TIOCGLCKTRMIOS => {
                ctx.write_mem(arg, &[0u8; 36])?;
                Ok(0)
            }
            TIOCSLCKTRMIOS => {
                let k = self.kernel.upgrade().ok_or(Errno::EPERM)?;
                match Caller::current(&k) {
                    Some(c) if c.euid == 0 => Ok(0),
                    _ => Err(Errno::EPERM),
                }
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// TIOCSCTTY (`tiocsctty`): a session leader without a controlling
    /// terminal takes this one, unless another session has it (root may
    /// steal it with `arg == 1`).
    fn tiocsctty(&self, arg: u64) -> KResult<u64> {
        let k = self.kernel.upgrade().ok_or(Errno::EPERM)?;
        let c = Caller::current(&k).ok_or(Errno::EPERM)?;
        let cur = self.session();
        if c.leader() && cur == Some(c.sid) {
            return Ok(0);
        }
        if !c.leader() || k.ptys.controlling(c.sid).is_some() {
            return Err(Errno::EPERM);
        }
        if cur.is_some() && !(arg == 1 && c.euid == 0) {
            return Err(Errno::EPERM);
        }
        let mut st = self.st();
        if st.hung_up {
            return Err(Errno::EIO);
        }
        st.session = Some(c.sid);
        st.pgrp = Some(c.pgid);
        self.claim.store(false, Ordering::Relaxed);
        Ok(0)
    }
}

// ---- the two ends ----

/// The master end (an open of `/dev/ptmx`). Closing it hangs the slave up.
#[derive(Debug)]
pub struct PtyMaster {
    pty: Arc<Pty>,
    stat: Stat,
}

impl PtyMaster {
    /// The pty.
    pub fn pty(&self) -> &Arc<Pty> {
        &self.pty
    }
}

impl Drop for PtyMaster {
    fn drop(&mut self) {
        self.pty.master_closed();
    }
}

impl FileOps for PtyMaster {
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.pty.st();
        let n = st.ld.master_read(buf);
        if n > 0 {
            drop(st);
            self.pty.notify();
            return Ok(n);
        }
        if st.slave_closed {
            Err(Errno::EIO)
        } else {
            Err(Errno::EAGAIN)
        }
    }

    fn write(&self, buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut sigs = Vec::new();
        let n = self.pty.st().ld.master_write(buf, &mut sigs);
        self.pty.notify();
        self.pty.signal_foreground(&sigs);
        if n == 0 { Err(Errno::EAGAIN) } else { Ok(n) }
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat)
    }

    fn poll(&self) -> PollEvents {
        let st = self.pty.st();
        let mut ev = PollEvents::empty();
        if st.ld.master_readable() > 0 {
            ev |= PollEvents::IN | PollEvents::RDNORM;
        }
        if st.slave_closed {
            ev |= PollEvents::HUP;
        }
        if st.ld.master_writable() {
            ev |= PollEvents::OUT | PollEvents::WRNORM;
        }
        ev
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pty.wq)
    }

    fn ioctl(&self, cmd: u32, arg: u64, ctx: &mut dyn IoctlCtx) -> KResult<u64> {
        // pty_unix98_ioctl
        match cmd {
            TIOCGPTN => write_int(ctx, arg, self.pty.index as i32),
            TIOCSPTLCK => {
                let v = read_int(ctx, arg)?;
                self.pty.st().locked = v != 0;
                Ok(0)
            }
            TIOCGPTLCK => {
                let v = self.pty.st().locked;
                write_int(ctx, arg, i32::from(v))
            }
            TIOCPKT => match read_int(ctx, arg)? {
                0 => Ok(0),
                _ => Err(Errno::EINVAL),
            },
            TIOCGPKT => write_int(ctx, arg, 0),
            TIOCSIG => {
                let sig = arg as i32;
                if ![libc::SIGINT, libc::SIGQUIT, libc::SIGTSTP].contains(&sig) {
                    return Err(Errno::EINVAL);
                }
                self.pty.signal_foreground(&[sig]);
                Ok(0)
            }
            TIOCGPTPEER => {
                // ptm_open_peer: a new description of the slave, installed
                // in the caller's descriptor table.
                let flags = arg as i32;
                let k = self.pty.kernel.upgrade().ok_or(Errno::EIO)?;
                let task = k.task(current_tid().ok_or(Errno::EIO)?).ok_or(Errno::EIO)?;
                let slave = self.pty.open_slave(flags)?;
                let file = OpenFile::new(
                    Box::new(slave),
                    flags & !(libc::O_CLOEXEC | libc::O_NOCTTY),
                    self.pty.slave_path(),
                );
                let limit = lock(&task.tg.inner).rlimits[libc::RLIMIT_NOFILE as usize].0;
                let fd = lock(&task.files()).insert(file, flags & libc::O_CLOEXEC != 0, limit)?;
                Ok(fd as u64)
            }
            _ => self.pty.common_ioctl(true, cmd, arg, ctx),
        }
    }
}

/// A slave end (an open of `/dev/pts/N` or `/dev/tty`).
#[derive(Debug)]
pub struct PtySlave {
    pty: Arc<Pty>,
    /// `fstat` of an open through `/dev/tty` (the node opened, 5:0).
    stat: Option<Stat>,
    /// A read of this description is waiting for input (it got EAGAIN):
    /// if the master closes meanwhile it fails with EIO, as Linux's
    /// `n_tty_read` does on `TTY_OTHER_CLOSED`; reads begun after the
    /// hangup see end of file (`hung_up_tty_read`).
    read_waiting: AtomicBool,
}

impl PtySlave {
    /// The pty.
    pub fn pty(&self) -> &Arc<Pty> {
        &self.pty
    }
}

impl Drop for PtySlave {
    fn drop(&mut self) {
        {
            let mut st = self.pty.st();
            st.slaves = st.slaves.saturating_sub(1);
            if st.slaves == 0 {
                st.slave_closed = true;
            }
        }
        self.pty.notify();
    }
}

impl FileOps for PtySlave {
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        self.pty.check_claim();
        if self.pty.st().hung_up {
            return if self.read_waiting.swap(false, Ordering::Relaxed) {
                Err(Errno::EIO)
            } else {
                Ok(0)
            };
        }
        self.pty.check_change(libc::SIGTTIN)?;
        let mut sigs = Vec::new();
        let (r, timer) = {
            let mut st = self.pty.st();
            let r = st.ld.slave_read(buf, Instant::now(), &mut sigs);
            (r, st.ld.take_timer_request())
        };
        if let Some(d) = timer {
            self.pty.spawn_timer(d);
        }
        self.read_waiting
            .store(r == Err(Errno::EAGAIN), Ordering::Relaxed);
        if r.is_ok() {
            self.pty.notify();
            self.pty.signal_foreground(&sigs);
        }
        r
    }

    fn write(&self, buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        self.pty.check_claim();
        let tostop = {
            let st = self.pty.st();
            if st.hung_up {
                return Err(Errno::EIO);
            }
            st.ld.termios().base.c_lflag & libc::TOSTOP != 0
        };
        if tostop {
            self.pty.check_change(libc::SIGTTOU)?;
        }
        let r = self.pty.st().ld.slave_write(buf);
        if matches!(r, Ok(n) if n > 0) {
            self.pty.notify();
        }
        r
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat.unwrap_or_else(|| self.pty.slave_stat()))
    }

    fn poll(&self) -> PollEvents {
        self.pty.check_claim();
        let st = self.pty.st();
        if st.hung_up {
            // hung_up_tty_poll
            return PollEvents::IN
                | PollEvents::OUT
                | PollEvents::ERR
                | PollEvents::HUP
                | PollEvents::RDNORM
                | PollEvents::WRNORM;
        }
        let mut ev = PollEvents::empty();
        if st.ld.slave_readable() {
            ev |= PollEvents::IN | PollEvents::RDNORM;
        }
        if st.ld.slave_writable() {
            ev |= PollEvents::OUT | PollEvents::WRNORM;
        }
        ev
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pty.wq)
    }

    fn ioctl(&self, cmd: u32, arg: u64, ctx: &mut dyn IoctlCtx) -> KResult<u64> {
        self.pty.check_claim();
        if self.pty.st().hung_up {
            // hung_up_tty_ioctl
            return Err(if cmd == TIOCSPGRP {
                Errno::ENOTTY
            } else {
                Errno::EIO
            });
        }
        self.pty.common_ioctl(false, cmd, arg, ctx)
    }
}

// ---- the registry ----

/// A kernel's ptys by number (Linux's devpts instance): owned by the
/// [`Kernel`], listed in `/dev/pts`.
#[derive(Debug)]
pub struct PtyRegistry {
    ptys: Mutex<BTreeMap<u32, Weak<Pty>>>,
    dev: u64,
    time: Timestamp,
}

impl Default for PtyRegistry {
    fn default() -> PtyRegistry {
        PtyRegistry::new()
    }
}

impl PtyRegistry {
    /// An empty registry.
    pub fn new() -> PtyRegistry {
        PtyRegistry {
            ptys: Mutex::new(BTreeMap::new()),
            dev: alloc_dev(),
            time: now(),
        }
    }

    /// `st_dev` of `/dev/pts/N` nodes.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// A new pty (locked, as a fresh `/dev/ptmx` open's is), with the
    /// lowest free number; the slave is owned by `uid` and the tty group.
    /// ENOSPC beyond [`MAX_PTYS`].
    pub fn create(&self, kernel: Weak<Kernel>, uid: u32) -> KResult<Arc<Pty>> {
        let mut m = lock(&self.ptys);
        m.retain(|_, p| p.strong_count() > 0);
        let index = (0..MAX_PTYS)
            .find(|i| !m.contains_key(i))
            .ok_or(Errno::ENOSPC)?;
        let pty = Arc::new(Pty::new(index, kernel, self.dev, uid, TTY_GID));
        m.insert(index, Arc::downgrade(&pty));
        Ok(pty)
    }

    /// Opens a new master (`/dev/ptmx`) whose `fstat` is `stat`.
    pub fn open_master(&self, kernel: &Arc<Kernel>, stat: Stat) -> KResult<PtyMaster> {
        let uid = Caller::current(kernel).map(|c| c.euid).unwrap_or(0);
        let pty = self.create(Arc::downgrade(kernel), uid)?;
        Ok(pty.master(stat))
    }

    /// The pty numbered `index`, while its master is open.
    pub fn get(&self, index: u32) -> Option<Arc<Pty>> {
        let p = lock(&self.ptys).get(&index)?.upgrade()?;
        p.master_open().then_some(p)
    }

    /// Numbers of the ptys whose master is open (`/dev/pts` entries).
    pub fn indices(&self) -> Vec<u32> {
        let live: Vec<(u32, Arc<Pty>)> = lock(&self.ptys)
            .iter()
            .filter_map(|(i, p)| Some((*i, p.upgrade()?)))
            .collect();
        live.into_iter()
            .filter(|(_, p)| p.master_open())
            .map(|(i, _)| i)
            .collect()
    }

    /// `stat` of `/dev/pts/ptmx` (5:2, mode 0, as devpts has it).
    pub fn ptmx_stat(&self) -> Stat {
        Stat {
            st_dev: self.dev,
            st_ino: 2,
            st_nlink: 1,
            st_mode: libc::S_IFCHR,
            st_rdev: libc::makedev(TTYAUX_MAJOR, PTMX_MINOR),
            st_blksize: 4096,
            st_atime: self.time.0,
            st_atime_nsec: self.time.1,
            st_mtime: self.time.0,
            st_mtime_nsec: self.time.1,
            st_ctime: self.time.0,
            st_ctime_nsec: self.time.1,
            ..Stat::default()
        }
    }

    /// Opens slave `index` (`/dev/pts/N`) with open flags `flags`: ENOENT
    /// if there is no such pty, EIO while it is locked.
    pub fn open_slave(&self, index: u32, flags: i32) -> KResult<PtySlave> {
        self.get(index).ok_or(Errno::ENOENT)?.open_slave(flags)
    }

    /// The controlling terminal of session `sid`.
    pub fn controlling(&self, sid: i32) -> Option<Arc<Pty>> {
        let all: Vec<Arc<Pty>> = lock(&self.ptys)
            .values()
            .filter_map(|p| p.upgrade())
            .collect();
        all.into_iter().find(|p| p.session() == Some(sid))
    }

    /// The foreground process group of session `sid`'s controlling
    /// terminal (for signals "to the foreground process group").
    pub fn foreground_of_session(&self, sid: i32) -> Option<i32> {
        self.controlling(sid)?.foreground_pgrp()
    }

    /// Opens the caller's controlling terminal (`/dev/tty`, whose `fstat`
    /// is `stat`): ENXIO if it has none, EIO if it is hung up.
    pub fn open_controlling(
        &self,
        kernel: &Arc<Kernel>,
        flags: i32,
        stat: Stat,
    ) -> KResult<PtySlave> {
        let c = Caller::current(kernel).ok_or(Errno::ENXIO)?;
        let p = self.controlling(c.sid).ok_or(Errno::ENXIO)?;
        // Opening /dev/tty never changes the controlling terminal.
        let mut s = p.open_slave(flags | libc::O_NOCTTY)?;
        s.stat = Some(stat);
        Ok(s)
    }
}

// ---- the console ----

/// An [`IoctlCtx`] over a local buffer, for asking a host terminal its
/// window size through [`super::fs::host::host_stream`].
struct LocalMem([u8; 8]);

impl IoctlCtx for LocalMem {
    fn read_mem(&mut self, _addr: u64, buf: &mut [u8]) -> KResult<()> {
        let n = buf.len().min(8);
        buf[..n].copy_from_slice(&self.0[..n]);
        Ok(())
    }
    fn write_mem(&mut self, _addr: u64, buf: &[u8]) -> KResult<()> {
        let n = buf.len().min(8);
        self.0[..n].copy_from_slice(&buf[..n]);
        Ok(())
    }
}

/// The window size of a host terminal.
fn host_window_size(fd: &OwnedFd) -> Option<WinSize> {
    let dup = fd.try_clone().ok()?;
    let s = super::fs::host::host_stream(dup);
    let mut m = LocalMem([0; 8]);
    s.ioctl(TIOCGWINSZ, 0, &mut m).ok()?;
    Some(WinSize::from_bytes(&m.0))
}

/// Writes all of `data` to a host fd, waiting when it is non-blocking.
fn host_write_all(fd: &OwnedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLOUT,
                )];
                let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u16));
            }
            Err(_) => return false,
        }
    }
    true
}

/// A container's terminal: a pty whose master is relayed to host fds by
/// two threads (host input → master, master → host output), made by
/// [`attach_console`]. The host terminal, if the input is one, is in raw
/// mode until the console ends ([`Console::wait`], [`Console::close`] or
/// drop), when its settings are restored.
#[derive(Debug)]
pub struct Console {
    pty: Arc<Pty>,
    master: Option<Arc<PtyMaster>>,
    stop: Arc<AtomicBool>,
    output: Option<JoinHandle<()>>,
    input: Option<JoinHandle<()>>,
    /// The host terminal and its settings before raw mode.
    saved: Option<(OwnedFd, nix::sys::termios::Termios)>,
    /// A host terminal to take window sizes from.
    size_from: Option<OwnedFd>,
}

/// Gives a container a terminal (`process.terminal: true`): allocates a
/// pty in `kernel`, unlocks it, and starts relay threads copying `host_in`
/// to the master and the master to `host_out`. Returns the slave's open
/// description (`/dev/pts/N`, read-write) to install as the container
/// init's stdin, stdout and stderr, and the [`Console`] that owns the
/// relay. When `host_in` is a terminal it is put in raw mode (restored
/// when the console ends); the pty starts with the host terminal's window
/// size.
///
/// The first session leader without a controlling terminal that uses the
/// slave (normally the init, a session leader from its start) acquires it
/// as its controlling terminal, as if it had opened it without
/// `O_NOCTTY`; [`Console::set_controlling`] does it explicitly. Drop every
/// other holder of the returned description once it is installed: the
/// output relay ends when the last slave description closes.
pub fn attach_console(
    kernel: &Arc<Kernel>,
    host_in: OwnedFd,
    host_out: OwnedFd,
) -> KResult<(Arc<OpenFile>, Console)> {
    let pty = kernel.ptys.create(Arc::downgrade(kernel), 0)?;
    pty.st().locked = false;
    let master = Arc::new(pty.master(kernel.ptys.ptmx_stat()));
    let slave = pty.open_slave(libc::O_RDWR | libc::O_NOCTTY)?;
    pty.claim.store(true, Ordering::Relaxed);
    let file = OpenFile::new(Box::new(slave), libc::O_RDWR, pty.slave_path());

    let is_tty = |fd: &OwnedFd| nix::unistd::isatty(fd).unwrap_or(false);
    let size_from = [&host_out, &host_in]
        .into_iter()
        .find(|fd| is_tty(fd))
        .and_then(|fd| fd.try_clone().ok());
    if let Some(ws) = size_from.as_ref().and_then(host_window_size) {
        pty.st().winsize = ws;
    }
    let mut saved = None;
    if is_tty(&host_in)
        && let Ok(orig) = nix::sys::termios::tcgetattr(&host_in)
    {
        let mut raw = orig.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        if nix::sys::termios::tcsetattr(&host_in, nix::sys::termios::SetArg::TCSANOW, &raw).is_ok()
            && let Ok(dup) = host_in.try_clone()
        {
            saved = Some((dup, orig));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let errno = |e: std::io::Error| Errno::from_io(&e);
    let output = {
        let (m, stop) = (master.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("console-out-{}", pty.index))
            .spawn(move || relay_output(&m, &host_out, &stop))
            .map_err(errno)?
    };
    let input = {
        let (m, stop) = (master.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("console-in-{}", pty.index))
            .spawn(move || relay_input(&m, &host_in, &stop))
            .map_err(errno)?
    };
    Ok((
        file,
        Console {
            pty,
            master: Some(master),
            stop,
            output: Some(output),
            input: Some(input),
            saved,
            size_from,
        },
    ))
}

/// Waits up to 100 ms for the pty to change, unless `ready` holds already.
fn wait_change(pty: &Pty, ready: impl Fn(&PtyState) -> bool) {
    let st = pty.st();
    if ready(&st) {
        return;
    }
    let _ = pty
        .relay_cv
        .wait_timeout(st, Duration::from_millis(100))
        .unwrap_or_else(|e| e.into_inner());
}

/// master → host: until every slave has closed (EIO) or the console
/// stops; a stopping console still writes out what was queued (at most
/// one queue's worth more).
fn relay_output(m: &PtyMaster, out: &OwnedFd, stop: &AtomicBool) {
    let mut buf = vec![0u8; 16384];
    let mut host_ok = true;
    let mut budget = QUEUE_SIZE;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && budget == 0 {
            break;
        }
        let want = if stopping {
            budget.min(buf.len())
        } else {
            buf.len()
        };
        match m.read(&mut buf[..want], None) {
            Ok(n) => {
                if stopping {
                    budget -= n;
                }
                // A host that stopped listening still drains the pty, so
                // the container never blocks on its terminal.
                host_ok = host_ok && host_write_all(out, &buf[..n]);
            }
            Err(Errno::EAGAIN) if !stopping => {
                wait_change(&m.pty, |s| s.ld.master_readable() > 0 || s.slave_closed)
            }
            Err(_) => break,
        }
    }
}

/// host → master: until the host input ends or the console stops.
fn relay_input(m: &PtyMaster, inp: &OwnedFd, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut p = [nix::poll::PollFd::new(
            inp.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let n = match nix::unistd::read(inp, &mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return,
        };
        let mut off = 0;
        while off < n {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match m.write(&buf[off..n], None) {
                Ok(w) => off += w,
                Err(_) => wait_change(&m.pty, |s| s.ld.master_writable()),
            }
        }
    }
}

impl Console {
    /// The pty's number (the slave is `/dev/pts/N`).
    pub fn index(&self) -> u32 {
        self.pty.index
    }

    /// The pty.
    pub fn pty(&self) -> &Arc<Pty> {
        &self.pty
    }

    /// Makes the console the controlling terminal of session `sid` with
    /// foreground process group `pgrp`.
    pub fn set_controlling(&self, sid: i32, pgrp: i32) {
        self.pty.set_controlling(sid, pgrp);
    }

    /// The foreground process group, once a session has the console.
    pub fn foreground_pgrp(&self) -> Option<i32> {
        self.pty.foreground_pgrp()
    }

    /// Sets the window size (SIGWINCH to the foreground group if it
    /// changed).
    pub fn set_window_size(&self, rows: u16, cols: u16) {
        self.pty.set_window_size(WinSize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
    }

    /// Copies the host terminal's window size (call it on the host's
    /// SIGWINCH); nothing if the host side is not a terminal.
    pub fn sync_window_size(&self) {
        if let Some(ws) = self.size_from.as_ref().and_then(host_window_size) {
            self.pty.set_window_size(ws);
        }
    }

    /// Waits until the container side is done (every slave description
    /// closed, its output written to the host), then ends the console.
    pub fn wait(mut self) {
        if let Some(h) = self.output.take() {
            let _ = h.join();
        }
        self.finish();
    }

    /// Ends the console now: writes what output is queued to the host,
    /// stops the relays, closes the master (which hangs the slave up: its
    /// session leader gets SIGHUP) and restores the host terminal.
    pub fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.pty.notify();
        for h in [self.output.take(), self.input.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
        self.master = None;
        if let Some((fd, t)) = self.saved.take() {
            let _ = nix::sys::termios::tcsetattr(&fd, nix::sys::termios::SetArg::TCSANOW, &t);
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld() -> LineDiscipline {
        LineDiscipline::new()
    }

    /// Writes `input` as the master, returns (echo read back, signals).
    fn type_in(l: &mut LineDiscipline, input: &[u8]) -> (Vec<u8>, Vec<i32>) {
        let mut sigs = Vec::new();
        assert_eq!(l.master_write(input, &mut sigs), input.len());
        let mut out = vec![0u8; QUEUE_SIZE];
        let n = l.master_read(&mut out);
        out.truncate(n);
        (out, sigs)
    }

    fn read(l: &mut LineDiscipline, max: usize) -> KResult<Vec<u8>> {
        let mut b = vec![0u8; max];
        let n = l.slave_read(&mut b, Instant::now(), &mut Vec::new())?;
        b.truncate(n);
        Ok(b)
    }

    fn set(l: &mut LineDiscipline, f: impl FnOnce(&mut Termios2)) {
        let mut t = l.termios();
        f(&mut t);
        l.set_termios(t, &mut Vec::new());
    }

    #[test]
    fn termios_bytes_round_trip() {
        let t = Termios2::default();
        assert_eq!(Termios2::from_bytes(&t.to_bytes()), t);
        let b = t.base.to_bytes();
        assert_eq!(u32::from_ne_bytes([b[12], b[13], b[14], b[15]]), 0x8a3b);
        assert_eq!(Termios::from_bytes(&b), t.base);
        let mut fast = t.base;
        fast.c_cflag = (fast.c_cflag & !libc::CBAUD) | libc::B9600;
        let t2 = Termios2::from_termios(fast, &t);
        assert_eq!((t2.c_ispeed, t2.c_ospeed), (9600, 9600));
        let ws = WinSize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 1,
            ws_ypixel: 2,
        };
        assert_eq!(WinSize::from_bytes(&ws.to_bytes()), ws);
    }

    #[test]
    fn canonical_line_with_echo_and_icrnl() {
        let mut l = ld();
        let (echo, sigs) = type_in(&mut l, b"hello\r");
        assert_eq!(echo, b"hello\r\n");
        assert!(sigs.is_empty());
        assert_eq!(l.inq(), 6);
        assert_eq!(read(&mut l, 100).unwrap(), b"hello\n");
        assert_eq!(read(&mut l, 100), Err(Errno::EAGAIN));
    }

    #[test]
    fn partial_line_is_not_readable() {
        let mut l = ld();
        type_in(&mut l, b"abc");
        assert!(!l.slave_readable());
        assert_eq!(read(&mut l, 10), Err(Errno::EAGAIN));
        type_in(&mut l, b"\n");
        assert!(l.slave_readable());
        // One line per read, possibly in pieces.
        type_in(&mut l, b"second\n");
        assert_eq!(read(&mut l, 2).unwrap(), b"ab");
        assert_eq!(read(&mut l, 100).unwrap(), b"c\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"second\n");
    }

    #[test]
    fn erase_kill_and_werase() {
        let mut l = ld();
        let (echo, _) = type_in(&mut l, b"junk\x15helo\x7flo\r");
        assert_eq!(
            echo,
            b"junk\x08 \x08\x08 \x08\x08 \x08\x08 \x08helo\x08 \x08lo\r\n".to_vec()
        );
        assert_eq!(read(&mut l, 100).unwrap(), b"hello\n");
        let (echo, _) = type_in(&mut l, b"one two\x17three\n");
        assert_eq!(
            echo,
            b"one two\x08 \x08\x08 \x08\x08 \x08three\r\n".to_vec()
        );
        assert_eq!(read(&mut l, 100).unwrap(), b"one three\n");
        // A control character echoed as ^X takes two backspaces.
        let (echo, _) = type_in(&mut l, b"a\x01\x7f\n");
        assert_eq!(echo, b"a^A\x08 \x08\x08 \x08\r\n".to_vec());
        assert_eq!(read(&mut l, 100).unwrap(), b"a\n");
        // Erasing at the start of a line does nothing.
        let (echo, _) = type_in(&mut l, b"\x7f\n");
        assert_eq!(echo, b"\r\n");
        // Without ECHOE the erase character is echoed.
        set(&mut l, |t| t.base.c_lflag &= !libc::ECHOE);
        let (echo, _) = type_in(&mut l, b"ab\x7f\n");
        assert_eq!(echo, b"ab^?\r\n");
        // Without ECHOKE, VKILL echoes itself and a newline (ECHOK).
        let (echo, _) = type_in(&mut l, b"xy\x15z\n");
        assert_eq!(echo, b"xy^U\r\nz\r\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"a\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"z\n");
    }

    #[test]
    fn erase_utf8_and_tab() {
        let mut l = ld();
        set(&mut l, |t| t.base.c_iflag |= libc::IUTF8);
        type_in(&mut l, "aé\x7f\n".as_bytes());
        assert_eq!(read(&mut l, 100).unwrap(), b"a\n");
        let (echo, _) = type_in(&mut l, b"ab\t\x7f\n");
        // The tab took columns 2..8: six backspaces.
        assert_eq!(echo, b"ab\t\x08\x08\x08\x08\x08\x08\r\n".to_vec());
        assert_eq!(read(&mut l, 100).unwrap(), b"ab\n");
    }

    #[test]
    fn eof_and_eol() {
        let mut l = ld();
        let (echo, _) = type_in(&mut l, b"abc\x04\x04");
        assert_eq!(echo, b"abc");
        assert_eq!(l.inq(), 3);
        assert_eq!(read(&mut l, 100).unwrap(), b"abc");
        assert_eq!(read(&mut l, 100).unwrap(), b"");
        assert_eq!(read(&mut l, 100), Err(Errno::EAGAIN));
        set(&mut l, |t| t.base.c_cc[libc::VEOL] = b';');
        type_in(&mut l, b"x;y");
        assert_eq!(read(&mut l, 100).unwrap(), b"x;");
        // NUL never acts as a disabled special character.
        set(&mut l, |t| t.base.c_cc[libc::VEOL] = 0);
        type_in(&mut l, b"\0\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"y\0\n");
    }

    #[test]
    fn signals_flush_and_echo() {
        let mut l = ld();
        let (echo, sigs) = type_in(&mut l, b"partial\x03");
        assert_eq!(echo, b"partial^C");
        assert_eq!(sigs, vec![libc::SIGINT]);
        type_in(&mut l, b"\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"\n");
        let (_, sigs) = type_in(&mut l, b"\x1c\x1a");
        assert_eq!(sigs, vec![libc::SIGQUIT, libc::SIGTSTP]);
        // NOFLSH keeps the input; without ISIG the characters are data.
        set(&mut l, |t| t.base.c_lflag |= libc::NOFLSH);
        let (_, sigs) = type_in(&mut l, b"keep\x03\n");
        assert_eq!(sigs, vec![libc::SIGINT]);
        assert_eq!(read(&mut l, 100).unwrap(), b"keep\n");
        set(&mut l, |t| t.base.c_lflag &= !libc::ISIG);
        let (_, sigs) = type_in(&mut l, b"\x03\n");
        assert!(sigs.is_empty());
        assert_eq!(read(&mut l, 100).unwrap(), b"\x03\n");
    }

    #[test]
    fn input_maps() {
        let mut l = ld();
        set(&mut l, |t| {
            t.base.c_iflag = libc::INLCR;
            t.base.c_lflag &= !libc::ECHO;
            t.base.c_cc[libc::VEOL] = b'\r';
        });
        type_in(&mut l, b"a\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"a\r");
        set(&mut l, |t| t.base.c_iflag = libc::IGNCR);
        type_in(&mut l, b"b\r\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"b\n");
        set(&mut l, |t| t.base.c_iflag = libc::ISTRIP);
        type_in(&mut l, b"\xe1\n");
        assert_eq!(read(&mut l, 100).unwrap(), b"a\n");
    }

    #[test]
    fn echonl_and_lnext() {
        let mut l = ld();
        set(&mut l, |t| {
            t.base.c_lflag &= !libc::ECHO;
            t.base.c_lflag |= libc::ECHONL;
        });
        let (echo, _) = type_in(&mut l, b"secret\n");
        assert_eq!(echo, b"\r\n");
        set(&mut l, |t| t.base.c_lflag |= libc::ECHO);
        let (echo, _) = type_in(&mut l, b"\x16\x03\x16\x7f\n");
        assert_eq!(echo, b"^\x08^C^\x08^?\r\n");
        read(&mut l, 100).unwrap();
        assert_eq!(read(&mut l, 100).unwrap(), b"\x03\x7f\n");
    }

    #[test]
    fn output_processing() {
        let mut l = ld();
        assert_eq!(l.slave_write(b"a\nb\n"), Ok(4));
        let mut b = [0u8; 64];
        let n = l.master_read(&mut b);
        assert_eq!(&b[..n], b"a\r\nb\r\n");
        let mut t = l.termios();
        t.base.c_oflag = libc::OPOST | libc::OCRNL | libc::XTABS;
        l.set_termios(t, &mut Vec::new());
        l.slave_write(b"x\r\tz").unwrap();
        let n = l.master_read(&mut b);
        assert_eq!(&b[..n], b"x\n       z");
        t.base.c_oflag = 0;
        l.set_termios(t, &mut Vec::new());
        l.slave_write(b"raw\n").unwrap();
        let n = l.master_read(&mut b);
        assert_eq!(&b[..n], b"raw\n");
    }

    #[test]
    fn non_canonical_vmin_vtime() {
        let mut l = ld();
        set(&mut l, |t| {
            t.base.c_lflag &= !(libc::ICANON | libc::ECHO);
            t.base.c_cc[libc::VMIN] = 3;
            t.base.c_cc[libc::VTIME] = 0;
        });
        type_in(&mut l, b"x");
        assert!(!l.slave_readable());
        assert_eq!(read(&mut l, 10), Err(Errno::EAGAIN));
        // A reader asking for fewer than VMIN bytes is satisfied by them.
        assert!(read(&mut l, 1).is_ok());
        type_in(&mut l, b"yz");
        assert_eq!(read(&mut l, 10), Err(Errno::EAGAIN));
        type_in(&mut l, b"w");
        assert!(l.slave_readable());
        assert_eq!(read(&mut l, 10).unwrap(), b"yzw");
        // VMIN 0, VTIME 0: never waits.
        set(&mut l, |t| t.base.c_cc[libc::VMIN] = 0);
        assert_eq!(read(&mut l, 10).unwrap(), b"");
        // VMIN 0, VTIME 1: waits for the timer.
        set(&mut l, |t| t.base.c_cc[libc::VTIME] = 1);
        assert_eq!(read(&mut l, 10), Err(Errno::EAGAIN));
        let d = l.take_timer_request().expect("timer armed");
        assert!(!l.slave_readable());
        assert!(l.timer_fired(d));
        assert!(l.slave_readable());
        assert_eq!(read(&mut l, 10).unwrap(), b"");
        // Switching to canonical mode makes pending input a line.
        type_in(&mut l, b"pend");
        set(&mut l, |t| t.base.c_lflag |= libc::ICANON);
        assert_eq!(read(&mut l, 10).unwrap(), b"pend");
    }

    #[test]
    fn flow_control() {
        let mut l = ld();
        type_in(&mut l, b"\x13");
        assert_eq!(l.slave_write(b"x"), Err(Errno::EAGAIN));
        assert!(!l.slave_writable());
        let (echo, _) = type_in(&mut l, b"ab");
        assert!(echo.is_empty());
        let (echo, _) = type_in(&mut l, b"\x11");
        assert_eq!(echo, b"ab");
        assert_eq!(l.slave_write(b"x"), Ok(1));
    }

    #[test]
    fn buffers_are_bounded() {
        let mut l = ld();
        // A canonical line keeps at most 4095 characters and its newline.
        let long = vec![b'a'; 5000];
        let mut sigs = Vec::new();
        assert_eq!(l.master_write(&long, &mut sigs), 5000);
        l.master_write(b"\n", &mut sigs);
        let line = read(&mut l, 10000).unwrap();
        assert_eq!(line.len(), N_TTY_BUF_SIZE);
        assert_eq!(line.last(), Some(&b'\n'));
        // Complete lines nobody reads: the rest waits in the 64 KiB queue.
        set(&mut l, |t| t.base.c_lflag &= !libc::ECHO);
        let lines = b"0123456789abcde\n".repeat(8192);
        let mut n = l.master_write(&lines, &mut sigs);
        assert_eq!(n, QUEUE_SIZE);
        n += l.master_write(&lines[n..], &mut sigs);
        assert_eq!(n, QUEUE_SIZE + N_TTY_BUF_SIZE - 1);
        assert!(!l.master_writable());
        assert_eq!(l.master_write(b"x", &mut sigs), 0);
        read(&mut l, 100).unwrap();
        assert!(l.master_writable());
        // Output stops at 64 KiB.
        l.flush_output();
        let big = vec![b'x'; QUEUE_SIZE + 10];
        assert_eq!(l.slave_write(&big), Ok(QUEUE_SIZE));
        assert_eq!(l.slave_write(b"y"), Err(Errno::EAGAIN));
    }

    #[test]
    fn registry_numbers_and_hangup() {
        let r = PtyRegistry::new();
        let a = r.create(Weak::new(), 0).unwrap();
        let b = r.create(Weak::new(), 0).unwrap();
        assert_eq!((a.index(), b.index()), (0, 1));
        let ma = a.master(r.ptmx_stat());
        // Locked until unlocked.
        assert_eq!(r.open_slave(0, libc::O_RDWR).err(), Some(Errno::EIO));
        a.st().locked = false;
        let s = r.open_slave(0, libc::O_RDWR).unwrap();
        assert_eq!(s.stat().unwrap().st_rdev, libc::makedev(PTS_MAJOR, 0));
        assert_eq!(s.write(b"hi\n", None), Ok(3));
        let mut buf = [0u8; 16];
        assert_eq!(ma.read(&mut buf, None), Ok(4));
        assert_eq!(ma.read(&mut buf, None), Err(Errno::EAGAIN));
        // Last slave closed: buffered output, then EIO and HUP.
        s.write(b"x", None).unwrap();
        drop(s);
        assert!(ma.poll().contains(PollEvents::HUP));
        assert_eq!(ma.read(&mut buf, None), Ok(1));
        assert_eq!(ma.read(&mut buf, None), Err(Errno::EIO));
        // Master closed: a waiting read fails, then the slave reads EOF,
        // writes EIO, and is gone.
        let s = r.open_slave(0, libc::O_RDWR).unwrap();
        assert_eq!(s.read(&mut buf, None), Err(Errno::EAGAIN));
        drop(ma);
        assert_eq!(s.read(&mut buf, None), Err(Errno::EIO));
        assert_eq!(s.read(&mut buf, None), Ok(0));
        assert_eq!(s.write(b"x", None), Err(Errno::EIO));
        assert!(s.poll().contains(PollEvents::HUP));
        assert_eq!(r.open_slave(0, libc::O_RDWR).err(), Some(Errno::ENOENT));
        assert!(!r.indices().contains(&0));
        // Number 0 is reused once everything is closed; 1 is still taken.
        drop((s, a));
        let c = r.create(Weak::new(), 0).unwrap();
        assert_eq!(c.index(), 0);
        drop(b);
    }

    /// Reads a host pipe until it has `want` bytes (5 s at most).
    fn host_read(fd: &OwnedFd, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < deadline {
            let mut p = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                continue;
            }
            let mut b = [0u8; 256];
            match nix::unistd::read(fd, &mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        got
    }

    #[test]
    fn console_relays_host_fds() {
        let vfs = Arc::new(
            crate::kernel::fs::vfs::Vfs::new(
                std::path::Path::new("/"),
                crate::kernel::fs::vfs::RootMode::ReadOnly,
            )
            .unwrap(),
        );
        let k = Kernel::new(vfs, &crate::kernel::KernelConfig::default()).unwrap();
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (slave, console) = attach_console(&k, in_r, out_w).unwrap();
        assert_eq!(slave.path, b"/dev/pts/0");
        assert_eq!(k.ptys.indices(), vec![0]);
        // Host input is typed at the terminal: echoed, then a line.
        nix::unistd::write(&in_w, b"hi\r").unwrap();
        assert_eq!(host_read(&out_r, 4), b"hi\r\n");
        let mut buf = [0u8; 16];
        let deadline = Instant::now() + Duration::from_secs(5);
        let n = loop {
            match slave.ops.read(&mut buf, None) {
                Err(Errno::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                r => break r.unwrap(),
            }
        };
        assert_eq!(&buf[..n], b"hi\n");
        // Output reaches the host, post-processed.
        assert_eq!(slave.ops.write(b"ok\n", None), Ok(3));
        assert_eq!(host_read(&out_r, 4), b"ok\r\n");
        console.set_window_size(30, 100);
        let mut m = LocalMem([0; 8]);
        slave.ops.ioctl(TIOCGWINSZ, 0, &mut m).unwrap();
        assert_eq!(
            (
                WinSize::from_bytes(&m.0).ws_row,
                WinSize::from_bytes(&m.0).ws_col
            ),
            (30, 100)
        );
        // The container side closes: the relay drains and ends.
        slave.ops.write(b"last", None).unwrap();
        drop(slave);
        console.wait();
        assert_eq!(host_read(&out_r, 100), b"last");
        assert!(k.ptys.indices().is_empty());
        // close() with the container side still open: queued output is
        // written, then the slave is hung up.
        let (in_r, _in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (slave, console) = attach_console(&k, in_r, out_w).unwrap();
        assert_eq!(console.index(), 0);
        slave.ops.write(b"bye", None).unwrap();
        console.close();
        assert_eq!(host_read(&out_r, 100), b"bye");
        assert_eq!(slave.ops.read(&mut buf, None), Ok(0));
        assert_eq!(slave.ops.write(b"x", None), Err(Errno::EIO));
    }

    #[test]
    fn console_on_a_host_terminal() {
        let vfs = Arc::new(
            crate::kernel::fs::vfs::Vfs::new(
                std::path::Path::new("/"),
                crate::kernel::fs::vfs::RootMode::ReadOnly,
            )
            .unwrap(),
        );
        let k = Kernel::new(vfs, &crate::kernel::KernelConfig::default()).unwrap();
        let ws = libc::winsize {
            ws_row: 50,
            ws_col: 132,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let host = nix::pty::openpty(&ws, None).unwrap();
        let canon = |fd: &OwnedFd| {
            nix::sys::termios::tcgetattr(fd)
                .unwrap()
                .local_flags
                .contains(nix::sys::termios::LocalFlags::ICANON)
        };
        assert!(canon(&host.slave));
        let (slave, console) = attach_console(
            &k,
            host.slave.try_clone().unwrap(),
            host.slave.try_clone().unwrap(),
        )
        .unwrap();
        // The host terminal is raw while the console runs, and the pty
        // has its size.
        assert!(!canon(&host.slave));
        assert_eq!(
            (
                console.pty().window_size().ws_row,
                console.pty().window_size().ws_col
            ),
            (50, 132)
        );
        // Typed at the host terminal: reaches the container as a line.
        nix::unistd::write(&host.master, b"ls\r").unwrap();
        assert_eq!(host_read(&host.master, 4), b"ls\r\n");
        drop(slave);
        console.wait();
        assert!(canon(&host.slave));
    }
}
