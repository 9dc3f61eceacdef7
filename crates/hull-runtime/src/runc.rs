//! Running a container with `runc run`: a bundle directory per run (config.json and the files
//! bound at `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`), the process's stdout and stderr
//! streamed to the caller, and everything removed afterwards, also on error, cancellation or a
//! panic in the caller's output callback.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::RuntimeError;
use crate::rootfs::{Root, missing_components, read_small};
use crate::spec::{self, EtcFiles, IdMapping, UserNamespace};
use crate::user::resolve_user;
use crate::{ExitStatus, RunSpec, Stream};

/// Where `runc` is looked for besides `PATH` (a plain user's `PATH` often lacks the sbin dirs).
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/bin",
];

/// How often a cancellation request is checked while the process runs.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Cancels a run from another thread: the container is killed and removed, and the run returns
/// [`RuntimeError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The OCI runtime: a `runc` program and a state directory holding its state (`runc/`) and the
/// bundles of running containers (`bundles/<id>/`).
#[derive(Debug, Clone)]
pub struct Runtime {
    runc: PathBuf,
    state_dir: PathBuf,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("hull-{}-{nanos:08x}-{n}", std::process::id())
}

impl Runtime {
    /// A runtime keeping its state under `state_dir`, running the `runc` found in `PATH` (or the
    /// sbin directories).
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let runc = find_program("runc").ok_or(RuntimeError::RuncNotFound)?;
        Ok(Runtime {
            runc,
            state_dir: state_dir.into(),
        })
    }

    /// Uses this `runc` program.
    pub fn with_runc(mut self, runc: impl Into<PathBuf>) -> Self {
        self.runc = runc.into();
        self
    }

    /// `/run/hull` for root; `$XDG_RUNTIME_DIR/hull` or `<temp dir>/hull-<uid>` for other users
    /// (runc's state must be writable by the caller).
    pub fn default_state_dir() -> PathBuf {
        let euid = rustix::process::geteuid();
        if euid.is_root() {
            return PathBuf::from("/run/hull");
        }
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("hull"),
            _ => std::env::temp_dir().join(format!("hull-{}", euid.as_raw())),
        }
    }

    /// The user namespace containers get: `None` for root (the host's ids), else the caller's
    /// ids as root inside plus its subordinate ranges (see [`UserNamespace`]).
    pub fn user_namespace(&self) -> Option<UserNamespace> {
        (!rustix::process::geteuid().is_root()).then(user_namespace)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory given to `runc --root` (to list or inspect running build containers).
    pub fn runc_root(&self) -> PathBuf {
        self.state_dir.join("runc")
    }

    /// Runs `spec` to completion; see [`Runtime::run_cancellable`].
    pub fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExitStatus, RuntimeError> {
        self.run_inner(spec, output, None)
    }

    /// Runs `spec`'s process in a new container and waits for it, passing what it writes to
    /// stdout and stderr to `output` as it comes (on the calling thread). Returns how the
    /// process ended; errors are about the container, never the process's own failure.
    /// Blocking: async callers run it on a blocking thread.
    pub fn run_cancellable(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(Stream, &[u8]),
        cancel: &Cancel,
    ) -> Result<ExitStatus, RuntimeError> {
        self.run_inner(spec, output, Some(cancel))
    }

    fn run_inner(
        &self,
        run: &RunSpec,
        output: &mut dyn FnMut(Stream, &[u8]),
        cancel: Option<&Cancel>,
    ) -> Result<ExitStatus, RuntimeError> {
        validate(run)?;
        let user = resolve_user(&run.rootfs, &run.user)?;
        let userns = self.user_namespace();

        let id = unique_id();
        let bundles = self.state_dir.join("bundles");
        let bundle = bundles.join(&id);
        let root_dir = self.runc_root();
        for d in [&bundles, &root_dir] {
            std::fs::create_dir_all(d).map_err(RuntimeError::io("creating directory", d))?;
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&bundle)
                .map_err(RuntimeError::io("creating bundle directory", &bundle))?;
        }
        let mut guard = Guard {
            runc: &self.runc,
            root_dir: &root_dir,
            id: &id,
            bundle: &bundle,
            rootfs: &run.rootfs,
            stubs: Vec::new(),
            child: None,
            created: false,
        };

        let network = run.network;
        let hostname = run
            .hostname
            .clone()
            .unwrap_or_else(|| spec::DEFAULT_HOSTNAME.to_string());
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").ok();
        let etc = EtcFiles {
            hosts: write_file(&bundle, "hosts", &spec::hosts_file(&hostname))?,
            resolv_conf: write_file(
                &bundle,
                "resolv.conf",
                &spec::resolv_conf(host_resolv.as_deref(), network),
            )?,
            hostname: write_file(&bundle, "hostname", &format!("{hostname}\n"))?,
        };
        let config = spec::build(run, &user, userns.as_ref(), &etc);

        // mount points the runtime will create in the rootfs, removed afterwards so that they
        // do not end up in the step's layer (as BuildKit removes its mount stubs)
        let root =
            Root::open(&run.rootfs).map_err(RuntimeError::io("opening rootfs", &run.rootfs))?;
        for m in &config.mounts {
            let missing = missing_components(&root, &m.destination)
                .map_err(RuntimeError::io("looking up mount point in", &run.rootfs))?;
            for p in missing {
                if !guard.stubs.contains(&p) {
                    guard.stubs.push(p);
                }
            }
        }
        drop(root);

        let json = serde_json::to_vec_pretty(&config).map_err(|e| RuntimeError::Io {
            action: "serialising",
            path: bundle.join("config.json"),
            source: e.into(),
        })?;
        write_file_bytes(&bundle, "config.json", &json)?;

        let log = bundle.join("runc.log");
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root")
            .arg(&root_dir)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(if run.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        guard.created = true;
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            program: self.runc.clone(),
            source,
        })?;

        let (tx, rx) = mpsc::sync_channel::<(Stream, Vec<u8>)>(16);
        if let Some(out) = child.stdout.take() {
            pump(out, Stream::Stdout, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, Stream::Stderr, tx.clone());
        }
        drop(tx);
        if let (Some(mut stdin), Some(data)) = (child.stdin.take(), run.stdin.clone()) {
            std::thread::spawn(move || {
                // the process may exit without reading its input: a broken pipe is its business
                let _ = stdin.write_all(&data);
            });
        }
        guard.child = Some(child);

        loop {
            let msg = match cancel {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(_) => rx.recv_timeout(CANCEL_POLL),
            };
            match msg {
                Ok((stream, data)) => output(stream, &data),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if cancel.is_some_and(Cancel::is_cancelled) {
                guard.kill();
                return Err(RuntimeError::Cancelled { id: id.clone() });
            }
        }

        let status = match guard.child.as_mut() {
            Some(c) => c
                .wait()
                .map_err(RuntimeError::io("waiting for", &self.runc))?,
            None => return Err(RuntimeError::Cancelled { id: id.clone() }),
        };
        guard.child = None;
        let errors = runc_errors(&log);
        match status.code() {
            Some(0) => {
                // `runc run` removed the container itself
                guard.created = false;
                Ok(ExitStatus::from_code(0))
            }
            Some(code) if errors.is_empty() => {
                guard.created = false;
                Ok(ExitStatus::from_code(code))
            }
            Some(_) => Err(RuntimeError::Start {
                id: id.clone(),
                message: errors.join("; "),
            }),
            None => {
                use std::os::unix::process::ExitStatusExt;
                Err(RuntimeError::RuntimeKilled {
                    id: id.clone(),
                    signal: status.signal().unwrap_or(0),
                })
            }
        }
    }
}

fn validate(run: &RunSpec) -> Result<(), RuntimeError> {
    if run.args.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command to run".into()));
    }
    if !run.cwd.starts_with('/') {
        return Err(RuntimeError::InvalidSpec(format!(
            "working directory {:?} is not absolute",
            run.cwd
        )));
    }
    if !run.rootfs.is_absolute() {
        return Err(RuntimeError::InvalidSpec(format!(
            "rootfs {} is not absolute",
            run.rootfs.display()
        )));
    }
    for m in &run.mounts {
        if !m.destination.starts_with('/') || m.destination.split('/').any(|c| c == "..") {
            return Err(RuntimeError::InvalidSpec(format!(
                "mount target {:?} is not an absolute path without `..`",
                m.destination
            )));
        }
    }
    if let Some(bad) = run
        .env
        .iter()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "environment entry {bad:?} is not KEY=value"
        )));
    }
    Ok(())
}

fn write_file(dir: &Path, name: &str, content: &str) -> Result<String, RuntimeError> {
    write_file_bytes(dir, name, content.as_bytes())?;
    Ok(dir.join(name).to_string_lossy().into_owned())
}

fn write_file_bytes(dir: &Path, name: &str, content: &[u8]) -> Result<(), RuntimeError> {
    // the bundle lives only as long as the container: no fsync needed
    let path = dir.join(name);
    std::fs::write(&path, content).map_err(RuntimeError::io("writing", path))
}

/// Forwards a pipe to the channel in chunks until EOF (or until the receiver is gone).
fn pump(
    mut from: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::SyncSender<(Stream, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default().to_vec();
                    if tx.send((stream, chunk)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
}

/// The error messages runc logged (its own failures; a process exiting non-zero logs nothing).
fn runc_errors(log: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        level: String,
        msg: String,
    }
    let Ok(text) = std::fs::read(log) else {
        return Vec::new();
    };
    String::from_utf8_lossy(text.get(..text.len().min(64 * 1024)).unwrap_or_default())
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| e.level == "error" || e.level == "fatal")
        .map(|e| e.msg)
        .collect()
}

/// The user namespace of a run by a user other than root: see [`UserNamespace`].
fn user_namespace() -> UserNamespace {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let name = host_user_name(uid);
    let tools = find_program("newuidmap").is_some() && find_program("newgidmap").is_some();
    let map = |id: u32, file: &str| {
        let mut m = vec![IdMapping {
            container_id: 0,
            host_id: id,
            size: 1,
        }];
        if tools {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if let Some((start, count)) = spec::subordinate_range(&text, name.as_deref(), uid) {
                m.push(IdMapping {
                    container_id: 1,
                    host_id: start,
                    size: count,
                });
            }
        }
        m
    };
    UserNamespace {
        uid_mappings: map(uid, "/etc/subuid"),
        gid_mappings: map(gid, "/etc/subgid"),
    }
}

/// The caller's login name from the host's `/etc/passwd` (trusted: it is the host's).
fn host_user_name(uid: u32) -> Option<String> {
    let root = Root::open(Path::new("/")).ok()?;
    let text = read_small(&root, "/etc/passwd", 16 * 1024 * 1024).ok()??;
    let text = String::from_utf8_lossy(&text);
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Cleans up after a run, whatever way it ends: kills and deletes the container if runc did not,
/// removes the mount points created in the rootfs and the bundle directory.
struct Guard<'a> {
    runc: &'a Path,
    root_dir: &'a Path,
    id: &'a str,
    bundle: &'a Path,
    rootfs: &'a Path,
    stubs: Vec<String>,
    child: Option<Child>,
    /// Whether runc may have left a container behind.
    created: bool,
}

impl Guard<'_> {
    fn delete(&self) {
        let _ = Command::new(self.runc)
            .arg("--root")
            .arg(self.root_dir)
            .args(["delete", "--force", self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Kills the container's processes and the runc process driving them.
    fn kill(&mut self) {
        if !self.created {
            return;
        }
        // `delete --force` SIGKILLs the container's init; the PID namespace takes every other
        // process with it, and `runc run` returns
        self.delete();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // runc killed while creating the container may leave it in the "created" state
        self.delete();
        self.created = false;
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if let Ok(root) = Root::open(self.rootfs) {
            for stub in self.stubs.iter().rev() {
                let _ = root.remove_if_empty(stub);
            }
        }
        let _ = std::fs::remove_dir_all(self.bundle);
    }
}
