//! Image configuration (image-spec `config.md`), with Docker's extension fields.
//!
//! Unknown fields are kept in `extra` maps, so a config read and written again by hull (to add a
//! tag-independent change, say) loses nothing a peer put there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::DiffId;
use crate::manifest::{DocumentError, MAX_CONFIG_SIZE};
use crate::platform::Platform;

type Extra = BTreeMap<String, serde_json::Value>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `config` object: how a container from this image runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Docker's `Healthcheck` (durations in nanoseconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub fs_type: String,
    #[serde(default)]
    pub diff_ids: Vec<DiffId>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Decodes a config blob (size-capped), checking what the spec requires of it.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DocumentError> {
        if bytes.len() as u64 > MAX_CONFIG_SIZE {
            return Err(DocumentError::TooLarge {
                what: "image config",
                size: bytes.len() as u64,
                limit: MAX_CONFIG_SIZE,
            });
        }
        let c: ImageConfig =
            serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
                what: "image config",
                source,
            })?;
        if c.rootfs.fs_type != "layers" {
            return Err(DocumentError::Invalid {
                what: "image config",
                reason: format!("rootfs.type is {:?}, expected \"layers\"", c.rootfs.fs_type),
            });
        }
        let layered = c.history.iter().filter(|h| !h.empty_layer).count();
        if !c.history.is_empty() && layered != c.rootfs.diff_ids.len() {
            // Docker tolerates this; so do we, but only when history is merely shorter
            // (some tools omit entries). More history layers than diff_ids is nonsense.
            if layered > c.rootfs.diff_ids.len() {
                return Err(DocumentError::Invalid {
                    what: "image config",
                    reason: format!(
                        "history names {layered} layers but rootfs has {}",
                        c.rootfs.diff_ids.len()
                    ),
                });
            }
        }
        Ok(c)
    }

    /// Canonical JSON bytes of a config hull writes itself.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields() {
        let doc = br#"{"architecture":"amd64","os":"linux","docker_version":"24","config":{"Cmd":["sh"],"Hostname":"x"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::from_slice(doc).unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );
        let back: serde_json::Value = serde_json::from_slice(&c.to_vec()).unwrap();
        assert_eq!(back["docker_version"], "24");
        assert_eq!(back["config"]["Hostname"], "x");
    }

    #[test]
    fn refuses_wrong_rootfs() {
        assert!(ImageConfig::from_slice(br#"{"rootfs":{"type":"x"}}"#).is_err());
        assert!(ImageConfig::from_slice(br#"{"os":"linux"}"#).is_err());
    }
}
