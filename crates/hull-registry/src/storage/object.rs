//! [`RegistryStorage`] on an object store (`object_store`: S3 with the `s3` feature, or any
//! other implementation that lists in key order, such as its in-memory store).
//!
//! Layout under the optional root prefix: `objects/<key>`, `tmp/<random>` (verified writes in
//! progress: a multipart upload, hashed in flight, copied to its key once the digest matches),
//! and `uploads/<id>/` holding a `session` marker and the session's chunks as
//! `c/<offset, 20 digits>` objects: object stores cannot append, and S3 parts must be at least
//! 5 MiB while registry clients send chunks of any size. Committing streams the chunks in
//! order through the hasher into the destination.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use hull_oci::Digester;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart,
};

use super::{
    ByteRange, ByteStream, Expected, Key, ObjectMeta, Prefix, RegistryStorage, StorageError,
    UploadId,
};

/// Multipart parts in flight per write.
const MAX_CONCURRENT_PARTS: usize = 2;

/// A backend over any [`ObjectStore`] that lists in ascending key order.
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    root: String,
    locks: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("store", &self.store.to_string())
            .field("root", &self.root)
            .finish_non_exhaustive()
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

impl ObjectStorage {
    /// A backend over `store`, keeping everything below `root` (`""` for the whole store).
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> ObjectStorage {
        ObjectStorage {
            store,
            root: root.trim_matches('/').to_string(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// An S3 bucket, configured from the `AWS_*` environment (endpoint, region, credentials)
    /// as `object_store`'s `AmazonS3Builder::from_env` reads it.
    #[cfg(feature = "s3")]
    pub fn s3_from_env(bucket: &str, root: &str) -> Result<ObjectStorage, StorageError> {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| StorageError::Io {
                what: "configuring S3 bucket",
                path: bucket.to_string(),
                source: io::Error::other(e),
            })?;
        Ok(ObjectStorage::new(Arc::new(store), root))
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

    fn chunk(&self, id: &UploadId, offset: u64) -> Path {
        self.path(&format!("uploads/{id}/c/{offset:020}"))
    }

    fn temp(&self) -> Path {
        self.path(&format!("tmp/{}", hex::encode(rand::random::<[u8; 12]>())))
    }

    fn lock(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(id.clone()).or_default())
    }

    fn forget(&self, id: &UploadId) {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    async fn head(&self, path: &Path) -> Result<Option<object_store::ObjectMeta>, StorageError> {
        match self.store.head(path).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(os_err("reading metadata of", path)(e)),
        }
    }

    /// Streams `body` into a multipart upload at `path`, feeding `hasher`; on a body error the
    /// upload is aborted and nothing is visible. Returns the size written.
    async fn write(
        &self,
        path: &Path,
        mut body: ByteStream,
        hasher: &mut Digester,
    ) -> Result<u64, StorageError> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(os_err("starting an upload to", path))?;
        let mut w = WriteMultipart::new(upload);
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(StorageError::Body(e));
                }
            };
            hasher.update(&chunk);
            size = size.saturating_add(chunk.len() as u64);
            if let Err(e) = w.wait_for_capacity(MAX_CONCURRENT_PARTS).await {
                return Err(os_err("writing", path)(e));
            }
            w.put(chunk);
        }
        w.finish().await.map_err(os_err("completing", path))?;
        Ok(size)
    }

    /// The session's chunks in offset order: `(offset, path, size)`.
    async fn chunks(&self, id: &UploadId) -> Result<Vec<(u64, Path, u64)>, StorageError> {
        let dir = self.path(&format!("uploads/{id}/c"));
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(os_err("listing", &dir))?;
        let mut out: Vec<(u64, Path, u64)> = metas
            .into_iter()
            .filter_map(|m| {
                let off = m.location.filename()?.parse::<u64>().ok()?;
                Some((off, m.location, m.size))
            })
            .collect();
        out.sort_by_key(|(off, _, _)| *off);
        Ok(out)
    }

    /// Size (the end of the last contiguous chunk) and last change of a session.
    async fn session(&self, id: &UploadId) -> Result<Option<ObjectMeta>, StorageError> {
        let Some(marker) = self.head(&self.session_marker(id)).await? else {
            return Ok(None);
        };
        let mut size = 0u64;
        let mut modified = SystemTime::from(marker.last_modified);
        for (off, path, len) in self.chunks(id).await? {
            if off != size {
                return Err(StorageError::Io {
                    what: "reading upload",
                    path: path.to_string(),
                    source: io::Error::other(format!(
                        "chunk at {off} does not follow {size} bytes"
                    )),
                });
            }
            size = size.saturating_add(len);
            if let Some(m) = self.head(&path).await? {
                modified = modified.max(SystemTime::from(m.last_modified));
            }
        }
        Ok(Some(ObjectMeta { size, modified }))
    }

    async fn delete_quiet(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(os_err("deleting", path)(e)),
        }
    }

    /// Copies a verified temp object to its key and removes the temp object.
    async fn publish(&self, tmp: &Path, key: &Key) -> Result<(), StorageError> {
        let dest = self.object(key);
        self.store
            .copy(tmp, &dest)
            .await
            .map_err(os_err("copying into", &dest))?;
        self.delete_quiet(tmp).await
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
        let tmp = self.temp();
        let mut hasher = expected.digest.digester();
        let size = self.write(&tmp, body, &mut hasher).await?;
        if let Err(e) = expected.check(key, size, hasher.finish()) {
            self.delete_quiet(&tmp).await?;
            return Err(e);
        }
        self.publish(&tmp, key).await?;
        Ok(size)
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
        let lock = self.lock(id);
        let _held = lock.lock().await;
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
        let chunk = self.chunk(id, offset);
        let mut scratch = Digester::new(hull_oci::Algorithm::Sha256);
        let n = self.write(&chunk, body.boxed(), &mut scratch).await?;
        Ok(size.saturating_add(n))
    }

    async fn upload_commit(
        &self,
        id: &UploadId,
        key: &Key,
        expected: &Expected,
    ) -> Result<u64, StorageError> {
        let lock = self.lock(id);
        let held = lock.lock().await;
        if self.head(&self.session_marker(id)).await?.is_none() {
            return Err(StorageError::UploadNotFound(id.clone()));
        }
        let chunks = self.chunks(id).await?;
        let store = Arc::clone(&self.store);
        let paths: Vec<Path> = chunks.iter().map(|(_, p, _)| p.clone()).collect();
        // The chunks, read one after another, as one stream.
        let body: ByteStream = futures_util::stream::iter(paths)
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
        let tmp = self.temp();
        let mut hasher = expected.digest.digester();
        let size = self.write(&tmp, body, &mut hasher).await?;
        if let Err(e) = expected.check(key, size, hasher.finish()) {
            self.delete_quiet(&tmp).await?;
            return Err(e);
        }
        self.publish(&tmp, key).await?;
        for (_, p, _) in &chunks {
            self.delete_quiet(p).await?;
        }
        self.delete_quiet(&self.session_marker(id)).await?;
        drop(held);
        self.forget(id);
        Ok(size)
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<bool, StorageError> {
        let lock = self.lock(id);
        let held = lock.lock().await;
        let dir = self.upload_dir(id);
        let all: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(os_err("listing", &dir))?;
        for m in &all {
            self.delete_quiet(&m.location).await?;
        }
        drop(held);
        self.forget(id);
        Ok(!all.is_empty())
    }
}
