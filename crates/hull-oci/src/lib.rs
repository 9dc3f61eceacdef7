//! hull's vocabulary (layer L0): the typed identities and documents every other crate speaks.
//!
//! Owns: [`Digest`] and its role newtypes ([`DiffId`], [`ChainId`], [`ImageId`]), [`Reference`]
//! (Docker's normalisation rules), [`Platform`], media types, and the JSON documents of the OCI
//! image-spec 1.1 and Docker image manifest v2 schema 2 ([`Manifest`], [`Index`], [`ImageConfig`]).
//! Depends on no other hull crate and does no I/O.
//!
//! Why our own document types rather than re-exporting `oci-spec`'s: hull must read Docker's
//! extension fields (`Healthcheck`, `OnBuild`, `Shell`, manifest lists) with the same types as the
//! OCI ones, decode with a size cap and an error that names the field that is wrong, and keep the
//! original bytes of every pulled document (digests are over bytes, so a document read from a
//! registry is never re-serialised). The OCI structs here are plain serde types, a few dozen lines.

mod config;
mod digest;
mod manifest;
pub mod media_type;
mod platform;
mod reference;

pub use config::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use digest::{Algorithm, ChainId, DiffId, Digest, DigestError, Digester, ImageId};
pub use manifest::{
    Descriptor, DocumentError, Index, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, Manifest, ParsedManifest,
};
pub use platform::{Platform, PlatformError};
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference, ReferenceError};
