//! Layer tar streams (layer L1 of ARCHITECTURE.md): compression undone and applied, tars
//! unpacked onto a directory with whiteouts, a stack of layers flattened into one tar, and
//! tars written from directory trees.
//!
//! Owns: [`Compression`] and the streaming (de)compressors; [`unpack`], the only code in hull
//! that turns tar entries into files, confined to its root by `openat2(RESOLVE_IN_ROOT)`;
//! [`export_flattened`]; [`write_tar_from_dir`]. Depends on `hull-oci` only (media types) and
//! must not depend on any store, snapshotter or service crate: callers hand it readers and
//! directories. All APIs are synchronous `std::io`; async callers run them on blocking threads.
//!
//! Differences from ARCHITECTURE.md: it lists "diff two trees" here; overlayfs already keeps a
//! step's changes apart in its upper directory, so instead of comparing trees this crate provides the
//! deterministic tar writer ([`write_tar_from_dir`]) and the layer diff of an overlay upper
//! directory ([`write_layer_diff`]).
//!
//! Choices a reader should know:
//! - Entry names are cleaned like Go's `filepath.Clean` on a rooted path, so `..` and a
//!   leading `/` are clamped to the root (`../../etc/passwd` lands at `<root>/etc/passwd`), as
//!   containerd does; Docker refuses such names instead. Symlinks are then resolved by the
//!   kernel inside the root.
//! - A tar without its end-of-archive blocks is refused (a stream cut at an entry boundary
//!   would otherwise look complete); Go's reader accepts it.
//! - GNU long names and PAX records are read into memory by the `tar` crate; the bytes it may
//!   read between two entries are capped at 1 MiB, paths at 4096 bytes.
//! - Sparse files (GNU or PAX) are refused rather than expanded.

mod compression;
mod error;
mod export;
mod guard;
mod names;
mod root;
mod tarout;
#[cfg(test)]
mod testtar;
mod unpack;
mod write;

pub use compression::{Compression, compress, decompress, decompress_detected, detect_compression};
pub use error::LayerError;
pub use export::{LayerSource, export_flattened};
pub use root::{PathKind, probe_in_root};
pub use unpack::{UnpackOptions, UnpackStats, WhiteoutMode, unpack};
pub use write::{DiffOptions, IdMap, IdRange, LayerSizes, write_layer_diff, write_tar_from_dir};
