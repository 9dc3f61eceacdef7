//! The HTTP front: one handler that parses `/v2/...` paths (repository names hold slashes, so
//! a route table cannot split them), the per-endpoint handlers, and the accept loop with
//! graceful shutdown.

mod blobs;
mod lists;
mod manifests;
pub(crate) use manifests::referrer_descriptor;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use hull_oci::Digest;
use serde::Deserialize;
use tracing::instrument::WithSubscriber as _;

use crate::auth::BasicAuth;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{Metrics, MetricsConfig, Tracker};
use crate::names::RepoName;
use crate::storage::{ByteStream, RegistryStorage};
use crate::token::{Access, BearerError, TokenAuth};

/// How long graceful shutdown waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const CONTENT_DIGEST_HEADER: &str = "docker-content-digest";
pub const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
pub const OCI_SUBJECT_HEADER: &str = "oci-subject";
pub const OCI_FILTERS_APPLIED_HEADER: &str = "oci-filters-applied";

/// The registry's behaviour switches (the `[registry]` part of `hull serve`'s config file).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryConfig {
    /// Refuse every write with `UNSUPPORTED` (405), as distribution's read-only mode does.
    pub read_only: bool,
    /// Allow `DELETE` of manifests, tags and blob links.
    pub delete_enabled: bool,
    /// Largest manifest accepted (the spec suggests at least 4 MiB).
    pub max_manifest_size: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            read_only: false,
            delete_enabled: true,
            max_manifest_size: hull_oci::MAX_MANIFEST_SIZE,
        }
    }
}

/// A registry: storage plus configuration; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn RegistryStorage>,
    config: RegistryConfig,
    auth: Option<BasicAuth>,
    /// Docker token auth; when set, basic auth is not used on `/v2/`.
    token: Option<TokenAuth>,
    metrics: Option<Metrics>,
    /// Pull-through cache mode: the upstream this registry mirrors.
    proxy: Option<Arc<crate::proxy::Proxy>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The peer address of a connection, put in each request's extensions by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Marks a request that came over TLS, put in its extensions by [`serve_tls`] (token realms
/// derived from the `Host` header then say `https`).
#[derive(Clone, Copy, Debug)]
pub struct Https;

/// Builds a [`Registry`]: storage first, then each optional part; every front end and test
/// configures a registry through this one path.
#[derive(Clone)]
pub struct RegistryBuilder {
    storage: Arc<dyn RegistryStorage>,
    config: RegistryConfig,
    auth: Option<BasicAuth>,
    /// Docker token auth; when set, basic auth is not used on `/v2/`.
    token: Option<TokenAuth>,
    metrics: Option<Metrics>,
    proxy: Option<Arc<crate::proxy::Proxy>>,
}

impl RegistryBuilder {
    /// The behaviour switches (default: [`RegistryConfig::default`]).
    pub fn config(mut self, config: RegistryConfig) -> RegistryBuilder {
        self.config = config;
        self
    }

    /// Answers only requests with valid basic-auth credentials when `auth` is given.
    pub fn basic_auth(mut self, auth: Option<BasicAuth>) -> RegistryBuilder {
        self.auth = auth;
        self
    }

    /// Makes the registry a pull-through cache of `proxy`'s upstream when given: pulls are
    /// served from storage or fetched from the upstream and stored, writes are refused.
    pub fn proxy(mut self, proxy: Option<crate::proxy::Proxy>) -> RegistryBuilder {
        self.proxy = proxy.map(Arc::new);
        self
    }

    /// Requires Docker token auth when `token` is given: `/token` issues tokens, `/v2/` wants
    /// them, and basic auth (if also set) is not used.
    pub fn token_auth(mut self, token: Option<TokenAuth>) -> RegistryBuilder {
        self.token = token;
        self
    }

    /// Serves `/metrics` unless `config` turns it off (default: on).
    pub fn metrics(mut self, config: MetricsConfig) -> RegistryBuilder {
        self.metrics = config.enabled.then(Metrics::new);
        self
    }

    pub fn build(self) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                storage: self.storage,
                config: self.config,
                auth: self.auth,
                token: self.token,
                metrics: self.metrics,
                proxy: self.proxy,
            }),
        }
    }
}

impl Registry {
    /// A registry with default configuration and no auth.
    pub fn new(storage: Arc<dyn RegistryStorage>, config: RegistryConfig) -> Registry {
        Registry::builder(storage).config(config).build()
    }

    /// Starts building a registry over `storage`.
    pub fn builder(storage: Arc<dyn RegistryStorage>) -> RegistryBuilder {
        RegistryBuilder {
            storage,
            config: RegistryConfig::default(),
            auth: None,
            token: None,
            metrics: Some(Metrics::new()),
            proxy: None,
        }
    }

    pub fn storage(&self) -> &Arc<dyn RegistryStorage> {
        &self.inner.storage
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The metrics `/metrics` serves, when on.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_ref()
    }

    /// The token auth, when on.
    pub fn token_auth(&self) -> Option<&TokenAuth> {
        self.inner.token.as_ref()
    }

    /// The HTTP application: every `/v2/` endpoint of distribution-spec 1.1.
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    fn storage_ref(&self) -> &dyn RegistryStorage {
        &*self.inner.storage
    }

    /// Refuses writes (and deletes) in read-only mode and on a mirror, which serves its
    /// upstream's content only.
    fn check_writable(&self) -> Result<(), ApiError> {
        if self.inner.proxy.is_some() {
            return Err(crate::proxy::writes_refused());
        }
        if self.inner.config.read_only {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "the registry is in read-only mode",
            ));
        }
        Ok(())
    }

    fn check_delete(&self) -> Result<(), ApiError> {
        self.check_writable()?;
        if !self.inner.config.delete_enabled {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "deletes are disabled on this registry",
            ));
        }
        Ok(())
    }
}

/// Which endpoint a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    Uploads(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, String),
}

fn route(path: &str) -> Result<Route, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NameUnknown, format!("no endpoint at {path}"));
    let rest = match path.strip_prefix("/v2") {
        Some("" | "/") => return Ok(Route::Base),
        Some(r) => r.strip_prefix('/').ok_or_else(not_found)?,
        None => return Err(not_found()),
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let name = |n: &str| {
        RepoName::parse(n).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NameInvalid,
                format!("invalid repository name {n:?}"),
            )
        })
    };
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name(n)?));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::Uploads(name(n)?));
    }
    let (head, last) = rest.rsplit_once('/').ok_or_else(not_found)?;
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        return Ok(Route::Upload(name(n)?, last.to_string()));
    }
    let (n, kind) = head.rsplit_once('/').ok_or_else(not_found)?;
    match kind {
        "manifests" => Ok(Route::Manifest(name(n)?, last.to_string())),
        "blobs" => Ok(Route::Blob(name(n)?, last.to_string())),
        "referrers" => Ok(Route::Referrers(name(n)?, last.to_string())),
        _ => Err(not_found()),
    }
}

async fn handle(State(reg): State<Registry>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let tracker: Option<Tracker> = reg
        .inner
        .metrics
        .as_ref()
        .map(|m| m.track(&method, crate::metrics::route_kind(uri.path())));
    let req = match &tracker {
        Some(t) => req.map(|b| t.count_body(b)),
        None => req,
    };
    let mut challenge: Option<String> = None;
    let result = route_request(&reg, req, &mut challenge).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if method == Method::HEAD {
                // HEAD answers carry no body (RFC 9110 §9.3.2).
                let mut r = e.into_response();
                *r.body_mut() = Body::empty();
                r
            } else {
                e.into_response()
            }
        }
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        match (&challenge, &reg.inner.auth) {
            (Some(c), _) => set_header(&mut resp, "www-authenticate", c),
            (None, Some(auth)) if reg.inner.token.is_none() => {
                set_header(&mut resp, "www-authenticate", &auth.challenge());
            }
            _ => {}
        }
    }
    resp.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    let size = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    tracing::info!(
        target: "hull_registry::access",
        "{} \"{} {}\" {} {} {}ms",
        peer.map_or_else(|| "-".to_string(), |p| p.ip().to_string()),
        method,
        uri,
        resp.status().as_u16(),
        size,
        started.elapsed().as_millis()
    );
    match tracker {
        Some(t) => {
            let status = resp.status().as_u16();
            resp.map(|b| t.finish(status, b))
        }
        None => resp,
    }
}

/// The endpoints besides `/v2/` (`/metrics`, `/token`, `/v1/search`), and authentication.
/// `challenge` receives the `WWW-Authenticate` value of a 401 when token auth sets one.
async fn route_request(
    reg: &Registry,
    req: Request,
    challenge: &mut Option<String>,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    if path == "/metrics"
        && let Some(m) = &reg.inner.metrics
    {
        let is_head = req.method() == Method::HEAD;
        if !(is_head || req.method() == Method::GET) {
            drain(req.into_body()).await;
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "metrics are read with GET",
            ));
        }
        let text = m.render();
        let len = text.len();
        let mut r = if is_head {
            Body::empty().into_response()
        } else {
            text.into_response()
        };
        set_header(&mut r, "content-type", crate::metrics::CONTENT_TYPE);
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return Ok(r);
    }
    match &reg.inner.token {
        Some(token) => {
            let realm = token.realm(
                request_host(&req).as_deref(),
                req.extensions().get::<Https>().is_some(),
            );
            if path == "/token" {
                return token_endpoint(token, req, challenge).await;
            }
            let authorization =
                header_str(req.headers(), header::AUTHORIZATION).map(str::to_string);
            if path == "/v1/search" {
                let need = [Access::new("registry", "catalog", &["search"])];
                let claims = match token.bearer(authorization.as_deref()).await {
                    Ok(c) => c,
                    Err(e) => {
                        drain(req.into_body()).await;
                        return Err(bearer_refused(token, &realm, &need, e, challenge));
                    }
                };
                let account = claims.account().map(str::to_string);
                return search_endpoint(reg, req, |n| token.may_pull(account.as_deref(), n)).await;
            }
            token_v2(reg, token, req, &realm, authorization.as_deref(), challenge).await
        }
        None => {
            if let Some(auth) = &reg.inner.auth
                && !auth
                    .check(header_str(req.headers(), header::AUTHORIZATION))
                    .await
            {
                drain(req.into_body()).await;
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "authentication required",
                ));
            }
            if path == "/v1/search" {
                return search_endpoint(reg, req, |_| true).await;
            }
            dispatch(reg, req).await
        }
    }
}

/// The host the client spoke to (`Host`, or the URI's authority under HTTP/2).
fn request_host(req: &Request) -> Option<String> {
    header_str(req.headers(), header::HOST)
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// The 401 for a request without a usable bearer token, its challenge set.
fn bearer_refused(
    token: &TokenAuth,
    realm: &str,
    need: &[Access],
    e: BearerError,
    challenge: &mut Option<String>,
) -> ApiError {
    let (error, message) = match e {
        BearerError::Missing => (None, "authentication required".to_string()),
        BearerError::Invalid(reason) => {
            tracing::debug!("refusing a bearer token: {reason}");
            (Some("invalid_token"), format!("invalid token: {reason}"))
        }
    };
    *challenge = Some(token.challenge(realm, need, error));
    ApiError::new(ErrorCode::Unauthorized, message)
}

/// What a `/v2/` request needs a token to grant (distribution's mapping: GET/HEAD pull,
/// writes pull and push, DELETE delete; cancelling an upload is part of pushing; the catalog
/// `registry:catalog:*`).
fn required_access(route: &Route, method: &Method) -> Vec<Access> {
    const PULL: &[&str] = &["pull"];
    const PUSH: &[&str] = &["pull", "push"];
    let repo =
        |n: &RepoName, actions: &[&str]| vec![Access::new("repository", n.as_str(), actions)];
    let reading = *method == Method::GET || *method == Method::HEAD;
    match route {
        Route::Base => Vec::new(),
        Route::Catalog => vec![Access::new("registry", "catalog", &["*"])],
        Route::Tags(n) | Route::Referrers(n, _) => repo(n, PULL),
        Route::Manifest(n, _) | Route::Blob(n, _) => match *method {
            _ if reading => repo(n, PULL),
            Method::DELETE => repo(n, &["delete"]),
            _ => repo(n, PUSH),
        },
        Route::Uploads(n) => repo(n, PUSH),
        Route::Upload(n, _) => repo(n, if reading { PULL } else { PUSH }),
    }
}

/// A `/v2/` request under token auth: the token must grant what the request needs.
async fn token_v2(
    reg: &Registry,
    token: &TokenAuth,
    mut req: Request,
    realm: &str,
    authorization: Option<&str>,
    challenge: &mut Option<String>,
) -> Result<Response, ApiError> {
    let route = match route(req.uri().path()) {
        Ok(r) => r,
        Err(e) => {
            drain(req.into_body()).await;
            return Err(e);
        }
    };
    let method = req.method().clone();
    let need = required_access(&route, &method);
    let claims = match token.bearer(authorization).await {
        Ok(c) => c,
        Err(e) => {
            drain(req.into_body()).await;
            return Err(bearer_refused(token, realm, &need, e, challenge));
        }
    };
    if let Some(missing) = need
        .iter()
        .find(|a| !a.actions.iter().all(|x| claims.allows(&a.kind, &a.name, x)))
    {
        *challenge = Some(token.challenge(realm, &need, Some("insufficient_scope")));
        drain(req.into_body()).await;
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!("the token does not grant {}", missing.scope()),
        ));
    }
    if matches!(route, Route::Uploads(_)) && method == Method::POST {
        // A mount from a repository the token may not pull becomes a plain upload (202): the
        // blob is never linked from a repository the caller cannot read.
        let query = Query::parse(req.uri().query());
        if query.get("mount").is_some()
            && let Some(from) = query.get("from").and_then(RepoName::parse)
            && !claims.allows("repository", from.as_str(), "pull")
        {
            without_mount(&mut req, &query);
        }
    }
    dispatch(reg, req).await
}

/// Drops the `mount` and `from` parameters of a request.
fn without_mount(req: &mut Request, query: &Query) {
    let kept: Vec<String> = query
        .0
        .iter()
        .filter(|(k, _)| k != "mount" && k != "from")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let path = req.uri().path().to_string();
    let pq = if kept.is_empty() {
        path
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    if let Ok(uri) = pq.parse::<axum::http::Uri>() {
        *req.uri_mut() = uri;
    }
}

/// Largest `POST /token` form read.
const MAX_TOKEN_FORM: u64 = 64 * 1024;

/// `GET /token` (basic credentials or anonymous) and `POST /token` (OAuth2 password grant).
async fn token_endpoint(
    token: &TokenAuth,
    req: Request,
    challenge: &mut Option<String>,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let refused = |challenge: &mut Option<String>| {
        *challenge = Some(format!(
            "Basic realm=\"{}\"",
            token.config().service.replace('"', "")
        ));
        ApiError::new(ErrorCode::Unauthorized, "invalid username or password")
    };
    let (params, account) = match method {
        Method::GET => {
            drain(body).await;
            let account = token
                .authenticate(header_str(&parts.headers, header::AUTHORIZATION))
                .await
                .map_err(|()| refused(challenge))?;
            (Query::parse(parts.uri.query()), account)
        }
        Method::POST => {
            let form = read_limited(body, MAX_TOKEN_FORM).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::SizeInvalid, "token request form too large")
            })?;
            let form = Query::parse(Some(&String::from_utf8_lossy(&form)));
            if form.get("grant_type") != Some("password") {
                return Err(ApiError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "grant type {:?} is not supported (password only)",
                        form.get("grant_type").unwrap_or_default()
                    ),
                ));
            }
            let user = form.get("username").unwrap_or_default();
            let pass = form.get("password").unwrap_or_default();
            if !token.check_password(user, pass).await {
                return Err(refused(challenge));
            }
            let user = user.to_string();
            (form, Some(user))
        }
        _ => {
            drain(body).await;
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "tokens are requested with GET or POST",
            ));
        }
    };
    if let Some(service) = params.get("service")
        && service != token.config().service
    {
        return Err(ApiError::new(
            ErrorCode::Denied,
            format!(
                "tokens are issued for service {:?}, not {service:?}",
                token.config().service
            ),
        ));
    }
    let scopes: Vec<Access> = params
        .0
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| Access::parse_scopes(v))
        .collect();
    let issued = token
        .issue(account.as_deref(), &scopes)
        .map_err(|e| ApiError::new(ErrorCode::Unknown, e.to_string()))?;
    let mut r = json_response(StatusCode::OK, crate::token::reply_json(&issued), false);
    set_header(&mut r, "cache-control", "no-store");
    Ok(r)
}

/// `GET /v1/search`, listing the repositories `visible` lets through.
async fn search_endpoint(
    reg: &Registry,
    req: Request,
    visible: impl Fn(&RepoName) -> bool,
) -> Result<Response, ApiError> {
    let is_head = req.method() == Method::HEAD;
    if !(is_head || req.method() == Method::GET) {
        drain(req.into_body()).await;
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "search is read with GET",
        ));
    }
    let query = Query::parse(req.uri().query());
    let q = crate::search::SearchQuery::parse(query.get("q"), query.get("n"), query.get("page"))
        .map_err(|m| ApiError::new(ErrorCode::PaginationNumberInvalid, m))?;
    let results = crate::search::search(reg.storage_ref(), &q, visible)
        .await
        .map_err(|e| match e {
            crate::search::SearchError::Storage(s) => ApiError::from(s),
            other => ApiError::new(ErrorCode::Unknown, other.to_string()),
        })?;
    let body = serde_json::to_string(&results)
        .map_err(|e| ApiError::new(ErrorCode::Unknown, format!("encoding search results: {e}")))?;
    Ok(json_response(StatusCode::OK, body, is_head))
}

async fn dispatch(reg: &Registry, req: Request) -> Result<Response, ApiError> {
    let route = route(req.uri().path())?;
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let mut body = Some(body);
    let result = dispatch_route(reg, route, method, &query, &headers, &mut body).await;
    if result.is_err()
        && let Some(b) = body
    {
        drain(b).await;
    }
    result
}

async fn dispatch_route(
    reg: &Registry,
    route: Route,
    method: Method,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let unsupported = || {
        Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported here"),
        ))
    };
    let is_head = method == Method::HEAD;
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, "{}".into(), is_head)),
            _ => unsupported(),
        },
        Route::Catalog => match method {
            Method::GET => lists::catalog(reg, query).await,
            _ => unsupported(),
        },
        Route::Tags(name) => match method {
            Method::GET => lists::tags(reg, &name, query).await,
            _ => unsupported(),
        },
        Route::Referrers(name, d) => match method {
            Method::GET => lists::referrers(reg, &name, &d, query).await,
            _ => unsupported(),
        },
        Route::Manifest(name, r) => match method {
            Method::GET | Method::HEAD => manifests::get(reg, &name, &r, is_head).await,
            Method::PUT => manifests::put(reg, &name, &r, headers, body).await,
            Method::DELETE => manifests::delete(reg, &name, &r).await,
            _ => unsupported(),
        },
        Route::Blob(name, d) => match method {
            Method::GET | Method::HEAD => blobs::get(reg, &name, &d, headers, is_head).await,
            Method::DELETE => blobs::delete(reg, &name, &d).await,
            _ => unsupported(),
        },
        Route::Uploads(name) => match method {
            Method::POST => blobs::start_upload(reg, &name, query, headers, body).await,
            _ => unsupported(),
        },
        Route::Upload(name, id) => match method {
            Method::GET => blobs::upload_status(reg, &name, &id).await,
            Method::PATCH => blobs::patch_upload(reg, &name, &id, headers, body).await,
            Method::PUT => blobs::finish_upload(reg, &name, &id, query, headers, body).await,
            Method::DELETE => blobs::cancel_upload(reg, &name, &id).await,
            _ => unsupported(),
        },
    }
}

/// Decoded query parameters (form encoding: `+` is a space, as Go's `url.Values` reads it).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let v = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match v {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query value (letters, digits and `-._~` kept, everything else `%XX`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// The request body, taken by the handler that consumes it (what is left after an error is
/// drained by [`dispatch`]).
fn take(slot: &mut Option<Body>) -> Body {
    slot.take().unwrap_or_default()
}

/// Most of an unread request body read and dropped after an error, and for how long.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and drops what is left of a request body answered with an error, so that the client
/// can read the answer: a server that replies and closes while a client is still sending makes
/// that client fail with a broken pipe instead. Bodies larger than 16 MiB are cut off.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut seen: u64 = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

fn body_stream(body: Body) -> ByteStream {
    body.into_data_stream().map_err(io::Error::other).boxed()
}

/// How much of a too-large body is read and dropped before answering, as a multiple of the
/// limit: answering before the client has sent its body makes it fail with a broken pipe
/// instead of reading the error, so modest excess is drained; more closes the connection.
pub(crate) const DRAIN_FACTOR: u64 = 4;

/// Reads a request body of at most `limit` bytes; `None` when it is larger.
async fn read_limited(body: Body, limit: u64) -> Result<Option<Bytes>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("reading the request body: {e}"),
            )
        })?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit.saturating_mul(DRAIN_FACTOR) {
            return Ok(None);
        }
        if seen <= limit {
            out.extend_from_slice(&chunk);
        }
    }
    Ok((seen <= limit).then(|| Bytes::from(out)))
}

/// Creates the empty marker object `key` unless it exists (saving the fsyncs of a rewrite).
async fn ensure(reg: &Registry, key: &crate::storage::Key) -> Result<(), ApiError> {
    let s = reg.storage_ref();
    if s.stat(key).await?.is_none() {
        s.put(key, Bytes::new()).await?;
    }
    Ok(())
}

fn json_response(status: StatusCode, body: String, is_head: bool) -> Response {
    let len = body.len();
    let mut r = if is_head {
        (status, Body::empty()).into_response()
    } else {
        (status, body).into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Serves `router` over plain HTTP (1.1 and h2c) on `listener` until `shutdown` completes,
/// then stops accepting, lets requests in flight finish (for up to 10 s) and returns. Each
/// request carries its [`Peer`]; connection tasks run with the caller's `tracing` subscriber,
/// so access log lines go where the caller's diagnostics go.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    accept_loop(listener, router, None, shutdown).await
}

/// [`serve`] over TLS (see [`crate::tls::server_config`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    accept_loop(
        listener,
        router,
        Some(tokio_rustls::TlsAcceptor::from(tls)),
        shutdown,
    )
    .await
}

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The send buffer of a connection from a loopback address. Autotuning grows a loopback
/// socket's buffer to megabytes although the round trip is microseconds, and the bytes then
/// leave the CPU cache between the server's copy in and the client's copy out: capped at
/// 512 KiB (the kernel doubles it), blob GETs on `bench/registry` went from about 1.45× to
/// 1.6–1.7× the CNCF registry's rate. Remote connections keep autotuning, which a long round
/// trip needs.
const LOOPBACK_SEND_BUFFER: usize = 512 * 1024;

async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower_service::Service as _;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that opens a connection and sends no complete request head is dropped.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Responses go out as headers then body: without NODELAY the body waits for the
                // client's delayed ACK (about 40 ms a request).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!("setting TCP_NODELAY for {addr}: {e}");
                }
                if addr.ip().is_loopback() {
                    // See LOOPBACK_SEND_BUFFER.
                    if let Err(e) = rustix::net::sockopt::set_socket_send_buffer_size(&stream, LOOPBACK_SEND_BUFFER) {
                        tracing::debug!("setting SO_SNDBUF for {addr}: {e}");
                    }
                }
                let router = router.clone();
                let https = tls.is_some();
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(addr));
                    if https {
                        req.extensions_mut().insert(Https);
                    }
                    let mut router = router.clone();
                    async move { router.call(req.map(Body::new)).await }
                });
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let tls = tls.clone();
                tokio::spawn(
                    async move {
                        let result = match tls {
                            None => {
                                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                watcher.watch(conn.into_owned()).await
                            }
                            Some(acceptor) => {
                                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::debug!("TLS handshake with {addr}: {e}");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!("TLS handshake with {addr} timed out");
                                        return;
                                    }
                                };
                                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                watcher.watch(conn.into_owned()).await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!("connection from {addr}: {e}");
                        }
                    }
                    .with_current_subscriber(),
                );
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(route("/v2/").unwrap(), Route::Base);
        assert_eq!(route("/v2").unwrap(), Route::Base);
        assert_eq!(route("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            route("/v2/a/b/tags/list").unwrap(),
            Route::Tags(name("a/b"))
        );
        assert_eq!(
            route("/v2/a/manifests/latest").unwrap(),
            Route::Manifest(name("a"), "latest".into())
        );
        // a repository may be called `blobs` or `manifests`
        assert_eq!(
            route("/v2/x/manifests/blobs/sha256:ab").unwrap(),
            Route::Blob(name("x/manifests"), "sha256:ab".into())
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/").unwrap(),
            Route::Uploads(name("a"))
        );
        assert_eq!(
            route("/v2/a/blobs/uploads").unwrap(),
            Route::Uploads(name("a"))
        );
        assert_eq!(
            route("/v2/a/b/blobs/uploads/abc").unwrap(),
            Route::Upload(name("a/b"), "abc".into())
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:ab").unwrap(),
            Route::Referrers(name("a"), "sha256:ab".into())
        );
        for bad in [
            "/v2/A/manifests/x",
            "/v2/../manifests/x",
            "/v2/a/../b/tags/list",
        ] {
            assert_eq!(
                route(bad).unwrap_err().code,
                ErrorCode::NameInvalid,
                "{bad}"
            );
        }
        for unknown in ["/", "/v1/", "/v2x", "/v2/a", "/v2/a/foo/x"] {
            assert!(route(unknown).is_err(), "{unknown}");
        }
    }

    #[test]
    fn queries_decode_like_go() {
        let q = Query::parse(Some("digest=sha256%3Aab&n=2&artifactType=a%2Bb+c&empty"));
        assert_eq!(q.get("digest"), Some("sha256:ab"));
        assert_eq!(q.get("n"), Some("2"));
        assert_eq!(q.get("artifactType"), Some("a+b c"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(percent_encode("a/b:c+d"), "a%2Fb%3Ac%2Bd");
    }
}
