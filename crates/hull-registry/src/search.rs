//! Repository search (`GET /v1/search?q=…&n=…&page=…`, answered as Docker Hub does) and the
//! repository information it shows: a description, an official flag and a star count, kept as
//! a small JSON object at `repositories/<name>/_info.json` beside the repository's layout (the
//! `_`-prefixed segment cannot collide with a nested repository's name; garbage collection
//! ignores it).
//!
//! A query matches a repository when it is a case-insensitive substring of its name or of its
//! description (an empty query matches every repository). Results are ordered by stars
//! (most first), then by name, so pages are stable. `n` is 1 to 100 (default 25), `page`
//! starts at 1; a page past the last is empty. With auth, only repositories the caller may pull
//! are listed (the server passes that test in).
//!
//! Each search reads the catalog and one small object per repository: fine for thousands of
//! repositories, not for millions.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::names::RepoName;
use crate::storage::{Key, RegistryStorage, StorageError};

/// Results per page unless `n` says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// Largest `n`.
pub const MAX_PAGE_SIZE: usize = 100;
/// Longest description stored.
pub const MAX_DESCRIPTION: usize = 4096;
/// Largest info object read.
const MAX_INFO_SIZE: u64 = 64 * 1024;
const CATALOG_PAGE: usize = 1000;

/// What search shows of a repository besides its name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RepoInfo {
    pub description: String,
    pub is_official: bool,
    pub star_count: u64,
    pub is_automated: bool,
}

/// A change to a repository's information: `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoInfoUpdate {
    pub description: Option<String>,
    pub is_official: Option<bool>,
    pub star_count: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("repository {0} does not exist")]
    UnknownRepository(RepoName),
    #[error("description of {name} is {len} bytes, longer than {MAX_DESCRIPTION}")]
    DescriptionTooLong { name: RepoName, len: usize },
    #[error("repository information of {name} at {key} is not valid: {source}")]
    Corrupt {
        name: RepoName,
        key: Key,
        #[source]
        source: serde_json::Error,
    },
    #[error("repository information: {0}")]
    Storage(#[from] StorageError),
}

/// One result, as Docker Hub writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub name: String,
    pub description: String,
    pub star_count: u64,
    pub is_official: bool,
    pub is_automated: bool,
}

/// A page of results, as Docker Hub's `/v1/search` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResults {
    pub num_results: usize,
    pub query: String,
    pub page: usize,
    pub num_pages: usize,
    pub page_size: usize,
    pub results: Vec<SearchResult>,
}

/// What was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    pub query: String,
    pub page_size: usize,
    pub page: usize,
}

impl SearchQuery {
    /// From `q`, `n` and `page` parameters; `Err` names the bad one.
    pub fn parse(
        q: Option<&str>,
        n: Option<&str>,
        page: Option<&str>,
    ) -> Result<SearchQuery, String> {
        let page_size = match n.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<usize>() {
                Ok(v) if (1..=MAX_PAGE_SIZE).contains(&v) => v,
                _ => {
                    return Err(format!(
                        "n must be a number from 1 to {MAX_PAGE_SIZE}, not {s:?}"
                    ));
                }
            },
        };
        let page = match page.map(str::trim).filter(|s| !s.is_empty()) {
            None => 1,
            Some(s) => match s.parse::<usize>() {
                Ok(v) if v >= 1 => v,
                _ => return Err(format!("page must be a number from 1, not {s:?}")),
            },
        };
        Ok(SearchQuery {
            query: q.unwrap_or_default().trim().to_string(),
            page_size,
            page,
        })
    }
}

/// Where a repository's information is kept.
pub fn info_key(name: &RepoName) -> Result<Key, StorageError> {
    Key::new(format!("repositories/{name}/_info.json"))
}

async fn exists(storage: &dyn RegistryStorage, name: &RepoName) -> Result<bool, StorageError> {
    Ok(storage
        .stat(&layout::catalog_marker(name)?)
        .await?
        .is_some())
}

async fn read_info(
    storage: &dyn RegistryStorage,
    name: &RepoName,
) -> Result<RepoInfo, SearchError> {
    let key = info_key(name)?;
    match storage.get_bytes(&key, MAX_INFO_SIZE).await? {
        None => Ok(RepoInfo::default()),
        Some(b) => serde_json::from_slice(&b).map_err(|source| SearchError::Corrupt {
            name: name.clone(),
            key,
            source,
        }),
    }
}

/// A repository's information (empty when none was set); an error if it does not exist.
pub async fn repo_info(
    storage: &dyn RegistryStorage,
    name: &RepoName,
) -> Result<RepoInfo, SearchError> {
    if !exists(storage, name).await? {
        return Err(SearchError::UnknownRepository(name.clone()));
    }
    read_info(storage, name).await
}

/// Changes a repository's information and returns it. The repository must exist (something
/// was pushed to it). Concurrent updates of one repository: the last write wins.
pub async fn set_repo_info(
    storage: &dyn RegistryStorage,
    name: &RepoName,
    update: RepoInfoUpdate,
) -> Result<RepoInfo, SearchError> {
    let mut info = repo_info(storage, name).await?;
    if let Some(d) = update.description {
        if d.len() > MAX_DESCRIPTION {
            return Err(SearchError::DescriptionTooLong {
                name: name.clone(),
                len: d.len(),
            });
        }
        info.description = d;
    }
    if let Some(o) = update.is_official {
        info.is_official = o;
    }
    if let Some(s) = update.star_count {
        info.star_count = s;
    }
    let bytes = serde_json::json!({
        "description": info.description,
        "is_official": info.is_official,
        "star_count": info.star_count,
        "is_automated": info.is_automated,
    })
    .to_string();
    storage.put(&info_key(name)?, Bytes::from(bytes)).await?;
    Ok(info)
}

/// Every repository of the catalog, in key order.
async fn all_repositories(storage: &dyn RegistryStorage) -> Result<Vec<RepoName>, StorageError> {
    let prefix = layout::catalog_prefix()?;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage
            .list_after(&prefix, after.as_deref(), CATALOG_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.as_str().to_string());
        let full = page.len() == CATALOG_PAGE;
        out.extend(page.iter().filter_map(layout::name_of_catalog_marker));
        if !full {
            break;
        }
    }
    Ok(out)
}

/// Runs a search over the repositories `visible` lets through.
pub async fn search(
    storage: &dyn RegistryStorage,
    q: &SearchQuery,
    visible: impl Fn(&RepoName) -> bool,
) -> Result<SearchResults, SearchError> {
    let needle = q.query.to_lowercase();
    let mut hits: Vec<SearchResult> = Vec::new();
    for name in all_repositories(storage).await? {
        if !visible(&name) {
            continue;
        }
        let info = match read_info(storage, &name).await {
            Ok(i) => i,
            Err(SearchError::Corrupt { .. }) => {
                tracing::warn!("search: ignoring unreadable information of {name}");
                RepoInfo::default()
            }
            Err(e) => return Err(e),
        };
        if needle.is_empty()
            || name.as_str().contains(&needle)
            || info.description.to_lowercase().contains(&needle)
        {
            hits.push(SearchResult {
                name: name.to_string(),
                description: info.description,
                star_count: info.star_count,
                is_official: info.is_official,
                is_automated: info.is_automated,
            });
        }
    }
    hits.sort_by(|a, b| {
        b.star_count
            .cmp(&a.star_count)
            .then_with(|| a.name.cmp(&b.name))
    });
    let num_results = hits.len();
    let num_pages = num_results.div_ceil(q.page_size);
    let results = hits
        .into_iter()
        .skip(q.page.saturating_sub(1).saturating_mul(q.page_size))
        .take(q.page_size)
        .collect();
    Ok(SearchResults {
        num_results,
        query: q.query.clone(),
        page: q.page,
        num_pages,
        page_size: q.page_size,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse() {
        let q = SearchQuery::parse(Some(" Busy "), None, None).unwrap();
        assert_eq!((q.query.as_str(), q.page_size, q.page), ("Busy", 25, 1));
        let q = SearchQuery::parse(Some("x"), Some("100"), Some("3")).unwrap();
        assert_eq!((q.page_size, q.page), (100, 3));
        for (n, p) in [
            ("0", "1"),
            ("101", "1"),
            ("x", "1"),
            ("5", "0"),
            ("5", "-1"),
        ] {
            assert!(
                SearchQuery::parse(None, Some(n), Some(p)).is_err(),
                "{n} {p}"
            );
        }
    }

    #[test]
    fn info_keys_sit_beside_the_layout() {
        let n = RepoName::parse("a/b").unwrap();
        assert_eq!(
            info_key(&n).unwrap().as_str(),
            "repositories/a/b/_info.json"
        );
    }
}
