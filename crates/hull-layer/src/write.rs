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
    write_tree(root, out, &DiffOptions::default(), false).map(|s| s.tar)
}

/// The sizes of a layer [`write_layer_diff`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerSizes {
    /// Bytes of the tar stream (the uncompressed blob's size).
    pub tar: u64,
    /// What Docker reports as the layer's size (`docker history`, `docker images`): the bytes
    /// of its regular files (each inode once) and symlink targets, no tar headers or padding.
    pub content: u64,
}

/// How [`write_layer_diff`] writes a layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: no timestamp in the tar is later than this (BuildKit's
    /// `rewrite-timestamp`), so two builds of the same inputs give the same layer.
    pub clamp_mtime: Option<u64>,
    /// The user namespace the tree was written in, when not the host's: the tar records the
    /// owners its processes saw (the caller's own uid is root inside a rootless build's
    /// container, and must be 0 in the layer), not the host ids on disk.
    pub owners: Option<IdMap>,
}

/// A user namespace's id mappings, read backwards: host ids on disk to the ids a process in
/// the namespace sees. Host ids outside every range show as the overflow id 65534, as the
/// kernel shows them inside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

/// `size` ids from `host` on the host are `container` and up inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// What an unmapped id looks like inside a user namespace (`/proc/sys/kernel/overflowuid`).
const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// The id inside the namespace of host uid `host`.
    pub fn uid(&self, host: u32) -> u32 {
        Self::inside(&self.uids, host)
    }

    /// The id inside the namespace of host gid `host`.
    pub fn gid(&self, host: u32) -> u32 {
        Self::inside(&self.gids, host)
    }

    fn inside(ranges: &[IdRange], host: u32) -> u32 {
        ranges
            .iter()
            .find_map(|r| {
                let off = host.checked_sub(r.host)?;
                (off < r.size).then(|| r.container.saturating_add(off))
            })
            .unwrap_or(OVERFLOW_ID)
    }
}

/// Writes an overlayfs upper directory as an OCI layer: like [`write_tar_from_dir`], with
/// overlay's deletion markers turned into the layer format's — a whiteout (a 0/0 character
/// device, or a file carrying `user.overlay.whiteout` as rootless unpacking makes them) becomes
/// an empty `.wh.NAME` file, and an opaque directory (`trusted.overlay.opaque` or
/// `user.overlay.opaque` = `y`) gets a `.wh..wh..opq` entry first inside it.
pub fn write_layer_diff<W: Write>(
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<LayerSizes, LayerError> {
    write_tree(upper, out, opts, true)
}

/// Whether the overlay xattr `name` (under `trusted.` or `user.`) is set to `y` on `p`.
fn overlay_flag(p: &Path, name: &str) -> bool {
    ["trusted.overlay.", "user.overlay."].iter().any(|ns| {
        let mut v = [0u8; 4];
        matches!(rfs::lgetxattr(p, format!("{ns}{name}").as_str(), &mut v[..]), Ok(n) if v.get(..n) == Some(b"y"))
    })
}

/// Whether `p` (with metadata `md`) is an overlay whiteout.
fn is_whiteout(p: &Path, md: &fs::Metadata) -> bool {
    let ft = md.file_type();
    (ft.is_char_device() && md.rdev() == 0)
        || (ft.is_file() && md.len() == 0 && {
            let mut v = [0u8; 8];
            rfs::lgetxattr(p, "user.overlay.whiteout", &mut v[..]).is_ok()
        })
}

/// Bytes gathered before each write to the output.
const OUT_BUFFER: usize = 256 * 1024;

fn write_tree<W: Write>(
    root: &Path,
    out: W,
    opts: &DiffOptions,
    overlay: bool,
) -> Result<LayerSizes, LayerError> {
    let mut content: u64 = 0;
    // Headers, padding and small files are a few hundred bytes each: buffered, a tree of many
    // small files costs a few large writes instead of three small ones per entry.
    let mut w = TarWriter::new(io::BufWriter::with_capacity(OUT_BUFFER, out));
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack: Vec<Pending> = Vec::new();
    push_children(root, b"", &mut stack)?;
    while let Some(Pending { abs, rel, file }) = stack.pop() {
        let src = |source: io::Error| LayerError::Source {
            path: abs.clone(),
            source,
        };
        // A regular file (as its directory entry says) is opened first and then described
        // through its descriptor: one path lookup instead of three.
        let mut opened = if file { open_file(&abs) } else { None };
        let (md, xattrs) = match &opened {
            Some((f, md)) => (md.clone(), read_xattrs(&abs, Some(f))?),
            None => (
                fs::symlink_metadata(&abs).map_err(src)?,
                read_xattrs(&abs, None)?,
            ),
        };
        let ft = md.file_type();
        let mut e = OutEntry {
            path: &rel,
            kind: EntryType::Regular,
            mode: md.mode() & 0o7777,
            uid: u64::from(opts.owners.as_ref().map_or(md.uid(), |m| m.uid(md.uid()))),
            gid: u64::from(opts.owners.as_ref().map_or(md.gid(), |m| m.gid(md.gid()))),
            mtime: {
                let t = u64::try_from(md.mtime()).unwrap_or(0);
                opts.clamp_mtime.map_or(t, |c| t.min(c))
            },
            size: 0,
            link: None,
            dev: (0, 0),
            uname: b"",
            gname: b"",
            pax: &xattrs,
        };
        let target;
        let first;
        let wh_name;
        let opaque_name;
        let mut data: Option<File> = None;
        let no_records: Records = Vec::new();
        let mut opaque = false;
        if overlay && is_whiteout(&abs, &md) {
            let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
                Some(i) => (
                    rel.get(..=i).unwrap_or_default(),
                    rel.get(i + 1..).unwrap_or_default(),
                ),
                None => (&b""[..], &rel[..]),
            };
            let mut n = parent.to_vec();
            n.extend_from_slice(b".wh.");
            n.extend_from_slice(name);
            wh_name = n;
            e.path = &wh_name;
            e.kind = EntryType::Regular;
            e.mode = 0;
            e.uid = 0;
            e.gid = 0;
            e.pax = &no_records;
        } else if ft.is_dir() {
            e.kind = EntryType::Directory;
            push_children(&abs, &rel, &mut stack)?;
            opaque = overlay && overlay_flag(&abs, "opaque");
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
                content = content.saturating_add(e.size);
                data = Some(match opened.take() {
                    Some((f, _)) => f,
                    None => open_nofollow(&abs, true)
                        .or_else(|_| open_nofollow(&abs, false))
                        .map_err(src)?,
                });
            }
        } else if ft.is_symlink() {
            target = fs::read_link(&abs).map_err(src)?;
            content = content.saturating_add(target.as_os_str().len() as u64);
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
        res.map_err(|err| append_error(err, &rel, &abs, e.size))?;
        if opaque {
            opaque_name = names::join(&rel, b".wh..wh..opq");
            let marker = OutEntry {
                path: &opaque_name,
                kind: EntryType::Regular,
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: e.mtime,
                size: 0,
                link: None,
                dev: (0, 0),
                uname: b"",
                gname: b"",
                pax: &no_records,
            };
            w.append(&marker, &mut io::empty())
                .map_err(|err| append_error(err, &opaque_name, &abs, 0))?;
        }
    }
    let tar = w.finish().map_err(|source| LayerError::Write {
        path: "(end of archive)".into(),
        source,
    })?;
    Ok(LayerSizes { tar, content })
}

fn append_error(err: AppendError, rel: &[u8], abs: &Path, size: u64) -> LayerError {
    match err {
        AppendError::Write(source) => LayerError::Write {
            path: lossy(rel),
            source,
        },
        AppendError::Read(source) => LayerError::Source {
            path: abs.to_path_buf(),
            source,
        },
        AppendError::Short { actual } => LayerError::Source {
            path: abs.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file shrank while being archived ({actual} of {size} bytes)"),
            ),
        },
    }
}

/// Opens `p` for reading without following a symlink; with `noatime`, without updating its
/// access time either (reading a fresh file would otherwise dirty its inode once more).
fn open_nofollow(p: &Path, noatime: bool) -> io::Result<File> {
    let mut flags = rfs::OFlags::NOFOLLOW | rfs::OFlags::NONBLOCK;
    if noatime {
        flags |= rfs::OFlags::NOATIME;
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(p)
}

/// `p` opened, with its metadata, when it is a regular file; `None` when it is not (any more)
/// or cannot be opened, for the caller to look at it by path.
fn open_file(p: &Path) -> Option<(File, fs::Metadata)> {
    // O_NOATIME needs the file's owner or CAP_FOWNER.
    let f = open_nofollow(p, true)
        .or_else(|_| open_nofollow(p, false))
        .ok()?;
    let md = f.metadata().ok()?;
    md.is_file().then_some((f, md))
}

/// An entry waiting to be written.
struct Pending {
    abs: PathBuf,
    rel: Vec<u8>,
    /// Its directory entry says it is a regular file.
    file: bool,
}

/// Pushes the children of `dir` so that the smallest name is popped first.
fn push_children(dir: &Path, rel: &[u8], stack: &mut Vec<Pending>) -> Result<(), LayerError> {
    let src = |source: io::Error| LayerError::Source {
        path: dir.to_path_buf(),
        source,
    };
    let mut kids: Vec<(Vec<u8>, bool)> = Vec::new();
    for e in fs::read_dir(dir).map_err(src)? {
        let e = e.map_err(src)?;
        let file = e.file_type().is_ok_and(|t| t.is_file());
        kids.push((e.file_name().as_bytes().to_vec(), file));
    }
    kids.sort();
    for (k, file) in kids.into_iter().rev() {
        stack.push(Pending {
            abs: dir.join(OsStr::from_bytes(&k)),
            rel: names::join(rel, &k),
            file,
        });
    }
    Ok(())
}

/// The xattrs of `p` (through `fd` when it is open), as PAX records.
fn read_xattrs(p: &Path, fd: Option<&File>) -> Result<Records, LayerError> {
    let src = |e: Errno| LayerError::Source {
        path: p.to_path_buf(),
        source: e.into(),
    };
    let list_into = |buf: &mut [u8]| match fd {
        Some(f) => rfs::flistxattr(f, buf),
        None => rfs::llistxattr(p, buf),
    };
    let list_len = || match fd {
        Some(f) => rfs::flistxattr_query(f),
        None => rfs::llistxattr_query(p),
    };
    let get_into = |k: &[u8], buf: &mut [u8]| match fd {
        Some(f) => rfs::fgetxattr(f, k, buf),
        None => rfs::lgetxattr(p, k, buf),
    };
    let get_len = |k: &[u8]| match fd {
        Some(f) => rfs::fgetxattr_query(f, k),
        None => rfs::lgetxattr_query(p, k),
    };
    let mut list = vec![0u8; 1024];
    let n = loop {
        match list_into(&mut list[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = list_len().map_err(src)?;
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
            match get_into(k, &mut value[..]) {
                Ok(len) => break len,
                Err(Errno::RANGE) => {
                    let want = get_len(k).map_err(src)?;
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
    fn owners_are_written_as_the_user_namespace_saw_them() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("f"), "f").unwrap();
        let md = fs::metadata(root.join("f")).unwrap();
        let owners_in = |map: IdMap| {
            let mut tar = Vec::new();
            let opts = DiffOptions {
                clamp_mtime: None,
                owners: Some(map),
            };
            write_layer_diff(&root, &mut tar, &opts).unwrap();
            let mut ar = tar::Archive::new(&tar[..]);
            let e = ar.entries().unwrap().next().unwrap().unwrap();
            (e.header().uid().unwrap(), e.header().gid().unwrap())
        };
        let range = |container, host, size| IdRange {
            container,
            host,
            size,
        };
        // the caller is root inside; a subordinate range maps 1 and up
        let rootless = IdMap {
            uids: vec![range(0, md.uid(), 1), range(1, md.uid() + 1000, 500)],
            gids: vec![range(0, md.gid(), 1)],
        };
        assert_eq!(owners_in(rootless.clone()), (0, 0));
        assert_eq!(rootless.uid(md.uid() + 1000), 1);
        assert_eq!(rootless.uid(md.uid() + 1499), 500);
        assert_eq!(rootless.uid(md.uid() + 1500), 65534, "past the range");
        // the files of an unmapped owner show as the overflow id, as inside the namespace
        let elsewhere = IdMap {
            uids: vec![range(0, md.uid().wrapping_add(7), 1)],
            gids: vec![range(0, md.gid().wrapping_add(7), 1)],
        };
        assert_eq!(owners_in(elsewhere), (65534, 65534));
    }

    #[test]
    fn a_missing_root_names_it() {
        let err = write_tar_from_dir(Path::new("/nonexistent/hull"), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hull"), "{err}");
    }

    /// A real overlay mount: deletions, an opaque directory and new files in the upper
    /// directory come out as the layer format's whiteouts, and applying that layer onto the
    /// lower tree gives the merged view.
    #[test]
    fn overlay_upper_dirs_become_layers_with_whiteouts() {
        hull_test::require_root!();
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper, work, merged) = (
            dir.path().join("lower"),
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(lower.join("d/deep")).unwrap();
        fs::write(lower.join("a"), "a").unwrap();
        fs::write(lower.join("keep"), "keep").unwrap();
        fs::write(lower.join("d/x"), "x").unwrap();
        fs::write(lower.join("d/deep/y"), "y").unwrap();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            std::ffi::CString::new(data).unwrap().as_c_str(),
        )
        .unwrap();
        let changed = (|| -> io::Result<()> {
            fs::remove_file(merged.join("a"))?;
            fs::remove_dir_all(merged.join("d"))?;
            fs::create_dir(merged.join("d"))?;
            fs::write(merged.join("d/z"), "z")?;
            fs::write(merged.join("b"), "new")?;
            Ok(())
        })();
        rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).unwrap();
        changed.unwrap();
        // an old mtime, to see the clamp
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        fs::File::options()
            .write(true)
            .open(upper.join("b"))
            .unwrap()
            .set_modified(old)
            .unwrap();

        let mut tar = Vec::new();
        write_layer_diff(
            &upper,
            &mut tar,
            &DiffOptions {
                clamp_mtime: Some(5_000),
                owners: None,
            },
        )
        .unwrap();
        assert_eq!(
            entries(&tar),
            vec![
                (".wh.a".to_string(), '0'),
                ("b".to_string(), '0'),
                ("d/".to_string(), '5'),
                ("d/.wh..wh..opq".to_string(), '0'),
                ("d/z".to_string(), '0'),
            ]
        );
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let mtime = e.header().mtime().unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            if name == "b" {
                assert_eq!(mtime, 1_000, "older times are kept");
            } else {
                assert!(mtime <= 5_000, "{name}: {mtime}");
            }
        }
        // the same tree gives the same bytes
        let mut again = Vec::new();
        write_layer_diff(
            &upper,
            &mut again,
            &DiffOptions {
                clamp_mtime: Some(5_000),
                owners: None,
            },
        )
        .unwrap();
        assert!(again == tar);

        // applied onto the lower tree, the layer gives what the mount showed
        let opts = UnpackOptions::for_current_user(WhiteoutMode::Apply);
        unpack(&tar[..], &lower, &opts).unwrap();
        let mut seen = Vec::new();
        let mut stack = vec![lower.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                seen.push(p.strip_prefix(&lower).unwrap().display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        seen.sort();
        assert_eq!(seen, vec!["b", "d", "d/z", "keep"]);
    }
}
