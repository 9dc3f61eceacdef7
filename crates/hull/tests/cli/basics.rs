//! Output, errors and exit statuses of the commands that need no registry.

use assert_cmd::Command;

/// `hull` with its store in `dir/store` and an empty configuration file, so nothing of the
/// machine running the tests is used.
fn hull(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("hull").unwrap();
    cmd.arg("--root").arg(dir.join("store"));
    cmd.env_remove("HULL_ROOT");
    cmd.env("NO_COLOR", "1");
    cmd.env("HULL_CONFIG", dir.join("config.toml"));
    cmd
}

fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "").unwrap();
    dir
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn images_on_an_empty_store_prints_only_the_header() {
    let dir = store();
    let out = hull(dir.path()).arg("images").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
    );
    let out = hull(dir.path())
        .args(["image", "ls", "--digests"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "REPOSITORY   TAG       DIGEST    IMAGE ID   CREATED   SIZE\n"
    );
}

#[test]
fn images_json_and_quiet_print_nothing_when_empty() {
    let dir = store();
    for args in [&["images", "--format", "json"][..], &["images", "-q"][..]] {
        let out = hull(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let out = hull(dir.path())
        .args(["images", "--format", "table {{.ID}}\\t{{.Repository}}"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "IMAGE ID   REPOSITORY\n");
}

#[test]
fn bad_flags_exit_125_with_one_line() {
    let dir = store();
    for args in [
        &["images", "--bogus"][..],
        &["tag", "only-one"][..],
        &["history", "-H=maybe", "x"][..],
        &["nosuchverb"][..],
    ] {
        let out = hull(dir.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("Error: "), "{args:?}: {err}");
        assert_eq!(stdout(&out), "");
    }
    let out = hull(dir.path())
        .args(["images", "--bogus"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("'--bogus'"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hull images --help"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_filter_is_an_error() {
    let dir = store();
    let out = hull(dir.path())
        .args(["images", "--filter", "colour=red"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("Error: invalid filter 'colour'\n"), "{err}");
    assert!(err.contains("hint: "), "{err}");
}

#[test]
fn version_prints_the_version() {
    let dir = store();
    let out = hull(dir.path()).arg("version").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Version:   {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let out = hull(dir.path())
        .args(["version", "--format", "{{.Version}}"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{}\n", env!("CARGO_PKG_VERSION")));
    let out = Command::cargo_bin("hull")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn inspect_of_a_missing_image_fails() {
    let dir = store();
    let out = hull(dir.path())
        .args(["inspect", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: no such image: nosuch\n");
    assert_eq!(stdout(&out), "[]\n");
    let out = hull(dir.path())
        .args(["image", "inspect", "--format", "{{.Id}}", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: no such image: a\nError: no such image: b\n"
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn save_refuses_nothing_to_save_and_names_missing_images() {
    let dir = store();
    let out = hull(dir.path())
        .args(["save", "-o"])
        .arg(dir.path().join("out.tar"))
        .arg("nosuch")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: no such image: nosuch\n");
    assert!(
        !dir.path().join("out.tar").exists(),
        "a failed save leaves no file"
    );
}

#[test]
fn prune_asks_first() {
    let dir = store();
    let out = hull(dir.path())
        .args(["image", "prune"])
        .write_stdin("n\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    );
    assert_eq!(stdout(&out), "");
    let out = hull(dir.path())
        .args(["image", "prune", "-f"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Total reclaimed space: 0B\n");
}

#[test]
fn config_file_errors_name_the_file() {
    let dir = store();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "insecure-registry = [\"x\"]\n").unwrap();
    let out = hull(dir.path())
        .env("HULL_CONFIG", &cfg)
        .arg("images")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("Error: reading configuration "), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A root filesystem tarball with one file, made with the system's `tar`.
fn rootfs_tarball(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hello"), "hello\n").unwrap();
    let tarball = dir.join("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

#[test]
fn import_list_save_remove_load_round_trip() {
    let dir = store();
    let tarball = rootfs_tarball(dir.path());
    let out = hull(dir.path())
        .args(["import", "-c", "CMD [\"sh\"]", "-m", "first"])
        .arg(&tarball)
        .arg("demo/hello:1.0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let short = &id[7..19];

    let out = hull(dir.path()).arg("images").output().unwrap();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("demo/hello   1.0       {short}   ")),
        "{text}"
    );

    let out = hull(dir.path())
        .args(["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("demo/hello:1.0 {short}\n"));
    let out = hull(dir.path())
        .args(["images", "-q", "--no-trunc"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{id}\n"));

    let out = hull(dir.path())
        .args([
            "inspect",
            "--format",
            "{{.Id}} {{json .Config.Cmd}}",
            "demo/hello:1.0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{id} [\"sh\"]\n"));
    let out = hull(dir.path()).args(["inspect", short]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["RepoTags"][0], "demo/hello:1.0");

    let out = hull(dir.path())
        .args(["history", "demo/hello:1.0"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.starts_with("IMAGE          CREATED"), "{text}");
    assert!(text.contains(short), "{text}");

    let archive = dir.path().join("hello.tar");
    let out = hull(dir.path())
        .args(["save", "-o"])
        .arg(&archive)
        .arg("demo/hello:1.0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(archive.metadata().unwrap().len() > 0);

    let out = hull(dir.path())
        .args(["rmi", "demo/hello:1.0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("Untagged: demo/hello:1.0\nDeleted: {id}\n")
    );
    let out = hull(dir.path()).arg("images").output().unwrap();
    assert_eq!(stdout(&out).lines().count(), 1);

    let out = hull(dir.path())
        .args(["load", "-q", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Loaded image: demo/hello:1.0\n");
    assert_eq!(stderr(&out), "", "-q prints no progress");

    let flat = dir.path().join("flat.tar");
    let out = hull(dir.path())
        .args(["image", "export", "demo/hello:1.0", "-o"])
        .arg(&flat)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&flat)
        .output()
        .unwrap();
    assert!(
        stdout(&listing).contains("etc/hello"),
        "{}",
        stdout(&listing)
    );

    let out = hull(dir.path()).args(["system", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("no problems found\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn dangling_images_are_filtered_and_pruned() {
    let dir = store();
    let tarball = rootfs_tarball(dir.path());
    let out = hull(dir.path())
        .arg("import")
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();

    let out = hull(dir.path()).arg("images").output().unwrap();
    assert!(
        stdout(&out).contains("<none>       <none>"),
        "{}",
        stdout(&out)
    );
    let out = hull(dir.path())
        .args(["images", "-q", "--filter", "dangling=false"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "");
    let out = hull(dir.path())
        .args(["images", "-q", "--filter", "dangling=true"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{}\n", &id[7..19]));

    let out = hull(dir.path())
        .args(["image", "prune"])
        .write_stdin("y\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "Deleted Images:\ndeleted: {id}\n\nTotal reclaimed space: "
        )),
        "{text}"
    );
    let out = hull(dir.path()).args(["images", "-q"]).output().unwrap();
    assert_eq!(stdout(&out), "");
}

#[test]
fn save_streams_to_a_piped_stdout() {
    let dir = store();
    let tarball = rootfs_tarball(dir.path());
    let out = hull(dir.path())
        .arg("import")
        .arg(&tarball)
        .arg("demo/x")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Piped stdout is fine: the archive is the output.
    let out = hull(dir.path()).args(["save", "demo/x"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.len() > 1024);
}
