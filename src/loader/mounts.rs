//! Mounts from the OCI spec.

use crate::kernel::fs::vfs::Vfs;

/// Applies the spec's mounts to the file namespace (placeholder until the
/// mount work lands: accepts a spec without mounts).
pub fn apply(_vfs: &Vfs, _spec: &oci_spec::runtime::Spec) -> Result<(), String> {
    Ok(())
}
