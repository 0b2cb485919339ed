//! Byte-string path helpers for sandbox paths.
//!
//! Sandbox paths are raw bytes (Linux paths need not be UTF-8). A
//! *normalized* absolute path starts with `/`, has no empty, `.` or `..`
//! components and no trailing slash (except `/` itself). A *relative*
//! normalized path (as handed to a filesystem below a mount point) has no
//! leading slash; `b""` names the filesystem's root.

use crate::errno::{Errno, KResult};

/// Longest path accepted, including the terminating NUL (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest single component (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Most symbolic links followed while resolving one path (Linux's limit).
pub const MAX_SYMLINKS: u32 = 40;

/// The non-empty components of `path`, `.` and `..` included.
pub fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Checks a path's total length and every component's length
/// (ENAMETOOLONG) and that it is not empty (ENOENT).
pub fn check(path: &[u8]) -> KResult<()> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if path.contains(&0) {
        return Err(Errno::EINVAL);
    }
    if components(path).any(|c| c.len() > NAME_MAX) {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// Lexically normalizes `path` against `cwd` (used only where no symlink
/// can intervene, e.g. for a cwd that is already canonical): `.` dropped,
/// `..` removes the previous component and is clamped at `/`.
pub fn normalize(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    if path.first() != Some(&b'/') {
        for c in components(cwd) {
            push_component(&mut out, c);
        }
    }
    for c in components(path) {
        push_component(&mut out, c);
    }
    join_components(&out)
}

fn push_component<'a>(out: &mut Vec<&'a [u8]>, c: &'a [u8]) {
    match c {
        b"." => {}
        b".." => {
            out.pop();
        }
        _ => out.push(c),
    }
}

fn join_components(parts: &[&[u8]]) -> Vec<u8> {
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        v.push(b'/');
        v.extend_from_slice(p);
    }
    v
}

/// `dir` + `/` + `name` for a normalized absolute `dir`.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(dir.len() + 1 + name.len());
    v.extend_from_slice(dir);
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// `rel` + `/` + `name` for a relative normalized path (`b""` = root).
pub fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    let mut v = Vec::with_capacity(rel.len() + 1 + name.len());
    v.extend_from_slice(rel);
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

/// Splits a normalized path (absolute or relative) into parent and last
/// component. The parent of a top-level relative name is `b""`, of a
/// top-level absolute name `b"/"`. `/` and `b""` have no last component.
pub fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (&path[..1], &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

/// The parent of a normalized absolute path (`/` for `/`).
pub fn parent(path: &[u8]) -> &[u8] {
    split_last(path).0
}

/// The last component of a normalized absolute path (empty for `/`).
pub fn basename(path: &[u8]) -> &[u8] {
    split_last(path).1
}

/// The last component exactly as written (`.` and `..` kept), or None for
/// a path of only slashes.
pub fn last_written_component(path: &[u8]) -> Option<&[u8]> {
    components(path).next_back()
}

/// Whether normalized absolute `path` equals `dir` or lies below it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return path.first() == Some(&b'/');
    }
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

/// The part of `path` below `dir` as a relative path (`b""` when equal).
/// `path` must be within `dir` (see [`is_within`]).
pub fn relative_to<'a>(path: &'a [u8], dir: &[u8]) -> &'a [u8] {
    let rest = if dir == b"/" {
        path
    } else {
        &path[dir.len().min(path.len())..]
    };
    let mut i = 0;
    while i < rest.len() && rest[i] == b'/' {
        i += 1;
    }
    &rest[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_clamps_at_root() {
        assert_eq!(normalize(b"/a/b", b"../../../../etc"), b"/etc");
        assert_eq!(normalize(b"/a/b", b"./c/./d/"), b"/a/b/c/d");
        assert_eq!(normalize(b"/", b".."), b"/");
        assert_eq!(normalize(b"/x", b"/y//z/.."), b"/y");
    }

    #[test]
    fn split_and_join() {
        assert_eq!(split_last(b"/a/b"), (&b"/a"[..], &b"b"[..]));
        assert_eq!(split_last(b"/a"), (&b"/"[..], &b"a"[..]));
        assert_eq!(split_last(b"a"), (&b""[..], &b"a"[..]));
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(join(b"/", b"x"), b"/x");
        assert_eq!(join(b"/a", b"x"), b"/a/x");
        assert_eq!(join_rel(b"", b"x"), b"x");
        assert_eq!(join_rel(b"a", b"x"), b"a/x");
    }

    #[test]
    fn within_and_relative() {
        assert!(is_within(b"/tmp/x", b"/tmp"));
        assert!(is_within(b"/tmp", b"/tmp"));
        assert!(!is_within(b"/tmpx", b"/tmp"));
        assert!(is_within(b"/anything", b"/"));
        assert_eq!(relative_to(b"/tmp/a/b", b"/tmp"), b"a/b");
        assert_eq!(relative_to(b"/tmp", b"/tmp"), b"");
        assert_eq!(relative_to(b"/a/b", b"/"), b"a/b");
    }

    #[test]
    fn length_limits() {
        assert_eq!(check(b""), Err(Errno::ENOENT));
        assert_eq!(check(&vec![b'a'; 256]), Err(Errno::ENAMETOOLONG));
        assert!(check(&vec![b'a'; 255]).is_ok());
        let long: Vec<u8> = std::iter::repeat_n(b"/abc".iter().copied(), 1024)
            .flatten()
            .collect();
        assert_eq!(check(&long), Err(Errno::ENAMETOOLONG));
        assert_eq!(last_written_component(b"a/.."), Some(&b".."[..]));
        assert_eq!(last_written_component(b"///"), None);
    }
}
