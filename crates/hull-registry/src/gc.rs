//! Online garbage collection: mark what each repository's tags reach, sweep the rest. Runs
//! while the registry serves, so it spares what a push in progress needs:
//!
//! - roots are each repository's tagged manifests and every manifest or blob link written
//!   within the grace period (a manifest pushed by digest and about to be tagged, a blob pushed
//!   or mounted for a manifest not pushed yet);
//! - from a live manifest, its config and layers, an index's children, its referrers (manifests
//!   whose `subject` it is: signatures and SBOMs live as long as what they describe) and, for a
//!   live referrer, its subject are live too;
//! - untagged manifests that nothing live reaches are removed from their repository once older
//!   than the grace period (their revision link and referrers entry), as distribution's
//!   `--delete-untagged` does; [`GcOptions::keep_untagged`] keeps every manifest instead;
//! - a blob is only deleted if it is unmarked *and* older than the grace period, so a blob
//!   written while the mark phase ran survives;
//! - links to deleted blobs are removed once they are older than the grace period;
//! - upload sessions idle for longer than `upload_ttl` are aborted.
//!
//! Known gap: a blob that no manifest referenced for longer than the grace period, referenced
//! again by a manifest pushed after the mark phase listed the repositories, is swept (its
//! repository link makes the push skip the upload). Closing it needs the manifest push to
//! record its references where the sweep re-checks them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use hull_oci::{Digest, ParsedManifest};

use crate::layout;
use crate::storage::{Key, Prefix, RegistryStorage, StorageError, UploadId};

/// Keys listed per storage call.
const PAGE: usize = 1000;
/// Largest link read (a media type).
const MAX_LINK_SIZE: u64 = 4096;

/// How a collection runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcOptions {
    /// Objects younger than this are never deleted, and links younger than this are roots.
    pub grace: Duration,
    /// Upload sessions untouched for this long are aborted.
    pub upload_ttl: Duration,
    /// Report what would go without deleting anything.
    pub dry_run: bool,
    /// Keep manifests that no tag reaches (the CNCF registry's default; hull removes them).
    pub keep_untagged: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(7 * 24 * 3600),
            dry_run: false,
            keep_untagged: false,
        }
    }
}

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifests kept.
    pub manifests: usize,
    /// Untagged manifests removed from a repository (or, on a dry run, that would be), as
    /// `name@digest`.
    pub manifests_deleted: Vec<String>,
    pub blobs_kept: usize,
    /// Blobs deleted (or, on a dry run, that would be).
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    pub links_deleted: usize,
    pub uploads_aborted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("garbage collection: {0}")]
    Storage(#[from] StorageError),
}

/// Every key below `prefix`, page by page.
async fn list_all(s: &dyn RegistryStorage, prefix: &Prefix) -> Result<Vec<Key>, StorageError> {
    let mut out: Vec<Key> = Vec::new();
    loop {
        let after = out.last().map(|k| k.as_str().to_string());
        let page = s.list_after(prefix, after.as_deref(), PAGE).await?;
        let done = page.len() < PAGE;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A key below `repositories/<name>/`, split at the first `_`-segment (repository name
/// components never start with `_`): `(name, rest)`.
fn split_repo_key(k: &Key) -> Option<(&str, &str)> {
    let rest = k.as_str().strip_prefix("repositories/")?;
    let at = rest.find("/_")?;
    Some((rest.get(..at)?, rest.get(at + 1..)?))
}

/// `<alg>/<hex>` → digest.
fn digest_of(alg_hex: &str) -> Option<Digest> {
    let (alg, hex) = alg_hex.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

fn older_than(modified: SystemTime, grace: Duration) -> bool {
    modified.elapsed().is_ok_and(|age| age >= grace)
}

/// Runs one collection over `storage`.
pub async fn collect(storage: &dyn RegistryStorage, opts: &GcOptions) -> Result<GcReport, GcError> {
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    let mut layer_links: Vec<(Key, Digest)> = Vec::new();
    let mut repos: BTreeMap<String, RepoManifests> = BTreeMap::new();
    let root = Key::new("repositories")?;
    for key in list_all(storage, &Prefix::dir(&root)).await? {
        let Some((name, rest)) = split_repo_key(&key) else {
            continue;
        };
        if let Some(d) = rest
            .strip_prefix("_manifests/revisions/")
            .and_then(digest_of)
        {
            let recent = is_recent(storage, &key, opts.grace).await?;
            let repo = repos.entry(name.to_string()).or_default();
            repo.revisions.insert(d.clone(), key.clone());
            if recent {
                repo.roots.push(d);
            }
        } else if let Some(tag) = rest.strip_prefix("_manifests/tags/") {
            if let Some(d) = storage
                .get_bytes(&key, MAX_LINK_SIZE)
                .await?
                .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<Digest>().ok())
            {
                repos.entry(name.to_string()).or_default().roots.push(d);
            } else {
                tracing::warn!("garbage collection: tag {tag} of {name} names no digest");
            }
        } else if let Some((subject, referrer)) =
            rest.strip_prefix("_referrers/").and_then(split_pair)
        {
            repos
                .entry(name.to_string())
                .or_default()
                .referrers
                .entry(subject)
                .or_default()
                .push((referrer, key.clone()));
        } else if let Some(d) = rest.strip_prefix("_layers/").and_then(digest_of) {
            if is_recent(storage, &key, opts.grace).await? {
                marked.insert(d.clone());
            }
            layer_links.push((key.clone(), d));
        } else if let Some(id) = rest.strip_prefix("_uploads/").and_then(UploadId::parse) {
            let stale = storage
                .stat(&key)
                .await?
                .is_some_and(|m| older_than(m.modified, opts.upload_ttl));
            // The session's own data tells when it was last appended to.
            let idle = stale && upload_idle(storage, &id, opts.upload_ttl).await?;
            if idle {
                tracing::info!(
                    "aborting upload {id} of {name}, idle for over {:?}",
                    opts.upload_ttl
                );
                report.uploads_aborted += 1;
                if !opts.dry_run {
                    storage.upload_abort(&id).await?;
                    storage.delete(&key).await?;
                }
            }
        }
    }

    for (name, repo) in &repos {
        let live = mark_repository(storage, repo, opts.keep_untagged, &mut marked).await?;
        for (d, link) in &repo.revisions {
            if live.contains(d) {
                report.manifests += 1;
                continue;
            }
            report.manifests_deleted.push(format!("{name}@{d}"));
            if opts.dry_run {
                continue;
            }
            tracing::info!("garbage collection: removing untagged manifest {name}@{d}");
            storage.delete(link).await?;
            // Its entries in the referrers index of its subject.
            for entries in repo.referrers.values() {
                for (referrer, key) in entries {
                    if referrer == d {
                        storage.delete(key).await?;
                    }
                }
            }
        }
    }

    let blobs = Key::new("blobs")?;
    let mut deleted: HashSet<Digest> = HashSet::new();
    for key in list_all(storage, &Prefix::dir(&blobs)).await? {
        // blobs/<alg>/<xx>/<hex>
        let mut parts = key.as_str().split('/').skip(1);
        let (Some(alg), Some(_), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() else {
            continue;
        };
        if marked.contains(&d) {
            report.blobs_kept += 1;
            continue;
        }
        let Some(meta) = storage.stat(&key).await? else {
            continue;
        };
        if !older_than(meta.modified, opts.grace) {
            report.blobs_kept += 1;
            continue;
        }
        if !opts.dry_run {
            storage.delete(&key).await?;
        }
        report.bytes_freed = report.bytes_freed.saturating_add(meta.size);
        deleted.insert(d.clone());
        report.blobs_deleted.push(d);
    }
    for (key, d) in layer_links {
        let dangling = deleted.contains(&d) || storage.stat(&layout::blob(&d)?).await?.is_none();
        if dangling {
            report.links_deleted += 1;
            if !opts.dry_run {
                storage.delete(&key).await?;
            }
        }
    }
    Ok(report)
}

/// Whether an upload session's data is older than `ttl` (a session without data is idle).
async fn upload_idle(
    s: &dyn RegistryStorage,
    id: &UploadId,
    ttl: Duration,
) -> Result<bool, StorageError> {
    Ok(match s.upload_stat(id).await? {
        Some(m) => older_than(m.modified, ttl),
        None => true,
    })
}

/// What one repository holds of manifests.
#[derive(Default)]
struct RepoManifests {
    /// Every manifest revision, with its link.
    revisions: HashMap<Digest, Key>,
    /// Tagged manifests and recent revisions.
    roots: Vec<Digest>,
    /// Subject → its referrers, with their referrers-index keys.
    referrers: HashMap<Digest, Vec<(Digest, Key)>>,
}

/// Marks everything a repository's roots reach (every revision when `keep_all`), and returns
/// the live manifests.
async fn mark_repository(
    s: &dyn RegistryStorage,
    repo: &RepoManifests,
    keep_all: bool,
    marked: &mut HashSet<Digest>,
) -> Result<HashSet<Digest>, StorageError> {
    let mut live: HashSet<Digest> = HashSet::new();
    let mut todo: Vec<Digest> = if keep_all {
        repo.revisions.keys().cloned().collect()
    } else {
        repo.roots.clone()
    };
    while let Some(d) = todo.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        marked.insert(d.clone());
        if let Some(rs) = repo.referrers.get(&d) {
            todo.extend(rs.iter().map(|(r, _)| r.clone()));
        }
        let media_type = match repo.revisions.get(&d) {
            Some(link) => s
                .get_bytes(link, MAX_LINK_SIZE)
                .await?
                .map(|b| String::from_utf8_lossy(&b).trim().to_string()),
            None => None,
        };
        let Some(bytes) = s
            .get_bytes(&layout::blob(&d)?, hull_oci::MAX_MANIFEST_SIZE)
            .await?
        else {
            continue;
        };
        match ParsedManifest::from_slice(&bytes, media_type.as_deref()) {
            Ok(ParsedManifest::Image(m)) => {
                marked.insert(m.config.digest.clone());
                marked.extend(m.layers.iter().map(|l| l.digest.clone()));
                if let Some(subject) = &m.subject {
                    todo.push(subject.digest.clone());
                }
            }
            Ok(ParsedManifest::Index(i)) => {
                todo.extend(i.manifests.iter().map(|m| m.digest.clone()));
                if let Some(subject) = &i.subject {
                    todo.push(subject.digest.clone());
                }
            }
            Err(e) => tracing::warn!("garbage collection: manifest {d} does not parse: {e}"),
        }
    }
    Ok(live)
}

/// Whether the object at `key` was written within `grace`.
async fn is_recent(
    s: &dyn RegistryStorage,
    key: &Key,
    grace: Duration,
) -> Result<bool, StorageError> {
    Ok(s.stat(key)
        .await?
        .is_some_and(|m| !older_than(m.modified, grace)))
}

/// `<alg>/<hex>/<alg>/<hex>` → the two digests.
fn split_pair(s: &str) -> Option<(Digest, Digest)> {
    let mut parts = s.splitn(3, '/');
    let (alg, hex, rest) = (parts.next()?, parts.next()?, parts.next()?);
    Some((digest_of(&format!("{alg}/{hex}"))?, digest_of(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_keys_split_at_the_first_underscore_segment() {
        let k = Key::new("repositories/a/b_c/d/_manifests/revisions/sha256/ab").unwrap();
        assert_eq!(
            split_repo_key(&k),
            Some(("a/b_c/d", "_manifests/revisions/sha256/ab"))
        );
        assert!(split_repo_key(&Key::new("blobs/sha256/ab").unwrap()).is_none());
        let hex = "a".repeat(64);
        assert_eq!(
            digest_of(&format!("sha256/{hex}")),
            Some(format!("sha256:{hex}").parse().unwrap())
        );
        assert_eq!(digest_of("sha256/zz"), None);
    }
}
