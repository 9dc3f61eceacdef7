//! Tar entry names as hull interprets them: cleaned lexically, relative to the root, `..`
//! clamped at the top, and whiteout markers recognised (OCI image-spec `layer.md#whiteouts`).
//!
//! Paths are raw bytes joined by `/` (Linux file names need not be UTF-8); the empty path is
//! the root itself.

/// Longest entry or link name accepted (Linux `PATH_MAX`).
pub(crate) const MAX_PATH_BYTES: usize = 4096;
/// Longest single path component accepted (Linux `NAME_MAX`).
pub(crate) const MAX_NAME_BYTES: usize = 255;

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(crate) const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
pub(crate) const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// Cleans a raw entry name the way Go's `filepath.Clean` does for a rooted path, which is
/// what containerd applies before resolving in the root: empty and `.` components vanish, `..`
/// removes the previous component and is dropped at the top, a leading `/` means the root.
/// So `../../etc/passwd` and `/etc/passwd` both name `<root>/etc/passwd`.
pub(crate) fn clean(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.len() > MAX_PATH_BYTES {
        return Err("longer than 4096 bytes");
    }
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c if c.len() > MAX_NAME_BYTES => return Err("has a component longer than 255 bytes"),
            c => parts.push(c),
        }
    }
    Ok(parts.join(&b'/'))
}

/// Splits a cleaned path into its parent and its last component.
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (&[], path),
    }
}

/// `parent/name`, or `name` at the root.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// The proper ancestors of a cleaned path, nearest last, not including the root: `a/b/c`
/// yields `a`, `a/b`.
pub(crate) fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .filter_map(move |(i, _)| path.get(..i))
}

/// Components of a cleaned path.
pub(crate) fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty())
}

/// What a final path component means to the whiteout rules.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker<'a> {
    /// An ordinary name.
    None,
    /// `.wh..wh..opq`: the directory hides everything of the layers below.
    Opaque,
    /// `.wh.NAME`: NAME of the layers below is removed.
    Whiteout(&'a [u8]),
    /// Other `.wh..wh.*` names: AUFS bookkeeping (hardlink directories), never content.
    Meta,
}

pub(crate) fn marker(name: &[u8]) -> Marker<'_> {
    if name == WHITEOUT_OPAQUE {
        Marker::Opaque
    } else if name.starts_with(WHITEOUT_META_PREFIX) {
        Marker::Meta
    } else if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        Marker::Whiteout(target)
    } else {
        Marker::None
    }
}

/// Whether any directory above the entry is AUFS bookkeeping (`.wh..wh.plnk/...`), whose
/// contents are skipped like Docker and containerd do.
pub(crate) fn in_meta_dir(parent: &[u8]) -> bool {
    components(parent).any(|c| c.starts_with(WHITEOUT_META_PREFIX))
}

/// Checks the target of a `.wh.` marker: one plain name, never `.`, `..` or empty.
pub(crate) fn valid_whiteout_target(target: &[u8]) -> bool {
    !matches!(target, b"" | b"." | b"..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> String {
        String::from_utf8(clean(s.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn traversal_and_absolute_names_are_clamped_to_the_root() {
        assert_eq!(c("../../etc/passwd"), "etc/passwd");
        assert_eq!(c("/etc/passwd"), "etc/passwd");
        assert_eq!(c("./a/./b//c/"), "a/b/c");
        assert_eq!(c("a/../../b"), "b");
        assert_eq!(c("a/b/../c"), "a/c");
        assert_eq!(c("./"), "");
        assert_eq!(c("/.."), "");
        assert_eq!(c("..."), "...");
    }

    #[test]
    fn overlong_and_nul_names_are_refused() {
        assert!(clean(&vec![b'a'; 4097]).is_err());
        assert!(clean(&vec![b'a'; 256]).is_err());
        assert!(clean(&[b'a'; 255]).is_ok());
        assert!(clean(b"a\0b").is_err());
    }

    #[test]
    fn parents_and_ancestors() {
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
        let a: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(a, vec![&b"a"[..], &b"a/b"[..]]);
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"d", b"x"), b"d/x");
    }

    #[test]
    fn whiteout_markers() {
        assert_eq!(marker(b".wh..wh..opq"), Marker::Opaque);
        assert_eq!(marker(b".wh..wh.plnk"), Marker::Meta);
        assert_eq!(marker(b".wh.passwd"), Marker::Whiteout(b"passwd"));
        assert_eq!(marker(b".wh.."), Marker::Whiteout(b"."));
        assert_eq!(marker(b"wh.x"), Marker::None);
        assert!(!valid_whiteout_target(b".."));
        assert!(!valid_whiteout_target(b""));
        assert!(in_meta_dir(b"a/.wh..wh.plnk"));
        assert!(!in_meta_dir(b"a/.wh.b"));
    }

    proptest! {
        #[test]
        fn cleaned_names_never_leave_the_root(raw in "[a./]{0,40}") {
            let p = clean(raw.as_bytes()).unwrap();
            prop_assert!(!p.starts_with(b"/"));
            prop_assert!(!p.ends_with(b"/"));
            for comp in p.split(|b| *b == b'/').filter(|_| !p.is_empty()) {
                prop_assert!(comp != b".." && comp != b"." && !comp.is_empty());
            }
            // Idempotent.
            prop_assert_eq!(clean(&p).unwrap(), p);
        }
    }
}
