//! Repository search: Docker Hub's `GET /v1/search?q=…&n=…` (at `index.docker.io` for
//! `docker.io`), which `hull serve` also answers. Other registries are asked at their own
//! endpoint with the same authentication as pulls (Basic, or a token asked for
//! `registry:catalog:search` as Docker asks it); Docker Hub's search is public and gets no
//! credentials.

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::client::{RegistryClient, Subject, read_capped};
use crate::error::DistributionError;

/// Docker Hub's search endpoint.
pub const DOCKER_HUB_SEARCH: &str = "https://index.docker.io/v1/search";
/// The scope Docker asks a token for before searching.
pub const SEARCH_SCOPE: &str = "registry:catalog:search";
/// A search reply is read up to this size.
const MAX_REPLY: u64 = 8 * 1024 * 1024;

/// One result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// A page of results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResults {
    #[serde(default)]
    pub num_results: u64,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub page: u64,
    #[serde(default)]
    pub num_pages: u64,
    #[serde(default)]
    pub page_size: u64,
    #[serde(default)]
    pub results: Vec<SearchResult>,
}

/// Whether `registry` is Docker Hub.
pub fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Searches `registry` for `term`, at most `limit` results (the first page).
pub async fn search(
    client: &RegistryClient,
    registry: &str,
    term: &str,
    limit: usize,
) -> Result<SearchResults, DistributionError> {
    let what = format!("searching {registry} for {term:?}");
    let query = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("q", term);
        q.append_pair("n", &limit.to_string());
        q.finish()
    };
    let resp = if is_docker_hub(registry) {
        let url = Url::parse(&format!("{DOCKER_HUB_SEARCH}?{query}")).map_err(|e| {
            DistributionError::Config(format!("invalid search URL for {term:?}: {e}"))
        })?;
        let retries = client.config().max_retries;
        client
            .execute(registry, &what, retries, || client.http().get(url.clone()))
            .await?
    } else {
        client
            .send(
                Method::GET,
                registry,
                &format!("/v1/search?{query}"),
                Some(SEARCH_SCOPE),
                &what,
                |rb| rb,
            )
            .await?
    };
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Err(DistributionError::InvalidResponse {
            what,
            reason: format!("{registry} does not offer search (/v1/search answered 404)"),
        });
    }
    if !status.is_success() {
        return Err(client.fail(resp, registry, &Subject::Other, &what, 1).await);
    }
    let body = read_capped(resp, MAX_REPLY, registry, &what).await?;
    serde_json::from_slice(&body).map_err(|e| DistributionError::InvalidResponse {
        what,
        reason: format!("search reply is not valid JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_replies_parse() {
        let r: SearchResults = serde_json::from_str(
            r#"{"num_pages":1,"num_results":1,"page_size":25,"page":1,"query":"busybox",
                "results":[{"name":"busybox","description":"Busybox base image.",
                "star_count":3000,"is_official":true,"is_automated":false}]}"#,
        )
        .unwrap();
        assert_eq!(r.results[0].name, "busybox");
        assert!(r.results[0].is_official);
        let sparse: SearchResults = serde_json::from_str(r#"{"results":[{"name":"x"}]}"#).unwrap();
        assert_eq!(sparse.results[0].star_count, 0);
        assert!(is_docker_hub("docker.io"));
        assert!(!is_docker_hub("quay.io"));
    }
}
