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

#[test]
fn run_reads_secrets_from_files_and_variables_and_no_layer_keeps_them() {
    hull_test::require_root!();
    hull_test::require_bin!("runc", "runc");
    let (hull, ctx) = setup();
    let secret_file = scratch().join(format!("secret-{}", std::process::id()));
    std::fs::write(&secret_file, "s3cr3t-from-a-file").unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM base\n\
         RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /token.len\n\
         RUN --mount=type=secret,id=api,target=/etc/api.key,required=true \
         wc -c < /etc/api.key > /api.len && test ! -e /run/secrets/api\n\
         RUN --mount=type=secret,id=api,env=API_KEY printf %s \"$API_KEY\" | wc -c > /env.len\n\
         RUN --mount=type=secret,id=token,env=TOKEN,target=/t \
         test \"$TOKEN\" = \"$(cat /t)\" && printf %s \"$TOKEN\" | wc -c > /both.len\n\
         RUN --mount=type=secret,id=token echo \"as root: $(stat -c %a:%u:%g /run/secrets/token)\"\n\
         USER 1000:1000\n\
         RUN --mount=type=secret,id=token,uid=1000,mode=0440 \
         cat /run/secrets/token > /dev/null && echo \"as 1000: $(stat -c %a:%u /run/secrets/token)\"\n",
    );
    let c = ctx.path().display().to_string();
    let out = hull
        .cmd()
        .args(["build", "--progress", "plain", "-t", "secrets:1"])
        .arg(format!("--secret=id=token,src={}", secret_file.display()))
        .args(["--secret", "id=api,env=HULL_TEST_API_KEY", &c])
        .env("HULL_TEST_API_KEY", "from-the-environment")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Secret files are root's, mode 0400, unless the mount says otherwise.
    assert!(stderr.contains("as root: 400:0:0"), "{stderr}");
    assert!(stderr.contains("as 1000: 440:1000"), "{stderr}");
    let dest = tempfile::tempdir_in(scratch()).unwrap();
    hull.ok(&[
        "save",
        "-o",
        &dest.path().join("img.tar").display().to_string(),
        "secrets:1",
    ]);
    let saved = std::fs::read(dest.path().join("img.tar")).unwrap();
    let root = hull.ok(&["image", "mount", "secrets:1"]);
    let root = Path::new(root.trim());
    assert_eq!(
        std::fs::read_to_string(root.join("token.len"))
            .unwrap()
            .trim(),
        "18"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("api.len"))
            .unwrap()
            .trim(),
        "20"
    );
    assert!(!root.join("run/secrets/token").exists());
    assert!(!root.join("etc/api.key").exists());
    hull.ok(&["image", "umount", "secrets:1"]);
    let inspect = hull.ok(&["inspect", "secrets:1"]);
    assert!(
        !inspect.contains("API_KEY") && !inspect.contains("TOKEN="),
        "{inspect}"
    );
    // Neither value is in any layer or in the config.
    for needle in [&b"s3cr3t-from-a-file"[..], b"from-the-environment"] {
        assert!(
            !saved.windows(needle.len()).any(|w| w == needle),
            "a secret leaked into the saved image"
        );
    }

    // A required secret that is not given fails at its line.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM base\nRUN --mount=type=secret,id=missing,required cat /run/secrets/missing\n",
    );
    let out = hull.output(&["build", &c]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(
        stderr.contains("secret mount missing is required"),
        "{stderr}"
    );
    std::fs::remove_file(&secret_file).unwrap();
}

/// An image holding `ssh-add` and the libraries it loads, from this machine (`ldd`).
fn ssh_add_image(hull: &Hull, tag: &str) {
    let ssh_add = hull_test::require_bin!("ssh-add", "openssh-client");
    let ldd = std::process::Command::new("ldd")
        .arg(&ssh_add)
        .output()
        .unwrap();
    assert!(ldd.status.success());
    let mut files = vec![ssh_add.clone()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push(p.into());
        }
    }
    let tarball = scratch().join(format!("ssh-add-{}.tar", std::process::id()));
    let mut tar = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    tar.follow_symlinks(true);
    for f in &files {
        tar.append_path_with_name(f, f.strip_prefix("/").unwrap())
            .unwrap();
    }
    tar.into_inner().unwrap();
    hull.ok(&["import", &tarball.display().to_string(), tag]);
    std::fs::remove_file(&tarball).unwrap();
}

#[test]
fn run_reaches_the_ssh_agent_through_a_relay_owned_as_the_mount_asks() {
    hull_test::require_root!();
    hull_test::require_bin!("runc", "runc");
    let agent_bin = hull_test::require_bin!("ssh-agent", "openssh-client");
    let keygen = hull_test::require_bin!("ssh-keygen", "openssh-client");
    let (hull, ctx) = setup();
    ssh_add_image(&hull, "ssh-add:1");
    let keys = tempfile::tempdir_in(scratch()).unwrap();
    let key = keys.path().join("id");
    let st = std::process::Command::new(&keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hull-test-key", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let sock = keys.path().join("agent.sock");
    /// The agent, stopped when the test ends however it ends.
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let agent = Agent(
        std::process::Command::new(&agent_bin)
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = std::process::Command::new(hull_test::require_bin!("ssh-add", "openssh-client"))
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());

    // Exec form, no shell in the image: ssh-add finds the agent through SSH_AUTH_SOCK, as
    // root and as a user the mount gives the socket to.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM ssh-add:1\n\
         RUN --mount=type=ssh [\"/usr/bin/ssh-add\", \"-l\"]\n\
         USER 1000\n\
         RUN --mount=type=ssh,id=other,uid=1000,required [\"/usr/bin/ssh-add\", \"-l\"]\n",
    );
    let c = ctx.path().display().to_string();
    let out = hull
        .cmd()
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--ssh",
            "default",
        ])
        .arg(format!("--ssh=other={}", sock.display()))
        .arg(&c)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    drop(agent);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("hull-test-key (ED25519)").count(),
        2,
        "both steps list the agent's key:\n{stderr}"
    );

    // Without the agent, a required ssh mount fails at its line.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM ssh-add:1\nRUN --mount=type=ssh,id=other,required [\"/usr/bin/ssh-add\", \"-l\"]\n",
    );
    let out = hull.output(&["build", &c]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(stderr.contains("ssh mount other is required"), "{stderr}");
}

#[test]
fn run_for_another_architecture_needs_an_emulator_and_says_so() {
    hull_test::require_root!();
    hull_test::require_bin!("runc", "runc");
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let ctx = tempfile::tempdir_in(scratch()).unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM {}\nRUN uname -m\n", fx.multiarch),
    );
    let c = ctx.path().display().to_string();
    let out = hull.output(&[
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/arm64",
        &c,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let emulated = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().contains("aarch64")
                && std::fs::read_to_string(e.path()).is_ok_and(|s| s.starts_with("enabled"))
        });
    if emulated {
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("aarch64"), "{stderr}");
    } else {
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("Dockerfile:2"), "{stderr}");
        assert!(
            stderr.contains("a RUN for linux/arm64 cannot execute on this linux/amd64 host")
                && stderr.contains("no binfmt_misc handler for aarch64"),
            "{stderr}"
        );
    }
    // The arm64 stage's filesystem steps need no emulator.
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM {}\nCOPY Dockerfile /\n", fx.multiarch),
    );
    hull.ok(&[
        "build",
        "-q",
        "--platform",
        "linux/arm64",
        "-t",
        "arm:1",
        &c,
    ]);
    let inspect: serde_json::Value = serde_json::from_str(&hull.ok(&["inspect", "arm:1"])).unwrap();
    assert_eq!(inspect[0]["Architecture"], "arm64");
}

/// The copying snapshotter (for hosts without overlayfs) commits the layers overlayfs does:
/// the same steps give the same image ID either way.
#[test]
fn copy_and_overlay_snapshots_build_the_same_image() {
    hull_test::require_root!();
    hull_test::require_bin!("runc", "runc");
    let dockerfile = "FROM base\n\
        RUN mkdir -p /data/sub /data/old && echo one > /data/a && echo two > /data/sub/b \
        && echo x > /data/gone && echo o > /data/old/f\n\
        RUN echo more >> /data/a && chmod 600 /data/sub/b && rm /data/gone \
        && rm -rf /data/old && mkdir /data/old && echo new > /data/old/g \
        && ln -s a /data/link && ln /data/a /data/hard && mv /data/sub/b /data/moved \
        && echo extra >> /etc/passwd && rm /bin/vi\n\
        RUN chmod 700 /data && touch -d @5 /data/a\n";
    let mut ids = Vec::new();
    for mode in ["overlay", "copy"] {
        let (hull, ctx) = setup();
        write(ctx.path(), "Dockerfile", dockerfile);
        let out = hull
            .cmd()
            .args(["build", "-t", "same:1"])
            .arg(ctx.path())
            .env("HULL_SNAPSHOTTER", mode)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {stderr}");
        let root = hull.ok(&["image", "mount", "same:1"]);
        let root = Path::new(root.trim());
        assert_eq!(
            std::fs::read_to_string(root.join("data/a")).unwrap(),
            "one\nmore\n"
        );
        assert!(!root.join("data/gone").exists() && !root.join("data/old/f").exists());
        assert!(!root.join("bin/vi").exists() && root.join("bin/sh").exists());
        hull.ok(&["image", "umount", "same:1"]);
        ids.push(hull.image_id("same:1"));
    }
    assert_eq!(ids[0], ids[1]);

    let (hull, ctx) = setup();
    write(ctx.path(), "Dockerfile", "FROM base\nRUN true\n");
    let out = hull
        .cmd()
        .arg("build")
        .arg(ctx.path())
        .env("HULL_SNAPSHOTTER", "zfs")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("HULL_SNAPSHOTTER=zfs"))
        .unwrap_or_else(|| panic!("no line names the variable: {stderr}"));
    // one line, the whole message
    assert!(
        line.to_ascii_lowercase().starts_with("error:")
            && line
                .ends_with("HULL_SNAPSHOTTER=zfs: unknown snapshotter (use overlay, copy or auto)"),
        "{stderr}"
    );
}

#[test]
fn images_deeper_than_one_page_of_lowerdir_build_run_and_mount() {
    hull_test::require_root!();
    hull_test::require_bin!("runc", "runc");
    let (hull, ctx) = setup();
    let mut dockerfile = String::from("FROM base\n");
    for i in 0..60 {
        write(ctx.path(), &format!("layers/f{i}"), &format!("{i}\n"));
        dockerfile.push_str(&format!("COPY layers/f{i} /deep/f{i}\n"));
    }
    // A step over all 61 layers: its overlay has more lower directories than one page of
    // `lowerdir=` holds with the store's paths.
    dockerfile.push_str("RUN cat /deep/f0 /deep/f59 > /both && rm /deep/f30\n");
    write(ctx.path(), "Dockerfile", &dockerfile);
    hull.ok(&["build", "-t", "deep:1", &ctx.path().display().to_string()]);
    let layers = hull.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "deep:1",
    ]);
    assert_eq!(layers.matches("sha256:").count(), 62, "{layers}");
    let root = hull.ok(&["image", "mount", "deep:1"]);
    let root = Path::new(root.trim());
    assert_eq!(
        std::fs::read_to_string(root.join("both")).unwrap(),
        "0\n59\n"
    );
    assert!(root.join("deep/f29").is_file() && !root.join("deep/f30").exists());
    hull.ok(&["image", "umount", "deep:1"]);
}
