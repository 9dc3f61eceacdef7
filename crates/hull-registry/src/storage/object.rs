//! [`RegistryStorage`] on an object store (`object_store`): an S3 bucket ([`ObjectStorage::s3`],
//! also MinIO or `s3s-fs` through an endpoint), or any other implementation that lists in key
//! order and supports conditional creates, such as its in-memory store.
//!
//! Layout under the optional root prefix: `objects/<key>` for the registry's objects, and
//! `uploads/<id>/` for an upload session: a `session` marker, the chunks' data as
//! `d/<offset, 20 digits>-<random>` and one pointer per chunk, `c/<offset, 20 digits>`, holding
//! `<size> <data name>`. Object stores cannot append, and S3 parts must be at least 5 MiB while
//! registry clients send chunks of any size, so a session is a list of chunk objects that
//! committing streams, in order, through the hasher into the destination.
//!
//! Writes stream: a body is gathered up to one part (8 MiB); a body that ends within it is one
//! PUT, a longer one a multipart upload of 8 MiB parts with at most two parts in flight, so a
//! write holds at most three parts in memory whatever the blob's size (and a blob may be up to
//! S3's 10 000 parts, about 78 GiB). Verified writes ([`RegistryStorage::put_stream`] and
//! [`RegistryStorage::upload_commit`]) go straight to their key: the digest is computed in
//! flight and the multipart upload is completed only when it matches, aborted otherwise. An
//! uncompleted multipart upload is never visible, so a failed, refused or interrupted write
//! (the process or the store dying midway included) leaves nothing under the key; its parts
//! linger until the bucket's `AbortIncompleteMultipartUpload` lifecycle rule removes them.
//!
//! # Several registries on one bucket
//!
//! Replicas share nothing but the bucket: no lock is held in a process, and every decision is
//! taken by the store.
//!
//! - Blobs and manifests are content-addressed and verified before they become visible: two
//!   writers of one digest write the same bytes, whichever completes last wins harmlessly.
//! - Tags, revision and layer links, referrer records and catalog markers are plain PUTs,
//!   last writer wins, as in distribution (two pushes of one tag race the same way there).
//! - Upload sessions are the one read-modify-write: a chunk's data goes to a name of its own,
//!   then its pointer `c/<offset>` is created conditionally (`PutMode::Create`, S3's
//!   `If-None-Match: *`). Two writers of one offset, on one replica or two, cannot both win: the
//!   loser removes its data and gets [`StorageError::UploadOffset`] (the spec's 416). A pointer
//!   is only written at the session's current end, so the pointers are contiguous and the
//!   session's size is the last pointer's offset plus its size.
//!
//! `s3s-fs` (the test peer) honours `If-None-Match: *` on PUT, but checks and writes in two
//! steps, so two truly simultaneous creates could both succeed there; S3 and MinIO decide
//! atomically. The in-memory store decides atomically too, and the unit tests race writers on it.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use hull_oci::Digester;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};
use serde::Deserialize;

use super::{
    ByteRange, ByteStream, Expected, Key, ObjectMeta, Prefix, RegistryStorage, StorageError,
    UploadId,
};

/// Size of a multipart part, and most bytes gathered before a write turns into a multipart
/// upload.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Multipart parts in flight per write.
const MAX_CONCURRENT_PARTS: usize = 2;
/// Largest chunk pointer read.
const MAX_POINTER_SIZE: usize = 1024;

/// Where an S3 backend keeps the registry (the `[s3]` table of `hull serve`'s config file).
/// What is not set here comes from the standard `AWS_*` environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...) or,
/// for credentials, from the instance or container role, as `object_store` finds them.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Config {
    pub bucket: String,
    /// The S3 API's URL, for MinIO, `s3s-fs` and other S3-compatible stores (path-style
    /// requests); AWS's regional endpoint when unset.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `us-east-1` when neither this nor `AWS_REGION` says otherwise.
    #[serde(default)]
    pub region: Option<String>,
    /// Everything is kept below this prefix of the bucket (the whole bucket when unset).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Allow a plain-http endpoint (a store on loopback).
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// How long a failing request to the store is retried before the registry request fails
    /// (default: `object_store`'s 3 minutes).
    #[serde(default)]
    pub retry_timeout_secs: Option<u64>,
}

impl S3Config {
    /// A bucket, everything else from the environment.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            endpoint: None,
            region: None,
            prefix: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            retry_timeout_secs: None,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<hidden>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("retry_timeout_secs", &self.retry_timeout_secs)
            .finish()
    }
}

/// A backend over any [`ObjectStore`] that lists in ascending key order and supports
/// [`PutMode::Create`].
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    root: String,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("store", &self.store.to_string())
            .field("root", &self.root)
            .finish()
    }
}

fn os_err(what: &'static str, path: &Path) -> impl FnOnce(object_store::Error) -> StorageError {
    let path = path.to_string();
    move |e| StorageError::Io {
        what,
        path,
        source: io::Error::other(e),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// What a chunk pointer says: the chunk's size and the name of its data below the session.
fn parse_pointer(b: &[u8]) -> Option<(u64, String)> {
    let s = std::str::from_utf8(b).ok()?;
    let (size, data) = s.trim().split_once(' ')?;
    let valid = data.starts_with("d/")
        && data
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'-'));
    if !valid {
        return None;
    }
    Some((size.parse().ok()?, data.to_string()))
}

/// The offset a chunk pointer's name stands for.
fn pointer_offset(p: &Path) -> Option<u64> {
    p.filename()?.parse().ok()
}

impl ObjectStorage {
    /// A backend over `store`, keeping everything below `root` (`""` for the whole store).
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> ObjectStorage {
        ObjectStorage {
            store,
            root: root.trim_matches('/').to_string(),
        }
    }

    /// An S3 bucket (or an S3-compatible store) as `config` describes it.
    pub fn s3(config: &S3Config) -> Result<ObjectStorage, StorageError> {
        let bad = |e: object_store::Error| StorageError::Io {
            what: "configuring S3 bucket",
            path: config.bucket.clone(),
            source: io::Error::other(e),
        };
        if config.bucket.is_empty() {
            return Err(StorageError::Io {
                what: "configuring S3 bucket",
                path: String::new(),
                source: io::Error::other("no bucket name given"),
            });
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &config.region {
            b = b.with_region(r);
        }
        if config.allow_http {
            b = b.with_allow_http(true);
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &config.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        if let Some(t) = &config.session_token {
            b = b.with_token(t);
        }
        if let Some(secs) = config.retry_timeout_secs {
            b = b.with_retry(object_store::RetryConfig {
                retry_timeout: std::time::Duration::from_secs(secs),
                ..object_store::RetryConfig::default()
            });
        }
        let store = b.build().map_err(bad)?;
        Ok(ObjectStorage::new(
            Arc::new(store),
            config.prefix.as_deref().unwrap_or_default(),
        ))
    }

    fn path(&self, rel: &str) -> Path {
        if self.root.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.root))
        }
    }

    fn object(&self, key: &Key) -> Path {
        self.path(&format!("objects/{key}"))
    }

    fn upload_dir(&self, id: &UploadId) -> Path {
        self.path(&format!("uploads/{id}"))
    }

    fn session_marker(&self, id: &UploadId) -> Path {
        self.path(&format!("uploads/{id}/session"))
    }

    fn pointer_dir(&self, id: &UploadId) -> Path {
        self.path(&format!("uploads/{id}/c"))
    }

    fn pointer(&self, id: &UploadId, offset: u64) -> Path {
        self.path(&format!("uploads/{id}/c/{offset:020}"))
    }

    /// `rel` below the session's directory.
    fn in_session(&self, id: &UploadId, rel: &str) -> Path {
        self.path(&format!("uploads/{id}/{rel}"))
    }

    async fn head(&self, path: &Path) -> Result<Option<object_store::ObjectMeta>, StorageError> {
        match self.store.head(path).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(os_err("reading metadata of", path)(e)),
        }
    }

    async fn read_small(&self, path: &Path) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(path).await {
            Ok(r) => {
                let b = r.bytes().await.map_err(os_err("reading", path))?;
                Ok(Some(b))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(os_err("reading", path)(e)),
        }
    }

    /// Streams `body` to `path` (see the module docs: one PUT for a body that fits in a part,
    /// else a multipart upload). With `verify`, the content is hashed in flight and the object
    /// is made visible only if it matches; on any error nothing is visible. Returns the size.
    async fn write(
        &self,
        path: &Path,
        mut body: ByteStream,
        verify: Option<(&Key, &Expected)>,
    ) -> Result<u64, StorageError> {
        let mut hasher: Option<Digester> = verify.map(|(_, e)| e.digest.digester());
        let check = |size: u64, hasher: Option<Digester>| match (verify, hasher) {
            (Some((key, expected)), Some(h)) => expected.check(key, size, h.finish()),
            _ => Ok(()),
        };
        let mut size: u64 = 0;
        let mut gathered: Vec<Bytes> = Vec::new();
        let mut gathered_len = 0usize;
        // Up to one part: a body that ends here is one PUT.
        loop {
            match body.next().await {
                None => {
                    check(size, hasher)?;
                    self.store
                        .put(path, PutPayload::from_iter(gathered))
                        .await
                        .map_err(os_err("writing", path))?;
                    return Ok(size);
                }
                Some(Err(e)) => return Err(StorageError::Body(e)),
                Some(Ok(chunk)) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    size = size.saturating_add(chunk.len() as u64);
                    gathered_len = gathered_len.saturating_add(chunk.len());
                    gathered.push(chunk);
                    if gathered_len >= PART_SIZE {
                        break;
                    }
                }
            }
        }
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(os_err("starting an upload to", path))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in gathered {
            w.put(chunk);
        }
        loop {
            let chunk = match body.next().await {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    let _ = w.abort().await;
                    return Err(StorageError::Body(e));
                }
            };
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            size = size.saturating_add(chunk.len() as u64);
            if let Err(e) = w.wait_for_capacity(MAX_CONCURRENT_PARTS).await {
                let _ = w.abort().await;
                return Err(os_err("writing", path)(e));
            }
            w.put(chunk);
        }
        if let Err(e) = check(size, hasher) {
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish().await.map_err(os_err("completing", path))?;
        Ok(size)
    }

    /// The session's chunk pointers in offset order: `(offset, pointer path, last change)`.
    async fn pointers(&self, id: &UploadId) -> Result<Vec<(u64, Path, SystemTime)>, StorageError> {
        let dir = self.pointer_dir(id);
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(os_err("listing", &dir))?;
        let mut out: Vec<(u64, Path, SystemTime)> = metas
            .into_iter()
            .filter_map(|m| {
                let off = pointer_offset(&m.location)?;
                Some((off, m.location, SystemTime::from(m.last_modified)))
            })
            .collect();
        out.sort_by_key(|(off, _, _)| *off);
        Ok(out)
    }

    /// The size and data name a pointer records.
    async fn read_pointer(&self, path: &Path) -> Result<(u64, String), StorageError> {
        let corrupt = |why: &str| StorageError::Io {
            what: "reading upload chunk pointer",
            path: path.to_string(),
            source: io::Error::other(why.to_string()),
        };
        let b = self
            .read_small(path)
            .await?
            .ok_or_else(|| corrupt("it vanished"))?;
        if b.len() > MAX_POINTER_SIZE {
            return Err(corrupt("it is too large"));
        }
        parse_pointer(&b).ok_or_else(|| corrupt("it is malformed"))
    }

    /// Size (the end of the last chunk) and last change of a session.
    async fn session(&self, id: &UploadId) -> Result<Option<ObjectMeta>, StorageError> {
        let Some(marker) = self.head(&self.session_marker(id)).await? else {
            return Ok(None);
        };
        let pointers = self.pointers(id).await?;
        let modified = pointers
            .iter()
            .map(|(_, _, m)| *m)
            .fold(SystemTime::from(marker.last_modified), SystemTime::max);
        let size = match pointers.last() {
            None => 0,
            Some((off, path, _)) => off.saturating_add(self.read_pointer(path).await?.0),
        };
        Ok(Some(ObjectMeta { size, modified }))
    }

    async fn delete_quiet(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(os_err("deleting", path)(e)),
        }
    }

    /// Deletes every object of a session; whether there were any.
    async fn delete_session(&self, id: &UploadId) -> Result<bool, StorageError> {
        let dir = self.upload_dir(id);
        let all: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(os_err("listing", &dir))?;
        // The marker last: a session that lost its marker is gone for its clients.
        let marker = self.session_marker(id);
        if all.iter().any(|m| m.location == marker) {
            self.delete_quiet(&marker).await?;
        }
        for m in &all {
            if m.location != marker {
                self.delete_quiet(&m.location).await?;
            }
        }
        Ok(!all.is_empty())
    }
}

#[async_trait]
impl RegistryStorage for ObjectStorage {
    async fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError> {
        Ok(self.head(&self.object(key)).await?.map(|m| ObjectMeta {
            size: m.size,
            modified: SystemTime::from(m.last_modified),
        }))
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let path = self.object(key);
        let size = self
            .head(&path)
            .await?
            .ok_or_else(|| StorageError::NotFound(key.clone()))?
            .size;
        let mut opts = GetOptions::default();
        if let Some(r) = range {
            if r.start > r.end || r.end > size {
                return Err(StorageError::RangeNotSatisfiable {
                    key: key.clone(),
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
            if r.is_empty() {
                return Ok(futures_util::stream::empty().boxed());
            }
            opts.range = Some(GetRange::Bounded(r.start..r.end));
        }
        let result = match self.store.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Err(StorageError::NotFound(key.clone())),
            Err(e) => return Err(os_err("reading", &path)(e)),
        };
        Ok(result.into_stream().map_err(io::Error::other).boxed())
    }

    async fn put(&self, key: &Key, data: Bytes) -> Result<(), StorageError> {
        let path = self.object(key);
        self.store
            .put(&path, PutPayload::from(data))
            .await
            .map_err(os_err("writing", &path))?;
        Ok(())
    }

    async fn put_stream(
        &self,
        key: &Key,
        body: ByteStream,
        expected: &Expected,
    ) -> Result<u64, StorageError> {
        self.write(&self.object(key), body, Some((key, expected)))
            .await
    }

    async fn delete(&self, key: &Key) -> Result<bool, StorageError> {
        let path = self.object(key);
        // S3 deletes of missing objects succeed: ask first, to say whether there was one.
        if self.head(&path).await?.is_none() {
            return Ok(false);
        }
        self.delete_quiet(&path).await?;
        Ok(true)
    }

    async fn list_after(
        &self,
        prefix: &Prefix,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Key>, StorageError> {
        let objects = self.path("objects");
        let dir = match prefix.as_str().trim_end_matches('/') {
            "" => objects.clone(),
            p => self.path(&format!("objects/{p}")),
        };
        let stream = match start_after {
            None => self.store.list(Some(&dir)),
            Some(s) => {
                let offset = self.path(&format!("objects/{s}"));
                self.store.list_with_offset(Some(&dir), &offset)
            }
        };
        let base = format!("{objects}/");
        let metas: Vec<object_store::ObjectMeta> = stream
            .take(limit)
            .try_collect()
            .await
            .map_err(os_err("listing", &dir))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let s = m.location.as_ref().strip_prefix(base.as_str())?.to_string();
                Key::new(s).ok()
            })
            .collect())
    }

    async fn upload_create(&self, id: &UploadId) -> Result<(), StorageError> {
        let marker = self.session_marker(id);
        self.store
            .put(&marker, PutPayload::default())
            .await
            .map_err(os_err("creating", &marker))?;
        Ok(())
    }

    async fn upload_stat(&self, id: &UploadId) -> Result<Option<ObjectMeta>, StorageError> {
        self.session(id).await
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<u64, StorageError> {
        let size = self
            .session(id)
            .await?
            .ok_or_else(|| StorageError::UploadNotFound(id.clone()))?
            .size;
        if size != offset {
            return Err(StorageError::UploadOffset {
                id: id.clone(),
                size,
                offset,
            });
        }
        let mut body = body.peekable();
        // An empty chunk writes nothing (a zero-byte chunk object would only be noise).
        if std::pin::Pin::new(&mut body).peek().await.is_none() {
            return Ok(size);
        }
        let data_name = format!("d/{offset:020}-{}", hex::encode(rand::random::<[u8; 12]>()));
        let data = self.in_session(id, &data_name);
        let n = self.write(&data, body.boxed(), None).await?;
        let pointer = self.pointer(id, offset);
        let claim = self
            .store
            .put_opts(
                &pointer,
                PutPayload::from(format!("{n} {data_name}")),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match claim {
            Ok(_) => Ok(size.saturating_add(n)),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Another writer appended at this offset first.
                self.delete_quiet(&data).await?;
                let now = self.session(id).await?.map_or(size, |m| m.size);
                Err(StorageError::UploadOffset {
                    id: id.clone(),
                    size: now,
                    offset,
                })
            }
            // The pointer may have been written all the same (an answer lost on the way):
            // its data stays, to be removed with the session.
            Err(e) => Err(os_err("writing", &pointer)(e)),
        }
    }

    async fn upload_commit(
        &self,
        id: &UploadId,
        key: &Key,
        expected: &Expected,
    ) -> Result<u64, StorageError> {
        if self.head(&self.session_marker(id)).await?.is_none() {
            return Err(StorageError::UploadNotFound(id.clone()));
        }
        let mut parts: Vec<Path> = Vec::new();
        let mut end = 0u64;
        for (off, pointer, _) in self.pointers(id).await? {
            let (len, data) = self.read_pointer(&pointer).await?;
            if off != end {
                return Err(StorageError::Io {
                    what: "reading upload",
                    path: pointer.to_string(),
                    source: io::Error::other(format!("chunk at {off} does not follow {end} bytes")),
                });
            }
            end = end.saturating_add(len);
            parts.push(self.in_session(id, &data));
        }
        let store = Arc::clone(&self.store);
        // The chunks, read one after another, as one stream.
        let body: ByteStream = futures_util::stream::iter(parts)
            .then(move |p| {
                let store = Arc::clone(&store);
                async move {
                    store
                        .get(&p)
                        .await
                        .map(|r| r.into_stream().map_err(io::Error::other))
                        .map_err(io::Error::other)
                }
            })
            .try_flatten()
            .boxed();
        let size = match self
            .write(&self.object(key), body, Some((key, expected)))
            .await
        {
            // A chunk that could not be read is the store's failure, not the client's.
            Err(StorageError::Body(e)) => {
                return Err(StorageError::Io {
                    what: "reading upload",
                    path: self.upload_dir(id).to_string(),
                    source: e,
                });
            }
            r => r?,
        };
        self.delete_session(id).await?;
        Ok(size)
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<bool, StorageError> {
        self.delete_session(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> ObjectStorage {
        ObjectStorage::new(Arc::new(object_store::memory::InMemory::new()), "r")
    }

    #[test]
    fn pointers_parse_strictly() {
        assert_eq!(
            parse_pointer(b"12 d/00000000000000000000-ab"),
            Some((12, "d/00000000000000000000-ab".to_string()))
        );
        for bad in [
            &b""[..],
            b"12",
            b"x d/a",
            b"12 ../a",
            b"12 d/../../objects/x",
            b"12 c/a",
        ] {
            assert_eq!(parse_pointer(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_writer_wins_an_offset() {
        let s = Arc::new(memory());
        let id = UploadId::random();
        s.upload_create(&id).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let s = Arc::clone(&s);
            let id = id.clone();
            // The body arrives late: every writer has seen the session empty before any of
            // them claims offset 0.
            let body: ByteStream = futures_util::stream::once(async move {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Ok(Bytes::from(vec![i; 100 + usize::from(i)]))
            })
            .boxed();
            tasks.push(tokio::spawn(
                async move { s.upload_append(&id, 0, body).await },
            ));
        }
        let mut won = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(n) => won.push((i, n)),
                Err(StorageError::UploadOffset { offset: 0, .. }) => {}
                Err(e) => panic!("writer {i}: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "{won:?}");
        let (i, n) = won[0];
        assert_eq!(n, 100 + i as u64);
        assert_eq!(s.upload_size(&id).await.unwrap(), Some(n));
        // the losers left no data behind: one data object and one pointer
        let dir = s.upload_dir(&id);
        let all: Vec<_> = s.store.list(Some(&dir)).try_collect().await.unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        let want = vec![i as u8; 100 + i];
        let expected = Expected {
            digest: hull_oci::Digest::sha256_of(&want),
            size: None,
        };
        let key = Key::new("blobs/x").unwrap();
        s.upload_commit(&id, &key, &expected).await.unwrap();
        assert_eq!(
            s.get_bytes(&key, 1000).await.unwrap().as_deref(),
            Some(&want[..])
        );
        let all: Vec<_> = s.store.list(Some(&dir)).try_collect().await.unwrap();
        assert!(all.is_empty(), "{all:?}");
    }

    #[tokio::test]
    async fn large_writes_are_multipart_and_verified_before_visible() {
        let s = memory();
        let part = Bytes::from(vec![7u8; PART_SIZE / 2 + 1]);
        let parts = vec![part.clone(), part.clone(), part.clone()];
        let mut all = Vec::new();
        for p in &parts {
            all.extend_from_slice(p);
        }
        let key = Key::new("blobs/big").unwrap();
        let body = |parts: Vec<Bytes>| -> ByteStream {
            futures_util::stream::iter(parts.into_iter().map(Ok)).boxed()
        };
        let wrong = Expected {
            digest: hull_oci::Digest::sha256_of(b"other"),
            size: None,
        };
        assert!(matches!(
            s.put_stream(&key, body(parts.clone()), &wrong).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert!(s.stat(&key).await.unwrap().is_none());
        let good = Expected {
            digest: hull_oci::Digest::sha256_of(&all),
            size: Some(all.len() as u64),
        };
        assert_eq!(
            s.put_stream(&key, body(parts), &good).await.unwrap(),
            all.len() as u64
        );
        assert_eq!(
            s.stat(&key).await.unwrap().map(|m| m.size),
            Some(all.len() as u64)
        );
    }

    #[test]
    fn s3_config_reads_toml_names_and_hides_secrets() {
        let c: S3Config = serde_json::from_value(serde_json::json!({
            "bucket": "b",
            "endpoint": "http://127.0.0.1:9000",
            "allow-http": true,
            "access-key-id": "id",
            "secret-access-key": "very-secret",
        }))
        .unwrap();
        assert_eq!(c.bucket, "b");
        assert!(c.allow_http);
        assert!(!format!("{c:?}").contains("very-secret"));
        assert!(serde_json::from_value::<S3Config>(serde_json::json!({})).is_err());
        assert!(ObjectStorage::s3(&S3Config::new("")).is_err());
    }
}
