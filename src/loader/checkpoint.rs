//! `Loader<Paused>::checkpoint` and `Loader<Created>::restore`: the
//! lifecycle's Checkpointed state, and the statefile that carries a
//! sandbox from one process to another.
//!
//! A statefile holds the metadata (versions, platform, CPU features, the
//! container's spec), one postcard blob with the kernel's objects and the
//! file namespace, and the memory file's non-zero pages; a checksum covers
//! it all (see `state::statefile`).

use super::{Error, Loader, RootProcess, io_err, kerr};
use crate::kernel::checkpoint::{KernelState, RestoreStdio};
use crate::kernel::fs::snapshot::VfsState;
use crate::kernel::{Kernel, KernelConfig};
use crate::mm::MemoryFile;
use crate::state::statefile::{
    self, MemorySink, MemorySource, Metadata, StatefileReader, StatefileWriter,
};
use crate::state::{Checkpointed, Created, Paused};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// The kernel's part of a statefile.
#[derive(Debug, Serialize, Deserialize)]
struct Blob {
    id: String,
    kernel: KernelState,
    vfs: VfsState,
}

/// What a checkpoint wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Bytes written.
    pub bytes: u64,
    /// Bytes of memory saved (zero pages elided).
    pub memory_bytes: u64,
}

struct MemSource<'a>(&'a MemoryFile);

impl MemorySource for MemSource<'_> {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn data_ranges(&self) -> Vec<(u64, u64)> {
        self.0.data_ranges()
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        self.0.read(off, buf)
    }
}

struct MemSink<'a>(&'a MemoryFile);

impl MemorySink for MemSink<'_> {
    fn write(&mut self, off: u64, data: &[u8]) -> std::io::Result<()> {
        // Untrusted offsets: stay inside the memory file.
        if off
            .checked_add(data.len() as u64)
            .is_none_or(|e| e > self.0.size())
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "memory run outside the memory file",
            ));
        }
        self.0.write(off, data);
        Ok(())
    }
}

fn spec_json(spec: &oci_spec::runtime::Spec) -> Result<String, Error> {
    serde_json::to_string(spec).map_err(|e| Error::Spec(e.to_string()))
}

impl Loader<Paused> {
    /// Saves the paused sandbox to `image`. On failure the sandbox is left
    /// paused and intact.
    pub fn checkpoint(
        self,
        image: &mut dyn std::io::Write,
    ) -> Result<(Loader<Checkpointed>, CheckpointSummary), (Self, Error)> {
        match self.write_statefile(image) {
            Ok(summary) => Ok((self.into_state(), summary)),
            Err(e) => Err((self, e)),
        }
    }

    fn write_statefile(&self, image: &mut dyn std::io::Write) -> Result<CheckpointSummary, Error> {
        let k = &self.inner.kernel;
        if !crate::kernel::task::lock(&self.inner.subs).is_empty() {
            return Err(Error::Unsupported(
                "checkpoint of a sandbox with sub-containers".into(),
            ));
        }
        k.quiesce()
            .map_err(kerr("checkpoint: stopping every task"))?;
        let res = (|| {
            let kernel = k.save().map_err(kerr("checkpoint: saving the kernel"))?;
            let vfs = k
                .vfs
                .save()
                .map_err(kerr("checkpoint: saving the file system"))?;
            let blob = postcard::to_stdvec(&Blob {
                id: self.inner.id.clone(),
                kernel,
                vfs,
            })
            .map_err(|e| Error::Spec(format!("checkpoint: encoding: {e}")))?;
            let meta = Metadata::current(
                &self.inner.config.platform.to_string(),
                vec![(self.inner.id.clone(), spec_json(&self.inner.spec)?)],
            );
            let w = StatefileWriter::new(image, &meta).map_err(io_err("checkpoint: writing"))?;
            let w = w.kernel(&blob).map_err(io_err("checkpoint: writing"))?;
            let w = w
                .memory(&MemSource(&k.mf))
                .map_err(io_err("checkpoint: writing memory"))?;
            let s = w.finish().map_err(io_err("checkpoint: writing"))?;
            Ok(CheckpointSummary {
                bytes: s.bytes,
                memory_bytes: s.memory_bytes,
            })
        })();
        k.end_quiesce();
        res
    }
}

impl Loader<Created> {
    /// Restores a sandbox saved by `checkpoint` into this (unstarted)
    /// loader's place: its kernel is replaced by the saved one, whose tasks
    /// come back paused; this loader's stdio becomes the containers'.
    /// Version, CPU-feature and spec mismatches are typed errors naming
    /// what differs.
    pub fn restore(self, image: &mut dyn std::io::Read) -> Result<Loader<Paused>, Error> {
        let mut inner = self.inner;
        let (meta, mut reader) = StatefileReader::open(image).map_err(statefile_err)?;
        let current = Metadata::current(&inner.config.platform.to_string(), Vec::new());
        meta.check_compatible(&current).map_err(statefile_err)?;
        let (_, saved_spec) = meta
            .containers
            .first()
            .cloned()
            .ok_or_else(|| Error::Spec("statefile names no container".into()))?;
        let spec: oci_spec::runtime::Spec = serde_json::from_str(&saved_spec)
            .map_err(|e| Error::Spec(format!("statefile spec: {e}")))?;
        let blob: Blob = postcard::from_bytes(&reader.kernel().map_err(statefile_err)?)
            .map_err(|e| Error::Spec(format!("statefile kernel state: {e}")))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Spec("statefile spec has no root".into()))?;
        let vfs = Arc::new(
            crate::kernel::fs::vfs::Vfs::restore(root.path(), &blob.vfs)
                .map_err(io_err("restore: reopening the file system"))?,
        );
        let kcfg = KernelConfig {
            strace: inner.config.strace,
            hostname: String::new(),
        };
        let kernel =
            Kernel::new(vfs.clone(), &kcfg).map_err(io_err("restore: starting the kernel"))?;
        vfs.attach_procfs(
            &blob.vfs,
            Arc::new(crate::kernel::proc::ProcFs::new(Arc::downgrade(&kernel))),
        );
        reader
            .memory(&mut MemSink(&kernel.mf))
            .map_err(statefile_err)?;
        reader.finish().map_err(statefile_err)?;
        let RootProcess { stdio, .. } = inner
            .root
            .take()
            .ok_or_else(|| Error::Spec("restore: this loader has no stdio left".into()))?;
        let files = super::stdio_files(stdio);
        let stdio = RestoreStdio {
            stdin: files[0].clone(),
            stdout: files[1].clone(),
        };
        crate::kernel::checkpoint::restore(&kernel, &blob.kernel, &stdio)
            .map_err(kerr("restore"))?;
        kernel.vfs.release_restore_pins();
        inner.kernel.kill_all();
        inner.kernel = kernel;
        inner.spec = spec;
        inner.id = blob.id;
        Ok(Loader {
            inner,
            _state: PhantomData,
        })
    }
}

fn statefile_err(e: statefile::StatefileError) -> Error {
    Error::Statefile(e.to_string())
}
