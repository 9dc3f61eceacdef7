//! hull's registry server against real clients (skopeo, podman, a CNCF registry as the other
//! end of copies) and against the distribution spec's edge cases over raw HTTP; the shared
//! storage suite on the filesystem backend; `hull serve` as a process.

// Test helpers: a failed step should panic with its value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "registry/hostile.rs"]
mod hostile;
#[path = "registry/metrics.rs"]
mod metrics;
#[path = "registry/proxy.rs"]
mod proxy;
#[path = "registry/s3.rs"]
mod s3;
#[path = "registry/search.rs"]
mod search;
#[path = "registry/support.rs"]
mod support;
#[path = "registry/token.rs"]
mod token;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_oci::Digest;
use hull_oci::media_type as mt;
use hull_registry::gc::{self, GcOptions, GcReport};
use hull_registry::storage::{FsStorage, ObjectStorage, RegistryStorage, suite};
use hull_registry::{BasicAuth, Htpasswd, RegistryConfig};
use hull_test::fixtures::{self, FixtureName};
use support::*;

// ------------------------------------------------------------------------------- storage suite

#[test]
fn fs_storage_passes_the_shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(suite::run(|| {
        let root = root.clone();
        async move {
            let s: Arc<dyn RegistryStorage> = Arc::new(FsStorage::open(root).await?);
            Ok(s)
        }
    }))
    .unwrap();
}

fn in_memory() -> Arc<dyn object_store::ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

#[test]
fn object_storage_passes_the_shared_suite() {
    let store = in_memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(suite::run(|| {
        let store = Arc::clone(&store);
        async move {
            let s: Arc<dyn RegistryStorage> = Arc::new(ObjectStorage::new(store, "registry"));
            Ok(s)
        }
    }))
    .unwrap();
}

#[test]
fn skopeo_round_trips_every_fixture_over_object_storage() {
    hull_test::require_bin!("skopeo", "skopeo");
    let store = in_memory();
    let server = TestServer::start_on(Arc::new(ObjectStorage::new(Arc::clone(&store), "")));
    let pushed = fixtures::push_all(&server.host()).unwrap();
    let out = tempfile::tempdir().unwrap();
    for name in [
        FixtureName::BusyboxOci,
        FixtureName::Multiarch,
        FixtureName::Multilayer,
    ] {
        let reference = pushed.get(name);
        let digest = remote_digest(reference);
        let (layout, tag) = fixtures::layout(name).unwrap();
        if !name.is_docker() {
            assert_eq!(digest, layout_digest(&layout, &tag), "{reference}");
        }
        let copy = out.path().join(format!("{name:?}"));
        skopeo_copy(
            &format!("docker://{reference}"),
            &format!("dir:{}", copy.display()),
            true,
        );
        let m = std::fs::read(copy.join("manifest.json")).unwrap();
        assert_eq!(Digest::sha256_of(&m), digest, "{reference}");
    }
}

#[test]
fn fs_storage_leaves_no_temp_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    push_image(&base, "a/b", "v1", "temp");
    // a refused write
    let resp = client()
        .post(format!(
            "{base}/v2/a/b/blobs/uploads/?digest={}",
            Digest::sha256_of(b"x")
        ))
        .body("y")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    drop(server);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn fs_storage_removes_temp_files_a_crash_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let old = tmp.join("crashed.tmp");
    let recent = tmp.join("in-flight.tmp");
    for p in [&old, &recent] {
        std::fs::write(p, b"partial").unwrap();
    }
    let two_days = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(FsStorage::open(dir.path())).unwrap();
    assert!(!old.exists(), "a stale temp file survived");
    assert!(recent.exists(), "a temp file in use was removed");
}

// ---------------------------------------------------------------------------- raw HTTP, spec

#[test]
fn base_endpoint_says_registry_2_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let resp = client()
        .get(format!("{}/v2/", server.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    // HTTP/2 without TLS (prior knowledge), as h2c clients speak it
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(format!("{}/v2/", server.url())).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let resp = client()
        .get(format!("{}/v2/a/nothing/here", server.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
}

#[test]
fn chunked_upload_commits_a_verified_blob() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    let data = b"0123456789abcdefghij";
    let digest = Digest::sha256_of(data);

    let resp = c
        .post(format!("{base}/v2/lib/x/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
    assert!(header(&resp, "docker-upload-uuid").is_some());
    let loc = header(&resp, "location").unwrap();
    assert!(loc.starts_with("/v2/lib/x/blobs/uploads/"), "{loc}");

    let resp = c
        .patch(format!("{base}{loc}"))
        .header("content-range", "0-9")
        .header("content-type", "application/octet-stream")
        .body(data[..10].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-9"));
    let loc = header(&resp, "location").unwrap();

    let resp = c.get(format!("{base}{loc}")).send().unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-9"));

    // the last chunk rides on the PUT
    let resp = c
        .put(format!("{base}{loc}?digest={digest}"))
        .header("content-range", "10-19")
        .body(data[10..].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(digest.to_string())
    );
    assert_eq!(
        header(&resp, "location"),
        Some(format!("/v2/lib/x/blobs/{digest}"))
    );

    let resp = c
        .head(format!("{base}/v2/lib/x/blobs/{digest}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("20"));
    assert_eq!(
        header(&resp, "docker-content-digest"),
        Some(digest.to_string())
    );
    let body = c
        .get(format!("{base}/v2/lib/x/blobs/{digest}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&body[..], data);

    // the session is over
    assert_eq!(c.get(format!("{base}{loc}")).send().unwrap().status(), 404);
}

#[test]
fn digest_mismatch_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    let claimed = Digest::sha256_of(b"what the client claims");

    // monolithic
    let resp = c
        .post(format!("{base}/v2/r/blobs/uploads/?digest={claimed}"))
        .body("something else")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp), "DIGEST_INVALID");
    assert_eq!(
        c.head(format!("{base}/v2/r/blobs/{claimed}"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // chunked
    let resp = c
        .post(format!("{base}/v2/r/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = header(&resp, "location").unwrap();
    c.patch(format!("{base}{loc}"))
        .body("something else")
        .send()
        .unwrap();
    let resp = c
        .put(format!("{base}{loc}?digest={claimed}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp), "DIGEST_INVALID");
    assert_eq!(
        c.head(format!("{base}/v2/r/blobs/{claimed}"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(c.get(format!("{base}{loc}")).send().unwrap().status(), 404);
    let blobs = dir.path().join("objects/blobs");
    assert!(
        !blobs.exists() || walk_count(&blobs) == 0,
        "a blob was stored"
    );

    // a digest that does not parse
    let resp = c
        .post(format!("{base}/v2/r/blobs/uploads/?digest=sha256:nothex"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp), "DIGEST_INVALID");
}

fn walk_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn out_of_order_chunk_is_416() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    let resp = c
        .post(format!("{base}/v2/r/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = header(&resp, "location").unwrap();
    let resp = c
        .patch(format!("{base}{loc}"))
        .header("content-range", "5-9")
        .body("56789")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
    assert_eq!(error_code(resp), "BLOB_UPLOAD_INVALID");
    // a big chunk refused is still answered (not cut off while the client sends it)
    for _ in 0..3 {
        let resp = c
            .patch(format!("{base}{loc}"))
            .header(
                "content-range",
                format!("100-{}", 100 + 8 * 1024 * 1024 - 1),
            )
            .body(vec![7u8; 8 * 1024 * 1024])
            .send()
            .unwrap();
        assert_eq!(resp.status(), 416);
    }
    // in order it is accepted, and a repeat of the same chunk is out of order again
    let ok = c
        .patch(format!("{base}{loc}"))
        .header("content-range", "0-4")
        .body("01234")
        .send()
        .unwrap();
    assert_eq!(ok.status(), 202);
    let again = c
        .patch(format!("{base}{loc}"))
        .header("content-range", "0-4")
        .body("01234")
        .send()
        .unwrap();
    assert_eq!(again.status(), 416);
    assert_eq!(header(&again, "range").as_deref(), Some("0-4"));
    // Content-Length must agree with Content-Range
    let resp = c
        .patch(format!("{base}{loc}"))
        .header("content-range", "5-9")
        .body("56")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 416);
    // unknown sessions
    let resp = c
        .patch(format!("{base}/v2/r/blobs/uploads/{}", "0".repeat(32)))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "BLOB_UPLOAD_UNKNOWN");
    // a session belongs to its repository
    let other = loc.replace("/v2/r/", "/v2/other/");
    assert_eq!(
        c.get(format!("{base}{other}")).send().unwrap().status(),
        404
    );
    // cancelled sessions are gone
    assert_eq!(
        c.delete(format!("{base}{loc}")).send().unwrap().status(),
        204
    );
    assert_eq!(c.get(format!("{base}{loc}")).send().unwrap().status(), 404);
}

#[test]
fn bad_repository_names_are_name_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    for name in [
        "UPPER",
        "a..b",
        "a/_uploads",
        "-a",
        "a__-b",
        "a/",
        &"a".repeat(256),
    ] {
        let resp = client()
            .get(format!("{base}/v2/{name}/tags/list"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 400, "{name}");
        assert_eq!(error_code(resp), "NAME_INVALID", "{name}");
    }
    // dot segments sent as they are, not normalised away by a client library
    assert_eq!(
        raw_status(server.addr, "GET", "/v2/../etc/manifests/latest"),
        400
    );
    assert_eq!(
        raw_status(server.addr, "POST", "/v2/a/../../b/blobs/uploads/"),
        400
    );
    assert_eq!(
        raw_status(server.addr, "GET", "/v2/a/%2e%2e/b/tags/list"),
        400
    );
}

#[test]
fn oversized_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let config = b"{}";
    push_blob(&base, "big", config);
    // a valid manifest padded with annotations past 4 MiB
    let mut m: serde_json::Value = serde_json::from_slice(&image_manifest(config, &[])).unwrap();
    m["annotations"] = serde_json::json!({ "pad": "x".repeat(4 * 1024 * 1024) });
    let body = serde_json::to_vec(&m).unwrap();
    let resp = put_manifest(&base, "big", "latest", mt::OCI_MANIFEST, &body);
    assert_eq!(resp.status(), 413);
    assert_eq!(error_code(resp), "SIZE_INVALID");
    let resp = client()
        .get(format!("{base}/v2/big/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "MANIFEST_UNKNOWN");
    // the same manifest without the padding is fine
    let resp = put_manifest(
        &base,
        "big",
        "latest",
        mt::OCI_MANIFEST,
        &image_manifest(config, &[]),
    );
    assert_eq!(resp.status(), 201);
}

#[test]
fn manifest_with_missing_blob_or_unknown_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let config = b"{\"os\":\"linux\"}";
    push_blob(&base, "m", config);
    let m = image_manifest(config, &[b"never pushed"]);
    let resp = put_manifest(&base, "m", "latest", mt::OCI_MANIFEST, &m);
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp), "MANIFEST_BLOB_UNKNOWN");
    // a blob of another repository does not count
    push_blob(&base, "other", b"never pushed");
    let resp = put_manifest(&base, "m", "latest", mt::OCI_MANIFEST, &m);
    assert_eq!(error_code(resp), "MANIFEST_BLOB_UNKNOWN");
    // an index whose child manifest is missing
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": [desc(mt::OCI_MANIFEST, b"not a pushed manifest")],
    }))
    .unwrap();
    let resp = put_manifest(&base, "m", "idx", mt::OCI_INDEX, &index);
    assert_eq!(error_code(resp), "MANIFEST_BLOB_UNKNOWN");
    // unknown media type, schema 1, garbage
    let resp = put_manifest(
        &base,
        "m",
        "x",
        "application/vnd.example.thing+json",
        &image_manifest(config, &[]),
    );
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp), "MANIFEST_INVALID");
    let resp = put_manifest(
        &base,
        "m",
        "x",
        mt::DOCKER_SCHEMA1_SIGNED,
        br#"{"schemaVersion":1,"fsLayers":[]}"#,
    );
    assert_eq!(error_code(resp), "MANIFEST_INVALID");
    let resp = put_manifest(&base, "m", "x", mt::OCI_MANIFEST, b"{not json");
    assert_eq!(error_code(resp), "MANIFEST_INVALID");
    // by digest: the body must have that digest
    let good = image_manifest(config, &[]);
    let wrong = Digest::sha256_of(b"other");
    let resp = put_manifest(&base, "m", &wrong.to_string(), mt::OCI_MANIFEST, &good);
    assert_eq!(error_code(resp), "DIGEST_INVALID");
    let right = Digest::sha256_of(&good);
    let resp = put_manifest(&base, "m", &right.to_string(), mt::OCI_MANIFEST, &good);
    assert_eq!(resp.status(), 201);
    let resp = client()
        .get(format!("{base}/v2/m/manifests/{right}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(mt::OCI_MANIFEST)
    );
    assert_eq!(&resp.bytes().unwrap()[..], &good[..]);
}

#[test]
fn range_requests_get_206() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let d = push_blob(&base, "r", b"0123456789");
    let url = format!("{base}/v2/r/blobs/{d}");
    let get = |range: &str| client().get(&url).header("range", range).send().unwrap();
    let resp = get("bytes=2-5");
    assert_eq!(resp.status(), 206);
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some("bytes 2-5/10")
    );
    assert_eq!(header(&resp, "content-length").as_deref(), Some("4"));
    assert_eq!(&resp.bytes().unwrap()[..], b"2345");
    let resp = get("bytes=7-");
    assert_eq!(resp.status(), 206);
    assert_eq!(&resp.bytes().unwrap()[..], b"789");
    let resp = get("bytes=-3");
    assert_eq!(&resp.bytes().unwrap()[..], b"789");
    let resp = get("bytes=10-");
    assert_eq!(resp.status(), 416);
    assert_eq!(
        header(&resp, "content-range").as_deref(),
        Some("bytes */10")
    );
    let resp = client().get(&url).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "accept-ranges").as_deref(), Some("bytes"));
}

#[test]
fn tags_list_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let m = push_image(&base, "t", "v0", "tags");
    let mut want = vec!["v0".to_string()];
    for t in ["b", "a", "Z", "v10", "v2", "_x"] {
        assert_eq!(
            put_manifest(&base, "t", t, mt::OCI_MANIFEST, &m).status(),
            201
        );
        want.push(t.to_string());
    }
    want.sort();
    let all: serde_json::Value = client()
        .get(format!("{base}/v2/t/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(all["name"], "t");
    assert_eq!(all["tags"], serde_json::json!(want));

    let mut got = Vec::new();
    let mut next = Some("/v2/t/tags/list?n=3".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let resp = client().get(format!("{base}{path}")).send().unwrap();
        assert_eq!(resp.status(), 200);
        next = header(&resp, "link").map(|l| {
            let inner = l.split(['<', '>']).nth(1).unwrap().to_string();
            assert!(l.ends_with("rel=\"next\""), "{l}");
            inner
        });
        let page: serde_json::Value = resp.json().unwrap();
        let tags = page["tags"].as_array().unwrap();
        assert!(tags.len() <= 3);
        got.extend(tags.iter().map(|t| t.as_str().unwrap().to_string()));
        pages += 1;
    }
    assert_eq!(got, want);
    assert_eq!(pages, 3);
    let resp = client()
        .get(format!("{base}/v2/t/tags/list?n=2&last=v0"))
        .send()
        .unwrap();
    let page: serde_json::Value = resp.json().unwrap();
    assert_eq!(page["tags"], serde_json::json!(["v10", "v2"]));
    let resp = client()
        .get(format!("{base}/v2/t/tags/list?n=0"))
        .send()
        .unwrap();
    assert_eq!(
        resp.json::<serde_json::Value>().unwrap()["tags"],
        serde_json::json!([])
    );
    let resp = client()
        .get(format!("{base}/v2/t/tags/list?n=x"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .get(format!("{base}/v2/nothere/tags/list"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "NAME_UNKNOWN");
}

#[test]
fn catalog_lists_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let repos = ["c", "a/b", "a", "b/x/y", "a/b/c"];
    for r in repos {
        push_image(&base, r, "latest", r);
    }
    let all: serde_json::Value = client()
        .get(format!("{base}/v2/_catalog"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let all: Vec<String> = all["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut sorted: Vec<String> = repos.iter().map(|r| r.to_string()).collect();
    sorted.sort();
    assert_eq!(all, sorted);
    let mut got = Vec::new();
    let mut next = Some("/v2/_catalog?n=2".to_string());
    while let Some(path) = next {
        let resp = client().get(format!("{base}{path}")).send().unwrap();
        next = header(&resp, "link").map(|l| l.split(['<', '>']).nth(1).unwrap().to_string());
        let page: serde_json::Value = resp.json().unwrap();
        got.extend(
            page["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(got, all);
}

#[test]
fn referrers_are_listed_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let subject = push_image(&base, "app", "v1", "subject");
    let subject_desc = desc(mt::OCI_MANIFEST, &subject);
    let subject_digest = Digest::sha256_of(&subject);
    push_blob(&base, "app", b"{}");
    let mut pushed = Vec::new();
    for (kind, payload) in [
        ("application/vnd.example.sbom", &b"sbom"[..]),
        ("application/vnd.example.sig", b"signature"),
        ("application/vnd.example.sbom", b"sbom 2"),
    ] {
        push_blob(&base, "app", payload);
        let m = artifact_manifest(kind, &subject_desc, payload);
        let d = Digest::sha256_of(&m);
        let resp = put_manifest(&base, "app", &d.to_string(), mt::OCI_MANIFEST, &m);
        assert_eq!(resp.status(), 201);
        assert_eq!(
            header(&resp, "oci-subject"),
            Some(subject_digest.to_string())
        );
        pushed.push((kind, d));
    }
    let url = format!("{base}/v2/app/referrers/{subject_digest}");
    let resp = client().get(&url).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(mt::OCI_INDEX)
    );
    assert!(header(&resp, "oci-filters-applied").is_none());
    let index: serde_json::Value = resp.json().unwrap();
    let list = index["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for (kind, d) in &pushed {
        let entry = list.iter().find(|e| e["digest"] == d.to_string()).unwrap();
        assert_eq!(entry["artifactType"], *kind);
        assert_eq!(entry["mediaType"], mt::OCI_MANIFEST);
        assert_eq!(entry["annotations"]["org.example.kind"], *kind);
    }
    let resp = client()
        .get(format!("{url}?artifactType=application%2Fvnd.example.sbom"))
        .send()
        .unwrap();
    assert_eq!(
        header(&resp, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let index: serde_json::Value = resp.json().unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    // no referrers: an empty index, not a 404
    let other = Digest::sha256_of(b"nothing refers to this");
    let resp = client()
        .get(format!("{base}/v2/app/referrers/{other}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().unwrap()["manifests"],
        serde_json::json!([])
    );
    // deleting a referrer removes it from the list
    let (_, first) = &pushed[0];
    assert_eq!(
        client()
            .delete(format!("{base}/v2/app/manifests/{first}"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let index: serde_json::Value = client().get(&url).send().unwrap().json().unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let resp = client()
        .get(format!("{base}/v2/app/referrers/sha256:bad"))
        .send()
        .unwrap();
    assert_eq!(error_code(resp), "DIGEST_INVALID");
}

#[test]
fn deletes_remove_tags_manifests_and_blob_links() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    let m = push_image(&base, "d", "one", "delete");
    assert_eq!(
        put_manifest(&base, "d", "two", mt::OCI_MANIFEST, &m).status(),
        201
    );
    let d = Digest::sha256_of(&m);
    // a tag
    assert_eq!(
        c.delete(format!("{base}/v2/d/manifests/one"))
            .send()
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        c.get(format!("{base}/v2/d/manifests/one"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("{base}/v2/d/manifests/two"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.delete(format!("{base}/v2/d/manifests/one"))
            .send()
            .unwrap()
            .status(),
        404
    );
    // the manifest, and the tags naming it
    assert_eq!(
        c.delete(format!("{base}/v2/d/manifests/{d}"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let resp = c.get(format!("{base}/v2/d/manifests/{d}")).send().unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "MANIFEST_UNKNOWN");
    assert_eq!(
        c.head(format!("{base}/v2/d/manifests/two"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let tags: serde_json::Value = c
        .get(format!("{base}/v2/d/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
    // a blob
    let layer = Digest::sha256_of(b"layer of delete");
    assert_eq!(
        c.head(format!("{base}/v2/d/blobs/{layer}"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.delete(format!("{base}/v2/d/blobs/{layer}"))
            .send()
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        c.head(format!("{base}/v2/d/blobs/{layer}"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let resp = c
        .delete(format!("{base}/v2/d/blobs/{layer}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp), "BLOB_UNKNOWN");
}

#[test]
fn blobs_are_served_only_to_repositories_holding_them_and_mount_across() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    let d = push_blob(&base, "src", b"shared layer");
    assert_eq!(
        c.get(format!("{base}/v2/dst/blobs/{d}"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let resp = c
        .post(format!("{base}/v2/dst/blobs/uploads/?mount={d}&from=src"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        header(&resp, "location"),
        Some(format!("/v2/dst/blobs/{d}"))
    );
    assert_eq!(header(&resp, "docker-content-digest"), Some(d.to_string()));
    let body = c
        .get(format!("{base}/v2/dst/blobs/{d}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&body[..], b"shared layer");
    // a repository that does not hold it cannot lend it: a session starts instead
    let resp = c
        .post(format!(
            "{base}/v2/third/blobs/uploads/?mount={d}&from=nobody"
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(
        header(&resp, "location")
            .unwrap()
            .starts_with("/v2/third/blobs/uploads/")
    );
    assert_eq!(
        c.get(format!("{base}/v2/third/blobs/{d}"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn upload_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let first = TestServer::start(dir.path());
    let c = client();
    let resp = c
        .post(format!("{}/v2/resume/me/blobs/uploads/", first.url()))
        .send()
        .unwrap();
    let loc = header(&resp, "location").unwrap();
    let resp = c
        .patch(format!("{}{loc}", first.url()))
        .header("content-range", format!("0-{}", 1024 * 1024 - 1))
        .body(data[..1024 * 1024].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    first.stop();

    let second = TestServer::start(dir.path());
    let base = second.url();
    let resp = c.get(format!("{base}{loc}")).send().unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        header(&resp, "range"),
        Some(format!("0-{}", 1024 * 1024 - 1))
    );
    let resp = c
        .patch(format!("{base}{loc}"))
        .header(
            "content-range",
            format!("{}-{}", 1024 * 1024, 2 * 1024 * 1024 - 1),
        )
        .body(data[1024 * 1024..2 * 1024 * 1024].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = c
        .put(format!("{base}{loc}?digest={digest}"))
        .body(data[2 * 1024 * 1024..].to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text());
    let body = c
        .get(format!("{base}/v2/resume/me/blobs/{digest}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(
        body[..] == data[..],
        "content differs after a resumed upload"
    );
}

#[test]
fn read_only_mode_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let writable = TestServer::start(dir.path());
    push_image(&writable.url(), "ro", "v1", "ro");
    writable.stop();
    let server = TestServer::start_with(
        dir.path(),
        RegistryConfig {
            read_only: true,
            ..RegistryConfig::default()
        },
    );
    let base = server.url();
    assert_eq!(
        client()
            .get(format!("{base}/v2/ro/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let resp = client()
        .post(format!("{base}/v2/ro/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(error_code(resp), "UNSUPPORTED");
    let resp = client()
        .delete(format!("{base}/v2/ro/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
}

fn auth_server(dir: &std::path::Path) -> TestServer {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let htpasswd = Htpasswd::parse(&format!("# test users\nalice:{hash}\n")).unwrap();
    TestServer::start_full(
        dir,
        RegistryConfig::default(),
        Some(BasicAuth::new("hull-test", htpasswd)),
    )
}

#[test]
fn basic_auth_guards_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path());
    let base = server.url();
    for path in [
        "/v2/",
        "/v2/_catalog",
        "/v2/a/tags/list",
        "/v2/a/manifests/latest",
    ] {
        let resp = client().get(format!("{base}{path}")).send().unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            header(&resp, "www-authenticate").as_deref(),
            Some("Basic realm=\"hull-test\""),
            "{path}"
        );
        assert_eq!(error_code(resp), "UNAUTHORIZED");
    }
    let wrong = client()
        .get(format!("{base}/v2/"))
        .basic_auth("alice", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let nobody = client()
        .get(format!("{base}/v2/"))
        .basic_auth("bob", Some("s3cret"))
        .send()
        .unwrap();
    assert_eq!(nobody.status(), 401);
    let ok = client()
        .get(format!("{base}/v2/"))
        .basic_auth("alice", Some("s3cret"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let d = Digest::sha256_of(b"guarded");
    let resp = client()
        .post(format!("{base}/v2/a/blobs/uploads/?digest={d}"))
        .body("guarded")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(format!("{base}/v2/a/blobs/uploads/?digest={d}"))
        .basic_auth("alice", Some("s3cret"))
        .body("guarded")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[test]
fn skopeo_pushes_and_pulls_with_credentials() {
    hull_test::require_bin!("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path());
    let (layout, tag) = fixtures::layout(FixtureName::BusyboxOci).unwrap();
    let dest = format!("{}/private/busybox:{tag}", server.host());
    let mut push = hull_test::peers::skopeo();
    push.args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ])
    .args(["--dest-creds", "alice:s3cret"])
    .arg(format!("oci:{}:{tag}", layout.display()))
    .arg(format!("docker://{dest}"));
    hull_test::peers::run(&mut push).unwrap();
    let mut anonymous = hull_test::peers::skopeo();
    anonymous
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{dest}"));
    let err = hull_test::peers::run(&mut anonymous)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    let mut inspect = hull_test::peers::skopeo();
    inspect
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
        ])
        .arg(format!("docker://{dest}"));
    let raw = hull_test::peers::run(&mut inspect).unwrap();
    assert_eq!(
        Digest::sha256_of(raw.as_bytes()),
        layout_digest(&layout, &tag)
    );
}

/// A test CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files in `dir`:
/// `(ca, chain, key)`.
fn test_pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hull test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let leaf = params
        .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let (ca_path, chain, key_path) = (
        dir.join("ca.pem"),
        dir.join("chain.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, chain, key_path)
}

#[test]
fn tls_serves_clients_that_trust_the_certificate() {
    hull_test::require_bin!("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(certs.path());
    let tls = hull_registry::tls::server_config(&cert, &key).unwrap();
    let server = TestServer::start_tls(dir.path(), tls);
    let base = format!("https://{}", server.host());
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let resp = trusting.get(format!("{base}/v2/")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    // a client that does not trust it fails the handshake, and plain http is not spoken
    assert!(client().get(format!("{base}/v2/")).send().is_err());
    assert!(
        client()
            .get(format!("{}/v2/", server.url()))
            .send()
            .is_err()
    );
    // skopeo with the CA as its trust root
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let (layout, tag) = fixtures::layout(FixtureName::BusyboxOci).unwrap();
    let mut push = hull_test::peers::skopeo();
    push.args(["copy", "--quiet", "--preserve-digests", "--dest-cert-dir"])
        .arg(certs.path())
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{}/tls/busybox:{tag}", server.host()));
    hull_test::peers::run(&mut push).unwrap();
    let resp = trusting
        .get(format!("{base}/v2/tls/busybox/manifests/{tag}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        Digest::sha256_of(&resp.bytes().unwrap()),
        layout_digest(&layout, &tag)
    );
    // bad files are reported with their paths
    let err = hull_registry::tls::server_config(&key, &key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("key.pem"), "{err}");
}

fn gc(dir: &std::path::Path, opts: &GcOptions) -> GcReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let storage = FsStorage::open(dir).await.unwrap();
        gc::collect(&storage, opts).await.unwrap()
    })
}

#[test]
fn garbage_collection_removes_only_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    let shared = push_image(&base, "gc/a", "v1", "shared");
    push_image(&base, "gc/b", "v1", "shared");
    let only = push_image(&base, "gc/a", "v2", "only-a");
    let orphan = push_blob(&base, "gc/a", b"never referenced");
    let only_digest = Digest::sha256_of(&only);
    let status = c
        .delete(format!("{base}/v2/gc/a/manifests/{only_digest}"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let shared_digest = Digest::sha256_of(&shared);
    assert_eq!(
        c.delete(format!("{base}/v2/gc/a/manifests/{shared_digest}"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let upload = header(
        &c.post(format!("{base}/v2/gc/a/blobs/uploads/"))
            .send()
            .unwrap(),
        "location",
    )
    .unwrap();

    // within the grace period nothing goes
    let report = gc(dir.path(), &GcOptions::default());
    assert!(report.blobs_deleted.is_empty(), "{report:?}");
    assert_eq!(report.uploads_aborted, 0);

    let garbage: std::collections::BTreeSet<Digest> = [
        only_digest.clone(),
        Digest::sha256_of(b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"only-a\"}"),
        Digest::sha256_of(b"layer of only-a"),
        orphan.clone(),
    ]
    .into();
    let now = GcOptions {
        grace: Duration::ZERO,
        upload_ttl: Duration::ZERO,
        dry_run: true,
        keep_untagged: false,
    };
    let report = gc(dir.path(), &now);
    assert_eq!(
        report
            .blobs_deleted
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        garbage
    );
    assert_eq!(report.uploads_aborted, 1);
    // a dry run deletes nothing
    assert_eq!(
        c.head(format!("{base}/v2/gc/a/blobs/{orphan}"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{base}{upload}")).send().unwrap().status(),
        204
    );

    let report = gc(
        dir.path(),
        &GcOptions {
            dry_run: false,
            ..now
        },
    );
    assert_eq!(report.blobs_deleted.len(), garbage.len(), "{report:?}");
    assert!(report.bytes_freed > 0);
    assert_eq!(
        report.links_deleted, 3,
        "orphan and only-a's config and layer links: {report:?}"
    );
    assert_eq!(
        c.head(format!("{base}/v2/gc/a/blobs/{orphan}"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("{base}{upload}")).send().unwrap().status(),
        404
    );
    // what another repository still holds is intact, in both repositories' blob links
    let resp = c
        .get(format!("{base}/v2/gc/b/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(&resp.bytes().unwrap()[..], &shared[..]);
    for repo in ["gc/a", "gc/b"] {
        let d = Digest::sha256_of(b"layer of shared");
        assert_eq!(
            c.head(format!("{base}/v2/{repo}/blobs/{d}"))
                .send()
                .unwrap()
                .status(),
            200,
            "{repo}"
        );
    }
    // a second run finds nothing more
    let report = gc(
        dir.path(),
        &GcOptions {
            dry_run: false,
            ..now
        },
    );
    assert!(report.blobs_deleted.is_empty(), "{report:?}");
}

#[test]
fn garbage_collection_removes_untagged_manifests_but_keeps_what_tags_reach() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let c = client();
    // an index whose children are pushed by digest only, tagged
    let amd = push_image(&base, "gc/multi", "tmp-amd", "amd");
    let arm = push_image(&base, "gc/multi", "tmp-arm", "arm");
    for t in ["tmp-amd", "tmp-arm"] {
        let status = c
            .delete(format!("{base}/v2/gc/multi/manifests/{t}"))
            .send()
            .unwrap()
            .status();
        assert_eq!(status, 202, "untagging {t}");
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": [desc(mt::OCI_MANIFEST, &amd), desc(mt::OCI_MANIFEST, &arm)],
    }))
    .unwrap();
    assert_eq!(
        put_manifest(&base, "gc/multi", "v1", mt::OCI_INDEX, &index).status(),
        201
    );
    // a signature-like referrer of the index, pushed by digest only
    let sig = artifact_manifest(
        "application/vnd.example.signature",
        &desc(mt::OCI_INDEX, &index),
        b"signature bytes",
    );
    push_blob(&base, "gc/multi", b"signature bytes");
    push_blob(&base, "gc/multi", b"{}");
    let sig_digest = Digest::sha256_of(&sig);
    assert_eq!(
        put_manifest(
            &base,
            "gc/multi",
            &sig_digest.to_string(),
            mt::OCI_MANIFEST,
            &sig
        )
        .status(),
        201
    );
    // an untagged image nothing refers to
    let lone = push_image(&base, "gc/multi", "tmp-lone", "lone");
    let lone_digest = Digest::sha256_of(&lone);
    assert_eq!(
        c.delete(format!("{base}/v2/gc/multi/manifests/tmp-lone"))
            .send()
            .unwrap()
            .status(),
        202
    );

    let now = GcOptions {
        grace: Duration::ZERO,
        upload_ttl: Duration::ZERO,
        dry_run: false,
        keep_untagged: false,
    };
    // keeping untagged manifests removes none
    let kept = gc(
        dir.path(),
        &GcOptions {
            keep_untagged: true,
            dry_run: true,
            ..now.clone()
        },
    );
    assert!(kept.manifests_deleted.is_empty(), "{kept:?}");
    let report = gc(dir.path(), &now);
    assert_eq!(
        report.manifests_deleted,
        vec![format!("gc/multi@{lone_digest}")],
        "{report:?}"
    );
    assert_eq!(
        report.manifests, 4,
        "index, two children, signature: {report:?}"
    );
    let status = |path: String| {
        c.head(format!("{base}/v2/gc/multi/{path}"))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(status(format!("manifests/{lone_digest}")), 404);
    assert_eq!(
        status(format!("blobs/{}", Digest::sha256_of(b"layer of lone"))),
        404
    );
    for m in [&amd, &arm, &index, &sig] {
        assert_eq!(status(format!("manifests/{}", Digest::sha256_of(m))), 200);
    }
    for seed in ["amd", "arm"] {
        let layer = format!("layer of {seed}");
        assert_eq!(
            status(format!("blobs/{}", Digest::sha256_of(layer.as_bytes()))),
            200,
            "{seed}"
        );
    }
    assert_eq!(
        status(format!("blobs/{}", Digest::sha256_of(b"signature bytes"))),
        200
    );
    // the referrers API still lists the signature
    let index_digest = Digest::sha256_of(&index);
    let refs: serde_json::Value = c
        .get(format!("{base}/v2/gc/multi/referrers/{index_digest}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        refs["manifests"][0]["digest"],
        sig_digest.to_string(),
        "{refs}"
    );

    // untagging the index lets everything go
    assert_eq!(
        c.delete(format!("{base}/v2/gc/multi/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let report = gc(dir.path(), &now);
    assert_eq!(report.manifests_deleted.len(), 4, "{report:?}");
    assert_eq!(status(format!("manifests/{index_digest}")), 404);
    assert_eq!(
        status(format!("blobs/{}", Digest::sha256_of(b"layer of amd"))),
        404
    );
    let refs: serde_json::Value = c
        .get(format!("{base}/v2/gc/multi/referrers/{index_digest}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(refs["manifests"], serde_json::json!([]), "{refs}");
}

// ------------------------------------------------------------------------------- real clients

#[test]
fn skopeo_pushes_every_fixture_and_copies_back_identical_digests() {
    hull_test::require_bin!("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let pushed = fixtures::push_all(&server.host()).unwrap();
    let out = tempfile::tempdir().unwrap();
    for name in FixtureName::ALL {
        let reference = pushed.get(name);
        let digest = remote_digest(reference);
        let (layout, tag) = fixtures::layout(name).unwrap();
        if !name.is_docker() {
            // pushed with --preserve-digests: byte for byte what the layout holds
            assert_eq!(digest, layout_digest(&layout, &tag), "{reference}");
        }
        let head = client()
            .head(format!(
                "{}/v2/{}/manifests/{}",
                server.url(),
                name.repository_tag().0,
                name.repository_tag().1
            ))
            .header("accept", mt::MANIFEST_ACCEPT.join(", "))
            .send()
            .unwrap();
        assert_eq!(
            header(&head, "docker-content-digest"),
            Some(digest.to_string()),
            "{reference}"
        );
        // served with the media type it was pushed with
        let want_type = match name {
            _ if name.is_docker() => mt::DOCKER_MANIFEST,
            FixtureName::Multiarch => mt::OCI_INDEX,
            _ => mt::OCI_MANIFEST,
        };
        assert_eq!(
            header(&head, "content-type").as_deref(),
            Some(want_type),
            "{reference}"
        );
        // and back out: the manifest keeps its digest
        let copy = out.path().join(format!("{name:?}"));
        if name.is_docker() {
            skopeo_copy(
                &format!("docker://{reference}"),
                &format!("dir:{}", copy.display()),
                true,
            );
            let m = std::fs::read(copy.join("manifest.json")).unwrap();
            assert_eq!(Digest::sha256_of(&m), digest, "{reference}");
        } else {
            skopeo_copy(
                &format!("docker://{reference}"),
                &format!("oci:{}:{tag}", copy.display()),
                true,
            );
            assert_eq!(layout_digest(&copy, &tag), digest, "{reference}");
        }
    }
}

#[test]
fn every_fixture_round_trips_between_a_cncf_registry_and_hull() {
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("docker-registry", "docker-registry");
    let cncf = {
        let _ports = ports_exclusive();
        hull_test::registry::TestRegistry::start().unwrap()
    };
    let pushed = fixtures::push_all(&cncf.host()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for name in FixtureName::ALL {
        let src = pushed.get(name);
        let want = remote_digest(src);
        let (repo, tag) = name.repository_tag();
        let mid = format!("{}/copied/{repo}:{tag}", server.host());
        skopeo_copy(&format!("docker://{src}"), &format!("docker://{mid}"), true);
        assert_eq!(remote_digest(&mid), want, "{src} -> hull");
        let back = format!("{}/back/{repo}:{tag}", cncf.host());
        skopeo_copy(
            &format!("docker://{mid}"),
            &format!("docker://{back}"),
            true,
        );
        assert_eq!(remote_digest(&back), want, "hull -> {back}");
    }
}

#[test]
fn podman_pulls_from_hull() {
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("podman", "podman");
    hull_test::require_root!();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let pushed = fixtures::push_all(&server.host()).unwrap();
    let store = tempfile::tempdir().unwrap();
    for name in [FixtureName::Busybox, FixtureName::Multiarch] {
        let reference = pushed.get(name);
        let mut pull = hull_test::peers::podman(store.path());
        pull.args(["pull", "--quiet", "--tls-verify=false", reference]);
        hull_test::peers::run(&mut pull).unwrap();
        let mut inspect = hull_test::peers::podman(store.path());
        inspect.args([
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            reference,
        ]);
        let got = hull_test::peers::run(&mut inspect).unwrap();
        // for an index, podman records the index digest among the repo digests
        let want = format!("@{}", remote_digest(reference));
        assert!(got.contains(&want), "{reference}: {got} lacks {want}");
    }
}

// ------------------------------------------------------------------------------ `hull serve`

/// The `hull` binary next to this test's (built by `cargo test --workspace`, or
/// `cargo build -p hull`).
fn hull_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("hull");
    bin.is_file().then_some(bin)
}

/// A `hull serve` process, its address (read from its stderr) and its stderr lines.
struct HullServe {
    child: std::process::Child,
    addr: String,
    lines: Vec<String>,
    rx: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl HullServe {
    /// `hull --root ROOT serve ARGS...`, or `None` (test skipped) without a built binary.
    fn spawn(root: &std::path::Path, args: &[&str]) -> Option<HullServe> {
        let Some(hull) = hull_binary() else {
            let msg = "hull binary not built (cargo build -p hull)";
            assert!(!hull_test::peers::in_ci(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let ports = ports_shared();
        let mut child = Command::new(&hull)
            .arg("--root")
            .arg(root)
            .arg("serve")
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                panic!("hull serve printed no address; stderr: {lines:?}");
            };
            lines.push(line.clone());
            if let Some(a) = line.split("://").nth(1) {
                break a.split_whitespace().next().unwrap().to_string();
            }
        };
        drop(ports);
        Some(HullServe {
            child,
            addr,
            lines,
            rx,
            reader: Some(reader),
        })
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` and returns the exit status and everything printed on stderr.
    fn stop(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.lines.extend(self.rx.try_iter());
        (exit, self.lines.join("\n"))
    }
}

impl Drop for HullServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn hull_serve_runs_logs_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let Some(serve) = HullServe::spawn(root.path(), &["--addr", "127.0.0.1:0"]) else {
        return;
    };
    let base = serve.base();
    push_image(&base, "served/image", "v1", "served");
    let resp = client()
        .get(format!("{base}/v2/served/image/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        root.path().join("registry/objects").is_dir(),
        "data not under <root>/registry"
    );
    let (exit, log) = serve.stop("-TERM");
    assert!(exit.success(), "hull serve exited with {exit}");
    assert!(
        log.contains("\"GET /v2/served/image/manifests/v1\" 200"),
        "no access log line for the GET in:\n{log}"
    );
}

#[test]
fn hull_serve_reads_its_config_file() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("elsewhere");
    let htpasswd = root.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("carol:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    let config = root.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "addr = \"127.0.0.1:0\"\ndata = \"{}\"\nhtpasswd = \"{}\"\ndelete-enabled = false\n",
            data.display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let Some(serve) = HullServe::spawn(root.path(), &["--config", config.to_str().unwrap()]) else {
        return;
    };
    let base = serve.base();
    assert_eq!(
        client().get(format!("{base}/v2/")).send().unwrap().status(),
        401
    );
    let d = Digest::sha256_of(b"configured");
    let resp = client()
        .post(format!("{base}/v2/c/blobs/uploads/?digest={d}"))
        .basic_auth("carol", Some("pw"))
        .body("configured")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = client()
        .delete(format!("{base}/v2/c/blobs/{d}"))
        .basic_auth("carol", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405, "deletes are disabled by the file");
    assert!(
        data.join("objects/blobs").is_dir(),
        "data not in the configured directory"
    );
    assert!(!root.path().join("registry").exists());
    let (exit, _) = serve.stop("-INT");
    assert!(exit.success(), "hull serve exited with {exit} on SIGINT");
}

#[test]
fn hull_serve_speaks_https_with_tls_flags() {
    let root = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(root.path());
    let Some(serve) = HullServe::spawn(
        root.path(),
        &[
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    assert!(
        serve.lines.iter().any(|l| l.contains("https://")),
        "{:?}",
        serve.lines
    );
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let resp = trusting
        .get(format!("https://{}/v2/", serve.addr))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (exit, _) = serve.stop("-TERM");
    assert!(exit.success(), "hull serve exited with {exit}");
}
