//! Helpers: an in-process server on a loopback port, and raw distribution-API calls.

// Test helpers: a failed step should panic with its value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use hull_oci::Digest;
use hull_oci::media_type as mt;
use hull_registry::{BasicAuth, FsStorage, Registry, RegistryConfig, RegistryStorage};
use reqwest::blocking::{Client, Response};
use tokio_rustls::rustls::ServerConfig;

/// A registry served from `data` on `127.0.0.1:<free port>` by a runtime of its own; dropping
/// it shuts the server down gracefully and waits for it.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(data: &Path) -> TestServer {
        Self::start_with(data, RegistryConfig::default())
    }

    pub fn start_with(data: &Path, config: RegistryConfig) -> TestServer {
        Self::start_full(data, config, None)
    }

    pub fn start_full(data: &Path, config: RegistryConfig, auth: Option<BasicAuth>) -> TestServer {
        Self::start_inner(data, config, auth, None)
    }

    /// Over TLS with the given server configuration.
    pub fn start_tls(data: &Path, tls: Arc<ServerConfig>) -> TestServer {
        Self::start_inner(data, RegistryConfig::default(), None, Some(tls))
    }

    fn start_inner(
        data: &Path,
        config: RegistryConfig,
        auth: Option<BasicAuth>,
        tls: Option<Arc<ServerConfig>>,
    ) -> TestServer {
        Self::start_with_storage(Backend::Fs(data.to_path_buf()), config, auth, tls)
    }

    /// Served from any backend.
    pub fn start_on(storage: Arc<dyn RegistryStorage>) -> TestServer {
        Self::start_with_storage(
            Backend::Given(storage),
            RegistryConfig::default(),
            None,
            None,
        )
    }

    fn start_with_storage(
        backend: Backend,
        config: RegistryConfig,
        auth: Option<BasicAuth>,
        tls: Option<Arc<ServerConfig>>,
    ) -> TestServer {
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
                let storage: Arc<dyn RegistryStorage> = match backend {
                    Backend::Fs(dir) => Arc::new(FsStorage::open(&dir).await.unwrap()),
                    Backend::Given(s) => s,
                };
                let registry = Registry::builder(storage)
                    .config(config)
                    .basic_auth(auth)
                    .build();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let stop = async {
                    let _ = stop_rx.await;
                };
                match tls {
                    None => hull_registry::serve(listener, registry.router(), stop).await,
                    Some(tls) => {
                        hull_registry::serve_tls(listener, registry.router(), tls, stop).await
                    }
                }
                .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("the test server did not start");
        drop(ports);
        TestServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the test server panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Held (shared) while a server of this binary binds a free port, and exclusively while a peer
/// that picks a port number before binding it (the CNCF registry of hull-test) starts: otherwise
/// our bind to port 0 could take the number the peer picked, and the peer's readiness probe
/// would find our server there.
pub static PORTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn ports_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    PORTS.read().unwrap_or_else(|e| e.into_inner())
}

pub fn ports_exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    PORTS.write().unwrap_or_else(|e| e.into_inner())
}

enum Backend {
    Fs(std::path::PathBuf),
    Given(Arc<dyn RegistryStorage>),
}

pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `errors[0].code` of an error response.
pub fn error_code(resp: Response) -> String {
    let v: serde_json::Value = resp.json().unwrap();
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Pushes `data` as a blob of `repo` with a monolithic POST; returns its digest.
pub fn push_blob(base: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let resp = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "pushing blob {d}: {:?}", resp.text());
    d
}

/// A descriptor's JSON.
pub fn desc(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(data).to_string(),
        "size": data.len(),
    })
}

/// An OCI image manifest over the given config and layers (pushed by the caller).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": desc(mt::OCI_CONFIG, config),
        "layers": layers.iter().map(|l| desc(mt::OCI_LAYER_GZIP, l)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// An artifact manifest (OCI 1.1 guidance: empty config, `artifactType`) referring to `subject`.
pub fn artifact_manifest(
    artifact_type: &str,
    subject: &serde_json::Value,
    layer: &[u8],
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": desc(mt::OCI_EMPTY, b"{}"),
        "layers": [desc("application/octet-stream", layer)],
        "subject": subject,
        "annotations": {"org.example.kind": artifact_type},
    }))
    .unwrap()
}

pub fn put_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    client()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .unwrap()
}

/// Pushes a small image (config + one layer) to `repo:tag`; returns the manifest bytes.
pub fn push_image(base: &str, repo: &str, tag: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}");
    push_blob(base, repo, config.as_bytes());
    push_blob(base, repo, layer.as_bytes());
    let m = image_manifest(config.as_bytes(), &[layer.as_bytes()]);
    let resp = put_manifest(base, repo, tag, mt::OCI_MANIFEST, &m);
    assert_eq!(resp.status(), 201, "{:?}", resp.text());
    m
}

/// Sends one raw HTTP/1.1 request (for paths an URL library would normalise) and returns the
/// status code.
pub fn raw_status(addr: SocketAddr, method: &str, path: &str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The digest of the manifest tagged `tag` in the OCI layout at `dir`.
pub fn layout_digest(dir: &Path, tag: &str) -> Digest {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"][hull_test::fixtures::REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {}", dir.display()));
    m["digest"].as_str().unwrap().parse().unwrap()
}

/// `skopeo inspect --raw` of an image in a plain-http registry: the manifest's digest.
pub fn remote_digest(reference: &str) -> Digest {
    let mut cmd = hull_test::peers::skopeo();
    cmd.args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Digest::sha256_of(&out.stdout)
}

/// `skopeo copy --all` with plain http on both sides (`--preserve-digests` when `preserve`).
pub fn skopeo_copy(src: &str, dest: &str, preserve: bool) {
    let mut cmd = hull_test::peers::skopeo();
    cmd.args([
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]);
    if preserve {
        cmd.arg("--preserve-digests");
    }
    cmd.args([src, dest]);
    hull_test::peers::run(&mut cmd).unwrap();
}

impl TestServer {
    /// Served by the registry `make` builds (in the server's runtime) over the filesystem
    /// storage at `data`: for token auth, which needs the storage to load its keys.
    pub fn start_custom<F, Fut>(data: &Path, make: F) -> TestServer
    where
        F: FnOnce(Arc<dyn RegistryStorage>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Registry>,
    {
        let dir = data.to_path_buf();
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
                let storage: Arc<dyn RegistryStorage> =
                    Arc::new(FsStorage::open(&dir).await.unwrap());
                let registry = make(storage).await;
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
        let addr = addr_rx.recv().expect("the test server did not start");
        drop(ports);
        TestServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

/// An htpasswd file's text with these users and passwords (bcrypt, cost 4).
pub fn htpasswd_text(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect()
}

/// A token from the registry's `/token` endpoint for `scopes`, as `user` (or anonymously).
pub fn fetch_token(base: &str, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let mut pairs = vec![("service", "hull-registry")];
    pairs.extend(scopes.iter().map(|s| ("scope", *s)));
    let mut req = client().get(format!("{base}/token?{}", form(&pairs)));
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().unwrap();
    assert_eq!(resp.status(), 200, "token request");
    let v: serde_json::Value = resp.json().unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// `k=v&…`, form-encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}
