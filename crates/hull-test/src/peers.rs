//! Peer programs (skopeo, podman, umoci, the CNCF registry, busybox): find them, install the Debian
//! package that provides them when running as root, and build their command lines so that they
//! never read or write the host's configuration (`/etc/containers`, `~/.docker`) or storage.
//!
//! The rule for a missing peer: outside CI a test prints `SKIPPED: <why>` and passes; with `CI` set
//! it fails, so nothing is silently skipped where it matters.
//!
//! Host configuration is never edited (unlike the lab's setup script): podman gets a private
//! `containers.conf` (runc, capped rlimits), `registries.conf`, `storage.conf` and auth file
//! through `CONTAINERS_*`/`REGISTRY_AUTH_FILE`, and a per-test store; skopeo gets
//! `--insecure-policy --registries-conf`. Plain-http test registries are reached with the
//! `--tls-verify=false` family of flags, which callers pass per subcommand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};
use fs4::FileExt;

/// Directories searched besides `PATH` (root's peers live in `sbin` dirs that a plain user's `PATH`
/// may lack, e.g. `runc` in /usr/sbin).
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Whether `apt-get update` already ran in this process (`Some(true)` = it succeeded).
static APT_UPDATED: Mutex<Option<bool>> = Mutex::new(None);

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether missing peers are failures rather than skips (`CI` set to anything but `""`/`0`/`false`).
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var_os("CI").as_deref())
}

fn ci_value_means_ci(v: Option<&std::ffi::OsStr>) -> bool {
    v.is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Looks `bin` up in `PATH` and the usual system directories, without installing anything.
pub fn which(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Ensures program `bin` exists, installing Debian `package` with apt when missing and running as
/// root (`apt-get update` once per process when the install fails for lack of package lists;
/// installs are serialised across test processes with a file lock under the temp dir). Returns the
/// program's path.
///
/// When the program cannot be had: with `CI` set this panics (a peer test must never skip in CI);
/// otherwise it prints `SKIPPED: <bin> not available: <why>` to stderr and returns `None`.
pub fn require(bin: &str, package: &str) -> Option<PathBuf> {
    match ensure(bin, package) {
        Ok(p) => Some(p),
        Err(why) => {
            let msg = format!("{bin} not available: {why:#}");
            if in_ci() {
                panic!("{msg} (CI is set: peer tests must not be skipped)");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// Like [`require`] but an error instead of a skip, for harness code that needs the peer to
/// build something (fixtures, registries).
pub fn ensure(bin: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = which(bin) {
        return Ok(p);
    }
    if !is_root() {
        bail!("not in PATH, and not root so cannot `apt-get install {package}`");
    }
    apt_install(&[package]).with_context(|| format!("installing Debian package {package}"))?;
    which(bin)
        .with_context(|| format!("Debian package {package} installed but {bin} still not in PATH"))
}

/// `apt-get install -y --no-install-recommends <packages>` under the cross-process apt lock,
/// running `apt-get update` (once per process) and retrying when the first attempt fails.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let _lock = apt_lock()?;
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    match install() {
        Ok(_) => Ok(()),
        Err(first) => {
            if !apt_update_once_locked()? {
                return Err(first);
            }
            install().map(|_| ())
        }
    }
}

/// Runs `apt-get update` (under the cross-process apt lock) unless it already ran in this
/// process; returns whether it ran now (so a retry may help).
pub fn apt_update_once() -> anyhow::Result<bool> {
    let _lock = apt_lock()?;
    apt_update_once_locked()
}

/// [`apt_update_once`] for a caller already holding the apt lock (`$TMPDIR/hull-test-apt.lock`;
/// `flock` locks are per open file, so taking it twice in one process would deadlock).
pub fn apt_update_once_locked() -> anyhow::Result<bool> {
    let mut done = APT_UPDATED.lock().unwrap_or_else(|e| e.into_inner());
    if done.is_some() {
        return Ok(false);
    }
    let r = run(Command::new("apt-get").args(["update", "-q"]));
    *done = Some(r.is_ok());
    r.context("apt-get update")?;
    Ok(true)
}

/// The lock serialising apt runs across test processes (`$TMPDIR/hull-test-apt.lock`), held until
/// the returned file drops.
pub fn apt_lock() -> anyhow::Result<std::fs::File> {
    lock_file(&std::env::temp_dir().join("hull-test-apt.lock"))
}

/// An exclusive advisory lock on `path` (created if missing), held until the returned file drops.
pub fn lock_file(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    // flock needs no write access: open read-only a lock file another user created
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .with_context(|| format!("opening lock file {}", path.display()))?;
    FileExt::lock(&f).with_context(|| format!("locking {}", path.display()))?;
    Ok(f)
}

/// Returns early from the enclosing test when program `$bin` (from Debian package `$package`) is
/// unavailable outside CI (after printing `SKIPPED: ...`); panics in CI. Evaluates to its path.
///
/// In a test returning `Result`, give the value to return: `require_bin!("umoci", "umoci" => Ok(()))`.
#[macro_export]
macro_rules! require_bin {
    ($bin:expr, $package:expr) => {
        $crate::require_bin!($bin, $package => ())
    };
    ($bin:expr, $package:expr => $ret:expr) => {
        match $crate::peers::require($bin, $package) {
            ::std::option::Option::Some(path) => path,
            ::std::option::Option::None => return $ret,
        }
    };
}

/// Returns early from the enclosing test when not running as root (after printing `SKIPPED: ...`)
/// outside CI; panics in CI. `require_root!(=> Ok(()))` in a test returning `Result`.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::require_root!(=> ())
    };
    (=> $ret:expr) => {
        if !$crate::peers::root_or_skip() {
            return $ret;
        }
    };
}

/// What [`require_root!`] checks: `true` when root; otherwise panics in CI, or prints
/// `SKIPPED: not running as root` and returns `false`.
pub fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    if in_ci() {
        panic!("test needs root (CI is set: tests must not be skipped)");
    }
    eprintln!("SKIPPED: test needs root (effective uid is not 0)");
    false
}

/// Runs a command to completion (stdin closed), returning its stdout. On failure the error names the
/// command line, the exit status and the tail of stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let line = command_line(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("stdout of `{line}` is not UTF-8"))
}

/// The command line of `cmd`, shell-quoted where needed, for messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    let kept = all.get(start..).unwrap_or_default().join("\n");
    if kept.is_empty() {
        "(no stderr)".to_string()
    } else {
        kept
    }
}

/// The private configuration directory for peers (per user, under the temp dir), with
/// `registries.conf` (no search registries, so nothing unqualified reaches the network),
/// `containers.conf` (runc, capped rlimits, cgroupfs, file events, host network) and an empty
/// `auth.json`. Written idempotently.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "hull-test-peers-{}",
        rustix::process::geteuid().as_raw()
    ));
    fs_err::create_dir_all(&dir)?;
    write_if_changed(
        &dir.join("registries.conf"),
        "# private to hull's tests: no search registries, nothing unqualified is resolved\nunqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
    )?;
    write_if_changed(&dir.join("containers.conf"), &containers_conf())?;
    write_if_changed(&dir.join("auth.json"), "{\"auths\":{}}\n")?;
    // containers/storage insists on both roots in the file; podman() overrides them per test
    write_if_changed(
        &dir.join("storage.conf"),
        &format!(
            "# private to hull's tests (podman passes --root/--runroot per test)\n[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("storage").display(),
            dir.join("storage-run").display()
        ),
    )?;
    write_if_changed(
        &dir.join("policy.json"),
        "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n",
    )?;
    Ok(dir)
}

/// containers.conf for this kind of machine: crun refuses hybrid cgroup v1+v2 hosts (runc does
/// not); without CAP_SYS_RESOURCE podman's default rlimits (nofile=1048576) fail with EPERM, so
/// they are capped at this process's hard limits.
fn containers_conf() -> String {
    use rustix::process::{Resource, getrlimit};
    let hard = |r: Resource, cap: u64| getrlimit(r).maximum.map_or(cap, |m| m.min(cap));
    let nofile = hard(Resource::Nofile, 1_048_576);
    let nproc = hard(Resource::Nproc, 32_768);
    format!(
        "# private to hull's tests\n[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\nnetns = \"host\"\nlog_driver = \"k8s-file\"\n\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
    )
}

/// Writes `content` to `path` (temp file + fsync + rename) unless it already holds exactly that.
pub fn write_if_changed(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(());
    }
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent", path.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(content.as_bytes())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// `skopeo --insecure-policy --registries-conf <private>` with a private, empty auth file
/// (`REGISTRY_AUTH_FILE`), so the host's configuration and credentials play no part. Subcommand
/// flags (`--tls-verify=false`, `--src-tls-verify=false`, `--dest-tls-verify=false`, `--creds`)
/// are the caller's. Panics only if the private config dir cannot be written.
pub fn skopeo() -> Command {
    let dir = config_dir_or_panic();
    let mut cmd = Command::new(which("skopeo").unwrap_or_else(|| PathBuf::from("skopeo")));
    cmd.arg("--insecure-policy")
        .arg("--registries-conf")
        .arg(dir.join("registries.conf"))
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
        .env("CONTAINERS_CONF", dir.join("containers.conf"));
    cmd
}

/// `podman` with a private store under `tmp` (`--root tmp/root --runroot tmp/runroot`, overlay
/// driver), a private `containers.conf` (`CONTAINERS_CONF`: runc, capped rlimits), private
/// registries.conf and empty auth file. Pass `--tls-verify=false` to pull/push from a plain-http
/// test registry. Panics only if the private config dir cannot be written.
pub fn podman(tmp: &Path) -> Command {
    let dir = config_dir_or_panic();
    let mut cmd = Command::new(which("podman").unwrap_or_else(|| PathBuf::from("podman")));
    cmd.arg("--root")
        .arg(tmp.join("root"))
        .arg("--runroot")
        .arg(short_runroot(tmp))
        .arg("--tmpdir")
        .arg(tmp.join("libpod-tmp"))
        .arg("--storage-driver")
        .arg("overlay")
        .arg("--cgroup-manager")
        .arg("cgroupfs")
        .arg("--events-backend")
        .arg("file")
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"));
    cmd
}

/// `buildah` with a private store under `tmp` (`--root tmp/root --runroot tmp/runroot`, overlay
/// driver) and the same private configuration as [`podman`]; stdin is closed.
pub fn buildah(tmp: &Path) -> Command {
    let dir = config_dir_or_panic();
    let mut cmd = Command::new(which("buildah").unwrap_or_else(|| PathBuf::from("buildah")));
    cmd.arg("--root")
        .arg(tmp.join("root"))
        .arg("--runroot")
        .arg(tmp.join("runroot"))
        .arg("--storage-driver")
        .arg("overlay")
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
        .stdin(std::process::Stdio::null());
    cmd
}

/// podman refuses a runroot longer than 50 characters (its sockets live there): the runroot of
/// the store at `tmp` is a short directory under `/tmp` named after `tmp`, the same for every
/// command on that store. The checkout may sit at any depth, so `tmp` itself may be long.
fn short_runroot(tmp: &Path) -> PathBuf {
    let id = hull_oci::Digest::sha256_of(tmp.as_os_str().as_encoded_bytes());
    let p = PathBuf::from("/tmp").join(format!(
        "hull-podman-{}",
        id.hex().get(..16).unwrap_or_default()
    ));
    let _ = std::fs::create_dir_all(&p);
    p
}

/// `umoci` (no private configuration needed: it reads none).
pub fn umoci() -> Command {
    Command::new(which("umoci").unwrap_or_else(|| PathBuf::from("umoci")))
}

fn config_dir_or_panic() -> PathBuf {
    match config_dir() {
        Ok(d) => d,
        Err(e) => panic!("cannot write hull-test's private peer configuration: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_stdout() {
        let out = run(Command::new("sh").args(["-c", "echo hello"])).unwrap();
        assert_eq!(out, "hello\n");
    }

    #[test]
    fn run_failure_names_command_status_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo first >&2; echo boom >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`sh -c 'echo first >&2; echo boom >&2; exit 3'`"),
            "{err}"
        );
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.ends_with("first\nboom"), "{err}");
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("hull-test-no-such-program").is_none());
    }

    #[test]
    fn containers_conf_caps_rlimits_and_uses_runc() {
        use rustix::process::{Resource, getrlimit};
        let conf = containers_conf();
        assert!(conf.contains("runtime = \"runc\""), "{conf}");
        let want = getrlimit(Resource::Nofile)
            .maximum
            .map_or(1_048_576, |m| m.min(1_048_576));
        assert!(
            conf.contains(&format!("\"nofile={want}:{want}\"")),
            "{conf}"
        );
    }

    #[test]
    fn ci_is_any_value_but_empty_zero_or_false() {
        use std::ffi::OsStr;
        assert!(ci_value_means_ci(Some(OsStr::new("true"))));
        assert!(ci_value_means_ci(Some(OsStr::new("1"))));
        assert!(!ci_value_means_ci(None));
        assert!(!ci_value_means_ci(Some(OsStr::new(""))));
        assert!(!ci_value_means_ci(Some(OsStr::new("false"))));
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let mut c = Command::new("skopeo");
        c.args(["copy", "oci:/tmp/x:latest", "it's here", ""]);
        assert_eq!(
            command_line(&c),
            r"skopeo copy oci:/tmp/x:latest 'it'\''s here' ''"
        );
    }

    #[test]
    fn peer_commands_use_private_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let p = podman(tmp.path());
        let line = command_line(&p);
        assert!(
            line.contains(&format!("--root {}", tmp.path().join("root").display())),
            "{line}"
        );
        let envs: Vec<_> = p
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().to_string())
            .collect();
        assert!(envs.contains(&"CONTAINERS_CONF".to_string()), "{envs:?}");
        let conf = config_dir().unwrap();
        for f in [
            "registries.conf",
            "containers.conf",
            "storage.conf",
            "auth.json",
            "policy.json",
        ] {
            assert!(conf.join(f).is_file(), "{f}");
        }
        assert!(command_line(&skopeo()).contains("--insecure-policy --registries-conf"));
    }

    #[test]
    fn write_if_changed_rewrites_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_if_changed(&p, "a").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a");
        write_if_changed(&p, "b").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b");
    }
}
