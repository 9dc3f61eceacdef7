//! Manifests, indexes and descriptors (image-spec `manifest.md`, `image-index.md`,
//! `descriptor.md`; Docker manifest v2 schema 2 and manifest lists share the shapes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type;
use crate::platform::Platform;

/// Largest manifest or index hull reads (the distribution spec lets registries refuse more
/// than 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Largest image config hull reads; long histories make configs bigger than manifests.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("invalid {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "manifest schema 1 ({0}) is not supported: it was deprecated by Docker in 2019; push the image again with a current client"
    )]
    Schema1(String),
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        }
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A manifest document of either kind, as read from a registry or an archive.
// Few of these live at once; boxing would only add indirection to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedManifest {
    Image(Manifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<serde_json::Value>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

impl ParsedManifest {
    /// Decodes a manifest or index. `content_type` is what the registry said (may be empty);
    /// the document's own `mediaType` wins when both are present and they agree, and a
    /// disagreement is an error (a registry must not relabel a document).
    pub fn from_slice(bytes: &[u8], content_type: Option<&str>) -> Result<Self, DocumentError> {
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(DocumentError::TooLarge {
                what: "manifest",
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
            what: "manifest",
            source,
        })?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or_default().trim())
            .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
        if let Some(h) = header
            && media_type::is_schema1(h)
        {
            return Err(DocumentError::Schema1(h.to_string()));
        }
        if probe.schema_version == Some(serde_json::Value::from(1)) || probe.fs_layers.is_some() {
            return Err(DocumentError::Schema1(
                probe
                    .media_type
                    .clone()
                    .unwrap_or_else(|| media_type::DOCKER_SCHEMA1.to_string()),
            ));
        }
        let declared = probe.media_type.as_deref().or(header);
        let is_index = match declared {
            Some(m) if media_type::is_schema1(m) => {
                return Err(DocumentError::Schema1(m.to_string()));
            }
            Some(m) if media_type::is_index(m) => true,
            Some(m) if media_type::is_manifest(m) => false,
            // Artifacts may carry other manifest media types only through `artifactType`;
            // a bare unknown media type is refused.
            Some(m) => return Err(DocumentError::UnsupportedMediaType(m.to_string())),
            None => probe.manifests.is_some() && probe.config.is_none(),
        };
        if let (Some(doc), Some(h)) = (probe.media_type.as_deref(), header)
            && doc != h
            && (media_type::is_index(h) || media_type::is_manifest(h))
        {
            return Err(DocumentError::Invalid {
                what: "manifest",
                reason: format!("document says mediaType {doc:?} but was served as {h:?}"),
            });
        }
        let parsed = if is_index {
            let idx: Index =
                serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
                    what: "image index",
                    source,
                })?;
            ParsedManifest::Index(idx)
        } else {
            let m: Manifest =
                serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
                    what: "image manifest",
                    source,
                })?;
            ParsedManifest::Image(m)
        };
        let version = match &parsed {
            ParsedManifest::Image(m) => m.schema_version,
            ParsedManifest::Index(i) => i.schema_version,
        };
        if version != 2 {
            return Err(DocumentError::Invalid {
                what: "manifest",
                reason: format!("schemaVersion is {version}, expected 2"),
            });
        }
        Ok(parsed)
    }

    /// The media type this document is, falling back to the OCI one for untyped documents.
    pub fn media_type(&self) -> &str {
        match self {
            ParsedManifest::Image(m) => m.media_type.as_deref().unwrap_or(media_type::OCI_MANIFEST),
            ParsedManifest::Index(i) => i.media_type.as_deref().unwrap_or(media_type::OCI_INDEX),
        }
    }
}

impl Manifest {
    /// Whether this manifest describes a runnable container image (rather than an artifact).
    pub fn is_image(&self) -> bool {
        self.config.media_type == media_type::OCI_CONFIG
            || self.config.media_type == media_type::DOCKER_CONFIG
    }
}

impl Index {
    /// The entries that run on `want`, best first (exact variant before no variant).
    pub fn matching(&self, want: &Platform) -> Vec<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| media_type::is_manifest(&d.media_type) || d.media_type.is_empty())
            .filter(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
            .collect()
    }

    /// The platforms this index offers, for "no match" errors.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| p.clone().normalized().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_manifest() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":2}},"layers":[{{"mediaType":"{}","digest":"{D}","size":3}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP
        );
        match ParsedManifest::from_slice(doc.as_bytes(), Some(media_type::DOCKER_MANIFEST)).unwrap()
        {
            ParsedManifest::Image(m) => {
                assert_eq!(m.layers.len(), 1);
                assert!(m.is_image());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn index_without_media_type() {
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let ParsedManifest::Index(i) = ParsedManifest::from_slice(doc.as_bytes(), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(i.platforms(), vec!["linux/arm64".to_string()]);
        assert_eq!(i.matching(&"linux/arm64".parse().unwrap()).len(), 1);
        assert!(i.matching(&"linux/amd64".parse().unwrap()).is_empty());
    }

    #[test]
    fn schema1_refused_clearly() {
        let doc = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let e = ParsedManifest::from_slice(doc, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 1"), "{e}");
    }

    #[test]
    fn bad_documents() {
        for doc in [
            &b"{"[..],
            b"[]",
            br#"{"schemaVersion":2,"mediaType":"text/html"}"#,
            br#"{"schemaVersion":3,"config":{"mediaType":"a","digest":"sha256:00","size":1}}"#,
            br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"md5:00","size":-1}}"#,
        ] {
            assert!(ParsedManifest::from_slice(doc, None).is_err());
        }
        let big = vec![b' '; (MAX_MANIFEST_SIZE + 1) as usize];
        assert!(matches!(
            ParsedManifest::from_slice(&big, None),
            Err(DocumentError::TooLarge { .. })
        ));
    }
}
