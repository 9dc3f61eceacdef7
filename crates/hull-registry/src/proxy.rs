//! Pull-through cache mode (distribution's `proxy.remoteurl`): the registry mirrors one upstream
//! registry on demand and holds what was pulled through it.
//!
//! - A manifest by tag: the cached tag is served while it is younger than the TTL; after that
//!   the upstream is asked (HEAD) for the tag's current digest, and the manifest fetched if it
//!   is new. An unreachable upstream does not stop pulls of what is cached.
//! - A manifest by digest: served from storage, else fetched from the upstream, verified,
//!   stored and then served.
//! - A blob: served from storage, else fetched from the upstream once, streaming into storage
//!   through the hasher (never held whole). The request that starts the fetch gets the bytes as
//!   they arrive, all but the last chunk, which it gets once storage has verified the digest
//!   (so a client never completes a body the mirror refused); concurrent requests for the same
//!   blob wait for that fetch and are served from storage. A fetch runs to the end even if its
//!   client goes away. A `HEAD` of a blob not cached asks the upstream for its size and
//!   fetches nothing.
//! - Referrers (`/v2/<name>/referrers/<digest>`): the upstream's list, asked each time (a new
//!   signature may appear upstream at any moment); when the upstream cannot be asked or has no
//!   referrers API, the referrers the mirror has cached.
//! - Bytes are never rewritten: a manifest is stored and served exactly as the upstream
//!   served it, so digests and signatures stay valid.
//! - Pushes and deletes are refused with `UNSUPPORTED`, as distribution does; the catalog and
//!   tag lists show what is cached.
//!
//! Upstream requests go through `hull-distribution`'s [`RegistryClient`] (scheme choice, Basic
//! and token auth, retries), with a private credentials directory: only the credentials of
//! [`ProxyConfig`] are ever sent, never the host's `~/.docker/config.json`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt as _, TryStreamExt as _};
use hull_distribution::{
    BlobOptions, ClientConfig, Credential, DistributionError, FetchedManifest, RegistryClient,
};
use hull_oci::{Digest, Reference};
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::layout;
use crate::names::{RepoName, Tag};
use crate::storage::{ByteStream, Expected, RegistryStorage, once};

/// Largest tag link read.
const MAX_LINK_SIZE: u64 = 4096;

fn default_tag_ttl() -> u64 {
    60
}

/// The upstream a registry mirrors (the `[proxy]` table of `hull serve`'s config file).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxyConfig {
    /// The upstream's URL: `https://registry-1.docker.io`, `http://127.0.0.1:5000`. Plain
    /// http is used only when the URL says so (or the upstream is on loopback).
    pub remote: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// How long a cached tag is served without asking the upstream (default 60 s; 0 asks on
    /// every pull).
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl_secs: u64,
}

impl ProxyConfig {
    /// Mirrors `remote` anonymously with the default TTL.
    pub fn new(remote: impl Into<String>) -> ProxyConfig {
        ProxyConfig {
            remote: remote.into(),
            username: None,
            password: None,
            tag_ttl_secs: default_tag_ttl(),
        }
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("remote", &self.remote)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("tag_ttl_secs", &self.tag_ttl_secs)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy remote {remote:?}: {reason}")]
    InvalidRemote { remote: String, reason: String },
    #[error("proxy remote {remote}: a username needs a password and a password a username")]
    IncompleteCredentials { remote: String },
    #[error("keeping the credentials for proxy remote {remote}: {reason}")]
    Credentials { remote: String, reason: String },
    #[error("setting up the client of proxy remote {remote}")]
    Client {
        remote: String,
        #[source]
        source: Box<DistributionError>,
    },
}

/// A pull-through cache's view of its upstream; given to [`crate::RegistryBuilder::proxy`].
pub struct Proxy {
    client: RegistryClient,
    /// `host[:port]` as references name it.
    registry: String,
    remote: String,
    tag_ttl: Duration,
    /// One lock per blob being fetched.
    fetches: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// The client's private credentials directory, removed with the proxy.
    _config_dir: tempfile::TempDir,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("remote", &self.remote)
            .field("tag_ttl", &self.tag_ttl)
            .finish_non_exhaustive()
    }
}

/// `(host[:port], plain http)` of a remote URL.
fn parse_remote(remote: &str) -> Result<(String, bool), ProxyError> {
    let invalid = |reason: &str| ProxyError::InvalidRemote {
        remote: remote.to_string(),
        reason: reason.to_string(),
    };
    let (plain, rest) = if let Some(r) = remote.strip_prefix("https://") {
        (false, r)
    } else if let Some(r) = remote.strip_prefix("http://") {
        (true, r)
    } else {
        return Err(invalid("it must start with https:// or http://"));
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(invalid("it names no host"));
    }
    if host.contains(['/', '?', '#', '@']) || host.chars().any(char::is_whitespace) {
        return Err(invalid("only scheme://host[:port] is supported"));
    }
    let host = match host.to_ascii_lowercase().as_str() {
        "registry-1.docker.io" | "index.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    };
    Ok((host, plain))
}

fn upstream_error(remote: &str, what: &str, e: DistributionError) -> ApiError {
    let code = match &e {
        DistributionError::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
        DistributionError::BlobUnknown { .. } => ErrorCode::BlobUnknown,
        DistributionError::RepositoryUnknown { .. } => ErrorCode::NameUnknown,
        _ => ErrorCode::Unknown,
    };
    if code == ErrorCode::Unknown {
        tracing::warn!("proxy: {what} from {remote}: {e}");
    }
    ApiError::new(code, format!("{what} from upstream {remote}: {e}"))
}

/// The error a write to a mirror gets.
pub(crate) fn writes_refused() -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        "this registry is a pull-through cache: pushes and deletes are not supported",
    )
}

impl Proxy {
    /// Checks the configuration and prepares the upstream client (nothing is contacted yet).
    pub fn new(config: &ProxyConfig) -> Result<Proxy, ProxyError> {
        let (registry, plain) = parse_remote(&config.remote)?;
        let probe = Reference::new(&registry, "library/probe", None, None).map_err(|e| {
            ProxyError::InvalidRemote {
                remote: config.remote.clone(),
                reason: e.to_string(),
            }
        })?;
        if probe.registry() != registry {
            return Err(ProxyError::InvalidRemote {
                remote: config.remote.clone(),
                reason: "the host is not a registry host name".to_string(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("hull-proxy-")
            .tempdir()
            .map_err(|e| ProxyError::Credentials {
                remote: config.remote.clone(),
                reason: e.to_string(),
            })?;
        match (&config.username, &config.password) {
            (Some(u), Some(p)) => {
                hull_distribution::credentials::store(
                    dir.path(),
                    &registry,
                    &Credential::new(u, p),
                )
                .map_err(|e| ProxyError::Credentials {
                    remote: config.remote.clone(),
                    reason: e.to_string(),
                })?;
            }
            (None, None) => {}
            _ => {
                return Err(ProxyError::IncompleteCredentials {
                    remote: config.remote.clone(),
                });
            }
        }
        let client = RegistryClient::new(ClientConfig {
            insecure_registries: if plain {
                vec![registry.clone()]
            } else {
                Vec::new()
            },
            docker_config_dir: Some(dir.path().to_path_buf()),
            // A pull waiting on a dead upstream should soon fall back to the cache.
            max_retries: 2,
            retry_base_delay: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        })
        .map_err(|source| ProxyError::Client {
            remote: config.remote.clone(),
            source: Box::new(source),
        })?;
        Ok(Proxy {
            client,
            registry,
            remote: config.remote.clone(),
            tag_ttl: Duration::from_secs(config.tag_ttl_secs),
            fetches: Mutex::new(HashMap::new()),
            _config_dir: dir,
        })
    }

    /// The upstream's URL, as configured.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    fn reference(
        &self,
        name: &RepoName,
        tag: Option<&Tag>,
        digest: Option<&Digest>,
    ) -> Result<Reference, ApiError> {
        Reference::new(
            &self.registry,
            name.as_str(),
            tag.map(Tag::as_str),
            digest.cloned(),
        )
        .map_err(|e| {
            ApiError::new(
                ErrorCode::NameInvalid,
                format!("{name} cannot be mirrored from {}: {e}", self.remote),
            )
        })
    }

    /// Whether the repository holds the manifest (its revision link and its bytes).
    async fn has_manifest(
        storage: &dyn RegistryStorage,
        name: &RepoName,
        d: &Digest,
    ) -> Result<bool, ApiError> {
        Ok(storage
            .stat(&layout::manifest_link(name, d)?)
            .await?
            .is_some()
            && storage.stat(&layout::blob(d)?).await?.is_some())
    }

    async fn store_manifest(
        storage: &dyn RegistryStorage,
        name: &RepoName,
        m: &FetchedManifest,
    ) -> Result<(), ApiError> {
        storage
            .put_stream(
                &layout::blob(&m.digest)?,
                once(m.bytes.clone()),
                &Expected {
                    digest: m.digest.clone(),
                    size: Some(m.bytes.len() as u64),
                },
            )
            .await?;
        storage
            .put(
                &layout::manifest_link(name, &m.digest)?,
                bytes::Bytes::from(m.media_type.clone()),
            )
            .await?;
        // A referrer (a signature, an SBOM) is listed for its subject as a push would list it,
        // so the mirror's own list holds it when the upstream cannot be asked.
        if let Ok(parsed) = hull_oci::ParsedManifest::from_slice(&m.bytes, Some(&m.media_type)) {
            let subject = match &parsed {
                hull_oci::ParsedManifest::Image(i) => i.subject.clone(),
                hull_oci::ParsedManifest::Index(i) => i.subject.clone(),
            };
            if let Some(s) = subject {
                let desc = crate::server::referrer_descriptor(
                    &parsed,
                    &m.media_type,
                    &m.digest,
                    m.bytes.len() as u64,
                );
                if let Ok(json) = serde_json::to_vec(&desc) {
                    storage
                        .put(
                            &layout::referrer(name, &s.digest, &m.digest)?,
                            bytes::Bytes::from(json),
                        )
                        .await?;
                }
            }
        }
        ensure(storage, &layout::catalog_marker(name)?).await
    }

    /// Makes sure the repository holds manifest `d`, fetching it from the upstream if not.
    pub(crate) async fn cache_manifest(
        &self,
        storage: &dyn RegistryStorage,
        name: &RepoName,
        d: &Digest,
    ) -> Result<(), ApiError> {
        if Self::has_manifest(storage, name, d).await? {
            return Ok(());
        }
        let r = self.reference(name, None, Some(d))?;
        // The client checks the bytes against the digest asked for.
        let m = self
            .client
            .get_manifest(&r)
            .await
            .map_err(|e| upstream_error(&self.remote, &format!("fetching manifest {r}"), e))?;
        Self::store_manifest(storage, name, &m).await
    }

    /// The digest tag `t` names: the cached one while it is younger than the TTL or while the
    /// upstream cannot be reached, else the upstream's (its manifest cached). `None` when
    /// neither knows the tag.
    pub(crate) async fn resolve_tag(
        &self,
        storage: &dyn RegistryStorage,
        name: &RepoName,
        t: &Tag,
    ) -> Result<Option<Digest>, ApiError> {
        let key = layout::tag(name, t)?;
        let cached = match storage.stat(&key).await? {
            None => None,
            Some(meta) => storage
                .get_bytes(&key, MAX_LINK_SIZE)
                .await?
                .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<Digest>().ok())
                .map(|d| (d, meta.modified)),
        };
        if let Some((d, when)) = &cached {
            // A clock ahead of ours (an object store's) makes the tag fresh, not stale.
            let fresh = SystemTime::now()
                .duration_since(*when)
                .map_or(true, |age| age < self.tag_ttl);
            if fresh && Self::has_manifest(storage, name, d).await? {
                return Ok(Some(d.clone()));
            }
        }
        let r = self.reference(name, Some(t), None)?;
        match self.client.head_manifest(&r).await {
            Ok(Some((d, _, _))) => {
                self.cache_manifest(storage, name, &d).await?;
                // Rewritten even when unchanged: its age is when the upstream last confirmed it.
                storage.put(&key, bytes::Bytes::from(d.to_string())).await?;
                Ok(Some(d))
            }
            Ok(None) => Ok(None),
            Err(e) => match cached {
                Some((d, _)) if Self::has_manifest(storage, name, &d).await? => {
                    tracing::warn!(
                        "proxy: serving cached {name}:{t}, upstream {} did not answer: {e}",
                        self.remote
                    );
                    Ok(Some(d))
                }
                _ => Err(upstream_error(
                    &self.remote,
                    &format!("resolving tag {r}"),
                    e,
                )),
            },
        }
    }

    fn flight(&self, d: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(d.clone()).or_default())
    }

    fn land(&self, d: &Digest, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(d).is_some_and(|l| Arc::ptr_eq(l, lock)) {
            map.remove(d);
        }
    }

    /// The upstream's referrers of manifest `subject` in `name` (filtered by `artifact_type`);
    /// `None` when the upstream does not offer the referrers API or cannot be reached, and
    /// the mirror answers from what it holds. The list is not stored: referrers come and go
    /// upstream (a new signature), and the manifests it names are cached when pulled.
    pub(crate) async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Option<Vec<hull_oci::Descriptor>> {
        let repo = self.reference(name, None, None).ok()?;
        match self.client.referrers(&repo, subject, artifact_type).await {
            Ok(list) => list,
            Err(e) => {
                tracing::debug!(
                    "proxy: referrers of {name}@{subject} from {}: {e}",
                    self.remote
                );
                None
            }
        }
    }

    /// Makes sure the repository holds blob `d`, fetching it from the upstream if not (see the
    /// module docs). `how` says what the request may take: only the upstream's size (`HEAD`),
    /// the stored blob, or (a whole-blob `GET`) a stream of the fetch it starts.
    pub(crate) async fn cache_blob(
        self: &Arc<Self>,
        storage: &Arc<dyn RegistryStorage>,
        name: &RepoName,
        d: &Digest,
        how: BlobWant,
    ) -> Result<CachedBlob, ApiError> {
        let link = layout::layer_link(name, d)?;
        let blob = layout::blob(d)?;
        let linked = |s: &Arc<dyn RegistryStorage>| {
            let (s, link, blob) = (Arc::clone(s), link.clone(), blob.clone());
            async move {
                Ok::<bool, ApiError>(
                    (s.stat(&link).await?.is_some()
                        || s.stat(&layout::manifest_link(name, d)?).await?.is_some())
                        && s.stat(&blob).await?.is_some(),
                )
            }
        };
        if linked(storage).await? {
            return Ok(CachedBlob::Stored);
        }
        let repo = self.reference(name, None, None)?;
        let what = format!("blob {}@{d}", repo.name());
        if how == BlobWant::Size {
            return match self.client.blob_size(&repo, d).await {
                Ok(Some(size)) => Ok(CachedBlob::Upstream(size)),
                Ok(None) => Err(ApiError::new(
                    ErrorCode::BlobUnknown,
                    format!("blob {d} not found in {name}"),
                )),
                Err(e) => Err(upstream_error(&self.remote, &format!("checking {what}"), e)),
            };
        }
        let lock = self.flight(d);
        let guard = Arc::clone(&lock).lock_owned().await;
        if linked(storage).await? {
            drop(guard);
            self.land(d, &lock);
            return Ok(CachedBlob::Stored);
        }
        if how == BlobWant::Stream && storage.stat(&blob).await?.is_none() {
            let opened = self
                .client
                .get_blob(&repo, d, 0, BlobOptions::default())
                .await
                .map_err(|e| upstream_error(&self.remote, &format!("fetching {what}"), e));
            let upstream = match opened {
                Ok(s) => s,
                Err(e) => {
                    drop(guard);
                    self.land(d, &lock);
                    return Err(e);
                }
            };
            let size = upstream.total();
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
            let this = Arc::clone(self);
            let storage = Arc::clone(storage);
            let name = name.clone();
            let d = d.clone();
            let lock = Arc::clone(&lock);
            let body: ByteStream = upstream.map_err(std::io::Error::other).boxed();
            tokio::spawn(async move {
                this.tee_blob(&*storage, &name, &d, size, body, tx).await;
                this.land(&d, &lock);
                drop(guard);
            });
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .boxed();
            return Ok(CachedBlob::Streaming { size, body });
        }
        // The fetch runs on its own, holding the lock: a client that goes away does not
        // waste the download of those waiting for it.
        let task = {
            let this = Arc::clone(self);
            let storage = Arc::clone(storage);
            let name = name.clone();
            let d = d.clone();
            let lock = Arc::clone(&lock);
            tokio::spawn(async move {
                let r = this.fetch_blob(&*storage, &name, &repo, &d).await;
                this.land(&d, &lock);
                drop(guard);
                r
            })
        };
        match task.await {
            Ok(r) => r.map(|()| CachedBlob::Stored),
            Err(e) => Err(ApiError::new(
                ErrorCode::Unknown,
                format!("fetching {what}: {e}"),
            )),
        }
    }

    async fn fetch_blob(
        &self,
        storage: &dyn RegistryStorage,
        name: &RepoName,
        repo: &Reference,
        d: &Digest,
    ) -> Result<(), ApiError> {
        let what = format!("fetching blob {}@{d}", repo.name());
        let blob = layout::blob(d)?;
        if storage.stat(&blob).await?.is_none() {
            let stream = self
                .client
                .get_blob(repo, d, 0, BlobOptions::default())
                .await
                .map_err(|e| upstream_error(&self.remote, &what, e))?;
            let expected = Expected {
                digest: d.clone(),
                size: stream.total(),
            };
            let body: ByteStream = stream.map_err(std::io::Error::other).boxed();
            storage
                .put_stream(&blob, body, &expected)
                .await
                .map_err(|e| {
                    tracing::warn!("proxy: {what} from {}: {e}", self.remote);
                    ApiError::new(
                        ErrorCode::Unknown,
                        format!("{what} from upstream {}: {e}", self.remote),
                    )
                })?;
        } else {
            // Stored for another repository: the upstream must say this one holds it too.
            match self.client.blob_size(repo, d).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(ApiError::new(
                        ErrorCode::BlobUnknown,
                        format!("blob {d} not found in {name}"),
                    ));
                }
                Err(e) => return Err(upstream_error(&self.remote, &what, e)),
            }
        }
        ensure(storage, &layout::layer_link(name, d)?).await?;
        ensure(storage, &layout::catalog_marker(name)?).await
    }

    /// Stores the upstream's `body` of blob `d` for `name`, sending its chunks to `client` as
    /// they pass, except the last, which follows only when storage has verified and linked the
    /// blob; on any failure the client gets an error instead, and its response is cut short.
    async fn tee_blob(
        &self,
        storage: &dyn RegistryStorage,
        name: &RepoName,
        d: &Digest,
        size: Option<u64>,
        mut body: ByteStream,
        client: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    ) {
        let what = format!("fetching blob {name}@{d}");
        let blob = match layout::blob(d) {
            Ok(b) => b,
            Err(e) => {
                let _ = client.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        let (to_store, from_pump) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
        let stored_body: ByteStream =
            futures_util::stream::unfold(from_pump, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .boxed();
        let expected = Expected {
            digest: d.clone(),
            size,
        };
        let store = storage.put_stream(&blob, stored_body, &expected);
        let pump = async {
            let mut held: Option<bytes::Bytes> = None;
            let mut client = Some(&client);
            while let Some(item) = body.next().await {
                let chunk = match item {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = to_store.send(Err(e)).await;
                        break;
                    }
                };
                if to_store.send(Ok(chunk.clone())).await.is_err() {
                    // Storage gave up (it says why).
                    break;
                }
                if let Some(prev) = held.replace(chunk)
                    && let Some(c) = client
                    && c.send(Ok(prev)).await.is_err()
                {
                    // The client went away; the fetch goes on for the cache.
                    client = None;
                }
            }
            drop(to_store);
            (held, client.is_some())
        };
        let (stored, (held, client_alive)) = tokio::join!(store, pump);
        let linked = match stored {
            Ok(_) => async {
                ensure(storage, &layout::layer_link(name, d)?).await?;
                ensure(storage, &layout::catalog_marker(name)?).await
            }
            .await
            .map_err(|e| e.to_string()),
            Err(e) => {
                tracing::warn!("proxy: {what} from {}: {e}", self.remote);
                Err(format!("{what} from upstream {}: {e}", self.remote))
            }
        };
        if !client_alive {
            return;
        }
        let last = match linked {
            Ok(()) => held.map(Ok),
            Err(e) => Some(Err(std::io::Error::other(e))),
        };
        if let Some(item) = last {
            let _ = client.send(item).await;
        }
    }
}

/// What a blob request may take from [`Proxy::cache_blob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobWant {
    /// A `HEAD`: the upstream's size of a blob not cached; nothing is fetched.
    Size,
    /// The blob in storage (a range, or a request that cannot stream).
    Stored,
    /// A whole-blob `GET`: the blob in storage, or a stream of the fetch this request starts.
    Stream,
}

/// What [`Proxy::cache_blob`] made of a blob request.
pub(crate) enum CachedBlob {
    /// The blob is in storage and linked to the repository.
    Stored,
    /// Not cached; the upstream has it with this size (answer to [`BlobWant::Size`]).
    Upstream(u64),
    /// The fetch this request started, as it arrives (see [`Proxy::tee_blob`]).
    Streaming { size: Option<u64>, body: ByteStream },
}

/// Creates the empty marker object `key` unless it exists.
async fn ensure(storage: &dyn RegistryStorage, key: &crate::storage::Key) -> Result<(), ApiError> {
    if storage.stat(key).await?.is_none() {
        storage.put(key, bytes::Bytes::new()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_parse() {
        assert_eq!(
            parse_remote("http://127.0.0.1:5000").unwrap(),
            ("127.0.0.1:5000".to_string(), true)
        );
        assert_eq!(
            parse_remote("https://registry-1.docker.io/").unwrap(),
            ("docker.io".to_string(), false)
        );
        for bad in [
            "127.0.0.1:5000",
            "ftp://x",
            "https://",
            "https://a/b",
            "https://u@host",
        ] {
            assert!(parse_remote(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_reads_toml_names_and_hides_the_password() {
        let c: ProxyConfig = serde_json::from_value(serde_json::json!({
            "remote": "https://r.example",
            "username": "u",
            "password": "p4ss",
        }))
        .unwrap();
        assert_eq!(c.tag_ttl_secs, 60);
        assert!(!format!("{c:?}").contains("p4ss"));
        let mut half = c.clone();
        half.password = None;
        assert!(matches!(
            Proxy::new(&half),
            Err(ProxyError::IncompleteCredentials { .. })
        ));
        assert!(matches!(
            Proxy::new(&ProxyConfig::new("https://nohost")),
            Err(ProxyError::InvalidRemote { .. })
        ));
        Proxy::new(&c).unwrap();
    }
}
