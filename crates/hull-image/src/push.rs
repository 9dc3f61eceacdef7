//! `hull push`: a local image's layers, config and manifest to a registry, as Docker pushes —
//! blobs the repository has are skipped, blobs known to be in another repository of the same
//! registry are mounted from there, the rest uploaded several at a time, streamed from the
//! content store.
//!
//! Layers the store keeps uncompressed (images from `hull import` and docker-archive `hull
//! load`; not pulled ones, whose manifests a registry already accepted) are compressed for the
//! registry; the compressed blob is committed to the content
//! store, recorded as a blob of the layer's diff ID (so the next push finds it) and of the
//! image (so GC keeps it), and a manifest naming it is pushed instead of the stored one. Images
//! whose layers are all compressed are pushed with their stored manifest bytes, unchanged, so
//! the digest they were pulled under is the digest they are pushed under.
//!
//! Where a blob came from is known from the repository digests of the images holding it: the
//! repository each was pulled from, and every repository it was pushed to.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hull_distribution::{BlobFile, PushedBlob, RegistryClient, UploadOptions, UploadProgress};
use hull_metadata::LeaseResource;
use hull_oci::{DiffId, Digest, ImageId, MAX_MANIFEST_SIZE, ParsedManifest, Reference, media_type};
use tokio::sync::Semaphore;

/// How layers are compressed for the registry (re-exported for front ends).
pub use hull_layer::Compression;

use crate::error::{ImageError, Result};
use crate::events::{Event, EventSink, LayerEvent};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once (Docker's `max-concurrent-uploads`, default 5).
    pub max_concurrent_uploads: usize,
    /// How layers stored uncompressed are compressed for the registry (gzip or zstd).
    pub compression: Compression,
    /// Monolithic and chunked upload sizes.
    pub upload: UploadOptions,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_concurrent_uploads: 5,
            compression: Compression::Gzip,
            upload: UploadOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// The reference pushed (normalised, with its tag).
    pub reference: Reference,
    pub image: ImageId,
    /// Digest of the manifest pushed.
    pub digest: Digest,
    /// Size of the manifest pushed, in bytes.
    pub size: u64,
}

/// How long a push's lease protects the blobs it compresses if the process dies.
const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Progress granularity.
const PROGRESS_STEP: u64 = 512 * 1024;
/// Docker tries at most this many source repositories for a mount.
const MAX_MOUNT_CANDIDATES: usize = 3;

/// The local tags of `name`'s repository (its tag, if any, is ignored), sorted.
pub fn repository_tags(store: &Store, name: &Reference) -> Result<Vec<Reference>> {
    let wanted = name.name();
    let mut tags: Vec<Reference> = store
        .metadata()
        .tags()?
        .into_iter()
        .map(|t| t.reference)
        .filter(|r| r.name() == wanted && r.tag().is_some())
        .collect();
    tags.sort_by_key(|r| r.to_string());
    Ok(tags)
}

/// Pushes every local tag of `name`'s repository, one after the other.
pub async fn push_all_tags(
    store: &Store,
    client: &RegistryClient,
    name: &Reference,
    opts: &PushOptions,
    events: EventSink,
) -> Result<Vec<PushResult>> {
    let tags = repository_tags(store, name)?;
    if tags.is_empty() {
        return Err(ImageError::NotFound(format!(
            "{}: no tags in this repository",
            name.name()
        )));
    }
    let mut out = Vec::new();
    for r in tags {
        out.push(push(store, client, &r, opts, events.clone()).await?);
    }
    Ok(out)
}

/// Pushes the image tagged `reference` to the registry and repository the reference names.
pub async fn push(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PushOptions,
    events: EventSink,
) -> Result<PushResult> {
    if reference.digest().is_some() {
        return Err(ImageError::Other(format!(
            "cannot push a digest reference: {reference}"
        )));
    }
    let lock_store = store.clone();
    let lock = tokio::task::spawn_blocking(move || lock_store.shared_lock())
        .await
        .map_err(|e| ImageError::Other(format!("lock task failed: {e}")))??;
    let result = push_locked(store, client, reference, opts, events).await;
    drop(lock);
    result
}

/// One blob to put in the registry.
#[derive(Clone)]
struct Job {
    /// What progress is reported under (a layer's diff ID; `None` for the config).
    shown: Option<Digest>,
    /// A layer stored uncompressed, compressed before the upload.
    diff_id: Option<DiffId>,
    /// The stored blob.
    blob: Digest,
    size: u64,
    /// The media type the stored blob has in the manifest.
    media_type: String,
}

/// A blob as it goes to the registry.
#[derive(Clone)]
struct Ready {
    digest: Digest,
    size: u64,
    media_type: String,
}

async fn push_locked(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PushOptions,
    events: EventSink,
) -> Result<PushResult> {
    let reference = if reference.tag().is_none() {
        reference.with_tag(hull_oci::DEFAULT_TAG)?
    } else {
        reference.clone()
    };
    let md = store.metadata();
    let id = md
        .tag(&reference)?
        .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
    let crate::Image {
        record,
        manifest,
        config,
        ..
    } = store.image(&id)?;
    let lease = md.lease(LEASE_TTL)?;
    // The exact bytes: pushed unchanged when the registry has every blob they name.
    let manifest_bytes = store
        .content()
        .read_capped(&record.manifest_digest, MAX_MANIFEST_SIZE)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCountMismatch {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }
    let docker_manifest = record.manifest_media_type == media_type::DOCKER_MANIFEST;
    let keep_manifest = served_by_registry(store, &id, &record.manifest_digest)?;

    // One job per distinct layer blob (an image may repeat a layer).
    let mut jobs: Vec<Job> = Vec::new();
    for (desc, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if jobs.iter().any(|j| j.blob == desc.digest) {
            continue;
        }
        let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
            ImageError::UnsupportedLayer(format!("{} ({})", desc.digest, desc.media_type))
        })?;
        jobs.push(Job {
            shown: Some(diff.0.clone()),
            diff_id: (compression == Compression::None && !keep_manifest).then(|| diff.clone()),
            blob: desc.digest.clone(),
            size: desc.size,
            media_type: desc.media_type.clone(),
        });
    }
    for j in &jobs {
        if let Some(d) = &j.shown {
            events(Event::Layer {
                digest: d.clone(),
                event: LayerEvent::Preparing,
            });
        }
    }
    let sources = Arc::new(mount_sources(store, &reference)?);

    let semaphore = Arc::new(Semaphore::new(opts.max_concurrent_uploads.max(1)));
    let mut tasks = Vec::new();
    for job in jobs.iter().cloned() {
        let ctx = TaskCtx {
            store: store.clone(),
            client: client.clone(),
            reference: reference.clone(),
            opts: opts.clone(),
            docker_manifest,
            sources: sources.clone(),
            events: events.clone(),
        };
        let sem = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            ctx.run(job).await
        }));
    }
    let mut ready: Vec<Ready> = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok((r, compressed))) => {
                if let Some(c) = compressed {
                    lease.add(&LeaseResource::Blob(c))?;
                }
                ready.push(r);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(ImageError::Other(format!("push task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    // The config after the layers, as Docker does.
    let config_job = Job {
        shown: None,
        diff_id: None,
        blob: manifest.config.digest.clone(),
        size: manifest.config.size,
        media_type: manifest.config.media_type.clone(),
    };
    let ctx = TaskCtx {
        store: store.clone(),
        client: client.clone(),
        reference: reference.clone(),
        opts: opts.clone(),
        docker_manifest,
        sources: sources.clone(),
        events: events.clone(),
    };
    ctx.upload(&config_job, &config_job.blob, config_job.size)
        .await?;

    // The manifest: the stored bytes, or the stored document naming the compressed blobs.
    let replaced: HashMap<&Digest, &Ready> = jobs
        .iter()
        .zip(&ready)
        .filter(|(j, r)| j.blob != r.digest)
        .map(|(j, r)| (&j.blob, r))
        .collect();
    let (bytes, digest) = if replaced.is_empty() {
        (manifest_bytes, record.manifest_digest.clone())
    } else {
        let bytes = rewrite_manifest(&manifest_bytes, &replaced)?;
        let digest = store.content().put_bytes(&bytes)?;
        lease.add(&LeaseResource::Blob(digest.clone()))?;
        (bytes, digest)
    };
    let size = bytes.len() as u64;
    let pushed = client
        .put_manifest(&reference, &record.manifest_media_type, Bytes::from(bytes))
        .await?;
    if pushed != digest {
        return Err(ImageError::Other(format!(
            "manifest {digest} was pushed as {pushed}"
        )));
    }

    // Keep what was made for the registry with the image, and remember where it now is.
    if !replaced.is_empty() {
        let mut blobs: Vec<Digest> = vec![digest.clone()];
        blobs.extend(replaced.values().map(|r| r.digest.clone()));
        keep_with_image(store, &id, blobs)?;
    }
    md.add_repo_digest(&id, &reference.name(), &digest)?;
    drop(lease);
    Ok(PushResult {
        reference,
        image: id,
        digest,
        size,
    })
}

/// Whether a registry served these manifest bytes (the image was pulled by this manifest's
/// digest, or by an index listing it): then they are pushed as they are, uncompressed layers
/// included, and the image keeps its digest. A manifest hull wrote (import, load, or a rewrite
/// by an earlier push) does not count.
fn served_by_registry(store: &Store, id: &ImageId, manifest: &Digest) -> Result<bool> {
    for (_, d) in store.metadata().repo_digests(id)? {
        if &d == manifest {
            return Ok(true);
        }
        let Ok(bytes) = store.content().read_capped(&d, MAX_MANIFEST_SIZE) else {
            continue;
        };
        if let Ok(ParsedManifest::Index(index)) = ParsedManifest::from_slice(&bytes, None)
            && index.manifests.iter().any(|m| &m.digest == manifest)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds `blobs` to the image record's blobs (GC roots), if the image is still there.
fn keep_with_image(store: &Store, id: &ImageId, blobs: Vec<Digest>) -> Result<()> {
    let md = store.metadata();
    let Some(mut rec) = md.image(id)? else {
        return Ok(());
    };
    let before = rec.blobs.len();
    let mut all: BTreeSet<Digest> = rec.blobs.drain(..).collect();
    all.extend(blobs);
    if all.len() != before {
        rec.blobs = all.into_iter().collect();
        md.put_image(&rec)?;
    }
    Ok(())
}

/// For each blob, the repositories of `target`'s registry (other than the target) known to hold
/// it: those the images holding it were pulled from or pushed to.
fn mount_sources(store: &Store, target: &Reference) -> Result<HashMap<Digest, Vec<String>>> {
    let md = store.metadata();
    let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
    for img in md.images()? {
        let repos: Vec<String> = md
            .repo_digests(&img.id)?
            .into_iter()
            .filter_map(|(name, _)| Reference::parse_name_only(&name).ok())
            .filter(|r| r.registry() == target.registry() && r.repository() != target.repository())
            .map(|r| r.repository().to_string())
            .collect();
        if repos.is_empty() {
            continue;
        }
        for b in img.blobs {
            let list = out.entry(b).or_default();
            for r in &repos {
                if !list.contains(r) {
                    list.push(r.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The manifest document with the layers in `replaced` pointing at their compressed blobs.
/// Every other field is kept as stored.
fn rewrite_manifest(bytes: &[u8], replaced: &HashMap<&Digest, &Ready>) -> Result<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Other(format!("stored manifest is not JSON: {e}")))?;
    let layers = doc
        .get_mut("layers")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| ImageError::Other("stored manifest has no layers array".into()))?;
    for layer in layers.iter_mut() {
        let Some(obj) = layer.as_object_mut() else {
            continue;
        };
        let Some(digest) = obj
            .get("digest")
            .and_then(serde_json::Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        if let Some(r) = replaced.get(&digest) {
            obj.insert("mediaType".into(), r.media_type.clone().into());
            obj.insert("digest".into(), r.digest.to_string().into());
            obj.insert("size".into(), r.size.into());
        }
    }
    serde_json::to_vec(&doc).map_err(|e| ImageError::Other(format!("writing manifest: {e}")))
}

/// The media type of a layer compressed with `c`, in the manifest's family.
fn compressed_media_type(c: Compression, docker_manifest: bool) -> &'static str {
    match (c, docker_manifest) {
        (Compression::Zstd, _) => media_type::OCI_LAYER_ZSTD,
        (_, true) => media_type::DOCKER_LAYER_GZIP,
        (_, false) => media_type::OCI_LAYER_GZIP,
    }
}

struct TaskCtx {
    store: Store,
    client: RegistryClient,
    reference: Reference,
    opts: PushOptions,
    docker_manifest: bool,
    sources: Arc<HashMap<Digest, Vec<String>>>,
    events: EventSink,
}

impl TaskCtx {
    fn event(&self, job: &Job, event: LayerEvent) {
        if let Some(d) = &job.shown {
            (self.events)(Event::Layer {
                digest: d.clone(),
                event,
            });
        }
    }

    /// Readies and pushes one layer; returns it as pushed and the blob compressed for it.
    async fn run(self, job: Job) -> Result<(Ready, Option<Digest>)> {
        let (ready, compressed) = match &job.diff_id {
            None => (
                Ready {
                    digest: job.blob.clone(),
                    size: job.size,
                    media_type: job.media_type.clone(),
                },
                None,
            ),
            Some(diff) => {
                let r = self.compressed(&job, diff).await?;
                let d = r.digest.clone();
                (r, Some(d))
            }
        };
        let outcome = self.upload(&job, &ready.digest, ready.size).await?;
        self.event(
            &job,
            match outcome {
                PushedBlob::AlreadyExists => LayerEvent::AlreadyExists,
                PushedBlob::Mounted { from } => LayerEvent::Mounted { from },
                PushedBlob::Uploaded { .. } => LayerEvent::Pushed,
            },
        );
        Ok((ready, compressed))
    }

    /// The compressed form of an uncompressed layer: one made by an earlier push if the store
    /// still has it, else compressed now (streaming, into the content store).
    async fn compressed(&self, job: &Job, diff: &DiffId) -> Result<Ready> {
        let md = self.store.metadata();
        let wanted = self.opts.compression;
        if wanted == Compression::None {
            return Err(ImageError::Other(
                "layers must be compressed for a registry: choose gzip or zstd".into(),
            ));
        }
        let media_type = compressed_media_type(wanted, self.docker_manifest).to_string();
        for (blob, mt) in md.blobs_for_diff(diff)? {
            if Compression::from_media_type(&mt) == Some(wanted)
                && let Some(size) = self.store.content().size(&blob)?
            {
                return Ok(Ready {
                    digest: blob,
                    size,
                    media_type,
                });
            }
        }
        let store = self.store.clone();
        let source = job.blob.clone();
        let ingest = format!("push-{}-{}", wanted.as_str(), diff.0.hex());
        let (digest, size) = tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
            let file = store.content().open_blob(&source)?;
            let size = file.metadata().ok().map(|m| m.len());
            let mut writer = store.content().writer(&ingest, None)?;
            if writer.offset() != 0 {
                writer.truncate()?;
            }
            let reader = io::BufReader::with_capacity(1 << 20, file);
            let path = store.content().blob_path(&source);
            hull_layer::compress(reader, &mut writer, wanted, size)
                .map_err(|e| ImageError::io(&path, e))?;
            Ok(writer.commit_computed()?)
        })
        .await
        .map_err(|e| ImageError::Other(format!("compression task failed: {e}")))?
        .map_err(|e| e.context(format!("compressing layer {diff}")))?;
        md.record_blob_diff(&digest, diff, &media_type)?;
        Ok(Ready {
            digest,
            size,
            media_type,
        })
    }

    /// Puts one blob from the content store into the registry.
    async fn upload(&self, job: &Job, digest: &Digest, size: u64) -> Result<PushedBlob> {
        let path = self.store.content().blob_path(digest);
        if !path.is_file() {
            return Err(ImageError::Other(format!(
                "blob {digest} is not in the store (hint: pull the image again)"
            )));
        }
        let mut from: Vec<String> = self.sources.get(digest).cloned().unwrap_or_default();
        from.truncate(MAX_MOUNT_CANDIDATES);
        let progress: Option<UploadProgress> = job.shown.clone().map(|shown| {
            let events = self.events.clone();
            let last = Arc::new(AtomicU64::new(0));
            let p: UploadProgress = Arc::new(move |current: u64| {
                let prev = last.load(Ordering::Relaxed);
                if current < prev || current - prev >= PROGRESS_STEP || current == size {
                    last.store(current, Ordering::Relaxed);
                    events(Event::Layer {
                        digest: shown.clone(),
                        event: LayerEvent::Pushing {
                            current,
                            total: Some(size),
                        },
                    });
                }
            });
            p
        });
        Ok(self
            .client
            .push_blob(
                &self.reference,
                BlobFile {
                    digest,
                    size,
                    path: &path,
                },
                &from,
                &self.opts.upload,
                progress,
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_rewrite_keeps_other_fields() {
        let old: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let keep: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let new: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": keep.to_string(), "size": 5},
            "layers": [
                {"mediaType": media_type::OCI_LAYER, "digest": old.to_string(), "size": 100,
                 "annotations": {"a": "b"}},
                {"mediaType": media_type::OCI_LAYER_GZIP, "digest": keep.to_string(), "size": 7},
            ],
            "annotations": {"org.example": "x"},
        });
        let ready = Ready {
            digest: new.clone(),
            size: 42,
            media_type: media_type::OCI_LAYER_GZIP.into(),
        };
        let mut replaced = HashMap::new();
        replaced.insert(&old, &ready);
        let out = rewrite_manifest(&serde_json::to_vec(&doc).unwrap(), &replaced).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["layers"][0]["digest"], new.to_string());
        assert_eq!(out["layers"][0]["size"], 42);
        assert_eq!(out["layers"][0]["mediaType"], media_type::OCI_LAYER_GZIP);
        assert_eq!(out["layers"][0]["annotations"]["a"], "b");
        assert_eq!(out["layers"][1]["digest"], keep.to_string());
        assert_eq!(out["annotations"]["org.example"], "x");
        assert_eq!(out["config"], doc["config"]);
    }

    #[test]
    fn compressed_media_types_follow_the_manifest() {
        assert_eq!(
            compressed_media_type(Compression::Gzip, true),
            media_type::DOCKER_LAYER_GZIP
        );
        assert_eq!(
            compressed_media_type(Compression::Gzip, false),
            media_type::OCI_LAYER_GZIP
        );
        assert_eq!(
            compressed_media_type(Compression::Zstd, false),
            media_type::OCI_LAYER_ZSTD
        );
    }
}
