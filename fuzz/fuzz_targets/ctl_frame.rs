//! Fuzzes the control socket's frame decoder and request dispatch: any
//! bytes must decode to a request or give a typed `FrameError`, never a
//! panic, and a decoded request must go through the server's dispatcher
//! (descriptor-count check, panic containment) to a real sandbox handler
//! whose loader is in the Created state, and yield an encodable response.
#![no_main]

use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rvisor::ctl::frame::{self, FrameError};
use rvisor::ctl::sandbox::SandboxHandler;
use rvisor::ctl::server::{Handler, dispatch};
use rvisor::ctl::{Request, Response};

/// A sandbox in the Created state (its program never starts: StartRoot and
/// Destroy are not passed on, so every run sees the same state).
fn sandbox() -> &'static Arc<SandboxHandler> {
    static H: OnceLock<Arc<SandboxHandler>> = OnceLock::new();
    H.get_or_init(|| {
        let null = || -> OwnedFd { std::fs::File::open("/dev/null").expect("/dev/null").into() };
        let spec = rvisor::simple_spec("/", "/", &["/bin/true"], &[]).expect("spec");
        let args = rvisor::Args { spec, config: rvisor::Config::default(), stdio: [null(), null(), null()] };
        SandboxHandler::new(rvisor::Loader::new(args).expect("loader"), None)
    })
}

/// Passes requests to the sandbox, except the ones that would change its
/// state for the runs that follow.
struct Fuzzed;

impl Handler for Fuzzed {
    fn handle(&self, req: Request, fds: Vec<OwnedFd>) -> (Response, Vec<OwnedFd>) {
        match req {
            Request::StartRoot | Request::Destroy { .. } | Request::Wait { .. } | Request::WaitPid { .. } => {
                (Response::Ok, Vec::new())
            }
            req => sandbox().handle(req, fds),
        }
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
            let (resp, fds) = dispatch(&Fuzzed, req, Vec::new());
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
