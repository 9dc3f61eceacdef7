//! What a user can see of a directory tree, for comparisons.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: String },
    Char { rdev: u64 },
    Block { rdev: u64 },
    Fifo,
}

/// Every path below `root` (not `root` itself), relative, with what is there.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let node = if ft.is_dir() {
                stack.push(p.clone());
                Node::Dir { mode }
            } else if ft.is_file() {
                Node::File {
                    mode,
                    content: std::fs::read(&p).unwrap(),
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                }
            } else if ft.is_char_device() {
                Node::Char { rdev: md.rdev() }
            } else if ft.is_block_device() {
                Node::Block { rdev: md.rdev() }
            } else {
                Node::Fifo
            };
            out.insert(rel, node);
        }
    }
    out
}

/// Sorted names directly in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
