//! Event system calls: epoll, eventfd, timerfd, signalfd, timers.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use super::table::Row;

/// Table rows of this family, merged into the syscall table.
pub const ROWS: &[Row] = &[];
