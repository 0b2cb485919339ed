//! Framing: a frame is a little-endian `u32` payload length followed by a
//! postcard payload of at most [`MAX_PAYLOAD`] bytes. File descriptors ride
//! with a frame as `SCM_RIGHTS` ancillary data, at most [`MAX_FDS`] per
//! frame.
//!
//! The reader never trusts the peer: it checks the length against the cap
//! before allocating anything, grows its buffer only as bytes arrive,
//! rejects truncated frames, trailing bytes and unknown top-level variants
//! with a typed [`FrameError`], and closes any descriptor beyond the cap
//! (descriptors that do not fit its ancillary buffer are discarded by the
//! host kernel and never enter the process).
//!
//! Descriptor passing uses rustix, whose `recvmsg` hands received
//! descriptors over as `OwnedFd`s, so this module stays free of `unsafe`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes of the length header.
pub const HEADER_LEN: usize = 4;

/// The largest payload a frame may carry (1 MiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The most file descriptors one frame may carry.
pub const MAX_FDS: usize = 16;

/// How much of a payload the reader allocates ahead of the bytes it has.
const READ_CHUNK: usize = 64 << 10;

/// Ancillary buffer space for [`MAX_FDS`] descriptors.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// A top-level protocol message: a serde enum whose variant tag leads its
/// postcard encoding.
pub trait Message: Serialize + DeserializeOwned {
    /// The number of variants; a tag at or above it is an unknown variant.
    const VARIANTS: u32;
    /// The type's name, for error messages.
    const NAME: &'static str;
}

/// Why a frame could not be encoded, decoded, sent or received.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length header, or an encoded message, exceeds [`MAX_PAYLOAD`].
    #[error("frame payload of {len} bytes exceeds the {MAX_PAYLOAD}-byte cap")]
    TooLarge {
        /// The announced or encoded payload length.
        len: u64,
    },
    /// The frame ended before the announced length.
    #[error("truncated frame: {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame should have had (header included).
        expected: u64,
        /// Bytes it had.
        got: u64,
    },
    /// Bytes followed the frame or the message inside the payload.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The payload's leading variant tag names no variant.
    #[error("unknown {message} variant {tag}")]
    UnknownVariant {
        /// The message type.
        message: &'static str,
        /// The tag found.
        tag: u32,
    },
    /// The payload is not a valid postcard encoding of the message.
    #[error("malformed payload: {0}")]
    Malformed(postcard::Error),
    /// The message could not be serialised.
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
    /// More than [`MAX_FDS`] file descriptors came (or were to go) with one
    /// frame; the received ones have been closed.
    #[error("more than {MAX_FDS} file descriptors with one frame")]
    TooManyFds,
    /// The peer closed the connection cleanly, between frames.
    #[error("connection closed")]
    Closed,
    /// A host I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as a complete frame (header and payload).
///
/// Fails with [`FrameError::TooLarge`] rather than produce a frame the
/// peer would refuse.
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = postcard::to_extend(msg, vec![0u8; HEADER_LEN]).map_err(FrameError::Encode)?;
    let len = buf.len() - HEADER_LEN;
    let too_large = || FrameError::TooLarge { len: len as u64 };
    if len > MAX_PAYLOAD {
        return Err(too_large());
    }
    let header = u32::try_from(len).map_err(|_| too_large())?.to_le_bytes();
    buf[..HEADER_LEN].copy_from_slice(&header);
    Ok(buf)
}

/// The payload length a header announces, checked against the cap.
pub fn payload_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header);
    match usize::try_from(len) {
        Ok(n) if n <= MAX_PAYLOAD => Ok(n),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
        }),
    }
}

/// Decodes one complete frame, which must be exactly `frame`.
pub fn decode<T: Message>(frame: &[u8]) -> Result<T, FrameError> {
    let Some((header, payload)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Truncated {
            expected: HEADER_LEN as u64,
            got: frame.len() as u64,
        });
    };
    let len = payload_len(*header)?;
    if payload.len() < len {
        return Err(FrameError::Truncated {
            expected: (HEADER_LEN + len) as u64,
            got: frame.len() as u64,
        });
    }
    if payload.len() > len {
        return Err(FrameError::TrailingBytes {
            count: payload.len() - len,
        });
    }
    decode_payload(payload)
}

/// Decodes a frame's payload (the bytes after the header).
pub fn decode_payload<T: Message>(payload: &[u8]) -> Result<T, FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
        });
    }
    if let Some(tag) = leading_varint(payload)
        && tag >= T::VARIANTS
    {
        return Err(FrameError::UnknownVariant {
            message: T::NAME,
            tag,
        });
    }
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { count: rest.len() });
    }
    Ok(msg)
}

/// The `u32` varint (LEB128, as postcard writes enum tags) that `bytes`
/// starts with, if it starts with a well-formed one.
fn leading_varint(bytes: &[u8]) -> Option<u32> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok();
        }
    }
    None
}

/// Sends `msg` as one frame over the stream socket `sock`, with `fds`
/// attached to its first byte.
pub fn send<T: Serialize + ?Sized>(
    sock: impl AsFd,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), FrameError> {
    send_frame(sock, &encode(msg)?, fds)
}

/// Sends an already encoded `frame` over the stream socket `sock`, with
/// `fds` attached to its first byte. Never raises `SIGPIPE`.
pub fn send_frame(sock: impl AsFd, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
    if fds.len() > MAX_FDS {
        return Err(FrameError::TooManyFds);
    }
    let sock = sock.as_fd();
    let mut sent = 0;
    if !fds.is_empty() && !frame.is_empty() {
        let mut space = [MaybeUninit::uninit(); CMSG_SPACE];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(FrameError::TooManyFds);
        }
        sent = retry_intr(|| {
            rustix::net::sendmsg(
                sock,
                &[IoSlice::new(frame)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
        })?;
    }
    while sent < frame.len() {
        let rest = frame.get(sent..).unwrap_or_default();
        match retry_intr(|| rustix::net::send(sock, rest, SendFlags::NOSIGNAL))? {
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            n => sent += n,
        }
    }
    Ok(())
}

/// Receives one frame from `sock` and decodes its payload as a `T`.
///
/// The descriptors that came with the frame are returned with it; on any
/// error they are closed.
pub fn recv<T: Message>(sock: impl AsFd) -> Result<(T, Vec<OwnedFd>), FrameError> {
    let (payload, fds) = recv_frame(sock)?;
    Ok((decode_payload(&payload)?, fds))
}

/// Receives one frame's payload, and the descriptors that came with it,
/// from the stream socket `sock`.
///
/// [`FrameError::Closed`] means the peer closed the connection between
/// frames; a close inside a frame is [`FrameError::Truncated`].
pub fn recv_frame(sock: impl AsFd) -> Result<(Vec<u8>, Vec<OwnedFd>), FrameError> {
    let sock = sock.as_fd();
    let mut fds = FdSink::default();
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = recv_some(sock, &mut header[got..], &mut fds)?;
        fds.check()?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated {
                    expected: HEADER_LEN as u64,
                    got: got as u64,
                }
            });
        }
        got += n;
    }
    let len = payload_len(header)?;
    let mut payload = Vec::with_capacity(len.min(READ_CHUNK));
    while payload.len() < len {
        let start = payload.len();
        let want = (len - start).min(READ_CHUNK);
        payload.resize(start + want, 0);
        let n = recv_some(sock, &mut payload[start..], &mut fds)?;
        fds.check()?;
        payload.truncate(start + n);
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: (HEADER_LEN + len) as u64,
                got: (HEADER_LEN + start) as u64,
            });
        }
    }
    Ok((payload, fds.finish()?))
}

/// The descriptors received while reading one frame, capped.
#[derive(Default)]
struct FdSink {
    fds: Vec<OwnedFd>,
    overflow: bool,
}

impl FdSink {
    fn push(&mut self, fd: OwnedFd) {
        if self.fds.len() < MAX_FDS {
            self.fds.push(fd);
        } else {
            // Dropping closes it.
            self.overflow = true;
        }
    }

    /// Fails as soon as the frame holds too many descriptors (dropping the
    /// sink then closes those it kept).
    fn check(&self) -> Result<(), FrameError> {
        if self.overflow {
            Err(FrameError::TooManyFds)
        } else {
            Ok(())
        }
    }

    fn finish(self) -> Result<Vec<OwnedFd>, FrameError> {
        self.check()?;
        Ok(self.fds)
    }
}

/// One `recvmsg` into `buf`, collecting descriptors (close-on-exec) into
/// `fds`.
fn recv_some(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut FdSink) -> Result<usize, FrameError> {
    let mut space = [MaybeUninit::uninit(); CMSG_SPACE];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let res = rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        match res {
            Ok(msg) => {
                if msg.flags.contains(ReturnFlags::CTRUNC) {
                    // The host kernel discarded what did not fit.
                    fds.overflow = true;
                }
                for cmsg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = cmsg {
                        received.for_each(|fd| fds.push(fd));
                    }
                }
                return Ok(msg.bytes);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
}

/// Runs `f` until it does not fail with `EINTR`.
fn retry_intr<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{Request, Response, WaitStatus};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn raw_frame(len: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = len.to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip_simple() {
        let f = encode(&Request::Pause).unwrap();
        assert_eq!(f.len(), HEADER_LEN + 1);
        assert_eq!(decode::<Request>(&f).unwrap(), Request::Pause);
        let r = Response::WaitStatus(WaitStatus::exited(3));
        assert_eq!(decode::<Response>(&encode(&r).unwrap()).unwrap(), r);
    }

    #[test]
    fn rejects_short_header() {
        for n in 0..HEADER_LEN {
            let err = decode::<Request>(&vec![0; n]).unwrap_err();
            assert!(matches!(err, FrameError::Truncated { got, .. } if got == n as u64));
        }
    }

    #[test]
    fn rejects_oversized_length() {
        for len in [MAX_PAYLOAD as u32 + 1, u32::MAX, 0x8000_0000] {
            let err = decode::<Request>(&raw_frame(len, &[8])).unwrap_err();
            assert!(matches!(err, FrameError::TooLarge { len: l } if l == u64::from(len)));
        }
        // The cap itself is allowed by the header check (then truncated).
        let err = decode::<Request>(&raw_frame(MAX_PAYLOAD as u32, &[8])).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }));
    }

    #[test]
    fn rejects_truncated_payload() {
        let f = encode(&Request::Wait { id: "abc".into() }).unwrap();
        for cut in HEADER_LEN..f.len() {
            let err = decode::<Request>(&f[..cut]).unwrap_err();
            assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
        }
        // A header announcing fewer bytes than the message needs.
        let mut short = f.clone();
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        short.truncate(HEADER_LEN + 3);
        assert!(matches!(
            decode::<Request>(&short).unwrap_err(),
            FrameError::Malformed(_)
        ));
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut f = encode(&Request::Pause).unwrap();
        f.push(0);
        assert!(matches!(
            decode::<Request>(&f).unwrap_err(),
            FrameError::TrailingBytes { count: 1 }
        ));
        // Inside the payload: the header covers bytes the message does not use.
        let g = raw_frame(3, &[8, 0, 0]);
        assert!(matches!(
            decode::<Request>(&g).unwrap_err(),
            FrameError::TrailingBytes { count: 2 }
        ));
    }

    #[test]
    fn rejects_unknown_variants() {
        for tag in [Request::VARIANTS, 200] {
            let mut payload = Vec::new();
            let mut t = tag;
            loop {
                let b = (t & 0x7f) as u8;
                t >>= 7;
                if t == 0 {
                    payload.push(b);
                    break;
                }
                payload.push(b | 0x80);
            }
            let err = decode::<Request>(&raw_frame(payload.len() as u32, &payload)).unwrap_err();
            assert!(
                matches!(err, FrameError::UnknownVariant { message: "Request", tag: found } if found == tag),
                "{err}"
            );
        }
        let err = decode::<Response>(&raw_frame(1, &[Response::VARIANTS as u8])).unwrap_err();
        assert!(matches!(err, FrameError::UnknownVariant { .. }));
        // An unknown nested variant (SignalDelivery) is malformed.
        let mut f = encode(&Request::Signal {
            id: String::new(),
            pid: 0,
            signo: 9,
            mode: crate::ctl::proto::SignalDelivery::Process,
        })
        .unwrap();
        *f.last_mut().unwrap() = 9;
        assert!(matches!(
            decode::<Request>(&f).unwrap_err(),
            FrameError::Malformed(_)
        ));
    }

    #[test]
    fn rejects_empty_payload_and_bad_varint() {
        assert!(matches!(
            decode::<Request>(&raw_frame(0, &[])).unwrap_err(),
            FrameError::Malformed(_)
        ));
        let bad = [0xff; 6];
        assert!(matches!(
            decode::<Request>(&raw_frame(6, &bad)).unwrap_err(),
            FrameError::Malformed(_)
        ));
    }

    #[test]
    fn encode_refuses_oversized_messages() {
        let huge = Request::Wait {
            id: "x".repeat(MAX_PAYLOAD),
        };
        assert!(matches!(
            encode(&huge).unwrap_err(),
            FrameError::TooLarge { .. }
        ));
        let fits = Request::Wait {
            id: "x".repeat(MAX_PAYLOAD - 8),
        };
        let f = encode(&fits).unwrap();
        assert_eq!(decode::<Request>(&f).unwrap(), fits);
    }

    #[test]
    fn stream_round_trip_with_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, w) = UnixStream::pair().unwrap();
        send(&a, &Request::Restore, &[w.as_fd()]).unwrap();
        drop(w);
        let (req, fds) = recv::<Request>(&b).unwrap();
        assert_eq!(req, Request::Restore);
        assert_eq!(fds.len(), 1);
        let mut passed = UnixStream::from(fds.into_iter().next().unwrap());
        passed.write_all(b"hi").unwrap();
        drop(passed);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
        // A big frame goes through intact.
        let big = Request::Wait {
            id: "y".repeat(MAX_PAYLOAD - 16),
        };
        let writer = std::thread::spawn(move || send(&a, &big, &[]).map(|()| a));
        let (got, fds) = recv::<Request>(&b).unwrap();
        assert!(fds.is_empty());
        assert!(matches!(got, Request::Wait { id } if id.len() == MAX_PAYLOAD - 16));
        let a = writer.join().unwrap().unwrap();
        drop(a);
        assert!(matches!(
            recv::<Request>(&b).unwrap_err(),
            FrameError::Closed
        ));
    }

    #[test]
    fn send_refuses_too_many_fds() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fds: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| a.as_fd()).collect();
        assert!(matches!(
            send(&a, &Request::Pause, &fds).unwrap_err(),
            FrameError::TooManyFds
        ));
    }

    #[test]
    fn too_many_fds_are_refused_and_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let (probe, keep) = UnixStream::pair().unwrap();
        // Several messages, each under the cap, together above it.
        let frame = encode(&Request::Pause).unwrap();
        let fds: Vec<BorrowedFd<'_>> = (0..10).map(|_| probe.as_fd()).collect();
        send_frame(&a, &frame[..2], &fds).unwrap();
        send_frame(&a, &frame[2..], &fds).unwrap();
        assert!(matches!(
            recv::<Request>(&b).unwrap_err(),
            FrameError::TooManyFds
        ));
        // Every received copy of `probe` was closed: once ours is gone, the
        // peer sees end of file.
        drop(probe);
        keep.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!((&keep).read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn eof_inside_a_frame_is_truncation() {
        let frame = encode(&Request::Wait { id: "abc".into() }).unwrap();
        for cut in 1..frame.len() {
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(&frame[..cut]).unwrap();
            drop(a);
            let err = recv::<Request>(&b).unwrap_err();
            assert!(matches!(err, FrameError::Truncated { .. }), "{cut}: {err}");
        }
    }

    #[test]
    fn oversized_header_is_refused_before_reading() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            recv::<Request>(&b).unwrap_err(),
            FrameError::TooLarge { .. }
        ));
    }

    #[test]
    fn leading_varint_parses_postcard_tags() {
        assert_eq!(leading_varint(&[]), None);
        assert_eq!(leading_varint(&[5]), Some(5));
        assert_eq!(leading_varint(&[0x80, 1]), Some(128));
        assert_eq!(
            leading_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some(u32::MAX)
        );
        assert_eq!(leading_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(leading_varint(&[0x80; 5]), None);
    }
}
