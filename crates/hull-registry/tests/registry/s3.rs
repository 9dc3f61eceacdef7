//! The object-store backend on a real S3 server (`s3s-fs` from hull-test): the shared storage
//! suite, skopeo round trips, several registries on one bucket, and the store dying mid-push.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use hull_oci::Digest;
use hull_registry::storage::{ObjectStorage, RegistryStorage, suite};
use hull_registry::{S3Config, layout};
use hull_test::fixtures::{self, FixtureName};
use hull_test::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

use crate::support::*;

fn start_s3() -> Option<S3Server> {
    let bin = hull_test::s3::require()?;
    let _ports = ports_exclusive();
    Some(S3Server::start(&bin).unwrap())
}

fn config(s3: &S3Server, prefix: &str) -> S3Config {
    S3Config {
        bucket: BUCKET.to_string(),
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".to_string()),
        prefix: Some(prefix.to_string()),
        allow_http: true,
        access_key_id: Some(ACCESS_KEY.to_string()),
        secret_access_key: Some(SECRET_KEY.to_string()),
        session_token: None,
        retry_timeout_secs: None,
    }
}

fn storage(s3: &S3Server, prefix: &str) -> Arc<dyn RegistryStorage> {
    Arc::new(ObjectStorage::s3(&config(s3, prefix)).unwrap())
}

/// GETs a blob and checks that what is served hashes to its digest; `None` when it is 404.
fn served_blob(base: &str, repo: &str, d: &Digest) -> Option<Vec<u8>> {
    let resp = client()
        .get(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .unwrap();
    if resp.status() == 404 {
        return None;
    }
    assert_eq!(resp.status(), 200, "GET blob {d}");
    let body = resp.bytes().unwrap().to_vec();
    assert_eq!(&Digest::sha256_of(&body), d, "served blob does not match");
    Some(body)
}

#[test]
fn s3_storage_passes_the_shared_suite() {
    let Some(s3) = start_s3() else { return };
    let config = config(&s3, "suite");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(suite::run(|| {
        let config = config.clone();
        async move {
            let s: Arc<dyn RegistryStorage> = Arc::new(ObjectStorage::s3(&config)?);
            Ok(s)
        }
    }))
    .unwrap();
}

#[test]
fn skopeo_pushes_every_fixture_to_s3_and_copies_back_identical_digests() {
    hull_test::require_bin!("skopeo", "skopeo");
    let Some(s3) = start_s3() else { return };
    let server = TestServer::start_on(storage(&s3, "registry"));
    let pushed = fixtures::push_all(&server.host()).unwrap();
    let out = tempfile::tempdir().unwrap();
    for name in FixtureName::ALL {
        let reference = pushed.get(name);
        let digest = remote_digest(reference);
        let (layout, tag) = fixtures::layout(name).unwrap();
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
            assert_eq!(digest, layout_digest(&layout, &tag), "{reference}");
            skopeo_copy(
                &format!("docker://{reference}"),
                &format!("oci:{}:{tag}", copy.display()),
                true,
            );
            assert_eq!(layout_digest(&copy, &tag), digest, "{reference}");
        }
    }
    // the objects are in the bucket, below the prefix
    assert!(s3.data_dir().join(BUCKET).join("registry/objects").is_dir());
}

#[test]
fn replicas_on_one_bucket_serve_each_others_pushes_and_uploads() {
    hull_test::require_bin!("skopeo", "skopeo");
    let Some(s3) = start_s3() else { return };
    let a = TestServer::start_on(storage(&s3, "shared"));
    let b = TestServer::start_on(storage(&s3, "shared"));

    // pushed through A, pulled through B
    let name = FixtureName::Multiarch;
    let (layout, tag) = fixtures::layout(name).unwrap();
    let (repo, _) = name.repository_tag();
    let on_a = format!("{}/{repo}:{tag}", a.host());
    skopeo_copy(
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{on_a}"),
        true,
    );
    let on_b = format!("{}/{repo}:{tag}", b.host());
    let want = layout_digest(&layout, &tag);
    assert_eq!(remote_digest(&on_b), want);
    let out = tempfile::tempdir().unwrap();
    skopeo_copy(
        &format!("docker://{on_b}"),
        &format!("oci:{}:{tag}", out.path().display()),
        true,
    );
    assert_eq!(layout_digest(out.path(), &tag), want);

    // a chunked upload started on A, continued and finished on B
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    let c = client();
    let start = c
        .post(format!("{}/v2/up/load/blobs/uploads/", a.url()))
        .send()
        .unwrap();
    assert_eq!(start.status(), 202);
    let path = header(&start, "location").unwrap();
    let patch = |base: &str, from: usize, to: usize| {
        c.patch(format!("{base}{path}"))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{}", to - 1))
            .body(data[from..to].to_vec())
            .send()
            .unwrap()
    };
    let first = patch(&a.url(), 0, 100_000);
    assert_eq!(first.status(), 202);
    assert_eq!(header(&first, "range").as_deref(), Some("0-99999"));
    let status = c.get(format!("{}{path}", b.url())).send().unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(header(&status, "range").as_deref(), Some("0-99999"));
    assert_eq!(patch(&b.url(), 100_000, 250_000).status(), 202);
    // the same offset again, through the other replica: the spec's 416, nothing appended
    let again = patch(&a.url(), 100_000, 250_000);
    assert_eq!(again.status(), 416);
    assert_eq!(header(&again, "range").as_deref(), Some("0-249999"));
    let finish = c
        .put(format!("{}{path}?digest={d}", b.url()))
        .header("content-type", "application/octet-stream")
        .header("content-range", "250000-299999")
        .body(data[250_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(finish.status(), 201, "{:?}", finish.text());
    assert_eq!(
        served_blob(&a.url(), "up/load", &d).as_deref(),
        Some(&data[..])
    );
    // the session is gone for both
    assert_eq!(
        c.get(format!("{}{path}", a.url())).send().unwrap().status(),
        404
    );
}

/// A request body of `data` that stops after `pause_at` bytes until told to go on.
struct Paused {
    data: Vec<u8>,
    pos: usize,
    pause_at: usize,
    reached: Option<mpsc::Sender<()>>,
    resume: mpsc::Receiver<()>,
}

impl Read for Paused {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.pause_at
            && let Some(tx) = self.reached.take()
        {
            let _ = tx.send(());
            let _ = self.resume.recv();
        }
        let end = if self.pos < self.pause_at {
            self.pause_at
        } else {
            self.data.len()
        };
        let n = buf.len().min(end - self.pos).min(64 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_push_survives_the_store_dying_and_nothing_half_written_is_served() {
    hull_test::require_bin!("skopeo", "skopeo");
    let Some(mut s3) = start_s3() else { return };
    // requests to the store give up after 3 s: an outage longer than that fails the push
    let server = TestServer::start_on(Arc::new(
        ObjectStorage::s3(&S3Config {
            retry_timeout_secs: Some(3),
            ..config(&s3, "registry")
        })
        .unwrap(),
    ));
    let base = server.url();
    // large enough for a multipart upload (parts of 8 MiB)
    let data: Vec<u8> = (0..20u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let d = Digest::sha256_of(&data);
    let c = client();
    let start = c
        .post(format!("{base}/v2/crash/test/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(start.status(), 202);
    let path = header(&start, "location").unwrap();

    // the whole blob as one chunk, as docker pushes; the store dies halfway through, for
    // longer than the registry retries
    let (reached_tx, reached_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    let body = Paused {
        data: data.clone(),
        pos: 0,
        pause_at: 12 * 1024 * 1024,
        reached: Some(reached_tx),
        resume: resume_rx,
    };
    let len = data.len();
    let url = format!("{base}{path}");
    let push = std::thread::spawn(move || {
        client()
            .patch(url)
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(reqwest::blocking::Body::sized(body, len as u64))
            .timeout(Duration::from_secs(300))
            .send()
            .map(|r| r.status().as_u16())
            .ok()
    });
    reached_rx.recv().unwrap();
    // let the first part reach the store, then kill it
    std::thread::sleep(Duration::from_millis(500));
    s3.stop();
    resume_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    s3.restart().unwrap();
    let patched = push.join().unwrap();

    // nothing half-written is visible, whatever happened to the chunk
    assert_eq!(served_blob(&base, "crash/test", &d), None);
    let status = c.get(format!("{base}{path}")).send().unwrap();
    let finished = if patched == Some(202) {
        // the store's retries carried the chunk through: the upload completes
        assert_eq!(status.status(), 204);
        assert_eq!(header(&status, "range"), Some(format!("0-{}", len - 1)));
        let put = c
            .put(format!("{base}{path}?digest={d}"))
            .header("content-length", "0")
            .send()
            .unwrap();
        put.status() == 201
    } else {
        // the chunk failed cleanly: the session holds nothing of it
        if status.status() == 204 {
            assert_eq!(header(&status, "range").as_deref(), Some("0-0"));
        }
        false
    };
    if !finished {
        // the client's retry: a fresh push of the blob
        assert_eq!(push_blob(&base, "crash/test", &data), d);
    }
    assert_eq!(
        served_blob(&base, "crash/test", &d).map(|b| b.len()),
        Some(len)
    );

    // the store dies during a monolithic push, for less time than the registry retries:
    // refused or complete, never half there
    let other: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
    let od = Digest::sha256_of(&other);
    let (reached_tx, reached_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    let body = Paused {
        data: other.clone(),
        pos: 0,
        pause_at: 9 * 1024 * 1024,
        reached: Some(reached_tx),
        resume: resume_rx,
    };
    let url = format!("{base}/v2/crash/test/blobs/uploads/?digest={od}");
    let push = std::thread::spawn(move || {
        client()
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::sized(body, len as u64))
            .timeout(Duration::from_secs(300))
            .send()
            .map(|r| r.status().as_u16())
            .ok()
    });
    reached_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s3.stop();
    // while the store is away nothing of the blob is served
    resume_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    s3.restart().unwrap();
    let pushed = push.join().unwrap();
    match served_blob(&base, "crash/test", &od) {
        Some(b) => {
            assert_eq!(pushed, Some(201));
            assert_eq!(b.len(), len);
        }
        None => assert_ne!(pushed, Some(201)),
    }
    // no stray objects became blobs: every blob in the bucket matches its name
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = storage(&s3, "registry");
    for digest in [&d, &od] {
        let key = layout::blob(digest).unwrap();
        if let Some(bytes) = rt.block_on(s.get_bytes(&key, 64 << 20)).unwrap() {
            assert_eq!(&Digest::sha256_of(&bytes), digest);
        }
    }

    // and the registry takes new pushes
    let (layout, tag) = fixtures::layout(FixtureName::BusyboxOci).unwrap();
    let dest = format!("{}/after/crash:{tag}", server.host());
    skopeo_copy(
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
        true,
    );
    assert_eq!(remote_digest(&dest), layout_digest(&layout, &tag));
}
