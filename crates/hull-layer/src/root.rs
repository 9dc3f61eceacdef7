//! A directory treated as `/`: every path is resolved inside it by the kernel, and every change
//! is made with `*at` calls relative to a descriptor obtained that way, never by a path string.
//!
//! Resolution uses `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (Linux 5.6): symlinks,
//! absolute or relative, and `..` are followed as if the root were `/`, so they can point
//! anywhere yet never lead out. Where `openat2` is missing (ENOSYS, or EPERM from an old
//! seccomp profile) the same semantics are emulated by walking one component at a time with
//! `O_PATH | O_NOFOLLOW`, reading each symlink and restarting at the root for absolute
//! targets; `..` pops a stack of already-open directory descriptors instead of looking up
//! `..` on disk, so a directory renamed during the walk cannot lead out either.

use std::ffi::CString;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use crate::names;

/// Symlinks followed in one resolution before giving up, as the kernel's `ELOOP` limit.
const MAX_SYMLINKS: usize = 40;

static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const AVAILABLE: u8 = 1;
const MISSING: u8 = 2;

pub(crate) struct Root {
    fd: OwnedFd,
    manual: bool,
}

impl Root {
    /// Opens `path` (followed if it is itself a symlink: the caller chose it) as a root.
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let manual = match OPENAT2.load(Ordering::Relaxed) {
            AVAILABLE => false,
            MISSING => true,
            _ => {
                let missing = matches!(
                    rfs::openat2(
                        &fd,
                        ".",
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                    ),
                    Err(Errno::NOSYS) | Err(Errno::PERM)
                );
                OPENAT2.store(if missing { MISSING } else { AVAILABLE }, Ordering::Relaxed);
                missing
            }
        };
        Ok(Root { fd, manual })
    }

    /// The same root, resolved by the component walk whatever the kernel offers.
    #[cfg(test)]
    pub(crate) fn open_manual(path: &Path) -> io::Result<Root> {
        let mut r = Root::open(path)?;
        r.manual = true;
        Ok(r)
    }

    /// A fresh read-only descriptor of the root directory itself.
    pub(crate) fn dir(&self) -> Result<OwnedFd, Errno> {
        rfs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    /// Opens the directory at the cleaned path `path` inside the root (following symlinks as
    /// the root's own `/` would), with `flags` (`O_PATH` or `O_RDONLY`).
    pub(crate) fn resolve_dir(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let flags = flags | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if self.manual {
            let fd = self.walk(path)?;
            return rfs::openat(&fd, ".", flags, Mode::empty());
        }
        let p: &[u8] = if path.is_empty() { b"." } else { path };
        let mut tries = 0;
        loop {
            match rfs::openat2(
                &self.fd,
                p,
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // The kernel asks for a retry when a rename raced the `..` check.
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    /// The component walk standing in for `openat2(RESOLVE_IN_ROOT)`. Returns an `O_PATH`
    /// descriptor of what `path` names.
    fn walk(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut queue: std::collections::VecDeque<Vec<u8>> =
            names::components(path).map(<[u8]>::to_vec).collect();
        let mut links = 0;
        while let Some(c) = queue.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let cur = stack.last().map(|f| f.as_fd()).unwrap_or(self.fd.as_fd());
            let fd = rfs::openat(
                cur,
                c.as_slice(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rfs::fstat(&fd)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = rfs::readlinkat(&fd, "", Vec::new())?.into_bytes();
                    if target.first() == Some(&b'/') {
                        stack.clear();
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        if !part.is_empty() {
                            queue.push_front(part.to_vec());
                        }
                    }
                }
                FileType::Directory => stack.push(fd),
                _ if queue.is_empty() => return Ok(fd),
                _ => return Err(Errno::NOTDIR),
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            None => rfs::openat(
                &self.fd,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ),
        }
    }

    /// Opens the directory `path` inside the root, creating what is missing (mode 0755, as
    /// Docker and containerd create implied parents). `created` hears each directory made.
    ///
    /// A missing component that is a dangling symlink is followed the way the kernel would
    /// follow it (so `var/run -> /run` with no `/run` yet creates `<root>/run`): its target is
    /// spliced into the path lexically and resolution restarts from the root. Lexical `..` in
    /// such a target may differ from the kernel's only when the link's own directory was
    /// reached through another symlink; either way the result stays inside the root.
    pub(crate) fn create_dir_all(
        &self,
        path: &[u8],
        created: &mut dyn FnMut(&[u8]),
    ) -> Result<OwnedFd, Errno> {
        match self.resolve_dir(path, OFlags::PATH) {
            Err(Errno::NOENT) => {}
            other => return other,
        }
        let mut path = path.to_vec();
        let mut restarts = 0;
        'restart: loop {
            let comps: Vec<Vec<u8>> = names::components(&path).map(<[u8]>::to_vec).collect();
            let mut cur = self.resolve_dir(b"", OFlags::PATH)?;
            let mut prefix: Vec<u8> = Vec::new();
            for (i, c) in comps.iter().enumerate() {
                prefix = names::join(&prefix, c);
                match self.resolve_dir(&prefix, OFlags::PATH) {
                    Ok(fd) => {
                        cur = fd;
                        continue;
                    }
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
                match rfs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        let fd = rfs::openat(
                            &cur,
                            c.as_slice(),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )?;
                        // mkdirat's mode went through the umask.
                        rfs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
                        created(&prefix);
                        cur = fd;
                    }
                    Err(Errno::EXIST) => {
                        // Present but unresolvable: a dangling symlink.
                        let target = rfs::readlinkat(&cur, c.as_slice(), Vec::new())
                            .map_err(|e| if e == Errno::INVAL { Errno::NOTDIR } else { e })?
                            .into_bytes();
                        restarts += 1;
                        if restarts > MAX_SYMLINKS {
                            return Err(Errno::LOOP);
                        }
                        let mut spliced: Vec<u8> = if target.first() == Some(&b'/') {
                            Vec::new()
                        } else {
                            names::split_parent(&prefix).0.to_vec()
                        };
                        spliced.push(b'/');
                        spliced.extend_from_slice(&target);
                        for rest in comps.iter().skip(i + 1) {
                            spliced.push(b'/');
                            spliced.extend_from_slice(rest);
                        }
                        path = names::clean(&spliced).map_err(|_| Errno::NAMETOOLONG)?;
                        continue 'restart;
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(cur);
        }
    }
}

/// `lstat` of `name` in `dir`; `None` when nothing is there.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Opens the directory `name` in `dir` without following a symlink there.
pub(crate) fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    let mut d = rfs::Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it. Never follows a
/// symlink; nothing there is fine. Iterative, holding one descriptor per level.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    struct Frame {
        fd: OwnedFd,
        name: Vec<u8>,
        children: Vec<Vec<u8>>,
    }
    let first = open_subdir(dir, name)?;
    let children = list_dir(first.as_fd())?;
    let mut stack = vec![Frame {
        fd: first,
        name: name.to_vec(),
        children,
    }];
    while let Some(top) = stack.last_mut() {
        match top.children.pop() {
            Some(child) => match rfs::unlinkat(&top.fd, child.as_slice(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    let fd = open_subdir(top.fd.as_fd(), &child)?;
                    let children = list_dir(fd.as_fd())?;
                    stack.push(Frame {
                        fd,
                        name: child,
                        children,
                    });
                }
                Err(e) => return Err(e),
            },
            None => {
                let Some(done) = stack.pop() else { break };
                drop(done.fd);
                let parent = stack.last().map(|f| f.fd.as_fd()).unwrap_or(dir);
                match rfs::unlinkat(parent, done.name.as_slice(), AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// `/proc/self/fd/<dir>/<name>`: lets path-only calls (`lsetxattr`) act on `name` relative to
/// a descriptor. Only the descriptor is followed (a magic link to the directory we hold); the
/// last component is not.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Result<CString, Errno> {
    use std::os::fd::AsRawFd;
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    CString::new(p).map_err(|_| Errno::INVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn both(dir: &Path) -> Vec<Root> {
        vec![Root::open(dir).unwrap(), Root::open_manual(dir).unwrap()]
    }

    fn ino(fd: &OwnedFd) -> u64 {
        rfs::fstat(fd).unwrap().st_ino
    }

    fn ino_of(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("run/x")).unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        symlink("/proc/self/root", root.join("magic")).unwrap();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        for r in both(&root) {
            let fd = r.resolve_dir(b"var/run/x", OFlags::PATH).unwrap();
            assert_eq!(ino(&fd), ino_of(&root.join("run/x")));
            let fd = r.resolve_dir(b"up", OFlags::PATH).unwrap();
            assert_eq!(ino(&fd), ino_of(&root));
            assert_eq!(
                r.resolve_dir(b"up/outside", OFlags::PATH).unwrap_err(),
                Errno::NOENT
            );
            assert!(r.resolve_dir(b"magic/etc", OFlags::PATH).is_err());
            assert_eq!(r.resolve_dir(b"a", OFlags::PATH).unwrap_err(), Errno::LOOP);
        }
    }

    #[test]
    fn create_dir_all_follows_dangling_links_inside() {
        let t = tempfile::tempdir().unwrap();
        for (i, manual) in [false, true].into_iter().enumerate() {
            let root = t.path().join(format!("root{i}"));
            std::fs::create_dir_all(root.join("var")).unwrap();
            symlink("/run", root.join("var/run")).unwrap();
            symlink("../../../../escape", root.join("rel")).unwrap();
            let r = if manual {
                Root::open_manual(&root).unwrap()
            } else {
                Root::open(&root).unwrap()
            };
            let mut made = Vec::new();
            r.create_dir_all(b"var/run/lock", &mut |p| made.push(p.to_vec()))
                .unwrap();
            assert!(root.join("run/lock").is_dir());
            assert_eq!(made, vec![b"run".to_vec(), b"run/lock".to_vec()]);
            r.create_dir_all(b"rel/x", &mut |_| {}).unwrap();
            assert!(root.join("escape/x").is_dir());
            assert!(!t.path().join("escape").exists());
        }
    }

    #[test]
    fn remove_all_removes_trees_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let keep = t.path().join("keep");
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("f"), "x").unwrap();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/f"), "x").unwrap();
        symlink(&keep, d.join("a/link")).unwrap();
        let top = rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        remove_all(top.as_fd(), b"d").unwrap();
        assert!(!d.exists());
        assert!(keep.join("f").exists());
        remove_all(top.as_fd(), b"missing").unwrap();
    }
}

/// What a path names inside a root directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    /// Anything else that exists (a file, a device, a dangling symlink's target is "missing").
    Other,
}

/// Looks `path` up inside `root` as if `root` were `/` (symlinks followed inside it, never out),
/// for a builder that must know whether a destination is an existing directory. `None` when
/// nothing is there.
pub fn probe_in_root(root: &Path, path: &str) -> io::Result<Option<PathKind>> {
    let r = Root::open(root)?;
    let cleaned = names::clean(path.as_bytes()).map_err(|why| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("path {path:?} {why}"))
    })?;
    match r.resolve_dir(&cleaned, OFlags::PATH) {
        Ok(_) => Ok(Some(PathKind::Dir)),
        Err(Errno::NOTDIR) => {
            // Either the path itself or a parent is not a directory: look at the last part.
            let (parent, name) = match cleaned.iter().rposition(|b| *b == b'/') {
                Some(i) => (
                    cleaned.get(..i).unwrap_or_default(),
                    cleaned.get(i + 1..).unwrap_or_default(),
                ),
                None => (&b""[..], &cleaned[..]),
            };
            match r.resolve_dir(parent, OFlags::PATH) {
                Ok(dir) => Ok(stat_at(dir.as_fd(), name)?.map(|_| PathKind::Other)),
                Err(Errno::NOTDIR) | Err(Errno::NOENT) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        Err(Errno::NOENT) | Err(Errno::LOOP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn probes_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc/conf.d")).unwrap();
        std::fs::write(r.join("etc/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", r.join("up")).unwrap();
        assert_eq!(probe_in_root(r, "/etc").unwrap(), Some(PathKind::Dir));
        assert_eq!(probe_in_root(r, "etc/file").unwrap(), Some(PathKind::Other));
        assert_eq!(probe_in_root(r, "etc/file/x").unwrap(), None);
        assert_eq!(probe_in_root(r, "missing").unwrap(), None);
        // the link to /etc is the root's /etc, not the host's
        assert_eq!(
            probe_in_root(r, "link/conf.d").unwrap(),
            Some(PathKind::Dir)
        );
        assert_eq!(probe_in_root(r, "link/passwd").unwrap(), None);
        // ../ never leads out: up is the root's own /tmp, missing until made
        assert_eq!(probe_in_root(r, "up").unwrap(), None);
        std::fs::create_dir(r.join("tmp")).unwrap();
        assert_eq!(probe_in_root(r, "up").unwrap(), Some(PathKind::Dir));
        assert_eq!(probe_in_root(r, "up/x").unwrap(), None);
    }
}
