//! Reading the store: listings, history, inspect; and tag / remove.

use std::collections::BTreeSet;

use hull_metadata::ImageRecord;
use hull_oci::{
    Digest, ImageConfig, ImageId, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, Manifest, ParsedManifest,
    Reference,
};
use serde_json::{Value, json};

use crate::error::{ImageError, Result};
use crate::store::Store;

/// One stored image with its documents.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: ImageRecord,
    pub config: ImageConfig,
    pub manifest: Manifest,
    pub tags: Vec<Reference>,
    /// `name@digest` strings as Docker's RepoDigests shows them (familiar names).
    pub repo_digests: Vec<String>,
}

/// One row of `hull images`: an image under one of its tags (or untagged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: ImageId,
    /// Familiar repository name (`busybox`, `127.0.0.1:5000/lab/busybox`), `None` if untagged.
    pub repository: Option<String>,
    pub tag: Option<String>,
    /// The repository digest for this row's repository, if known.
    pub digest: Option<Digest>,
    /// The config's `created`, parsed.
    pub created: Option<jiff::Timestamp>,
    pub size: u64,
    /// No tag points at the image.
    pub dangling: bool,
}

/// One row of `hull history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image ID on the top row; the layer's blob digest on rows that made a layer
    /// (where Docker prints `<missing>`); `None` for metadata-only rows.
    pub id: Option<String>,
    pub created: Option<jiff::Timestamp>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    Untagged(String),
    Deleted(ImageId),
}

pub(crate) fn parse_time(s: Option<&str>) -> Option<jiff::Timestamp> {
    s.and_then(|s| s.parse::<jiff::Timestamp>().ok())
}

impl Store {
    /// Loads an image with its config and manifest.
    pub fn image(&self, id: &ImageId) -> Result<Image> {
        let md = self.metadata();
        let record = md
            .image(id)?
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        let config_bytes = self.content().read_capped(id.digest(), MAX_CONFIG_SIZE)?;
        let config = ImageConfig::from_slice(&config_bytes)?;
        let manifest_bytes = self
            .content()
            .read_capped(&record.manifest_digest, MAX_MANIFEST_SIZE)?;
        let manifest =
            match ParsedManifest::from_slice(&manifest_bytes, Some(&record.manifest_media_type))? {
                ParsedManifest::Image(m) => m,
                ParsedManifest::Index(_) => {
                    return Err(ImageError::Other(format!(
                        "image {id}: manifest {} is an index",
                        record.manifest_digest
                    )));
                }
            };
        let tags = md.tags_of(id)?;
        let repo_digests = md
            .repo_digests(id)?
            .into_iter()
            .map(|(repo, d)| {
                let familiar = Reference::parse_name_only(&repo)
                    .map(|r| r.familiar_name())
                    .unwrap_or(repo);
                format!("{familiar}@{d}")
            })
            .collect();
        Ok(Image {
            record,
            config,
            manifest,
            tags,
            repo_digests,
        })
    }

    /// Rows for `hull images`: one per tag, plus one per untagged image (when `all` or when
    /// it is dangling — Docker hides intermediate images only; hull has none yet, so `all`
    /// changes nothing today but is accepted).
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let md = self.metadata();
        let mut rows = Vec::new();
        for rec in md.images()? {
            let tags = md.tags_of(&rec.id)?;
            let digests = md.repo_digests(&rec.id)?;
            let config = self
                .content()
                .read_capped(rec.id.digest(), MAX_CONFIG_SIZE)
                .ok()
                .and_then(|b| ImageConfig::from_slice(&b).ok());
            let created = parse_time(
                config
                    .as_ref()
                    .and_then(|c| c.created.as_deref())
                    .or(rec.created.as_deref()),
            );
            let digest_for = |name: &str| {
                digests
                    .iter()
                    .find(|(repo, _)| repo == name)
                    .map(|(_, d)| d.clone())
            };
            if tags.is_empty() {
                // An untagged image keeps its repository digests (pulled by digest): Docker
                // shows those rows as `name <none>`.
                let mut any = false;
                let mut seen = BTreeSet::new();
                for (repo, d) in &digests {
                    if !seen.insert(repo.clone()) {
                        continue;
                    }
                    any = true;
                    rows.push(ImageSummary {
                        id: rec.id.clone(),
                        repository: Some(
                            Reference::parse_name_only(repo)
                                .map(|r| r.familiar_name())
                                .unwrap_or_else(|_| repo.clone()),
                        ),
                        tag: None,
                        digest: Some(d.clone()),
                        created,
                        size: rec.size,
                        dangling: false,
                    });
                }
                if !any {
                    rows.push(ImageSummary {
                        id: rec.id.clone(),
                        repository: None,
                        tag: None,
                        digest: None,
                        created,
                        size: rec.size,
                        dangling: true,
                    });
                }
            }
            for t in tags {
                rows.push(ImageSummary {
                    id: rec.id.clone(),
                    repository: Some(t.familiar_name()),
                    tag: t.tag().map(str::to_string),
                    digest: digest_for(&t.name()),
                    created,
                    size: rec.size,
                    dangling: false,
                });
            }
        }
        Ok(rows)
    }

    /// `hull history`: config history newest first, each layer-making row paired with the
    /// layer's blob digest and uncompressed size.
    pub fn history(&self, id: &ImageId) -> Result<Vec<HistoryRow>> {
        let img = self.image(id)?;
        let md = self.metadata();
        let mut layer_rows: Vec<(String, u64)> = Vec::new();
        for (desc, chain) in img.manifest.layers.iter().zip(&img.record.layers) {
            let size = md
                .layer(chain)?
                .map(|l| l.docker_size())
                .unwrap_or(desc.size);
            layer_rows.push((desc.digest.to_string(), size));
        }
        let mut rows = Vec::new();
        let mut layers = layer_rows.into_iter();
        if img.config.history.is_empty() {
            for (digest, size) in layers.by_ref() {
                rows.push(HistoryRow {
                    id: Some(digest),
                    created: None,
                    created_by: String::new(),
                    size,
                    comment: String::new(),
                    empty_layer: false,
                });
            }
        }
        for h in &img.config.history {
            let (id, size) = if h.empty_layer {
                (None, 0)
            } else {
                match layers.next() {
                    Some((d, s)) => (Some(d), s),
                    None => (None, 0),
                }
            };
            rows.push(HistoryRow {
                id,
                created: parse_time(h.created.as_deref()),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
                empty_layer: h.empty_layer,
            });
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = Some(id.to_string());
        }
        Ok(rows)
    }

    /// `hull inspect`: JSON shaped like `docker image inspect`'s element.
    pub fn inspect(&self, id: &ImageId) -> Result<Value> {
        let img = self.image(id)?;
        let c = &img.config;
        let config_json =
            serde_json::to_value(c.config.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let layers: Vec<String> = c.rootfs.diff_ids.iter().map(|d| d.to_string()).collect();
        let history_comment = c
            .history
            .last()
            .and_then(|h| h.comment.clone())
            .unwrap_or_default();
        Ok(json!({
            "Id": id.to_string(),
            "RepoTags": img.tags.iter().map(|t| format!("{}:{}", t.familiar_name(), t.tag().unwrap_or("latest"))).collect::<Vec<_>>(),
            "RepoDigests": img.repo_digests,
            "Parent": "",
            "Comment": history_comment,
            "Created": c.created.clone().unwrap_or_default(),
            "DockerVersion": c.extra.get("docker_version").cloned().unwrap_or(Value::String(String::new())),
            "Author": c.author.clone().unwrap_or_default(),
            "Config": config_json,
            "Architecture": c.architecture,
            "Variant": c.variant,
            "Os": c.os,
            "OsVersion": c.os_version,
            "Size": img.record.size,
            "GraphDriver": {
                "Name": "overlay",
                "Data": self.graph_driver_data(&img.record)?,
            },
            "RootFS": { "Type": c.rootfs.fs_type, "Layers": layers },
            "Metadata": { "LastTagTime": "" },
            "Descriptor": {
                "mediaType": img.record.manifest_media_type,
                "digest": img.record.manifest_digest.to_string(),
                "size": self.content().size(&img.record.manifest_digest)?.unwrap_or(0),
            },
        }))
    }

    fn graph_driver_data(&self, rec: &ImageRecord) -> Result<Value> {
        let dirs: Vec<String> = rec
            .layers
            .iter()
            .rev()
            .map(|c| self.layer_diff_dir(c).display().to_string())
            .collect();
        Ok(match dirs.split_first() {
            Some((upper, rest)) if !rest.is_empty() => json!({
                "UpperDir": upper,
                "LowerDir": rest.join(":"),
            }),
            Some((upper, _)) => json!({ "UpperDir": upper }),
            None => json!({}),
        })
    }

    /// `hull tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<ImageId> {
        let _lock = self.shared_lock()?;
        let id = self.resolve(source)?;
        let target = if target.tag().is_none() {
            target.with_tag(hull_oci::DEFAULT_TAG)?
        } else {
            target.clone()
        };
        self.metadata().set_tag(&target, &id)?;
        Ok(id)
    }

    /// `hull rmi NAME`: untag; delete the image when no tag is left. Removing by ID with
    /// several tags needs `force` (Docker's rule). Layers and blobs are freed by GC.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<RemoveEvent>> {
        let _lock = self.shared_lock()?;
        let md = self.metadata();
        let id = self.resolve(name)?;
        let tags = md.tags_of(&id)?;
        let mut events = Vec::new();
        let by_tag = Reference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none() && md.tag(r).ok().flatten().as_ref() == Some(&id));
        if let Some(r) = by_tag {
            md.remove_tag(&r)?;
            events.push(RemoveEvent::Untagged(format!(
                "{}:{}",
                r.familiar_name(),
                r.tag().unwrap_or("latest")
            )));
            if tags.len() > 1 {
                return Ok(events);
            }
        } else {
            let repos: BTreeSet<String> = tags.iter().map(|t| t.name()).collect();
            if repos.len() > 1 && !force {
                return Err(ImageError::MultipleRepositories {
                    name: name.to_string(),
                });
            }
            for t in &tags {
                md.remove_tag(t)?;
                events.push(RemoveEvent::Untagged(format!(
                    "{}:{}",
                    t.familiar_name(),
                    t.tag().unwrap_or("latest")
                )));
            }
        }
        for (repo, d) in md.repo_digests(&id)? {
            let familiar = Reference::parse_name_only(&repo)
                .map(|r| r.familiar_name())
                .unwrap_or(repo);
            events.push(RemoveEvent::Untagged(format!("{familiar}@{d}")));
        }
        md.delete_image(&id)?;
        events.push(RemoveEvent::Deleted(id));
        Ok(events)
    }
}
