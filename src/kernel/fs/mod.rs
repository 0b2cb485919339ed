//! The virtual filesystem: open files, the path-based namespace and the
//! filesystems mounted in it (host root, overlay, tmpfs, devfs).
//!
//! [`vfs::Vfs`] is the entry point: it resolves sandbox paths (confined to
//! the sandbox root), checks permissions against [`vfs::Creds`] and hands
//! each operation to the filesystem mounted there.

pub mod dev;
pub mod file;
pub mod host;
pub mod lock;
pub mod overlay;
pub mod path;
pub mod snapshot;
pub mod sysfs;
pub mod tmpfs;
pub mod vfs;

pub use dev::DevFs;
pub use file::{DirEntry, FileOps, MmapSource, OpenFile, PollEvents, Stat};
pub use host::{host_stream, host_stream_file};
pub use sysfs::SysFs;
pub use tmpfs::Tmpfs;
pub use vfs::{Creds, MountInfo, RootMode, StatFs, SyntheticFs, TmpfsOptions, Vfs};
