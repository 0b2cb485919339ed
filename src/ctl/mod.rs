//! The control socket (requests, responses, framing, server and client).
//!
//! Work in progress: the lifecycle and control protocol arrive with the
//! control-server issue. Until then this module only fixes the socket's
//! address convention.

/// Abstract socket name of sandbox `id`'s control socket, as runsc names it.
pub fn control_socket_addr(id: &str) -> String {
    format!("\0runsc-sandbox.{id}")
}
