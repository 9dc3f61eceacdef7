//! Pushing: blob upload sessions (distribution spec "Pushing blobs": monolithic `POST` + `PUT`,
//! chunked `PATCH` with `Content-Range`, resume from the registry's `Range`), cross-repository
//! mounts (`POST ?mount=&from=`; 201 mounted, 202 an upload to continue instead), and manifests.
//!
//! Bodies stream from a file (never a whole blob in memory). A request carrying a body is sent
//! once: a failure is retried by asking the session where it stands and sending the rest, or by
//! starting a new session when the registry has forgotten or invalidated it (distribution 2.8
//! cancels a session whose state it cannot trust, e.g. after a half-received chunk).

use std::io::{Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use hull_oci::{Digest, Reference, media_type};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::io::AsyncReadExt as _;

use crate::auth::{mount_scope, push_scope};
use crate::client::{RegistryClient, Subject, transport_error};
use crate::error::DistributionError;

/// How to upload blobs. `Default` sends blobs up to 16 MiB in one `PUT` and larger ones in
/// 128 MiB `PATCH` chunks: each chunk is one request and one server-side commit, so fewer are
/// faster, while a failure still resumes from the registry's reported offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadOptions {
    /// Blobs up to this size go in one `PUT`; larger ones in chunks.
    pub monolithic_limit: u64,
    /// Size of each `PATCH` (the most a failure makes us send again).
    pub chunk_size: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            monolithic_limit: 16 * 1024 * 1024,
            chunk_size: 128 * 1024 * 1024,
        }
    }
}

/// A blob to push and the file holding its bytes.
#[derive(Clone, Copy, Debug)]
pub struct BlobFile<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub path: &'a Path,
}

/// Called with the offset in the blob of the bytes handed to the connection so far.
pub type UploadProgress = Arc<dyn Fn(u64) + Send + Sync>;

/// What [`RegistryClient::push_blob`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushedBlob {
    /// The repository had the blob already.
    AlreadyExists,
    /// The registry linked the blob from another of its repositories.
    Mounted { from: String },
    /// The bytes were sent.
    Uploaded {
        /// Times the upload continued from the offset the registry reported after a failure.
        resumed: u32,
        /// Times the registry had lost the session and the upload began again from zero.
        restarted: u32,
    },
}

/// The answer to a cross-repository mount request.
#[derive(Debug)]
pub enum MountResult {
    /// 201: the blob is now in the repository.
    Mounted,
    /// 202: the registry did not mount and opened an upload session instead.
    Upload(Box<UploadSession>),
}

/// An upload session: where to send the next request and how many bytes the registry holds.
pub struct UploadSession {
    client: RegistryClient,
    repo: Reference,
    location: Url,
    offset: u64,
}

impl std::fmt::Debug for UploadSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The location may carry signed state; its path is enough to recognise it.
        f.debug_struct("UploadSession")
            .field("repository", &self.repo.name())
            .field("location", &self.location.path())
            .field("offset", &self.offset)
            .finish()
    }
}

/// `Range: 0-N` (or `bytes=0-N`) of an upload: the number of bytes the registry holds. Docker
/// distribution reports an empty session as `0-0`, taken here as 0 (a one-byte session is then
/// resent, which the registry refuses or accepts; either way the upload recovers).
fn parse_upload_range(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    if a != 0 || b < a {
        return None;
    }
    if b == 0 { Some(0) } else { b.checked_add(1) }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether sending again (after asking the session where it stands) may succeed.
fn retryable(e: &DistributionError) -> bool {
    match e {
        DistributionError::Network { .. }
        | DistributionError::Timeout { .. }
        | DistributionError::ConnectionRefused { .. }
        | DistributionError::Server { .. }
        | DistributionError::TooManyRequests { .. }
        | DistributionError::Truncated { .. } => true,
        DistributionError::Registry { status, code, .. } => {
            matches!(*status, 401 | 404 | 416)
                || matches!(
                    code.as_deref(),
                    Some("BLOB_UPLOAD_INVALID" | "BLOB_UPLOAD_UNKNOWN")
                )
        }
        DistributionError::InvalidResponse { .. } => true,
        _ => false,
    }
}

/// A request body streaming `len` bytes of `path` from `offset`, reporting progress.
fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    progress: Option<UploadProgress>,
) -> std::io::Result<reqwest::Body> {
    const CHUNK: usize = 256 * 1024;
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let reader = tokio::fs::File::from_std(file).take(len);
    let state = (reader, offset, progress, false);
    let body = stream::unfold(state, |(mut reader, pos, progress, done)| async move {
        if done {
            return None;
        }
        let mut buf = BytesMut::with_capacity(CHUNK);
        match reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                let pos = pos.saturating_add(n as u64);
                if let Some(p) = &progress {
                    p(pos);
                }
                Some((
                    Ok::<Bytes, std::io::Error>(buf.freeze()),
                    (reader, pos, progress, false),
                ))
            }
            Err(e) => Some((Err(e), (reader, pos, progress, true))),
        }
    });
    Ok(reqwest::Body::wrap_stream(body))
}

impl UploadSession {
    fn new(client: RegistryClient, repo: &Reference, location: Url) -> UploadSession {
        UploadSession {
            client,
            repo: repo.clone(),
            location,
            offset: 0,
        }
    }

    /// The URL the next request of this session goes to.
    pub fn location(&self) -> &Url {
        &self.location
    }

    /// Bytes the registry holds (as of the last answer).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn what(&self) -> String {
        format!("uploading to {}", self.repo.name())
    }

    fn scope(&self) -> String {
        push_scope(self.repo.repository())
    }

    /// Follows the `Location` of an answer (each may carry new session state).
    fn follow(&mut self, resp: &Response) -> Result<(), DistributionError> {
        if let Some(loc) = header_str(resp.headers(), header::LOCATION) {
            self.location =
                self.location
                    .join(loc)
                    .map_err(|e| DistributionError::InvalidResponse {
                        what: self.what(),
                        reason: format!("invalid upload location {loc:?}: {e}"),
                    })?;
        }
        Ok(())
    }

    /// Asks the registry how much of the upload it holds (`GET` on the session) and continues
    /// from there.
    pub async fn refresh(&mut self) -> Result<u64, DistributionError> {
        let what = format!("checking the upload to {}", self.repo.name());
        let scope = self.scope();
        let resp = self
            .client
            .send_to(
                Method::GET,
                self.repo.registry(),
                self.location.clone(),
                Some(&scope),
                &what,
                |rb| rb,
            )
            .await?;
        if resp.status() != StatusCode::NO_CONTENT && resp.status() != StatusCode::OK {
            return Err(self
                .client
                .fail(resp, self.repo.registry(), &Subject::Other, &what, 1)
                .await);
        }
        let range = header_str(resp.headers(), header::RANGE);
        let offset = match range {
            None => 0,
            Some(r) => parse_upload_range(r).ok_or_else(|| DistributionError::InvalidResponse {
                what: what.clone(),
                reason: format!("upload status has Range {r:?}"),
            })?,
        };
        self.follow(&resp)?;
        self.offset = offset;
        Ok(offset)
    }

    /// Sends one request carrying `len` bytes of `path` from the session's offset.
    async fn send_body(
        &self,
        method: Method,
        url: Url,
        path: &Path,
        len: u64,
        progress: Option<UploadProgress>,
        content_range: bool,
    ) -> Result<Response, DistributionError> {
        let what = self.what();
        let registry = self.repo.registry();
        let scope = self.scope();
        let same_origin =
            self.client.api_url(registry, "/v2/", &what).await?.origin() == url.origin();
        let auth = if same_origin {
            self.client.authorization(registry, Some(&scope)).await?
        } else {
            None
        };
        let body = file_body(path, self.offset, len, progress).map_err(|e| {
            DistributionError::InvalidResponse {
                what: what.clone(),
                reason: format!("reading {}: {e}", path.display()),
            }
        })?;
        let mut rb = self
            .client
            .http()
            .request(method, url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .body(body);
        if content_range && len > 0 {
            let last = self.offset.saturating_add(len - 1);
            rb = rb.header(header::CONTENT_RANGE, format!("{}-{last}", self.offset));
        }
        if let Some(a) = auth {
            rb = rb.header(header::AUTHORIZATION, a);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| transport_error(e, registry, &what))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // A token that expired mid-push: the next attempt fetches another.
            self.client.note_challenges(registry, resp.headers());
            self.client.forget_token(registry, Some(&scope));
        }
        Ok(resp)
    }

    /// Sends the next `len` bytes of `path` (from the session's offset) as one `PATCH`.
    pub async fn patch(
        &mut self,
        path: &Path,
        len: u64,
        progress: Option<UploadProgress>,
    ) -> Result<(), DistributionError> {
        let what = self.what();
        let resp = self
            .send_body(
                Method::PATCH,
                self.location.clone(),
                path,
                len,
                progress,
                true,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::NO_CONTENT {
            return Err(self
                .client
                .fail(resp, self.repo.registry(), &Subject::Other, &what, 1)
                .await);
        }
        let expected = self.offset.saturating_add(len);
        let held = match header_str(resp.headers(), header::RANGE) {
            Some(r) => parse_upload_range(r).ok_or_else(|| DistributionError::InvalidResponse {
                what: what.clone(),
                reason: format!("chunk answer has Range {r:?}"),
            })?,
            None => expected,
        };
        self.follow(&resp)?;
        if held > expected {
            return Err(DistributionError::InvalidResponse {
                what,
                reason: format!("registry holds {held} bytes after {expected} were sent"),
            });
        }
        self.offset = held;
        Ok(())
    }

    /// Completes the upload as blob `digest`: a `PUT` carrying the remaining `len` bytes of
    /// `path` (0 after chunks). 201 means the registry verified the digest.
    pub async fn put(
        &mut self,
        digest: &Digest,
        path: &Path,
        len: u64,
        progress: Option<UploadProgress>,
    ) -> Result<(), DistributionError> {
        let what = self.what();
        let mut url = self.location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send_body(
                Method::PUT,
                url,
                path,
                len,
                progress,
                len > 0 && self.offset > 0,
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => {}
            _ => {
                let repo = self.repo.clone();
                return Err(self
                    .client
                    .fail(
                        resp,
                        self.repo.registry(),
                        &Subject::Blob(&repo, digest),
                        &format!("{what}: blob {digest}"),
                        1,
                    )
                    .await);
            }
        }
        if let Some(d) = header_str(
            resp.headers(),
            header::HeaderName::from_static("docker-content-digest"),
        )
        .and_then(|v| v.trim().parse::<Digest>().ok())
            && &d != digest
        {
            return Err(DistributionError::DigestMismatch {
                what: format!("blob uploaded to {}", self.repo.name()),
                expected: digest.clone(),
                actual: d,
            });
        }
        self.offset = self.offset.saturating_add(len);
        Ok(())
    }

    /// Abandons the session (`DELETE`), best effort: registries purge forgotten sessions.
    pub async fn cancel(self) {
        let scope = self.scope();
        let _ = self
            .client
            .send_to(
                Method::DELETE,
                self.repo.registry(),
                self.location.clone(),
                Some(&scope),
                &self.what(),
                |rb| rb,
            )
            .await;
    }
}

impl RegistryClient {
    async fn open_session(
        &self,
        repo: &Reference,
        query: &str,
        scope: &str,
        what: &str,
    ) -> Result<(StatusCode, Option<UploadSession>), DistributionError> {
        let path = format!("/v2/{}/blobs/uploads/{query}", repo.repository());
        let resp = self
            .send(
                Method::POST,
                repo.registry(),
                &path,
                Some(scope),
                what,
                |rb| rb.header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        let status = resp.status();
        match status {
            StatusCode::CREATED => Ok((status, None)),
            StatusCode::ACCEPTED => {
                let Some(loc) = header_str(resp.headers(), header::LOCATION) else {
                    return Err(DistributionError::InvalidResponse {
                        what: what.to_string(),
                        reason: "202 without a Location".into(),
                    });
                };
                let base = self.api_url(repo.registry(), &path, what).await?;
                let location = base
                    .join(loc)
                    .map_err(|e| DistributionError::InvalidResponse {
                        what: what.to_string(),
                        reason: format!("invalid upload location {loc:?}: {e}"),
                    })?;
                Ok((
                    status,
                    Some(UploadSession::new(self.clone(), repo, location)),
                ))
            }
            _ => Err(self
                .fail(resp, repo.registry(), &Subject::Repository(repo), what, 1)
                .await),
        }
    }

    /// Opens an upload session in `repo`'s repository (`POST /v2/<name>/blobs/uploads/`).
    pub async fn start_upload(&self, repo: &Reference) -> Result<UploadSession, DistributionError> {
        let what = format!("starting an upload to {}", repo.name());
        match self
            .open_session(repo, "", &push_scope(repo.repository()), &what)
            .await?
        {
            (_, Some(s)) => Ok(s),
            (status, None) => Err(DistributionError::InvalidResponse {
                what,
                reason: format!("answered {status} without an upload session"),
            }),
        }
    }

    /// Asks the registry to link blob `digest` from repository `from` (a path on the same
    /// registry) into `repo`'s repository. The token asks for push on `repo` and pull on `from`.
    pub async fn mount_blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        from: &str,
    ) -> Result<MountResult, DistributionError> {
        let what = format!("mounting {digest} from {from} into {}", repo.name());
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::from("?"));
            q.append_pair("mount", &digest.to_string());
            q.append_pair("from", from);
            q.finish()
        };
        match self
            .open_session(repo, &query, &mount_scope(repo.repository(), from), &what)
            .await?
        {
            (_, Some(s)) => Ok(MountResult::Upload(Box::new(s))),
            (_, None) => Ok(MountResult::Mounted),
        }
    }

    /// Puts `blob` into `repo`'s repository, as Docker does: nothing if it is there already;
    /// else mounted from one of `mount_from` (repository paths on the same registry, tried in
    /// order); else uploaded — in one `PUT` or in chunks (see [`UploadOptions`]), resuming or
    /// restarting after failures up to the client's `max_retries` times without progress.
    pub async fn push_blob(
        &self,
        repo: &Reference,
        blob: BlobFile<'_>,
        mount_from: &[String],
        opts: &UploadOptions,
        progress: Option<UploadProgress>,
    ) -> Result<PushedBlob, DistributionError> {
        let BlobFile { digest, size, path } = blob;
        if self.blob_size_for_push(repo, digest).await?.is_some() {
            return Ok(PushedBlob::AlreadyExists);
        }
        let mut session = None;
        let candidates: Vec<&String> = mount_from
            .iter()
            .filter(|f| f.as_str() != repo.repository())
            .collect();
        for (i, from) in candidates.iter().enumerate() {
            match self.mount_blob(repo, digest, from).await {
                Ok(MountResult::Mounted) => {
                    return Ok(PushedBlob::Mounted {
                        from: (*from).clone(),
                    });
                }
                Ok(MountResult::Upload(s)) => {
                    if i + 1 < candidates.len() {
                        s.cancel().await;
                    } else {
                        session = Some(*s);
                    }
                }
                // A source the registry refuses to read from is not an error of the push.
                Err(e) if !e.is_unauthorized() => {
                    tracing::debug!(from = %from, error = %e, "mount failed; uploading");
                }
                Err(e) => return Err(e),
            }
        }
        let session = match session {
            Some(s) => s,
            None => self.start_upload(repo).await?,
        };
        self.upload(session, digest, size, path, opts, progress)
            .await
    }

    async fn upload(
        &self,
        mut session: UploadSession,
        digest: &Digest,
        size: u64,
        path: &Path,
        opts: &UploadOptions,
        progress: Option<UploadProgress>,
    ) -> Result<PushedBlob, DistributionError> {
        let path: PathBuf = path.to_path_buf();
        let chunk = opts.chunk_size.max(1);
        let (mut resumed, mut restarted, mut failures) = (0u32, 0u32, 0u32);
        loop {
            let start = session.offset;
            let attempt = async {
                if session.offset == 0 && size <= opts.monolithic_limit {
                    return session.put(digest, &path, size, progress.clone()).await;
                }
                while session.offset < size {
                    let len = chunk.min(size - session.offset);
                    session.patch(&path, len, progress.clone()).await?;
                }
                session.put(digest, &path, 0, None).await
            }
            .await;
            let err = match attempt {
                Ok(()) => return Ok(PushedBlob::Uploaded { resumed, restarted }),
                Err(e) => e,
            };
            if session.offset > start {
                failures = 0;
            }
            if !retryable(&err) || failures >= self.config().max_retries {
                session.cancel().await;
                return Err(err);
            }
            tracing::debug!(repository = %session.repo.name(), %digest, error = %err, offset = session.offset, "upload failed; retrying");
            tokio::time::sleep(self.backoff(failures)).await;
            failures += 1;
            match session.refresh().await {
                Ok(offset) if offset <= size => {
                    resumed += 1;
                    if let Some(p) = &progress {
                        p(offset);
                    }
                }
                other => {
                    tracing::debug!(?other, "upload session lost; starting again");
                    session = self.start_upload(&session.repo).await?;
                    restarted += 1;
                    if let Some(p) = &progress {
                        p(0);
                    }
                }
            }
        }
    }

    /// Puts a manifest or index under `r`'s tag (or digest), with its exact bytes and media
    /// type. Returns the digest of the bytes (checked against the registry's
    /// `Docker-Content-Digest` and `r`'s digest).
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, DistributionError> {
        let what = format!("pushing manifest {r}");
        if !media_type::is_manifest(media_type) && !media_type::is_index(media_type) {
            return Err(DistributionError::Config(format!(
                "{what}: {media_type:?} is not a manifest media type"
            )));
        }
        let digest = Digest::sha256_of(&bytes);
        if let Some(want) = r.digest()
            && want != &digest
        {
            return Err(DistributionError::DigestMismatch {
                what,
                expected: want.clone(),
                actual: digest,
            });
        }
        let path = format!("/v2/{}/manifests/{}", r.repository(), r.manifest_ref());
        let scope = push_scope(r.repository());
        let resp = self
            .send(
                Method::PUT,
                r.registry(),
                &path,
                Some(&scope),
                &what,
                |rb| {
                    rb.header(header::CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                },
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .fail(resp, r.registry(), &Subject::Manifest(r), &what, 1)
                .await);
        }
        if let Some(d) = header_str(
            resp.headers(),
            header::HeaderName::from_static("docker-content-digest"),
        )
        .and_then(|v| v.trim().parse::<Digest>().ok())
            && d != digest
        {
            return Err(DistributionError::DigestMismatch {
                what: format!("{what} (registry's Docker-Content-Digest)"),
                expected: digest,
                actual: d,
            });
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-1023"), Some(1024));
        assert_eq!(parse_upload_range("bytes=0-9"), Some(10));
        assert_eq!(parse_upload_range("0-0"), Some(0));
        for bad in ["", "5-9", "0-", "a-b", "0-x", "9"] {
            assert_eq!(parse_upload_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_is_retried() {
        let registry = |status: u16, code: Option<&str>| DistributionError::Registry {
            what: "x".into(),
            status,
            code: code.map(str::to_string),
            reason: String::new(),
            message: String::new(),
        };
        assert!(retryable(&registry(404, Some("BLOB_UPLOAD_UNKNOWN"))));
        assert!(retryable(&registry(400, Some("BLOB_UPLOAD_INVALID"))));
        assert!(retryable(&registry(416, None)));
        assert!(!retryable(&registry(400, Some("DIGEST_INVALID"))));
        assert!(!retryable(&DistributionError::Denied {
            what: "x".into(),
            message: String::new()
        }));
        assert!(retryable(&DistributionError::Server {
            what: "x".into(),
            status: 503,
            attempts: 1
        }));
    }
}
