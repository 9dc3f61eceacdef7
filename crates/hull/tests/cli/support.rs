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
