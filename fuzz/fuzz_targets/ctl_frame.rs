//! Fuzzes the control socket's frame decoder and request dispatch: any
//! bytes must decode to a request or give a typed `FrameError`, never a
//! panic, and a decoded request must go through the server's dispatcher
//! (descriptor-count check, panic containment) and yield an encodable
//! response.
#![no_main]

use std::os::fd::OwnedFd;

use libfuzzer_sys::fuzz_target;
use rvisor::ctl::frame::{self, FrameError};
use rvisor::ctl::server::{Handler, dispatch};
use rvisor::ctl::{Request, Response};

/// Answers everything with `Ok`.
struct NoOp;

impl Handler for NoOp {
    fn handle(&self, _req: Request, _fds: Vec<OwnedFd>) -> (Response, Vec<OwnedFd>) {
        (Response::Ok, Vec::new())
    }
}

fuzz_target!(|data: &[u8]| {
    match frame::decode::<Request>(data) {
        Ok(req) => {
            let _ = req.name();
            // What decoded encodes again, to a request that decodes the
            // same (unless the spec's JSON grew past the cap on the way).
            match frame::encode(&req) {
                Ok(again) => assert_eq!(frame::decode::<Request>(&again).ok(), Some(req.clone())),
                Err(FrameError::TooLarge { .. }) => {}
                Err(e) => panic!("a decoded request does not encode: {e}"),
            }
            let (resp, fds) = dispatch(&NoOp, req, Vec::new());
            assert!(fds.is_empty());
            frame::encode(&resp).expect("responses encode");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = frame::decode_payload::<Request>(data);
    let _ = frame::decode::<Response>(data);
});
