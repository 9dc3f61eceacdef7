//! The distribution-spec error codes (spec 1.1 "Error Codes") and their JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::storage::StorageError;

/// An error code of the distribution spec, with the HTTP status hull answers it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// `n` of a paginated list is not a number (distribution's code).
    PaginationNumberInvalid,
    /// Not a spec code: a storage failure (500).
    Unknown,
    /// `Content-Range` out of order (416, code `BLOB_UPLOAD_INVALID`).
    RangeInvalid,
    /// A `Range` request outside the blob (416, code `BLOB_UNKNOWN` is wrong here, so
    /// `SIZE_INVALID` as distribution answers).
    RangeNotSatisfiable,
    /// Manifest larger than the registry accepts (413, code `SIZE_INVALID`).
    ManifestTooLarge,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid | ErrorCode::RangeInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid
            | ErrorCode::RangeNotSatisfiable
            | ErrorCode::ManifestTooLarge => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::RangeInvalid | ErrorCode::RangeNotSatisfiable => {
                StatusCode::RANGE_NOT_SATISFIABLE
            }
            ErrorCode::ManifestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// An error answered to a client: a spec code and a message for humans.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra headers (`Range` on a 416 for uploads, so the client knows where to resume).
    pub range: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            range: None,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        let code = match &e {
            StorageError::NotFound(_) => ErrorCode::BlobUnknown,
            StorageError::UploadNotFound(_) => ErrorCode::BlobUploadUnknown,
            StorageError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            StorageError::UploadOffset { .. } => ErrorCode::RangeInvalid,
            StorageError::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            StorageError::SizeMismatch { .. } => ErrorCode::SizeInvalid,
            StorageError::TooLarge { .. } => ErrorCode::SizeInvalid,
            StorageError::Body(_) => ErrorCode::BlobUploadInvalid,
            StorageError::InvalidKey(_) | StorageError::Io { .. } => ErrorCode::Unknown,
        };
        if code == ErrorCode::Unknown {
            tracing::error!("storage: {e}");
        }
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{
                "code": self.code.as_str(),
                "message": self.message,
                "detail": serde_json::Value::Null,
            }]
        })
        .to_string();
        let mut resp = (self.code.status(), body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(r) = self.range.and_then(|r| HeaderValue::from_str(&r).ok()) {
            h.insert(header::RANGE, r);
        }
        resp
    }
}
