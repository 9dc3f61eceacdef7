//! `/v2/<name>/manifests/<reference>` (spec 1.1 "Pulling manifests", "Pushing manifests",
//! "Deleting manifests").

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use hull_oci::media_type as mt;
use hull_oci::{Descriptor, Digest, DocumentError, ParsedManifest};

use super::{
    CONTENT_DIGEST_HEADER, OCI_SUBJECT_HEADER, Registry, content_length, header_str, read_limited,
    set_header, take,
};
use crate::error::{ApiError, ErrorCode};
use crate::layout;
use crate::names::{RepoName, Tag};
use crate::storage::{Expected, Prefix, once};

/// Longest media type kept in a revision link.
const MAX_LINK_SIZE: u64 = 4096;
/// Most tags scanned when deleting a manifest (every tag naming it goes too).
const MAX_TAG_SCAN: usize = 100_000;

/// A manifest reference: a tag or a digest.
pub(super) enum ManifestRef {
    Tag(Tag),
    Digest(Digest),
}

pub(super) fn parse_reference(r: &str) -> Result<ManifestRef, ApiError> {
    if r.contains(':') {
        return r
            .parse::<Digest>()
            .map(ManifestRef::Digest)
            .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()));
    }
    Tag::parse(r)
        .map(ManifestRef::Tag)
        .ok_or_else(|| ApiError::new(ErrorCode::ManifestInvalid, format!("invalid tag {r:?}")))
}

fn unknown(name: &RepoName, r: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {r} not found in {name}"),
    )
}

/// The digest a tag names, if the tag exists.
pub(super) async fn resolve_tag(
    reg: &Registry,
    name: &RepoName,
    tag: &Tag,
) -> Result<Option<Digest>, ApiError> {
    let Some(bytes) = reg
        .storage_ref()
        .get_bytes(&layout::tag(name, tag)?, MAX_LINK_SIZE)
        .await?
    else {
        return Ok(None);
    };
    let s = String::from_utf8_lossy(&bytes);
    Ok(s.trim().parse::<Digest>().ok())
}

/// The media type of a manifest the repository holds, if it holds it.
pub(super) async fn revision(
    reg: &Registry,
    name: &RepoName,
    d: &Digest,
) -> Result<Option<String>, ApiError> {
    let link = reg
        .storage_ref()
        .get_bytes(&layout::manifest_link(name, d)?, MAX_LINK_SIZE)
        .await?;
    Ok(link.map(|b| String::from_utf8_lossy(&b).trim().to_string()))
}

pub(super) async fn get(
    reg: &Registry,
    name: &RepoName,
    r: &str,
    is_head: bool,
) -> Result<Response, ApiError> {
    let proxy = reg.inner.proxy.as_deref();
    let digest = match (parse_reference(r)?, proxy) {
        (ManifestRef::Digest(d), None) => d,
        (ManifestRef::Digest(d), Some(p)) => {
            p.cache_manifest(reg.storage_ref(), name, &d).await?;
            d
        }
        (ManifestRef::Tag(t), None) => resolve_tag(reg, name, &t)
            .await?
            .ok_or_else(|| unknown(name, r))?,
        (ManifestRef::Tag(t), Some(p)) => p
            .resolve_tag(reg.storage_ref(), name, &t)
            .await?
            .ok_or_else(|| unknown(name, r))?,
    };
    let media_type = revision(reg, name, &digest)
        .await?
        .ok_or_else(|| unknown(name, r))?;
    let key = layout::blob(&digest)?;
    let storage = reg.storage_ref();
    let size = storage
        .stat(&key)
        .await?
        .ok_or_else(|| unknown(name, r))?
        .size;
    let body = if is_head {
        Body::empty()
    } else {
        Body::from_stream(storage.get(&key, None).await?)
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    set_header(&mut resp, "content-type", &media_type);
    set_header(&mut resp, CONTENT_DIGEST_HEADER, &digest.to_string());
    set_header(&mut resp, "etag", &format!("\"{digest}\""));
    Ok(resp)
}

fn invalid(e: DocumentError) -> ApiError {
    match e {
        DocumentError::TooLarge { .. } => ApiError::new(ErrorCode::ManifestTooLarge, e.to_string()),
        _ => ApiError::new(ErrorCode::ManifestInvalid, e.to_string()),
    }
}

/// What the referrers API lists for a manifest (spec 1.1 "Listing Referrers"): its descriptor,
/// with `artifactType` falling back to the config media type, and its annotations.
pub(crate) fn referrer_descriptor(
    parsed: &ParsedManifest,
    media_type: &str,
    digest: &Digest,
    size: u64,
) -> Descriptor {
    let mut d = Descriptor::new(media_type, digest.clone(), size);
    match parsed {
        ParsedManifest::Image(m) => {
            d.artifact_type = m
                .artifact_type
                .clone()
                .or_else(|| Some(m.config.media_type.clone()));
            d.annotations = m.annotations.clone();
        }
        ParsedManifest::Index(i) => {
            d.artifact_type = i.artifact_type.clone();
            d.annotations = i.annotations.clone();
        }
    }
    d
}

pub(super) async fn put(
    reg: &Registry,
    name: &RepoName,
    r: &str,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    reg.check_writable()?;
    let reference = parse_reference(r)?;
    let limit = reg.config().max_manifest_size;
    let too_large = || {
        ApiError::new(
            ErrorCode::ManifestTooLarge,
            format!("manifest is larger than the limit of {limit} bytes"),
        )
    };
    if content_length(headers).is_some_and(|n| n > limit.saturating_mul(super::DRAIN_FACTOR)) {
        return Err(too_large());
    }
    let bytes = read_limited(take(body), limit)
        .await?
        .ok_or_else(too_large)?;
    let content_type = header_str(headers, header::CONTENT_TYPE)
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .filter(|c| !c.is_empty());
    // A manifest is stored under the media type it is pushed with and served back with it:
    // only the manifest and index types of the OCI and Docker specs are accepted (artifacts
    // say what they are through `artifactType`, not through a media type of their own).
    if let Some(c) = content_type.as_deref()
        && !(mt::is_manifest(c) || mt::is_index(c) || c == "application/json")
    {
        return Err(ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("unsupported manifest media type {c:?}"),
        ));
    }
    let parsed = ParsedManifest::from_slice(&bytes, content_type.as_deref()).map_err(invalid)?;
    let media_type = match (&parsed, content_type.as_deref()) {
        (ParsedManifest::Image(m), _) if m.media_type.is_some() => parsed.media_type().to_string(),
        (ParsedManifest::Index(i), _) if i.media_type.is_some() => parsed.media_type().to_string(),
        (_, Some(c)) if mt::is_manifest(c) || mt::is_index(c) => c.to_string(),
        _ => parsed.media_type().to_string(),
    };
    let digest = match &reference {
        ManifestRef::Digest(d) => {
            let mut h = d.digester();
            h.update(&bytes);
            let actual = h.finish();
            if &actual != d {
                return Err(ApiError::new(
                    ErrorCode::DigestInvalid,
                    format!("manifest digest is {actual}, not {d} as the URL says"),
                ));
            }
            actual
        }
        ManifestRef::Tag(_) => Digest::sha256_of(&bytes),
    };

    // Everything the manifest points at must already be in this repository (spec 1.1:
    // MANIFEST_BLOB_UNKNOWN); `subject` is exempt, referrers may come before their subject.
    let storage = reg.storage_ref();
    let missing = |d: &Digest| {
        ApiError::new(
            ErrorCode::ManifestBlobUnknown,
            format!("{d} is not in repository {name}"),
        )
    };
    let subject = match &parsed {
        ParsedManifest::Image(m) => {
            for desc in std::iter::once(&m.config).chain(&m.layers) {
                // Foreign layers live elsewhere (`urls`); the registry need not hold them.
                if desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    continue;
                }
                if storage
                    .stat(&layout::layer_link(name, &desc.digest)?)
                    .await?
                    .is_none()
                {
                    return Err(missing(&desc.digest));
                }
            }
            m.subject.clone()
        }
        ParsedManifest::Index(i) => {
            for desc in &i.manifests {
                if storage
                    .stat(&layout::manifest_link(name, &desc.digest)?)
                    .await?
                    .is_none()
                {
                    return Err(missing(&desc.digest));
                }
            }
            i.subject.clone()
        }
    };

    let size = bytes.len() as u64;
    storage
        .put_stream(
            &layout::blob(&digest)?,
            once(bytes),
            &Expected {
                digest: digest.clone(),
                size: Some(size),
            },
        )
        .await?;
    storage
        .put(
            &layout::manifest_link(name, &digest)?,
            Bytes::from(media_type.clone()),
        )
        .await?;
    if let Some(s) = &subject {
        let desc = referrer_descriptor(&parsed, &media_type, &digest, size);
        let json = serde_json::to_vec(&desc).map_err(|e| {
            ApiError::new(
                ErrorCode::Unknown,
                format!("encoding a referrer descriptor: {e}"),
            )
        })?;
        storage
            .put(
                &layout::referrer(name, &s.digest, &digest)?,
                Bytes::from(json),
            )
            .await?;
    }
    if let ManifestRef::Tag(t) = &reference {
        storage
            .put(&layout::tag(name, t)?, Bytes::from(digest.to_string()))
            .await?;
    }
    super::ensure(reg, &layout::catalog_marker(name)?).await?;

    let mut resp = StatusCode::CREATED.into_response();
    set_header(
        &mut resp,
        "location",
        &format!("/v2/{name}/manifests/{digest}"),
    );
    set_header(&mut resp, CONTENT_DIGEST_HEADER, &digest.to_string());
    if let Some(s) = &subject {
        set_header(&mut resp, OCI_SUBJECT_HEADER, &s.digest.to_string());
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(resp)
}

pub(super) async fn delete(reg: &Registry, name: &RepoName, r: &str) -> Result<Response, ApiError> {
    reg.check_delete()?;
    let storage = reg.storage_ref();
    match parse_reference(r)? {
        ManifestRef::Tag(t) => {
            if !storage.delete(&layout::tag(name, &t)?).await? {
                return Err(unknown(name, r));
            }
        }
        ManifestRef::Digest(d) => {
            let link = layout::manifest_link(name, &d)?;
            let media_type = revision(reg, name, &d)
                .await?
                .ok_or_else(|| unknown(name, r))?;
            // Drop the referrer entry this manifest made for its subject.
            if let Some(bytes) = storage
                .get_bytes(&layout::blob(&d)?, reg.config().max_manifest_size)
                .await?
                && let Ok(parsed) = ParsedManifest::from_slice(&bytes, Some(&media_type))
            {
                let subject = match &parsed {
                    ParsedManifest::Image(m) => m.subject.as_ref(),
                    ParsedManifest::Index(i) => i.subject.as_ref(),
                };
                if let Some(s) = subject {
                    storage
                        .delete(&layout::referrer(name, &s.digest, &d)?)
                        .await?;
                }
            }
            // Tags naming it go with it, as in distribution.
            let tags = storage
                .list_after(&Prefix::dir(&layout::tags_dir(name)?), None, MAX_TAG_SCAN)
                .await?;
            for k in tags {
                let points_here = storage
                    .get_bytes(&k, MAX_LINK_SIZE)
                    .await?
                    .is_some_and(|b| String::from_utf8_lossy(&b).trim() == d.to_string());
                if points_here {
                    storage.delete(&k).await?;
                }
            }
            storage.delete(&link).await?;
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
