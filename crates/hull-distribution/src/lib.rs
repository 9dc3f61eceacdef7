//! hull's registry client (layer L1): talks the OCI distribution spec to registries — scheme
//! selection, authentication (Basic and Docker's token flow), retries with backoff, manifests read
//! with a size cap and digest checks, blobs streamed (resumable, optionally in parallel ranges),
//! tag listing, and Docker's credential configuration ([`credentials`]).
//!
//! Depends only on `hull-oci` among hull crates: it moves bytes and never stores them (the content
//! store verifies and commits what it is given), never prints, and knows nothing of images beyond
//! the documents it must validate. Pushing ([`UploadSession`], [`RegistryClient::push_blob`],
//! [`RegistryClient::put_manifest`]) reads blobs from files it is given, never from a store.
//!
//! Differences from ARCHITECTURE.md: credentials are handled by our own [`credentials`] module, not
//! the `docker_credential` crate, because that crate cannot store or erase and its errors name no
//! file or helper. Cross-host redirects (307 to blob storage) rely on reqwest's redirect policy,
//! which drops `Authorization` whenever the host or port changes.

mod auth;
mod blob;
mod client;
pub mod credentials;
mod error;
pub mod search;
mod upload;

pub use auth::{Challenge, parse_www_authenticate};
pub use blob::{BlobOptions, BlobStream};
pub use client::{ClientConfig, FetchedManifest, RegistryClient, allows_plain_http, api_host};
pub use credentials::{Credential, CredentialError};
pub use error::DistributionError;
pub use upload::{BlobFile, MountResult, PushedBlob, UploadOptions, UploadProgress, UploadSession};
