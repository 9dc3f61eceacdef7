//! Docker as a peer (dockerd 20.10 from Debian, a private daemon per test): it pulls and runs
//! what hull pushed to `hull serve`, hull pulls what Docker pushed there, archives cross both
//! ways with the same image IDs, and `docker search` reads `hull serve`'s search API.

use std::collections::BTreeMap;
use std::path::Path;

use hull_test::docker::Dockerd;
use hull_test::tree::{self, Entry};

use crate::support::{Hull, Serve, mounted_tree, registry, scratch};

fn dockerd() -> Option<Dockerd> {
    if !hull_test::peers::root_or_skip() {
        return None;
    }
    Some(Dockerd::start().expect("starting a private dockerd"))
}

/// `docker image inspect --format FORMAT IMAGE`, trimmed.
fn docker_inspect(docker: &Dockerd, format: &str, image: &str) -> String {
    docker
        .run(&["image", "inspect", "--format", format, image])
        .unwrap()
        .trim()
        .to_string()
}

/// The digest in `TAG: digest: sha256:… size: N` (hull push and docker push print it alike).
fn pushed_digest(stdout: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {stdout:?}"));
    let rest = line.trim_start_matches(&prefix);
    rest.split_whitespace().next().unwrap().to_string()
}

/// The root filesystem of `image` as Docker gives it (`docker create` + `docker export`),
/// without what Docker adds to every container (`/.dockerenv`, the `/etc` files it binds, the
/// mount points of `/dev`, `/proc`, `/sys`).
fn docker_tree(docker: &Dockerd, image: &str, dir: &Path) -> BTreeMap<String, Entry> {
    let id = docker
        .run(&["create", "--network", "none", image, "/nonexistent"])
        .unwrap()
        .trim()
        .to_string();
    let tar = dir.join("export.tar");
    docker
        .run(&["export", "-o", tar.to_str().unwrap(), &id])
        .unwrap();
    docker.run(&["rm", &id]).unwrap();
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    hull_test::peers::run(
        std::process::Command::new("tar")
            .args([
                "--extract",
                "--same-owner",
                "--same-permissions",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-f",
            ])
            .arg(&tar)
            .arg("-C")
            .arg(&root),
    )
    .unwrap();
    let mut t = tree::snapshot(&root).unwrap();
    let added = |p: &str| {
        matches!(
            p,
            ".dockerenv" | "etc/hosts" | "etc/hostname" | "etc/resolv.conf" | "etc/mtab"
        ) || ["dev", "proc", "sys"]
            .iter()
            .any(|m| p == *m || p.starts_with(&format!("{m}/")))
    };
    t.retain(|p, _| !added(p));
    t
}

/// `hull image mount`'s tree without what [`docker_tree`] leaves out, plus the directories
/// Docker always has (`/etc`, `/dev`, `/proc`, `/sys` are mount points in every container).
fn hull_tree(hull: &Hull, image: &str) -> BTreeMap<String, Entry> {
    let mut t = mounted_tree(hull, image);
    t.retain(|p, _| {
        !["dev", "proc", "sys"]
            .iter()
            .any(|m| p == *m || p.starts_with(&format!("{m}/")))
            && !matches!(
                p.as_str(),
                ".dockerenv" | "etc/hosts" | "etc/hostname" | "etc/resolv.conf" | "etc/mtab"
            )
    });
    t
}

/// Entries that differ, ignoring directories Docker creates for its own mount points when the
/// image lacks them (`etc`, made with mode 0755 by root), and extended attributes other than
/// `security.capability`, which `docker export` leaves out of its tar (it writes that one only).
fn tree_differences(
    hull: &BTreeMap<String, Entry>,
    docker: &BTreeMap<String, Entry>,
) -> Vec<String> {
    let exported = |t: &BTreeMap<String, Entry>| -> BTreeMap<String, Entry> {
        t.iter()
            .map(|(p, e)| {
                let mut e = e.clone();
                e.xattrs.retain(|k, _| k == "security.capability");
                (p.clone(), e)
            })
            .collect()
    };
    let hull = exported(hull);
    let mut docker = exported(docker);
    if !hull.contains_key("etc") {
        docker.remove("etc");
    }
    tree::diff("hull", &hull, "docker", &docker)
}

#[test]
fn docker_pulls_and_runs_what_hull_pushed_to_hull_serve() {
    let Some(docker) = dockerd() else { return };
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let host = serve.host();
    let work = tempfile::tempdir_in(scratch()).unwrap();

    for (i, (source, repo)) in [
        (&fx.busybox, "hull/busybox"),
        (&fx.busybox_oci, "hull/busybox-oci"),
        (&fx.multilayer, "hull/multilayer"),
    ]
    .into_iter()
    .enumerate()
    {
        hull.ok(&["pull", source]);
        let dest = format!("{host}/{repo}:v1");
        hull.ok(&["tag", source, &dest]);
        let out = hull.ok(&["push", &dest]);
        let digest = pushed_digest(&out, "v1");

        let pulled = docker.run(&["pull", &dest]).unwrap();
        assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
        assert_eq!(
            docker_inspect(&docker, "{{.Id}}", &dest),
            hull.image_id(&dest),
            "{repo}: Docker's image ID is hull's (the config digest)"
        );
        // (busybox and busybox-oci share their config, so Docker has one image with both.)
        let digests = docker_inspect(&docker, "{{json .RepoDigests}}", &dest);
        assert!(
            digests.contains(&format!("\"{host}/{repo}@{digest}\"")),
            "{digests}"
        );
        assert_eq!(
            docker_inspect(&docker, "{{json .Config.Cmd}}", &dest),
            hull.ok(&[
                "image",
                "inspect",
                "--format",
                "{{json .Config.Cmd}}",
                &dest
            ])
            .trim()
        );

        // Sizes as Docker counts them: the image's and each layer's.
        assert_eq!(
            hull.ok(&["images", "--format", "{{.Size}}", &dest]).trim(),
            docker
                .run(&["images", "--format", "{{.Size}}", &dest])
                .unwrap()
                .trim(),
            "{repo}: SIZE"
        );
        assert_eq!(
            hull.ok(&["history", "--format", "{{.Size}}", &dest]),
            docker
                .run(&["history", "--format", "{{.Size}}", &dest])
                .unwrap(),
            "{repo}: history SIZE"
        );
        let dir = work.path().join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let theirs = docker_tree(&docker, &dest, &dir);
        let ours = hull_tree(&hull, &dest);
        let diff = tree_differences(&ours, &theirs);
        assert!(
            diff.is_empty(),
            "{repo}: trees differ:\n{}",
            diff.join("\n")
        );
    }

    // Docker runs it.
    let out = docker
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            &format!("{host}/hull/busybox:v1"),
            "sh",
            "-c",
            "echo hello from $(cat /etc/hostname | wc -c) bytes of hostname",
        ])
        .unwrap();
    assert!(out.starts_with("hello from "), "{out}");
}

#[test]
fn hull_pulls_what_docker_pushed_to_hull_serve() {
    let Some(docker) = dockerd() else { return };
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let host = serve.host();
    let work = tempfile::tempdir_in(scratch()).unwrap();

    // Docker pulls from the CNCF registry and pushes to hull serve, recompressing every layer.
    for (i, (source, repo)) in [
        (&fx.busybox, "docker/busybox"),
        (&fx.multilayer, "docker/multilayer"),
    ]
    .into_iter()
    .enumerate()
    {
        docker.run(&["pull", source]).unwrap();
        let dest = format!("{host}/{repo}:v2");
        docker.run(&["tag", source, &dest]).unwrap();
        let out = docker.run(&["push", &dest]).unwrap();
        let digest = pushed_digest(&out, "v2");

        hull.ok(&["pull", &dest]);
        assert_eq!(
            hull.image_id(&dest),
            docker_inspect(&docker, "{{.Id}}", &dest)
        );
        let digests = hull.ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &dest,
        ]);
        assert!(
            digests.contains(&format!("{host}/{repo}@{digest}")),
            "{digests}"
        );
        // hull reads it by the digest Docker printed, too.
        hull.ok(&["pull", &format!("{host}/{repo}@{digest}")]);

        let dir = work.path().join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let theirs = docker_tree(&docker, &dest, &dir);
        let ours = hull_tree(&hull, &dest);
        let diff = tree_differences(&ours, &theirs);
        assert!(
            diff.is_empty(),
            "{repo}: trees differ:\n{}",
            diff.join("\n")
        );
    }

    // Pushing again: every layer is already there.
    let again = docker
        .run(&["push", &format!("{host}/docker/multilayer:v2")])
        .unwrap();
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains("Pushed"), "{again}");
}

#[test]
fn archives_cross_between_hull_and_docker() {
    let Some(docker) = dockerd() else { return };
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let work = tempfile::tempdir_in(scratch()).unwrap();

    // hull save -> docker load
    hull.ok(&["pull", &fx.multilayer]);
    hull.ok(&["tag", &fx.multilayer, "from-hull/multilayer:1"]);
    let ours = work.path().join("hull.tar");
    hull.ok(&[
        "save",
        "-o",
        ours.to_str().unwrap(),
        "from-hull/multilayer:1",
    ]);
    let loaded = docker.run(&["load", "-i", ours.to_str().unwrap()]).unwrap();
    assert!(
        loaded.contains("Loaded image: from-hull/multilayer:1"),
        "{loaded}"
    );
    assert_eq!(
        docker_inspect(&docker, "{{.Id}}", "from-hull/multilayer:1"),
        hull.image_id("from-hull/multilayer:1")
    );
    let dir = work.path().join("loaded");
    std::fs::create_dir_all(&dir).unwrap();
    let diff = tree_differences(
        &hull_tree(&hull, "from-hull/multilayer:1"),
        &docker_tree(&docker, "from-hull/multilayer:1", &dir),
    );
    assert!(diff.is_empty(), "trees differ:\n{}", diff.join("\n"));

    // docker save -> hull load
    docker.run(&["pull", &fx.busybox]).unwrap();
    docker
        .run(&["tag", &fx.busybox, "from-docker/busybox:2"])
        .unwrap();
    let theirs = work.path().join("docker.tar");
    docker
        .run(&[
            "save",
            "-o",
            theirs.to_str().unwrap(),
            "from-docker/busybox:2",
        ])
        .unwrap();
    let other = Hull::new();
    let out = other.ok(&["load", "-i", theirs.to_str().unwrap()]);
    assert!(out.contains("from-docker/busybox:2"), "{out}");
    assert_eq!(
        other.image_id("from-docker/busybox:2"),
        docker_inspect(&docker, "{{.Id}}", "from-docker/busybox:2")
    );
    let dir = work.path().join("saved");
    std::fs::create_dir_all(&dir).unwrap();
    let diff = tree_differences(
        &hull_tree(&other, "from-docker/busybox:2"),
        &docker_tree(&docker, "from-docker/busybox:2", &dir),
    );
    assert!(diff.is_empty(), "trees differ:\n{}", diff.join("\n"));
}

#[test]
fn docker_search_reads_hull_serve() {
    let Some(docker) = dockerd() else { return };
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let host = serve.host();
    hull.ok(&["pull", &fx.busybox]);
    for repo in ["lab/busybox", "lab/busybox-tools", "lab/other"] {
        let dest = format!("{host}/{repo}:1");
        hull.ok(&["tag", &fx.busybox, &dest]);
        hull.ok(&["push", &dest]);
    }
    let admin = Hull::new();
    let data_arg = data.path().display().to_string();
    admin.ok(&[
        "serve",
        "repo",
        "set",
        "lab/busybox",
        "--description",
        "Busybox for tests",
        "--official",
        "--stars",
        "7",
        "--data",
        &data_arg,
    ]);

    let out = docker
        .run(&[
            "search",
            "--format",
            "{{.Name}}|{{.Description}}|{{.StarCount}}|{{.IsOfficial}}",
            &format!("{host}/busybox"),
        ])
        .unwrap();
    let mut rows: Vec<&str> = out.lines().collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            "lab/busybox-tools||0|",
            "lab/busybox|Busybox for tests|7|[OK]",
        ],
        "{out}"
    );

    // Docker's own table and filters.
    let table = docker
        .run(&[
            "search",
            "--filter",
            "is-official=true",
            &format!("{host}/busybox"),
        ])
        .unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"],
        "{table}"
    );
    assert!(lines[1].starts_with("lab/busybox "), "{table}");
    assert!(lines[1].contains("[OK]"), "{table}");
}

#[test]
fn docker_logs_in_to_hull_serve_and_gets_the_scopes_of_its_token() {
    let Some(docker) = dockerd() else { return };
    let (_reg, fx) = registry();
    let dir = tempfile::tempdir_in(scratch()).unwrap();
    let hash = |p: &str| bcrypt::hash(p, 4).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\nbob:{}\n", hash("alice-pw"), hash("bob-pw")),
    )
    .unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        "[token]\nservice = \"hull-test\"\n\
         [[token.access]]\naccount = \"alice\"\nrepository = \"*\"\nactions = [\"*\"]\n\
         [[token.access]]\naccount = \"bob\"\nrepository = \"*\"\nactions = [\"pull\"]\n\
         [[token.access]]\naccount = \"\"\nrepository = \"public/*\"\nactions = [\"pull\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Serve::start_with(
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
    );
    let host = server.host().to_string();
    let private = format!("{host}/private/busybox:v1");
    let public = format!("{host}/public/busybox:v1");
    docker.run(&["pull", &fx.busybox]).unwrap();
    docker.run(&["tag", &fx.busybox, &private]).unwrap();
    docker.run(&["tag", &fx.busybox, &public]).unwrap();

    let err = docker.run(&["push", &private]).unwrap_err().to_string();
    assert!(
        err.contains("denied: requested access to the resource is denied"),
        "anonymous push is refused as Docker Hub refuses it: {err}"
    );
    let err = docker
        .run(&["login", "-u", "alice", "-p", "wrong", &host])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unauthorized"), "{err}");
    let out = docker
        .run(&["login", "-u", "alice", "-p", "alice-pw", &host])
        .unwrap();
    assert!(out.contains("Login Succeeded"), "{out}");
    docker.run(&["push", &private]).unwrap();
    docker.run(&["push", &public]).unwrap();
    docker.run(&["logout", &host]).unwrap();

    // bob pulls but may not push
    docker
        .run(&["login", "-u", "bob", "-p", "bob-pw", &host])
        .unwrap();
    docker.run(&["rmi", &private]).unwrap();
    docker.run(&["pull", &private]).unwrap();
    docker
        .run(&["tag", &private, &format!("{host}/private/bobs:v1")])
        .unwrap();
    let err = docker
        .run(&["push", &format!("{host}/private/bobs:v1")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("denied") || err.contains("insufficient_scope"),
        "{err}"
    );
    docker.run(&["logout", &host]).unwrap();

    // anonymous: public/* only
    docker.run(&["rmi", &public, &private]).unwrap();
    docker.run(&["pull", &public]).unwrap();
    let err = docker.run(&["pull", &private]).unwrap_err().to_string();
    assert!(
        err.contains("denied") || err.contains("unauthorized"),
        "{err}"
    );
}
