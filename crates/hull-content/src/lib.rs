//! hull's content store (layer L1): content-addressed blobs, after containerd's content store.
//!
//! Owns the on-disk layout under the store directory:
//! - `blobs/<alg>/<hex>`: committed blobs, read-only (mode 0444); paths are only ever built
//!   from a parsed [`hull_oci::Digest`], never from a raw string.
//! - `ingest/<sha256 of the ingest ref>/`: one in-progress write, with `data` (the bytes so far),
//!   `ref` (the ingest ref), `expected` (the expected digest and size, if known), `updatedat`
//!   and `lock` (the advisory `flock` that keeps two writers, in any process, off one ingest).
//!   An ingest being removed is first renamed to `ingest/.trash-*`, so a writer arriving at the
//!   same moment starts a fresh directory instead of racing the removal.
//!
//! The lifecycle is ingest (resumable across crashes) → verify digest and size → atomic commit
//! (`rename` of `data` into `blobs/`, then `fsync` of the blob directory), so a blob path either
//! does not exist or holds the complete, verified content.
//!
//! Depends only on `hull-oci`: the store knows nothing of images, leases or garbage collection
//! (`hull-metadata` decides what may be deleted; this crate only executes it). The API is
//! synchronous std I/O; async callers run it on blocking threads.
//!
//! Differences from ARCHITECTURE.md and containerd:
//! - The ingest's last-update time is the newer of the `updatedat` file (written when a writer
//!   opens or syncs) and the `data` file's mtime, so writes don't pay for an extra file update.
//! - Resuming an ingest re-hashes the bytes already present instead of persisting hasher state:
//!   std's hashers cannot be serialised, and re-hashing at ~1.8 GB/s is cheap next to a download.
//!   Bytes past the last `sync` that a power loss turned into garbage are caught by the digest
//!   check at commit, which then drops the ingest so the next attempt starts clean.
//! - Committing a digest that is already present succeeds and drops the ingest (containerd
//!   returns `AlreadyExists`), because every caller here would treat that as success anyway.

mod error;
mod lock;
mod store;
mod writer;

pub use error::ContentError;
pub use store::{ContentStore, IngestInfo};
pub use writer::Writer;

/// Buffer size for streaming copies and re-hashing.
const COPY_BUFFER: usize = 1 << 20;
