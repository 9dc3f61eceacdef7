//! Runs a build step's process in an isolated container made from a root filesystem directory:
//! the OCI runtime configuration is generated here ([`spec`]) with Docker's defaults, and run
//! by `runc` ([`Runtime`]).
//!
//! Owns: the container's configuration (namespaces, capabilities, mounts, masked paths, user
//! namespace for callers other than root), `USER` resolution against the image's account files
//! ([`resolve_user`]), and the container's lifecycle (start, stream output, exit status, clean
//! up). Must not depend on the image store, snapshots or the build: the caller hands over a
//! mounted, writable rootfs and owns it (overlay mounts and their copy fallback live with
//! snapshots, not here). Depends on no other hull crate.
//!
//! # Why runc and not youki's `libcontainer`
//! ARCHITECTURE.md suggests `libcontainer` 0.7 (13.9 ms vs 27 ms for `runc run`) and keeps
//! `runc` as the fallback. Re-measured here (2 shared cores under a load average of 8-10,
//! kernel 6.18, hybrid cgroup v1; start-to-exit of `/bin/true` in a busybox rootfs, bundle
//! already written, median of 20 runs, three rounds):
//!
//! | runtime | median | fastest run |
//! |---|---|---|
//! | `runc run` 1.1.5 (Debian) as a child process | 41.0-44.1 ms | 27.5 ms |
//! | `libcontainer` 0.7 in-process (`build`, `start`, `waitpid`, `delete`) | 32.4-36.1 ms | 15.4 ms |
//! | `libcontainer` 0.7 in a helper process (spawn + run) | 37.9-43.9 ms | 21.0 ms |
//!
//! In-process `libcontainer` is ~8 ms faster, but it forks the calling process and runs Rust
//! code (allocation, logging) in the child: in hull's multi-threaded tokio program another
//! thread may hold the allocator's or a logger's lock at fork time, so the child can deadlock.
//! Run safely it needs a helper process, and then it measures the same as `runc`. It also adds
//! ~140 crates and a link against libseccomp to hull's build. `runc` is the runtime Docker's
//! builder drives, so its behaviour (PATH lookup of `args[0]`, creating the working directory,
//! rootless mode, masked paths) is Docker's by construction. Hence `runc`, as a child process,
//! spawned from any thread; a RUN step's overlay mount, diff and commit cost far more than the
//! difference.
//!
//! `crun` fails on this host's hybrid cgroups.
//!
//! # What the container gets (Docker's builder semantics)
//! - Namespaces: mount, PID, IPC, UTS; network too with [`Network::None`] (loopback only), the
//!   host's with [`Network::Host`]; a user namespace when the caller is not root (its uid and
//!   gid map to 0; `/etc/subuid`/`/etc/subgid` ranges map 1 and up when `newuidmap` exists).
//! - Docker's default capabilities (`CapEff` `00000000a80425fb` for root), `no_new_privileges`
//!   off, no seccomp profile (see below), rlimits inherited.
//! - `/proc`, `/dev` (tmpfs with the standard devices, `pts`, `shm`, `mqueue`), `/sys`
//!   read-only, `/sys/fs/cgroup` read-only; Docker's masked and read-only paths.
//! - `/etc/resolv.conf` (the host's), `/etc/hosts` and `/etc/hostname` bound from the bundle,
//!   as Docker's builder provides them; mount points the runtime had to create in the rootfs are
//!   removed after the run so that they never land in the step's layer.
//! - `USER` resolved as Docker does; `PATH` and `HOME` added to the environment when missing;
//!   the working directory created when missing (by runc, inside the container).
//! - No cgroup limits: builds need none, and runc runs without `linux.resources`.
//!
//! # Exit status
//! runc, like Docker, reports a process killed by signal N as exit code 128+N, so a process
//! that itself exits with 137 cannot be told from one killed by SIGKILL; [`ExitStatus::signal`]
//! reads codes above 128 as signals. A process is PID 1 in its namespace: it cannot be killed
//! from inside by a signal it has no handler for (`kill -9 $$` in a `RUN` does nothing, as
//! under Docker).
//!
//! # Not done yet
//! - Docker's default seccomp profile and AppArmor profile are not applied.
//! - Without `/etc/subuid` ranges (and `newuidmap`), a caller other than root gets a single-id
//!   map: only root exists inside, so `USER app` or `chown` to other ids fails in that mode.
//! - A mount point that is a symlink in the image (`/etc/resolv.conf -> ../run/...`) makes
//!   runc create the link's target, which is not removed afterwards.
//! - One run at a time per rootfs: mount-point clean-up assumes nobody else creates the same
//!   paths meanwhile.

mod error;
mod rootfs;
mod runc;
pub mod spec;
mod user;

use std::path::PathBuf;

pub use error::RuntimeError;
pub use runc::{Cancel, Runtime};
pub use user::{ExecUser, resolve_user};

/// Which network the container uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (Docker's default for builds).
    #[default]
    Host,
    /// A network namespace of its own with only loopback (`--network=none`).
    None,
}

/// What a mount shows at its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A host directory or file (`RUN --mount=type=bind|cache|secret`).
    Bind { path: PathBuf, readonly: bool },
    /// An empty tmpfs (`RUN --mount=type=tmpfs`), `size` in bytes.
    Tmpfs { size: Option<u64> },
}

/// An extra mount of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path inside the container; created in the rootfs if missing (and removed
    /// again afterwards when it was).
    pub destination: String,
    pub source: MountSource,
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The root filesystem: a mounted, writable directory the caller owns (absolute path).
    pub rootfs: PathBuf,
    /// The argv; `args[0]` is looked up in the `PATH` of `env` when not a path (as runc does).
    pub args: Vec<String>,
    /// `KEY=value` entries; `PATH` and `HOME` are added when missing.
    pub env: Vec<String>,
    /// `""` (root), `name`, `uid`, `name:group`, `uid:gid`, resolved inside the rootfs.
    pub user: String,
    /// Absolute; created when missing (as Docker does for `WORKDIR`).
    pub cwd: String,
    pub network: Network,
    /// `None`: [`spec::DEFAULT_HOSTNAME`].
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    /// Fed to the process's stdin (`None`: `/dev/null`).
    pub stdin: Option<Vec<u8>>,
}

impl RunSpec {
    /// `args` in `rootfs` as root in `/`, host network, no extra environment.
    pub fn new(rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        RunSpec {
            rootfs: rootfs.into(),
            args,
            env: Vec::new(),
            user: String::new(),
            cwd: "/".to_string(),
            network: Network::Host,
            hostname: None,
            mounts: Vec::new(),
            stdin: None,
        }
    }
}

/// Which output stream a chunk of the process's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the process ended, as runc reports it (see the crate docs on signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    code: i32,
}

impl ExitStatus {
    pub(crate) fn from_code(code: i32) -> Self {
        ExitStatus { code }
    }

    /// The exit code; 128+N for a process killed by signal N (Docker's convention).
    pub fn code(&self) -> i32 {
        self.code
    }

    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// The signal that killed the process, read from a code above 128 (which a process may
    /// also have chosen to exit with).
    pub fn signal(&self) -> Option<i32> {
        (129..=128 + 64)
            .contains(&self.code)
            .then(|| self.code - 128)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.signal() {
            Some(sig) => write!(f, "exit code: {} (signal {sig})", self.code),
            None => write!(f, "exit code: {}", self.code),
        }
    }
}

/// Runs `spec` with the `runc` in `PATH` and state under [`Runtime::default_state_dir`]; see
/// [`Runtime::run_cancellable`].
pub fn run(
    spec: &RunSpec,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<ExitStatus, RuntimeError> {
    Runtime::new(Runtime::default_state_dir())?.run(spec, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reads_signals_above_128() {
        assert_eq!(ExitStatus::from_code(137).signal(), Some(9));
        assert_eq!(ExitStatus::from_code(3).signal(), None);
        assert_eq!(ExitStatus::from_code(128).signal(), None);
        assert_eq!(ExitStatus::from_code(255).signal(), None);
        assert!(ExitStatus::from_code(0).success());
        assert_eq!(
            ExitStatus::from_code(139).to_string(),
            "exit code: 139 (signal 11)"
        );
    }
}
