//! hull's registry server (layer L3): the OCI distribution-spec 1.1 API — pull, push (monolithic,
//! chunked, resumable after a restart), cross-repository mount, deletes, tags and catalog
//! pagination, the referrers API — over the object-centric [`RegistryStorage`] trait, with a
//! filesystem backend ([`FsStorage`]) and an object-store backend ([`storage::ObjectStorage`]:
//! any `object_store` that lists in key order; S3 with the `s3` feature).
//!
//! The `s3` feature is off by default (object_store's AWS client is heavy). Its test runs the
//! shared storage suite and skopeo pushes against `s3s-fs`
//! (`cargo install s3s-fs --version 0.14.1 --locked --features binary`):
//! `cargo test -p hull-registry --features s3`.
//!
//! Depends on `hull-oci` only among hull crates: a registry serves bytes and never needs the
//! image store, layers or the client. Front ends (`hull serve`) own the listener address, the
//! configuration file and logging setup; this crate logs through `tracing` (access lines at
//! `info` under the `hull_registry::access` target) and never prints.
//!
//! Storage follows ARCHITECTURE.md's object-centric contract: `get` (with a byte range),
//! `put_stream` (verified before it becomes visible), `stat`, `delete`, `list_after`, plus
//! append-only upload sessions that a backend keeps durable, so a client can resume a chunked
//! upload after a server restart. Every backend runs [`storage::suite::run`].
//!
//! Also here: optional HTTP basic auth against an htpasswd file ([`BasicAuth`]; any valid user
//! may do anything), TLS from PEM files ([`tls`], [`serve_tls`]), and online garbage collection
//! with a grace period ([`gc`]) that also aborts idle upload sessions.
//!
//! Differences from distribution worth knowing: the catalog is listed in storage key order
//! (`catalog/<name>/_repo`), which differs from plain name order only where a name continues with
//! a character below `/` (`a-b` before `a/b`); pagination with `last` is consistent with it.
//! Deletes are enabled by default (distribution needs `storage.delete.enabled`), and garbage
//! collection runs while the registry serves rather than in read-only mode; its one gap: a
//! manifest pushed during a collection that references a blob nothing else referenced for
//! longer than the grace period can lose that blob (see [`gc`]).

pub mod auth;
mod error;
pub mod gc;
pub mod layout;
pub mod names;
mod server;
pub mod storage;
pub mod tls;

pub use auth::{BasicAuth, Htpasswd};
pub use error::{ApiError, ErrorCode};
pub use names::{RepoName, Tag};
pub use server::{
    API_VERSION_HEADER, CONTENT_DIGEST_HEADER, OCI_FILTERS_APPLIED_HEADER, OCI_SUBJECT_HEADER,
    Peer, Registry, RegistryBuilder, RegistryConfig, UPLOAD_UUID_HEADER, serve, serve_tls,
};
pub use storage::{FsStorage, RegistryStorage, StorageError};
