//! Pushing with hull-distribution against a real CNCF registry: monolithic and chunked uploads,
//! resuming and restarting after broken connections, cross-repository mounts (201 and 202),
//! manifests, and the push scopes of basic and token auth.

// Test helpers: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hull_distribution::{
    BlobFile, BlobOptions, DistributionError, MountResult, PushedBlob, RegistryClient,
    UploadOptions,
};
use hull_oci::{Digest, media_type};
use hull_test::registry::{RegistryOptions, TestRegistry};

use super::push::data;
use super::upload_proxy::{Cut, UploadCutter};
use super::{client, collect, reference, write_auths};

const MIB: u64 = 1024 * 1024;

/// Small chunks so a few MiB make several PATCHes.
fn chunked() -> UploadOptions {
    UploadOptions {
        monolithic_limit: MIB,
        chunk_size: MIB,
    }
}

fn blob_file(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, Digest) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    (p, Digest::sha256_of(bytes))
}

async fn fetched(c: &RegistryClient, host: &str, repo: &str, d: &Digest) -> Vec<u8> {
    let r = reference(&format!("{host}/{repo}"));
    collect(c.get_blob(&r, d, 0, BlobOptions::default()).await.unwrap()).await
}

/// Access-log lines of the registry matching all of `needles` (the log lags a little).
async fn log_lines(reg: &TestRegistry, needles: &[&str], at_least: usize) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..100 {
        let log = std::fs::read_to_string(reg.log_path()).unwrap();
        found = log
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect();
        if found.len() >= at_least {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn monolithic_and_chunked_uploads() {
    let reg = TestRegistry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let repo = reference(&format!("{}/test/up", reg.host()));

    let small = data(100_000, 21);
    let (small_path, small_d) = blob_file(dir.path(), "small", &small);
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let pushed = c
        .push_blob(
            &repo,
            BlobFile {
                digest: &small_d,
                size: small.len() as u64,
                path: &small_path,
            },
            &[],
            &chunked(),
            Some(Arc::new(move |n| s.store(n, Ordering::SeqCst))),
        )
        .await
        .unwrap();
    assert_eq!(
        pushed,
        PushedBlob::Uploaded {
            resumed: 0,
            restarted: 0
        }
    );
    assert_eq!(seen.load(Ordering::SeqCst), small.len() as u64);
    assert!(fetched(&c, &reg.host(), "test/up", &small_d).await == small);
    // One PUT carried the bytes; no PATCH.
    assert!(
        log_lines(&reg, &["\"PATCH /v2/test/up/"], 1)
            .await
            .is_empty()
    );

    let large = data(5 * MIB as usize + 3, 22);
    let (large_path, large_d) = blob_file(dir.path(), "large", &large);
    let pushed = c
        .push_blob(
            &repo,
            BlobFile {
                digest: &large_d,
                size: large.len() as u64,
                path: &large_path,
            },
            &[],
            &chunked(),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(pushed, PushedBlob::Uploaded { .. }), "{pushed:?}");
    assert!(fetched(&c, &reg.host(), "test/up", &large_d).await == large);
    let patches = log_lines(&reg, &["\"PATCH /v2/test/up/blobs/uploads/", "\" 202 "], 6).await;
    assert_eq!(patches.len(), 6, "one PATCH per MiB chunk: {patches:#?}");

    // Again: the registry has it.
    let again = c
        .push_blob(
            &repo,
            BlobFile {
                digest: &large_d,
                size: large.len() as u64,
                path: &large_path,
            },
            &[],
            &chunked(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(again, PushedBlob::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_resumes_from_the_registry_offset() {
    let reg = TestRegistry::start().unwrap();
    let port = reg.host().rsplit(':').next().unwrap().parse().unwrap();
    // The connection drops as the third chunk starts: the registry holds two.
    let proxy = UploadCutter::start(port, Cut::BeforeRequest { nth: 3 });
    let dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let blob = data(4 * MIB as usize + 10, 23);
    let (path, d) = blob_file(dir.path(), "blob", &blob);
    let repo = reference(&format!("{}/test/resume", proxy.host()));
    let pushed = c
        .push_blob(
            &repo,
            BlobFile {
                digest: &d,
                size: blob.len() as u64,
                path: &path,
            },
            &[],
            &chunked(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(proxy.cuts(), 1, "the proxy never cut the upload");
    assert_eq!(
        pushed,
        PushedBlob::Uploaded {
            resumed: 1,
            restarted: 0
        }
    );
    assert!(fetched(&c, &reg.host(), "test/resume", &d).await == blob);
    let status = log_lines(
        &reg,
        &["\"GET /v2/test/resume/blobs/uploads/", "\" 204 "],
        1,
    )
    .await;
    assert_eq!(status.len(), 1, "the session's status was asked once");
    // Five chunks reached the registry: nothing was sent twice.
    let patches = log_lines(&reg, &["\"PATCH /v2/test/resume/", "\" 202 "], 5).await;
    assert_eq!(patches.len(), 5, "{patches:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_restarts_when_a_chunk_breaks_halfway() {
    let reg = TestRegistry::start().unwrap();
    let port = reg.host().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = UploadCutter::start(
        port,
        Cut::MidBody {
            nth: 2,
            bytes: 300_000,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let blob = data(3 * MIB as usize + 1, 24);
    let (path, d) = blob_file(dir.path(), "blob", &blob);
    let repo = reference(&format!("{}/test/restart", proxy.host()));
    let pushed = c
        .push_blob(
            &repo,
            BlobFile {
                digest: &d,
                size: blob.len() as u64,
                path: &path,
            },
            &[],
            &chunked(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(proxy.cuts(), 1, "the proxy never cut the upload");
    let PushedBlob::Uploaded { resumed, restarted } = pushed else {
        panic!("{pushed:?}")
    };
    assert_eq!(
        resumed + restarted,
        1,
        "one failure, one recovery: {pushed:?}"
    );
    assert!(fetched(&c, &reg.host(), "test/restart", &d).await == blob);
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_repository_mounts() {
    let reg = TestRegistry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let blob = data(200_000, 25);
    let (path, d) = blob_file(dir.path(), "blob", &blob);
    let size = blob.len() as u64;
    let host = reg.host();
    let src = reference(&format!("{host}/test/source"));
    c.push_blob(
        &src,
        BlobFile {
            digest: &d,
            size,
            path: &path,
        },
        &[],
        &chunked(),
        None,
    )
    .await
    .unwrap();

    // 201: mounted from where it is.
    let dst = reference(&format!("{host}/test/dest"));
    let pushed = c
        .push_blob(
            &dst,
            BlobFile {
                digest: &d,
                size,
                path: &path,
            },
            &["test/source".to_string()],
            &chunked(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        pushed,
        PushedBlob::Mounted {
            from: "test/source".into()
        }
    );
    assert!(fetched(&c, &host, "test/dest", &d).await == blob);
    assert!(
        log_lines(
            &reg,
            &["\"POST /v2/test/dest/blobs/uploads/?", "mount=", "\" 201 "],
            1
        )
        .await
        .len()
            == 1
    );

    // 202: the source does not have it; the registry opened an upload, which carries the blob.
    let other = reference(&format!("{host}/test/other"));
    let MountResult::Upload(mut session) = c.mount_blob(&other, &d, "test/nowhere").await.unwrap()
    else {
        panic!("mounted from a repository that does not exist")
    };
    assert_eq!(session.offset(), 0);
    session.put(&d, &path, size, None).await.unwrap();
    assert!(fetched(&c, &host, "test/other", &d).await == blob);

    // push_blob continues with the session a failed mount opened.
    let third = reference(&format!("{host}/test/third"));
    let pushed = c
        .push_blob(
            &third,
            BlobFile {
                digest: &d,
                size,
                path: &path,
            },
            &["test/nowhere".to_string()],
            &chunked(),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(pushed, PushedBlob::Uploaded { .. }), "{pushed:?}");
    assert!(fetched(&c, &host, "test/third", &d).await == blob);
    let posts = log_lines(&reg, &["\"POST /v2/test/third/blobs/uploads/"], 1).await;
    assert_eq!(posts.len(), 1, "no second session was opened: {posts:#?}");
}

/// Pushes a one-layer image with the client (layer, config, manifest) to `repo:tag`.
async fn push_image(
    c: &RegistryClient,
    dir: &Path,
    host: &str,
    repo: &str,
    from: &[String],
) -> (Digest, Vec<PushedBlob>) {
    let layer = data(50_000, 26);
    let (layer_path, layer_d) = blob_file(dir, "layer", &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_d.to_string()]},
    }))
    .unwrap();
    let (config_path, config_d) = blob_file(dir, "config", &config);
    let r = reference(&format!("{host}/{repo}:v1"));
    let mut outcomes = Vec::new();
    for (d, p, size) in [
        (&layer_d, &layer_path, layer.len()),
        (&config_d, &config_path, config.len()),
    ] {
        outcomes.push(
            c.push_blob(
                &r,
                BlobFile {
                    digest: d,
                    size: size as u64,
                    path: p,
                },
                from,
                &UploadOptions::default(),
                None,
            )
            .await
            .unwrap(),
        );
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_d.to_string(), "size": config.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": layer_d.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let d = c
        .put_manifest(&r, media_type::OCI_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    assert_eq!(d, Digest::sha256_of(&manifest));
    let got = c.get_manifest(&r).await.unwrap();
    assert_eq!(got.digest, d);
    assert!(got.bytes == manifest);
    (d, outcomes)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_asks_for_push_and_mount_scopes() {
    let reg = TestRegistry::start_with(RegistryOptions {
        token_auth: Some(("bob".into(), "builder".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    write_auths(cfg.path(), &reg.host(), "bob", "builder");
    let c = client(cfg.path());
    push_image(&c, dir.path(), &reg.host(), "team/app", &[]).await;

    // The mount needs one token with push on the target and pull on the source.
    let (_, outcomes) = push_image(
        &c,
        dir.path(),
        &reg.host(),
        "team/copy",
        &["team/app".to_string()],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            PushedBlob::Mounted {
                from: "team/app".into()
            };
            2
        ]
    );

    // Anonymous: the token server grants nothing.
    let anonymous = tempfile::tempdir().unwrap();
    let a = client(anonymous.path());
    let r = reference(&format!("{}/team/app", reg.host()));
    let e = a.start_upload(&r).await.unwrap_err();
    assert!(
        matches!(e, DistributionError::AuthenticationRequired { .. }),
        "{e:?}"
    );
    let e = a
        .put_manifest(
            &r.with_tag("v2").unwrap(),
            media_type::OCI_MANIFEST,
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap_err();
    assert!(e.is_unauthorized(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_push() {
    let reg = TestRegistry::start_with(RegistryOptions {
        basic_auth: Some(("alice".into(), "wonderland".into())),
        ..RegistryOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    write_auths(cfg.path(), &reg.host(), "alice", "wonderland");
    let c = client(cfg.path());
    let (_, outcomes) = push_image(&c, dir.path(), &reg.host(), "private/app", &[]).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, PushedBlob::Uploaded { .. }))
    );

    let anonymous = tempfile::tempdir().unwrap();
    let e = client(anonymous.path())
        .start_upload(&reference(&format!("{}/private/app", reg.host())))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "unauthorized: authentication required for {h} (hint: hull login {h})",
            h = reg.host()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_digest_must_match_the_reference() {
    let cfg = tempfile::tempdir().unwrap();
    let c = client(cfg.path());
    let wrong = Digest::sha256_of(b"other");
    let r = reference("127.0.0.1:9/a/b").with_digest(wrong);
    let e = c
        .put_manifest(&r, media_type::OCI_MANIFEST, Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, DistributionError::DigestMismatch { .. }),
        "{e:?}"
    );
    let e = c
        .put_manifest(
            &reference("127.0.0.1:9/a/b:c"),
            "text/plain",
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a manifest media type"), "{e}");
}
