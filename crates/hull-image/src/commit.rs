//! Committing an image that the store's own layers make up (a build's result): config blob,
//! OCI manifest, image record and tags, in that order, so a crash leaves either nothing visible
//! or the whole image.

use hull_metadata::ImageRecord;
use hull_oci::{ChainId, Descriptor, ImageConfig, ImageId, Manifest, Reference, media_type};

use crate::error::{ImageError, Result};
use crate::store::Store;

impl Store {
    /// Stores `config` and a manifest naming `layers` (each layer's chain ID and the
    /// descriptor of a blob the store holds for it), records the image and tags it with
    /// `tags` (a missing tag means `latest`). Returns the image ID.
    pub fn commit_image(
        &self,
        config: &ImageConfig,
        layers: &[(ChainId, Descriptor)],
        tags: &[Reference],
    ) -> Result<ImageId> {
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::Other(format!(
                "committing an image with {} layers but {} diff IDs",
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let config_bytes = config.to_vec();
        let config_digest = self.content().put_bytes(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: Descriptor::new(
                media_type::OCI_CONFIG,
                config_digest.clone(),
                config_bytes.len() as u64,
            ),
            layers: layers.iter().map(|(_, d)| d.clone()).collect(),
            subject: None,
            annotations: None,
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
        let manifest_digest = self.content().put_bytes(&manifest_bytes)?;
        let mut size = 0u64;
        for (c, _) in layers {
            if let Some(l) = self.metadata().layer(c)? {
                size = size.saturating_add(l.docker_size());
            }
        }
        let id = ImageId(config_digest.clone());
        let mut blobs = vec![manifest_digest.clone(), config_digest];
        blobs.extend(layers.iter().map(|(_, d)| d.digest.clone()));
        self.metadata().put_image(&ImageRecord {
            id: id.clone(),
            manifest_digest,
            manifest_media_type: media_type::OCI_MANIFEST.to_string(),
            created: config.created.clone(),
            size,
            added_at: jiff::Timestamp::now().as_second(),
            layers: layers.iter().map(|(c, _)| c.clone()).collect(),
            blobs,
        })?;
        for r in tags {
            let r = if r.tag().is_none() {
                r.with_tag(hull_oci::DEFAULT_TAG)?
            } else {
                r.clone()
            };
            self.metadata().set_tag(&r, &id)?;
        }
        Ok(id)
    }
}
