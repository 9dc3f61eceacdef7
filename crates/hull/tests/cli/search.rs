//! `hull search` against `hull serve`: Docker's table, truncation, filters, formats, and the
//! `HOST/TERM` form.

use std::path::Path;

use hull_test::fixtures::{self, FixtureName};
use hull_test::peers;

use crate::support::{Hull, Serve, scratch};

/// `hull serve repo set`, the admin command, on the server's data directory.
fn set_info(data: &Path, name: &str, description: &str, official: bool, stars: u64) {
    let admin = Hull::new();
    let out = admin.ok(&[
        "serve",
        "repo",
        "set",
        name,
        "--description",
        description,
        &format!("--official={official}"),
        "--stars",
        &stars.to_string(),
        "--data",
        &data.display().to_string(),
    ]);
    assert!(out.contains(name), "{out}");
}

#[test]
fn search_prints_docker_columns_from_hull_serve() {
    peers::ensure("skopeo", "skopeo").unwrap();
    let hull = Hull::new();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let serve = Serve::start(data.path());
    let host = serve.host().to_string();
    let (layout, tag) = fixtures::layout(FixtureName::BusyboxOci).unwrap();
    for repo in ["lab/busybox", "lab/busybox-tools", "lab/other"] {
        let mut cmd = peers::skopeo();
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{host}/{repo}:{tag}"));
        peers::run(&mut cmd).unwrap();
    }
    let long = "Busybox base image with the applets of a static build, for tests";
    set_info(data.path(), "lab/busybox", long, true, 12);
    set_info(data.path(), "lab/busybox-tools", "Tools", false, 3);

    let out = hull.ok(&["search", "--registry", &host, "busybox"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let cols: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(cols, ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"], "{out}");
    assert!(lines[1].starts_with("lab/busybox "), "{out}");
    let cut: String = long.chars().take(44).collect();
    assert!(lines[1].contains(&format!("{cut}…")), "{out}");
    assert!(!lines[1].contains(long), "{out}");
    assert!(lines[1].trim_end().ends_with("12        [OK]"), "{out}");
    assert!(lines[2].starts_with("lab/busybox-tools "), "{out}");
    assert!(lines[2].trim_end().ends_with('3'), "{out}");

    // HOST/TERM, --no-trunc, filters.
    let out = hull.ok(&["search", "--no-trunc", &format!("{host}/busybox")]);
    assert!(out.contains(long), "{out}");
    let out = hull.ok(&[
        "search",
        "--registry",
        &host,
        "--filter",
        "is-official=true",
        "busy",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = hull.ok(&[
        "search",
        "--registry",
        &host,
        "--filter",
        "stars=5",
        "--format",
        "{{.Name}} {{.StarCount}} {{.IsOfficial}}",
        "lab",
    ]);
    assert_eq!(out, "lab/busybox 12 [OK]\n");
    // A description matches too; JSON lines.
    let out = hull.ok(&["search", "--registry", &host, "--format", "json", "TOOLS"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["Name"], "lab/busybox-tools");
    assert_eq!(v["StarCount"], "3");
    assert_eq!(v["IsOfficial"], "");
    // --limit is the page size.
    let out = hull.ok(&["search", "--registry", &host, "--limit", "1", "lab"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let err = hull.fails(&["search", "--registry", &host, "--limit", "0", "lab"]);
    assert!(
        err.contains("limit 0 is outside the range of [1, 100]"),
        "{err}"
    );
    let err = hull.fails(&[
        "search",
        "--registry",
        &host,
        "--filter",
        "color=red",
        "lab",
    ]);
    assert!(err.contains("invalid filter 'color'"), "{err}");
    drop(serve);
}
