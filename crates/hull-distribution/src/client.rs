//! The registry client: endpoints and schemes, authentication, retries, manifests and tags.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use hull_oci::{Digest, MAX_MANIFEST_SIZE, ParsedManifest, Reference, media_type};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::sync::OnceCell;

use crate::auth::{Challenge, TokenReply, parse_www_authenticate, pull_scope, push_scope};
use crate::blob::{self, BlobOptions, BlobStream};
use crate::credentials::{self, Credential};
use crate::error::{DistributionError, code_reason};

/// Error bodies and token replies are read up to this size.
const MAX_SMALL_BODY: u64 = 1024 * 1024;
/// A tag list page is read up to this size.
const MAX_TAGS_PAGE: u64 = 32 * 1024 * 1024;
/// No tag list is followed past this many pages (a registry sending `Link` forever).
const MAX_TAG_PAGES: usize = 10_000;
/// Retry-After beyond this is clamped: a CLI does not sleep for an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long the https probe of a registry allowed plain http may take.
const HTTPS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a [`RegistryClient`] behaves. `Default` gives Docker's behaviour.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Registries (`host[:port]`, or a bare host for every port) that may be spoken to over
    /// plain http. Loopback registries always may.
    pub insecure_registries: Vec<String>,
    pub user_agent: String,
    /// Retries of one request after connection errors, timeouts, 429 and 5xx; and reconnections
    /// of a blob stream without progress in between.
    pub max_retries: u32,
    /// First retry delay; doubled on each retry (capped at 30 s), with jitter.
    pub retry_base_delay: Duration,
    /// Where `config.json` lives; `None` means `$DOCKER_CONFIG` or `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (an idle timeout, not a total one).
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            user_agent: format!("hull/{}", env!("CARGO_PKG_VERSION")),
            max_retries: 5,
            retry_base_delay: Duration::from_millis(500),
            docker_config_dir: None,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A manifest or index as the registry served it: the exact bytes (digests are over bytes, so
/// they are never re-serialised), their media type and digest.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// A registry client shared by all the work of one command: it caches per registry the scheme,
/// the authentication challenge, credentials and tokens. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    http: reqwest::Client,
    /// Set for the throwaway client of `check_login`: these credentials instead of config.json.
    login: Option<Credential>,
    endpoints: Mutex<HashMap<String, Arc<OnceCell<Url>>>>,
    auth_modes: Mutex<HashMap<String, AuthMode>>,
    tokens: Mutex<HashMap<(String, String), (HeaderValue, Instant)>>,
    creds: Mutex<HashMap<String, Option<Credential>>>,
}

#[derive(Clone, Debug)]
enum AuthMode {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a failed response was about, to pick the error a user reads.
pub(crate) enum Subject<'a> {
    Manifest(&'a Reference),
    Blob(&'a Reference, &'a Digest),
    Repository(&'a Reference),
    Other,
}

/// The host that serves a registry's API: Docker Hub's API is not at `docker.io`.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

fn split_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Docker's rule: plain http only for loopback registries and those listed as insecure (by
/// `host:port` or by bare host).
pub fn allows_plain_http(registry: &str, insecure_registries: &[String]) -> bool {
    let host = split_host(registry);
    if host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    {
        return true;
    }
    insecure_registries.iter().any(|entry| {
        let e = entry
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        e.eq_ignore_ascii_case(registry) || (!e.contains(':') && e.eq_ignore_ascii_case(host))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportKind {
    Refused,
    Tls,
    Timeout,
    Connect,
    Body,
    Other,
}

fn classify(e: &reqwest::Error) -> TransportKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = String::new();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return TransportKind::Refused;
        }
        text.push_str(&s.to_string().to_ascii_lowercase());
        text.push('\n');
        source = s.source();
    }
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    if e.is_connect()
        && [
            "certificate",
            "corrupt message",
            "tls",
            "handshake",
            "alert",
            "invalidcontenttype",
        ]
        .iter()
        .any(|w| text.contains(w))
    {
        return TransportKind::Tls;
    }
    if e.is_connect() {
        TransportKind::Connect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        TransportKind::Body
    } else {
        TransportKind::Other
    }
}

impl TransportKind {
    fn retryable(self) -> bool {
        !matches!(self, TransportKind::Tls | TransportKind::Other)
    }
}

fn tls_reason(e: &reqwest::Error) -> String {
    // The innermost error is rustls' own description of the failure.
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

pub(crate) fn transport_error(e: reqwest::Error, registry: &str, what: &str) -> DistributionError {
    match classify(&e) {
        TransportKind::Refused => DistributionError::ConnectionRefused {
            registry: registry.to_string(),
            url: e.url().map(Url::to_string).unwrap_or_default(),
        },
        TransportKind::Tls => DistributionError::Tls {
            registry: registry.to_string(),
            reason: tls_reason(&e),
        },
        TransportKind::Timeout => DistributionError::Timeout {
            registry: registry.to_string(),
            what: what.to_string(),
        },
        _ => DistributionError::Network {
            registry: registry.to_string(),
            what: what.to_string(),
            source: e,
        },
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), clamped.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
        let now = jiff::Timestamp::now();
        let secs = when.as_second().saturating_sub(now.as_second());
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// `Content-Length` as sent (reqwest's `content_length()` is the body's size hint, 0 for HEAD).
pub(crate) fn content_length(resp: &Response) -> Option<u64> {
    header_str(resp.headers(), "content-length").and_then(|v| v.trim().parse().ok())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads a whole body, refusing more than `limit` bytes (checked before and while reading).
pub(crate) async fn read_capped(
    resp: Response,
    limit: u64,
    registry: &str,
    what: &str,
) -> Result<Bytes, DistributionError> {
    if let Some(len) = content_length(&resp)
        && len > limit
    {
        return Err(DistributionError::TooLarge {
            what: what.to_string(),
            size: len,
            limit,
        });
    }
    let mut buf = BytesMut::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| transport_error(e, registry, what))?;
        let size = (buf.len() as u64).saturating_add(chunk.len() as u64);
        if size > limit {
            return Err(DistributionError::TooLarge {
                what: what.to_string(),
                size,
                limit,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn bounded(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The first distribution-spec error of a body, if it has one.
fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let first = parsed.errors.into_iter().next()?;
    Some((bounded(&first.code), bounded(&first.message)))
}

impl RegistryClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, DistributionError> {
        Self::build(cfg, None)
    }

    fn build(cfg: ClientConfig, login: Option<Credential>) -> Result<Self, DistributionError> {
        if cfg.user_agent.is_empty() || HeaderValue::from_str(&cfg.user_agent).is_err() {
            return Err(DistributionError::Config(format!(
                "user agent {:?} is not a valid header value",
                cfg.user_agent
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            // reqwest strips Authorization (and cookies) when a redirect changes host or port,
            // so a 307 to blob storage never receives the registry's credentials.
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(DistributionError::Client)?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                cfg,
                http,
                login,
                endpoints: Mutex::default(),
                auth_modes: Mutex::default(),
                tokens: Mutex::default(),
                creds: Mutex::default(),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Drops a cached token that a registry refused, so the next request fetches a new one.
    pub(crate) fn forget_token(&self, registry: &str, scope: Option<&str>) {
        lock(&self.inner.tokens)
            .remove(&(registry.to_string(), scope.unwrap_or_default().to_string()));
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.cfg.retry_base_delay;
        let d = base
            .checked_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        // Full jitter over the upper half, so concurrent clients do not retry in step.
        let half = d / 2;
        let jitter = rand::random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_millis(jitter)
    }

    /// Sends a request built by `build`, retrying connection errors, timeouts, 429 and 5xx up
    /// to `retries` times. A 429 or 5xx still there after the retries becomes an error.
    pub(crate) async fn execute(
        &self,
        registry: &str,
        what: &str,
        retries: u32,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, DistributionError> {
        let mut attempt = 0u32;
        loop {
            match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        return Ok(resp);
                    }
                    if attempt >= retries {
                        return Err(self
                            .fail(resp, registry, &Subject::Other, what, attempt + 1)
                            .await);
                    }
                    let delay =
                        retry_after(resp.headers()).unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(registry, what, %status, ?delay, "retrying");
                    drop(resp);
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    let kind = classify(&e);
                    if !kind.retryable() || attempt >= retries {
                        return Err(transport_error(e, registry, what));
                    }
                    let delay = self.backoff(attempt);
                    tracing::debug!(registry, what, error = %e, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
            attempt += 1;
        }
    }

    /// The base URL (`scheme://host/`) of a registry, found once per client: https, or for
    /// registries allowed plain http, http when https fails to handshake or is refused.
    pub(crate) async fn endpoint(&self, registry: &str) -> Result<Url, DistributionError> {
        let cell = lock(&self.inner.endpoints)
            .entry(registry.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.ping(registry)).await.cloned()
    }

    async fn ping(&self, registry: &str) -> Result<Url, DistributionError> {
        let host = api_host(registry);
        let plain_ok = allows_plain_http(registry, &self.inner.cfg.insecure_registries);
        let https = parse_base("https", host, registry)?;
        let retries = if plain_ok {
            0
        } else {
            self.inner.cfg.max_retries
        };
        // A plain-http server may never answer a TLS hello: don't wait the full connect
        // timeout before falling back.
        let probe_timeout = if plain_ok {
            Some(HTTPS_PROBE_TIMEOUT.min(self.inner.cfg.connect_timeout))
        } else {
            None
        };
        match self.ping_at(registry, &https, retries, probe_timeout).await {
            Ok(()) => Ok(https),
            Err(
                DistributionError::Tls { .. }
                | DistributionError::ConnectionRefused { .. }
                | DistributionError::Network { .. }
                | DistributionError::Timeout { .. },
            ) if plain_ok => {
                let http = parse_base("http", host, registry)?;
                self.ping_at(registry, &http, self.inner.cfg.max_retries, None)
                    .await?;
                tracing::debug!(registry, "using plain http");
                Ok(http)
            }
            Err(e) => Err(e),
        }
    }

    async fn ping_at(
        &self,
        registry: &str,
        base: &Url,
        retries: u32,
        timeout: Option<Duration>,
    ) -> Result<(), DistributionError> {
        let url = base
            .join("v2/")
            .map_err(|e| DistributionError::Config(format!("registry {registry:?}: {e}")))?;
        let what = format!("checking the registry API at {url}");
        let resp = self
            .execute(registry, &what, retries, || {
                let rb = self.inner.http.get(url.clone());
                match timeout {
                    Some(t) => rb.timeout(t),
                    None => rb,
                }
            })
            .await?;
        match resp.status() {
            StatusCode::UNAUTHORIZED => {
                self.note_challenges(registry, resp.headers());
                Ok(())
            }
            StatusCode::NOT_FOUND => Err(DistributionError::InvalidResponse {
                what,
                reason: format!("{url} answered 404: not a registry speaking the v2 API"),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn note_challenges(&self, registry: &str, headers: &HeaderMap) -> bool {
        let challenges: Vec<Challenge> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_www_authenticate)
            .collect();
        // Bearer is preferred when a registry offers both.
        let mode = challenges
            .iter()
            .find_map(|c| match c {
                Challenge::Bearer { realm, service, .. } => Some(AuthMode::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                }),
                Challenge::Basic { .. } => None,
            })
            .or_else(|| {
                challenges
                    .iter()
                    .any(|c| matches!(c, Challenge::Basic { .. }))
                    .then_some(AuthMode::Basic)
            });
        match mode {
            Some(m) => {
                lock(&self.inner.auth_modes).insert(registry.to_string(), m);
                true
            }
            None => false,
        }
    }

    /// Credentials for a registry: the login ones, else config.json's (looked up once).
    async fn credential(&self, registry: &str) -> Result<Option<Credential>, DistributionError> {
        if let Some(c) = &self.inner.login {
            return Ok(Some(c.clone()));
        }
        if let Some(c) = lock(&self.inner.creds).get(registry) {
            return Ok(c.clone());
        }
        let dir = self
            .inner
            .cfg
            .docker_config_dir
            .clone()
            .or_else(credentials::default_config_dir);
        let found = match dir {
            Some(dir) => {
                let reg = registry.to_string();
                tokio::task::spawn_blocking(move || credentials::lookup(&dir, &reg))
                    .await
                    .map_err(|e| DistributionError::Auth {
                        registry: registry.to_string(),
                        reason: format!("credential lookup did not finish: {e}"),
                    })??
            }
            None => None,
        };
        lock(&self.inner.creds).insert(registry.to_string(), found.clone());
        Ok(found)
    }

    /// The Authorization header for a request, fetching a token when the registry uses them.
    pub(crate) async fn authorization(
        &self,
        registry: &str,
        scope: Option<&str>,
    ) -> Result<Option<HeaderValue>, DistributionError> {
        let mode = lock(&self.inner.auth_modes).get(registry).cloned();
        match mode {
            None => Ok(None),
            Some(AuthMode::Basic) => Ok(self
                .credential(registry)
                .await?
                .filter(|c| !c.is_identity_token())
                .map(|c| basic_header(&c))),
            Some(AuthMode::Bearer { realm, service }) => {
                let key = (registry.to_string(), scope.unwrap_or_default().to_string());
                if let Some((tok, until)) = lock(&self.inner.tokens).get(&key)
                    && Instant::now() < *until
                {
                    return Ok(Some(tok.clone()));
                }
                let cred = self.credential(registry).await?;
                let (token, keep) = self
                    .fetch_token(registry, &realm, service.as_deref(), scope, cred.as_ref())
                    .await?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        DistributionError::Auth {
                            registry: registry.to_string(),
                            reason: "token server sent a token that is not a valid header value"
                                .into(),
                        }
                    })?;
                value.set_sensitive(true);
                lock(&self.inner.tokens).insert(key, (value.clone(), Instant::now() + keep));
                Ok(Some(value))
            }
        }
    }

    /// Docker's token flow (distribution `docs/spec/auth/token.md`, `oauth.md` for identity
    /// tokens).
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        cred: Option<&Credential>,
    ) -> Result<(String, Duration), DistributionError> {
        let auth_err = |reason: String| DistributionError::Auth {
            registry: registry.to_string(),
            reason,
        };
        let mut url = Url::parse(realm)
            .map_err(|e| auth_err(format!("invalid token realm {realm:?}: {e}")))?;
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(auth_err(format!("invalid token realm {realm:?}"))),
        };
        match url.scheme() {
            "https" => {}
            "http"
                if cred.is_none()
                    || allows_plain_http(&realm_host, &self.inner.cfg.insecure_registries) => {}
            "http" => {
                return Err(auth_err(format!(
                    "refusing to send credentials over plain http to token realm {realm}"
                )));
            }
            other => {
                return Err(auth_err(format!(
                    "unsupported token realm scheme {other:?}"
                )));
            }
        }
        let what = format!("fetching a token for {registry} from {realm_host}");
        let resp = match cred.filter(|c| c.is_identity_token()) {
            Some(c) => {
                let body = {
                    let mut form = url::form_urlencoded::Serializer::new(String::new());
                    form.append_pair("grant_type", "refresh_token");
                    form.append_pair("refresh_token", &c.secret);
                    form.append_pair("client_id", "hull");
                    if let Some(s) = service {
                        form.append_pair("service", s);
                    }
                    if let Some(s) = scope {
                        form.append_pair("scope", s);
                    }
                    form.finish()
                };
                self.execute(registry, &what, self.inner.cfg.max_retries, || {
                    self.inner
                        .http
                        .post(url.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.clone())
                })
                .await?
            }
            None => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    // Several scopes (a push with a cross-repository mount) are several
                    // `scope` parameters (token spec "Requesting a Token").
                    for s in scope.into_iter().flat_map(str::split_whitespace) {
                        q.append_pair("scope", s);
                    }
                    if let Some(c) = cred {
                        q.append_pair("account", &c.username);
                    }
                }
                let auth = cred.map(basic_header);
                self.execute(registry, &what, self.inner.cfg.max_retries, || {
                    let rb = self.inner.http.get(url.clone());
                    match &auth {
                        Some(a) => rb.header(header::AUTHORIZATION, a.clone()),
                        None => rb,
                    }
                })
                .await?
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(match cred {
                Some(c) => DistributionError::CredentialsRefused {
                    registry: registry.to_string(),
                    username: c.username.clone(),
                },
                None => DistributionError::AuthenticationRequired {
                    registry: registry.to_string(),
                },
            });
        }
        if !status.is_success() {
            return Err(auth_err(format!("token server answered {status}")));
        }
        let body = read_capped(resp, MAX_SMALL_BODY, registry, &what).await?;
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|e| auth_err(format!("token server reply is not JSON: {e}")))?;
        reply
            .into_token()
            .ok_or_else(|| auth_err("token server reply has no token".into()))
    }

    /// Sends an API request to `registry` (`path` starts with `/v2/`), authenticating as the
    /// registry asks (once more after a 401) and retrying as [`Self::execute`] does. Returns
    /// any response other than 401, 429 and 5xx.
    pub(crate) async fn send(
        &self,
        method: Method,
        registry: &str,
        path: &str,
        scope: Option<&str>,
        what: &str,
        extra: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, DistributionError> {
        let url = self.api_url(registry, path, what).await?;
        self.send_to(method, registry, url, scope, what, extra)
            .await
    }

    /// The URL of `path` (or of an absolute or relative `Location` a registry sent) on
    /// `registry`'s endpoint.
    pub(crate) async fn api_url(
        &self,
        registry: &str,
        path: &str,
        what: &str,
    ) -> Result<Url, DistributionError> {
        let base = self.endpoint(registry).await?;
        base.join(path)
            .map_err(|e| DistributionError::InvalidResponse {
                what: what.to_string(),
                reason: format!("invalid request path {path:?}: {e}"),
            })
    }

    /// [`Self::send`] to a full URL. Credentials go only to the registry's own origin: an
    /// upload `Location` on another host (blob storage) gets none.
    pub(crate) async fn send_to(
        &self,
        method: Method,
        registry: &str,
        url: Url,
        scope: Option<&str>,
        what: &str,
        extra: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, DistributionError> {
        let same_origin = self.endpoint(registry).await?.origin() == url.origin();
        let mut auth = if same_origin {
            self.authorization(registry, scope).await?
        } else {
            None
        };
        let mut challenged = false;
        loop {
            let resp = self
                .execute(registry, what, self.inner.cfg.max_retries, || {
                    let rb = extra(self.inner.http.request(method.clone(), url.clone()));
                    match &auth {
                        Some(a) => rb.header(header::AUTHORIZATION, a.clone()),
                        None => rb,
                    }
                })
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if challenged || !self.note_challenges(registry, resp.headers()) {
                return Err(self.unauthorized(registry, what, resp).await);
            }
            challenged = true;
            // The token we sent (if any) was refused: never reuse it.
            lock(&self.inner.tokens)
                .remove(&(registry.to_string(), scope.unwrap_or_default().to_string()));
            auth = self.authorization(registry, scope).await?;
            if auth.is_none() {
                return Err(DistributionError::AuthenticationRequired {
                    registry: registry.to_string(),
                });
            }
        }
    }

    pub(crate) async fn unauthorized(
        &self,
        registry: &str,
        what: &str,
        resp: Response,
    ) -> DistributionError {
        let cred = match self.credential(registry).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mode = lock(&self.inner.auth_modes).get(registry).cloned();
        match (cred, mode) {
            (None, _) => DistributionError::AuthenticationRequired {
                registry: registry.to_string(),
            },
            (Some(c), Some(AuthMode::Basic) | None) => DistributionError::CredentialsRefused {
                registry: registry.to_string(),
                username: c.username,
            },
            (Some(_), Some(AuthMode::Bearer { .. })) => {
                // The token server accepted the credentials but granted no access.
                let body = read_capped(resp, MAX_SMALL_BODY, registry, what)
                    .await
                    .unwrap_or_default();
                let message = parse_error_body(&body).map(|(_, m)| m).unwrap_or_default();
                DistributionError::Denied {
                    what: what.to_string(),
                    message,
                }
            }
        }
    }

    /// Turns an unsuccessful response into the error a user should read.
    pub(crate) async fn fail(
        &self,
        resp: Response,
        registry: &str,
        subject: &Subject<'_>,
        what: &str,
        attempts: u32,
    ) -> DistributionError {
        let status = resp.status();
        let body = if status == StatusCode::NOT_FOUND
            || status.is_client_error()
            || status.is_server_error()
        {
            read_capped(resp, MAX_SMALL_BODY, registry, what)
                .await
                .unwrap_or_default()
        } else {
            Bytes::new()
        };
        let (code, message) = match parse_error_body(&body) {
            Some((c, m)) => (Some(c), m),
            None => (None, String::new()),
        };
        let code_is = |c: &str| code.as_deref() == Some(c);
        match subject {
            Subject::Manifest(r)
                if code_is("MANIFEST_UNKNOWN")
                    || (status == StatusCode::NOT_FOUND && code.is_none()) =>
            {
                return DistributionError::ManifestUnknown {
                    reference: r.to_string(),
                };
            }
            Subject::Blob(r, d)
                if code_is("BLOB_UNKNOWN")
                    || (status == StatusCode::NOT_FOUND && code.is_none()) =>
            {
                return DistributionError::BlobUnknown {
                    repository: r.name(),
                    digest: (*d).clone(),
                };
            }
            Subject::Manifest(r) | Subject::Blob(r, _) | Subject::Repository(r)
                if code_is("NAME_UNKNOWN") =>
            {
                return DistributionError::RepositoryUnknown {
                    repository: r.name(),
                };
            }
            _ => {}
        }
        if status == StatusCode::FORBIDDEN || code_is("DENIED") {
            return DistributionError::Denied {
                what: what.to_string(),
                message,
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return DistributionError::TooManyRequests {
                registry: registry.to_string(),
                attempts,
            };
        }
        if status.is_server_error() && code.is_none() {
            return DistributionError::Server {
                what: what.to_string(),
                status: status.as_u16(),
                attempts,
            };
        }
        let reason = match &code {
            Some(c) => code_reason(c),
            None => status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_ascii_lowercase(),
        };
        DistributionError::Registry {
            what: what.to_string(),
            status: status.as_u16(),
            code,
            reason,
            message,
        }
    }

    /// GETs a manifest or index by tag or digest. The bytes are read up to
    /// [`MAX_MANIFEST_SIZE`]; if the reference has a digest the bytes must match it, and so must
    /// the registry's `Docker-Content-Digest`. Schema 1 and unknown media types are refused.
    pub async fn get_manifest(&self, r: &Reference) -> Result<FetchedManifest, DistributionError> {
        let what = format!("fetching manifest {r}");
        let path = format!("/v2/{}/manifests/{}", r.repository(), r.manifest_ref());
        let scope = pull_scope(r.repository());
        let accept = media_type::MANIFEST_ACCEPT.join(", ");
        let resp = self
            .send(
                Method::GET,
                r.registry(),
                &path,
                Some(&scope),
                &what,
                |rb| rb.header(header::ACCEPT, accept.as_str()),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .fail(resp, r.registry(), &Subject::Manifest(r), &what, 1)
                .await);
        }
        let content_type = header_str(resp.headers(), "content-type").map(str::to_string);
        let header_digest = match header_str(resp.headers(), "docker-content-digest") {
            Some(v) => Some(v.trim().parse::<Digest>().map_err(|e| {
                DistributionError::InvalidResponse {
                    what: what.clone(),
                    reason: format!("Docker-Content-Digest: {e}"),
                }
            })?),
            None => None,
        };
        let bytes = read_capped(resp, MAX_MANIFEST_SIZE, r.registry(), &what).await?;
        let computed = |expected: &Digest| {
            let mut h = expected.digester();
            h.update(&bytes);
            h.finish()
        };
        let digest = match r.digest() {
            Some(want) => {
                let got = computed(want);
                if &got != want {
                    return Err(DistributionError::DigestMismatch {
                        what: format!("manifest {r}"),
                        expected: want.clone(),
                        actual: got,
                    });
                }
                got
            }
            None => Digest::sha256_of(&bytes),
        };
        if let Some(h) = header_digest {
            let got = computed(&h);
            if got != h {
                return Err(DistributionError::DigestMismatch {
                    what: format!("manifest {r} (registry's Docker-Content-Digest)"),
                    expected: h,
                    actual: got,
                });
            }
        }
        let parsed =
            ParsedManifest::from_slice(&bytes, content_type.as_deref()).map_err(|source| {
                DistributionError::Document {
                    what: format!("manifest {r}"),
                    source,
                }
            })?;
        let served = content_type
            .as_deref()
            .map(|c| c.split(';').next().unwrap_or_default().trim())
            .filter(|c| media_type::is_index(c) || media_type::is_manifest(c));
        let media_type = served.unwrap_or(parsed.media_type()).to_string();
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// [`Self::get_manifest`] for `digest` in the repository of `repo` (its tag is ignored).
    pub async fn get_manifest_by_digest(
        &self,
        repo: &Reference,
        digest: &Digest,
    ) -> Result<FetchedManifest, DistributionError> {
        self.get_manifest(&repo.with_digest(digest.clone())).await
    }

    /// HEADs a manifest: its digest, media type and size, or `None` if the registry has none.
    /// Registries that don't send `Docker-Content-Digest` get a GET instead.
    pub async fn head_manifest(
        &self,
        r: &Reference,
    ) -> Result<Option<(Digest, String, u64)>, DistributionError> {
        let what = format!("checking manifest {r}");
        let path = format!("/v2/{}/manifests/{}", r.repository(), r.manifest_ref());
        let scope = pull_scope(r.repository());
        let accept = media_type::MANIFEST_ACCEPT.join(", ");
        let resp = self
            .send(
                Method::HEAD,
                r.registry(),
                &path,
                Some(&scope),
                &what,
                |rb| rb.header(header::ACCEPT, accept.as_str()),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self
                .fail(resp, r.registry(), &Subject::Manifest(r), &what, 1)
                .await);
        }
        let digest = header_str(resp.headers(), "docker-content-digest")
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let media = header_str(resp.headers(), "content-type")
            .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|c| media_type::is_index(c) || media_type::is_manifest(c));
        let size = content_length(&resp);
        match (digest, media, size) {
            (Some(d), Some(m), Some(s)) => {
                if let Some(want) = r.digest()
                    && &d != want
                {
                    return Err(DistributionError::DigestMismatch {
                        what: format!("manifest {r} (registry's Docker-Content-Digest)"),
                        expected: want.clone(),
                        actual: d,
                    });
                }
                Ok(Some((d, m, s)))
            }
            _ => match self.get_manifest(r).await {
                Ok(m) => {
                    let size = m.bytes.len() as u64;
                    Ok(Some((m.digest, m.media_type, size)))
                }
                Err(DistributionError::ManifestUnknown { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Streams the blob `digest` of `repo`'s repository from byte `offset`. See [`BlobStream`]:
    /// its `start()` says where the data really starts (0 when the registry ignored the range).
    /// The bytes are not verified here; whoever stores them hashes them.
    pub async fn get_blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        offset: u64,
        opts: BlobOptions,
    ) -> Result<BlobStream, DistributionError> {
        blob::open(self.clone(), repo.clone(), digest.clone(), offset, opts).await
    }

    /// HEADs a blob: its size, or `None` if the registry does not have it.
    pub async fn blob_size(
        &self,
        repo: &Reference,
        digest: &Digest,
    ) -> Result<Option<u64>, DistributionError> {
        self.blob_size_scoped(repo, digest, &pull_scope(repo.repository()))
            .await
    }

    /// [`Self::blob_size`] asking for push access, as a push does before uploading (one token
    /// serves the whole push).
    pub async fn blob_size_for_push(
        &self,
        repo: &Reference,
        digest: &Digest,
    ) -> Result<Option<u64>, DistributionError> {
        self.blob_size_scoped(repo, digest, &push_scope(repo.repository()))
            .await
    }

    async fn blob_size_scoped(
        &self,
        repo: &Reference,
        digest: &Digest,
        scope: &str,
    ) -> Result<Option<u64>, DistributionError> {
        let what = format!("checking blob {}@{digest}", repo.name());
        let path = format!("/v2/{}/blobs/{digest}", repo.repository());
        let resp = self
            .send(
                Method::HEAD,
                repo.registry(),
                &path,
                Some(scope),
                &what,
                |rb| rb,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self
                .fail(
                    resp,
                    repo.registry(),
                    &Subject::Blob(repo, digest),
                    &what,
                    1,
                )
                .await);
        }
        content_length(&resp)
            .map(Some)
            .ok_or_else(|| DistributionError::InvalidResponse {
                what,
                reason: "no Content-Length".into(),
            })
    }

    /// GETs a blob range (for [`BlobStream`]): `Range: bytes=from-[to]` when `from > 0` or
    /// `to` is set.
    pub(crate) async fn get_blob_range(
        &self,
        repo: &Reference,
        digest: &Digest,
        from: u64,
        to_inclusive: Option<u64>,
    ) -> Result<Response, DistributionError> {
        let what = format!("fetching blob {}@{digest}", repo.name());
        let path = format!("/v2/{}/blobs/{digest}", repo.repository());
        let scope = pull_scope(repo.repository());
        let range = match (from, to_inclusive) {
            (0, None) => None,
            (f, None) => Some(format!("bytes={f}-")),
            (f, Some(t)) => Some(format!("bytes={f}-{t}")),
        };
        self.send(
            Method::GET,
            repo.registry(),
            &path,
            Some(&scope),
            &what,
            |rb| match &range {
                Some(r) => rb.header(header::RANGE, r.as_str()),
                None => rb,
            },
        )
        .await
    }

    /// All tags of `repo`'s repository, following `Link: <…>; rel="next"` pagination.
    pub async fn list_tags(&self, repo: &Reference) -> Result<Vec<String>, DistributionError> {
        self.list_tags_paged(repo, None).await
    }

    /// [`Self::list_tags`] asking for pages of `page_size` tags (`?n=`).
    pub async fn list_tags_paged(
        &self,
        repo: &Reference,
        page_size: Option<u32>,
    ) -> Result<Vec<String>, DistributionError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("listing tags of {}", repo.name());
        let scope = pull_scope(repo.repository());
        let mut path = format!("/v2/{}/tags/list", repo.repository());
        if let Some(n) = page_size {
            path.push_str(&format!("?n={n}"));
        }
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_TAG_PAGES {
            if !seen.insert(path.clone()) {
                return Err(DistributionError::InvalidResponse {
                    what,
                    reason: format!("pagination loops back to {path}"),
                });
            }
            let resp = self
                .send(
                    Method::GET,
                    repo.registry(),
                    &path,
                    Some(&scope),
                    &what,
                    |rb| rb.header(header::ACCEPT, "application/json"),
                )
                .await?;
            if !resp.status().is_success() {
                return Err(self
                    .fail(resp, repo.registry(), &Subject::Repository(repo), &what, 1)
                    .await);
            }
            let next = next_link(resp.headers(), resp.url());
            let body = read_capped(resp, MAX_TAGS_PAGE, repo.registry(), &what).await?;
            let page: Page =
                serde_json::from_slice(&body).map_err(|e| DistributionError::InvalidResponse {
                    what: what.clone(),
                    reason: format!("tag list is not valid JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                None => return Ok(tags),
                Some(Ok(p)) => path = p,
                Some(Err(reason)) => {
                    return Err(DistributionError::InvalidResponse { what, reason });
                }
            }
        }
        Err(DistributionError::InvalidResponse {
            what,
            reason: format!("more than {MAX_TAG_PAGES} pages"),
        })
    }

    /// The referrers of manifest `subject` in `repo` (distribution-spec 1.1's referrers API,
    /// every page), only those of `artifact_type` when given (the registry may filter; the list
    /// is filtered here too). `None` when the registry does not offer the API (404).
    pub async fn referrers(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<hull_oci::Descriptor>>, DistributionError> {
        let what = format!("listing referrers of {}@{subject}", repo.name());
        let scope = pull_scope(repo.repository());
        let mut path = format!("/v2/{}/referrers/{subject}", repo.repository());
        if let Some(a) = artifact_type {
            path.push_str("?artifactType=");
            path.extend(url::form_urlencoded::byte_serialize(a.as_bytes()));
        }
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_TAG_PAGES {
            if !seen.insert(path.clone()) {
                return Err(DistributionError::InvalidResponse {
                    what,
                    reason: format!("pagination loops back to {path}"),
                });
            }
            let resp = self
                .send(
                    Method::GET,
                    repo.registry(),
                    &path,
                    Some(&scope),
                    &what,
                    |rb| rb.header(header::ACCEPT, hull_oci::media_type::OCI_INDEX),
                )
                .await?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND && out.is_empty() {
                return Ok(None);
            }
            if !resp.status().is_success() {
                return Err(self
                    .fail(resp, repo.registry(), &Subject::Repository(repo), &what, 1)
                    .await);
            }
            let next = next_link(resp.headers(), resp.url());
            let body = read_capped(resp, MAX_TAGS_PAGE, repo.registry(), &what).await?;
            let index: hull_oci::Index =
                serde_json::from_slice(&body).map_err(|e| DistributionError::InvalidResponse {
                    what: what.clone(),
                    reason: format!("referrers list is not an image index: {e}"),
                })?;
            out.extend(
                index.manifests.into_iter().filter(|d| {
                    artifact_type.is_none_or(|a| d.artifact_type.as_deref() == Some(a))
                }),
            );
            match next {
                None => return Ok(Some(out)),
                Some(Ok(p)) => path = p,
                Some(Err(reason)) => {
                    return Err(DistributionError::InvalidResponse { what, reason });
                }
            }
        }
        Err(DistributionError::InvalidResponse {
            what,
            reason: format!("more than {MAX_TAG_PAGES} pages"),
        })
    }

    /// Checks credentials against a registry (`GET /v2/` with authentication), for `hull login`.
    /// Nothing is stored.
    pub async fn check_login(
        &self,
        registry: &str,
        user: &str,
        password: &str,
    ) -> Result<(), DistributionError> {
        let probe = RegistryClient::build(
            self.inner.cfg.clone(),
            Some(Credential::new(user, password)),
        )?;
        let what = format!("logging in to {registry}");
        let resp = probe
            .send(Method::GET, registry, "/v2/", None, &what, |rb| rb)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(probe.fail(resp, registry, &Subject::Other, &what, 1).await)
        }
    }
}

fn parse_base(scheme: &str, host: &str, registry: &str) -> Result<Url, DistributionError> {
    Url::parse(&format!("{scheme}://{host}/"))
        .map_err(|e| DistributionError::Config(format!("invalid registry {registry:?}: {e}")))
}

fn basic_header(c: &Credential) -> HeaderValue {
    let encoded = B64.encode(format!("{}:{}", c.username, c.secret));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// The path of the `rel="next"` link (RFC 8288), which must stay on the same registry.
fn next_link(headers: &HeaderMap, current: &Url) -> Option<Result<String, String>> {
    for value in headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next().unwrap_or_default().trim();
            let is_next = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                return Some(Err(format!("malformed Link header {value:?}")));
            };
            return Some(match current.join(target) {
                Ok(u) if u.origin() == current.origin() => {
                    let mut p = u.path().to_string();
                    if let Some(q) = u.query() {
                        p.push('?');
                        p.push_str(q);
                    }
                    Ok(p)
                }
                Ok(u) => Err(format!("next page {u} is on another host")),
                Err(e) => Err(format!("invalid next page {target:?}: {e}")),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_rules() {
        let none: Vec<String> = vec![];
        for loopback in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.8.9.10:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(allows_plain_http(loopback, &none), "{loopback}");
        }
        for remote in [
            "docker.io",
            "quay.io",
            "10.0.0.1:5000",
            "reg.example:5000",
            "localhost.example",
        ] {
            assert!(!allows_plain_http(remote, &none), "{remote}");
        }
        let insecure = vec!["reg.example:5000".to_string(), "other.example".to_string()];
        assert!(allows_plain_http("reg.example:5000", &insecure));
        assert!(!allows_plain_http("reg.example:5001", &insecure));
        assert!(!allows_plain_http("reg.example", &insecure));
        assert!(allows_plain_http("other.example", &insecure));
        assert!(allows_plain_http("other.example:8443", &insecure));
    }

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let text = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&text).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RegistryClient::new(ClientConfig {
            retry_base_delay: Duration::from_millis(100),
            ..ClientConfig::default()
        })
        .unwrap();
        let d0 = c.backoff(0);
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        let d3 = c.backoff(3);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        assert!(c.backoff(40) <= MAX_BACKOFF);
    }

    #[test]
    fn link_pagination() {
        let cur = Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static("</v2/a/tags/list?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&h, &cur),
            Some(Ok("/v2/a/tags/list?last=b&n=2".to_string()))
        );
        h.insert(
            header::LINK,
            HeaderValue::from_static("<http://evil.example/v2/a/tags/list>; rel=\"next\""),
        );
        assert!(matches!(next_link(&h, &cur), Some(Err(_))));
        h.insert(header::LINK, HeaderValue::from_static("</x>; rel=\"prev\""));
        assert_eq!(next_link(&h, &cur), None);
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            parse_error_body(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#),
            Some(("MANIFEST_UNKNOWN".into(), "manifest unknown".into()))
        );
        assert_eq!(parse_error_body(b"<html>"), None);
        assert_eq!(
            code_reason("NAME_UNKNOWN"),
            "repository name not known to registry"
        );
        assert_eq!(code_reason("SOME_NEW_CODE"), "some new code");
    }

    #[test]
    fn debug_and_errors_hold_no_secret() {
        let h = basic_header(&Credential::new("alice", "hunter2"));
        assert!(!format!("{h:?}").contains("aHVudGVy"));
        let c = RegistryClient::new(ClientConfig::default()).unwrap();
        assert!(format!("{c:?}").contains("RegistryClient"));
    }
}
