use std::path::PathBuf;

use hull_oci::{Digest, ImageId};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image reference {0:?} is ambiguous: it matches more than one image ID")]
    Ambiguous(String),
    #[error(
        "conflict: unable to delete {name} (must be forced) - image is referenced in multiple repositories"
    )]
    MultipleRepositories { name: String },
    #[error("conflict: unable to delete {name} (cannot be forced) - image has dependent tags")]
    HasDependents { name: String },
    #[error("no image for platform {wanted} in {reference}; it offers: {available}")]
    PlatformMismatch {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("image {reference} is for platform {found}, not {wanted}")]
    WrongPlatform {
        reference: String,
        found: String,
        wanted: String,
    },
    #[error("{reference}: {what} is not a container image (config media type {media_type})")]
    NotAnImage {
        reference: String,
        what: String,
        media_type: String,
    },
    #[error(
        "layer {blob}: uncompressed content has digest {actual}, but the image config says {expected}"
    )]
    DiffIdMismatch {
        blob: Digest,
        expected: String,
        actual: String,
    },
    #[error("image config lists {diff_ids} layers but the manifest has {layers}")]
    LayerCountMismatch { diff_ids: usize, layers: usize },
    #[error("layer {0}: unsupported layer media type")]
    UnsupportedLayer(String),
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error("image {0} has no layers to mount")]
    NoLayers(ImageId),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Content(#[from] hull_content::ContentError),
    #[error(transparent)]
    Metadata(#[from] hull_metadata::MetadataError),
    #[error(transparent)]
    Layer(#[from] hull_layer::LayerError),
    #[error(transparent)]
    Distribution(#[from] hull_distribution::DistributionError),
    #[error(transparent)]
    Document(#[from] hull_oci::DocumentError),
    #[error(transparent)]
    Reference(#[from] hull_oci::ReferenceError),
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("{0}")]
    Other(String),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps the error with what was being done ("pulling busybox", "layer sha256:…").
    pub fn context(self, context: impl Into<String>) -> ImageError {
        ImageError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

pub(crate) type Result<T, E = ImageError> = std::result::Result<T, E>;
