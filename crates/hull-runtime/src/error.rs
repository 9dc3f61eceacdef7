//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong preparing or running a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A named user has no entry in the rootfs's `/etc/passwd` (Docker's words).
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UserNotFound { user: String },

    /// A named group has no entry in the rootfs's `/etc/group` (Docker's words).
    #[error("unable to find group {group}: no matching entries in group file")]
    GroupNotFound { group: String },

    /// A numeric uid or gid outside what Linux accepts.
    #[error("user {spec}: uids and gids must be in range 0-2147483647")]
    IdRange { spec: String },

    /// An account file of the rootfs (`/etc/passwd`, `/etc/group`) could not be read.
    #[error("reading {file} in rootfs {rootfs}")]
    AccountFile {
        rootfs: PathBuf,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// An account file of the rootfs is not a regular file or is too large.
    #[error("{file} in rootfs {rootfs} {reason}")]
    AccountFileInvalid {
        rootfs: PathBuf,
        file: &'static str,
        reason: &'static str,
    },

    /// The run options are not usable (relative working directory, bad mount target, empty argv).
    #[error("invalid run options: {0}")]
    InvalidSpec(String),

    /// No `runc` program was found.
    #[error("no OCI runtime: `runc` is not in PATH (Debian package runc)")]
    RuncNotFound,

    /// A file or directory of the container's bundle or state could not be written or read.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Starting the runtime program failed.
    #[error("starting {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The runtime could not create or start the container (its own error, not the process's).
    #[error("container {id} did not start: {message}")]
    Start { id: String, message: String },

    /// The runtime program ended without an exit code (killed by a signal).
    #[error("runtime for container {id} was killed by signal {signal}")]
    RuntimeKilled { id: String, signal: i32 },

    /// The run was cancelled; the container was killed and removed.
    #[error("run of container {id} was cancelled")]
    Cancelled { id: String },
}

impl RuntimeError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RuntimeError::Io {
            action,
            path,
            source,
        }
    }
}
