//! Pipes: a bounded kernel buffer between a read end and a write end.

use super::fs::file::{FileOps, PipeBuffer, PollEvents, Stat};
use super::task::lock;
use super::wait::WaitQueue;
use crate::errno::{Errno, KResult};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Capacity of a pipe (Linux default, 16 pages).
pub const PIPE_BUF_SIZE: usize = 65536;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

static NEXT_INO: AtomicU64 = AtomicU64::new(1000);

#[derive(Debug, Default)]
struct State {
    buf: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

/// The shared pipe object.
#[derive(Debug)]
pub struct Pipe {
    state: Mutex<State>,
    wq: WaitQueue,
    ino: u64,
}

impl Pipe {
    /// A new pipe with one reader and one writer; returns (read end, write end).
    pub fn pair() -> (PipeEnd, PipeEnd) {
        let p = Arc::new(Pipe {
            state: Mutex::new(State {
                buf: VecDeque::new(),
                readers: 1,
                writers: 1,
            }),
            wq: WaitQueue::new(),
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
        });
        (
            PipeEnd {
                pipe: p.clone(),
                write: false,
            },
            PipeEnd {
                pipe: p,
                write: true,
            },
        )
    }
}

/// One end of a pipe.
#[derive(Debug)]
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    write: bool,
}

impl FileOps for PipeEnd {
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        if self.write {
            return Err(Errno::EBADF);
        }
        let mut s = lock(&self.pipe.state);
        if s.buf.is_empty() {
            if s.writers == 0 || buf.is_empty() {
                return Ok(0);
            }
            return Err(Errno::EAGAIN);
        }
        let n = buf.len().min(s.buf.len());
        let (a, b) = s.buf.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        s.buf.drain(..n);
        drop(s);
        self.pipe.wq.notify_all();
        Ok(n)
    }

    fn write(&self, buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        if !self.write {
            return Err(Errno::EBADF);
        }
        let mut s = lock(&self.pipe.state);
        if s.readers == 0 {
            return Err(Errno::EPIPE);
        }
        let room = PIPE_BUF_SIZE - s.buf.len();
        if room == 0 || (buf.len() <= PIPE_BUF && room < buf.len()) {
            return Err(Errno::EAGAIN);
        }
        let n = buf.len().min(room);
        s.buf.extend(&buf[..n]);
        drop(s);
        self.pipe.wq.notify_all();
        Ok(n)
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(Stat {
            st_dev: 0xc,
            st_ino: self.pipe.ino,
            st_nlink: 1,
            st_mode: libc::S_IFIFO | 0o600,
            st_blksize: 4096,
            ..Default::default()
        })
    }

    fn poll(&self) -> PollEvents {
        let s = lock(&self.pipe.state);
        let mut ev = PollEvents::empty();
        if self.write {
            if s.readers == 0 {
                ev |= PollEvents::ERR;
            } else if PIPE_BUF_SIZE - s.buf.len() >= PIPE_BUF {
                ev |= PollEvents::OUT | PollEvents::WRNORM;
            }
        } else {
            if !s.buf.is_empty() {
                ev |= PollEvents::IN | PollEvents::RDNORM;
            }
            if s.writers == 0 {
                ev |= PollEvents::HUP;
            }
        }
        ev
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pipe.wq)
    }

    fn ioctl(&self, cmd: u32, arg: u64, ctx: &mut dyn super::fs::file::IoctlCtx) -> KResult<u64> {
        if cmd == libc::FIONREAD as u32 {
            let n = lock(&self.pipe.state).buf.len() as i32;
            ctx.write_mem(arg, &n.to_le_bytes())?;
            return Ok(0);
        }
        Err(Errno::ENOTTY)
    }

    fn release(&self) {
        let mut s = lock(&self.pipe.state);
        if self.write {
            s.writers -= 1;
        } else {
            s.readers -= 1;
        }
        drop(s);
        self.pipe.wq.notify_all();
    }

    fn proc_name(&self) -> Option<String> {
        Some(format!("pipe:[{}]", self.pipe.ino))
    }

    fn pipe_buffer(&self) -> Option<&dyn PipeBuffer> {
        Some(self)
    }
}

impl PipeBuffer for PipeEnd {
    fn take(&self, max: usize) -> KResult<Vec<u8>> {
        let mut s = lock(&self.pipe.state);
        if s.buf.is_empty() {
            return if s.writers == 0 || max == 0 {
                Ok(Vec::new())
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let n = max.min(s.buf.len());
        let out: Vec<u8> = s.buf.drain(..n).collect();
        drop(s);
        self.pipe.wq.notify_all();
        Ok(out)
    }

    fn peek(&self, max: usize) -> KResult<Vec<u8>> {
        let s = lock(&self.pipe.state);
        if s.buf.is_empty() {
            return if s.writers == 0 || max == 0 {
                Ok(Vec::new())
            } else {
                Err(Errno::EAGAIN)
            };
        }
        Ok(s.buf.iter().take(max).copied().collect())
    }

    fn unread(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut s = lock(&self.pipe.state);
        for &b in data.iter().rev() {
            s.buf.push_front(b);
        }
        drop(s);
        self.pipe.wq.notify_all();
    }

    fn room(&self) -> KResult<usize> {
        let s = lock(&self.pipe.state);
        if s.readers == 0 {
            return Err(Errno::EPIPE);
        }
        Ok(PIPE_BUF_SIZE.saturating_sub(s.buf.len()))
    }
}

impl PipeEnd {
    /// Identity of the pipe (shared by both ends), its buffered bytes, and
    /// which end this is — what a checkpoint records.
    pub fn snapshot(&self) -> (usize, bool, Vec<u8>) {
        let buf = lock(&self.pipe.state).buf.iter().copied().collect();
        (Arc::as_ptr(&self.pipe) as usize, self.write, buf)
    }
}

impl Pipe {
    /// A pipe restored from a checkpoint, holding `buf`, with no ends yet.
    pub fn restored(buf: &[u8]) -> Arc<Pipe> {
        Arc::new(Pipe {
            state: Mutex::new(State {
                buf: buf.iter().copied().collect(),
                readers: 0,
                writers: 0,
            }),
            wq: WaitQueue::new(),
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A new end of a restored pipe.
    pub fn end(self: &Arc<Self>, write: bool) -> PipeEnd {
        let mut s = lock(&self.state);
        if write {
            s.writers += 1;
        } else {
            s.readers += 1;
        }
        PipeEnd {
            pipe: self.clone(),
            write,
        }
    }
}
