//! An S3 server (`s3s-fs`, a file-system backed implementation of the S3 API) on a free loopback
//! port, storing in a temporary directory; it can be stopped and restarted on the same port and
//! data, to test what a client does while its store is away.
//!
//! `s3s-fs` is not a Debian package: it is installed with
//! `cargo install s3s-fs --version 0.14.1 --locked --features binary` (`.ci/run` does). As with
//! the other peers, a missing `s3s-fs` skips a test outside CI and fails it with `CI` set.
//! Buckets are directories of the server's root, so [`S3Server::create_bucket`] makes one.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The access key every [`S3Server`] accepts.
pub const ACCESS_KEY: &str = "hull-test";
/// The secret key every [`S3Server`] accepts.
pub const SECRET_KEY: &str = "hull-test-secret";
/// The bucket [`S3Server::start`] creates.
pub const BUCKET: &str = "hull";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where `s3s-fs` is: `PATH`, the usual system directories, or cargo's bin directory
/// (`$CARGO_HOME/bin`, `~/.cargo/bin`).
pub fn find() -> Option<PathBuf> {
    if let Some(p) = crate::peers::which("s3s-fs") {
        return Some(p);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let p = cargo_home.join("bin").join("s3s-fs");
    crate::peers::which(&p.to_string_lossy())
}

/// `s3s-fs`'s path; `None` (after printing `SKIPPED: ...`) when it is missing outside CI.
/// Panics when it is missing with `CI` set.
pub fn require() -> Option<PathBuf> {
    match find() {
        Some(p) => Some(p),
        None => {
            let msg = "s3s-fs not available: install it with `cargo install s3s-fs --version 0.14.1 --locked --features binary`";
            if crate::peers::in_ci() {
                panic!("{msg} (CI is set: peer tests must not be skipped)");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// Returns early from the enclosing test when `s3s-fs` is unavailable outside CI; panics in CI.
/// Evaluates to its path.
#[macro_export]
macro_rules! require_s3s_fs {
    () => {
        match $crate::s3::require() {
            ::std::option::Option::Some(path) => path,
            ::std::option::Option::None => return,
        }
    };
}

/// A running `s3s-fs` with the bucket [`BUCKET`]; dropping it kills the process and removes
/// its data.
pub struct S3Server {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .field("dir", &self.dir.path())
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl S3Server {
    /// Starts `bin` on a free loopback port with an empty bucket [`BUCKET`].
    ///
    /// The port is picked before the server binds it: a caller that also binds free ports
    /// concurrently should serialise those binds with this call.
    pub fn start(bin: &Path) -> anyhow::Result<S3Server> {
        let dir = tempfile::Builder::new()
            .prefix("hull-test-s3-")
            .tempdir()
            .context("creating the S3 server's temp dir")?;
        fs_err::create_dir_all(dir.path().join("data").join(BUCKET))?;
        let mut server = S3Server {
            bin: bin.to_path_buf(),
            child: None,
            port: 0,
            dir,
        };
        let mut last_err = None;
        for _ in 0..5 {
            server.port = std::net::TcpListener::bind("127.0.0.1:0")
                .context("binding a loopback port")?
                .local_addr()?
                .port();
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no free port for s3s-fs")))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs_err::File::create(self.dir.path().join("s3s-fs.log"))?;
        let log_err = log.try_clone()?;
        let mut child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.into_file()))
            .stderr(Stdio::from(log_err.into_file()))
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "s3s-fs exited during startup with {status}: {}",
                    self.log_tail()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Something answers; make sure it is this server and not another that took
                // the port meanwhile (s3s-fs then exits with "address in use").
                std::thread::sleep(Duration::from_millis(100));
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "s3s-fs exited during startup with {status}: {}",
                        self.log_tail()
                    );
                }
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "s3s-fs did not listen on 127.0.0.1:{} within {STARTUP_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the buckets (one subdirectory each).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates an empty bucket `name` (idempotent).
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        if name.is_empty() || name.contains(['/', '.']) {
            bail!("invalid bucket name {name:?}");
        }
        fs_err::create_dir_all(self.data_dir().join(name))?;
        Ok(())
    }

    /// Kills the server (SIGKILL: requests in flight are cut off).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port and data (stopping it first if it runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may still be held by connections of the old process for a moment.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.context("restarting s3s-fs on its port")),
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines of the server's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        lines.get(from..).unwrap_or_default().join("\n")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_its_port() {
        let Some(bin) = find() else {
            if crate::peers::in_ci() {
                panic!("s3s-fs not available (CI is set)");
            }
            eprintln!("SKIPPED: s3s-fs not available");
            return;
        };
        let mut s = S3Server::start(&bin).unwrap();
        assert!(s.is_running());
        let port = s.port();
        s.create_bucket("other").unwrap();
        assert!(s.data_dir().join("other").is_dir());
        s.stop();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(s.data_dir().join(BUCKET).is_dir());
    }
}
