//! A deterministic tar of a directory tree, the building block of layer diffs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs as rfs;
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{LayerError, lossy};
use crate::names;
use crate::tarout::{AppendError, OutEntry, Records, TarWriter};

/// Writes a tar of everything below `root` (not `root` itself) to `out`, returning the bytes
/// written. Entries come depth-first with each directory's names in byte order, so the same
/// tree always gives the same bytes. Keeps mode (setuid/setgid/sticky included), numeric
/// uid/gid, mtime in whole seconds, symlink targets, device numbers, fifos, and xattrs
/// (as PAX `SCHILY.xattr.*`); a file with several names is written once and then as hardlinks
/// to that first name. Sockets are left out, as Docker does. Not kept: `security.selinux`
/// (a label of this host, not of the image) and overlayfs' own `*.overlay.*` xattrs.
///
/// The tree is read by path (it is the caller's own directory, not untrusted input); a file
/// that shrinks while being read is an error rather than a corrupt tar.
pub fn write_tar_from_dir<W: Write>(root: &Path, out: W) -> Result<u64, LayerError> {
    let mut w = TarWriter::new(out);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    push_children(root, b"", &mut stack)?;
    while let Some((abs, rel)) = stack.pop() {
        let src = |source: io::Error| LayerError::Source {
            path: abs.clone(),
            source,
        };
        let md = fs::symlink_metadata(&abs).map_err(src)?;
        let ft = md.file_type();
        let xattrs = read_xattrs(&abs)?;
        let mut e = OutEntry {
            path: &rel,
            kind: EntryType::Regular,
            mode: md.mode() & 0o7777,
            uid: u64::from(md.uid()),
            gid: u64::from(md.gid()),
            mtime: u64::try_from(md.mtime()).unwrap_or(0),
            size: 0,
            link: None,
            dev: (0, 0),
            uname: b"",
            gname: b"",
            pax: &xattrs,
        };
        let target;
        let first;
        let mut data: Option<File> = None;
        if ft.is_dir() {
            e.kind = EntryType::Directory;
            push_children(&abs, &rel, &mut stack)?;
        } else if ft.is_file() {
            let key = (md.dev(), md.ino());
            if md.nlink() > 1
                && let Some(f) = links.get(&key)
            {
                first = f.clone();
                e.kind = EntryType::Link;
                e.link = Some(&first);
            } else {
                if md.nlink() > 1 {
                    links.insert(key, rel.clone());
                }
                e.size = md.len();
                data = Some(
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(libc_o_nofollow())
                        .open(&abs)
                        .map_err(src)?,
                );
            }
        } else if ft.is_symlink() {
            target = fs::read_link(&abs).map_err(src)?;
            e.kind = EntryType::Symlink;
            e.link = Some(target.as_os_str().as_bytes());
        } else if ft.is_char_device() || ft.is_block_device() {
            e.kind = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            e.dev = (rfs::major(md.rdev()), rfs::minor(md.rdev()));
        } else if ft.is_fifo() {
            e.kind = EntryType::Fifo;
        } else {
            continue;
        }
        let res = match data.as_mut() {
            Some(f) => w.append(&e, f),
            None => w.append(&e, &mut io::empty()),
        };
        res.map_err(|err| match err {
            AppendError::Write(source) => LayerError::Write {
                path: lossy(&rel),
                source,
            },
            AppendError::Read(source) => LayerError::Source {
                path: abs.clone(),
                source,
            },
            AppendError::Short { actual } => LayerError::Source {
                path: abs.clone(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file shrank while being archived ({actual} of {} bytes)",
                        e.size
                    ),
                ),
            },
        })?;
    }
    w.finish().map_err(|source| LayerError::Write {
        path: "(end of archive)".into(),
        source,
    })
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Pushes the children of `dir` so that the smallest name is popped first.
fn push_children(
    dir: &Path,
    rel: &[u8],
    stack: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<(), LayerError> {
    let src = |source: io::Error| LayerError::Source {
        path: dir.to_path_buf(),
        source,
    };
    let mut kids: Vec<Vec<u8>> = Vec::new();
    for e in fs::read_dir(dir).map_err(src)? {
        kids.push(e.map_err(src)?.file_name().as_bytes().to_vec());
    }
    kids.sort();
    for k in kids.into_iter().rev() {
        let abs = dir.join(OsStr::from_bytes(&k));
        stack.push((abs, names::join(rel, &k)));
    }
    Ok(())
}

fn read_xattrs(p: &Path) -> Result<Records, LayerError> {
    let src = |e: Errno| LayerError::Source {
        path: p.to_path_buf(),
        source: e.into(),
    };
    let mut list = vec![0u8; 1024];
    let n = loop {
        match rfs::llistxattr(p, &mut list[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = rfs::llistxattr_query(p).map_err(src)?;
                list.resize(want.max(list.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(src(e)),
        }
    };
    let mut keys: Vec<&[u8]> = list
        .get(..n)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty())
        .filter(|k| {
            *k != b"security.selinux"
                && !k.starts_with(b"trusted.overlay.")
                && !k.starts_with(b"user.overlay.")
        })
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let mut value = vec![0u8; 256];
        let len = loop {
            match rfs::lgetxattr(p, k, &mut value[..]) {
                Ok(len) => break len,
                Err(Errno::RANGE) => {
                    let want = rfs::lgetxattr_query(p, k).map_err(src)?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                // Removed meanwhile.
                Err(Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(src(e)),
            }
        };
        if len == usize::MAX {
            continue;
        }
        value.truncate(len);
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::unpack::{UnpackOptions, WhiteoutMode, unpack};

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("b/sub")).unwrap();
        fs::write(root.join("b/sub/file"), "content").unwrap();
        fs::write(root.join("a"), "first").unwrap();
        fs::hard_link(root.join("a"), root.join("c-link")).unwrap();
        symlink("/etc/passwd", root.join("s")).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o4755)).unwrap();
        rfs::setxattr(
            root.join("b/sub/file").as_path(),
            "user.k",
            b"v",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
    }

    use std::os::unix::fs::PermissionsExt;

    fn entries(tar: &[u8]) -> Vec<(String, char)> {
        let mut ar = tar::Archive::new(tar);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    e.header().entry_type().as_byte() as char,
                )
            })
            .collect()
    }

    #[test]
    fn output_is_sorted_deterministic_and_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        tree(&src);
        let mut one = Vec::new();
        let n = write_tar_from_dir(&src, &mut one).unwrap();
        assert_eq!(n, one.len() as u64);
        let mut two = Vec::new();
        write_tar_from_dir(&src, &mut two).unwrap();
        assert_eq!(one, two);
        assert_eq!(
            entries(&one),
            vec![
                ("a".to_string(), '0'),
                ("b/".to_string(), '5'),
                ("b/sub/".to_string(), '5'),
                ("b/sub/file".to_string(), '0'),
                ("c-link".to_string(), '1'),
                ("s".to_string(), '2'),
            ]
        );

        let dst = t.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let opts = UnpackOptions::for_current_user(WhiteoutMode::Apply);
        unpack(&one[..], &dst, &opts).unwrap();
        let a = fs::metadata(dst.join("a")).unwrap();
        assert_eq!(a.mode() & 0o7777, 0o4755);
        assert_eq!(a.ino(), fs::metadata(dst.join("c-link")).unwrap().ino());
        assert_eq!(
            fs::read_link(dst.join("s")).unwrap(),
            Path::new("/etc/passwd")
        );
        let mut s = String::new();
        File::open(dst.join("b/sub/file"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "content");
        let mut v = [0u8; 8];
        let n = rfs::getxattr(dst.join("b/sub/file").as_path(), "user.k", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"v");

        // And the unpacked copy archives to the same bytes.
        let mut three = Vec::new();
        write_tar_from_dir(&dst, &mut three).unwrap();
        assert_eq!(one, three);
    }

    #[test]
    fn a_missing_root_names_it() {
        let err = write_tar_from_dir(Path::new("/nonexistent/hull"), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hull"), "{err}");
    }
}
