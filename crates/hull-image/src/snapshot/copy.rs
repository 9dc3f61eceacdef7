//! The copying snapshotter: a layer chain applied into a plain directory, and the changes made
//! there turned back into an overlayfs-format upper directory.
//!
//! Everything is done with `*at` calls relative to directory descriptors opened with
//! `O_NOFOLLOW`, and paths inside a tree are opened with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`:
//! a symlink a build step leaves in the tree is copied as a symlink and never followed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::error::{ImageError, Result};

/// What a path looked like when the snapshot was prepared.
struct Node {
    ino: u64,
    /// Status change time in nanoseconds.
    ctime: i128,
    kind: FileType,
    /// For a directory: its inode generation (see [`generation`]).
    generation: u64,
    /// For a directory: its entries by name.
    children: HashMap<Vec<u8>, Node>,
}

/// Every path of a freshly prepared tree with its inode number, change time and type, to
/// find what a build step changed. About 150 bytes a path, in memory.
pub(crate) struct Record {
    root: Node,
    paths: usize,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Record({} paths)", self.paths)
    }
}

/// Applies `layers` (bottom first; overlayfs-format directories) to the empty directory
/// `merged`, and records the result.
pub(crate) fn prepare(layers: &[PathBuf], merged: &Path) -> Result<Record> {
    let privileged = rustix::process::geteuid().is_root();
    let mroot = open_dir_path(merged)?;
    for layer in layers {
        let lroot = open_dir_path(layer)?;
        let mut apply = Apply {
            layer,
            merged,
            privileged,
        };
        apply.dir(lroot.as_fd(), mroot.as_fd(), &[])?;
    }
    let mut paths = 0usize;
    let mut newest = i128::MIN;
    let st = rfs::fstat(&mroot).map_err(fail(merged, b"", "inspecting"))?;
    let mut root = node(&st);
    record_dir(
        merged,
        mroot.as_fd(),
        &[],
        &mut root,
        &mut paths,
        &mut newest,
    )?;
    settle(newest);
    Ok(Record { root, paths })
}

/// Waits until a change made from now on gets a change time later than `newest`.
///
/// Filesystems stamp changes with the coarse clock, which may lag the precise one by a timer
/// tick (up to 10 ms at HZ=100); a change in the same tick as the copy would otherwise keep its
/// recorded ctime. (Since Linux 6.13 multigrain timestamps already guarantee a later ctime for
/// an inode whose ctime was read, as recording does, but not every filesystem has them.)
fn settle(newest: i128) {
    const TICK_NS: i128 = 20_000_000;
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return;
    };
    let wait = newest
        .saturating_add(TICK_NS)
        .saturating_sub(i128::try_from(now.as_nanos()).unwrap_or(i128::MAX));
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(u64::try_from(wait).unwrap_or(0)));
    }
}

fn node(st: &Stat) -> Node {
    Node {
        ino: st.st_ino,
        ctime: i128::from(st.st_ctime)
            .saturating_mul(1_000_000_000)
            .saturating_add(i128::from(st.st_ctime_nsec)),
        kind: FileType::from_raw_mode(st.st_mode),
        generation: 0,
        children: HashMap::new(),
    }
}

/// The inode's generation (`FS_IOC_GETVERSION`), 0 where the filesystem keeps none. ext4 and
/// xfs reuse a freed inode number at once, so `rm -rf d && mkdir d` often gives the new `d`
/// the old number (and, within a clock tick, the old birth time); the generation is drawn
/// anew for every inode, which tells a directory made again (opaque in overlayfs) from one
/// changed in place.
fn generation(fd: BorrowedFd<'_>) -> u64 {
    use rustix::ioctl::{Opcode, Updater, ioctl, opcode};
    const FS_IOC_GETVERSION: Opcode = opcode::read::<std::ffi::c_long>(b'v', 1);
    let mut v: std::ffi::c_long = 0;
    // SAFETY: the opcode is FS_IOC_GETVERSION (`_IOR('v', 1, long)`); filesystems write an
    // int or at most the long it declares, into `v`, which is a long and initialized.
    let got = unsafe { ioctl(fd, Updater::<FS_IOC_GETVERSION, _>::new(&mut v)) };
    match got {
        Ok(()) => u64::from_ne_bytes(v.to_ne_bytes()),
        Err(_) => 0,
    }
}

fn record_dir(
    base: &Path,
    dir: BorrowedFd<'_>,
    rel: &[u8],
    into: &mut Node,
    paths: &mut usize,
    newest: &mut i128,
) -> Result<()> {
    for name in list_dir(base, dir, rel)? {
        let crel = join(rel, &name);
        let st = rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW).map_err(fail(
            base,
            &crel,
            "inspecting",
        ))?;
        let mut n = node(&st);
        *newest = (*newest).max(n.ctime);
        *paths += 1;
        if n.kind == FileType::Directory {
            let sub = open_subdir(dir, &name).map_err(fail(base, &crel, "opening"))?;
            n.generation = generation(sub.as_fd());
            record_dir(base, sub.as_fd(), &crel, &mut n, paths, newest)?;
        }
        into.children.insert(name, n);
    }
    Ok(())
}

/// Applying one layer directory onto the merged tree, as overlayfs would show it.
struct Apply<'a> {
    layer: &'a Path,
    merged: &'a Path,
    privileged: bool,
}

impl Apply<'_> {
    fn dir(&mut self, layer: BorrowedFd<'_>, merged: BorrowedFd<'_>, rel: &[u8]) -> Result<()> {
        let (lpath, mpath) = (self.layer, self.merged);
        for name in list_dir(lpath, layer, rel)? {
            let crel = join(rel, &name);
            let st = rfs::statat(layer, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(fail(lpath, &crel, "inspecting"))?;
            let kind = FileType::from_raw_mode(st.st_mode);
            let mfail = |what| fail(mpath, &crel, what);
            if is_whiteout(layer, &name, &st) {
                remove_all(merged, &name).map_err(mfail("removing whited-out"))?;
                continue;
            }
            if kind == FileType::Directory {
                let lsub = open_subdir(layer, &name).map_err(fail(lpath, &crel, "opening"))?;
                match stat_at(merged, &name).map_err(mfail("inspecting"))? {
                    Some(m) if FileType::from_raw_mode(m.st_mode) == FileType::Directory => {
                        if overlay_flag(Target::Fd(lsub.as_fd()), "opaque") {
                            // An opaque directory hides what lower layers put there.
                            let msub = open_subdir(merged, &name).map_err(mfail("opening"))?;
                            for child in list_dir(mpath, msub.as_fd(), &crel)? {
                                remove_all(msub.as_fd(), &child).map_err(mfail("emptying"))?;
                            }
                        }
                    }
                    Some(_) => {
                        rfs::unlinkat(merged, name.as_slice(), AtFlags::empty())
                            .map_err(mfail("replacing"))?;
                        mkdir(merged, &name).map_err(mfail("creating"))?;
                    }
                    None => mkdir(merged, &name).map_err(mfail("creating"))?,
                }
                let msub = open_subdir(merged, &name).map_err(mfail("opening"))?;
                self.dir(lsub.as_fd(), msub.as_fd(), &crel)?;
                // The topmost layer holding a directory gives its metadata, xattrs included.
                copy_meta(
                    Target::Fd(lsub.as_fd()),
                    &st,
                    Target::Fd(msub.as_fd()),
                    self.privileged,
                    true,
                )
                .map_err(mfail("setting the metadata of"))?;
                continue;
            }
            remove_all(merged, &name).map_err(mfail("replacing"))?;
            // Each name of a multiply-linked file gets its own copy, as overlayfs (without
            // `index=on`) copies up only the name written through: a shared inode would show a
            // change made through one name (or its removal, which changes the others' link
            // count and ctime) under every name, and the layer would differ from overlayfs'.
            copy_entry(layer, &name, &st, merged, self.privileged)
                .map_err(mfail("copying into"))?;
        }
        Ok(())
    }
}

/// Turns the changes made in `merged` since `record` was taken into an overlayfs upper
/// directory at `upper` (empty), as overlayfs would have left them.
pub(crate) fn diff(merged: &Path, record: &Record, upper: &Path) -> Result<()> {
    let mroot = open_dir_path(merged)?;
    let uroot = open_dir_path(upper)?;
    let mut b = UpperBuilder {
        merged,
        upper,
        merged_root: mroot.as_fd(),
        upper_root: uroot.as_fd(),
        privileged: rustix::process::geteuid().is_root(),
        created: Vec::new(),
        created_set: HashSet::new(),
    };
    b.diff_dir(mroot.as_fd(), &record.root, &[])?;
    b.finish()
}

struct UpperBuilder<'a> {
    merged: &'a Path,
    upper: &'a Path,
    merged_root: BorrowedFd<'a>,
    upper_root: BorrowedFd<'a>,
    privileged: bool,
    /// Directories made in the upper one, and whether each is opaque; their metadata is copied
    /// from the merged tree at the end, once nothing more is created in them.
    created: Vec<(Vec<u8>, bool)>,
    created_set: HashSet<Vec<u8>>,
}

impl UpperBuilder<'_> {
    fn diff_dir(&mut self, dir: BorrowedFd<'_>, rec: &Node, rel: &[u8]) -> Result<()> {
        let names = list_dir(self.merged, dir, rel)?;
        for name in &names {
            let crel = join(rel, name);
            let st = rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW).map_err(fail(
                self.merged,
                &crel,
                "inspecting",
            ))?;
            let now = node(&st);
            let was = rec.children.get(name);
            if now.kind == FileType::Directory {
                let sub = open_subdir(dir, name).map_err(fail(self.merged, &crel, "opening"))?;
                match was {
                    Some(w)
                        if w.kind == FileType::Directory
                            && w.ino == now.ino
                            && w.generation == generation(sub.as_fd()) =>
                    {
                        if w.ctime != now.ctime {
                            // Its own metadata or entries changed: copied up by itself.
                            self.ensure_dir(&crel)?;
                        }
                        self.diff_dir(sub.as_fd(), w, &crel)?;
                    }
                    // Removed and made again (or replacing a file): overlayfs makes a new
                    // directory over a whiteout opaque.
                    Some(_) => self.copy_tree(dir, name, &crel, true)?,
                    None => self.copy_tree(dir, name, &crel, false)?,
                }
            } else if was
                .is_none_or(|w| w.kind != now.kind || w.ino != now.ino || w.ctime != now.ctime)
            {
                let parent = self.ensure_dir(rel)?;
                self.take(dir, name, &st, parent.as_fd(), &crel)?;
            }
        }
        let present: HashSet<&Vec<u8>> = names.iter().collect();
        let mut gone: Vec<&Vec<u8>> = rec
            .children
            .keys()
            .filter(|n| !present.contains(n))
            .collect();
        gone.sort();
        for name in gone {
            self.whiteout(rel, name)?;
        }
        Ok(())
    }

    /// Puts the non-directory `name` of `dir` into the upper directory `to`: as a hardlink of
    /// the merged file (same inode, so same metadata), or copied where linking is refused.
    fn take(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        to: BorrowedFd<'_>,
        rel: &[u8],
    ) -> Result<()> {
        if rfs::linkat(dir, name, to, name, AtFlags::empty()).is_ok() {
            return Ok(());
        }
        copy_entry(dir, name, st, to, self.privileged).map_err(fail(self.upper, rel, "copying"))
    }

    /// Copies the directory `name` of `dir` with everything below it.
    fn copy_tree(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        opaque: bool,
    ) -> Result<()> {
        let (parent, _) = split(rel);
        let pfd = self.ensure_dir(parent)?;
        mkdir(pfd.as_fd(), name).map_err(fail(self.upper, rel, "creating"))?;
        self.created.push((rel.to_vec(), opaque));
        self.created_set.insert(rel.to_vec());
        let to = open_subdir(pfd.as_fd(), name).map_err(fail(self.upper, rel, "opening"))?;
        let from = open_subdir(dir, name).map_err(fail(self.merged, rel, "opening"))?;
        for child in list_dir(self.merged, from.as_fd(), rel)? {
            let crel = join(rel, &child);
            let st = rfs::statat(&from, child.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(fail(self.merged, &crel, "inspecting"))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                self.copy_tree(from.as_fd(), &child, &crel, false)?;
            } else {
                self.take(from.as_fd(), &child, &st, to.as_fd(), &crel)?;
            }
        }
        Ok(())
    }

    /// The upper directory at `rel`, made (with its ancestors) if it is not there yet.
    fn ensure_dir(&mut self, rel: &[u8]) -> Result<OwnedFd> {
        let (uroot, upath) = (self.upper_root, self.upper);
        let open = |rel: &[u8]| {
            open_beneath(uroot, rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(fail(upath, rel, "opening"))
        };
        if rel.is_empty() || self.created_set.contains(rel) {
            return open(rel);
        }
        let (parent, name) = split(rel);
        let pfd = self.ensure_dir(parent)?;
        mkdir(pfd.as_fd(), name).map_err(fail(self.upper, rel, "creating"))?;
        self.created.push((rel.to_vec(), false));
        self.created_set.insert(rel.to_vec());
        open(rel)
    }

    /// Marks `name` in `rel` deleted: a 0/0 character device, or without the privilege for
    /// `mknod` the `user.overlay.whiteout` file overlayfs reads with `userxattr`.
    fn whiteout(&mut self, rel: &[u8], name: &[u8]) -> Result<()> {
        let crel = join(rel, name);
        let pfd = self.ensure_dir(rel)?;
        let wfail = fail(self.upper, &crel, "creating whiteout");
        match rfs::mknodat(&pfd, name, FileType::CharacterDevice, Mode::empty(), 0) {
            Ok(()) => Ok(()),
            Err(Errno::PERM) => {
                let fd = rfs::openat(
                    &pfd,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(&wfail)?;
                rfs::fsetxattr(&fd, "user.overlay.whiteout", b"y", XattrFlags::empty())
                    .map_err(&wfail)?;
                rfs::fsetxattr(&pfd, "user.overlay.whiteouts", b"y", XattrFlags::empty())
                    .map_err(&wfail)
            }
            Err(e) => Err(wfail(e)),
        }
    }

    /// Gives each directory made in the upper one the metadata of its merged counterpart, as
    /// overlayfs' copy-up does.
    fn finish(self) -> Result<()> {
        for (rel, opaque) in &self.created {
            let from = open_beneath(self.merged_root, rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(fail(self.merged, rel, "opening"))?;
            let to = open_beneath(self.upper_root, rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(fail(self.upper, rel, "opening"))?;
            let st = rfs::fstat(&from).map_err(fail(self.merged, rel, "inspecting"))?;
            let ufail = fail(self.upper, rel, "setting the metadata of");
            if *opaque {
                match rfs::fsetxattr(&to, "trusted.overlay.opaque", b"y", XattrFlags::empty()) {
                    Ok(()) => {}
                    Err(Errno::PERM) => {
                        rfs::fsetxattr(&to, "user.overlay.opaque", b"y", XattrFlags::empty())
                            .map_err(&ufail)?;
                    }
                    Err(e) => return Err(ufail(e)),
                }
            }
            copy_meta(
                Target::Fd(from.as_fd()),
                &st,
                Target::Fd(to.as_fd()),
                self.privileged,
                false,
            )
            .map_err(&ufail)?;
        }
        Ok(())
    }
}

/// Where metadata is read or written: an open file or directory, or a name in a directory
/// (symlinks and device nodes, which are not opened).
#[derive(Clone, Copy)]
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

/// Copies the non-directory `name` of `from` (described by `st`) to `to`, where nothing of
/// that name exists. Sockets are left out, as layers leave them out, and device nodes without
/// the privilege to make them.
fn copy_entry(
    from: BorrowedFd<'_>,
    name: &[u8],
    st: &Stat,
    to: BorrowedFd<'_>,
    privileged: bool,
) -> Result<(), Errno> {
    let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let src = rfs::openat(
                from,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let dst = rfs::openat(
                to,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            copy_data(
                src.as_fd(),
                dst.as_fd(),
                u64::try_from(st.st_size).unwrap_or(0),
            )?;
            copy_meta(
                Target::Fd(src.as_fd()),
                st,
                Target::Fd(dst.as_fd()),
                privileged,
                false,
            )
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(from, name, Vec::new())?;
            rfs::symlinkat(target.as_c_str(), to, name)?;
            copy_meta(
                Target::At(from, name),
                st,
                Target::At(to, name),
                privileged,
                false,
            )
        }
        kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            if kind != FileType::Fifo && !privileged {
                return Ok(());
            }
            rfs::mknodat(to, name, kind, perm, st.st_rdev)?;
            copy_meta(
                Target::At(from, name),
                st,
                Target::At(to, name),
                privileged,
                false,
            )
        }
        _ => Ok(()),
    }
}

/// File data: shared extents (`FICLONE`) where the filesystem has them, else
/// `copy_file_range` (which the kernel may still do without reading), else read and write.
fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> Result<(), Errno> {
    if size == 0 || rfs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut done: u64 = 0;
    while done < size {
        let chunk = usize::try_from(size - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rfs::copy_file_range(src, None, dst, None, chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => done = done.saturating_add(n as u64),
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if done == 0 => {
                let errno = |e: io::Error| Errno::from_io_error(&e).unwrap_or(Errno::IO);
                let mut r = std::fs::File::from(src.try_clone_to_owned().map_err(errno)?);
                let mut w = std::fs::File::from(dst.try_clone_to_owned().map_err(errno)?);
                io::copy(&mut r, &mut w).map_err(errno)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives `to` the owner, mode, xattrs and times of `from` (whose status is `st`). Ownership is
/// applied only with the privilege for it. With `replace`, xattrs `to` has and `from` lacks are
/// removed (a directory an upper layer holds shows only that layer's). Overlayfs' own xattrs
/// are never copied.
fn copy_meta(
    from: Target<'_>,
    st: &Stat,
    to: Target<'_>,
    privileged: bool,
    replace: bool,
) -> Result<(), Errno> {
    let uid = Some(Uid::from_raw(st.st_uid));
    let gid = Some(Gid::from_raw(st.st_gid));
    let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
    let is_link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
    // chown clears setuid/setgid, so the mode comes after it.
    let owned = match to {
        Target::Fd(fd) => rfs::fchown(fd, uid, gid),
        Target::At(dir, name) => rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
    };
    match owned {
        Ok(()) => {}
        Err(Errno::PERM) if !privileged => {}
        Err(e) => return Err(e),
    }
    match to {
        Target::Fd(fd) => rfs::fchmod(fd, perm)?,
        // Symlinks have no mode of their own; a device node was made just now through the
        // descriptor, so following is moot (there is no fchmodat(AT_SYMLINK_NOFOLLOW) without
        // fchmodat2).
        Target::At(dir, name) if !is_link => rfs::chmodat(dir, name, perm, AtFlags::empty())?,
        Target::At(..) => {}
    }
    let xattrs = read_xattrs(from)?;
    if replace {
        for old in list_xattrs(to)? {
            if !old.starts_with(b"security.") && !xattrs.iter().any(|(k, _)| *k == old) {
                match remove_xattr(to, &old) {
                    Ok(()) | Err(Errno::NODATA) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for (k, v) in &xattrs {
        let set = match to {
            Target::Fd(fd) => rfs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()),
            Target::At(dir, name) => proc_path(dir, name)
                .and_then(|p| rfs::lsetxattr(p.as_c_str(), k.as_slice(), v, XattrFlags::empty())),
        };
        match set {
            Ok(()) => {}
            // Host-dependent namespaces this filesystem or privilege refuses, as unpacking
            // tolerates them.
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS)
                if k.starts_with(b"security.") || k.starts_with(b"trusted.") => {}
            Err(e) => return Err(e),
        }
    }
    let times = Timestamps {
        last_access: timespec(st.st_atime, st.st_atime_nsec),
        last_modification: timespec(st.st_mtime, st.st_mtime_nsec),
    };
    match to {
        Target::Fd(fd) => rfs::futimens(fd, &times),
        Target::At(dir, name) => rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW),
    }
}

#[allow(clippy::useless_conversion)] // the field types differ between architectures
fn timespec<S, N>(sec: S, nsec: N) -> Timespec
where
    i64: TryFrom<S> + TryFrom<N>,
{
    Timespec {
        tv_sec: i64::try_from(sec).unwrap_or(0),
        tv_nsec: i64::try_from(nsec).unwrap_or(0).try_into().unwrap_or(0),
    }
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

fn list_xattrs(t: Target<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        let r = match t {
            Target::Fd(fd) => rfs::flistxattr(fd, &mut buf[..]),
            Target::At(dir, name) => {
                proc_path(dir, name).and_then(|p| rfs::llistxattr(p.as_c_str(), &mut buf[..]))
            }
        };
        match r {
            Ok(n) => break n,
            Err(Errno::RANGE) if buf.len() < 1 << 20 => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    Ok(buf
        .get(..n)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty() && !is_overlay_xattr(k))
        .map(<[u8]>::to_vec)
        .collect())
}

/// Extended attributes as (name, value).
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn read_xattrs(t: Target<'_>) -> Result<Xattrs, Errno> {
    let mut out = Vec::new();
    for k in list_xattrs(t)? {
        let mut v = vec![0u8; 256];
        let n = loop {
            let r = match t {
                Target::Fd(fd) => rfs::fgetxattr(fd, k.as_slice(), &mut v[..]),
                Target::At(dir, name) => proc_path(dir, name)
                    .and_then(|p| rfs::lgetxattr(p.as_c_str(), k.as_slice(), &mut v[..])),
            };
            match r {
                Ok(n) => break Some(n),
                Err(Errno::RANGE) if v.len() < 1 << 20 => {
                    let len = v.len() * 4;
                    v.resize(len, 0);
                }
                // Removed meanwhile.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(n) = n {
            v.truncate(n);
            out.push((k, v));
        }
    }
    Ok(out)
}

fn remove_xattr(t: Target<'_>, k: &[u8]) -> Result<(), Errno> {
    match t {
        Target::Fd(fd) => rfs::fremovexattr(fd, k),
        Target::At(dir, name) => {
            proc_path(dir, name).and_then(|p| rfs::lremovexattr(p.as_c_str(), k))
        }
    }
}

/// Whether the overlay xattr `name` (`trusted.` or, as unprivileged unpacking writes it,
/// `user.`) is `y`.
fn overlay_flag(t: Target<'_>, name: &str) -> bool {
    ["trusted.overlay.", "user.overlay."].iter().any(|ns| {
        let key = format!("{ns}{name}");
        let mut v = [0u8; 4];
        let r = match t {
            Target::Fd(fd) => rfs::fgetxattr(fd, key.as_str(), &mut v[..]),
            Target::At(dir, n) => proc_path(dir, n)
                .and_then(|p| rfs::lgetxattr(p.as_c_str(), key.as_str(), &mut v[..])),
        };
        matches!(r, Ok(n) if v.get(..n) == Some(b"y"))
    })
}

/// An overlayfs whiteout in a layer directory: a 0/0 character device, or an empty file with
/// `user.overlay.whiteout` (hull-layer's unprivileged form).
fn is_whiteout(dir: BorrowedFd<'_>, name: &[u8], st: &Stat) -> bool {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::CharacterDevice => st.st_rdev == 0,
        FileType::RegularFile if st.st_size == 0 => {
            let mut v = [0u8; 8];
            proc_path(dir, name)
                .and_then(|p| rfs::lgetxattr(p.as_c_str(), "user.overlay.whiteout", &mut v[..]))
                .is_ok()
        }
        _ => false,
    }
}

/// `/proc/self/fd/<dir>/<name>`, for the path-only xattr calls: only the descriptor is
/// followed, never `name` itself.
fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Result<std::ffi::CString, Errno> {
    use std::os::fd::AsRawFd;
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    std::ffi::CString::new(p).map_err(|_| Errno::INVAL)
}

fn open_dir_path(p: &Path) -> Result<OwnedFd> {
    rfs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io(p, e.into()))
}

fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `rel` below `root` with no symlink anywhere on the way (`.` for the root itself).
fn open_beneath(root: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    rfs::openat2(
        root,
        rel,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

fn mkdir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    // Owner-only until its metadata is copied at the end.
    rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
}

fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in `dir` (without `.` and `..`), sorted.
fn list_dir(base: &Path, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<Vec<Vec<u8>>> {
    let lfail = fail(base, rel, "listing");
    let mut out = Vec::new();
    let mut d = rfs::Dir::read_from(dir).map_err(&lfail)?;
    while let Some(e) = d.read() {
        let e = e.map_err(&lfail)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `name` in `dir` and everything below it, never following a symlink; nothing
/// there is fine.
fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = open_subdir(dir, name)?;
    let mut d = rfs::Dir::read_from(&sub)?;
    let mut names = Vec::new();
    while let Some(e) = d.read() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    for n in names {
        remove_all(sub.as_fd(), &n)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        p.extend_from_slice(rel);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (
            rel.get(..i).unwrap_or_default(),
            rel.get(i + 1..).unwrap_or_default(),
        ),
        None => (&[], rel),
    }
}

/// An error naming `base/rel` and what was being done there.
fn fail<'a>(
    base: &'a Path,
    rel: &'a [u8],
    what: &'static str,
) -> impl Fn(Errno) -> ImageError + 'a {
    move |e| {
        use std::os::unix::ffi::OsStrExt;
        let path = if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(std::ffi::OsStr::from_bytes(rel))
        };
        ImageError::io(
            path,
            io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")),
        )
    }
}
