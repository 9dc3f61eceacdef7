//! save / load / import / export against skopeo and podman.

use hull_test::fixtures::{self, ArchiveFormat as FxFormat, FixtureName};
use hull_test::peers;

use crate::support::{Hull, registry, scratch};

fn hex(id: &str) -> &str {
    id.trim().trim_start_matches("sha256:")
}

#[test]
fn saved_docker_archive_is_read_by_skopeo_and_podman() {
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("podman", "podman");
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.multilayer]);
    hull.ok(&["tag", &fx.multilayer, "saved/multilayer:v1"]);
    let id = hull.image_id("saved/multilayer:v1");
    let archive = hull.dir.path().join("ml.tar");
    hull.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "saved/multilayer:v1",
    ]);

    let inspect = peers::run(
        peers::skopeo()
            .args(["inspect", "--config", "--raw"])
            .arg(format!("docker-archive:{}", archive.display())),
    )
    .unwrap();
    let config_digest = hull_oci::Digest::sha256_of(inspect.as_bytes());
    assert_eq!(
        config_digest.to_string(),
        id,
        "skopeo reads the same config (image ID)"
    );

    let tmp = tempfile::tempdir_in(scratch()).unwrap();
    peers::run(
        peers::podman(tmp.path())
            .arg("load")
            .arg("-i")
            .arg(&archive),
    )
    .unwrap();
    let podman_id = peers::run(peers::podman(tmp.path()).args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "saved/multilayer:v1",
    ]))
    .unwrap();
    assert_eq!(hex(&podman_id), hex(&id));
}

#[test]
fn saved_oci_archive_keeps_digests() {
    hull_test::require_bin!("skopeo", "skopeo");
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox_zstd]);
    let archive = hull.dir.path().join("bb.oci.tar");
    hull.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        archive.to_str().unwrap(),
        &fx.busybox_zstd,
    ]);
    let raw = peers::run(
        peers::skopeo()
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", archive.display())),
    )
    .unwrap();
    let remote = peers::run(
        peers::skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}", fx.busybox_zstd)),
    )
    .unwrap();
    assert_eq!(raw, remote, "the manifest travels byte for byte");
    // And hull reads its own archive back.
    let other = Hull::new();
    let out = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image"), "{out}");
    assert_eq!(
        other.image_id(&fx.busybox_zstd),
        hull.image_id(&fx.busybox_zstd)
    );
}

#[test]
fn loads_archives_written_by_skopeo() {
    hull_test::require_bin!("skopeo", "skopeo");
    for (name, format) in [
        (FixtureName::Multilayer, FxFormat::DockerArchive),
        (FixtureName::Busybox, FxFormat::OciArchive),
        (FixtureName::BusyboxZstd, FxFormat::OciArchive),
    ] {
        let hull = Hull::new();
        let archive = hull.dir.path().join("in.tar");
        fixtures::archive(name, format, &archive).unwrap();
        let out = hull.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert!(out.contains("Loaded image"), "{name:?}: {out}");
        let images = hull.ok(&["images", "--format", "json"]);
        assert_eq!(images.lines().count(), 1, "{name:?}: {images}");
        hull.ok(&["system", "check"]);
        // The loaded image's root filesystem exports.
        let id = hull.ok(&["images", "-q"]).trim().to_string();
        let flat = hull.dir.path().join("flat.tar");
        hull.ok(&["image", "export", &id, "-o", flat.to_str().unwrap()]);
        assert!(std::fs::metadata(&flat).unwrap().len() > 1_000_000);
    }
}

#[test]
fn load_from_gzip_on_stdin() {
    hull_test::require_bin!("skopeo", "skopeo");
    let hull = Hull::new();
    let archive = hull.dir.path().join("in.tar");
    fixtures::archive(FixtureName::Busybox, FxFormat::DockerArchive, &archive).unwrap();
    let gz = hull.dir.path().join("in.tar.gz");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", archive.display(), gz.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = hull
        .cmd()
        .arg("load")
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Loaded image: "));
}

#[test]
fn import_then_save_load_round_trip() {
    let hull = Hull::new();
    let (layout, _tag) = fixtures::layout(FixtureName::Uncompressed).unwrap();
    // Any plain tar works as a root filesystem: take the fixture's layer.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let _ = index;
    let rootfs = hull.dir.path().join("rootfs.tar");
    let mut b = hull_test::fixtures::LayerBuilder::new().unwrap();
    b.dir("bin", hull_test::fixtures::Meta::dir()).unwrap();
    b.file(
        "bin/hello",
        hull_test::fixtures::Meta::new(0o755),
        b"#!/bin/sh\necho hi\n",
    )
    .unwrap();
    b.symlink("bin/hi", "hello", hull_test::fixtures::Meta::new(0o777))
        .unwrap();
    b.finish().unwrap().persist(&rootfs).unwrap();
    let id = hull.ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/hello"]"#,
        "--change",
        "ENV A=b",
        "-m",
        "made in a test",
        rootfs.to_str().unwrap(),
        "imported/hello:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let cmd = hull.ok(&[
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{json .Config.Env}}",
        "imported/hello:1",
    ]);
    assert_eq!(cmd.trim(), r#"["/bin/hello"] ["A=b"]"#);
    let history = hull.ok(&["history", "--format", "{{.Comment}}", "imported/hello:1"]);
    assert_eq!(history.trim(), "made in a test");
    // A change is a Dockerfile instruction: variables expand, other instructions are refused.
    let out = hull.ok(&[
        "import",
        "--change",
        "ENV B=${A:-x}-y",
        "--change",
        "WORKDIR /srv/$B",
        rootfs.to_str().unwrap(),
    ]);
    let wd = hull.ok(&["inspect", "--format", "{{.Config.WorkingDir}}", out.trim()]);
    assert_eq!(wd.trim(), "/srv/x-y");
    hull.ok(&["rmi", out.trim()]);
    let bad = hull.output(&[
        "import",
        "--change",
        "RUN rm -rf /",
        rootfs.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("invalid --change \"RUN rm -rf /\": the instruction must be one of CMD"),
        "{stderr}"
    );

    let archive = hull.dir.path().join("hello.tar");
    hull.ok(&["save", "-o", archive.to_str().unwrap(), "imported/hello:1"]);
    hull.ok(&["rmi", "imported/hello:1"]);
    assert!(hull.ok(&["images", "-q"]).trim().is_empty());
    let out = hull.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: imported/hello:1"), "{out}");
    assert_eq!(hull.image_id("imported/hello:1"), id.trim());

    let flat = hull.dir.path().join("flat.tar");
    hull.ok(&[
        "image",
        "export",
        "imported/hello:1",
        "-o",
        flat.to_str().unwrap(),
    ]);
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&flat).unwrap())
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, vec!["bin", "bin/hello", "bin/hi"]);
}

#[test]
fn hostile_archives_are_refused() {
    let hull = Hull::new();
    let bad = hull.dir.path().join("bad.tar");
    // manifest.json naming a file that is not there
    let mut b = tar::Builder::new(std::fs::File::create(&bad).unwrap());
    let data = br#"[{"Config":"nope.json","RepoTags":["x:y"],"Layers":["../../etc/passwd"]}]"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.json", &data[..]).unwrap();
    b.finish().unwrap();
    let err = hull.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert!(err.contains("invalid archive"), "{err}");
    assert!(hull.ok(&["images", "-q"]).trim().is_empty());
    // Not a tar at all.
    std::fs::write(&bad, b"hello, this is not an archive").unwrap();
    let err = hull.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
