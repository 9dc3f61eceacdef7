//! Looking at paths inside an untrusted root filesystem from the host.
//!
//! The rootfs is image content: any component of a path in it may be a symlink pointing at the
//! host (`/etc/passwd -> /etc/shadow`, `../../etc/shadow`). Every path is therefore resolved by
//! the kernel with `openat2(RESOLVE_IN_ROOT)`, which treats the rootfs as `/` for absolute
//! symlinks and `..`, as a `chroot` would; paths are never joined as strings.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// A directory opened as the root for in-root lookups.
pub(crate) struct Root {
    fd: OwnedFd,
}

fn resolve() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// How often a lookup is retried when the kernel could not prove a `..` stayed inside the root.
const EAGAIN_RETRIES: usize = 1000;

/// `openat2` with `RESOLVE_IN_ROOT`, retried on `EAGAIN`: the kernel returns it when a mount or
/// rename anywhere on the system raced with resolving `..` (openat2(2)); a machine starting
/// containers mounts all the time.
fn openat2_in_root(dir: &OwnedFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve()) {
            Err(e)
                if (e == rustix::io::Errno::AGAIN && tries < EAGAIN_RETRIES)
                    || e == rustix::io::Errno::INTR =>
            {
                tries += 1;
            }
            r => return r,
        }
    }
}

impl Root {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens `rel` (relative to the root, or absolute inside it) for reading, following symlinks
    /// only inside the root. `O_NONBLOCK` so that a FIFO planted in the image cannot block us.
    pub(crate) fn open_read(&self, rel: &str) -> std::io::Result<File> {
        let fd = openat2_in_root(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        )?;
        Ok(File::from(fd))
    }

    /// Whether `rel` exists inside the root (symlinks followed inside it).
    pub(crate) fn exists(&self, rel: &str) -> std::io::Result<bool> {
        match openat2_in_root(&self.fd, rel, OFlags::PATH | OFlags::CLOEXEC) {
            Ok(_) => Ok(true),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `rel` if it is an empty regular file or an empty directory (a mount point the
    /// runtime created); anything else is left alone. The parent is resolved inside the root,
    /// so a symlink swapped in by the container's process cannot redirect this to the host.
    pub(crate) fn remove_if_empty(&self, rel: &str) -> std::io::Result<()> {
        let rel = rel.trim_matches('/');
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => (".", rel),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Ok(());
        }
        let dir = match openat2_in_root(
            &self.fd,
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        ) {
            Ok(d) => d,
            Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if e == rustix::io::Errno::NOENT => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let r = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if st.st_size == 0 => {
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())
            }
            FileType::Directory => rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR),
            _ => return Ok(()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if e == rustix::io::Errno::NOTEMPTY
                    || e == rustix::io::Errno::EXIST
                    || e == rustix::io::Errno::BUSY
                    || e == rustix::io::Errno::NOENT =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads a whole small file from the root: `Ok(None)` when it does not exist. Errors when it is
/// not a regular file or is larger than `cap` bytes.
pub(crate) fn read_small(root: &Root, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, ReadError> {
    use std::io::Read;
    let f = match root.open_read(rel) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let meta = f.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut buf = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > cap {
        return Err(ReadError::TooLarge);
    }
    Ok(Some(buf))
}

pub(crate) enum ReadError {
    Io(std::io::Error),
    NotRegular,
    TooLarge,
}

/// The paths a mount at `destination` would make the runtime create in the rootfs: each missing
/// component from the first missing one down, deepest last (`/a/b/c` with only `/a` present:
/// `["a/b", "a/b/c"]`).
pub(crate) fn missing_components(root: &Root, destination: &str) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    let mut missing = false;
    for part in destination
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
    {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if !missing && !root.exists(&prefix)? {
            missing = true;
        }
        if missing {
            out.push(prefix.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn symlink_to_host_path_resolves_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/shadow"), b"inside\n").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/hostname", root.join("etc/group")).unwrap();
        let r = Root::open(&root).unwrap();
        let got = read_small(&r, "etc/passwd", 1024).ok().flatten().unwrap();
        assert_eq!(got, b"inside\n");
        // ../ climbs stop at the root: /etc/hostname of the rootfs, which does not exist
        assert!(read_small(&r, "/etc/group", 1024).ok().unwrap().is_none());
    }

    /// Renames elsewhere on the system make the kernel refuse `..` walks with EAGAIN; lookups
    /// retry instead of failing.
    #[test]
    fn dotdot_lookups_survive_concurrent_renames() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/shadow"), b"inside\n").unwrap();
        std::os::unix::fs::symlink("../../../../../etc/shadow", root.join("etc/passwd")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let stop = stop.clone();
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            std::fs::write(&a, b"").unwrap();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(&a, &b).unwrap();
                    std::fs::rename(&b, &a).unwrap();
                }
            })
        };
        let r = Root::open(&root).unwrap();
        let mut failures = 0;
        for _ in 0..5000 {
            match read_small(&r, "etc/passwd", 1024) {
                Ok(Some(b)) => assert_eq!(b, b"inside\n"),
                _ => failures += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().unwrap();
        assert_eq!(failures, 0);
    }

    #[test]
    fn missing_components_lists_from_first_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        let r = Root::open(dir.path()).unwrap();
        assert_eq!(
            missing_components(&r, "/a/b/c").unwrap(),
            vec!["a/b".to_string(), "a/b/c".to_string()]
        );
        assert!(missing_components(&r, "/a").unwrap().is_empty());
    }

    #[test]
    fn remove_if_empty_keeps_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("d/full")).unwrap();
        std::fs::write(p.join("d/full/x"), b"x").unwrap();
        std::fs::write(p.join("empty"), b"").unwrap();
        std::fs::write(p.join("data"), b"data").unwrap();
        let r = Root::open(p).unwrap();
        for rel in ["d/full", "empty", "data", "nope/x"] {
            r.remove_if_empty(rel).unwrap();
        }
        assert!(p.join("d/full/x").exists());
        assert!(!p.join("empty").exists());
        assert!(p.join("data").exists());
    }
}
