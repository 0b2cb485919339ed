//! Mounts from the OCI spec: `spec.mounts` applied to a sandbox's file
//! namespace, in order (a later mount at the same destination replaces
//! an earlier one).
//!
//! | type | what happens |
//! |---|---|
//! | `tmpfs` | a fresh tmpfs; options `size=` (bytes, or with a `k`/`m`/`g` suffix, or `N%` of RAM), `mode=` (octal), `uid=`, `gid=`, `ro`. At `/dev` it is skipped: the kernel's devfs stays |
//! | `bind` (or any type with the `bind`/`rbind` option) | the host directory or file `source`, confined like the rootfs (its own `O_PATH` root and `openat2(RESOLVE_IN_ROOT)`); writes reach the host, or fail with EROFS with `ro` |
//! | `proc` | the kernel's procfs (at `/proc` already; elsewhere a second mount of it, once the kernel exists) |
//! | `sysfs` | a minimal read-only sysfs ([`crate::kernel::fs::SysFs`]) |
//! | `devpts`, `mqueue`, `cgroup`, `cgroup2`, `devtmpfs` | accepted and ignored (logged at info level) |
//!
//! Other types are refused. Missing parent directories of a destination
//! are created when the root is an overlay (they then exist only in the
//! sandbox). Annotations with the prefix `dev.gvisor.spec.mount.` (gVisor's
//! mount hints) are accepted and ignored with an info log line.

use crate::kernel::fs::vfs::{Creds, RootMode, TmpfsOptions, Vfs};
use crate::kernel::fs::{SysFs, path};
use oci_spec::runtime::{Mount, Spec};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// The prefix of gVisor's mount-hint annotations.
pub const MOUNT_HINT_PREFIX: &str = "dev.gvisor.spec.mount.";

/// Applies the mounts of `spec` to `vfs` (see the module docs). Call it
/// after the kernel is created so that `proc` mounts away from `/proc` can
/// share the kernel's procfs; everything else works either way.
pub fn apply(vfs: &Vfs, spec: &Spec) -> Result<(), String> {
    if let Some(ann) = spec.annotations() {
        let mut hints: Vec<(&String, &String)> = ann
            .iter()
            .filter(|(k, _)| k.starts_with(MOUNT_HINT_PREFIX))
            .collect();
        hints.sort();
        for (k, v) in hints {
            tracing::info!("mount hint {k}={v}: accepted and ignored");
        }
    }
    for m in spec.mounts().iter().flatten() {
        apply_one(vfs, m)?;
    }
    Ok(())
}

/// Options of one mount, parsed.
#[derive(Debug, Default)]
struct Opts {
    read_only: bool,
    bind: bool,
    tmpfs: TmpfsOptions,
}

fn parse_opts(m: &Mount) -> Result<Opts, String> {
    let mut o = Opts::default();
    for opt in m.options().iter().flatten() {
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (k, v) {
            ("ro", None) => o.read_only = true,
            ("rw", None) => o.read_only = false,
            ("bind" | "rbind", None) => o.bind = true,
            ("size", Some(v)) => o.tmpfs.size = Some(parse_size(v)?),
            ("mode", Some(v)) => {
                o.tmpfs.mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("bad tmpfs mode {v:?}"))?,
                )
            }
            ("uid", Some(v)) => {
                o.tmpfs.uid = Some(v.parse().map_err(|_| format!("bad tmpfs uid {v:?}"))?)
            }
            ("gid", Some(v)) => {
                o.tmpfs.gid = Some(v.parse().map_err(|_| format!("bad tmpfs gid {v:?}"))?)
            }
            // Propagation, atime, nosuid/nodev/noexec, nr_inodes, ...: no
            // meaning in the sandbox.
            _ => {}
        }
    }
    o.tmpfs.read_only = o.read_only;
    Ok(o)
}

/// A tmpfs `size=`: bytes, with an optional k/m/g suffix (powers of
/// 1024), or a percentage of RAM.
fn parse_size(v: &str) -> Result<u64, String> {
    let bad = || format!("bad tmpfs size {v:?}");
    if let Some(pct) = v.strip_suffix('%') {
        let pct: u64 = pct.parse().map_err(|_| bad())?;
        let ram = nix::sys::sysinfo::sysinfo()
            .map(|s| s.ram_total())
            .map_err(|e| format!("sysinfo: {e}"))?;
        return Ok(ram / 100 * pct);
    }
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&v[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&v[..i], 1 << 30),
        Some((i, 't' | 'T')) => (&v[..i], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Creates the missing parent directories of `dest` when the root is an
/// overlay (so the change stays in the sandbox).
fn make_parents(vfs: &Vfs, dest: &[u8]) {
    if vfs.root_mode() != RootMode::Overlay {
        return;
    }
    let parent = path::parent(dest);
    let mut cur = Vec::new();
    for c in path::components(parent) {
        cur = path::join(if cur.is_empty() { b"/" } else { &cur }, c);
        if vfs.stat(b"/", &cur, true).is_err()
            && let Err(e) = vfs.mkdir(b"/", &cur, 0o755, &Creds::root())
        {
            tracing::warn!(
                "cannot create mount point parent {}: {e}",
                String::from_utf8_lossy(&cur)
            );
            return;
        }
    }
}

fn apply_one(vfs: &Vfs, m: &Mount) -> Result<(), String> {
    let dest_path = m.destination();
    if !dest_path.is_absolute() {
        return Err(format!(
            "mount destination {} is not absolute",
            dest_path.display()
        ));
    }
    let dest = path::normalize(b"/", dest_path.as_os_str().as_bytes());
    let shown = String::from_utf8_lossy(&dest).into_owned();
    let typ = m.typ().as_deref().unwrap_or("");
    let o = parse_opts(m)?;
    if o.bind || typ == "bind" {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| format!("bind mount at {shown} has no source"))?;
        make_parents(vfs, &dest);
        return vfs
            .mount_bind(&dest, src, o.read_only)
            .map_err(|e| format!("bind mount of {} at {shown}: {e}", src.display()));
    }
    match typ {
        "tmpfs" if dest == b"/dev" => {
            tracing::info!("tmpfs at /dev: the kernel's devfs stays there");
        }
        "tmpfs" => {
            make_parents(vfs, &dest);
            vfs.mount_tmpfs_opts(&dest, &o.tmpfs);
        }
        "proc" => {
            if dest != b"/proc" {
                make_parents(vfs, &dest);
                if vfs.mount_alias(&dest, b"/proc").is_err() {
                    tracing::warn!(
                        "proc at {shown}: no procfs yet (mounts applied before the kernel); skipped"
                    );
                }
            }
        }
        "sysfs" => {
            make_parents(vfs, &dest);
            vfs.mount_synthetic(&dest, Arc::new(SysFs::new()), true);
        }
        "devpts" | "mqueue" | "cgroup" | "cgroup2" | "devtmpfs" => {
            tracing::info!("{typ} mount at {shown}: accepted and ignored");
        }
        other => {
            return Err(format!(
                "unsupported mount type {other:?} at {shown} (source {:?})",
                m.source().as_deref().unwrap_or(Path::new(""))
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use oci_spec::runtime::{MountBuilder, SpecBuilder};

    fn mount(typ: &str, src: Option<&Path>, dst: &str, opts: &[&str]) -> Mount {
        let mut b = MountBuilder::default()
            .typ(typ)
            .destination(dst)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(s) = src {
            b = b.source(s);
        }
        b.build().unwrap()
    }

    fn write(v: &Vfs, p: &str, data: &[u8]) -> Result<(), Errno> {
        let f = v.open(
            b"/",
            p.as_bytes(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            0o644,
            &Creds::root(),
        )?;
        let mut done = 0;
        while done < data.len() {
            done += f.ops.write(&data[done..], Some(done as u64))?;
        }
        Ok(())
    }

    fn read(v: &Vfs, p: &str) -> Vec<u8> {
        let f = v
            .open(b"/", p.as_bytes(), libc::O_RDONLY, 0, &Creds::root())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = f.ops.read(&mut buf, Some(0)).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("50%").unwrap() > 0);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999k").is_err());
    }

    #[test]
    fn spec_mounts_apply() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("data"), b"from the host").unwrap();
        let rw = tempfile::tempdir().unwrap();
        let file = host.path().join("single");
        std::fs::write(&file, b"one file").unwrap();
        let mut ann = std::collections::HashMap::new();
        ann.insert(
            "dev.gvisor.spec.mount.shared.share".to_string(),
            "pod".to_string(),
        );
        let spec = SpecBuilder::default()
            .annotations(ann)
            .mounts(vec![
                mount("tmpfs", None, "/dev", &["mode=755"]),
                mount("proc", Some(Path::new("proc")), "/proc", &[]),
                mount("devpts", Some(Path::new("devpts")), "/dev/pts", &[]),
                mount("sysfs", Some(Path::new("sysfs")), "/sys", &["ro"]),
                mount("cgroup", None, "/sys/fs/cgroup", &["ro"]),
                mount("tmpfs", None, "/small", &["size=16k", "mode=0700"]),
                mount("bind", Some(host.path()), "/deep/ro", &["rbind", "ro"]),
                mount("none", Some(rw.path()), "/rw", &["bind", "rw"]),
                mount("bind", Some(&file), "/etc/single", &["ro"]),
            ])
            .build()
            .unwrap();
        let v = Vfs::new(root.path(), RootMode::Overlay).unwrap();
        apply(&v, &spec).unwrap();

        // tmpfs with size and mode.
        let st = v.stat(b"/", b"/small", true).unwrap();
        assert_eq!(st.st_mode, libc::S_IFDIR | 0o700);
        write(&v, "/small/a", &[7u8; 16 * 1024]).unwrap();
        assert_eq!(write(&v, "/small/b", b"x"), Err(Errno::ENOSPC));
        // Read-only bind: readable, EROFS on writes; parents were made.
        assert_eq!(read(&v, "/deep/ro/data"), b"from the host");
        assert_eq!(write(&v, "/deep/ro/new", b"x"), Err(Errno::EROFS));
        assert_eq!(
            v.mkdir(b"/", b"/deep/ro/d", 0o755, &Creds::root()),
            Err(Errno::EROFS)
        );
        assert_eq!(
            v.unlink(b"/", b"/deep/ro/data", &Creds::root()),
            Err(Errno::EROFS)
        );
        // Read-write bind: writes reach the host.
        write(&v, "/rw/out", b"to the host").unwrap();
        assert_eq!(
            std::fs::read(rw.path().join("out")).unwrap(),
            b"to the host"
        );
        // A single-file bind.
        assert_eq!(read(&v, "/etc/single"), b"one file");
        assert_eq!(write(&v, "/etc/single", b"x"), Err(Errno::EROFS));
        // sysfs, read-only.
        assert!(!read(&v, "/sys/devices/system/cpu/online").is_empty());
        assert!(v.stat(b"/", b"/sys/fs/cgroup", true).unwrap().is_dir());
        assert_eq!(write(&v, "/sys/x", b"1"), Err(Errno::EROFS));
        // The devfs stayed at /dev.
        assert!(v.stat(b"/", b"/dev/null", true).is_ok());
        let m = v.mounts();
        let find = |p: &[u8]| m.iter().find(|x| x.path == p).unwrap().clone();
        assert!(find(b"/deep/ro").read_only);
        assert!(!find(b"/rw").read_only);
        assert_eq!(find(b"/sys").fs_type, "sysfs");
        assert_eq!(find(b"/small").data, "size=16k,mode=700");
        assert_eq!(find(b"/rw").source, "none", "host paths are not shown");
        // The host root is untouched.
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            1,
            "only etc/ on the host"
        );
    }

    #[test]
    fn bad_mounts_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let v = Vfs::new(root.path(), RootMode::Overlay).unwrap();
        for (m, what) in [
            (mount("nfs", None, "/n", &[]), "unsupported"),
            (mount("tmpfs", None, "/t", &["size=huge"]), "size"),
            (mount("tmpfs", None, "/t", &["mode=999"]), "mode"),
            (mount("bind", None, "/b", &[]), "no source"),
            (
                mount("bind", Some(Path::new("/nonexistent/rvisor")), "/b", &[]),
                "bind mount",
            ),
        ] {
            let spec = SpecBuilder::default().mounts(vec![m]).build().unwrap();
            let e = apply(&v, &spec).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
        let rel = MountBuilder::default()
            .typ("tmpfs")
            .destination("relative")
            .build()
            .unwrap();
        let spec = SpecBuilder::default().mounts(vec![rel]).build().unwrap();
        assert!(apply(&v, &spec).unwrap_err().contains("not absolute"));
    }
}
