//! A private Docker daemon (Debian's `docker.io`, dockerd 20.10) for interop tests: its own
//! data root, exec root and socket in a temporary directory, no bridge network and no iptables
//! rules, and its own mount namespace, so that it never touches the host's Docker (socket,
//! `/var/lib/docker`) or configuration.
//!
//! dockerd writes its identity key to `/etc/docker/key.json` whatever its flags say (20.10 has
//! no flag for it); it runs under `unshare --mount` with a tmpfs over `/etc/docker`, which also
//! means every mount it makes (overlay layers of running containers) disappears with it.
//! Registries on loopback are plain http for Docker without configuration (127.0.0.0/8 is an
//! insecure registry by default), so tests reach `hull serve` and the CNCF registry as they are.
//!
//! The client is the Debian package's `/usr/bin/docker` (another `docker` earlier in `PATH` may
//! be a newer client; the daemon's API version is what it negotiates anyway), with
//! `DOCKER_CONFIG` in the daemon's directory so the host's `~/.docker` plays no part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private dockerd; dropping it stops the daemon (SIGTERM, then SIGKILL) and removes
/// its directories.
pub struct Dockerd {
    child: Child,
    client: PathBuf,
    socket: PathBuf,
    // Declared last: removed after the daemon is gone.
    _exec_root: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Dockerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dockerd")
            .field("socket", &self.socket)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Dockerd {
    /// Starts a daemon, installing `docker.io` when missing (as root). dockerd needs root:
    /// callers check with [`crate::peers::root_or_skip`] first.
    pub fn start() -> anyhow::Result<Dockerd> {
        let dockerd = crate::peers::ensure("dockerd", "docker.io")?;
        let unshare = crate::peers::ensure("unshare", "util-linux")?;
        let client = Path::new("/usr/bin/docker");
        let client = if client.is_file() {
            client.to_path_buf()
        } else {
            crate::peers::ensure("docker", "docker.io")?
        };
        let dir = tempfile::Builder::new()
            .prefix("hull-test-dockerd-")
            .tempdir()
            .context("creating dockerd's temp dir")?;
        // containerd's sockets live under the exec root: keep it short (sun_path is 108 bytes).
        let exec_root = tempfile::Builder::new()
            .prefix("hull-dockerd-")
            .tempdir_in("/tmp")
            .context("creating dockerd's exec root under /tmp")?;
        let socket = exec_root.path().join("docker.sock");
        let config = dir.path().join("daemon.json");
        fs_err::write(&config, "{}\n")?;
        fs_err::create_dir_all(dir.path().join("client"))?;
        let log = dir.path().join("dockerd.log");
        let script = format!(
            "mount -t tmpfs -o mode=0755 hull-test-etc-docker /etc/docker && exec {} \"$@\"",
            dockerd.display()
        );
        let child = Command::new(&unshare)
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&script)
            .arg("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(exec_root.path())
            .arg("--pidfile")
            .arg(exec_root.path().join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--config-file")
            .arg(&config)
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .with_context(|| format!("creating {}", log.display()))?,
            )
            .spawn()
            .with_context(|| format!("starting {}", dockerd.display()))?;
        let mut daemon = Dockerd {
            child,
            client,
            socket,
            _exec_root: exec_root,
            dir,
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "dockerd exited during startup with {status}:\n{}",
                    self.log_tail(20)
                );
            }
            if self.socket.exists() {
                let out = self
                    .docker()
                    .args(["version", "--format", "{{.Server.Version}}"])
                    .stderr(Stdio::null())
                    .output()?;
                if out.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "dockerd did not answer within {STARTUP_TIMEOUT:?}:\n{}",
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The Docker client talking to this daemon (`DOCKER_HOST`), with a private `DOCKER_CONFIG`.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `docker ARGS…` and returns its stdout; an error names the command, its status and
    /// stderr.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::peers::run(self.docker().args(args))
    }

    /// The client's configuration directory (where `docker login` stores credentials).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// The last `lines` lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all.get(all.len().saturating_sub(lines)..)
            .unwrap_or_default()
            .join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its mounts went with its mount namespace; the temp dirs go as the fields drop.
    }
}
