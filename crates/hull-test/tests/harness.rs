//! The harness's own proof: fixtures built by hull-test are real images that the peers (the CNCF
//! registry, skopeo, umoci, podman) accept, with the media types, platforms and file-system
//! entries the fixtures promise.

// Test helpers outside `#[test]` functions: a failed setup should panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "harness/layering.rs"]
mod layering;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use hull_oci::media_type as mt;
use hull_test::fixtures::{self, ArchiveFormat, FixtureName};
use hull_test::peers;
use hull_test::registry::TestRegistry;
use hull_test::{require_bin, require_root};
use serde_json::Value;

fn inspect_raw(reference: &str) -> Value {
    let out = peers::run(
        peers::skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    )
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

fn inspect_config(reference: &str) -> Value {
    let out = peers::run(
        peers::skopeo()
            .args(["inspect", "--config", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    )
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// Digest of a manifest as the registry serves it.
fn remote_digest(reference: &str) -> String {
    let out = peers::run(
        peers::skopeo()
            .args(["inspect", "--format", "{{.Digest}}", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    )
    .unwrap();
    out.trim().to_string()
}

fn layer_media_types(manifest: &Value) -> Vec<&str> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect()
}

#[test]
fn pushed_fixtures_have_the_promised_manifests_and_platforms() {
    require_bin!("skopeo", "skopeo");
    require_bin!("docker-registry", "docker-registry");
    let registry = TestRegistry::start().unwrap();
    let f = fixtures::push_all(&registry.host()).unwrap();
    assert_eq!(
        f.busybox,
        format!("{}/test/busybox:latest", registry.host())
    );

    let busybox = inspect_raw(&f.busybox);
    assert_eq!(busybox["mediaType"], mt::DOCKER_MANIFEST);
    assert_eq!(busybox["config"]["mediaType"], mt::DOCKER_CONFIG);
    assert_eq!(layer_media_types(&busybox), [mt::DOCKER_LAYER_GZIP]);

    let oci = inspect_raw(&f.busybox_oci);
    assert_eq!(oci["mediaType"], mt::OCI_MANIFEST);
    assert_eq!(oci["config"]["mediaType"], mt::OCI_CONFIG);
    assert_eq!(layer_media_types(&oci), [mt::OCI_LAYER_GZIP]);
    // same config and layer blobs, only the manifest differs
    assert_eq!(oci["config"]["digest"], busybox["config"]["digest"]);
    assert_eq!(oci["layers"][0]["digest"], busybox["layers"][0]["digest"]);

    let zstd = inspect_raw(&f.busybox_zstd);
    assert_eq!(zstd["mediaType"], mt::OCI_MANIFEST);
    assert_eq!(layer_media_types(&zstd), [mt::OCI_LAYER_ZSTD]);
    assert_ne!(zstd["layers"][0]["digest"], oci["layers"][0]["digest"]);

    let plain = inspect_raw(&f.uncompressed);
    assert_eq!(layer_media_types(&plain), [mt::OCI_LAYER]);

    // one layer tar behind all four: the same diff_id, and the uncompressed blob is that tar
    let config = inspect_config(&f.busybox);
    let diff_id = config["rootfs"]["diff_ids"][0].clone();
    assert_eq!(
        inspect_config(&f.busybox_zstd)["rootfs"]["diff_ids"][0],
        diff_id
    );
    assert_eq!(plain["layers"][0]["digest"], diff_id);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!([fixtures::PATH_ENV])
    );
    assert!(config["history"].as_array().unwrap().len() >= 2);
    assert_eq!(config["created"], fixtures::EPOCH_RFC3339);

    let multilayer = inspect_raw(&f.multilayer);
    assert_eq!(multilayer["mediaType"], mt::DOCKER_MANIFEST);
    let types = layer_media_types(&multilayer);
    assert!(types.len() >= 5, "{types:?}");
    assert!(
        types.iter().all(|t| *t == mt::DOCKER_LAYER_GZIP),
        "{types:?}"
    );
    assert_eq!(
        multilayer["layers"][0]["digest"],
        busybox["layers"][0]["digest"]
    );
    let mc = inspect_config(&f.multilayer);
    let c = &mc["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/opt/hull");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/opt/hull/entrypoint.sh"])
    );
    assert_eq!(c["Cmd"], serde_json::json!(["hello"]));
    assert_eq!(c["Labels"]["hull.fixture"], "multilayer");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some());
    assert!(c["Volumes"].get("/data").is_some());
    let history = mc["history"].as_array().unwrap();
    let empty = history.iter().filter(|h| h["empty_layer"] == true).count();
    assert!(empty >= 3, "{history:?}");
    assert_eq!(history.len() - empty, types.len());

    let index = inspect_raw(&f.multiarch);
    assert_eq!(index["mediaType"], mt::OCI_INDEX);
    let platforms: BTreeSet<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["linux/amd64".to_string(), "linux/arm64/v8".to_string()])
    );
    let amd64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    assert_eq!(
        amd64["digest"].as_str().unwrap(),
        remote_digest(&f.busybox_oci)
    );

    // OCI fixtures pushed byte-for-byte; schema 2 ones converted over the same blobs
    for name in FixtureName::ALL {
        let (dir, tag) = fixtures::layout(name).unwrap();
        let layout = fixtures::OciLayout::create(&dir).unwrap();
        let local = layout.resolve(&tag).unwrap();
        if name.is_docker() {
            let m: Value =
                serde_json::from_slice(&std::fs::read(layout.blob_path(&local.digest)).unwrap())
                    .unwrap();
            let remote = inspect_raw(f.get(name));
            assert_eq!(
                remote["config"]["digest"], m["config"]["digest"],
                "{name:?}"
            );
            let digests = |v: &Value| {
                v["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["digest"].clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(digests(&remote), digests(&m), "{name:?}");
        } else {
            assert_eq!(
                remote_digest(f.get(name)),
                local.digest.to_string(),
                "{name:?}"
            );
        }
    }
}

#[test]
fn fixture_builds_are_reproducible() {
    require_bin!("busybox", "busybox-static");
    let fresh = tempfile::tempdir().unwrap();
    for name in [FixtureName::Busybox, FixtureName::BusyboxZstd] {
        let (cached, tag) = fixtures::layout(name).unwrap();
        let (dir, tag2) = fixtures::build(name, &fresh.path().join("busybox")).unwrap();
        assert_eq!(tag, tag2);
        let a = fixtures::OciLayout::create(&cached)
            .unwrap()
            .resolve(&tag)
            .unwrap();
        let b = fixtures::OciLayout::create(&dir)
            .unwrap()
            .resolve(&tag)
            .unwrap();
        assert_eq!(a.digest, b.digest, "{name:?} built twice gives two digests");
    }
}

#[test]
fn umoci_unpacks_the_multilayer_fixture_as_promised() {
    let umoci = require_bin!("umoci", "umoci");
    require_bin!("busybox", "busybox-static");
    let (layout, tag) = fixtures::layout(FixtureName::Multilayer).unwrap();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    let mut cmd = std::process::Command::new(umoci);
    cmd.arg("unpack");
    if !peers::is_root() {
        cmd.arg("--rootless");
    }
    cmd.arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle);
    peers::run(&mut cmd).unwrap();
    let root = bundle.join("rootfs");
    let p = |rel: &str| root.join(rel);
    let exists = |rel: &str| std::fs::symlink_metadata(p(rel)).is_ok();

    // whiteouts: deleted paths are gone, what the layer adds is there
    for gone in [
        "etc/motd",
        "opt/hull/doomed-dir",
        "opt/hull/old/gone.txt",
        "opt/hull/opaque/old1.txt",
        "opt/hull/opaque/sub",
        "opt/hull/small/a9",
        "opt/hull/dir-then-file/x.txt",
    ] {
        assert!(!exists(gone), "{gone} should have been deleted");
    }
    for kept in [
        "opt/hull/old/kept.txt",
        "opt/hull/opaque/new.txt",
        "opt/hull/file-then-dir/inner.txt",
    ] {
        assert!(exists(kept), "{kept} missing");
    }
    assert!(
        std::fs::metadata(p("opt/hull/dir-then-file"))
            .unwrap()
            .is_file()
    );
    assert!(
        std::fs::metadata(p("opt/hull/file-then-dir"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        std::fs::read(p("opt/hull/small/a0/b0/f00.txt")).unwrap(),
        b"modified in a later layer\n"
    );
    let small = walk_files(&p("opt/hull/small"));
    assert_eq!(small, fixtures::SMALL_FILES - fixtures::SMALL_FILES / 10);

    // hardlinks: one inode, two names, also across directories
    let a = std::fs::metadata(p("opt/hull/links/a.txt")).unwrap();
    let a2 = std::fs::metadata(p("opt/hull/links/a-hard.txt")).unwrap();
    assert_eq!(a.ino(), a2.ino());
    assert_eq!(a.nlink(), 2);
    let b = std::fs::metadata(p("opt/hull/data/b.txt")).unwrap();
    assert_eq!(
        b.ino(),
        std::fs::metadata(p("opt/hull/other/b-hard.txt"))
            .unwrap()
            .ino()
    );

    // symlinks kept verbatim
    assert_eq!(
        std::fs::read_link(p("opt/hull/links/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(p("opt/hull/links/dangling")).unwrap(),
        Path::new("does-not-exist")
    );
    assert_eq!(
        std::fs::read_link(p("opt/hull/links/dir-link")).unwrap(),
        Path::new("../small/a0")
    );
    assert!(p("opt/hull/links/dir-link/b0/f01.txt").is_file());
    assert!(
        p("opt/hull/links/long-target").is_file(),
        "GNU long link target not followed"
    );

    // modes, owners, special files, xattrs
    let mode = |rel: &str| std::fs::symlink_metadata(p(rel)).unwrap().mode() & 0o7777;
    assert_eq!(mode("opt/hull/setuid"), 0o4755);
    assert_eq!(mode("opt/hull/sticky"), 0o1777);
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("root"), 0o700);
    assert!(
        std::fs::symlink_metadata(p("opt/hull/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    if peers::is_root() {
        assert_eq!(
            std::fs::metadata(p("opt/hull/owned/by-1000.txt"))
                .unwrap()
                .uid(),
            1000
        );
        assert_eq!(
            std::fs::metadata(p("opt/hull/owned/by-nobody.txt"))
                .unwrap()
                .gid(),
            65534
        );
        assert_eq!(
            xattr::get(p("opt/hull/xattr.txt"), "user.hull.test")
                .unwrap()
                .as_deref(),
            Some(&b"1"[..])
        );
    }

    // big file: size and content from the seeded generator
    let big = std::fs::metadata(p("opt/hull/big.bin")).unwrap();
    assert_eq!(big.len(), fixtures::BIG_FILE_SIZE);
    let mut expect = vec![0u8; 4096];
    std::io::Read::read_exact(
        &mut fixtures::pseudo_random(fixtures::BIG_FILE_SEED, 4096),
        &mut expect,
    )
    .unwrap();
    let mut got = vec![0u8; 4096];
    std::io::Read::read_exact(
        &mut std::fs::File::open(p("opt/hull/big.bin")).unwrap(),
        &mut got,
    )
    .unwrap();
    assert_eq!(got, expect);

    // names
    assert!(exists("opt/hull/names/h\u{e9}llo w\u{f6}rld.txt"));
    assert!(exists("opt/hull/names/with space/file name.txt"));
    assert!(exists(fixtures::LONG_GNU_PATH));
    assert!(exists(fixtures::LONG_PAX_PATH));
    assert!(p("opt/hull/empty-tree/a/b/c").is_dir());
    assert!(
        std::fs::read_to_string(p("etc/passwd"))
            .unwrap()
            .contains("app:x:1000:1000")
    );
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn archives_are_readable_by_skopeo() {
    require_bin!("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("busybox-docker.tar");
    fixtures::archive(FixtureName::Busybox, ArchiveFormat::DockerArchive, &docker).unwrap();
    let names = tar_names(&docker);
    assert!(names.contains("manifest.json"), "{names:?}");
    let out = peers::run(
        peers::skopeo()
            .arg("inspect")
            .arg(format!("docker-archive:{}", docker.display())),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Architecture"], "amd64");

    let oci = dir.path().join("busybox-oci.tar");
    fixtures::archive(FixtureName::BusyboxOci, ArchiveFormat::OciArchive, &oci).unwrap();
    let names = tar_names(&oci);
    assert!(
        names.contains("index.json") && names.contains("oci-layout"),
        "{names:?}"
    );
    let out = peers::run(
        peers::skopeo()
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}:oci", oci.display())),
    )
    .unwrap();
    let m: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["mediaType"], mt::OCI_MANIFEST);
    // rewriting an archive replaces it
    fixtures::archive(FixtureName::BusyboxOci, ArchiveFormat::OciArchive, &oci).unwrap();
}

fn tar_names(path: &Path) -> BTreeSet<String> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string()
        })
        .collect()
}

#[test]
fn podman_runs_the_fixtures_from_the_test_registry() {
    require_root!();
    require_bin!("podman", "podman");
    require_bin!("runc", "runc");
    require_bin!("docker-registry", "docker-registry");
    let registry = TestRegistry::start().unwrap();
    let f = fixtures::push_all(&registry.host()).unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = peers::run(
        peers::podman(store.path())
            .args([
                "run",
                "--rm",
                "--pull=always",
                "--tls-verify=false",
                "--network=none",
            ])
            .arg(&f.busybox)
            .args(["sh", "-c", "echo ok from $(id -u) in $(pwd)"]),
    )
    .unwrap();
    assert_eq!(out.trim(), "ok from 0 in /");
    let out = peers::run(
        peers::podman(store.path())
            .args([
                "run",
                "--rm",
                "--pull=always",
                "--tls-verify=false",
                "--network=none",
            ])
            .arg(&f.multilayer),
    )
    .unwrap();
    assert_eq!(
        out.trim(),
        "hull-multilayer: args=[hello] user=app cwd=/opt/hull"
    );
    let _ = peers::run(peers::podman(store.path()).args(["rmi", "-a", "-f"]));
}

#[test]
fn require_bin_finds_present_programs() {
    let sh = require_bin!("sh", "dash");
    assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
}
