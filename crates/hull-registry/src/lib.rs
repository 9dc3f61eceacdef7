//! hull's registry server (layer L3): the OCI distribution-spec 1.1 API — pull, push (monolithic,
//! chunked, resumable after a restart), cross-repository mount, deletes, tags and catalog
//! pagination, the referrers API — over the object-centric [`RegistryStorage`] trait, with a
//! filesystem backend ([`FsStorage`]) and an object-store backend ([`storage::ObjectStorage`]:
//! an S3 bucket configured by [`S3Config`], or any `object_store` that lists in key order).
//! Several registries may serve one bucket: they share no state but the bucket, and an upload
//! started on one may be continued and finished on another (see [`storage::ObjectStorage`]).
//! A registry can also be a pull-through cache of another registry ([`proxy`]).
//!
//! The S3 tests run the shared storage suite, skopeo, replicas and a store restart against
//! `s3s-fs` (`cargo install s3s-fs --version 0.14.1 --locked --features binary`, as `.ci/run`
//! does), as part of `cargo test --workspace`.
//!
//! Depends on `hull-oci` and, for the pull-through cache only, `hull-distribution` among hull
//! crates: a registry serves bytes and never needs the image store or layers. The mirror's
//! upstream requests need everything a client needs (scheme choice, Basic and token auth,
//! retries, manifest checks, resumable blob streams), which `hull-distribution`'s
//! `RegistryClient` already does; a second client here would drift from it. Front ends (`hull serve`) own the listener address, the
//! configuration file and logging setup; this crate logs through `tracing` (access lines at
//! `info` under the `hull_registry::access` target) and never prints.
//!
//! Storage follows ARCHITECTURE.md's object-centric contract: `get` (with a byte range),
//! `put_stream` (verified before it becomes visible), `stat`, `delete`, `list_after`, plus
//! append-only upload sessions that a backend keeps durable, so a client can resume a chunked
//! upload after a server restart. Every backend runs [`storage::suite::run`].
//!
//! Also here: TLS from PEM files ([`tls`], [`serve_tls`]), online garbage collection with a
//! grace period ([`gc`]) that also aborts idle upload sessions, repository search at
//! `/v1/search` as Docker Hub answers it ([`search`]), and Prometheus metrics at `/metrics`
//! ([`metrics`], on unless turned off; unauthenticated, labelled by endpoint kind only).
//!
//! Auth has two modes. Basic ([`BasicAuth`]): every request but `/metrics` needs valid
//! htpasswd credentials, and any valid user may do anything. Token ([`TokenAuth`], Docker's
//! token flow): the registry serves its own token endpoint at `/token`, which checks htpasswd
//! credentials (or none, for anonymous callers) and signs ES256 JWTs granting per-repository
//! actions by configured rules ([`AccessRule`]: a union; without rules, signed-in users may do
//! anything and anonymous callers nothing); `/v2/` then wants `Authorization: Bearer` and
//! answers 401 with a `Bearer realm=…,service=…,scope=…` challenge naming what the request
//! needed. A cross-repository mount from a repository the token may not pull becomes a plain
//! upload. Search lists only what the caller may pull. See [`token`].
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
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod search;
mod server;
pub mod storage;
pub mod tls;
pub mod token;

pub use auth::{BasicAuth, Htpasswd};
pub use error::{ApiError, ErrorCode};
pub use metrics::{Metrics, MetricsConfig};
pub use names::{RepoName, Tag};
pub use proxy::{Proxy, ProxyConfig, ProxyError};
pub use search::{RepoInfo, RepoInfoUpdate, SearchError, SearchResults};
pub use server::{
    API_VERSION_HEADER, CONTENT_DIGEST_HEADER, Https, OCI_FILTERS_APPLIED_HEADER,
    OCI_SUBJECT_HEADER, Peer, Registry, RegistryBuilder, RegistryConfig, UPLOAD_UUID_HEADER, serve,
    serve_tls,
};
pub use storage::{FsStorage, ObjectStorage, RegistryStorage, S3Config, StorageError};
pub use token::{AccessRule, TokenAuth, TokenConfig, TokenError};
