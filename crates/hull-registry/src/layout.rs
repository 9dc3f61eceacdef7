//! Where the registry keeps what, as storage keys (after distribution's layout, object-centric):
//!
//! - `blobs/<alg>/<hex[0..2]>/<hex>`: every blob and manifest, once, by digest;
//! - `repositories/<name>/_layers/<alg>/<hex>`: the blobs a repository holds (empty links), so
//!   a blob is served only to repositories it was pushed to or mounted into;
//! - `repositories/<name>/_manifests/revisions/<alg>/<hex>`: the manifests a repository holds,
//!   the link's content being the manifest's media type;
//! - `repositories/<name>/_manifests/tags/<tag>`: a tag, its content the manifest digest;
//! - `repositories/<name>/_referrers/<subject alg>/<subject hex>/<alg>/<hex>`: a manifest whose
//!   `subject` is that digest, its content the descriptor the referrers API lists;
//! - `repositories/<name>/_uploads/<id>`: marks an upload session as this repository's;
//! - `catalog/<name>/_repo`: marks a repository as existing, for `/v2/_catalog`.
//!
//! Repository name components start with a letter or digit, so the `_`-prefixed segments can
//! never collide with a nested repository's name.

use hull_oci::Digest;

use crate::names::{RepoName, Tag};
use crate::storage::{Key, Prefix, StorageError, UploadId};

pub const CATALOG: &str = "catalog";
pub const CATALOG_MARKER: &str = "_repo";

fn key(s: String) -> Result<Key, StorageError> {
    Key::new(s)
}

fn repo(name: &RepoName) -> String {
    format!("repositories/{name}")
}

pub fn blob(d: &Digest) -> Result<Key, StorageError> {
    let hex = d.hex();
    key(format!(
        "blobs/{}/{}/{hex}",
        d.algorithm(),
        hex.get(..2).unwrap_or(hex)
    ))
}

pub fn layer_link(name: &RepoName, d: &Digest) -> Result<Key, StorageError> {
    key(format!(
        "{}/_layers/{}/{}",
        repo(name),
        d.algorithm(),
        d.hex()
    ))
}

pub fn manifest_link(name: &RepoName, d: &Digest) -> Result<Key, StorageError> {
    key(format!(
        "{}/_manifests/revisions/{}/{}",
        repo(name),
        d.algorithm(),
        d.hex()
    ))
}

pub fn tags_dir(name: &RepoName) -> Result<Key, StorageError> {
    key(format!("{}/_manifests/tags", repo(name)))
}

pub fn tag(name: &RepoName, tag: &Tag) -> Result<Key, StorageError> {
    tags_dir(name)?.join(tag.as_str())
}

pub fn referrers_dir(name: &RepoName, subject: &Digest) -> Result<Key, StorageError> {
    key(format!(
        "{}/_referrers/{}/{}",
        repo(name),
        subject.algorithm(),
        subject.hex()
    ))
}

pub fn referrer(name: &RepoName, subject: &Digest, d: &Digest) -> Result<Key, StorageError> {
    referrers_dir(name, subject)?.join(&format!("{}/{}", d.algorithm(), d.hex()))
}

pub fn upload(name: &RepoName, id: &UploadId) -> Result<Key, StorageError> {
    key(format!("{}/_uploads/{id}", repo(name)))
}

pub fn catalog_marker(name: &RepoName) -> Result<Key, StorageError> {
    key(format!("{CATALOG}/{name}/{CATALOG_MARKER}"))
}

pub fn catalog_prefix() -> Result<Prefix, StorageError> {
    Ok(Prefix::dir(&key(CATALOG.to_string())?))
}

/// The repository name a catalog marker key stands for.
pub fn name_of_catalog_marker(k: &Key) -> Option<RepoName> {
    let s = k
        .as_str()
        .strip_prefix(CATALOG)?
        .strip_prefix('/')?
        .strip_suffix(CATALOG_MARKER)?
        .strip_suffix('/')?;
    RepoName::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let name = RepoName::parse("a/b-c").unwrap();
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            blob(&d).unwrap().as_str(),
            format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex())
        );
        assert_eq!(
            name_of_catalog_marker(&catalog_marker(&name).unwrap()),
            Some(name.clone())
        );
        let t = Tag::parse("_v1.0").unwrap();
        assert_eq!(
            tag(&name, &t).unwrap().as_str(),
            "repositories/a/b-c/_manifests/tags/_v1.0"
        );
        assert!(
            referrer(&name, &d, &d)
                .unwrap()
                .as_str()
                .starts_with(referrers_dir(&name, &d).unwrap().as_str())
        );
    }
}
