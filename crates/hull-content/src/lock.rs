//! Advisory locks on ingests.
//!
//! Each ingest directory holds a `lock` file locked with `flock(LOCK_EX)` for as long as a
//! [`crate::Writer`] is open. `flock` locks belong to the open file description, so they
//! exclude other threads of the same process as well as other processes, and the kernel drops
//! them when the holder dies, even by `SIGKILL`.
//!
//! Removing an ingest (commit, abort, prune) unlinks its `lock` file while holding the lock. A
//! waiter that then acquires the lock on the unlinked inode would own nothing, so after locking
//! we check that the path still names the inode we locked, and start over if it does not.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};

use crate::ContentError;

pub(crate) const LOCK_FILE: &str = "lock";

/// How a non-waiting lock attempt copes with a momentary holder, such as
/// [`crate::ContentStore::ingests`] probing whether the ingest is in use.
const TRY_ATTEMPTS: u32 = 3;
const TRY_PAUSE: Duration = Duration::from_millis(3);

/// Bound on start-overs when the ingest is removed under us; each one means another process
/// finished or removed the ingest in between, so this is never reached in practice.
const MAX_RESTARTS: u32 = 100;

/// Whether to wait for another holder or fail with [`ContentError::Locked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    No,
    Yes,
}

/// Locks the ingest at `dir`, creating the directory when `create` is set.
///
/// Returns `Ok(None)` when `create` is not set and the ingest does not exist (or was removed
/// while we waited).
pub(crate) fn lock_ingest(
    dir: &Path,
    ingest_ref: &str,
    create: bool,
    wait: Wait,
) -> Result<Option<File>, ContentError> {
    let path = dir.join(LOCK_FILE);
    for _ in 0..MAX_RESTARTS {
        if create {
            std::fs::create_dir_all(dir).map_err(ContentError::io("creating ingest", dir))?;
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            // Removed between our mkdir and open: start over (or report it gone).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if create {
                    continue;
                }
                return Ok(None);
            }
            Err(e) => return Err(ContentError::io("opening ingest lock", &path)(e)),
        };
        acquire(&file, &path, ingest_ref, wait)?;
        if same_file(&file, &path)? {
            return Ok(Some(file));
        }
        if !create {
            return Ok(None);
        }
    }
    Err(ContentError::Locked {
        ingest_ref: ingest_ref.to_string(),
    })
}

fn acquire(file: &File, path: &Path, ingest_ref: &str, wait: Wait) -> Result<(), ContentError> {
    if wait == Wait::Yes {
        return flock(file, FlockOperation::LockExclusive)
            .map_err(|e| ContentError::io("locking ingest", path)(e.into()));
    }
    for attempt in 1..=TRY_ATTEMPTS {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if attempt < TRY_ATTEMPTS {
                    std::thread::sleep(TRY_PAUSE);
                }
            }
            Err(e) => return Err(ContentError::io("locking ingest", path)(e.into())),
        }
    }
    Err(ContentError::Locked {
        ingest_ref: ingest_ref.to_string(),
    })
}

/// Whether `path` still names the inode open as `file`.
fn same_file(file: &File, path: &Path) -> Result<bool, ContentError> {
    let held = file
        .metadata()
        .map_err(ContentError::io("inspecting ingest lock", path))?;
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.dev() == held.dev() && m.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ContentError::io("inspecting ingest lock", path)(e)),
    }
}

/// Whether a writer currently holds the ingest at `dir`, probed with a shared lock that is
/// released at once.
pub(crate) fn is_locked(dir: &Path) -> Result<bool, ContentError> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ContentError::io("opening ingest lock", &path)(e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(ContentError::io("probing ingest lock", &path)(e.into())),
    }
}
