//! ARCHITECTURE.md's layering, enforced: every dependency edge between hull crates (normal
//! dependencies; `hull-test` may be a dev-dependency anywhere) must be one this table allows,
//! so a shortcut across layers fails the build's tests instead of slipping in.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Which hull crates each crate may depend on. L0 vocabulary, L1 mechanisms, L2 state,
/// L3 services, L5 the binary.
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let l1 = ["hull-oci"];
    let table: &[(&str, &[&str])] = &[
        ("hull-oci", &[]),
        ("hull-dockerfile", &[]),
        ("hull-runtime", &[]),
        ("hull-content", &l1),
        ("hull-layer", &l1),
        ("hull-distribution", &l1),
        ("hull-metadata", &l1),
        ("hull-test", &l1),
        (
            "hull-image",
            &[
                "hull-oci",
                "hull-content",
                "hull-metadata",
                "hull-layer",
                "hull-distribution",
            ],
        ),
        // The registry serves bytes; its pull-through mirror fetches with the registry client.
        ("hull-registry", &["hull-oci", "hull-distribution"]),
        (
            "hull-build",
            &[
                "hull-oci",
                "hull-dockerfile",
                "hull-layer",
                "hull-image",
                "hull-metadata",
            ],
        ),
        (
            "hull",
            &[
                "hull-oci",
                "hull-distribution",
                "hull-image",
                "hull-registry",
                "hull-build",
                "hull-dockerfile",
                "hull-layer",
                "hull-runtime",
            ],
        ),
    ];
    table
        .iter()
        .map(|(k, v)| (*k, v.iter().copied().collect()))
        .collect()
}

#[test]
fn hull_crates_depend_only_down_the_layers() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed = allowed();
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if !name.starts_with("hull") {
            continue;
        }
        seen.insert(name.to_string());
        let Some(ok) = allowed.get(name) else {
            wrong.push(format!("{name} is not in the layering table"));
            continue;
        };
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if !dep.starts_with("hull") {
                continue;
            }
            let dev = d["kind"].as_str() == Some("dev");
            if dev && dep == "hull-test" {
                continue;
            }
            if !ok.contains(dep) {
                wrong.push(format!(
                    "{name} -> {dep}{}",
                    if dev { " (dev)" } else { "" }
                ));
            }
        }
    }
    assert!(seen.len() >= 12, "found only {seen:?}");
    assert!(
        wrong.is_empty(),
        "dependency edges the layering forbids: {wrong:?}"
    );
}
