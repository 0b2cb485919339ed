//! Mounts from the OCI spec.
