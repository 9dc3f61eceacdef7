//! Docker as a peer (dockerd 20.10 from Debian, a private daemon per test): it pulls and runs
//! what hull pushed to `hull serve`, hull pulls what Docker pushed there, archives cross both
//! ways with the same image IDs, and `docker search` reads `hull serve`'s search API.

use std::collections::BTreeMap;
use std::path::Path;

use hull_test::docker::Dockerd;
use hull_test::tree::{self, Entry};

use crate::support::{
    Hull, Serve, mounted_tree, pushed_digest, registry, scratch, token_auth_serve,
};

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

/// What Docker adds to every container's root filesystem: `/.dockerenv`, the `/etc` files it
/// binds, and the mount points of `/dev`, `/proc`, `/sys`.
fn docker_added(p: &str) -> bool {
    matches!(
        p,
        ".dockerenv" | "etc/hosts" | "etc/hostname" | "etc/resolv.conf" | "etc/mtab"
    ) || ["dev", "proc", "sys"]
        .iter()
        .any(|m| p == *m || p.starts_with(&format!("{m}/")))
}

/// The root filesystem of `image` as Docker gives it (`docker create` + `docker export`,
/// extracted under `dir`).
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
    tree::snapshot(&root).unwrap()
}

/// Asserts that `image` has the same files in Docker's container (see [`docker_tree`]) as in
/// `hull image mount`, leaving out what Docker adds ([`docker_added`], and `/etc` when the image
/// lacks it) and extended attributes other than `security.capability`, which `docker export`
/// leaves out of its tar (it writes that one only). `work` holds Docker's export.
fn assert_same_tree(hull: &Hull, docker: &Dockerd, image: &str, work: &Path) {
    let dir = tempfile::tempdir_in(work).unwrap();
    let comparable = |t: BTreeMap<String, Entry>| -> BTreeMap<String, Entry> {
        t.into_iter()
            .filter(|(p, _)| !docker_added(p))
            .map(|(p, mut e)| {
                e.xattrs.retain(|k, _| k == "security.capability");
                (p, e)
            })
            .collect()
    };
    let ours = comparable(mounted_tree(hull, image));
    let mut theirs = comparable(docker_tree(docker, image, dir.path()));
    if !ours.contains_key("etc") {
        theirs.remove("etc");
    }
    let diff = tree::diff("hull", &ours, "docker", &theirs);
    assert!(
        diff.is_empty(),
        "{image}: trees differ:\n{}",
        diff.join("\n")
    );
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

    for (source, repo) in [
        (&fx.busybox, "hull/busybox"),
        (&fx.busybox_oci, "hull/busybox-oci"),
        (&fx.multilayer, "hull/multilayer"),
    ] {
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
        assert_same_tree(&hull, &docker, &dest, work.path());
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
    for (source, repo) in [
        (&fx.busybox, "docker/busybox"),
        (&fx.multilayer, "docker/multilayer"),
    ] {
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

        assert_same_tree(&hull, &docker, &dest, work.path());
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
    assert_same_tree(&hull, &docker, "from-hull/multilayer:1", work.path());

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
    assert_same_tree(&other, &docker, "from-docker/busybox:2", work.path());
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
    let server = token_auth_serve(dir.path());
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
