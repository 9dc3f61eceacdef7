//! hull's durable state (layer L2): image records, tags, repository digests, unpacked layers,
//! leases, build cache records — and the garbage collector, a pure mark-and-sweep over them.
//!
//! One SQLite database in WAL mode (`rusqlite`, bundled): it survives `kill -9` at any instant,
//! and unlike redb or fjall a second process can open it while another writes, which a
//! daemonless CLI needs (two `hull pull`s on one store). Every mutation is one transaction; the
//! busy timeout makes concurrent writers queue rather than fail.
//!
//! References between records are typed columns (image → manifest/config/layer blobs, image →
//! layer chain IDs, layer → parent), not labels; GC marks from tags, images and leases.
//! Depends only on hull-oci; knows nothing of files, registries or the CLI.

mod cache;
mod gc;
mod owner;
mod store;

pub use cache::CacheRecord;
pub use gc::{GcPlan, GcRoots, mark_and_sweep};
pub use store::{
    ImageRecord, LayerRecord, LayerState, Lease, LeaseResource, Metadata, MetadataError, TagRecord,
};
