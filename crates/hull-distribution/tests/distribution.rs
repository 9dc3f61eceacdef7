//! hull-distribution against a real CNCF registry (started by hull-test) and, for behaviours a
//! registry won't show on demand, a scripted HTTP server and a connection-cutting proxy.

// Helpers outside #[test] functions: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "distribution/fake.rs"]
mod fake;
#[path = "distribution/proxy.rs"]
mod proxy;
#[path = "distribution/push.rs"]
mod push;
#[path = "distribution/upload.rs"]
mod upload;
#[path = "distribution/upload_proxy.rs"]
mod upload_proxy;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use hull_distribution::{
    BlobOptions, BlobStream, ClientConfig, DistributionError, RegistryClient, credentials,
};
use hull_oci::{Digest, Reference, media_type};
use hull_test::registry::{RegistryOptions, TestRegistry};

use fake::{FakeServer, Response};
use proxy::CuttingProxy;
use push::{Pusher, data};

/// A client that reads credentials only from `config_dir` and retries quickly.
fn client(config_dir: &Path) -> RegistryClient {
    RegistryClient::new(ClientConfig {
        docker_config_dir: Some(config_dir.to_path_buf()),
        retry_base_delay: Duration::from_millis(10),
        max_retries: 3,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

async fn collect(mut s: BlobStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn write_auths(dir: &Path, host: &str, user: &str, pass: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_by_tag_and_digest() {
    let reg = TestRegistry::start().unwrap();
    let pushed = Pusher::new(&reg.host(), None)
        .image("test/app", "v1", data(1000, 1))
        .await;
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());

    let by_tag = c
        .get_manifest(&reference(&format!("{}/test/app:v1", reg.host())))
        .await
        .unwrap();
    assert_eq!(&by_tag.bytes[..], &pushed.manifest[..]);
    assert_eq!(by_tag.digest, pushed.manifest_digest);
    assert_eq!(by_tag.media_type, media_type::OCI_MANIFEST);

    let repo = reference(&format!("{}/test/app", reg.host()));
    let by_digest = c
        .get_manifest_by_digest(&repo, &pushed.manifest_digest)
        .await
        .unwrap();
    assert_eq!(by_digest.bytes, by_tag.bytes);
    assert_eq!(by_digest.digest, pushed.manifest_digest);

    let head = c
        .head_manifest(&reference(&format!("{}/test/app:v1", reg.host())))
        .await
        .unwrap();
    assert_eq!(
        head,
        Some((
            pushed.manifest_digest.clone(),
            media_type::OCI_MANIFEST.to_string(),
            pushed.manifest.len() as u64
        ))
    );
    let missing = c
        .head_manifest(&reference(&format!("{}/test/app:nope", reg.host())))
        .await
        .unwrap();
    assert_eq!(missing, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_things_have_readable_errors() {
    let reg = TestRegistry::start().unwrap();
    let pusher = Pusher::new(&reg.host(), None);
    pusher.image("test/app", "v1", data(10, 2)).await;
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());

    let r = reference(&format!("{}/test/app:nope", reg.host()));
    let e = c.get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(e, DistributionError::ManifestUnknown { .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("manifest unknown: {}/test/app:nope", reg.host())
    );
    assert!(e.is_not_found());

    let e = c
        .get_manifest(&reference(&format!("{}/test/absent:v1", reg.host())))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(e.to_string().contains("test/absent"), "{e}");

    let repo = reference(&format!("{}/test/app", reg.host()));
    let d = Digest::sha256_of(b"never pushed");
    assert_eq!(c.blob_size(&repo, &d).await.unwrap(), None);
    let e = c
        .get_blob(&repo, &d, 0, BlobOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("blob unknown: {}/test/app@{d}", reg.host())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_manifest_is_detected() {
    let reg = TestRegistry::start().unwrap();
    let pushed = Pusher::new(&reg.host(), None)
        .image("test/app", "v1", data(10, 3))
        .await;
    // Replace the stored manifest with another valid manifest of the same shape.
    let mut doc: serde_json::Value = serde_json::from_slice(&pushed.manifest).unwrap();
    doc["annotations"] = serde_json::json!({"tampered": "yes"});
    std::fs::write(
        reg.blob_data_path(&pushed.manifest_digest),
        serde_json::to_vec(&doc).unwrap(),
    )
    .unwrap();

    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let e = c
        .get_manifest(&reference(&format!("{}/test/app:v1", reg.host())))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DistributionError::DigestMismatch { expected, .. } if *expected == pushed.manifest_digest),
        "{e:?}"
    );
    let repo = reference(&format!("{}/test/app", reg.host()));
    let e = c
        .get_manifest_by_digest(&repo, &pushed.manifest_digest)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("digest mismatch for manifest"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_stream_from_an_offset() {
    let reg = TestRegistry::start().unwrap();
    let blob = data(3 * 1024 * 1024 + 17, 4);
    let d = Pusher::new(&reg.host(), None)
        .blob("test/blob", &blob)
        .await;
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let repo = reference(&format!("{}/test/blob", reg.host()));

    assert_eq!(
        c.blob_size(&repo, &d).await.unwrap(),
        Some(blob.len() as u64)
    );

    let s = c
        .get_blob(&repo, &d, 0, BlobOptions::default())
        .await
        .unwrap();
    assert_eq!((s.start(), s.total()), (0, Some(blob.len() as u64)));
    assert!(collect(s).await == blob);

    let s = c
        .get_blob(&repo, &d, 1_000_001, BlobOptions::default())
        .await
        .unwrap();
    assert_eq!(s.start(), 1_000_001);
    assert_eq!(s.total(), Some(blob.len() as u64));
    assert!(collect(s).await == blob[1_000_001..]);

    // Asking from the very end is an empty stream, not an error.
    let s = c
        .get_blob(&repo, &d, blob.len() as u64, BlobOptions::default())
        .await
        .unwrap();
    assert_eq!(s.start(), blob.len() as u64);
    assert!(collect(s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_stream_resumes_after_a_connection_drop() {
    let reg = TestRegistry::start().unwrap();
    let blob = data(4 * 1024 * 1024, 5);
    let d = Pusher::new(&reg.host(), None)
        .blob("test/blob", &blob)
        .await;
    let proxy = CuttingProxy::start(
        reg.url().rsplit(':').next().unwrap().parse().unwrap(),
        1024 * 1024,
    );
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let repo = reference(&format!("{}/test/blob", proxy.host()));

    let s = c
        .get_blob(&repo, &d, 0, BlobOptions::default())
        .await
        .unwrap();
    assert_eq!(s.start(), 0);
    let got = collect(s).await;
    assert_eq!(proxy.cuts(), 1, "the proxy never cut the stream");
    assert!(proxy.connections() >= 2);
    assert_eq!(got.len(), blob.len());
    assert!(got == blob);
    assert_eq!(Digest::sha256_of(&got), d);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_gives_up_after_max_retries() {
    // A blob server that always breaks the body after a few bytes.
    let blob = data(100_000, 6);
    let d = Digest::sha256_of(&blob);
    let path = format!("/v2/test/blob/blobs/{d}");
    let server = FakeServer::start(move |req| {
        if req.target == "/v2/" {
            return Response::new(200);
        }
        assert_eq!(req.target, path);
        // Announce the whole blob, send 10 bytes, close.
        Response::new(200)
            .header("content-length", "100000")
            .body(blob[..10].to_vec())
    });
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let repo = reference(&format!("{}/test/blob", server.host()));
    let mut s = c
        .get_blob(&repo, &d, 0, BlobOptions::default())
        .await
        .unwrap();
    let mut got = 0;
    let mut err = None;
    while let Some(item) = s.next().await {
        match item {
            Ok(b) => got += b.len(),
            Err(e) => err = Some(e),
        }
    }
    let err = err.expect("a stream that can never finish must fail");
    assert!(err.to_string().contains(&d.to_string()), "{err}");
    assert_eq!(
        got, 10,
        "the registry ignored Range, so nothing past byte 10 could be had"
    );
    // 1 ping + the first GET + 3 retries.
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_ranges_yield_the_same_bytes() {
    let reg = TestRegistry::start().unwrap();
    let blob = data(5 * 1024 * 1024 + 3, 7);
    let d = Pusher::new(&reg.host(), None)
        .blob("test/blob", &blob)
        .await;
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let repo = reference(&format!("{}/test/blob", reg.host()));
    let opts = BlobOptions {
        parallel_ranges: 4,
        range_chunk: 256 * 1024,
    };
    let s = c.get_blob(&repo, &d, 0, opts).await.unwrap();
    assert_eq!((s.start(), s.total()), (0, Some(blob.len() as u64)));
    assert!(collect(s).await == blob);
    // One ranged GET per 256 KiB chunk reached the registry (its access log lags a little).
    let expected = blob.len().div_ceil(256 * 1024);
    let ranged = || {
        let log = std::fs::read_to_string(reg.log_path()).unwrap();
        log.lines()
            .filter(|l| l.contains("/blobs/") && l.contains("\" 206 "))
            .count()
    };
    for _ in 0..100 {
        if ranged() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ranged(), expected, "{}", reg.log_tail());

    let s = c.get_blob(&repo, &d, 777_777, opts).await.unwrap();
    assert_eq!(s.start(), 777_777);
    assert!(collect(s).await == blob[777_777..]);

    // Small blobs (≤ 2 chunks) and the tail end take the sequential path.
    let s = c
        .get_blob(&repo, &d, blob.len() as u64 - 300_000, opts)
        .await
        .unwrap();
    assert!(collect(s).await == blob[blob.len() - 300_000..]);
    let s = c
        .get_blob(&repo, &d, blob.len() as u64, opts)
        .await
        .unwrap();
    assert!(collect(s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_ignoring_range_restarts_at_zero() {
    let blob = data(200_000, 8);
    let d = Digest::sha256_of(&blob);
    let body = blob.clone();
    let server = FakeServer::start(move |req| {
        if req.target == "/v2/" {
            return Response::new(200);
        }
        Response::new(200).body(body.clone())
    });
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let repo = reference(&format!("{}/test/blob", server.host()));
    let s = c
        .get_blob(&repo, &d, 1000, BlobOptions::default())
        .await
        .unwrap();
    assert_eq!(s.start(), 0);
    assert!(collect(s).await == blob);
    let opts = BlobOptions {
        parallel_ranges: 4,
        range_chunk: 10_000,
    };
    let s = c.get_blob(&repo, &d, 5000, opts).await.unwrap();
    assert_eq!(s.start(), 0);
    assert!(collect(s).await == blob);
    let ranges: Vec<_> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, ["bytes=1000-", "bytes=5000-14999"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_listed() {
    let reg = TestRegistry::start().unwrap();
    let pusher = Pusher::new(&reg.host(), None);
    let pushed = pusher.image("test/app", "v1", data(10, 9)).await;
    for t in ["v2", "latest", "1.0.0"] {
        pusher
            .manifest("test/app", t, media_type::OCI_MANIFEST, &pushed.manifest)
            .await;
    }
    let cfg = tempfile::tempdir().unwrap();
    let mut tags = client(cfg.path())
        .list_tags(&reference(&format!("{}/test/app", reg.host())))
        .await
        .unwrap();
    tags.sort();
    assert_eq!(tags, ["1.0.0", "latest", "v1", "v2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_pagination_follows_link_headers() {
    // distribution 2.8 ignores `n` on tag lists, so the pages are scripted.
    let server = FakeServer::start(|req| {
        let page = |tags: &[&str], next: Option<&str>| {
            let r = Response::new(200)
                .header("content-type", "application/json")
                .body(serde_json::json!({"name": "a/b", "tags": tags}).to_string());
            match next {
                Some(n) => r.header("link", &format!("<{n}>; rel=\"next\"")),
                None => r,
            }
        };
        match req.target.as_str() {
            "/v2/" => Response::new(200),
            "/v2/a/b/tags/list?n=2" => page(&["t1", "t2"], Some("/v2/a/b/tags/list?last=t2&n=2")),
            "/v2/a/b/tags/list?last=t2&n=2" => {
                page(&["t3", "t4"], Some("/v2/a/b/tags/list?last=t4&n=2"))
            }
            "/v2/a/b/tags/list?last=t4&n=2" => page(&["t5"], None),
            "/v2/loop/x/tags/list" => page(&["t1"], Some("/v2/loop/x/tags/list")),
            "/v2/away/x/tags/list" => {
                page(&["t1"], Some("http://other.example/v2/away/x/tags/list"))
            }
            _ => Response::new(404),
        }
    });
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let tags = c
        .list_tags_paged(&reference(&format!("{}/a/b", server.host())), Some(2))
        .await
        .unwrap();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5"]);
    let e = c
        .list_tags(&reference(&format!("{}/loop/x", server.host())))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("loops"), "{e}");
    let e = c
        .list_tags(&reference(&format!("{}/away/x", server.host())))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another host"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth() {
    let reg = TestRegistry::start_with(RegistryOptions {
        basic_auth: Some(("alice".into(), "wonderland".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let pushed = Pusher::new(&reg.host(), Some(basic("alice", "wonderland")))
        .image("test/private", "v1", data(10, 10))
        .await;
    let r = reference(&format!("{}/test/private:v1", reg.host()));

    let anonymous = tempfile::tempdir().unwrap();
    let e = client(anonymous.path()).get_manifest(&r).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "unauthorized: authentication required for {h} (hint: hull login {h})",
            h = reg.host()
        )
    );
    assert!(e.is_unauthorized());

    let right = tempfile::tempdir().unwrap();
    write_auths(right.path(), &reg.host(), "alice", "wonderland");
    let m = client(right.path()).get_manifest(&r).await.unwrap();
    assert_eq!(m.digest, pushed.manifest_digest);

    let wrong = tempfile::tempdir().unwrap();
    write_auths(wrong.path(), &reg.host(), "alice", "looking-glass");
    let e = client(wrong.path()).get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(e, DistributionError::CredentialsRefused { .. }),
        "{e:?}"
    );
    assert!(!e.to_string().contains("looking-glass"));
    assert!(!format!("{e:?}").contains("looking-glass"));

    let c = client(anonymous.path());
    c.check_login(&reg.host(), "alice", "wonderland")
        .await
        .unwrap();
    let e = c
        .check_login(&reg.host(), "alice", "nope")
        .await
        .unwrap_err();
    assert!(
        matches!(e, DistributionError::CredentialsRefused { .. }),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_with_docker_config_credentials() {
    let reg = TestRegistry::start_with(RegistryOptions {
        token_auth: Some(("bob".into(), "builder".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let token = reg.push_token("test/private").unwrap();
    let pushed = Pusher::new(&reg.host(), Some(format!("Bearer {token}")))
        .image("test/private", "v1", data(50_000, 11))
        .await;
    let r = reference(&format!("{}/test/private:v1", reg.host()));
    let repo = r.without_tag();

    let cfg = tempfile::tempdir().unwrap();
    write_auths(cfg.path(), &reg.host(), "bob", "builder");
    let c = client(cfg.path());
    let before = reg.token_requests();
    let m = c.get_manifest(&r).await.unwrap();
    assert_eq!(m.digest, pushed.manifest_digest);
    // Same scope: the cached token is reused pre-emptively.
    c.get_manifest(&r).await.unwrap();
    let blob = collect(
        c.get_blob(&repo, &pushed.layer_digest, 0, BlobOptions::default())
            .await
            .unwrap(),
    )
    .await;
    assert!(blob == pushed.layer);
    assert_eq!(reg.token_requests() - before, 1, "the token was not reused");

    let anonymous = tempfile::tempdir().unwrap();
    let e = client(anonymous.path()).get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(e, DistributionError::AuthenticationRequired { .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains(&format!("hull login {}", reg.host()))
    );

    let wrong = tempfile::tempdir().unwrap();
    write_auths(wrong.path(), &reg.host(), "bob", "plumber");
    let e = client(wrong.path()).get_manifest(&r).await.unwrap_err();
    assert!(
        matches!(e, DistributionError::CredentialsRefused { .. }),
        "{e:?}"
    );

    c.check_login(&reg.host(), "bob", "builder").await.unwrap();
    let e = c.check_login(&reg.host(), "bob", "x").await.unwrap_err();
    assert!(e.is_unauthorized(), "{e:?}");
}

/// A directory on `PATH` for credential helper scripts, added once for the whole test binary.
fn helper_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("hull-distribution-helpers");
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.clone()];
        dirs.extend(std::env::split_paths(&path));
        // SAFETY: std serialises its own environment access; no C code of this test binary
        // reads the environment concurrently (connections go to IP literals, no resolver).
        unsafe { std::env::set_var("PATH", std::env::join_paths(dirs).unwrap()) };
        dir
    })
}

fn write_helper(name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = helper_dir().join(format!("docker-credential-{name}"));
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_helpers() {
    let reg = TestRegistry::start_with(RegistryOptions {
        token_auth: Some(("carol".into(), "helper-secret".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let token = reg.push_token("test/private").unwrap();
    let pushed = Pusher::new(&reg.host(), Some(format!("Bearer {token}")))
        .image("test/private", "v1", data(10, 12))
        .await;
    let r = reference(&format!("{}/test/private:v1", reg.host()));
    // Named after the registry: test processes share the helper directory.
    let helper = format!("hulltest-{}", reg.host().replace([':', '.'], "-"));
    let log = helper_dir().join(format!("{helper}.log"));
    write_helper(
        &helper,
        &format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {log}\ncase \"$server\" in\n  {host}) echo '{{\"ServerURL\":\"{host}\",\"Username\":\"carol\",\"Secret\":\"helper-secret\"}}' ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            log = log.display(),
            host = reg.host()
        ),
    );

    // Per-registry credHelpers.
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(
        cfg.path().join("config.json"),
        serde_json::json!({"credHelpers": {reg.host(): helper}}).to_string(),
    )
    .unwrap();
    let m = client(cfg.path()).get_manifest(&r).await.unwrap();
    assert_eq!(m.digest, pushed.manifest_digest);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.trim(), format!("get {}", reg.host()));

    // credsStore for every registry, through the public lookup as `hull login` uses it.
    let store = tempfile::tempdir().unwrap();
    std::fs::write(
        store.path().join("config.json"),
        serde_json::json!({"credsStore": helper}).to_string(),
    )
    .unwrap();
    let found = credentials::lookup(store.path(), &reg.host())
        .unwrap()
        .unwrap();
    assert_eq!(found.username, "carol");
    assert_eq!(
        credentials::lookup(store.path(), "other.example").unwrap(),
        None
    );
    client(store.path()).get_manifest(&r).await.unwrap();

    let _ = std::fs::remove_file(helper_dir().join(format!("docker-credential-{helper}")));
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread")]
async fn schema1_is_refused() {
    let server = FakeServer::start(|req| match req.target.as_str() {
        "/v2/" => Response::new(200),
        _ => Response::new(200)
            .header("content-type", media_type::DOCKER_SCHEMA1_SIGNED)
            .body(r#"{"schemaVersion":1,"name":"old/app","tag":"v1","fsLayers":[],"history":[]}"#),
    });
    let cfg = tempfile::tempdir().unwrap();
    let e = client(cfg.path())
        .get_manifest(&reference(&format!("{}/old/app:v1", server.host())))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("schema 1"), "{e}");
    assert!(e.to_string().contains("old/app:v1"), "{e}");
    let accept = server.requests()[1].header("accept").unwrap().to_string();
    assert!(
        accept.contains(media_type::OCI_INDEX) && !accept.contains("distribution.manifest.v1"),
        "{accept}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_server_errors_but_not_client_errors() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let server = FakeServer::start(move |req| match req.target.as_str() {
        "/v2/" => Response::new(200),
        "/v2/flaky/x/manifests/v1" => match h.fetch_add(1, Ordering::SeqCst) {
            0 => Response::new(503),
            1 => Response::new(429).header("retry-after", "0"),
            _ => Response::new(200)
                .header("content-type", media_type::OCI_INDEX)
                .body(manifest.to_vec()),
        },
        "/v2/down/x/manifests/v1" => Response::new(502),
        _ => Response::new(400)
            .body(r#"{"errors":[{"code":"NAME_INVALID","message":"invalid repository name"}]}"#),
    });
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let m = c
        .get_manifest(&reference(&format!("{}/flaky/x:v1", server.host())))
        .await
        .unwrap();
    assert_eq!(m.media_type, media_type::OCI_INDEX);
    assert_eq!(m.digest, Digest::sha256_of(manifest));
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    let e = c
        .get_manifest(&reference(&format!("{}/down/x:v1", server.host())))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DistributionError::Server {
                status: 502,
                attempts: 4,
                ..
            }
        ),
        "{e:?}"
    );

    let before = server.requests().len();
    let e = c
        .get_manifest(&reference(&format!("{}/bad/x:v1", server.host())))
        .await
        .unwrap_err();
    assert_eq!(server.requests().len(), before + 1, "a 400 was retried");
    assert!(
        e.to_string().starts_with("invalid repository name: "),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_names_the_registry() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = tempfile::tempdir().unwrap();
    let e = client(cfg.path())
        .get_manifest(&reference(&format!("127.0.0.1:{port}/a/b:c")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, DistributionError::ConnectionRefused { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_do_not_carry_the_registry_credentials() {
    let blob = data(1000, 13);
    let d = Digest::sha256_of(&blob);
    let body = blob.clone();
    let storage = FakeServer::start(move |_| Response::new(200).body(body.clone()));
    let storage_url = format!("http://{}/storage/blob", storage.host());
    let registry = FakeServer::start(move |req| {
        if req.header("authorization").is_none() {
            return Response::new(401).header("www-authenticate", "Basic realm=\"fake\"");
        }
        match req.target.as_str() {
            "/v2/" => Response::new(200),
            _ => Response::new(307).header("location", &storage_url),
        }
    });
    let cfg = tempfile::tempdir().unwrap();
    write_auths(cfg.path(), &registry.host(), "dave", "s3cret");
    let c = client(cfg.path());
    let repo = reference(&format!("{}/a/b", registry.host()));
    let got = collect(
        c.get_blob(&repo, &d, 0, BlobOptions::default())
            .await
            .unwrap(),
    )
    .await;
    assert!(got == blob);
    let blob_req = registry
        .requests()
        .into_iter()
        .find(|r| r.target.contains("/blobs/"))
        .unwrap();
    assert_eq!(
        blob_req.header("authorization"),
        Some(basic("dave", "s3cret").as_str())
    );
    let fetched = storage.requests();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].header("authorization"), None);
}

#[test]
fn blob_stream_is_send_and_unpin() {
    fn check<T: Send + Unpin + futures_util::Stream<Item = Result<Bytes, DistributionError>>>() {}
    check::<BlobStream>();
    fn shared<T: Send + Sync + Clone>() {}
    shared::<RegistryClient>();
}
