//! SSH agent forwarding for `RUN --mount=type=ssh`.
//!
//! The agent socket the build was given (`hull build --ssh default` or `--ssh ID=SOCKET`) is
//! never bound into a container. Each ssh mount of a RUN gets an [`AgentRelay`] instead: a new
//! socket in a scratch directory, owned by the mount's `uid`/`gid` with its `mode` (BuildKit's
//! defaults: root, 0600), whose connections are relayed byte for byte to the agent while the
//! step runs. The step can ask the agent to sign, as BuildKit's session proxy allows, but cannot
//! keep the agent once the step is over, and the agent's own socket keeps its owner and mode.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A socket relaying to an SSH agent; stops accepting when dropped (connections already open
/// end when either side closes).
#[derive(Debug)]
pub struct AgentRelay {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentRelay {
    /// Listens on `path` (which must not exist), owned by `uid:gid` with `mode`, relaying
    /// every connection to the agent listening on `agent`.
    pub fn start(
        agent: &Path,
        path: &Path,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> io::Result<AgentRelay> {
        let named = |e: io::Error, what: &str, p: &Path| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
        };
        // The agent must be there now: a relay to nothing would fail inside the step instead.
        UnixStream::connect(agent)
            .map_err(|e| named(e, "connecting to the SSH agent at", agent))?;
        let listener = UnixListener::bind(path).map_err(|e| named(e, "binding", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| named(e, "setting the mode of", path))?;
        rustix::fs::chown(
            path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| named(e.into(), "changing the owner of", path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let agent = agent.to_path_buf();
            std::thread::Builder::new()
                .name("hull-ssh-relay".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(client) = conn else { continue };
                        let Ok(upstream) = UnixStream::connect(&agent) else {
                            // The client sees its connection closed, as with a dead agent.
                            continue;
                        };
                        relay(client, upstream);
                    }
                })?
        };
        Ok(AgentRelay {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// Where the relay listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies both ways between `a` and `b` on two threads; each direction shuts down the other
/// side's writing half when its reader ends, so the peer sees end of file.
fn relay(a: UnixStream, b: UnixStream) {
    let pipe = |mut from: UnixStream, mut to: UnixStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("hull-ssh-relay-io".into())
        .spawn(pipe(a, b));
    let _ = std::thread::Builder::new()
        .name("hull-ssh-relay-io".into())
        .spawn(pipe(b2, a2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn the_relay_carries_a_conversation_and_has_the_asked_mode() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let echo = std::thread::spawn(move || {
            // The relay's own check, then one conversation.
            let _probe = agent.accept().unwrap();
            let (mut c, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
        });
        let relay_path = dir.path().join("relay");
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let relay = AgentRelay::start(&agent_path, &relay_path, uid, gid, 0o640).unwrap();
        let meta = std::fs::metadata(relay.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        let mut c = UnixStream::connect(relay.path()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "HELLO");
        echo.join().unwrap();
        drop(relay);
        assert!(!relay_path.exists(), "the relay removes its socket");
    }

    #[test]
    fn a_missing_agent_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = AgentRelay::start(&dir.path().join("none"), &dir.path().join("r"), 0, 0, 0o600)
            .unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }
}
