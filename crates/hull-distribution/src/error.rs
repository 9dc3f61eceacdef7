//! The errors of the registry client. Every variant names the registry, repository, reference or
//! digest involved; none ever carries a credential or a token.

use hull_oci::{Digest, DocumentError};

use crate::credentials::CredentialError;

#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error("invalid client configuration: {0}")]
    Config(String),

    #[error("building the http client")]
    Client(#[source] reqwest::Error),

    /// The registry wants credentials and none are configured for it.
    #[error("unauthorized: authentication required for {registry} (hint: hull login {registry})")]
    AuthenticationRequired { registry: String },

    /// Credentials were sent and refused (by the registry or its token server).
    #[error(
        "unauthorized: {registry} refused the credentials of user {username:?} (hint: hull login {registry})"
    )]
    CredentialsRefused { registry: String, username: String },

    /// Authenticated, but not allowed to do this (403, or a token without the scope asked for).
    #[error("denied: {what}{}", detail_suffix(message))]
    Denied { what: String, message: String },

    #[error("manifest unknown: {reference}")]
    ManifestUnknown { reference: String },

    #[error("blob unknown: {repository}@{digest}")]
    BlobUnknown { repository: String, digest: Digest },

    #[error("repository name not known to registry: {repository}")]
    RepositoryUnknown { repository: String },

    /// Any other error the registry reported, with the spec's error code made readable.
    #[error("{reason}: {what}{}", detail_suffix(message))]
    Registry {
        what: String,
        status: u16,
        /// The distribution-spec error code (`NAME_INVALID`, …), when the body had one.
        code: Option<String>,
        reason: String,
        message: String,
    },

    #[error("too many requests to {registry}: rate limited after {attempts} attempts")]
    TooManyRequests { registry: String, attempts: u32 },

    #[error("{what}: registry answered {status} after {attempts} attempts")]
    Server {
        what: String,
        status: u16,
        attempts: u32,
    },

    #[error("connection refused by {registry} ({url})")]
    ConnectionRefused { registry: String, url: String },

    #[error(
        "tls handshake with {registry} failed: {reason} (hint: a registry served over plain http must be listed in insecure registries)"
    )]
    Tls { registry: String, reason: String },

    #[error("{what}: timed out talking to {registry}")]
    Timeout { registry: String, what: String },

    #[error("{what}: network error talking to {registry}")]
    Network {
        registry: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("{what}: {source}")]
    Document {
        what: String,
        #[source]
        source: DocumentError,
    },

    #[error("{what}: {size} bytes is more than the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },

    #[error("{what}: invalid response from registry: {reason}")]
    InvalidResponse { what: String, reason: String },

    #[error("{what}: stream ended at byte {at} of {total}")]
    Truncated { what: String, at: u64, total: u64 },

    #[error("authenticating to {registry}: {reason}")]
    Auth { registry: String, reason: String },

    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

fn detail_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

impl DistributionError {
    /// Whether this is the registry saying the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DistributionError::ManifestUnknown { .. }
                | DistributionError::BlobUnknown { .. }
                | DistributionError::RepositoryUnknown { .. }
        ) || matches!(self, DistributionError::Registry { status: 404, .. })
    }

    /// Whether credentials would (or other credentials might) make this request succeed.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            DistributionError::AuthenticationRequired { .. }
                | DistributionError::CredentialsRefused { .. }
        )
    }
}

/// The readable phrase for a distribution-spec error code (`distribution-spec` "Error Codes").
pub(crate) fn code_reason(code: &str) -> String {
    match code {
        "BLOB_UNKNOWN" => "blob unknown".into(),
        "BLOB_UPLOAD_INVALID" => "blob upload invalid".into(),
        "BLOB_UPLOAD_UNKNOWN" => "blob upload unknown".into(),
        "DIGEST_INVALID" => "provided digest did not match uploaded content".into(),
        "MANIFEST_BLOB_UNKNOWN" => "manifest references a blob unknown to the registry".into(),
        "MANIFEST_INVALID" => "manifest invalid".into(),
        "MANIFEST_UNKNOWN" => "manifest unknown".into(),
        "NAME_INVALID" => "invalid repository name".into(),
        "NAME_UNKNOWN" => "repository name not known to registry".into(),
        "SIZE_INVALID" => "provided length did not match content length".into(),
        "UNAUTHORIZED" => "unauthorized".into(),
        "DENIED" => "denied".into(),
        "UNSUPPORTED" => "the operation is unsupported".into(),
        "TOOMANYREQUESTS" => "too many requests".into(),
        other => other.to_ascii_lowercase().replace('_', " "),
    }
}
