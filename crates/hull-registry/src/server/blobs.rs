//! `/v2/<name>/blobs/...` (spec 1.1 "Pulling blobs", "Pushing blobs", "Deleting blobs",
//! cross-repository mounts).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use hull_oci::Digest;

use super::{
    CONTENT_DIGEST_HEADER, Query, Registry, UPLOAD_UUID_HEADER, body_stream, content_length,
    header_str, parse_digest, set_header, take,
};
use crate::error::{ApiError, ErrorCode};
use crate::layout;
use crate::names::RepoName;
use crate::storage::{ByteRange, Expected, StorageError, UploadId};

fn blob_unknown(name: &RepoName, d: &Digest) -> ApiError {
    ApiError::new(
        ErrorCode::BlobUnknown,
        format!("blob {d} not found in {name}"),
    )
}

/// Whether the repository holds the blob (pushed or mounted into it, or a manifest of it).
async fn linked(reg: &Registry, name: &RepoName, d: &Digest) -> Result<bool, ApiError> {
    let s = reg.storage_ref();
    Ok(s.stat(&layout::layer_link(name, d)?).await?.is_some()
        || s.stat(&layout::manifest_link(name, d)?).await?.is_some())
}

/// A `Range: bytes=...` request (RFC 9110 §14.1.2), one range only; `None` means the header
/// is absent or names several ranges (served whole, which RFC 9110 allows).
enum RangeRequest {
    /// `start-end` or `start-` (end inclusive, `None` = to the end).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

fn parse_range(v: &str) -> Option<RangeRequest> {
    let spec = v.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(RangeRequest::Suffix);
    }
    let start = a.parse().ok()?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some(RangeRequest::From(start, end))
}

/// The byte range to serve of a blob of `size` bytes, or `Err(())` when unsatisfiable.
fn resolve_range(r: &RangeRequest, size: u64) -> Result<ByteRange, ()> {
    match *r {
        RangeRequest::Suffix(n) => {
            if n == 0 || size == 0 {
                return Err(());
            }
            Ok(ByteRange {
                start: size.saturating_sub(n),
                end: size,
            })
        }
        RangeRequest::From(start, end) => {
            let end = end.map_or(size, |e| e.saturating_add(1).min(size));
            if start >= size || end <= start {
                return Err(());
            }
            Ok(ByteRange { start, end })
        }
    }
}

pub(super) async fn get(
    reg: &Registry,
    name: &RepoName,
    d: &str,
    headers: &HeaderMap,
    is_head: bool,
) -> Result<Response, ApiError> {
    let digest = parse_digest(d)?;
    if let Some(p) = &reg.inner.proxy {
        use crate::proxy::{BlobWant, CachedBlob};
        let how = if is_head {
            BlobWant::Size
        } else if headers.contains_key(header::RANGE) {
            BlobWant::Stored
        } else {
            BlobWant::Stream
        };
        let (size, body) = match p.cache_blob(reg.storage(), name, &digest, how).await? {
            CachedBlob::Stored => (None, None),
            // A HEAD of a blob the mirror has not fetched: the upstream's answer.
            CachedBlob::Upstream(size) => (Some(size), Some(Body::empty())),
            CachedBlob::Streaming { size, body } => (size, Some(Body::from_stream(body))),
        };
        if let Some(body) = body {
            let mut resp = (StatusCode::OK, body).into_response();
            if let Some(size) = size {
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            }
            set_header(&mut resp, "content-type", "application/octet-stream");
            set_header(&mut resp, CONTENT_DIGEST_HEADER, &digest.to_string());
            set_header(&mut resp, "etag", &format!("\"{digest}\""));
            return Ok(resp);
        }
    }
    if !linked(reg, name, &digest).await? {
        return Err(blob_unknown(name, &digest));
    }
    let key = layout::blob(&digest)?;
    let storage = reg.storage_ref();
    let size = storage
        .stat(&key)
        .await?
        .ok_or_else(|| blob_unknown(name, &digest))?
        .size;
    let range = header_str(headers, header::RANGE).and_then(parse_range);
    let (status, range) = match range {
        None => (StatusCode::OK, None),
        Some(r) => match resolve_range(&r, size) {
            Ok(br) => (StatusCode::PARTIAL_CONTENT, Some(br)),
            Err(()) => {
                let mut resp = ApiError::new(
                    ErrorCode::RangeNotSatisfiable,
                    format!("blob {digest} has {size} bytes"),
                )
                .into_response();
                set_header(&mut resp, "content-range", &format!("bytes */{size}"));
                return Ok(resp);
            }
        },
    };
    let len = range.map_or(size, |r| r.len());
    let body = if is_head {
        Body::empty()
    } else {
        Body::from_stream(storage.get(&key, range).await?)
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    set_header(&mut resp, "content-type", "application/octet-stream");
    set_header(&mut resp, "accept-ranges", "bytes");
    set_header(&mut resp, CONTENT_DIGEST_HEADER, &digest.to_string());
    set_header(&mut resp, "etag", &format!("\"{digest}\""));
    if let Some(r) = range {
        set_header(
            &mut resp,
            "content-range",
            &format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1)),
        );
    }
    Ok(resp)
}

pub(super) async fn delete(reg: &Registry, name: &RepoName, d: &str) -> Result<Response, ApiError> {
    reg.check_delete()?;
    let digest = parse_digest(d)?;
    // Only the repository's link goes: other repositories may share the blob, and unreferenced
    // blobs are garbage collection's to remove.
    if !reg
        .storage_ref()
        .delete(&layout::layer_link(name, &digest)?)
        .await?
    {
        return Err(blob_unknown(name, &digest));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Records that the repository holds the blob.
async fn link(reg: &Registry, name: &RepoName, d: &Digest) -> Result<(), ApiError> {
    super::ensure(reg, &layout::layer_link(name, d)?).await?;
    super::ensure(reg, &layout::catalog_marker(name)?).await
}

fn created(name: &RepoName, d: &Digest) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    set_header(&mut resp, "location", &format!("/v2/{name}/blobs/{d}"));
    set_header(&mut resp, CONTENT_DIGEST_HEADER, &d.to_string());
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// `Range` of an upload holding `size` bytes, as distribution writes it (`0-0` when empty).
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_response(status: StatusCode, name: &RepoName, id: &UploadId, size: u64) -> Response {
    let mut resp = status.into_response();
    set_header(
        &mut resp,
        "location",
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set_header(&mut resp, "range", &upload_range(size));
    set_header(&mut resp, UPLOAD_UUID_HEADER, id.as_str());
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

pub(super) async fn start_upload(
    reg: &Registry,
    name: &RepoName,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    reg.check_writable()?;
    let storage = reg.storage_ref();
    if let Some(m) = query.get("mount") {
        let digest = parse_digest(m)?;
        // Mount only from a repository that holds the blob; otherwise fall back to a new
        // session (202), as the spec allows.
        if let Some(from) = query.get("from").and_then(RepoName::parse)
            && storage
                .stat(&layout::layer_link(&from, &digest)?)
                .await?
                .is_some()
        {
            link(reg, name, &digest).await?;
            return Ok(created(name, &digest));
        }
    } else if let Some(d) = query.get("digest") {
        // Monolithic upload: the body is the whole blob. It is verified even when the blob is
        // already stored, so that knowing a digest never links content one has not got.
        let digest = parse_digest(d)?;
        let expected = Expected {
            digest: digest.clone(),
            size: content_length(headers),
        };
        storage
            .put_stream(&layout::blob(&digest)?, body_stream(take(body)), &expected)
            .await?;
        link(reg, name, &digest).await?;
        return Ok(created(name, &digest));
    }
    let id = UploadId::random();
    storage.upload_create(&id).await?;
    storage
        .put(&layout::upload(name, &id)?, Bytes::new())
        .await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

/// The session `id` of repository `name`, and how many bytes it holds.
async fn session(reg: &Registry, name: &RepoName, id: &str) -> Result<(UploadId, u64), ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorCode::BlobUploadUnknown,
            format!("upload {id} not found in {name}"),
        )
    };
    let id = UploadId::parse(id).ok_or_else(unknown)?;
    let storage = reg.storage_ref();
    if storage.stat(&layout::upload(name, &id)?).await?.is_none() {
        return Err(unknown());
    }
    let size = storage.upload_size(&id).await?.ok_or_else(unknown)?;
    Ok((id, size))
}

pub(super) async fn upload_status(
    reg: &Registry,
    name: &RepoName,
    id: &str,
) -> Result<Response, ApiError> {
    let (id, size) = session(reg, name, id).await?;
    Ok(upload_response(StatusCode::NO_CONTENT, name, &id, size))
}

/// `Content-Range: <start>-<end>` of a chunk (spec 1.1 "Pushing a blob in chunks"; the
/// `bytes ` prefix and `/total` suffix of RFC 9110's form are tolerated).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes")
        .map_or(v, |r| r.trim_start_matches([' ', '=']));
    let v = v.split('/').next().unwrap_or(v);
    let (a, b) = v.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Appends the request body to the session, checking `Content-Range` against what it holds.
async fn append(
    reg: &Registry,
    id: &UploadId,
    size: u64,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<u64, ApiError> {
    let out_of_order = |msg: String| ApiError {
        code: ErrorCode::RangeInvalid,
        message: msg,
        range: Some(upload_range(size)),
    };
    if let Some(cr) = header_str(headers, header::CONTENT_RANGE) {
        let (start, end) = parse_content_range(cr)
            .ok_or_else(|| out_of_order(format!("invalid Content-Range {cr:?}")))?;
        if start != size {
            return Err(out_of_order(format!(
                "chunk starts at {start} but upload {id} holds {size} bytes"
            )));
        }
        if let Some(len) = content_length(headers)
            && len != end - start + 1
        {
            return Err(out_of_order(format!(
                "Content-Range {cr:?} does not match Content-Length {len}"
            )));
        }
    }
    match reg
        .storage_ref()
        .upload_append(id, size, body_stream(take(body)))
        .await
    {
        Ok(n) => Ok(n),
        Err(StorageError::UploadOffset { size, offset, .. }) => Err(ApiError {
            code: ErrorCode::RangeInvalid,
            message: format!("chunk starts at {offset} but upload {id} holds {size} bytes"),
            range: Some(upload_range(size)),
        }),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn patch_upload(
    reg: &Registry,
    name: &RepoName,
    id: &str,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    reg.check_writable()?;
    let (id, size) = session(reg, name, id).await?;
    let size = append(reg, &id, size, headers, body).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, size))
}

pub(super) async fn finish_upload(
    reg: &Registry,
    name: &RepoName,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    reg.check_writable()?;
    let (id, size) = session(reg, name, id).await?;
    let digest = parse_digest(query.get("digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "completing an upload needs ?digest=",
        )
    })?)?;
    // The final chunk may come with the PUT.
    if content_length(headers) != Some(0) {
        append(reg, &id, size, headers, body).await?;
    }
    let storage = reg.storage_ref();
    let expected = Expected {
        digest: digest.clone(),
        size: None,
    };
    match storage
        .upload_commit(&id, &layout::blob(&digest)?, &expected)
        .await
    {
        Ok(_) => {}
        Err(e @ (StorageError::DigestMismatch { .. } | StorageError::SizeMismatch { .. })) => {
            // The session is spent, as in distribution: a client starts over.
            storage.upload_abort(&id).await?;
            storage.delete(&layout::upload(name, &id)?).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    storage.delete(&layout::upload(name, &id)?).await?;
    link(reg, name, &digest).await?;
    Ok(created(name, &digest))
}

pub(super) async fn cancel_upload(
    reg: &Registry,
    name: &RepoName,
    id: &str,
) -> Result<Response, ApiError> {
    reg.check_writable()?;
    let (id, _) = session(reg, name, id).await?;
    let storage = reg.storage_ref();
    storage.upload_abort(&id).await?;
    storage.delete(&layout::upload(name, &id)?).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
        parse_range(v).map(|r| resolve_range(&r, size).map(|b| (b.start, b.end)))
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(range("bytes=90-", 100), Some(Ok((90, 100))));
        assert_eq!(range("bytes=90-200", 100), Some(Ok((90, 100))));
        assert_eq!(range("bytes=-10", 100), Some(Ok((90, 100))));
        assert_eq!(range("bytes=-1000", 100), Some(Ok((0, 100))));
        assert_eq!(range("bytes=100-", 100), Some(Err(())));
        assert_eq!(range("bytes=5-4", 100), Some(Err(())));
        assert_eq!(range("bytes=-0", 100), Some(Err(())));
        assert!(range("bytes=0-1,5-6", 100).is_none());
        assert!(range("items=0-1", 100).is_none());
        assert!(range("bytes=x-1", 100).is_none());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-1023"), Some((0, 1023)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes=10-19"), Some((10, 19)));
        assert_eq!(parse_content_range("5-4"), None);
        assert_eq!(parse_content_range("a-b"), None);
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}
