//! Containers run with the real `runc` in a busybox rootfs (as root; one test as an unprivileged
//! user through `setpriv`, in a user namespace): output streams, exit statuses, environment,
//! users, network modes, Docker's capabilities and mounts, and clean-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hull_runtime::{
    Cancel, ExitStatus, Mount, MountSource, Network, RunSpec, Runtime, RuntimeError, Stream,
    resolve_user,
};

/// Where the rootless child test finds its fixture (set by [`rootless_user_namespace`]).
const ROOTLESS_ENV: &str = "HULL_RUNTIME_ROOTLESS_DIR";

struct Fixture {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    runtime: Runtime,
}

impl Fixture {
    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            env: vec!["PATH=/bin".into()],
            ..RunSpec::new(&self.rootfs, vec!["sh".into(), "-c".into(), script.into()])
        }
    }

    fn run(&self, spec: &RunSpec) -> Output {
        run_with(&self.runtime, spec)
    }

    /// Runs `script` as root, host network; panics unless it exits 0; returns stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.run(&self.spec(script));
        assert!(out.status.success(), "{script}: {out:?}");
        out.stdout
    }

    fn assert_clean(&self) {
        let bundles = self.runtime.state_dir().join("bundles");
        let left: Vec<_> = fs::read_dir(&bundles)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "bundles left behind: {left:?}");
        assert_eq!(runc_list(&self.runtime), Vec::<String>::new());
    }
}

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn run_with(runtime: &Runtime, spec: &RunSpec) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let status = runtime
        .run(spec, &mut |s, b| match s {
            Stream::Stdout => stdout.extend_from_slice(b),
            Stream::Stderr => stderr.extend_from_slice(b),
        })
        .unwrap();
    Output {
        status,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn runc_list(runtime: &Runtime) -> Vec<String> {
    let out = Command::new(hull_test::peers::which("runc").unwrap())
        .arg("--root")
        .arg(runtime.runc_root())
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    app:x:1000:1000:app:/home/app:/bin/sh\n\
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n";

/// A busybox rootfs: `/bin/busybox` (static) with a symlink per applet, account files with
/// root and `app` (1000:1000, also in `wheel`), `/tmp`, `/root`, `/home/app`. No `/proc`,
/// `/dev`, `/sys` or `/etc/hosts`: the runtime must create and remove those mount points.
fn make_rootfs(rootfs: &Path) {
    let busybox = Path::new("/bin/busybox");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
    }
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
    fs::write(rootfs.join("etc/group"), GROUP).unwrap();
    for d in ["tmp", "root", "home/app"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
}

/// Root, runc and a static busybox, or `None` after printing `SKIPPED` (outside CI).
fn fixture() -> Option<Fixture> {
    if !hull_test::peers::root_or_skip() {
        return None;
    }
    hull_test::peers::require("runc", "runc")?;
    hull_test::peers::require("busybox", "busybox-static")?;
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    make_rootfs(&rootfs);
    let runtime = Runtime::new(dir.path().join("state")).unwrap();
    Some(Fixture {
        dir,
        rootfs,
        runtime,
    })
}

macro_rules! fixture {
    () => {
        match fixture() {
            Some(f) => f,
            None => return,
        }
    };
}

#[test]
fn stdout_and_stderr_are_streamed_separately() {
    let f = fixture!();
    let out = f.run(&f.spec("echo hi; echo oops >&2; echo there"));
    assert_eq!(out.stdout, "hi\nthere\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.status.code(), 0);

    // chunks arrive while the process still runs, not only at its end
    let mut first = None;
    let start = Instant::now();
    let status = f
        .runtime
        .run(&f.spec("echo early; sleep 2; echo late"), &mut |_, b| {
            if first.is_none() {
                first = Some((start.elapsed(), String::from_utf8_lossy(b).into_owned()));
            }
        })
        .unwrap();
    assert!(status.success());
    let (at, text) = first.unwrap();
    assert_eq!(text, "early\n");
    assert!(
        at < Duration::from_millis(1500),
        "first output after {at:?}"
    );
    f.assert_clean();
}

#[test]
fn stdin_is_fed_to_the_process() {
    let f = fixture!();
    let spec = RunSpec {
        stdin: Some(b"from stdin\n".to_vec()),
        ..f.spec("cat")
    };
    assert_eq!(f.run(&spec).stdout, "from stdin\n");
    // without stdin: /dev/null, so `cat` ends at once
    assert_eq!(f.run(&f.spec("cat")).stdout, "");
}

#[test]
fn exit_codes_and_signal_deaths() {
    let f = fixture!();
    let out = f.run(&f.spec("exit 3"));
    assert_eq!((out.status.code(), out.status.signal()), (3, None));

    // a process killed by SIGKILL in the container: reported as 128+9
    let out = f.run(&f.spec("sh -c 'kill -9 $$'; exit $?"));
    assert_eq!((out.status.code(), out.status.signal()), (137, Some(9)));

    // PID 1 has no default action for signals sent from inside its namespace: like under
    // Docker, `kill -9 $$` does nothing to it
    let out = f.run(&f.spec("kill -9 $$; echo survived"));
    assert_eq!((out.stdout.as_str(), out.status.code()), ("survived\n", 0));

    // the process itself killed (from the host)
    let runtime = f.runtime.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = runc_list(&runtime).first() {
                let st = Command::new(hull_test::peers::which("runc").unwrap())
                    .arg("--root")
                    .arg(runtime.runc_root())
                    .args(["kill", id, "KILL"])
                    .status()
                    .unwrap();
                if st.success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "container never listed");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let start = Instant::now();
    let out = f.run(&f.spec("sleep 30"));
    killer.join().unwrap();
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(20));
    f.assert_clean();
}

#[test]
fn runtime_failures_are_errors_not_exit_codes() {
    let f = fixture!();
    let spec = RunSpec::new(&f.rootfs, vec!["nosuchprog".into()]);
    let err = f.runtime.run(&spec, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Start { message, .. } if message.contains("executable file not found")),
        "{err}"
    );
    f.assert_clean();

    let spec = RunSpec {
        cwd: "relative".into(),
        ..f.spec("true")
    };
    assert!(matches!(
        f.runtime.run(&spec, &mut |_, _| {}),
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[test]
fn environment_working_directory_and_home() {
    let f = fixture!();
    let spec = RunSpec {
        env: vec!["FOO=bar baz".into(), "EMPTY=".into()],
        cwd: "/work/sub".into(),
        ..f.spec("pwd; echo \"$FOO|$EMPTY|$HOME|$PATH\"")
    };
    let out = f.run(&spec);
    assert_eq!(
        out.stdout,
        "/work/sub\nbar baz||/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{out:?}"
    );
    assert!(
        f.rootfs.join("work/sub").is_dir(),
        "WORKDIR created in the rootfs"
    );

    // argv[0] looked up in the PATH of the process's environment
    let spec = RunSpec {
        env: vec!["PATH=/opt/tools:/bin".into(), "HOME=/h".into()],
        ..RunSpec::new(
            &f.rootfs,
            vec!["sh".into(), "-c".into(), "echo $HOME".into()],
        )
    };
    assert_eq!(f.run(&spec).stdout, "/h\n");
}

#[test]
fn user_is_resolved_in_the_rootfs() {
    let f = fixture!();
    let id_as = |user: &str| {
        let spec = RunSpec {
            user: user.into(),
            ..f.spec("id; echo $HOME")
        };
        let out = f.run(&spec);
        assert!(out.status.success(), "{user}: {out:?}");
        out.stdout
    };
    assert_eq!(id_as(""), "uid=0(root) gid=0(root) groups=0(root)\n/root\n");
    assert_eq!(
        id_as("app"),
        "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)\n/home/app\n"
    );
    assert_eq!(
        id_as("1000:1000"),
        "uid=1000(app) gid=1000(app) groups=1000(app)\n/home/app\n"
    );
    assert_eq!(
        id_as("app:app"),
        "uid=1000(app) gid=1000(app) groups=1000(app)\n/home/app\n"
    );
    assert_eq!(id_as("4242:77"), "uid=4242 gid=77 groups=77\n/\n");

    let spec = RunSpec {
        user: "ghost".into(),
        ..f.spec("true")
    };
    let err = f.runtime.run(&spec, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
    f.assert_clean();
}

fn interfaces(proc_net_dev: &str) -> BTreeSet<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter(|l| l.contains(':'))
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn network_none_has_only_loopback_and_host_shares_the_hosts() {
    let f = fixture!();
    let none = RunSpec {
        network: Network::None,
        ..f.spec("cat /proc/net/dev; ip link show lo | grep -c UP")
    };
    let out = f.run(&none);
    assert_eq!(interfaces(&out.stdout), BTreeSet::from(["lo".to_string()]));
    assert!(out.stdout.ends_with("1\n"), "lo is up: {out:?}");

    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert!(host.len() > 1, "host has interfaces besides lo: {host:?}");
    let inside = interfaces(&f.sh("cat /proc/net/dev"));
    assert_eq!(inside, host);

    // resolv.conf and hosts as Docker's builder provides them
    let hosts = f.sh("cat /etc/hosts");
    assert!(
        hosts.starts_with("127.0.0.1\tlocalhost buildkitsandbox\n"),
        "{hosts}"
    );
    if let Ok(host_resolv) = fs::read_to_string("/etc/resolv.conf")
        && host_resolv.contains("nameserver")
    {
        assert_eq!(f.sh("cat /etc/resolv.conf"), host_resolv);
    }
}

#[test]
fn dockers_capabilities_hostname_and_system_mounts() {
    let f = fixture!();
    assert_eq!(
        f.sh("grep CapEff /proc/self/status"),
        "CapEff:\t00000000a80425fb\n"
    );
    assert_eq!(
        f.sh("grep CapBnd /proc/self/status"),
        "CapBnd:\t00000000a80425fb\n"
    );
    // a non-root user has no effective capabilities (as under Docker)
    let spec = RunSpec {
        user: "app".into(),
        ..f.spec("grep CapEff /proc/self/status")
    };
    assert_eq!(f.run(&spec).stdout, "CapEff:\t0000000000000000\n");

    assert_eq!(
        f.sh("hostname; cat /etc/hostname"),
        "buildkitsandbox\nbuildkitsandbox\n"
    );
    let spec = RunSpec {
        hostname: Some("builder-1".into()),
        ..f.spec("hostname")
    };
    assert_eq!(f.run(&spec).stdout, "builder-1\n");

    // PID namespace: the process is PID 1 and sees only its own processes
    assert_eq!(f.sh("echo $$; cd /proc && echo [0-9]*"), "1\n1\n");
    let out = f.sh(
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c \
         && echo shm > /dev/shm/t && cat /dev/shm/t && ls /dev/pts/ptmx /dev/mqueue >/dev/null \
         && echo ok",
    );
    assert_eq!(out, "4\n8\nshm\nok\n");
    let out = f.run(&f.spec("touch /sys/x; echo $?; grep ' /sys ' /proc/mounts"));
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("1"), "{out:?}");
    assert!(lines.next().unwrap().contains(" ro,"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    // Docker's masked and read-only paths
    for masked in ["/proc/keys", "/proc/timer_list", "/proc/interrupts"] {
        if Path::new(masked).exists() {
            assert!(fs::read(masked).map(|b| !b.is_empty()).unwrap_or(true));
            assert_eq!(f.sh(&format!("wc -c < {masked}")), "0\n", "{masked} masked");
        }
    }
    let out = f.run(&f.spec("echo 1 > /proc/sys/kernel/domainname"));
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn writes_land_in_the_rootfs_and_mount_points_are_removed() {
    let f = fixture!();
    let cache = f.dir.path().join("cache");
    let ro = f.dir.path().join("ro");
    fs::create_dir_all(&cache).unwrap();
    fs::create_dir_all(&ro).unwrap();
    fs::write(ro.join("in"), "read me\n").unwrap();
    let spec = RunSpec {
        mounts: vec![
            Mount {
                destination: "/var/cache/apt".into(),
                source: MountSource::Bind {
                    path: cache.clone(),
                    readonly: false,
                },
            },
            Mount {
                destination: "/src".into(),
                source: MountSource::Bind {
                    path: ro.clone(),
                    readonly: true,
                },
            },
            Mount {
                destination: "/scratch".into(),
                source: MountSource::Tmpfs {
                    size: Some(1 << 20),
                },
            },
        ],
        ..f.spec(
            "echo data > /out.txt; echo cached > /var/cache/apt/c; cat /src/in; \
             touch /src/no 2>/dev/null || echo ro; echo t > /scratch/t; \
             grep ' /scratch ' /proc/mounts | grep -c size=1024k",
        )
    };
    let out = f.run(&spec);
    assert_eq!(out.stdout, "read me\nro\n1\n", "{out:?}");
    assert_eq!(
        fs::read_to_string(f.rootfs.join("out.txt")).unwrap(),
        "data\n"
    );
    assert_eq!(fs::read_to_string(cache.join("c")).unwrap(), "cached\n");
    assert!(!f.rootfs.join("var/cache/apt/c").exists());
    // mount points runc created are gone; the rootfs holds only what the process wrote
    for stub in [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
        "var",
        "src",
        "scratch",
    ] {
        assert!(
            fs::symlink_metadata(f.rootfs.join(stub)).is_err(),
            "mount point {stub} left in the rootfs"
        );
    }
    // existing mount points and their content are kept
    fs::create_dir_all(f.rootfs.join("proc")).unwrap();
    fs::write(f.rootfs.join("etc/hosts"), "").unwrap();
    f.sh("true");
    assert!(f.rootfs.join("proc").is_dir());
    assert!(f.rootfs.join("etc/hosts").is_file());
    f.assert_clean();
}

#[test]
fn cancel_kills_and_removes_the_container() {
    let f = fixture!();
    let cancel = Cancel::new();
    let c = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        c.cancel();
    });
    let start = Instant::now();
    let mut seen = String::new();
    let r = f.runtime.run_cancellable(
        &f.spec("echo started; sleep 30"),
        &mut |_, b| seen.push_str(&String::from_utf8_lossy(b)),
        &cancel,
    );
    canceller.join().unwrap();
    assert!(matches!(r, Err(RuntimeError::Cancelled { .. })), "{r:?}");
    assert_eq!(seen, "started\n");
    assert!(start.elapsed() < Duration::from_secs(10));
    f.assert_clean();

    // a panicking output callback also leaves nothing behind
    let spec = f.spec("echo boom; sleep 30");
    let runtime = f.runtime.clone();
    let panicked = std::panic::catch_unwind(move || {
        let _ = runtime.run(&spec, &mut |_, _| panic!("callback failed"));
    });
    assert!(panicked.is_err());
    f.assert_clean();
}

/// `/etc/passwd` pointing at the host's `/etc/shadow`, absolutely and by `..`: the lookup stays
/// inside the rootfs (the host's shadow has a `root` entry, which would parse as a user).
#[test]
fn hostile_passwd_symlinks_stay_inside_the_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in [
        ("abs", "/etc/shadow"),
        ("dotdot", "../../../../../../etc/shadow"),
    ] {
        let rootfs = dir.path().join(name);
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink(target, rootfs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(target, rootfs.join("etc/group")).unwrap();
        let err = resolve_user(&rootfs, "root").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user root: no matching entries in passwd file",
            "{name}"
        );
        // the rootfs's own /etc/shadow is what the link means inside the container
        fs::write(rootfs.join("etc/shadow"), "root:x:4242:4343::/r:/bin/sh\n").unwrap();
        let u = resolve_user(&rootfs, "root").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str()),
            (4242, 4343, "/r"),
            "{name}"
        );
        // the group file resolves the same way: no host group is found
        assert!(matches!(
            resolve_user(&rootfs, "root:shadow"),
            Err(RuntimeError::GroupNotFound { .. })
        ));
    }
    // a FIFO or a directory as /etc/passwd is refused, not waited on
    let rootfs = dir.path().join("fifo");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        rootfs.join("etc/passwd"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(matches!(
        resolve_user(&rootfs, "app"),
        Err(RuntimeError::AccountFileInvalid { .. })
    ));

    // and through a whole run: the host's root entry is not used
    let Some(f) = fixture() else { return };
    fs::remove_file(f.rootfs.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", f.rootfs.join("etc/passwd")).unwrap();
    let spec = RunSpec {
        user: "root".into(),
        ..f.spec("true")
    };
    assert!(matches!(
        f.runtime.run(&spec, &mut |_, _| {}),
        Err(RuntimeError::UserNotFound { .. })
    ));
}

/// As an unprivileged user (65534 through `setpriv`), runc runs rootless: the caller's uid is
/// root in a user namespace. The work happens in [`rootless_child`], run by this test.
#[test]
fn rootless_user_namespace() {
    let Some(f) = fixture() else { return };
    let setpriv = match hull_test::peers::require("setpriv", "util-linux") {
        Some(p) => p,
        None => return,
    };
    // the child reaches the fixture through world-searchable directories and owns it
    fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args(["-hR", "65534:65534"])
        .arg(&f.rootfs)
        .status()
        .unwrap();
    assert!(chown.success());
    let state = f.dir.path().join("rootless-state");
    fs::create_dir_all(&state).unwrap();
    rustix::fs::chown(
        &state,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(setpriv)
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "rootless_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROOTLESS_ENV, f.dir.path())
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "rootless child failed:\n{stdout}\n{stderr}"
    );
}

#[test]
#[ignore = "run by rootless_user_namespace as an unprivileged user"]
fn rootless_child() {
    let dir =
        PathBuf::from(std::env::var_os(ROOTLESS_ENV).expect("run by rootless_user_namespace"));
    assert_ne!(
        rustix::process::geteuid().as_raw(),
        0,
        "must run unprivileged"
    );
    let runtime = Runtime::new(dir.join("rootless-state")).unwrap();
    let rootfs = dir.join("rootfs");
    let spec = |script: &str| RunSpec {
        env: vec!["PATH=/bin".into()],
        ..RunSpec::new(&rootfs, vec!["sh".into(), "-c".into(), script.into()])
    };
    let out = run_with(
        &runtime,
        &spec(
            "echo hi; id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status; echo w > /rootless.txt",
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "hi");
    assert_eq!(lines[1], "0");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "{out:?}");
    assert_eq!(lines[3], "CapEff:\t00000000a80425fb");
    assert_eq!(
        fs::read_to_string(rootfs.join("rootless.txt")).unwrap(),
        "w\n"
    );
    let none = RunSpec {
        network: Network::None,
        ..spec("cat /proc/net/dev")
    };
    let out = run_with(&runtime, &none);
    assert_eq!(
        interfaces(&out.stdout),
        BTreeSet::from(["lo".to_string()]),
        "{out:?}"
    );
    assert_eq!(run_with(&runtime, &spec("exit 5")).status.code(), 5);
    assert!(
        fs::read_dir(runtime.state_dir().join("bundles"))
            .unwrap()
            .next()
            .is_none()
    );
}
