//! hull as an unprivileged user: the store under the user's own directory, ownership recorded
//! rather than applied, device nodes skipped; builds run their steps in a user namespace over
//! copied snapshots (overlay mounts need privilege).

use std::os::unix::fs::PermissionsExt;

use crate::support::{registry, scratch};

/// A home directory an unprivileged user (nobody) can write, under the scratch directory, and a
/// runner of `hull ARGS` as that user with its store under the home.
fn unprivileged() -> (tempfile::TempDir, impl Fn(&[&str]) -> std::process::Output) {
    let home = tempfile::tempdir_in(scratch()).unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut dir = home.path().parent();
    while let Some(d) = dir {
        // Let the unprivileged user reach the scratch directory.
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001)).unwrap();
        }
        dir = d.parent();
    }
    let hull = env!("CARGO_BIN_EXE_hull");
    let h = home.path().to_path_buf();
    let run = move |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(hull)
            .args(args)
            .env("HOME", &h)
            .env("XDG_DATA_HOME", h.join("data"))
            .env("DOCKER_CONFIG", h.join("docker"))
            .env_remove("HULL_ROOT")
            .env_remove("HULL_SNAPSHOTTER")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    (home, run)
}

#[test]
fn pull_as_unprivileged_user() {
    hull_test::require_root!();
    let (_reg, fx) = registry();
    let (home, run) = unprivileged();
    let out = run(&["pull", &fx.multilayer]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        home.path().join("data/hull/metadata.db").exists(),
        "store under XDG_DATA_HOME"
    );
    let out = run(&["system", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn build_as_unprivileged_user_runs_steps_as_root_of_a_user_namespace() {
    hull_test::require_root!();
    hull_test::require_bin!("runc", "runc");
    let (_reg, fx) = registry();
    let (home, run) = unprivileged();
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "hull {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(&["pull", &fx.busybox]);
    let ctx = home.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nRUN id -u > /uid && echo made > /made && rm /etc/group\nRUN mkdir -p /d && id -u > /d/uid2\n",
            fx.busybox
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ctx, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctx_arg = ctx.display().to_string();
    let build = || {
        ok(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "rootless/built:1",
            &ctx_arg,
        ])
    };
    let out = build();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DONE"), "{log}");

    // The image holds what the steps did, owned as inside the container.
    let tar = home.path().join("rootfs.tar");
    ok(&[
        "image",
        "export",
        "rootless/built:1",
        "-o",
        &tar.display().to_string(),
    ]);
    let mut seen = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let owner = (e.header().uid().unwrap(), e.header().gid().unwrap());
        let mut bytes = Vec::new();
        if e.header().entry_type().is_file() {
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        seen.insert(path, (owner, text));
    }
    assert_eq!(
        seen.get("uid"),
        Some(&((0, 0), "0\n".to_string())),
        "{seen:?}"
    );
    assert_eq!(seen.get("made"), Some(&((0, 0), "made\n".to_string())));
    assert_eq!(seen.get("d/uid2").map(|(_, t)| t.as_str()), Some("0\n"));
    assert!(!seen.contains_key("etc/group"), "the deleted file is gone");
    assert!(seen.contains_key("etc/passwd"), "{seen:?}");

    // A second build is all cached.
    let out = build();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
}
