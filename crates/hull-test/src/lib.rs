//! Test harness for hull (dev-only): starts real peers and builds fixture images locally, so that
//! hull's tests need nothing but Debian packages (installed on demand when running as root).
//!
//! - [`peers`]: find or install peer programs (`require_bin!`), skip with `SKIPPED: reason` only
//!   outside CI (with `CI` set, a missing peer is a failure, never a skip).
//! - [`registry`]: a CNCF distribution registry (Debian's `docker-registry`) on loopback, optionally
//!   behind htpasswd basic auth or the token flow.
//! - [`fixtures`]: fixture images (busybox, multi-layer, multi-arch, zstd) built from Debian
//!   packages and pushed to a registry.
//! - [`docker`]: a private Docker daemon (Debian's `docker.io`) in its own mount namespace.
//! - [`s3`]: an S3 server (`s3s-fs`, installed with cargo) on loopback, to stop and restart.
//! - [`tree`]: entry-by-entry snapshots of directory trees, to compare unpacked images.

pub mod docker;
pub mod fixtures;
pub mod peers;
pub mod registry;
pub mod s3;
pub mod tree;
