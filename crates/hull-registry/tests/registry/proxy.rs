//! Pull-through cache mode against a CNCF registry as the upstream: skopeo pulls through the
//! mirror, the mirror keeps serving when the upstream is gone, sees moved tags after the TTL,
//! fetches a blob once for concurrent pulls, streams a fetch to the client that started it,
//! refuses pushes and refuses wrong upstream bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hull_oci::{Digest, ParsedManifest};
use hull_registry::storage::ObjectStorage;
use hull_registry::{Proxy, ProxyConfig, Registry, RegistryStorage, layout};
use hull_test::fixtures::{self, FixtureName};
use hull_test::registry::TestRegistry;

use crate::support::*;

/// A registry in pull-through cache mode over in-memory storage, served on loopback.
struct Mirror {
    addr: SocketAddr,
    storage: Arc<dyn RegistryStorage>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Mirror {
    fn start(remote: &str, tag_ttl_secs: u64) -> Mirror {
        let storage: Arc<dyn RegistryStorage> = Arc::new(ObjectStorage::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
        ));
        let proxy = Proxy::new(&ProxyConfig {
            tag_ttl_secs,
            ..ProxyConfig::new(remote)
        })
        .unwrap();
        let registry = Registry::builder(Arc::clone(&storage))
            .proxy(Some(proxy))
            .build();
        let ports = ports_shared();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let stop = async {
                    let _ = stop_rx.await;
                };
                hull_registry::serve(listener, registry.router(), stop)
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        drop(ports);
        Mirror {
            addr,
            storage,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the mirror's storage holds `key`.
    fn holds(&self, key: &hull_registry::storage::Key) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(self.storage.stat(key)).unwrap().is_some()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Pushes `data` as a blob of `repo` to a CNCF registry (POST, then PUT with the body: it does
/// not take single-request pushes); returns its digest.
fn push_blob_to(up: &TestRegistry, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let c = client();
    let start = c
        .post(format!("{}/v2/{repo}/blobs/uploads/", up.url()))
        .send()
        .unwrap();
    assert_eq!(start.status(), 202);
    let location = header(&start, "location").unwrap();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{}{location}", up.url())
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = c
        .put(format!("{url}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "pushing {d}: {:?}", resp.text());
    d
}

fn upstream() -> TestRegistry {
    let _ports = ports_exclusive();
    TestRegistry::start().unwrap()
}

/// How many times the upstream's access log shows `GET <path>`.
fn upstream_gets(up: &TestRegistry, path: &str) -> usize {
    let log = std::fs::read_to_string(up.log_path()).unwrap();
    log.matches(&format!("\"GET {path} ")).count()
}

/// Copies fixture `name` from its layout to `dest` (`HOST/REPO:TAG`).
fn push_fixture(name: FixtureName, dest: &str) -> Digest {
    let (layout, tag) = fixtures::layout(name).unwrap();
    skopeo_copy(
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
        true,
    );
    remote_digest(dest)
}

/// `skopeo copy --all` of `src` into a fresh OCI layout (a `dir:` for Docker manifests, which
/// an OCI layout cannot hold unchanged); the digest of what landed there.
fn pull(src: &str, docker: bool) -> Digest {
    let out = tempfile::tempdir().unwrap();
    if docker {
        skopeo_copy(
            &format!("docker://{src}"),
            &format!("dir:{}", out.path().display()),
            true,
        );
        return Digest::sha256_of(&std::fs::read(out.path().join("manifest.json")).unwrap());
    }
    skopeo_copy(
        &format!("docker://{src}"),
        &format!("oci:{}:t", out.path().display()),
        true,
    );
    layout_digest(out.path(), "t")
}

#[test]
fn skopeo_pulls_through_the_mirror_which_keeps_serving_without_its_upstream() {
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("docker-registry", "docker-registry");
    let up = upstream();
    let pushed = fixtures::push_all(&up.host()).unwrap();
    // TTL 0: every pull by tag asks the upstream, so the fallback below is exercised
    let mirror = Mirror::start(&up.url(), 0);
    let mut pulled = Vec::new();
    for name in FixtureName::ALL {
        let (repo, tag) = name.repository_tag();
        let want = remote_digest(pushed.get(name));
        let through = format!("{}/{repo}:{tag}", mirror.host());
        assert_eq!(remote_digest(&through), want, "{through}");
        assert_eq!(pull(&through, name.is_docker()), want, "{through}");
        pulled.push((repo, tag, want, name.is_docker()));
    }

    // the cache holds every manifest, config and layer, byte for byte
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (repo, _, d, _) in &pulled {
        let name = hull_registry::RepoName::parse(repo).unwrap();
        assert!(mirror.holds(&layout::manifest_link(&name, d).unwrap()));
        let bytes = rt
            .block_on(mirror.storage.get_bytes(&layout::blob(d).unwrap(), 1 << 22))
            .unwrap()
            .unwrap();
        assert_eq!(&Digest::sha256_of(&bytes), d, "manifest rewritten");
        if let Ok(ParsedManifest::Image(m)) = ParsedManifest::from_slice(&bytes, None) {
            for desc in std::iter::once(&m.config).chain(&m.layers) {
                let blob = rt
                    .block_on(
                        mirror
                            .storage
                            .get_bytes(&layout::blob(&desc.digest).unwrap(), 1 << 30),
                    )
                    .unwrap()
                    .unwrap_or_else(|| panic!("{} not cached", desc.digest));
                assert_eq!(Digest::sha256_of(&blob), desc.digest);
            }
        }
    }
    // the catalog and tag lists show what is cached
    let catalog: serde_json::Value = client()
        .get(format!("{}/v2/_catalog", mirror.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["test/busybox", "test/multiarch", "test/multilayer"])
    );
    let tags: serde_json::Value = client()
        .get(format!("{}/v2/test/busybox/tags/list", mirror.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["latest", "oci", "uncompressed", "zstd"])
    );

    // pushes and deletes are refused
    let c = client();
    let resp = c
        .post(format!("{}/v2/test/busybox/blobs/uploads/", mirror.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(error_code(resp), "UNSUPPORTED");
    let resp = put_manifest(
        &mirror.url(),
        "test/busybox",
        "new",
        hull_oci::media_type::OCI_MANIFEST,
        b"{}",
    );
    assert_eq!(resp.status(), 405);
    assert_eq!(error_code(resp), "UNSUPPORTED");
    let d = &pulled[0].2;
    let resp = c
        .delete(format!("{}/v2/test/busybox/manifests/{d}", mirror.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(error_code(resp), "UNSUPPORTED");
    let out = hull_test::peers::skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!(
            "oci:{}:oci",
            fixtures::layout(FixtureName::BusyboxOci)
                .unwrap()
                .0
                .display()
        ))
        .arg(format!("docker://{}/pushed/here:v1", mirror.host()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a push to the mirror succeeded");

    // the upstream goes away: what is cached still pulls, by tag and by digest
    drop(up);
    for (repo, tag, want, docker) in &pulled {
        let by_tag = format!("{}/{repo}:{tag}", mirror.host());
        assert_eq!(pull(&by_tag, *docker), *want, "{by_tag}");
        let by_digest = format!("{}/{repo}@{want}", mirror.host());
        assert_eq!(remote_digest(&by_digest), *want, "{by_digest}");
    }
    // and what is not cached is an error, not a hang
    let resp = c
        .get(format!("{}/v2/test/other/manifests/latest", mirror.url()))
        .send()
        .unwrap();
    assert!(!resp.status().is_success());
}

#[test]
fn a_tag_moved_upstream_is_seen_after_the_ttl() {
    hull_test::require_bin!("skopeo", "skopeo");
    hull_test::require_bin!("docker-registry", "docker-registry");
    let up = upstream();
    let first = push_fixture(FixtureName::BusyboxOci, &format!("{}/mv/img:t", up.host()));
    let patient = Mirror::start(&up.url(), 3600);
    let eager = Mirror::start(&up.url(), 1);
    for m in [&patient, &eager] {
        assert_eq!(remote_digest(&format!("{}/mv/img:t", m.host())), first);
    }
    let second = push_fixture(
        FixtureName::Uncompressed,
        &format!("{}/mv/img:t", up.host()),
    );
    assert_ne!(first, second);
    // within its TTL a mirror serves the tag it has
    assert_eq!(
        remote_digest(&format!("{}/mv/img:t", patient.host())),
        first
    );
    std::thread::sleep(Duration::from_millis(1100));
    let moved = format!("{}/mv/img:t", eager.host());
    assert_eq!(remote_digest(&moved), second);
    assert_eq!(pull(&moved, false), second);
    // the old manifest stays pullable by digest
    assert_eq!(
        remote_digest(&format!("{}/mv/img@{first}", eager.host())),
        first
    );
}

#[test]
fn concurrent_pulls_of_a_blob_fetch_it_from_upstream_once() {
    hull_test::require_bin!("docker-registry", "docker-registry");
    let up = upstream();
    let data: Vec<u8> = (0..12u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let d = push_blob_to(&up, "big/blob", &data);
    let mirror = Mirror::start(&up.url(), 60);
    let path = format!("/v2/big/blob/blobs/{d}");

    // a HEAD asks the upstream and fetches nothing
    let head = client()
        .head(format!("{}{path}", mirror.url()))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "content-length"),
        Some(data.len().to_string())
    );
    assert!(!mirror.holds(&layout::blob(&d).unwrap()));

    let before = upstream_gets(&up, &path);
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{}{path}", mirror.url());
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let resp = client().get(url).send().unwrap();
                assert_eq!(resp.status(), 200);
                Digest::sha256_of(&resp.bytes().unwrap())
            })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.join().unwrap(), d);
    }
    assert_eq!(upstream_gets(&up, &path) - before, 1, "{}", up.log_tail());
    assert!(mirror.holds(&layout::blob(&d).unwrap()));
    // ranges come from the cache
    let part = client()
        .get(format!("{}{path}", mirror.url()))
        .header("range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &data[10..20]);
    assert_eq!(upstream_gets(&up, &path) - before, 1);
}

#[test]
fn wrong_bytes_from_upstream_are_an_error_and_nothing_is_stored() {
    hull_test::require_bin!("docker-registry", "docker-registry");
    let up = upstream();
    let data = b"the bytes the upstream should serve".repeat(1000);
    let d = push_blob_to(&up, "bad/blob", &data);
    // same size, other content
    let mut wrong = data.clone();
    wrong[5] ^= 0xff;
    std::fs::write(up.blob_data_path(&d), &wrong).unwrap();
    let mirror = Mirror::start(&up.url(), 60);
    let name = hull_registry::RepoName::parse("bad/blob").unwrap();
    for _ in 0..2 {
        let resp = client()
            .get(format!("{}/v2/bad/blob/blobs/{d}", mirror.url()))
            .send()
            .unwrap();
        // The fetch streams to its first client, whose body is then cut short; a client
        // never gets the whole of it.
        let status = resp.status();
        assert!(
            status.is_server_error() || (status == 200 && resp.bytes().is_err()),
            "served {status} for a corrupt upstream blob",
        );
        assert!(!mirror.holds(&layout::blob(&d).unwrap()));
        assert!(!mirror.holds(&layout::layer_link(&name, &d).unwrap()));
    }
}

/// An upstream that serves one blob in two halves: the second only once `release` is sent.
struct HalvedUpstream {
    addr: SocketAddr,
    release: std::sync::mpsc::Sender<()>,
}

impl HalvedUpstream {
    fn start(data: Vec<u8>) -> HalvedUpstream {
        use std::io::{BufRead as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(released));
        let data = Arc::new(data);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (data, released) = (Arc::clone(&data), Arc::clone(&released));
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    let mut first = String::new();
                    reader.read_line(&mut first).unwrap();
                    loop {
                        let mut l = String::new();
                        if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                            break;
                        }
                    }
                    let mut parts = first.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    if path == "/v2/" {
                        let _ = w.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                        );
                    } else if path.contains("/blobs/sha256:") {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            data.len()
                        );
                        w.write_all(head.as_bytes()).unwrap();
                        if method == "GET" {
                            let half = data.len() / 2;
                            w.write_all(&data[..half]).unwrap();
                            w.flush().unwrap();
                            let _ = released
                                .lock()
                                .unwrap()
                                .recv_timeout(Duration::from_secs(60));
                            let _ = w.write_all(&data[half..]);
                        }
                    } else {
                        let _ = w.write_all(
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                    }
                });
            }
        });
        HalvedUpstream { addr, release }
    }
}

#[test]
fn the_client_that_starts_a_fetch_gets_the_bytes_as_they_arrive() {
    use std::io::Read as _;
    let data: Vec<u8> = (0..4u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let d = Digest::sha256_of(&data);
    let up = HalvedUpstream::start(data.clone());
    let mirror = Mirror::start(&format!("http://{}", up.addr), 60);
    let mut resp = client()
        .get(format!("{}/v2/slow/blob/blobs/{d}", mirror.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-length"),
        Some(data.len().to_string())
    );
    // The first half arrives while the upstream still holds back the second.
    let half = data.len() / 2;
    let mut got = vec![0u8; half / 2];
    resp.read_exact(&mut got).unwrap();
    assert_eq!(got, data[..half / 2]);
    assert!(
        !mirror.holds(&layout::blob(&d).unwrap()),
        "not stored before it is whole"
    );
    up.release.send(()).unwrap();
    let mut rest = Vec::new();
    resp.read_to_end(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    assert_eq!(Digest::sha256_of(&got), d);
    assert!(mirror.holds(&layout::blob(&d).unwrap()));
    // The next pull comes from the cache.
    let again = client()
        .get(format!("{}/v2/slow/blob/blobs/{d}", mirror.url()))
        .send()
        .unwrap();
    assert_eq!(Digest::sha256_of(&again.bytes().unwrap()), d);
}

#[test]
fn referrers_come_from_the_upstream_and_their_manifests_are_cached() {
    use hull_oci::media_type as mt;
    let dir = tempfile::tempdir().unwrap();
    let up = TestServer::start(dir.path());
    let base = up.url();
    let subject = push_image(&base, "app", "v1", "signed");
    let subject_digest = Digest::sha256_of(&subject);
    push_blob(&base, "app", b"{}");
    let mut sigs = Vec::new();
    for (kind, payload) in [
        ("application/vnd.example.sig", &b"signature"[..]),
        ("application/vnd.example.sbom", b"sbom"),
    ] {
        push_blob(&base, "app", payload);
        let m = artifact_manifest(kind, &desc(mt::OCI_MANIFEST, &subject), payload);
        let d = Digest::sha256_of(&m);
        assert_eq!(
            put_manifest(&base, "app", &d.to_string(), mt::OCI_MANIFEST, &m).status(),
            201
        );
        sigs.push((kind, d));
    }
    let mirror = Mirror::start(&base, 60);
    let url = format!("{}/v2/app/referrers/{subject_digest}", mirror.url());
    let index: serde_json::Value = client().get(&url).send().unwrap().json().unwrap();
    let listed: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), 2, "{index}");
    for (_, d) in &sigs {
        assert!(listed.contains(&d.to_string()));
    }
    let resp = client()
        .get(format!("{url}?artifactType=application%2Fvnd.example.sig"))
        .send()
        .unwrap();
    assert_eq!(
        header(&resp, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let index: serde_json::Value = resp.json().unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], sigs[0].1.to_string());

    // A referrer pulled through the mirror is cached byte for byte; with the upstream gone
    // the mirror lists what it holds.
    let sig = client()
        .get(format!("{}/v2/app/manifests/{}", mirror.url(), sigs[0].1))
        .header("accept", mt::OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(Digest::sha256_of(&sig.bytes().unwrap()), sigs[0].1);
    up.stop();
    let index: serde_json::Value = client().get(&url).send().unwrap().json().unwrap();
    let held: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(held, [sigs[0].1.to_string().as_str()], "{index}");
}
