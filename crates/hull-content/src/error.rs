//! Errors of the content store.

use std::io;
use std::path::{Path, PathBuf};

use hull_oci::Digest;

/// What went wrong in a content store operation.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A filesystem operation failed; `op` says what the store was doing.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the data to ingest failed (the caller's reader, not the store).
    #[error("reading data for ingest {ingest_ref:?}")]
    Source {
        ingest_ref: String,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} not found in the content store")]
    NotFound { digest: Digest },
    #[error("ingest {ingest_ref:?} is locked by another writer")]
    Locked { ingest_ref: String },
    #[error("content hashes to {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content of {digest} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// More bytes were written to an ingest than its expected size.
    #[error("ingest {ingest_ref:?} exceeds its expected size of {expected} bytes")]
    Overflow { ingest_ref: String, expected: u64 },
    /// A committed blob no longer matches its digest.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("blob {digest} is {size} bytes, more than the {max} allowed")]
    TooLarge { digest: Digest, size: u64, max: u64 },
}

impl ContentError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContentError {
        let path = path.to_path_buf();
        move |source| ContentError::Io { op, path, source }
    }
}
