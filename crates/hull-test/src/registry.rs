//! A real CNCF distribution registry (Debian's `docker-registry`, distribution 2.8) on a free
//! loopback port, with its storage and log in a temporary directory; optionally behind htpasswd
//! basic auth, or behind Docker's token flow served by a small token server in this process.
//!
//! The token server checks basic credentials and issues ES256 JWTs whose header carries the
//! signing certificate (`x5c`); the registry verifies that chain against the `rootcertbundle` we
//! write (distribution `registry/auth/token/token.go`). Only the configured user is granted the
//! scopes it asks for; anonymous requests get tokens with no access, as Docker Hub's private
//! repositories behave.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

const TOKEN_SERVICE: &str = "hull-test-registry";
const TOKEN_ISSUER: &str = "hull-test-token-issuer";
const TOKEN_LIFETIME_SECS: u64 = 300;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a [`TestRegistry`]. `Default` is anonymous, without deletes.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// htpasswd basic auth with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Token auth: the token server grants access to this user and password only.
    pub token_auth: Option<(String, String)>,
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
}

/// A running registry; dropping it kills the process and removes its data.
pub struct TestRegistry {
    child: Child,
    port: u16,
    data: PathBuf,
    token: Option<TokenServer>,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("host", &self.host())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> anyhow::Result<TestRegistry> {
        Self::start_with(RegistryOptions::default())
    }

    pub fn start_with(opts: RegistryOptions) -> anyhow::Result<TestRegistry> {
        if opts.basic_auth.is_some() && opts.token_auth.is_some() {
            bail!("a test registry has basic auth or token auth, not both");
        }
        let bin = crate::peers::ensure("docker-registry", "docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("hull-test-registry-")
            .tempdir()
            .context("creating the registry's temp dir")?;
        let data = dir.path().join("data");
        fs_err::create_dir_all(&data)?;
        let token = match &opts.token_auth {
            Some((user, pass)) => Some(TokenServer::start(dir.path(), user, pass)?),
            None => None,
        };
        let auth = match (&opts.basic_auth, &token) {
            (Some((user, pass)), _) => {
                let hash = bcrypt::hash(pass, 4).context("hashing the htpasswd password")?;
                let htpasswd = dir.path().join("htpasswd");
                fs_err::write(&htpasswd, format!("{user}:{hash}\n"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: hull-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            (None, Some(t)) => format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.port,
                t.cert_path.display()
            ),
            (None, None) => String::new(),
        };
        let log_path = dir.path().join("registry.log");
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: {delete}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: hull-test-secret\n{auth}",
                data = data.display(),
                delete = opts.delete_enabled,
            );
            let config_path = dir.path().join("config.yml");
            fs_err::write(&config_path, config)?;
            let log = fs_err::File::create(&log_path)?;
            let log_err = log.try_clone()?;
            let child = Command::new(&bin)
                .arg("serve")
                .arg(&config_path)
                // REGISTRY_* variables would override the config file.
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.into_file()))
                .stderr(Stdio::from(log_err.into_file()))
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut child = child;
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return Ok(TestRegistry {
                        child,
                        port,
                        data,
                        token,
                        dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = log_tail(&log_path);
                    let retry = tail.contains("address already in use");
                    let e = e.context(format!("registry log tail:\n{tail}"));
                    if !retry {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no free port for the registry")))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Where the registry logs (access log included).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The last lines of the registry's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    /// Path of a blob's data file in the registry's storage, to tamper with it.
    pub fn blob_data_path(&self, digest: &hull_oci::Digest) -> PathBuf {
        let hex = digest.hex();
        self.data_dir()
            .join("docker/registry/v2/blobs")
            .join(digest.algorithm().as_str())
            .join(hex.get(..2).unwrap_or(hex))
            .join(hex)
            .join("data")
    }

    /// How many requests the token server has answered (0 without token auth).
    pub fn token_requests(&self) -> usize {
        self.token
            .as_ref()
            .map_or(0, |t| t.state.requests.load(Ordering::SeqCst))
    }

    /// The token realm URL, with token auth.
    pub fn token_realm(&self) -> Option<String> {
        self.token
            .as_ref()
            .map(|t| format!("http://127.0.0.1:{}/token", t.port))
    }

    /// A token granting pull and push on `repository` to the configured user, minted directly
    /// (for tests that put content into the registry), with token auth.
    pub fn push_token(&self, repository: &str) -> Option<String> {
        let t = self.token.as_ref()?;
        let user = t.state.user.clone();
        t.state
            .sign(&user, &[format!("repository:{repository}:pull,push")])
            .ok()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("docker-registry exited during startup with {status}");
        }
        if http_status(port, "/v2/").is_ok() {
            // Something answers; make sure it is this registry and not another server that
            // took the port between `free_port` and the registry's bind (the registry then
            // exits with "address already in use").
            std::thread::sleep(Duration::from_millis(100));
            if let Some(status) = child.try_wait()? {
                bail!("docker-registry exited during startup with {status}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "docker-registry did not answer GET /v2/ on 127.0.0.1:{port} within {STARTUP_TIMEOUT:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    lines.get(from..).unwrap_or_default().join("\n")
}

/// The status code of a plain `GET path` on loopback.
fn http_status(port: u16, path: &str) -> anyhow::Result<u16> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let code = line
        .split_whitespace()
        .nth(1)
        .context("no HTTP status line")?;
    Ok(code.parse()?)
}

struct TokenServer {
    port: u16,
    cert_path: PathBuf,
    state: Arc<TokenState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct TokenState {
    user: String,
    pass: String,
    key: jsonwebtoken::EncodingKey,
    x5c: String,
    requests: AtomicUsize,
    serial: AtomicUsize,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, pass: &str) -> anyhow::Result<TokenServer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating the token signing key")?;
        let cert = rcgen::CertificateParams::new(vec!["hull-test-token".to_string()])
            .context("token certificate parameters")?
            .self_signed(&key)
            .context("self-signing the token certificate")?;
        let cert_path = dir.join("token-root.crt");
        fs_err::write(&cert_path, cert.pem())?;
        let enc = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
            .context("loading the token signing key")?;
        let state = Arc::new(TokenState {
            user: user.to_string(),
            pass: pass.to_string(),
            key: enc,
            x5c: B64.encode(cert.der()),
            requests: AtomicUsize::new(0),
            serial: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the token server")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("hull-test-token-server".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || {
                            let _ = serve_token(conn, &state);
                        });
                    }
                })
                .context("spawning the token server")?
        };
        Ok(TokenServer {
            port,
            cert_path,
            state,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TokenState {
    /// A JWT for `subject` granting the given scopes (`type:name:action,action`).
    fn sign(&self, subject: &str, scopes: &[String]) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>(),
                }))
            })
            .collect();
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": format!("hull-test-{}", self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.x5c.clone()]);
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

fn serve_token(mut conn: TcpStream, state: &TokenState) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let authorization = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    state.requests.fetch_add(1, Ordering::SeqCst);

    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || path != "/token" {
        return respond(&mut conn, 404, "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}");
    }
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .flat_map(|v| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let user = match authorization {
        None => None,
        Some(a) => {
            let decoded = a
                .strip_prefix("Basic ")
                .and_then(|b| B64.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((u, p)) if u == state.user && p == state.pass => Some(u.to_string()),
                _ => {
                    return respond(
                        &mut conn,
                        401,
                        "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"invalid username or password\"}]}",
                    );
                }
            }
        }
    };
    let granted: Vec<String> = if user.is_some() { scopes } else { Vec::new() };
    let token = state.sign(user.as_deref().unwrap_or_default(), &granted)?;
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_LIFETIME_SECS,
    })
    .to_string();
    respond(&mut conn, 200, &body)
}

fn respond(conn: &mut TcpStream, status: u16, body: &str) -> anyhow::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()?;
    let _ = conn.shutdown(Shutdown::Write);
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
            "repository:a/b:pull,push"
        );
        assert_eq!(percent_decode("a+b%zz"), "a b%zz");
    }
}
