//! hull's image service (layer L3): pull, push, import, save, load, tag, remove, prune, export,
//! mount and check, over one local store.
//!
//! The store is a directory:
//! ```text
//! ROOT/lock            flock: shared for ordinary work, exclusive for GC (prune, check --repair)
//! ROOT/metadata.db     hull-metadata (images, tags, layers, leases)
//! ROOT/content/        hull-content (blobs by digest, resumable ingests)
//! ROOT/layers/<hex>/   one unpacked layer per chain ID; `diff/` is the layer alone, in overlayfs
//!                      format (whiteouts as 0/0 char devices), so a chain mounts as lowerdirs
//! ROOT/layers/tmp/     layers being unpacked; renamed into place when complete and synced
//! ROOT/mounts/<hex>/   read-only overlay mounts made by `image mount`
//! ROOT/snapshots/<id>/ writable snapshots of builds (overlay mounts, or copies where overlayfs
//!                      is unavailable)
//! ```
//! The unpacked-layer layout and the writable snapshots (`snapshot.rs`: prepare over a chain,
//! commit the upper directory as a layer) are what ARCHITECTURE.md calls `hull-snapshot`. They
//! stay here while the layer records they read and write are this crate's, the copying
//! snapshotter for hosts without overlayfs (`snapshot/copy.rs`) included; it commits through the
//! same overlay-format upper directory, so layers do not depend on which one made them.
//!
//! Compressed blobs are kept after unpacking (as containerd does, unlike Docker): `save`, `push`
//! and `system check` need the exact bytes whose digests the manifest names.
//!
//! Library code here never prints: progress is a stream of [`Event`]s the front end renders.

mod archive;
mod check;
mod commit;
mod error;
mod events;
mod import;
mod layers;
mod pull;
mod push;
mod query;
mod snapshot;
mod store;

pub use archive::{ArchiveFormat, LoadedImage};
pub use check::{CheckReport, DiskUsage, ImageUsage, PruneReport};
pub use error::ImageError;
pub use events::{Event, EventSink, LayerEvent, discard};
pub use import::ImportOptions;
pub use pull::{PullOptions, PullResult, pull, pull_all_tags};
pub use push::{Compression, PushOptions, PushResult, push, push_all_tags, repository_tags};
pub use query::{HistoryRow, Image, ImageSummary, RemoveEvent};
pub use snapshot::{CommittedLayer, Snapshot, Snapshotter};
pub use store::Store;
