//! The network stack. Work in progress: sockets currently return
//! `EAFNOSUPPORT`/`ENOSYS`; loopback and fd-based links arrive with the
//! network issue.
