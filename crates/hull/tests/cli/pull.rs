//! `hull pull` against a real CNCF registry, checked entry by entry against umoci.

use hull_test::fixtures::{self, FixtureName};
use hull_test::tree;

use crate::support::{Hull, registry, scratch, umoci_unpack};

/// Pulls `name`, mounts it, and compares the merged tree with umoci's unpack of the same image.
fn assert_same_as_umoci(name: FixtureName) {
    assert_same_as_umoci_of(name, name);
}

/// As [`assert_same_as_umoci`], comparing with umoci's unpack of `theirs`, an image of the same
/// files (Debian's umoci cannot read zstd layers).
fn assert_same_as_umoci_of(name: FixtureName, theirs: FixtureName) {
    hull_test::require_root!();
    hull_test::require_bin!("umoci", "umoci");
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let reference = fx.get(name);
    hull.ok(&["pull", reference]);
    let mount = hull.ok(&["image", "mount", reference]).trim().to_string();
    let ours = tree::snapshot(std::path::Path::new(&mount)).unwrap();
    hull.ok(&["image", "umount", reference]);

    let (layout, tag) = fixtures::layout(theirs).unwrap();
    let bundle = tempfile::tempdir_in(scratch()).unwrap();
    let theirs_root = umoci_unpack(&layout, &tag, &bundle.path().join("bundle"));
    let theirs = tree::snapshot(&theirs_root).unwrap();
    let diff = tree::diff("hull", &ours, "umoci", &theirs);
    assert!(
        diff.is_empty(),
        "{name:?}: {} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
    assert!(ours.len() > 10, "suspiciously small tree: {}", ours.len());
}

#[test]
fn busybox_matches_umoci() {
    assert_same_as_umoci(FixtureName::Busybox);
}

#[test]
fn zstd_matches_umoci() {
    assert_same_as_umoci_of(FixtureName::BusyboxZstd, FixtureName::Busybox);
}

#[test]
fn uncompressed_matches_umoci() {
    assert_same_as_umoci(FixtureName::Uncompressed);
}

#[test]
fn multilayer_matches_umoci() {
    assert_same_as_umoci(FixtureName::Multilayer);
}

#[test]
fn pull_prints_docker_style_lines_when_piped() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let out = hull.cmd().args(["pull", &fx.multilayer]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("Pull complete"), "{all}");
    assert!(all.contains("Digest: sha256:"), "{all}");
    assert!(
        all.contains(&format!(
            "Status: Downloaded newer image for {}",
            fx.multilayer
        )),
        "{all}"
    );
    assert_eq!(
        stdout.lines().last().unwrap(),
        fx.multilayer,
        "last line is the reference"
    );
    assert!(
        !all.contains('\r') && !all.contains("\x1b["),
        "no terminal control when piped"
    );

    // Again: nothing to fetch.
    let again = hull.ok(&["pull", &fx.multilayer]);
    assert!(
        again.contains("Image is up to date")
            || String::from_utf8_lossy(&hull.output(&["pull", &fx.multilayer]).stderr)
                .contains("Image is up to date")
    );
    // -q: just the reference.
    let q = hull.ok(&["pull", "-q", &fx.busybox]);
    assert_eq!(q.trim(), fx.busybox);
}

#[test]
fn shared_layers_already_exist() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    // busybox_oci has the same layer and config with an OCI manifest.
    let out = hull.output(&["pull", &fx.busybox_oci]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Already exists"), "{all}");
    assert_eq!(hull.image_id(&fx.busybox), hull.image_id(&fx.busybox_oci));
}

#[test]
fn multiarch_selects_platform_and_names_offered_ones() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "--platform", "linux/arm64", &fx.multiarch]);
    let arch = hull.ok(&["inspect", "--format", "{{.Architecture}}", &fx.multiarch]);
    assert_eq!(arch.trim(), "arm64");
    let err = hull.fails(&["pull", "--platform", "linux/s390x", &fx.multiarch]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("Error"))
            .count(),
        1,
        "{err}"
    );
    hull.ok(&["pull", "--platform", "linux/amd64", &fx.multiarch]);
    let arch = hull.ok(&["inspect", "--format", "{{.Architecture}}", &fx.multiarch]);
    assert_eq!(arch.trim(), "amd64");
}

#[test]
fn pull_by_digest_records_repo_digest() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    let out = hull.ok(&["pull", &fx.busybox]);
    let digest = out
        .lines()
        .chain(String::new().lines())
        .find_map(|l| l.strip_prefix("Digest: "))
        .map(str::to_string);
    let digest = match digest {
        Some(d) => d,
        None => {
            let inspect = hull.ok(&[
                "inspect",
                "--format",
                "{{index .RepoDigests 0}}",
                &fx.busybox,
            ]);
            inspect.trim().rsplit_once('@').unwrap().1.to_string()
        }
    };
    let name = fx.busybox.rsplit_once(':').unwrap().0;
    let by_digest = format!("{name}@{digest}");
    let other = Hull::new();
    other.ok(&["pull", &by_digest]);
    assert_eq!(other.image_id(&by_digest), hull.image_id(&fx.busybox));
    let listing = other.ok(&["images", "--digests"]);
    assert!(listing.contains(&digest), "{listing}");
}

#[test]
fn bad_references_fail_with_one_line() {
    let hull = Hull::new();
    for (bad, needle) in [
        ("Busybox", "must be lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox@sha256:123", "digest"),
    ] {
        let err = hull.fails(&["pull", bad]);
        assert!(err.contains(needle), "{bad}: {err}");
        assert_eq!(
            err.lines().filter(|l| !l.starts_with("hint:")).count(),
            1,
            "{bad}: {err}"
        );
    }
}

#[test]
fn unknown_tag_is_a_clear_error() {
    let (reg, _fx) = registry();
    let hull = Hull::new();
    let err = hull.fails(&["pull", &format!("{}/test/busybox:nosuchtag", reg.host())]);
    assert!(
        err.to_lowercase().contains("manifest unknown") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn system_check_passes_after_pulls() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.multilayer]);
    hull.ok(&["pull", &fx.busybox_zstd]);
    hull.ok(&["system", "check"]);
}
