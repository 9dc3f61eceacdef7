//! `hull serve` in its other modes, driven through the binary: S3 storage shared by two
//! replicas (on `s3s-fs`), a pull-through mirror of a CNCF registry, and `hull serve gc`.

use std::path::Path;

use crate::support::*;

/// Pushes `keep_image` as `PREFIX/keep:v1` and `drop_image` as `PREFIX/drop:v1` to `server`,
/// then deletes the `drop` tag (its manifest stays, untagged). Returns both references.
fn push_keep_and_untag(
    hull: &Hull,
    server: &Serve,
    prefix: &str,
    keep_image: &str,
    drop_image: &str,
) -> (String, String) {
    let keep = format!("{}/{prefix}/keep:v1", server.host());
    let drop = format!("{}/{prefix}/drop:v1", server.host());
    for (image, name) in [(keep_image, &keep), (drop_image, &drop)] {
        hull.ok(&["pull", image]);
        hull.ok(&["tag", image, name]);
        hull.ok(&["push", name]);
    }
    let status = reqwest::blocking::Client::new()
        .delete(format!(
            "http://{}/v2/{prefix}/drop/manifests/v1",
            server.host()
        ))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 202, "untagging {drop}");
    (keep, drop)
}

fn s3_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", hull_test::s3::ACCESS_KEY.to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            hull_test::s3::SECRET_KEY.to_string(),
        ),
    ]
}

#[test]
fn two_replicas_on_one_s3_bucket_serve_each_others_pushes() {
    let bin = hull_test::require_s3s_fs!();
    let s3 = hull_test::s3::S3Server::start(&bin).unwrap();
    let endpoint = s3.endpoint();
    let flags = [
        "--s3-bucket",
        hull_test::s3::BUCKET,
        "--s3-endpoint",
        endpoint.as_str(),
    ];
    let a = Serve::start_with(&flags, &s3_env());
    let b = Serve::start_with(&flags, &s3_env());
    let (_reg, fx) = registry();
    let hull = Hull::new();
    hull.ok(&["pull", &fx.multilayer]);
    let id = hull.image_id(&fx.multilayer);
    let on_a = format!("{}/shared/multilayer:v1", a.host());
    hull.ok(&["tag", &fx.multilayer, &on_a]);
    hull.ok(&["push", &on_a]);

    let other = Hull::new();
    let on_b = format!("{}/shared/multilayer:v1", b.host());
    other.ok(&["pull", &on_b]);
    assert_eq!(other.image_id(&on_b), id, "replica B serves what A stored");
    // B's catalog lists it too
    let catalog = reqwest::blocking::get(format!("http://{}/v2/_catalog", b.host()))
        .unwrap()
        .text()
        .unwrap();
    assert!(catalog.contains("shared/multilayer"), "{catalog}");
    // garbage collection over the bucket keeps the tagged image
    let out = hull
        .cmd()
        .args([
            "serve",
            "gc",
            "--dry-run",
            "--grace",
            "0",
            "--s3-bucket",
            hull_test::s3::BUCKET,
            "--s3-endpoint",
            &endpoint,
        ])
        .envs(s3_env())
        .output()
        .unwrap();
    let gc = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{gc}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gc.contains("0 untagged manifests"), "{gc}");
}

#[test]
fn a_mirror_serves_the_upstreams_images_byte_for_byte_and_refuses_pushes() {
    let (reg, fx) = registry();
    let mirror = Serve::start_with(&["--proxy-remote", &format!("http://{}", reg.host())], &[]);
    let hull = Hull::new();
    hull.ok(&["pull", &fx.busybox]);
    let direct = hull.image_id(&fx.busybox);
    let upstream_digest = raw_manifest_digest(&fx.busybox);

    let through = Hull::new();
    let name = fx.busybox.replacen(&reg.host(), mirror.host(), 1);
    through.ok(&["pull", &name]);
    assert_eq!(through.image_id(&name), direct);
    assert_eq!(
        raw_manifest_digest(&name),
        upstream_digest,
        "the mirror serves the upstream's manifest bytes"
    );
    // pushes are refused
    let target = format!("{}/test/pushed:v1", mirror.host());
    hull.ok(&["tag", &fx.busybox, &target]);
    let err = hull.fails(&["push", &target]);
    assert!(err.to_lowercase().contains("unsupported"), "{err}");
}

/// The digest of the manifest a registry serves for `reference` (skopeo, plain http).
fn raw_manifest_digest(reference: &str) -> String {
    hull_oci::Digest::sha256_of(raw_manifest(reference).as_bytes()).to_string()
}

#[test]
fn serve_gc_removes_untagged_images_and_keeps_tagged_ones() {
    let (_reg, fx) = registry();
    let data = tempfile::tempdir_in(scratch()).unwrap();
    let server = Serve::start_with(&["--data", &data.path().display().to_string()], &[]);
    let hull = Hull::new();
    let (keep, _) = push_keep_and_untag(&hull, &server, "gc", &fx.busybox, &fx.multilayer);
    let data_flag = data.path().display().to_string();
    let dry = hull.ok(&[
        "serve",
        "gc",
        "--data",
        &data_flag,
        "--grace",
        "0",
        "--dry-run",
    ]);
    assert!(
        dry.contains("Would remove manifest: gc/drop@sha256:"),
        "{dry}"
    );
    let json = hull.ok(&[
        "serve",
        "gc",
        "--data",
        &data_flag,
        "--grace",
        "0",
        "--dry-run",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ManifestsDeleted"].as_array().unwrap().len(), 1, "{v}");
    let done = hull.ok(&["serve", "gc", "--data", &data_flag, "--grace", "0"]);
    assert!(done.contains("Removed manifest: gc/drop@sha256:"), "{done}");
    assert!(done.contains("Removed blob: sha256:"), "{done}");
    // the tagged image still pulls, while the server kept running
    let fresh = Hull::new();
    fresh.ok(&["pull", &keep]);
    assert!(!data_path_empty(data.path()));
}

fn data_path_empty(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn token_auth_scopes_pushes_and_pulls_per_repository() {
    let (_reg, fx) = registry();
    let dir = tempfile::tempdir_in(scratch()).unwrap();
    let server = token_auth_serve(dir.path());
    let host = server.host().to_string();
    let alice = Hull::new();
    alice.ok(&["pull", &fx.busybox]);
    let private = format!("{host}/private/busybox:v1");
    let public = format!("{host}/public/busybox:v1");
    alice.ok(&["tag", &fx.busybox, &private]);
    alice.ok(&["tag", &fx.busybox, &public]);
    let err = alice.fails(&["push", &private]);
    assert!(
        err.contains("hull login"),
        "anonymous push is refused: {err}"
    );
    alice.ok(&["login", "-u", "alice", "-p", "alice-pw", &host]);
    alice.ok(&["push", &private]);
    alice.ok(&["push", &public]);

    // bob may pull, not push
    let bob = Hull::new();
    bob.ok(&["login", "-u", "bob", "-p", "bob-pw", &host]);
    bob.ok(&["pull", &private]);
    bob.ok(&["tag", &private, &format!("{host}/private/bobs:v1")]);
    let err = bob.fails(&["push", &format!("{host}/private/bobs:v1")]);
    assert!(
        err.to_lowercase().contains("denied") || err.contains("insufficient"),
        "{err}"
    );
    // anyone pulls public/*, nobody else anonymously
    let anon = Hull::new();
    anon.ok(&["pull", &public]);
    anon.fails(&["pull", &private]);
    // the challenge names the token endpoint and the scope
    let resp =
        reqwest::blocking::get(format!("http://{host}/v2/private/busybox/manifests/v1")).unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"http://{host}/token\"")),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:private/busybox:pull\""),
        "{challenge}"
    );
    // metrics count what happened, without repository names
    let metrics = reqwest::blocking::get(format!("http://{host}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("hull_registry_http_requests_total"),
        "{metrics}"
    );
    assert!(!metrics.contains("private/busybox"), "{metrics}");
}

#[test]
fn scheduled_collection_runs_while_the_registry_serves() {
    let (_reg, fx) = registry();
    let dir = tempfile::tempdir_in(scratch()).unwrap();
    let config = dir.path().join("serve.toml");
    // A grace period that covers the pushes below: what was just written is never swept while
    // its manifest is on the way (with no grace at all, a run whose mark phase ends between
    // the blob uploads and the manifest PUT may sweep them, as the gc module documents).
    std::fs::write(&config, "gc-interval-secs = 1\ngc-grace-secs = 4\n").unwrap();
    let data = dir.path().join("data");
    let server = Serve::start_with(
        &[
            "--data",
            &data.display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
        &[],
    );
    let hull = Hull::new();
    let (keep, _) = push_keep_and_untag(&hull, &server, "sched", &fx.busybox, &fx.busybox);
    // the untagged manifest leaves its repository within a few runs, the tagged one stays
    let digest = raw_manifest_digest(&keep);
    let url = format!("http://{}/v2/sched/drop/manifests/{digest}", server.host());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let s = reqwest::blocking::Client::new()
            .head(&url)
            .send()
            .unwrap()
            .status();
        if s == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still served: {s}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let fresh = Hull::new();
    fresh.ok(&["pull", &keep]);
}
