//! Helpers shared by the end-to-end tests: a hull store per test, and one registry filled
//! with the fixture images per test process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hull_test::fixtures::{self, Fixtures};
use hull_test::registry::TestRegistry;

/// A hull store in a temporary directory, and the binary to drive it.
pub struct Hull {
    pub dir: tempfile::TempDir,
}

impl Hull {
    pub fn new() -> Hull {
        let dir = tempfile::Builder::new()
            .prefix("hull-e2e")
            .tempdir_in(scratch())
            .unwrap();
        std::fs::write(dir.path().join("config.toml"), "").unwrap();
        Hull { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hull"));
        c.arg("--root").arg(self.root());
        c.env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        c.env("HULL_CONFIG", self.dir.path().join("config.toml"));
        c.env_remove("HULL_ROOT");
        c.env("NO_COLOR", "1");
        c
    }

    /// Runs hull with `args`; panics with its output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "hull {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs hull with `args`, expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "hull {args:?} succeeded but should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// Image ID (`sha256:…`) of a stored image.
    pub fn image_id(&self, name: &str) -> String {
        self.ok(&["image", "inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_string()
    }
}

/// A directory for test scratch space on a real filesystem (overlay mounts need one; /tmp may
/// be tmpfs, which lacks user xattrs).
pub fn scratch() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The registry every test in this process shares, with all fixtures pushed.
pub fn registry() -> &'static (TestRegistry, Fixtures) {
    static REG: OnceLock<(TestRegistry, Fixtures)> = OnceLock::new();
    REG.get_or_init(|| {
        let reg = TestRegistry::start().expect("starting the test registry");
        let fx = fixtures::push_all(&reg.host()).expect("pushing fixtures");
        (reg, fx)
    })
}

/// Unpacks `layout:tag` with umoci and returns the rootfs path.
pub fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) -> PathBuf {
    let mut cmd = hull_test::peers::umoci();
    cmd.arg("unpack");
    if !hull_test::peers::is_root() {
        cmd.arg("--rootless");
    }
    cmd.arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest);
    hull_test::peers::run(&mut cmd).unwrap();
    dest.join("rootfs")
}

/// A `hull serve` process on loopback with its data in a directory of the caller's; killed
/// (SIGKILL) when dropped. Its stderr (address line, access log) goes to a file.
pub struct Serve {
    child: std::process::Child,
    addr: String,
    log: PathBuf,
    _root: tempfile::TempDir,
}

impl Serve {
    /// `hull serve --addr 127.0.0.1:0 --data DATA`.
    pub fn start(data: &Path) -> Serve {
        Self::start_at(data, "127.0.0.1:0")
    }

    /// `hull serve --addr 127.0.0.1:0 ARGS...` with extra environment (S3 credentials, say).
    pub fn start_with(args: &[&str], env: &[(&str, String)]) -> Serve {
        Self::try_start("127.0.0.1:0", args, env)
            .unwrap_or_else(|log| panic!("hull serve {args:?} did not start:\n{log}"))
    }

    /// `hull serve --addr ADDR --data DATA`; retries for a while when `ADDR` is still taken
    /// (a server just killed on it).
    pub fn start_at(data: &Path, addr: &str) -> Serve {
        let data = data.display().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match Self::try_start(addr, &["--data", &data], &[]) {
                Ok(s) => return s,
                Err(log) if log.contains("in use") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(log) => panic!("hull serve did not start on {addr}:\n{log}"),
            }
        }
    }

    fn try_start(addr: &str, args: &[&str], env: &[(&str, String)]) -> Result<Serve, String> {
        let root = tempfile::Builder::new()
            .prefix("hull-serve")
            .tempdir_in(scratch())
            .unwrap();
        let log = root.path().join("serve.log");
        std::fs::write(root.path().join("config.toml"), "").unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hull"));
        cmd.arg("--root")
            .arg(root.path().join("root"))
            .args(["serve", "--addr", addr])
            .args(args)
            .env("NO_COLOR", "1")
            .env("HULL_CONFIG", root.path().join("config.toml"))
            .env_remove("HULL_ROOT")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut serve = Serve {
            child,
            addr: String::new(),
            log,
            _root: root,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = serve.log();
            if let Some(a) = text
                .lines()
                .find_map(|l| l.split("listening on http://").nth(1))
            {
                serve.addr = a.split_whitespace().next().unwrap().to_string();
                return Ok(serve);
            }
            if serve.child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                serve.kill();
                return Err(serve.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the server printed on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CNCF registry of this test's own (empty).
pub fn cncf() -> TestRegistry {
    TestRegistry::start().expect("starting a CNCF registry")
}

/// `skopeo inspect --raw` of `reference` on a plain-http registry: the manifest's bytes.
pub fn raw_manifest(reference: &str) -> String {
    hull_test::peers::run(
        hull_test::peers::skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    )
    .unwrap()
}

/// The tree `hull image mount` shows for a stored image.
pub fn mounted_tree(
    hull: &Hull,
    image: &str,
) -> std::collections::BTreeMap<String, hull_test::tree::Entry> {
    let mount = hull.ok(&["image", "mount", image]).trim().to_string();
    let t = hull_test::tree::snapshot(Path::new(&mount)).unwrap();
    hull.ok(&["image", "umount", image]);
    t
}

/// The digest in the `TAG: digest: sha256:… size: N` line that `hull push` and `docker push`
/// print; panics when the line is missing or its size is not positive.
pub fn pushed_digest(stdout: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {stdout:?}"));
    let (digest, size) = line
        .trim_start_matches(&prefix)
        .split_once(" size: ")
        .unwrap_or_else(|| panic!("no size in {line:?}"));
    assert!(size.trim().parse::<u64>().unwrap() > 0, "{line}");
    digest.to_string()
}

/// `hull serve` with htpasswd users alice (`alice-pw`, every action on every repository) and
/// bob (`bob-pw`, pull only), anonymous pulls of `public/*`, and the token flow; its files
/// under `dir`.
pub fn token_auth_serve(dir: &Path) -> Serve {
    let hash = |p: &str| bcrypt::hash(p, 4).unwrap();
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\nbob:{}\n", hash("alice-pw"), hash("bob-pw")),
    )
    .unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        "[token]\nservice = \"hull-test\"\n\
         [[token.access]]\naccount = \"alice\"\nrepository = \"*\"\nactions = [\"*\"]\n\
         [[token.access]]\naccount = \"bob\"\nrepository = \"*\"\nactions = [\"pull\"]\n\
         [[token.access]]\naccount = \"\"\nrepository = \"public/*\"\nactions = [\"pull\"]\n",
    )
    .unwrap();
    let data = dir.join("data");
    Serve::start_with(
        &[
            "--data",
            &data.display().to_string(),
            "--htpasswd",
            &htpasswd.display().to_string(),
            "--token-auth",
            "--config",
            &config.display().to_string(),
        ],
        &[],
    )
}
