//! `hull push` to registries the tests start, read back with skopeo and umoci.

use std::path::Path;

use hull_test::peers;
use hull_test::registry::{RegistryOptions, TestRegistry};
use hull_test::tree;

use crate::support::{Hull, pushed_digest, registry, scratch, umoci_unpack};

/// `skopeo inspect` of `reference` on a plain-http registry, as JSON.
fn skopeo_inspect(reference: &str, raw: bool) -> serde_json::Value {
    let mut cmd = peers::skopeo();
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    cmd.arg(format!("docker://{reference}"));
    serde_json::from_str(&peers::run(&mut cmd).unwrap()).unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `hull push ARGS`, expecting success; returns (stdout, stderr).
fn push(hull: &Hull, args: &[&str]) -> (String, String) {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    let out = hull.output(&all);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr_of(&out),
    );
    assert!(
        out.status.success(),
        "hull {all:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

#[test]
fn pulled_images_keep_their_digest_and_layers_are_skipped_or_mounted() {
    hull_test::require_bin!("skopeo", "skopeo");
    let (_reg, fx) = registry();
    let target = TestRegistry::start().unwrap();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.multilayer]);
    let source_digest = skopeo_inspect(&fx.multilayer, false)["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layers = skopeo_inspect(&fx.multilayer, false)["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert!(layers >= 2, "the multilayer fixture has {layers} layers");

    let dest = format!("{}/copy/multilayer:v1", target.host());
    hull.ok(&["tag", &fx.multilayer, &dest]);
    let (stdout, stderr) = push(&hull, &[&dest]);
    assert!(
        stderr.contains(&format!(
            "The push refers to repository [{}/copy/multilayer]",
            target.host()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches(": Pushed").count(), layers, "{stderr}");
    assert!(stderr.contains(": Preparing"), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b["),
        "no terminal control when piped"
    );
    assert_eq!(
        pushed_digest(&stdout, "v1"),
        source_digest,
        "the manifest was pushed unchanged"
    );
    assert_eq!(
        skopeo_inspect(&dest, false)["Digest"].as_str().unwrap(),
        source_digest
    );

    // Again: everything is there.
    let (stdout, stderr) = push(&hull, &[&dest]);
    assert_eq!(
        stderr.matches(": Layer already exists").count(),
        layers,
        "{stderr}"
    );
    assert!(!stderr.contains(": Pushed"), "{stderr}");
    assert_eq!(pushed_digest(&stdout, "v1"), source_digest);

    // Another repository of the same registry: mounted from where it was pushed.
    let other = format!("{}/other/multilayer:v2", target.host());
    hull.ok(&["tag", &fx.multilayer, &other]);
    let (stdout, stderr) = push(&hull, &[&other]);
    assert_eq!(
        stderr.matches(": Mounted from copy/multilayer").count(),
        layers,
        "{stderr}"
    );
    assert_eq!(pushed_digest(&stdout, "v2"), source_digest);
    // skopeo copies it out whole: every blob is really there.
    let layout = tempfile::tempdir_in(scratch()).unwrap();
    peers::run(peers::skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{other}"),
        &format!("oci:{}:v2", layout.path().display()),
    ]))
    .unwrap();
}

#[test]
fn push_all_tags_of_a_repository() {
    hull_test::require_bin!("skopeo", "skopeo");
    let (_reg, fx) = registry();
    let target = TestRegistry::start().unwrap();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    hull.ok(&["pull", &fx.busybox_oci]);
    let repo = format!("{}/many/busybox", target.host());
    hull.ok(&["tag", &fx.busybox, &format!("{repo}:docker")]);
    hull.ok(&["tag", &fx.busybox_oci, &format!("{repo}:oci")]);
    let (stdout, _) = push(&hull, &["--all-tags", &repo]);
    for tag in ["docker", "oci"] {
        let d = pushed_digest(&stdout, tag);
        assert_eq!(
            skopeo_inspect(&format!("{repo}:{tag}"), false)["Digest"]
                .as_str()
                .unwrap(),
            d
        );
    }
    let err = hull.fails(&["push", "-a", &format!("{repo}:docker")]);
    assert!(err.contains("tag can't be used with --all-tags"), "{err}");
}

/// Flattens `image` into a root filesystem tarball and imports it as `name`.
fn import_flattened(hull: &Hull, image: &str, name: &str) {
    let flat = hull.dir.path().join("flat.tar");
    hull.ok(&["image", "export", image, "-o", flat.to_str().unwrap()]);
    hull.ok(&["import", flat.to_str().unwrap(), name]);
}

fn mounted_tree(hull: &Hull, image: &str) -> std::collections::BTreeMap<String, tree::Entry> {
    let mount = hull.ok(&["image", "mount", image]).trim().to_string();
    let t = tree::snapshot(Path::new(&mount)).unwrap();
    hull.ok(&["image", "umount", image]);
    t
}

#[test]
fn imported_image_is_compressed_on_push_and_reads_back_the_same() {
    hull_test::require_root!();
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("umoci", "umoci");
    let (_reg, fx) = registry();
    let target = TestRegistry::start().unwrap();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    let dest = format!("{}/imported/busybox:1", target.host());
    import_flattened(&hull, &fx.busybox, &dest);

    let (stdout, stderr) = push(&hull, &[&dest]);
    assert_eq!(stderr.matches(": Pushed").count(), 1, "{stderr}");
    let digest = pushed_digest(&stdout, "1");
    let manifest = skopeo_inspect(&dest, true);
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{manifest}"
    );

    // The registry's image unpacks (umoci) to the tree hull has for the imported image.
    let ours = mounted_tree(&hull, &dest);
    let layout = tempfile::tempdir_in(scratch()).unwrap();
    let layout_dir = layout.path().join("layout");
    peers::run(peers::skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:1", layout_dir.display()),
    ]))
    .unwrap();
    let theirs_root = umoci_unpack(&layout_dir, "1", &layout.path().join("bundle"));
    let theirs = tree::snapshot(&theirs_root).unwrap();
    let diff = tree::diff("hull", &ours, "umoci", &theirs);
    assert!(
        diff.is_empty(),
        "{} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
    assert!(ours.len() > 10, "suspiciously small tree: {}", ours.len());

    // Pushed again: the compressed blob is remembered, so the manifest is the same one.
    let (stdout, stderr) = push(&hull, &[&dest]);
    assert!(stderr.contains(": Layer already exists"), "{stderr}");
    assert_eq!(pushed_digest(&stdout, "1"), digest);

    // zstd on request, to another tag.
    let zstd = format!("{}/imported/busybox:zstd", target.host());
    hull.ok(&["tag", &dest, &zstd]);
    let (stdout, _) = push(&hull, &["--compression", "zstd", &zstd]);
    assert_ne!(pushed_digest(&stdout, "zstd"), digest);
    let manifest = skopeo_inspect(&zstd, true);
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
        "{manifest}"
    );
    // The pushed digest names the image locally too.
    let by_digest = hull.image_id(&format!("{}/imported/busybox@{digest}", target.host()));
    assert_eq!(by_digest, hull.image_id(&dest));
}

#[test]
fn push_errors_name_what_was_pushed() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let missing = "127.0.0.1:1/nothing/here:v1";
    let err = hull.fails(&["push", missing]);
    assert!(err.contains("does not exist locally"), "{err}");

    let private = TestRegistry::start_with(RegistryOptions {
        token_auth: Some(("bob".into(), "builder".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    hull.ok(&["pull", &fx.busybox]);
    let dest = format!("{}/private/busybox:v1", private.host());
    hull.ok(&["tag", &fx.busybox, &dest]);
    let err = hull.fails(&["push", &dest]);
    let line = err
        .lines()
        .find(|l| l.to_lowercase().starts_with("error"))
        .unwrap_or_default();
    assert!(
        line.contains(&format!(
            "pushing {dest}: unauthorized: authentication required for {}",
            private.host()
        )),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.to_lowercase().starts_with("error"))
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn layers_are_mounted_from_the_repository_they_were_pulled_from() {
    let (reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    let source = fx.busybox.trim_start_matches(&format!("{}/", reg.host()));
    let source_repo = source.rsplit_once(':').map_or(source, |(r, _)| r);
    let dest = format!("{}/pushed-here/busybox:mounted", reg.host());
    hull.ok(&["tag", &fx.busybox, &dest]);
    let (stdout, stderr) = push(&hull, &[&dest]);
    assert!(
        stderr.contains(&format!(": Mounted from {source_repo}")),
        "{stderr}"
    );
    assert!(!stderr.contains(": Pushed"), "{stderr}");
    pushed_digest(&stdout, "mounted");
}
