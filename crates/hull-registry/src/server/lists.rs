//! Listing endpoints: tags (spec 1.1 "Listing Tags"), referrers ("Listing Referrers") and the
//! catalog (distribution's `/v2/_catalog` extension), paginated with `n` and `last` and a
//! `Link: <...>; rel="next"` header when more remain.

use axum::http::StatusCode;
use axum::response::Response;
use hull_oci::Descriptor;
use hull_oci::media_type as mt;

use super::{
    OCI_FILTERS_APPLIED_HEADER, Query, Registry, json_response, parse_digest, percent_encode,
    set_header,
};
use crate::error::{ApiError, ErrorCode};
use crate::layout;
use crate::names::RepoName;
use crate::storage::Prefix;

/// Most entries one page holds (a client asking for more gets this many and a `Link`).
const MAX_PAGE: usize = 10_000;
/// Most referrers listed for one subject.
const MAX_REFERRERS: usize = 10_000;
/// Largest referrer descriptor read.
const MAX_DESCRIPTOR_SIZE: u64 = 1024 * 1024;

/// `n` as the client gave it (bounded), or the default page size.
fn page_size(query: &Query) -> Result<usize, ApiError> {
    match query.get("n") {
        None | Some("") => Ok(MAX_PAGE),
        Some(n) => n.parse::<usize>().map(|n| n.min(MAX_PAGE)).map_err(|_| {
            ApiError::new(
                ErrorCode::PaginationNumberInvalid,
                format!("invalid page size n={n:?}"),
            )
        }),
    }
}

fn next_link(path: &str, last: &str, n: usize) -> String {
    format!("<{path}?last={}&n={n}>; rel=\"next\"", percent_encode(last))
}

pub(super) async fn tags(
    reg: &Registry,
    name: &RepoName,
    query: &Query,
) -> Result<Response, ApiError> {
    let storage = reg.storage_ref();
    if storage
        .stat(&layout::catalog_marker(name)?)
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            format!("repository {name} not known to the registry"),
        ));
    }
    let n = page_size(query)?;
    let dir = layout::tags_dir(name)?;
    let prefix = Prefix::dir(&dir);
    let start_after = query
        .get("last")
        .filter(|l| !l.is_empty())
        .map(|l| format!("{}{l}", prefix.as_str()));
    let keys = storage
        .list_after(&prefix, start_after.as_deref(), n.saturating_add(1))
        .await?;
    let mut tags: Vec<String> = keys
        .iter()
        .filter_map(|k| k.as_str().strip_prefix(prefix.as_str()))
        .map(str::to_string)
        .collect();
    let more = tags.len() > n;
    tags.truncate(n);
    let body = serde_json::json!({ "name": name.as_str(), "tags": tags }).to_string();
    let mut resp = json_response(StatusCode::OK, body, false);
    if more && let Some(last) = tags.last() {
        set_header(
            &mut resp,
            "link",
            &next_link(&format!("/v2/{name}/tags/list"), last, n),
        );
    }
    Ok(resp)
}

pub(super) async fn catalog(reg: &Registry, query: &Query) -> Result<Response, ApiError> {
    let storage = reg.storage_ref();
    let n = page_size(query)?;
    let prefix = layout::catalog_prefix()?;
    let start_after = match query.get("last").filter(|l| !l.is_empty()) {
        Some(l) => Some(match RepoName::parse(l) {
            Some(name) => layout::catalog_marker(&name)?.to_string(),
            None => format!("{}{l}", prefix.as_str()),
        }),
        None => None,
    };
    let keys = storage
        .list_after(&prefix, start_after.as_deref(), n.saturating_add(1))
        .await?;
    let mut repos: Vec<String> = keys
        .iter()
        .filter_map(layout::name_of_catalog_marker)
        .map(|r| r.as_str().to_string())
        .collect();
    let more = repos.len() > n;
    repos.truncate(n);
    let body = serde_json::json!({ "repositories": repos }).to_string();
    let mut resp = json_response(StatusCode::OK, body, false);
    if more && let Some(last) = repos.last() {
        set_header(&mut resp, "link", &next_link("/v2/_catalog", last, n));
    }
    Ok(resp)
}

pub(super) async fn referrers(
    reg: &Registry,
    name: &RepoName,
    d: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let subject = parse_digest(d)?;
    let filter = query.get("artifactType").filter(|a| !a.is_empty());
    let upstream = match &reg.inner.proxy {
        Some(p) => p.referrers(name, &subject, filter).await,
        None => None,
    };
    let manifests = match upstream {
        Some(list) => list,
        None => stored_referrers(reg, name, &subject, filter).await?,
    };
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": manifests,
    })
    .to_string();
    let mut resp = json_response(StatusCode::OK, body, false);
    set_header(&mut resp, "content-type", mt::OCI_INDEX);
    if filter.is_some() {
        set_header(&mut resp, OCI_FILTERS_APPLIED_HEADER, "artifactType");
    }
    Ok(resp)
}

/// The referrers of `subject` recorded in storage, of `filter`'s artifact type when given.
async fn stored_referrers(
    reg: &Registry,
    name: &RepoName,
    subject: &hull_oci::Digest,
    filter: Option<&str>,
) -> Result<Vec<Descriptor>, ApiError> {
    let storage = reg.storage_ref();
    let dir = layout::referrers_dir(name, subject)?;
    let keys = storage
        .list_after(&Prefix::dir(&dir), None, MAX_REFERRERS)
        .await?;
    let mut manifests = Vec::new();
    for k in keys {
        let Some(bytes) = storage.get_bytes(&k, MAX_DESCRIPTOR_SIZE).await? else {
            continue;
        };
        let Ok(desc) = serde_json::from_slice::<Descriptor>(&bytes) else {
            tracing::warn!("skipping unreadable referrer record {k}");
            continue;
        };
        if filter.is_some_and(|f| desc.artifact_type.as_deref() != Some(f)) {
            continue;
        }
        manifests.push(desc);
    }
    Ok(manifests)
}
