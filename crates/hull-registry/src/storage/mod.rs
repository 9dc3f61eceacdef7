//! The [`RegistryStorage`] trait: what the registry needs from a storage backend, in terms an
//! object store offers natively (ranged reads, verified streaming writes, stat, delete, ordered
//! listing after a key), plus resumable upload sessions.
//!
//! Objects are named by [`Key`]s: `/`-separated segments, each made only of ASCII letters,
//! digits, `.`, `_`, `-` and `:`, never starting with `.`. A key that names an object is never
//! also a prefix directory of another key (the registry layout guarantees it by reserving
//! `_`-prefixed segments, which repository name components cannot start with), so a backend
//! can map keys to paths one-to-one.
//!
//! How an object store (S3 through `object_store`) fits: `get` is a ranged GET, `put` a PUT,
//! `put_stream` a multipart upload hashed in flight and completed only once verified,
//! `list_after` is `ListObjectsV2` with `start-after`. An upload session holds its chunks as
//! objects named by their offsets, each claimed with a conditional create so that registries
//! sharing a bucket cannot both append at one offset, since S3 parts must be at least 5 MiB
//! and cannot be appended to; `upload_commit` streams them in order through the hasher into
//! the destination (see [`ObjectStorage`]).

mod fs;
mod object;
pub mod suite;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use hull_oci::Digest;

pub use fs::FsStorage;
pub use object::{ObjectStorage, S3Config};

/// A stream of bytes read from or written to a backend.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Longest key a backend must accept (S3's limit is 1024 bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// A validated object name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Validates `s` as a key (see the module docs for the rules).
    pub fn new(s: impl Into<String>) -> Result<Key, StorageError> {
        let s = s.into();
        if Self::is_valid(&s) {
            Ok(Key(s))
        } else {
            Err(StorageError::InvalidKey(s))
        }
    }

    fn is_valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_KEY_LEN
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && !seg.starts_with('.')
                    && seg.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':')
                    })
            })
    }

    /// `self/segment`, validated.
    pub fn join(&self, rest: &str) -> Result<Key, StorageError> {
        Key::new(format!("{}/{rest}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

/// A prefix for [`RegistryStorage::list_after`]: empty (everything) or a key followed by `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// Every key.
    pub fn all() -> Prefix {
        Prefix(String::new())
    }

    /// The keys below `dir` (`dir/...`).
    pub fn dir(dir: &Key) -> Prefix {
        Prefix(format!("{}/", dir.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upload session's name: 32 lowercase hex characters (a random 128-bit id), so that it can be
/// a path segment and a URL segment as it is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn random() -> UploadId {
        UploadId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Parses an id received from a client.
    pub fn parse(s: &str) -> Option<UploadId> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| UploadId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

/// What [`RegistryStorage::stat`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// When the object was last written (garbage collection spares recent objects).
    pub modified: SystemTime,
}

/// A byte range `start..end` (end exclusive) of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a verified write must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub digest: Digest,
    /// The size, when the writer knows it in advance.
    pub size: Option<u64>,
}

impl Expected {
    /// Whether `size` bytes hashing to `actual` are what was promised for `key`; every
    /// backend calls this before making an object visible.
    pub(crate) fn check(&self, key: &Key, size: u64, actual: Digest) -> Result<(), StorageError> {
        if let Some(want) = self.size
            && want != size
        {
            return Err(StorageError::SizeMismatch {
                key: key.clone(),
                expected: want,
                actual: size,
            });
        }
        if actual != self.digest {
            return Err(StorageError::DigestMismatch {
                key: key.clone(),
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    #[error("object {0} not found")]
    NotFound(Key),
    #[error("upload {0} not found")]
    UploadNotFound(UploadId),
    #[error("range {start}-{end} of object {key} is outside its {size} bytes")]
    RangeNotSatisfiable {
        key: Key,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("upload {id} holds {size} bytes, a chunk starting at {offset} cannot be appended")]
    UploadOffset {
        id: UploadId,
        size: u64,
        offset: u64,
    },
    #[error("content written to {key} has digest {actual}, expected {expected}")]
    DigestMismatch {
        key: Key,
        expected: Digest,
        actual: Digest,
    },
    #[error("content written to {key} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        key: Key,
        expected: u64,
        actual: u64,
    },
    #[error("object {key} is larger than the limit of {limit} bytes")]
    TooLarge { key: Key, limit: u64 },
    #[error("reading the request body: {0}")]
    Body(#[source] io::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StorageError::NotFound(_) | StorageError::UploadNotFound(_)
        )
    }
}

/// Storage for a registry: named immutable-or-replaced objects, and append-only upload sessions
/// that are committed into objects.
///
/// Invariants every backend keeps (checked by [`suite::run`]):
/// - an object is visible only complete: [`put`](Self::put) and
///   [`put_stream`](Self::put_stream) replace atomically, and a failed or unverified write
///   leaves no trace under its key;
/// - [`put_stream`](Self::put_stream) and [`upload_commit`](Self::upload_commit) verify the
///   digest (and size) of what was written before the object becomes visible;
/// - [`list_after`](Self::list_after) returns keys in ascending byte order, which makes
///   `start_after` pagination stable;
/// - upload sessions are durable: a backend opened again on the same data sees the sessions and
///   the bytes they held, so a client may continue after a server restart.
#[async_trait]
pub trait RegistryStorage: Send + Sync + 'static {
    /// The object's size, or `None` when it does not exist.
    async fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>, StorageError>;

    /// Streams the object, or the given range of it (which must lie within the object).
    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream, StorageError>;

    /// Writes a small object whole, replacing any previous one atomically.
    async fn put(&self, key: &Key, data: Bytes) -> Result<(), StorageError>;

    /// Streams `body` into a new object, hashing it on the way; the object becomes visible
    /// under `key` only if its digest (and size, when given) match `expected`. Returns the size.
    async fn put_stream(
        &self,
        key: &Key,
        body: ByteStream,
        expected: &Expected,
    ) -> Result<u64, StorageError>;

    /// Removes the object; `false` when there was none.
    async fn delete(&self, key: &Key) -> Result<bool, StorageError>;

    /// Up to `limit` keys starting with `prefix` that sort after `start_after` (a full key), in
    /// ascending byte order.
    async fn list_after(
        &self,
        prefix: &Prefix,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Key>, StorageError>;

    /// Starts an empty upload session.
    async fn upload_create(&self, id: &UploadId) -> Result<(), StorageError>;

    /// How many bytes the session holds and when it last grew, or `None` when it does not
    /// exist.
    async fn upload_stat(&self, id: &UploadId) -> Result<Option<ObjectMeta>, StorageError>;

    /// How many bytes the session holds, or `None` when it does not exist.
    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>, StorageError> {
        Ok(self.upload_stat(id).await?.map(|m| m.size))
    }

    /// Appends `body` to the session, which must hold exactly `offset` bytes
    /// ([`StorageError::UploadOffset`] otherwise, with nothing written). Returns the new size.
    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<u64, StorageError>;

    /// Verifies the session's content against `expected` and moves it to `key`, ending the
    /// session. On a mismatch nothing is stored and the session is left as it was.
    async fn upload_commit(
        &self,
        id: &UploadId,
        key: &Key,
        expected: &Expected,
    ) -> Result<u64, StorageError>;

    /// Ends the session and discards its content; `false` when there was none.
    async fn upload_abort(&self, id: &UploadId) -> Result<bool, StorageError>;

    /// Reads a whole object of at most `limit` bytes, or `None` when it does not exist.
    async fn get_bytes(&self, key: &Key, limit: u64) -> Result<Option<Bytes>, StorageError> {
        let mut stream = match self.get(key, None).await {
            Ok(s) => s,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| StorageError::Io {
                what: "reading",
                path: key.to_string(),
                source,
            })?;
            if (out.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(StorageError::TooLarge {
                    key: key.clone(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(out)))
    }
}

/// A [`ByteStream`] of one buffer.
pub fn once(data: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(data) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for good in [
            "a",
            "blobs/sha256/ab",
            "repositories/a/b/_manifests/tags/V1.0-x_y",
        ] {
            assert!(Key::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "../a",
            "a/../b",
            "a/.hidden",
            "a b",
            "a\\b",
            "ä",
        ] {
            assert!(Key::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Key::new("a".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn upload_ids_are_hex() {
        let id = UploadId::random();
        assert_eq!(UploadId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(UploadId::random(), id);
        for bad in ["", "../../etc", &"A".repeat(32), &"a".repeat(31)] {
            assert!(UploadId::parse(bad).is_none(), "{bad}");
        }
    }
}
