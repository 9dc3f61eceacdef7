//! [`RegistryStorage`] on a local filesystem.
//!
//! Layout under the root: `objects/<key>` (one file per object), `uploads/<id>/data` (one file
//! per upload session, appended to), `tmp/` (writes in progress, on the same filesystem so that
//! a rename commits them). Every write that becomes visible is temp file + fsync + rename +
//! fsync of the directory, so a crash leaves either the old object or the new one; upload
//! chunks are fsynced before they are acknowledged, so a session survives a restart.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use hull_oci::{Digest, Digester};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::{
    ByteRange, ByteStream, Expected, Key, ObjectMeta, Prefix, RegistryStorage, StorageError,
    UploadId,
};

const READ_CHUNK: usize = 1024 * 1024;
/// Reads at least this long are served from file mappings (see [`mapped_stream`]).
const MAP_MIN: u64 = 256 * 1024;
/// How much of an object one mapping covers, which is one body chunk. A connection holds the
/// windows hyper has queued mapped (page cache, counted in the server's RSS while mapped):
/// 2 MiB measured as fast as 4 and 8 MiB, with a third of 8's peak RSS.
const MAP_WINDOW: u64 = 2 * 1024 * 1024;
/// Temp files older than this are leftovers of a crash, removed by `open` (a write that is
/// still running after a day loses its temp file and fails).
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The hash of an upload's first `len` bytes, kept between chunks so that committing a chunked
/// upload need not read it again (after a restart it is recomputed from the file).
type HashState = Option<(u64, Digester)>;

/// A filesystem backend rooted at a directory.
pub struct FsStorage {
    root: PathBuf,
    uploads: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<HashState>>>>,
}

impl std::fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStorage")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

impl FsStorage {
    /// Opens (creating if needed) the storage at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<FsStorage, StorageError> {
        let root = root.into();
        for dir in ["objects", "uploads", "tmp"] {
            let p = root.join(dir);
            tokio::fs::create_dir_all(&p)
                .await
                .map_err(io_err("creating", &p))?;
        }
        remove_stale_temps(&root.join("tmp")).await;
        Ok(FsStorage {
            root,
            uploads: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_path(&self, key: &Key) -> PathBuf {
        self.root.join("objects").join(key.as_str())
    }

    fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{}.tmp", hex::encode(rand::random::<[u8; 12]>())))
    }

    fn upload_lock(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<HashState>> {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(id.clone()).or_default())
    }

    fn forget_upload(&self, id: &UploadId) {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    /// Renames a complete, fsynced file to `key`'s path and makes the rename durable.
    async fn commit_file(&self, from: &Path, key: &Key) -> Result<(), StorageError> {
        let dest = self.object_path(key);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(io_err("creating", &parent))?;
        tokio::fs::rename(from, &dest)
            .await
            .map_err(io_err("renaming into", &dest))?;
        sync_dir(&parent).await
    }
}

/// Removes temp files a crashed process left behind (another process may share the root, so
/// only old ones). Failures are only logged: they cost disk space, not correctness.
async fn remove_stale_temps(tmp: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(tmp).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let old = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if old && let Err(e) = tokio::fs::remove_file(entry.path()).await {
            tracing::warn!("removing stale temp file {}: {e}", entry.path().display());
        }
    }
}

async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(io_err("syncing directory", dir))
}

/// Writes `body` to `file`, feeding `hasher`; returns the number of bytes written.
async fn write_stream(
    file: &mut tokio::fs::File,
    path: &Path,
    mut body: ByteStream,
    hasher: &mut Digester,
) -> Result<u64, StorageError> {
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Body)?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(io_err("writing", path))?;
        written = written.saturating_add(chunk.len() as u64);
    }
    file.flush().await.map_err(io_err("writing", path))?;
    file.sync_all().await.map_err(io_err("syncing", path))?;
    Ok(written)
}

/// Hashes the first `len` bytes of the file at `path` (off the async threads).
async fn hash_file(path: &Path, alg: hull_oci::Algorithm) -> Result<(u64, Digest), StorageError> {
    let p = path.to_path_buf();
    let r = tokio::task::spawn_blocking(move || -> io::Result<(u64, Digest)> {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Digester::new(alg);
        let n = io::copy(&mut f, &mut h)?;
        Ok((n, h.finish()))
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))
    .and_then(|r| r);
    r.map_err(io_err("hashing", path))
}

#[async_trait]
impl RegistryStorage for FsStorage {
    async fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError> {
        let p = self.object_path(key);
        match tokio::fs::metadata(&p).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                size: m.len(),
                modified: m.modified().map_err(io_err("reading the mtime of", &p))?,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // A path segment that is a file (`a` when asking for `a/b`) means no such object.
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(io_err("reading metadata of", &p)(e)),
        }
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let p = self.object_path(key);
        let mut f = match tokio::fs::File::open(&p).await {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(StorageError::NotFound(key.clone()));
            }
            Err(e) => return Err(io_err("opening", &p)(e)),
        };
        let size = f
            .metadata()
            .await
            .map_err(io_err("reading metadata of", &p))?
            .len();
        let (start, end) = match range {
            None => (0, size),
            Some(r) => {
                if r.start > r.end || r.end > size {
                    return Err(StorageError::RangeNotSatisfiable {
                        key: key.clone(),
                        start: r.start,
                        end: r.end,
                        size,
                    });
                }
                (r.start, r.end)
            }
        };
        if end - start >= MAP_MIN {
            return Ok(mapped_stream(f.into_std().await, p, start, end));
        }
        if start > 0 {
            f.seek(io::SeekFrom::Start(start))
                .await
                .map_err(io_err("seeking in", &p))?;
        }
        Ok(tokio_util::io::ReaderStream::with_capacity(f.take(end - start), READ_CHUNK).boxed())
    }

    async fn put(&self, key: &Key, data: Bytes) -> Result<(), StorageError> {
        let tmp = self.temp_path();
        let r = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(io_err("creating", &tmp))?;
            f.write_all(&data).await.map_err(io_err("writing", &tmp))?;
            f.sync_all().await.map_err(io_err("syncing", &tmp))?;
            drop(f);
            self.commit_file(&tmp, key).await
        }
        .await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        r
    }

    async fn put_stream(
        &self,
        key: &Key,
        body: ByteStream,
        expected: &Expected,
    ) -> Result<u64, StorageError> {
        let tmp = self.temp_path();
        let r = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(io_err("creating", &tmp))?;
            let mut hasher = expected.digest.digester();
            let size = write_stream(&mut f, &tmp, body, &mut hasher).await?;
            drop(f);
            expected.check(key, size, hasher.finish())?;
            self.commit_file(&tmp, key).await?;
            Ok(size)
        }
        .await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        r
    }

    async fn delete(&self, key: &Key) -> Result<bool, StorageError> {
        let p = self.object_path(key);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(io_err("removing", &p)(e)),
        }
    }

    async fn list_after(
        &self,
        prefix: &Prefix,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Key>, StorageError> {
        let objects = self.root.join("objects");
        let dir = objects.join(prefix.as_str().trim_end_matches('/'));
        let start_after = start_after.map(str::to_string);
        let r = tokio::task::spawn_blocking(move || -> io::Result<Vec<String>> {
            let mut keys = Vec::new();
            walk(&dir, &objects, &mut keys)?;
            keys.sort_unstable();
            Ok(keys
                .into_iter()
                .filter(|k| start_after.as_deref().is_none_or(|s| k.as_str() > s))
                .take(limit)
                .collect())
        })
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(io_err("listing", &self.root.join("objects")))?;
        // Stray files whose names are not keys (left by hand) are not objects.
        Ok(r.into_iter().filter_map(|k| Key::new(k).ok()).collect())
    }

    async fn upload_create(&self, id: &UploadId) -> Result<(), StorageError> {
        let dir = self.upload_dir(id);
        tokio::fs::create_dir(&dir)
            .await
            .map_err(io_err("creating", &dir))?;
        let data = self.upload_data(id);
        let f = tokio::fs::File::create(&data)
            .await
            .map_err(io_err("creating", &data))?;
        f.sync_all().await.map_err(io_err("syncing", &data))?;
        sync_dir(&dir).await?;
        sync_dir(&self.root.join("uploads")).await?;
        *self.upload_lock(id).lock().await = Some((0, Digester::new(hull_oci::Algorithm::Sha256)));
        Ok(())
    }

    async fn upload_stat(&self, id: &UploadId) -> Result<Option<ObjectMeta>, StorageError> {
        let p = self.upload_data(id);
        match tokio::fs::metadata(&p).await {
            Ok(m) => Ok(Some(ObjectMeta {
                size: m.len(),
                modified: m.modified().map_err(io_err("reading the mtime of", &p))?,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading metadata of", &p)(e)),
        }
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<u64, StorageError> {
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let p = self.upload_data(id);
        let mut f = match tokio::fs::OpenOptions::new().append(true).open(&p).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                drop(state);
                self.forget_upload(id);
                return Err(StorageError::UploadNotFound(id.clone()));
            }
            Err(e) => return Err(io_err("opening", &p)(e)),
        };
        let size = f
            .metadata()
            .await
            .map_err(io_err("reading metadata of", &p))?
            .len();
        if size != offset {
            return Err(StorageError::UploadOffset {
                id: id.clone(),
                size,
                offset,
            });
        }
        // Keep hashing in flight only when the saved state covers exactly what is on disk.
        let mut hasher = match state.take() {
            Some((len, h)) if len == size => Some(h),
            _ => None,
        };
        let mut scratch = Digester::new(hull_oci::Algorithm::Sha256);
        let r = write_stream(&mut f, &p, body, hasher.as_mut().unwrap_or(&mut scratch)).await;
        match r {
            Ok(n) => {
                let new_size = size.saturating_add(n);
                *state = hasher.map(|h| (new_size, h));
                Ok(new_size)
            }
            Err(e) => {
                // Leave the session as it was before this chunk, so the client can send it again.
                let _ = f.set_len(size).await;
                let _ = f.sync_all().await;
                Err(e)
            }
        }
    }

    async fn upload_commit(
        &self,
        id: &UploadId,
        key: &Key,
        expected: &Expected,
    ) -> Result<u64, StorageError> {
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let p = self.upload_data(id);
        let size = match tokio::fs::metadata(&p).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                drop(state);
                self.forget_upload(id);
                return Err(StorageError::UploadNotFound(id.clone()));
            }
            Err(e) => return Err(io_err("reading metadata of", &p)(e)),
        };
        let alg = expected.digest.algorithm();
        let actual = match state.as_ref() {
            Some((len, h)) if *len == size && alg == hull_oci::Algorithm::Sha256 => {
                h.clone().finish()
            }
            _ => {
                let (n, d) = hash_file(&p, alg).await?;
                if n != size {
                    return Err(StorageError::Io {
                        what: "hashing",
                        path: p.display().to_string(),
                        source: io::Error::other("the upload changed while it was hashed"),
                    });
                }
                d
            }
        };
        expected.check(key, size, actual)?;
        self.commit_file(&p, key).await?;
        let dir = self.upload_dir(id);
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(io_err("removing", &dir))?;
        *state = None;
        drop(state);
        self.forget_upload(id);
        Ok(size)
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<bool, StorageError> {
        let lock = self.upload_lock(id);
        let state = lock.lock().await;
        let dir = self.upload_dir(id);
        let r = match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &dir)(e)),
        };
        drop(state);
        self.forget_upload(id);
        r
    }
}

/// Collects the keys of the files below `dir` (relative to `objects`).
fn walk(dir: &Path, objects: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&path, objects, out)?;
        } else if ft.is_file()
            && let Ok(rel) = path.strip_prefix(objects)
            && let Some(s) = rel.to_str()
        {
            out.push(s.to_string());
        }
    }
    Ok(())
}

/// An object's bytes `start..end` as a stream of read-only mappings of the file,
/// [`MAP_WINDOW`] each.
///
/// A read into a buffer copies every byte once more than a write from a mapping does (the
/// socket write copies from the page cache itself), and on `bench/registry` that is the
/// difference between 1.16× and about 1.45× the CNCF registry's blob GET rate. Mapping costs
/// no I/O up front (pages fault in, 64 KiB at a time, as the socket write reads them), so it
/// happens on the runtime's thread. `sendfile` through a custom stream under hyper was
/// measured too, and was slower on loopback (about 1.0×): the receiver then copies out of
/// page-sized fragments.
///
/// Sound because object files are immutable: every object is written under `tmp/`, fsynced and
/// renamed into place, and never opened for writing again; replacing or deleting an object
/// unlinks the old file, which leaves an existing mapping intact. Only a file truncated behind
/// the server's back, in the data directory, could fault a reader.
fn mapped_stream(file: std::fs::File, path: PathBuf, start: u64, end: u64) -> ByteStream {
    let file = Arc::new(file);
    futures_util::stream::iter(std::iter::successors(
        (start < end).then_some(start),
        move |&at| Some(at + MAP_WINDOW).filter(|&next| next < end),
    ))
    .map(move |at| {
        let len = MAP_WINDOW.min(end - at);
        let window = usize::try_from(len)
            .map_err(io::Error::other)
            .and_then(|len| {
                // SAFETY: a read-only private mapping of an immutable file (see above); it lives
                // as long as the `Bytes` that own it.
                unsafe { memmap2::MmapOptions::new().offset(at).len(len).map(&*file) }
            });
        window
            .map(Bytes::from_owner)
            .map_err(|e| io::Error::new(e.kind(), format!("mapping {}: {e}", path.display())))
    })
    .boxed()
}
