//! Applying a layer tar to a directory, confined to it.
//!
//! Entries are read with `tar::Archive::entries()` only; everything they ask for is done by
//! hand through [`Root`]: names are cleaned lexically (`..` clamped at the top, see
//! [`crate::names::clean`]), parent directories are resolved in the root by the kernel, and
//! the entry is created relative to that descriptor with `O_EXCL`/`O_NOFOLLOW` semantics after
//! whatever was there is removed. So a symlink in the layer may point anywhere (`var/run ->
//! /run` is legal) and writing through it lands inside the root, and no link already on disk
//! is ever written through.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{LayerError, lossy};
use crate::guard::{GuardState, Guarded, HEADER_BUDGET, Trip};
use crate::names::{self, Marker};
use crate::root::{self, Root};

/// How whiteout markers (OCI image-spec `layer.md#whiteouts`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Flatten onto a merged root: `.wh.NAME` removes NAME, `.wh..wh..opq` empties its
    /// directory. Both act on what earlier layers left only: entries of the same layer survive,
    /// as the spec says.
    Apply,
    /// Keep the layer as an overlayfs upper/lower directory: `.wh.NAME` becomes a 0/0 character
    /// device (without the privilege for `mknod`: an empty file with the `user.overlay.whiteout`
    /// xattr, its directory marked `user.overlay.whiteouts`, as overlayfs reads with
    /// `userxattr`), `.wh..wh..opq` sets `trusted.overlay.opaque=y` on the directory (without
    /// privilege: `user.overlay.opaque=y`).
    Overlay,
}

/// How to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutMode,
    /// Apply uid/gid from the tar (lchown). When false (rootless), ownership is not applied.
    pub apply_ownership: bool,
    /// Create device nodes (needs root); when false they are skipped and counted.
    pub create_devices: bool,
    /// Refuse a layer whose uncompressed tar stream exceeds this many bytes (decompression bomb
    /// guard).
    pub max_bytes: Option<u64>,
}

impl UnpackOptions {
    /// Ownership and devices applied exactly when running as root; no size limit.
    pub fn for_current_user(whiteouts: WhiteoutMode) -> UnpackOptions {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            whiteouts,
            apply_ownership: root,
            create_devices: root,
            max_bytes: None,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries read (whiteouts and skipped entries included).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// What Docker reports as the layer's size: regular file content plus symlink target
    /// lengths (a file written twice in one layer counts twice).
    pub content: u64,
    /// Device nodes not created because `create_devices` was off.
    pub skipped_devices: u64,
    /// Extended attributes not set: `security.*`/`trusted.*` the filesystem or our privilege
    /// refused, `user.*` on special files, and overlayfs' own (`*.overlay.*`), which a layer
    /// must not forge.
    pub skipped_xattrs: u64,
}

/// Unpacks an uncompressed tar stream into `root` (an existing directory). Never touches
/// anything outside `root`; reads the stream to its end (so a hasher wrapping the reader sees
/// every byte) and fails on a stream that ends early, even between entries.
///
/// Directory modes and times are applied once all entries are written (so a read-only
/// directory can still be filled). Sparse files are refused. File contents are not fsynced:
/// whoever commits the directory as a snapshot decides about durability.
pub fn unpack<R: Read>(
    tar: R,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let handle = Root::open(root).map_err(|source| LayerError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    Unpacker::new(handle, opts, false).run(tar)
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }

    fn perm(&self) -> Mode {
        Mode::from_raw_mode(self.mode & 0o7777)
    }
}

/// A directory whose mode and times are set at the end, identified by inode so a directory
/// replaced later in the stream is left alone.
struct DeferredDir {
    path: Vec<u8>,
    dev: u64,
    ino: u64,
    mode: Mode,
    times: Timestamps,
}

enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

pub(crate) struct Unpacker<'o> {
    root: Root,
    opts: &'o UnpackOptions,
    /// Overlay whiteouts as `user.*` xattrs rather than devices and `trusted.*`.
    unprivileged_overlay: bool,
    /// Every path this layer wrote, with its ancestors: whiteouts and opaque directories
    /// spare these (same-layer entries survive).
    touched: HashSet<Vec<u8>>,
    dirs: Vec<DeferredDir>,
    stats: UnpackStats,
    /// The entry being handled, as the stream spells it, for messages.
    current: Option<String>,
    buf: Vec<u8>,
}

type Res<T> = Result<T, LayerError>;

impl<'o> Unpacker<'o> {
    pub(crate) fn new(root: Root, opts: &'o UnpackOptions, unprivileged_overlay: bool) -> Self {
        Unpacker {
            root,
            opts,
            unprivileged_overlay,
            touched: HashSet::new(),
            dirs: Vec::new(),
            stats: UnpackStats::default(),
            current: None,
            buf: vec![0; 128 * 1024],
        }
    }

    pub(crate) fn run<R: Read>(mut self, tar: R) -> Res<UnpackStats> {
        let state = GuardState::new(self.opts.max_bytes, HEADER_BUDGET);
        let mut archive = tar::Archive::new(Guarded::new(tar, state.clone()));
        {
            let mut entries = archive
                .entries()
                .map_err(|e| self.stream_error(e, &state))?;
            loop {
                state.header_phase();
                let next = entries.next();
                state.data_phase();
                let mut entry = match next {
                    None => break,
                    Some(Ok(e)) => e,
                    Some(Err(e)) => return Err(self.stream_error(e, &state)),
                };
                self.stats.entries += 1;
                self.entry(&mut entry, &state)?;
            }
        }
        if state.eof() {
            return Err(LayerError::MissingEnd {
                after: self.current.clone(),
            });
        }
        // The end-of-archive blocks and the record padding after them.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| self.stream_error(e, &state))?;
        self.finish_dirs()?;
        Ok(self.stats)
    }

    fn path(&self) -> String {
        self.current.clone().unwrap_or_default()
    }

    fn stream_error(&self, e: io::Error, state: &GuardState) -> LayerError {
        match state.tripped() {
            Some(Trip::MaxBytes(limit)) => LayerError::TooLarge {
                path: self.path(),
                limit,
            },
            Some(Trip::Headers(limit)) => LayerError::HeadersTooLarge {
                after: self.current.clone(),
                limit,
            },
            None => LayerError::Header {
                after: self.current.clone(),
                source: e,
            },
        }
    }

    fn io(&self, op: &'static str) -> impl FnOnce(Errno) -> LayerError + use<'_> {
        move |e| LayerError::Io {
            op,
            path: self.path(),
            source: e.into(),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> LayerError {
        LayerError::InvalidEntry {
            path: self.path(),
            reason: reason.into(),
        }
    }

    /// Copies exactly `size` bytes of entry data to `out`, failing on a short stream.
    fn copy_data(
        &mut self,
        data: &mut dyn Read,
        out: &mut dyn Write,
        size: u64,
        state: &GuardState,
    ) -> Res<u64> {
        let mut n: u64 = 0;
        loop {
            let got = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match state.tripped() {
                        Some(_) => self.stream_error(e, state),
                        None => LayerError::Io {
                            op: "reading the data of",
                            path: self.path(),
                            source: e,
                        },
                    });
                }
            };
            let chunk = self.buf.get(..got).unwrap_or_default();
            out.write_all(chunk).map_err(|e| LayerError::Io {
                op: "writing",
                path: self.path(),
                source: e,
            })?;
            n = n.saturating_add(got as u64);
        }
        if n != size {
            return Err(LayerError::Truncated {
                path: self.path(),
                expected: size,
                actual: n,
            });
        }
        Ok(n)
    }

    fn drain(&mut self, data: &mut dyn Read, size: u64, state: &GuardState) -> Res<()> {
        self.copy_data(data, &mut io::sink(), size, state)
            .map(|_| ())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, state: &GuardState) -> Res<()> {
        let raw = entry.path_bytes().into_owned();
        self.current = Some(lossy(&raw));
        let path = names::clean(&raw).map_err(|reason| LayerError::InvalidPath {
            path: self.path(),
            reason,
        })?;
        let size = entry.size();
        let mut kind = entry.header().entry_type();
        // Pre-POSIX tars (type NUL, not `0`) mark directories by a trailing slash, as Go reads them.
        if entry.header().as_old().linkflag == [0] && raw.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let pax = self.pax_records(entry)?;
        match kind {
            EntryType::XGlobalHeader => return self.drain(entry, size, state),
            EntryType::GNUSparse => {
                return Err(LayerError::Unsupported {
                    path: self.path(),
                    what: "a GNU sparse file".into(),
                });
            }
            _ => {}
        }
        if pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse.")) {
            return Err(LayerError::Unsupported {
                path: self.path(),
                what: "a PAX sparse file".into(),
            });
        }
        if path.is_empty() {
            if kind != EntryType::Directory {
                return Err(self.invalid("names the root directory but is not a directory"));
            }
            let meta = self.meta(entry.header(), &pax)?;
            self.root_dir(&meta)?;
            return self.drain(entry, size, state);
        }
        let (parent, name) = names::split_parent(&path);
        if names::in_meta_dir(parent) {
            return self.drain(entry, size, state);
        }
        match names::marker(name) {
            Marker::None => {}
            Marker::Meta => return self.drain(entry, size, state),
            Marker::Opaque => {
                self.opaque(parent)?;
                return self.drain(entry, size, state);
            }
            Marker::Whiteout(target) => {
                if !names::valid_whiteout_target(target) {
                    return Err(self.invalid("whiteout of `.`, `..` or an empty name"));
                }
                self.whiteout(parent, target)?;
                return self.drain(entry, size, state);
            }
        }
        if matches!(kind, EntryType::Char | EntryType::Block) && !self.opts.create_devices {
            self.stats.skipped_devices += 1;
            return self.drain(entry, size, state);
        }
        let meta = self.meta(entry.header(), &pax)?;
        let parent_fd = self.parent_dir(parent)?;
        self.touch(&path);
        let pfd = parent_fd.as_fd();
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                self.file(pfd, name, &meta, entry, size, state)
            }
            EntryType::Directory => {
                self.dir(pfd, name, &path, &meta)?;
                self.drain(entry, size, state)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(pfd, name, target, &meta)?;
                self.drain(entry, size, state)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hardlink(pfd, name, target)?;
                self.drain(entry, size, state)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.node(pfd, name, ft, rfs::makedev(major, minor), &meta)?;
                self.drain(entry, size, state)
            }
            other => Err(LayerError::Unsupported {
                path: self.path(),
                what: format!("entry type {:?}", other.as_byte() as char),
            }),
        }
    }

    fn pax_records<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Res<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let exts = match entry.pax_extensions() {
            Ok(Some(exts)) => exts,
            Ok(None) => return Ok(out),
            Err(e) => return Err(self.invalid(format!("reading PAX records: {e}"))),
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.invalid(format!("reading PAX records: {e}")))?;
            out.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
        }
        Ok(out)
    }

    fn meta(&self, header: &tar::Header, pax: &[(Vec<u8>, Vec<u8>)]) -> Res<Meta> {
        let mode = header
            .mode()
            .map_err(|e| self.invalid(format!("bad mode field: {e}")))?;
        let id = |v: io::Result<u64>, what: &str| -> Res<u32> {
            let v = v.map_err(|e| self.invalid(format!("bad {what} field: {e}")))?;
            // u32::MAX is -1, which chown reads as "leave unchanged".
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| self.invalid(format!("{what} {v} is out of range")))
        };
        let uid = id(header.uid(), "uid")?;
        let gid = id(header.gid(), "gid")?;
        let pax_mtime = pax
            .iter()
            .find(|(k, _)| k == b"mtime")
            .and_then(|(_, v)| parse_pax_time(v));
        let mtime = match pax_mtime {
            Some(t) => t,
            None => {
                let secs = header
                    .mtime()
                    .map_err(|e| self.invalid(format!("bad mtime field: {e}")))?;
                Timespec {
                    tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
                    tv_nsec: 0,
                }
            }
        };
        let mut xattrs = Vec::new();
        for (k, v) in pax {
            if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                if name.is_empty() || name.len() > names::MAX_NAME_BYTES || name.contains(&0) {
                    return Err(self.invalid("invalid extended attribute name"));
                }
                xattrs.push((name.to_vec(), v.clone()));
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn touch(&mut self, path: &[u8]) {
        for a in names::ancestors(path) {
            if !self.touched.contains(a) {
                self.touched.insert(a.to_vec());
            }
        }
        self.touched.insert(path.to_vec());
    }

    fn parent_dir(&mut self, parent: &[u8]) -> Res<OwnedFd> {
        let mut created = Vec::new();
        let fd = self
            .root
            .create_dir_all(parent, &mut |p| created.push(p.to_vec()))
            .map_err(self.io("creating the parent directories of"))?;
        for p in created {
            self.touch(&p);
        }
        Ok(fd)
    }

    /// Makes room for a new entry at `name`: an existing directory stays when `keep_dir` (a
    /// directory entry merges into it), anything else is removed. Returns whether a directory
    /// was kept.
    fn clear(&self, dir: BorrowedFd<'_>, name: &[u8], keep_dir: bool) -> Res<bool> {
        let st = root::stat_at(dir, name).map_err(self.io("inspecting"))?;
        match st {
            None => Ok(false),
            Some(st) if root::file_type(&st) == FileType::Directory => {
                if keep_dir {
                    return Ok(true);
                }
                root::remove_all(dir, name)
                    .map_err(self.io("removing the directory replaced by"))?;
                Ok(false)
            }
            Some(_) => {
                rfs::unlinkat(dir, name, AtFlags::empty())
                    .map_err(self.io("removing the file replaced by"))?;
                Ok(false)
            }
        }
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, meta: &Meta) -> Res<()> {
        if self.opts.apply_ownership {
            rfs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(self.io("changing the owner of"))?;
        }
        Ok(())
    }

    fn chown_at(&self, dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Res<()> {
        if self.opts.apply_ownership {
            rfs::chownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(self.io("changing the owner of"))?;
        }
        Ok(())
    }

    fn set_xattrs(&mut self, target: XattrTarget<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Res<()> {
        for (name, value) in xattrs {
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                self.stats.skipped_xattrs += 1;
                continue;
            }
            let res = match target {
                XattrTarget::Fd(fd) => {
                    rfs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty())
                }
                XattrTarget::At(dir, n) => root::proc_path(dir, n).and_then(|p| {
                    rfs::lsetxattr(p.as_c_str(), name.as_slice(), value, XattrFlags::empty())
                }),
            };
            match res {
                Ok(()) => {}
                Err(e) if tolerated_xattr_error(name, e, matches!(target, XattrTarget::At(..))) => {
                    self.stats.skipped_xattrs += 1;
                }
                Err(e) => {
                    return Err(LayerError::InvalidEntry {
                        path: self.path(),
                        reason: format!(
                            "setting extended attribute {:?}: {}",
                            lossy(name),
                            io::Error::from(e)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn root_dir(&mut self, meta: &Meta) -> Res<()> {
        let fd = self.root.dir().map_err(self.io("opening the root for"))?;
        self.chown_fd(fd.as_fd(), meta)?;
        self.set_xattrs(XattrTarget::Fd(fd.as_fd()), &meta.xattrs)?;
        self.defer_dir(fd.as_fd(), Vec::new(), meta)
    }

    fn defer_dir(&mut self, fd: BorrowedFd<'_>, path: Vec<u8>, meta: &Meta) -> Res<()> {
        let st = rfs::fstat(fd).map_err(self.io("inspecting"))?;
        self.dirs.push(DeferredDir {
            path,
            dev: st.st_dev,
            ino: st.st_ino,
            mode: meta.perm(),
            times: meta.times(),
        });
        Ok(())
    }

    fn file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        data: &mut dyn Read,
        size: u64,
        state: &GuardState,
    ) -> Res<()> {
        self.clear(dir, name, false)?;
        let fd = rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(self.io("creating"))?;
        let mut f = File::from(fd);
        let n = self.copy_data(data, &mut f, size, state)?;
        self.stats.bytes = self.stats.bytes.saturating_add(n);
        self.stats.content = self.stats.content.saturating_add(n);
        // chown clears setuid/setgid, so the mode comes after it.
        self.chown_fd(f.as_fd(), meta)?;
        rfs::fchmod(&f, meta.perm()).map_err(self.io("setting the mode of"))?;
        self.set_xattrs(XattrTarget::Fd(f.as_fd()), &meta.xattrs)?;
        rfs::futimens(&f, &meta.times()).map_err(self.io("setting the times of"))?;
        Ok(())
    }

    fn dir(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8], meta: &Meta) -> Res<()> {
        if !self.clear(dir, name, true)? {
            // Owner-only until the end, so the rest of the layer can fill it.
            rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                .map_err(self.io("creating directory"))?;
        }
        let fd = root::open_subdir(dir, name).map_err(self.io("opening directory"))?;
        self.chown_fd(fd.as_fd(), meta)?;
        self.set_xattrs(XattrTarget::Fd(fd.as_fd()), &meta.xattrs)?;
        self.defer_dir(fd.as_fd(), path.to_vec(), meta)
    }

    fn symlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        target: Option<Vec<u8>>,
        meta: &Meta,
    ) -> Res<()> {
        let target = target.unwrap_or_default();
        if target.is_empty() {
            return Err(self.invalid("symlink without a target"));
        }
        if target.len() > names::MAX_PATH_BYTES || target.contains(&0) {
            return Err(self.invalid("symlink target longer than 4096 bytes or with a NUL byte"));
        }
        self.clear(dir, name, false)?;
        rfs::symlinkat(target.as_slice(), dir, name).map_err(self.io("creating symlink"))?;
        self.stats.content = self.stats.content.saturating_add(target.len() as u64);
        self.chown_at(dir, name, meta)?;
        self.set_xattrs(XattrTarget::At(dir, name), &meta.xattrs)?;
        rfs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.io("setting the times of"))?;
        Ok(())
    }

    /// A hardlink's target is resolved in the root like any path, and linked without following
    /// a symlink in its last component (so a link to a symlink is a second name for that
    /// symlink, harmless wherever it points). Nothing outside the root can be reached.
    fn hardlink(&mut self, dir: BorrowedFd<'_>, name: &[u8], target: Option<Vec<u8>>) -> Res<()> {
        let raw = target.unwrap_or_default();
        let shown = lossy(&raw);
        let fail = |source: io::Error| LayerError::HardlinkTarget {
            path: self.path(),
            target: shown.clone(),
            source,
        };
        let tpath = names::clean(&raw)
            .map_err(|reason| fail(io::Error::new(io::ErrorKind::InvalidInput, reason)))?;
        if tpath.is_empty() {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target is the root directory",
            )));
        }
        let (tparent, tname) = names::split_parent(&tpath);
        let tdir = self
            .root
            .resolve_dir(tparent, OFlags::PATH)
            .map_err(|e| fail(e.into()))?;
        let tst =
            rfs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail(e.into()))?;
        if root::file_type(&tst) == FileType::Directory {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target is a directory",
            )));
        }
        if let Some(st) = root::stat_at(dir, name).map_err(self.io("inspecting"))?
            && st.st_dev == tst.st_dev
            && st.st_ino == tst.st_ino
        {
            return Ok(());
        }
        self.clear(dir, name, false)?;
        rfs::linkat(&tdir, tname, dir, name, AtFlags::empty()).map_err(|e| fail(e.into()))?;
        Ok(())
    }

    fn node(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        ft: FileType,
        dev: u64,
        meta: &Meta,
    ) -> Res<()> {
        self.clear(dir, name, false)?;
        rfs::mknodat(dir, name, ft, meta.perm(), dev).map_err(self.io("creating node"))?;
        self.chown_at(dir, name, meta)?;
        // There is no fchmodat(AT_SYMLINK_NOFOLLOW) without fchmodat2; the node was created
        // just now through a descriptor inside the root, so following is moot here.
        rfs::chmodat(dir, name, meta.perm(), AtFlags::empty())
            .map_err(self.io("setting the mode of"))?;
        self.set_xattrs(XattrTarget::At(dir, name), &meta.xattrs)?;
        rfs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.io("setting the times of"))?;
        Ok(())
    }

    fn whiteout(&mut self, parent: &[u8], target: &[u8]) -> Res<()> {
        let full = names::join(parent, target);
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                // Same-layer entries survive their own layer's whiteouts.
                if self.touched.contains(&full) {
                    return Ok(());
                }
                let dir = match self.root.resolve_dir(parent, OFlags::PATH) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                    Err(e) => return Err(self.io("resolving the directory of whiteout")(e)),
                };
                root::remove_all(dir.as_fd(), target).map_err(self.io("applying whiteout"))
            }
            WhiteoutMode::Overlay => {
                let dir = self.parent_dir(parent)?;
                if self.touched.contains(&full) {
                    return Ok(());
                }
                self.touch(&full);
                self.clear(dir.as_fd(), target, false)?;
                if !self.unprivileged_overlay {
                    match rfs::mknodat(
                        &dir,
                        target,
                        FileType::CharacterDevice,
                        Mode::empty(),
                        rfs::makedev(0, 0),
                    ) {
                        Ok(()) => return Ok(()),
                        Err(Errno::PERM) => self.unprivileged_overlay = true,
                        Err(e) => return Err(self.io("creating whiteout device for")(e)),
                    }
                }
                let fd = rfs::openat(
                    &dir,
                    target,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    // Owner-writable: setting a `user.` xattr needs write permission on the
                    // inode, even for its owner.
                    Mode::RUSR | Mode::WUSR,
                )
                .map_err(self.io("creating whiteout file for"))?;
                rfs::fsetxattr(&fd, "user.overlay.whiteout", b"y", XattrFlags::empty())
                    .map_err(self.io("marking whiteout file for"))?;
                let d = rfs::openat(
                    &dir,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(self.io("opening the directory of whiteout"))?;
                rfs::fsetxattr(&d, "user.overlay.whiteouts", b"y", XattrFlags::empty())
                    .map_err(self.io("marking the directory of whiteout"))
            }
        }
    }

    fn opaque(&mut self, parent: &[u8]) -> Res<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                // Empty the directory of everything this layer did not write, descending
                // into the directories it wrote into.
                let mut work = vec![parent.to_vec()];
                while let Some(dpath) = work.pop() {
                    let dir = match self.root.resolve_dir(&dpath, OFlags::RDONLY) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT | Errno::NOTDIR) => continue,
                        Err(e) => return Err(self.io("opening opaque directory")(e)),
                    };
                    let children =
                        root::list_dir(dir.as_fd()).map_err(self.io("listing opaque directory"))?;
                    for child in children {
                        let cpath = names::join(&dpath, &child);
                        if !self.touched.contains(&cpath) {
                            root::remove_all(dir.as_fd(), &child)
                                .map_err(self.io("emptying opaque directory"))?;
                            continue;
                        }
                        let st = root::stat_at(dir.as_fd(), &child)
                            .map_err(self.io("inspecting opaque directory"))?;
                        if st.is_some_and(|st| root::file_type(&st) == FileType::Directory) {
                            work.push(cpath);
                        }
                    }
                }
                Ok(())
            }
            WhiteoutMode::Overlay => {
                let dir = self.parent_dir(parent)?;
                self.touch(parent);
                let d = rfs::openat(
                    &dir,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(self.io("opening opaque directory"))?;
                if !self.unprivileged_overlay {
                    match rfs::fsetxattr(&d, "trusted.overlay.opaque", b"y", XattrFlags::empty()) {
                        Ok(()) => return Ok(()),
                        Err(Errno::PERM) => self.unprivileged_overlay = true,
                        Err(e) => return Err(self.io("marking opaque directory")(e)),
                    }
                }
                rfs::fsetxattr(&d, "user.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(self.io("marking opaque directory"))
            }
        }
    }

    fn finish_dirs(&mut self) -> Res<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for d in dirs {
            self.current = Some(lossy(&d.path));
            let fd = if d.path.is_empty() {
                self.root.dir()
            } else {
                let (p, n) = names::split_parent(&d.path);
                self.root
                    .resolve_dir(p, OFlags::PATH)
                    .and_then(|pfd| root::open_subdir(pfd.as_fd(), n))
            };
            let fd = match fd {
                Ok(fd) => fd,
                // Replaced or removed later in the stream.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(self.io("reopening directory")(e)),
            };
            let st = rfs::fstat(&fd).map_err(self.io("inspecting"))?;
            if st.st_dev != d.dev || st.st_ino != d.ino {
                continue;
            }
            rfs::fchmod(&fd, d.mode).map_err(self.io("setting the mode of"))?;
            rfs::futimens(&fd, &d.times).map_err(self.io("setting the times of"))?;
        }
        Ok(())
    }
}

/// `security.*` and `trusted.*` depend on the host (SELinux, privilege); `user.*` cannot be
/// set on symlinks and device nodes at all.
fn tolerated_xattr_error(name: &[u8], e: Errno, special_file: bool) -> bool {
    let host_dependent = name.starts_with(b"security.") || name.starts_with(b"trusted.");
    (host_dependent && matches!(e, Errno::NOTSUP | Errno::PERM | Errno::ACCESS))
        || (special_file && name.starts_with(b"user.") && e == Errno::PERM)
}

/// A PAX time (`1700000000.5`, `-1.25`) as seconds and nanoseconds.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut tv_sec: i64 = secs.parse().ok()?;
    let mut tv_nsec: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        let place = 10i64.pow(8 - i as u32);
        tv_nsec += i64::from(b - b'0') * place;
    }
    if secs.starts_with('-') && tv_nsec > 0 {
        tv_sec = tv_sec.checked_sub(1)?;
        tv_nsec = 1_000_000_000 - tv_nsec;
    }
    Some(Timespec { tv_sec, tv_nsec })
}

/// Unpacks with the unprivileged overlay representation forced, as a rootless run would get.
#[cfg(test)]
pub(crate) fn unpack_unprivileged<R: Read>(
    tar: R,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let handle = Root::open(root).map_err(|source| LayerError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    Unpacker::new(handle, opts, true).run(tar)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::PathBuf;

    use super::*;
    use crate::testtar::{MTIME, Tar};

    fn opts(whiteouts: WhiteoutMode) -> UnpackOptions {
        UnpackOptions {
            whiteouts,
            apply_ownership: true,
            create_devices: true,
            max_bytes: None,
        }
    }

    fn tmp_root() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        (t, root)
    }

    fn apply(root: &Path, tar: Tar) -> UnpackStats {
        unpack(&tar.bytes()[..], root, &opts(WhiteoutMode::Apply)).unwrap()
    }

    fn overlay(root: &Path, tar: Tar) -> UnpackStats {
        unpack(&tar.bytes()[..], root, &opts(WhiteoutMode::Overlay)).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn names(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        rfs::lgetxattr(p, name, &mut buf[..]).ok().map(|n| {
            buf.truncate(n);
            buf
        })
    }

    #[test]
    fn files_dirs_and_modes_including_setuid_and_sticky() {
        let (_t, root) = tmp_root();
        let stats = apply(
            &root,
            Tar::new()
                .dir("tmp/", 0o1777)
                .dir("usr/bin/", 0o755)
                .file_full("usr/bin/su", b"#!su", 0o4755, 0, 0, MTIME)
                .file_full("usr/bin/wall", b"#!wall", 0o2755, 0, 5, MTIME)
                .file_full("etc/shadow", b"secret", 0o640, 0, 42, MTIME),
        );
        assert_eq!(mode(&root.join("tmp")), 0o1777);
        assert_eq!(mode(&root.join("usr/bin/su")), 0o4755);
        assert_eq!(mode(&root.join("usr/bin/wall")), 0o2755);
        assert_eq!(mode(&root.join("etc/shadow")), 0o640);
        // Implied parents are made 0755.
        assert_eq!(mode(&root.join("etc")), 0o755);
        assert_eq!(std::fs::read(root.join("usr/bin/su")).unwrap(), b"#!su");
        assert_eq!(stats.entries, 5);
        assert_eq!(stats.bytes, 4 + 6 + 6);
    }

    #[test]
    fn ownership_is_applied_before_the_mode_so_setuid_survives() {
        hull_test::require_root!();
        let (_t, root) = tmp_root();
        apply(
            &root,
            Tar::new()
                .file_full("bin/tool", b"x", 0o6755, 1000, 1001, MTIME)
                .dir("home/", 0o755),
        );
        let md = std::fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 1001));
        assert_eq!(md.mode() & 0o7777, 0o6755);
    }

    #[test]
    fn ownership_is_left_alone_when_not_applied() {
        let (_t, root) = tmp_root();
        let o = UnpackOptions {
            apply_ownership: false,
            ..opts(WhiteoutMode::Apply)
        };
        let tar = Tar::new().file_full("f", b"x", 0o644, 4321, 4321, MTIME);
        unpack(&tar.bytes()[..], &root, &o).unwrap();
        let md = std::fs::metadata(root.join("f")).unwrap();
        assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
    }

    #[test]
    fn mtimes_including_directories_written_into_and_pax_fractions() {
        let (_t, root) = tmp_root();
        apply(
            &root,
            Tar::new()
                .dir_full("d/", 0o755, 1_500_000_000)
                .file_full("d/f", b"x", 0o644, 0, 0, 1_400_000_000)
                .pax(&[("mtime", b"1300000000.25")])
                .file("d/precise", b"y")
                .symlink("d/l", "f"),
        );
        let md = std::fs::metadata(root.join("d")).unwrap();
        assert_eq!(md.mtime(), 1_500_000_000);
        let md = std::fs::metadata(root.join("d/f")).unwrap();
        assert_eq!(md.mtime(), 1_400_000_000);
        let md = std::fs::metadata(root.join("d/precise")).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_300_000_000, 250_000_000));
        let md = std::fs::symlink_metadata(root.join("d/l")).unwrap();
        assert_eq!(md.mtime(), MTIME as i64);
    }

    #[test]
    fn pax_times_parse() {
        let t = parse_pax_time(b"12.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 500_000_000));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        let t = parse_pax_time(b"7").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (7, 0));
        assert!(parse_pax_time(b"1.x").is_none());
        assert!(parse_pax_time(b"").is_none());
    }

    #[test]
    fn symlinks_keep_their_target_and_are_not_written_through() {
        let (t, root) = tmp_root();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        apply(
            &root,
            Tar::new()
                .symlink("abs", outside.to_str().unwrap())
                .symlink("var/run", "/run"),
        );
        assert_eq!(
            std::fs::read_link(root.join("abs")).unwrap(),
            outside.as_path()
        );
        assert_eq!(
            std::fs::read_link(root.join("var/run")).unwrap(),
            Path::new("/run")
        );
        // A file entry at the symlink's name replaces the link, never follows it.
        apply(
            &root,
            Tar::new().file("abs", b"new").file("var/run/pid", b"1"),
        );
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(std::fs::read(root.join("abs")).unwrap(), b"new");
        assert!(
            std::fs::symlink_metadata(root.join("abs"))
                .unwrap()
                .is_file()
        );
        // var/run -> /run: the write lands in <root>/run.
        assert_eq!(std::fs::read(root.join("run/pid")).unwrap(), b"1");
    }

    #[test]
    fn hardlinks_share_the_inode_and_missing_targets_name_both_paths() {
        let (_t, root) = tmp_root();
        apply(
            &root,
            Tar::new()
                .file("bin/a", b"data")
                .hardlink("bin/b", "bin/a")
                .hardlink("bin/c", "/bin/b")
                .symlink("bin/s", "a")
                .hardlink("bin/s2", "bin/s"),
        );
        let a = std::fs::metadata(root.join("bin/a")).unwrap();
        let b = std::fs::metadata(root.join("bin/b")).unwrap();
        let c = std::fs::metadata(root.join("bin/c")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.ino(), c.ino());
        assert_eq!(a.nlink(), 3);
        // A link to a symlink is the symlink itself, not its target.
        let s2 = std::fs::symlink_metadata(root.join("bin/s2")).unwrap();
        assert!(s2.file_type().is_symlink());

        let err = unpack(
            &Tar::new().hardlink("x", "missing/file").bytes()[..],
            &root,
            &opts(WhiteoutMode::Apply),
        )
        .unwrap_err();
        let msg = format!("{err}");
        assert!(matches!(err, LayerError::HardlinkTarget { .. }), "{err:?}");
        assert!(
            msg.contains("\"x\"") && msg.contains("missing/file"),
            "{msg}"
        );

        let err = unpack(
            &Tar::new().dir("d/", 0o755).hardlink("x", "d").bytes()[..],
            &root,
            &opts(WhiteoutMode::Apply),
        )
        .unwrap_err();
        assert!(matches!(err, LayerError::HardlinkTarget { .. }), "{err:?}");
    }

    #[test]
    fn a_hardlink_to_itself_is_kept() {
        let (_t, root) = tmp_root();
        apply(&root, Tar::new().file("a", b"1").hardlink("a", "a"));
        assert_eq!(std::fs::read(root.join("a")).unwrap(), b"1");
    }

    #[test]
    fn xattrs_from_pax_records() {
        let (_t, root) = tmp_root();
        let stats = apply(
            &root,
            Tar::new()
                .pax(&[("SCHILY.xattr.user.color", b"blue")])
                .file("f", b"x")
                .pax(&[("SCHILY.xattr.user.kind", b"dir")])
                .dir("d/", 0o755)
                .pax(&[
                    ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                    ("SCHILY.xattr.user.overlay.opaque", b"y"),
                ])
                .dir("o/", 0o755),
        );
        assert_eq!(xattr(&root.join("f"), "user.color").unwrap(), b"blue");
        assert_eq!(xattr(&root.join("d"), "user.kind").unwrap(), b"dir");
        // Overlay metadata cannot be forged by a layer.
        assert_eq!(xattr(&root.join("o"), "trusted.overlay.redirect"), None);
        assert_eq!(xattr(&root.join("o"), "user.overlay.opaque"), None);
        assert_eq!(stats.skipped_xattrs, 2);
    }

    #[test]
    fn file_capabilities_survive_ownership() {
        hull_test::require_root!();
        let (_t, root) = tmp_root();
        // VFS_CAP_REVISION_2 with cap_net_raw permitted+effective.
        let cap: &[u8] = &[
            0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        apply(
            &root,
            Tar::new()
                .pax(&[("SCHILY.xattr.security.capability", cap)])
                .file_full("ping", b"x", 0o755, 1000, 1000, MTIME),
        );
        assert_eq!(
            xattr(&root.join("ping"), "security.capability").unwrap(),
            cap
        );
    }

    #[test]
    fn devices_fifos_and_skipped_devices() {
        hull_test::require_root!();
        let (_t, root) = tmp_root();
        let tar = || {
            Tar::new()
                .node("dev/null", EntryType::Char, 1, 3)
                .node("dev/sda", EntryType::Block, 8, 0)
                .node("run/fifo", EntryType::Fifo, 0, 0)
        };
        apply(&root, tar());
        let md = std::fs::symlink_metadata(root.join("dev/null")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!(md.rdev(), rfs::makedev(1, 3));
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert!(
            std::fs::symlink_metadata(root.join("dev/sda"))
                .unwrap()
                .file_type()
                .is_block_device()
        );
        assert!(
            std::fs::symlink_metadata(root.join("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );

        let (_t2, root2) = tmp_root();
        let o = UnpackOptions {
            create_devices: false,
            ..opts(WhiteoutMode::Apply)
        };
        let stats = unpack(&tar().bytes()[..], &root2, &o).unwrap();
        assert_eq!(stats.skipped_devices, 2);
        assert!(!root2.join("dev").exists());
        assert!(root2.join("run/fifo").exists());
    }

    #[test]
    fn apply_mode_whiteouts_and_opaque_dirs_spare_the_same_layer() {
        let (_t, root) = tmp_root();
        apply(
            &root,
            Tar::new()
                .file("a", b"1")
                .file("b", b"1")
                .file("d/x", b"1")
                .file("d/y", b"1")
                .file("d/sub/old", b"1")
                .file("e/keep", b"1"),
        );
        apply(
            &root,
            Tar::new()
                .file(".wh.a", b"")
                // Same layer: the whiteout does not remove b written alongside it.
                .file("b", b"2")
                .file(".wh.b", b"")
                // Written before the marker, kept.
                .file("d/z", b"2")
                .file("d/.wh..wh..opq", b"")
                .file("d/sub/new", b"2")
                .file(".wh.missing", b""),
        );
        assert!(!root.join("a").exists());
        assert!(!root.join(".wh.a").exists());
        assert_eq!(std::fs::read(root.join("b")).unwrap(), b"2");
        assert_eq!(names(&root.join("d")), vec!["sub", "z"]);
        assert_eq!(names(&root.join("d/sub")), vec!["new"]);
        assert_eq!(names(&root.join("e")), vec!["keep"]);
    }

    #[test]
    fn whiteout_of_a_directory_removes_the_tree() {
        let (_t, root) = tmp_root();
        apply(&root, Tar::new().file("d/a/b/c", b"1").file("d/x", b"1"));
        apply(&root, Tar::new().file(".wh.d", b""));
        assert!(!root.join("d").exists());
    }

    #[test]
    fn overlay_mode_whiteouts_are_devices_and_opaque_is_an_xattr() {
        hull_test::require_root!();
        let (_t, root) = tmp_root();
        overlay(
            &root,
            Tar::new()
                .file("etc/.wh.passwd", b"")
                .dir("usr/", 0o755)
                .file("usr/.wh..wh..opq", b"")
                .file("usr/kept", b"1"),
        );
        let md = std::fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!(md.rdev(), 0);
        assert!(!root.join("etc/.wh.passwd").exists());
        assert_eq!(
            xattr(&root.join("usr"), "trusted.overlay.opaque").unwrap(),
            b"y"
        );
        assert_eq!(names(&root.join("usr")), vec!["kept"]);
    }

    #[test]
    fn overlay_mode_without_privilege_uses_user_xattrs() {
        let (_t, root) = tmp_root();
        let tar = Tar::new()
            .file("etc/.wh.passwd", b"")
            .file("usr/.wh..wh..opq", b"");
        unpack_unprivileged(&tar.bytes()[..], &root, &opts(WhiteoutMode::Overlay)).unwrap();
        let md = std::fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(md.is_file());
        assert_eq!(md.len(), 0);
        assert_eq!(
            xattr(&root.join("etc/passwd"), "user.overlay.whiteout").unwrap(),
            b"y"
        );
        assert_eq!(
            xattr(&root.join("etc"), "user.overlay.whiteouts").unwrap(),
            b"y"
        );
        assert_eq!(
            xattr(&root.join("usr"), "user.overlay.opaque").unwrap(),
            b"y"
        );
        assert_eq!(xattr(&root.join("usr"), "trusted.overlay.opaque"), None);
    }

    #[test]
    fn overlay_mode_same_layer_file_wins_over_its_whiteout() {
        hull_test::require_root!();
        let (_t, root) = tmp_root();
        overlay(
            &root,
            Tar::new()
                .file("a", b"1")
                .file(".wh.a", b"")
                .file(".wh.b", b"")
                .file("b", b"2"),
        );
        assert_eq!(std::fs::read(root.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(root.join("b")).unwrap(), b"2");
    }

    #[test]
    fn replace_file_with_dir_and_dir_with_file() {
        let (_t, root) = tmp_root();
        apply(&root, Tar::new().file("x", b"file").file("y/inner", b"1"));
        apply(
            &root,
            Tar::new()
                .dir("x/", 0o750)
                .file("x/child", b"c")
                .file("y", b"now a file"),
        );
        assert!(root.join("x").is_dir());
        assert_eq!(mode(&root.join("x")), 0o750);
        assert_eq!(std::fs::read(root.join("x/child")).unwrap(), b"c");
        assert_eq!(std::fs::read(root.join("y")).unwrap(), b"now a file");
    }

    #[test]
    fn a_directory_entry_merges_into_an_existing_directory() {
        let (_t, root) = tmp_root();
        apply(&root, Tar::new().file("d/old", b"1"));
        apply(&root, Tar::new().dir("d/", 0o711).file("d/new", b"2"));
        assert_eq!(names(&root.join("d")), vec!["new", "old"]);
        assert_eq!(mode(&root.join("d")), 0o711);
    }

    #[test]
    fn a_directory_symlink_is_replaced_by_a_directory_entry() {
        let (t, root) = tmp_root();
        std::fs::create_dir(t.path().join("elsewhere")).unwrap();
        apply(
            &root,
            Tar::new()
                .symlink("d", "/elsewhere")
                .dir("elsewhere/", 0o755),
        );
        apply(&root, Tar::new().dir("d/", 0o700).file("d/f", b"1"));
        assert!(std::fs::symlink_metadata(root.join("d")).unwrap().is_dir());
        assert!(root.join("d/f").exists());
        assert_eq!(names(&root.join("elsewhere")), Vec::<String>::new());
    }

    #[test]
    fn read_only_directories_are_filled_then_locked() {
        let (_t, root) = tmp_root();
        apply(&root, Tar::new().dir("ro/", 0o555).file("ro/f", b"1"));
        assert_eq!(mode(&root.join("ro")), 0o555);
        assert!(root.join("ro/f").exists());
    }

    #[test]
    fn the_root_entry_sets_the_root_mode() {
        let (_t, root) = tmp_root();
        apply(&root, Tar::new().dir("./", 0o751).file("./f", b"1"));
        assert_eq!(mode(&root), 0o751);
    }

    #[test]
    fn missing_end_of_archive_is_an_error() {
        let (_t, root) = tmp_root();
        let mut bytes = Tar::new().file("f", b"x").bytes();
        bytes.truncate(1024);
        let err = unpack(&bytes[..], &root, &opts(WhiteoutMode::Apply)).unwrap_err();
        assert!(matches!(err, LayerError::MissingEnd { .. }), "{err:?}");
        assert!(err.to_string().contains("\"f\""), "{err}");
    }

    #[test]
    fn the_stream_is_read_to_its_end() {
        struct Counting<'a>(&'a [u8], usize);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1 += n;
                Ok(n)
            }
        }
        let (_t, root) = tmp_root();
        let mut bytes = Tar::new().file("f", b"x").bytes();
        bytes.extend_from_slice(&[0u8; 8192]);
        let mut r = Counting(&bytes[..], 0);
        unpack(&mut r, &root, &opts(WhiteoutMode::Apply)).unwrap();
        assert_eq!(r.1, bytes.len());
    }

    #[test]
    fn max_bytes_counts_the_stream() {
        let (_t, root) = tmp_root();
        let bytes = Tar::new().file("big", &[7u8; 100_000]).bytes();
        let o = UnpackOptions {
            max_bytes: Some(50_000),
            ..opts(WhiteoutMode::Apply)
        };
        let err = unpack(&bytes[..], &root, &o).unwrap_err();
        assert!(
            matches!(err, LayerError::TooLarge { limit: 50_000, ref path } if path == "big"),
            "{err:?}"
        );
    }

    #[test]
    fn the_component_walk_gives_the_same_result_as_openat2() {
        let (t, root) = tmp_root();
        let o = opts(WhiteoutMode::Apply);
        let tar = Tar::new()
            .symlink("var/run", "/run")
            .file("var/run/pid", b"1")
            .symlink("up", "../../../..")
            .file("up/escaped", b"2")
            .file("a/f", b"3")
            .hardlink("l", "up/a/f");
        Unpacker::new(Root::open_manual(&root).unwrap(), &o, false)
            .run(&tar.bytes()[..])
            .unwrap();
        assert_eq!(std::fs::read(root.join("run/pid")).unwrap(), b"1");
        assert_eq!(std::fs::read(root.join("escaped")).unwrap(), b"2");
        assert_eq!(std::fs::read(root.join("l")).unwrap(), b"3");
        assert_eq!(names(t.path()), vec!["root"]);
    }

    #[test]
    fn sparse_entries_are_refused() {
        let (_t, root) = tmp_root();
        let tar = Tar::new()
            .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
            .file("sparse", b"x");
        let err = unpack(&tar.bytes()[..], &root, &opts(WhiteoutMode::Apply)).unwrap_err();
        assert!(matches!(err, LayerError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("sparse"), "{err}");
    }
}
