//! Entry-by-entry description of a directory tree, to compare what hull unpacks with what a
//! peer (umoci) unpacks from the same image.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::Context;

/// What a user can observe about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size for regular files, 0 otherwise.
    pub size: u64,
    /// sha256 of the content for regular files.
    pub content: Option<String>,
    pub link: Option<String>,
    /// (major, minor) for devices.
    pub rdev: Option<u64>,
    /// Extended attributes outside the `security.` and `trusted.` namespaces
    /// (those depend on the host, not the image).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Regular files with more than one name.
    pub nlink: u64,
}

/// Describes every entry under `root` (not `root` itself), keyed by path relative to it.
pub fn snapshot(root: &Path) -> anyhow::Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in rd {
            let e = e?;
            let path = e.path();
            let md = std::fs::symlink_metadata(&path)?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            let content = if ft.is_file() {
                let mut f = std::fs::File::open(&path)?;
                let mut h = hull_oci::Digester::new(hull_oci::Algorithm::Sha256);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(buf.get(..n).unwrap_or_default());
                }
                Some(h.finish().to_string())
            } else {
                None
            };
            let mut xattrs = BTreeMap::new();
            if let Ok(names) = xattr::list(&path) {
                for n in names {
                    let name = n.to_string_lossy().to_string();
                    if name.starts_with("security.") || name.starts_with("trusted.") {
                        continue;
                    }
                    if let Ok(Some(v)) = xattr::get(&path, &n) {
                        xattrs.insert(name, v);
                    }
                }
            }
            let rel = path.strip_prefix(root)?.to_string_lossy().to_string();
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if ft.is_file() { md.len() } else { 0 },
                    content,
                    link: if ft.is_symlink() {
                        Some(std::fs::read_link(&path)?.to_string_lossy().to_string())
                    } else {
                        None
                    },
                    rdev: if ft.is_char_device() || ft.is_block_device() {
                        Some(md.rdev())
                    } else {
                        None
                    },
                    xattrs,
                    nlink: if ft.is_file() { md.nlink() } else { 0 },
                },
            );
            if ft.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// Human-readable differences between two snapshots (empty when equal).
pub fn diff(
    left_name: &str,
    left: &BTreeMap<String, Entry>,
    right_name: &str,
    right: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, l) in left {
        match right.get(p) {
            None => out.push(format!("{p}: only in {left_name}")),
            Some(r) if r != l => out.push(format!("{p}: {left_name} {l:?} != {right_name} {r:?}")),
            _ => {}
        }
    }
    for p in right.keys() {
        if !left.contains_key(p) {
            out.push(format!("{p}: only in {right_name}"));
        }
    }
    out
}
