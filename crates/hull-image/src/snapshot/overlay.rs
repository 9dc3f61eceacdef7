//! Mounting an overlay of a layer chain.
//!
//! The legacy `mount(2)` takes every option in one string, which the kernel caps at a page
//! (`lowerdir=` with the store's paths fits about 40 layers). The new mount API (`fsopen`,
//! `fsconfig`, `fsmount`, `move_mount`) takes one `lowerdir+` per layer instead (Linux 6.8,
//! Documentation/filesystems/overlayfs.rst "Multiple lower layers"), so the only limit is
//! overlayfs' own ([`MAX_LOWERS`]). Kernels that refuse `lowerdir+`, or the whole API, get
//! the legacy string.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};

/// overlayfs' limit on lower layers (`OVL_MAX_STACK` in fs/overlayfs/params.h).
pub(crate) const MAX_LOWERS: usize = 500;

/// Whether this kernel takes `lowerdir+` through `fsconfig`, learnt on first use.
static LOWERDIR_PLUS: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const AVAILABLE: u8 = 1;
const MISSING: u8 = 2;

/// A failed overlay mount: the step that failed, its errno, and what the kernel logged on the
/// filesystem context (the new API's way of saying why, e.g. "overlay: upper fs does not
/// support tmpfile").
#[derive(Debug)]
pub(crate) struct MountError {
    pub(crate) errno: Errno,
    step: String,
    log: Option<String>,
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, std::io::Error::from(self.errno))?;
        if let Some(log) = &self.log {
            write!(f, " ({log})")?;
        }
        Ok(())
    }
}

/// A writable overlay's upper and work directories.
pub(crate) struct Upper<'a> {
    pub(crate) upper: &'a Path,
    pub(crate) work: &'a Path,
}

/// Mounts `lowers` (topmost first) with `upper` on `target`.
pub(crate) fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<Upper<'_>>,
    target: &Path,
) -> Result<(), MountError> {
    if lowers.len() > MAX_LOWERS {
        return Err(MountError {
            errno: Errno::INVAL,
            step: format!(
                "a chain of {} layers is more than overlayfs' {MAX_LOWERS} lower directories",
                lowers.len()
            ),
            log: None,
        });
    }
    if LOWERDIR_PLUS.load(Ordering::Relaxed) != MISSING {
        match mount_new_api(lowers, upper.as_ref(), target) {
            Ok(()) => {
                LOWERDIR_PLUS.store(AVAILABLE, Ordering::Relaxed);
                return Ok(());
            }
            Err(Refused::Unsupported) => LOWERDIR_PLUS.store(MISSING, Ordering::Relaxed),
            Err(Refused::Failed(e)) => return Err(e),
        }
    }
    mount_legacy(lowers, upper.as_ref(), target)
}

enum Refused {
    /// The kernel lacks the new API or `lowerdir+`: try the legacy string.
    Unsupported,
    Failed(MountError),
}

fn mount_new_api(
    lowers: &[PathBuf],
    upper: Option<&Upper<'_>>,
    target: &Path,
) -> Result<(), Refused> {
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        // No new mount API (before 5.2), or a seccomp profile that predates it.
        Err(Errno::NOSYS) => return Err(Refused::Unsupported),
        Err(Errno::PERM) if LOWERDIR_PLUS.load(Ordering::Relaxed) == UNKNOWN => {
            return Err(Refused::Unsupported);
        }
        Err(errno) => {
            return Err(Refused::Failed(MountError {
                errno,
                step: "opening an overlay filesystem context".into(),
                log: None,
            }));
        }
    };
    let failed = |errno: Errno, step: String| {
        Refused::Failed(MountError {
            errno,
            step,
            log: read_log(fs.as_fd()),
        })
    };
    for (i, lower) in lowers.iter().enumerate() {
        match fsconfig_set_string(&fs, "lowerdir+", lower.as_path()) {
            Ok(()) => {}
            // An overlayfs without `lowerdir+` (before 6.8) rejects the key itself.
            Err(Errno::INVAL) if i == 0 => return Err(Refused::Unsupported),
            Err(e) => {
                return Err(failed(
                    e,
                    format!("adding lower directory {}", lower.display()),
                ));
            }
        }
    }
    if let Some(u) = upper {
        fsconfig_set_string(&fs, "upperdir", u.upper)
            .map_err(|e| failed(e, format!("setting upper directory {}", u.upper.display())))?;
        fsconfig_set_string(&fs, "workdir", u.work)
            .map_err(|e| failed(e, format!("setting work directory {}", u.work.display())))?;
    }
    fsconfig_create(&fs).map_err(|e| failed(e, "creating the overlay".into()))?;
    let attrs = if upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| failed(e, "making the overlay mount".into()))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| failed(e, "attaching the overlay mount".into()))
}

/// The first error or warning the kernel logged on a filesystem context, if any.
fn read_log(fs: BorrowedFd<'_>) -> Option<String> {
    let mut buf = [0u8; 512];
    let mut worst: Option<String> = None;
    // Each read returns one message ("e overlay: ...", "w ...", "i ..."); ENODATA ends them.
    for _ in 0..8 {
        let n = rustix::io::read(fs, &mut buf[..]).ok()?;
        let msg = String::from_utf8_lossy(buf.get(..n)?).trim().to_string();
        match msg.split_once(' ') {
            Some(("e", text)) => return Some(text.to_string()),
            Some(("w", text)) if worst.is_none() => worst = Some(text.to_string()),
            _ => {}
        }
    }
    worst
}

fn mount_legacy(
    lowers: &[PathBuf],
    upper: Option<&Upper<'_>>,
    target: &Path,
) -> Result<(), MountError> {
    let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let mut data = format!("lowerdir={}", lowerdir.join(":"));
    if let Some(u) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            u.upper.display(),
            u.work.display()
        ));
    }
    let step = || format!("mounting an overlay of {} layers", lowers.len());
    let data = std::ffi::CString::new(data).map_err(|_| MountError {
        errno: Errno::INVAL,
        step: step(),
        log: Some("a layer path holds a NUL byte".into()),
    })?;
    let flags = if upper.is_some() {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str())).map_err(
        |errno| MountError {
            errno,
            step: step(),
            // The kernel copies at most a page of mount data.
            log: (data.as_bytes().len() >= 4096)
                .then(|| "the layer list is longer than the page the kernel accepts".into()),
        },
    )
}
