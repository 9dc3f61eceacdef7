//! Local image commands on pulled images: images, history, inspect, tag, rmi, prune, df.

use crate::support::{Hull, registry};

#[test]
fn images_lists_like_docker() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &fx.busybox]);
    hull.ok(&["tag", &fx.busybox, "mine/bb:v1"]);
    let table = hull.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("mine/bb ") && r.contains(" v1 ")),
        "{table}"
    );
    let id = hull.image_id("mine/bb:v1");
    let short = &id["sha256:".len().."sha256:".len() + 12];
    assert!(rows.iter().all(|r| r.contains(short)), "{table}");

    let q = hull.ok(&["images", "-q"]);
    assert_eq!(q.lines().collect::<Vec<_>>(), vec![short, short]);
    let json = hull.ok(&["images", "--format", "json"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["ID"].as_str().unwrap().starts_with(short));
    }
    let filtered = hull.ok(&[
        "images",
        "--filter",
        "reference=mine/*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(filtered.trim(), "mine/bb:v1");
    let tmpl = hull.ok(&["images", "--format", "table {{.Repository}}\t{{.Tag}}"]);
    assert!(
        tmpl.lines().next().unwrap().contains("REPOSITORY"),
        "{tmpl}"
    );
}

#[test]
fn history_shows_layer_digests_instead_of_missing() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &fx.multilayer]);
    let out = hull.ok(&["history", "--no-trunc", &fx.multilayer]);
    let header = out.lines().next().unwrap();
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(col), "{header}");
    }
    let layer_rows = out
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("sha256:"))
        .count();
    assert!(layer_rows >= 5, "{out}");
    let json = hull.ok(&["history", "--format", "json", &fx.multilayer]);
    assert!(json.lines().count() >= 5);
    let raw = hull.ok(&["history", "-H=false", &fx.multilayer]);
    assert!(raw.contains("2023-11-14T22:13:20"), "{raw}");
}

#[test]
fn inspect_is_shaped_like_docker() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &fx.multilayer]);
    let out = hull.ok(&["inspect", &fx.multilayer]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let img = &v[0];
    assert!(img["Id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(img["RepoTags"][0], fx.multilayer.as_str());
    assert!(img["RepoDigests"][0].as_str().unwrap().contains("@sha256:"));
    assert_eq!(img["Os"], "linux");
    assert!(img["RootFS"]["Layers"].as_array().unwrap().len() >= 5);
    assert!(img["Config"]["Env"].is_array());
    assert!(img["Size"].as_u64().unwrap() > 64 * 1024 * 1024);
}

#[test]
fn rmi_untags_then_deletes_and_prune_frees_space() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &fx.busybox]);
    hull.ok(&["tag", &fx.busybox, "other/bb:x"]);
    let id = hull.image_id("other/bb:x");
    let out = hull.ok(&["rmi", "other/bb:x"]);
    assert!(out.contains("Untagged: other/bb:x"), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    hull.ok(&["tag", &fx.busybox, "other/bb:x"]);
    let err = hull.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("must be forced"), "{err}");
    let out = hull.ok(&["rmi", "-f", &id[7..19]]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    let err = hull.fails(&["inspect", "other/bb:x"]);
    assert!(err.contains("no such image"), "{err}");

    // df shows the now-unreferenced bytes; prune frees them.
    let df = hull.ok(&["system", "df", "--format", "json"]);
    assert!(!df.trim().is_empty());
    let out = hull.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let size = du(&hull.root().join("content").join("blobs"));
    assert!(size < 64 * 1024, "blobs left after prune: {size}");
    hull.ok(&["system", "check"]);
}

#[test]
fn prune_asks_unless_forced() {
    let hull = Hull::new();
    let out = hull
        .cmd()
        .args(["image", "prune"])
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(format!("{stdout}{stderr}").contains("Are you sure you want to continue?"));
}

#[test]
fn system_check_repairs_a_corrupt_blob() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", "-q", &fx.busybox]);
    let blobs = hull.root().join("content").join("blobs").join("sha256");
    // Corrupt the largest blob (the layer).
    let mut largest = None;
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let len = e.metadata().unwrap().len();
        if largest.as_ref().is_none_or(|(l, _)| len > *l) {
            largest = Some((len, e.path()));
        }
    }
    let (_, path) = largest.unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut data = std::fs::read(&path).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&path, data).unwrap();
    let err = hull.fails(&["system", "check"]);
    assert!(
        err.contains(path.file_name().unwrap().to_str().unwrap())
            || err.contains("corrupt")
            || err.contains("problem"),
        "{err}"
    );
    hull.ok(&["system", "check", "--repair"]);
    hull.ok(&["pull", "-q", &fx.busybox]);
    hull.ok(&["system", "check"]);
}

fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let md = e.metadata().unwrap();
            total += if md.is_dir() { du(&e.path()) } else { md.len() };
        }
    }
    total
}

#[test]
fn concurrent_processes_share_one_store() {
    let (_reg, fx) = registry();
    let hull = Hull::new();
    // Same image twice (same layers raced), another image, and GC runs in between.
    let jobs: Vec<Vec<String>> = vec![
        vec!["pull".into(), "-q".into(), fx.multilayer.clone()],
        vec!["pull".into(), "-q".into(), fx.multilayer.clone()],
        vec!["pull".into(), "-q".into(), fx.busybox.clone()],
        vec!["image".into(), "prune".into(), "-f".into()],
        vec!["system".into(), "check".into()],
        vec!["images".into()],
    ];
    let children: Vec<_> = jobs
        .iter()
        .map(|args| {
            hull.cmd()
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (args, child) in jobs.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "hull {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    hull.ok(&["system", "check"]);
    let ids = hull.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    // Every layer shared by the racing pulls was unpacked once.
    let layers = std::fs::read_dir(hull.root().join("layers"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.len() == 64
        })
        .count();
    let inspect = hull.ok(&[
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &fx.multilayer,
    ]);
    let busybox = hull.ok(&["inspect", "--format", "{{len .RootFS.Layers}}", &fx.busybox]);
    let expected: usize =
        inspect.trim().parse::<usize>().unwrap() + busybox.trim().parse::<usize>().unwrap();
    assert!(
        layers <= expected,
        "{layers} layer directories for {expected} layers"
    );
}
