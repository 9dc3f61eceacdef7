//! `hull build` and `hull builder prune` through the binary: contexts from a directory, a
//! tarball and stdin, `.dockerignore`, build arguments, targets, the cache, `--output`, and the
//! image read back by peers.

use std::path::Path;

use crate::support::*;

fn write(dir: &Path, rel: &str, data: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A context whose base is the busybox fixture, pulled into `hull`'s store as `base:latest`.
fn setup() -> (Hull, tempfile::TempDir) {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    hull.ok(&["tag", &fx.busybox, "base:latest"]);
    let ctx = tempfile::tempdir_in(scratch()).unwrap();
    write(ctx.path(), "app/main.sh", "echo main\n");
    write(ctx.path(), "app/lib.sh", "echo lib\n");
    write(ctx.path(), "notes.md", "notes\n");
    write(ctx.path(), "build/out.bin", "ignored\n");
    write(ctx.path(), ".dockerignore", "build\n*.md\n!keep.md\n");
    write(ctx.path(), "keep.md", "kept\n");
    (hull, ctx)
}

const DOCKERFILE: &str = "\
ARG BASE=base
FROM ${BASE} AS first
ARG VERSION=1.0
LABEL org.opencontainers.image.version=$VERSION
WORKDIR /srv
COPY app/ ./app/
COPY *.md /docs/
ENV APP_HOME=/srv/app
USER 65534
CMD [\"sh\", \"/srv/app/main.sh\"]

FROM first AS second
COPY --from=first /srv/app/lib.sh /lib.sh
";

#[test]
fn builds_an_image_docker_reads_the_same_way() {
    let (hull, ctx) = setup();
    write(ctx.path(), "Dockerfile", DOCKERFILE);
    let c = ctx.path().display().to_string();
    let out = hull.output(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "VERSION=2.5",
        "--target",
        "first",
        &c,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[first 5/9] COPY app/ ./app/"), "{stderr}");
    assert!(
        stderr.contains("naming to docker.io/library/app:1 done"),
        "{stderr}"
    );
    let inspect: serde_json::Value = serde_json::from_str(&hull.ok(&["inspect", "app:1"])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["Labels"]["org.opencontainers.image.version"], "2.5");
    assert_eq!(config["WorkingDir"], "/srv");
    assert_eq!(config["User"], "65534");
    assert_eq!(config["Cmd"], serde_json::json!(["sh", "/srv/app/main.sh"]));
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .contains(&"APP_HOME=/srv/app".into())
    );
    // the files, with .dockerignore applied
    let tree = mounted_tree(&hull, "app:1");
    for p in ["srv/app/main.sh", "srv/app/lib.sh", "docs/keep.md"] {
        assert!(tree.contains_key(p), "{p} missing");
    }
    for p in ["docs/notes.md", "srv/build", "srv/Dockerfile"] {
        assert!(!tree.contains_key(p), "{p} should not be there");
    }
    let history = hull.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "app:1",
    ]);
    assert!(history.contains("COPY app/ ./app/ # buildkit"), "{history}");
    assert!(
        history.contains("LABEL org.opencontainers.image.version=2.5"),
        "{history}"
    );

    // rebuild: all cached, same ID; -q prints only the ID
    let again = hull.ok(&[
        "build",
        "-q",
        "-t",
        "app:1",
        "--build-arg",
        "VERSION=2.5",
        "--target",
        "first",
        &c,
    ]);
    assert_eq!(again.trim(), hull.image_id("app:1"));
    let out = hull.output(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "VERSION=2.5",
        "--target",
        "first",
        &c,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches(" CACHED").count(), 3, "{stderr}");

    // the whole file: the second stage copies from the first
    hull.ok(&["build", "-t", "app:2", &c]);
    let tree = mounted_tree(&hull, "app:2");
    assert!(tree.contains_key("lib.sh"));

    // podman reads what hull saves, with the same image ID
    let archive = ctx.path().join("out.tar");
    hull.ok(&[
        "build",
        "-q",
        "-o",
        &format!("type=docker,dest={}", archive.display()),
        "-t",
        "app:3",
        &c,
    ]);
    hull_test::require_bin!("podman", "podman");
    let podman = tempfile::tempdir_in(scratch()).unwrap();
    let p = |args: &[&str]| {
        let out = hull_test::peers::podman(podman.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    p(&["load", "-i", &archive.display().to_string()]);
    let id = p(&["image", "inspect", "--format", "{{.Id}}", "app:3"]);
    assert_eq!(format!("sha256:{}", id.trim()), hull.image_id("app:3"));
}

#[test]
fn contexts_from_stdin_and_tarballs_and_local_output() {
    let (hull, ctx) = setup();
    // a Dockerfile on stdin, no context
    let mut child = hull
        .cmd()
        .args(["build", "-q", "-t", "stdin:1", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM base\nCOPY <<EOF /hello.txt\nhello from a heredoc\nEOF\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = mounted_tree(&hull, "stdin:1");
    assert!(tree.contains_key("hello.txt"));

    // a tarball context
    write(ctx.path(), "Dockerfile", "FROM base\nCOPY app /app\n");
    let tarball = scratch().join(format!("ctx-{}.tar", std::process::id()));
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(ctx.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let dest = tempfile::tempdir_in(scratch()).unwrap();
    hull.ok(&[
        "build",
        "-q",
        "-o",
        &format!("type=local,dest={}", dest.path().display()),
        &tarball.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dest.path().join("app/main.sh")).unwrap(),
        "echo main\n"
    );
    assert!(
        dest.path().join("bin/busybox").is_file(),
        "the base image's files too"
    );
    std::fs::remove_file(&tarball).unwrap();
}

#[test]
fn bad_dockerfiles_and_sources_fail_with_the_line() {
    let (hull, ctx) = setup();
    let c = ctx.path().display().to_string();
    let cases = [
        (
            "FROM base\nCOPY nothere /x\n",
            "Dockerfile:2: \"/nothere\": not found",
        ),
        (
            "FROM base\nCOPY ../etc/passwd /x\n",
            "Dockerfile:2: forbidden path outside the build context: ../etc/passwd",
        ),
        (
            "FROM base\nFROBNICATE x\n",
            "Dockerfile:2: unknown instruction: FROBNICATE",
        ),
        (
            "FROM base\nCOPY app keep.md /onefile\n",
            "When using COPY with more than one source file",
        ),
        (
            "FROM base AS a\nFROM base\nCOPY --from=nope /x /y\n",
            "nope",
        ),
    ];
    for (df, want) in cases {
        write(ctx.path(), "Dockerfile", df);
        let err = hull.fails(&["build", &c]);
        assert!(err.contains(want), "{df:?}: {err}");
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("Error"))
                .count(),
            1,
            "{err}"
        );
    }
    let err = hull.fails(&["build", "--target", "nope", &c]);
    assert!(
        err.contains("target stage \"nope\" could not be found"),
        "{err}"
    );
    let err = hull.fails(&["build", "--output", "type=registry", &c]);
    assert!(err.contains("--output"), "{err}");
    let report = hull.ok(&["system", "check"]);
    assert!(report.contains("no problems found"), "{report}");
}

#[test]
fn builder_prune_drops_the_cache() {
    let (hull, ctx) = setup();
    write(ctx.path(), "Dockerfile", "FROM base\nCOPY app /app\n");
    let c = ctx.path().display().to_string();
    hull.ok(&["build", &c]);
    let out = hull.output(&["build", &c]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CACHED"));
    // --progress plain says why a step missed
    write(ctx.path(), "app/main.sh", "echo changed\n");
    let out = hull.output(&["build", "--progress", "plain", &c]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cache miss: files it reads changed: app (changed)"),
        "{stderr}"
    );
    let pruned = hull.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Deleted build cache objects:"), "{pruned}");
    let out = hull.output(&["build", &c]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("CACHED"));
}

#[test]
fn cache_from_a_registry_image_skips_the_steps_it_made() {
    let (hull, ctx) = setup();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM base\nCOPY app /app\nRUN echo made > /made\n",
    );
    let c = ctx.path().display().to_string();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let image = format!("{}/cache/app:1", serve.host());
    hull.ok(&["build", "--cache-to", "type=inline", "-t", &image, &c]);
    hull.ok(&["push", &image]);

    // another machine: the same base, no build cache
    let (other, _) = setup();
    let out = other.output(&["build", "--cache-from", &image, "-t", "app:copy", &c]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(" CACHED").count(), 2, "{stderr}");
    let err = other.fails(&["build", "--cache-to", "type=registry,ref=x", &c]);
    assert!(err.contains("unsupported --cache-to"), "{err}");
}
