//! `hull import`: a root filesystem tarball becomes a one-layer image, with Dockerfile-style
//! `--change` instructions applied to its config.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use hull_layer::Compression;
use hull_metadata::{ImageRecord, LeaseResource};
use hull_oci::{
    ChainId, ContainerConfig, Descriptor, Digest, History, ImageConfig, ImageId, Manifest,
    Platform, Reference, RootFs, media_type,
};

use crate::error::{ImageError, Result};
use crate::layers::LayerTarget;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag for the new image.
    pub reference: Option<Reference>,
    /// The container config (Cmd, Env, …) of the image: `--change` instructions applied by
    /// the caller (`hull_build::apply_changes`); empty when `None`.
    pub config: Option<ContainerConfig>,
    /// Commit message, recorded as the history comment.
    pub message: Option<String>,
    /// Platform recorded in the config (default: the host's).
    pub platform: Option<Platform>,
    /// What the history says the layer was imported from (`-` for stdin, or a file name).
    pub source: String,
}

impl Store {
    /// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image. The
    /// stream is hashed, stored and unpacked in one pass.
    pub fn import(&self, input: Box<dyn Read + Send>, opts: ImportOptions) -> Result<ImageId> {
        let container = opts.config.clone().unwrap_or_default();
        let _lock = self.shared_lock()?;
        let lease = self
            .metadata()
            .lease(std::time::Duration::from_secs(3600))?;
        let mut buffered = io::BufReader::with_capacity(1 << 20, input);
        let compression = hull_layer::detect_compression(&mut buffered)
            .map_err(|e| ImageError::io("import", e))?;
        let tar = hull_layer::decompress(buffered, compression)
            .map_err(|e| ImageError::io("import", e))?;

        // The layer is stored uncompressed (its digest is its diff ID); push compresses it.
        let ingest = format!("import-{:016x}", rand::random::<u64>());
        let writer = self.content().writer(&ingest, None)?;
        let slot = Arc::new(Mutex::new(Some(writer)));
        let tee = TeeToSlot {
            inner: tar,
            slot: slot.clone(),
        };
        // The chain ID of a one-layer image is its diff ID, which is known only at the end:
        // unpack under a placeholder name, then rename.
        let committed: Arc<Mutex<Option<(Digest, u64)>>> = Arc::new(Mutex::new(None));
        let placeholder = ChainId(Digest::sha256_of(ingest.as_bytes()));
        let target = LayerTarget {
            chain_id: &placeholder,
            parent: None,
            expected_diff: None,
            blob: &placeholder.0,
            media_type: media_type::OCI_LAYER,
        };
        let c2 = committed.clone();
        let (diff, size) = self.unpack_layer_staged(tee, &target, move || {
            let w = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| ImageError::Other("import stream was not consumed".into()))?;
            let done = w.commit_computed()?;
            *c2.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
            Ok(())
        })?;
        let (blob, blob_size) = committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| ImageError::Other("import layer was not committed".into()))?;
        lease.add(&LeaseResource::Blob(blob.clone()))?;
        self.metadata()
            .record_blob_diff(&blob, &diff, media_type::OCI_LAYER)?;
        let chain_id = ChainId(diff.0.clone());
        lease.add(&LeaseResource::Layer(chain_id.clone()))?;

        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let now = jiff::Timestamp::now().to_string();
        let config = ImageConfig {
            created: Some(now.clone()),
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: Some(container),
            rootfs: RootFs {
                fs_type: "layers".to_string(),
                diff_ids: vec![diff.clone()],
            },
            history: vec![History {
                created: Some(now.clone()),
                created_by: None,
                comment: Some(
                    opts.message
                        .clone()
                        .unwrap_or_else(|| format!("Imported from {}", opts.source)),
                ),
                ..History::default()
            }],
            ..ImageConfig::default()
        };
        let config_bytes = config.to_vec();
        let config_digest = self.content().put_bytes(&config_bytes)?;
        lease.add(&LeaseResource::Blob(config_digest.clone()))?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: Descriptor::new(
                media_type::OCI_CONFIG,
                config_digest.clone(),
                config_bytes.len() as u64,
            ),
            layers: vec![Descriptor::new(
                media_type::OCI_LAYER,
                blob.clone(),
                blob_size,
            )],
            subject: None,
            annotations: None,
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
        let manifest_digest = self.content().put_bytes(&manifest_bytes)?;
        let id = ImageId(config_digest.clone());
        self.metadata().put_image(&ImageRecord {
            id: id.clone(),
            manifest_digest: manifest_digest.clone(),
            manifest_media_type: media_type::OCI_MANIFEST.to_string(),
            created: Some(now),
            size,
            added_at: jiff::Timestamp::now().as_second(),
            layers: vec![chain_id],
            blobs: vec![manifest_digest, config_digest, blob],
        })?;
        if let Some(r) = &opts.reference {
            let r = if r.tag().is_none() {
                r.with_tag(hull_oci::DEFAULT_TAG)?
            } else {
                r.clone()
            };
            self.metadata().set_tag(&r, &id)?;
        }
        drop(lease);
        Ok(id)
    }

    /// Like `unpack_layer` for a stream whose diff ID (and so chain ID) is known only at
    /// its end: unpacks under the placeholder, then renames to the real chain ID. Returns the
    /// diff ID and the layer's size as Docker counts it.
    fn unpack_layer_staged(
        &self,
        tar: impl Read + Send,
        target: &LayerTarget<'_>,
        before_commit: impl FnOnce() -> Result<()>,
    ) -> Result<(hull_oci::DiffId, u64)> {
        let (diff, size, content) =
            self.unpack_layer(tar, Compression::None, target, before_commit)?;
        let real = ChainId(diff.0.clone());
        let from = self.layer_dir(target.chain_id);
        let to = self.layer_dir(&real);
        self.metadata().delete_layer(target.chain_id)?;
        if self.layer_present(&real)? {
            crate::layers::remove_tree(&from);
        } else {
            if to.exists() {
                crate::layers::remove_tree(&to);
            }
            fs_err::rename(&from, &to).map_err(|e| ImageError::io(&to, e))?;
            self.metadata().put_layer(&hull_metadata::LayerRecord {
                chain_id: real,
                diff_id: diff.clone(),
                parent: None,
                size,
                content_size: Some(content),
                state: hull_metadata::LayerState::Committed,
            })?;
        }
        Ok((diff, content))
    }
}

struct TeeToSlot<R> {
    inner: R,
    slot: Arc<Mutex<Option<hull_content::Writer>>>,
}

impl<R: Read> Read for TeeToSlot<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Some(chunk) = buf.get(..n)
            && let Some(w) = self.slot.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
        {
            io::Write::write_all(w, chunk)?;
        }
        Ok(n)
    }
}
