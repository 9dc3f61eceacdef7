//! Platforms (`os/arch[/variant]`) with containerd's normalisation, so `aarch64`, `arm64/v8` and
//! `arm64` name the same thing and `x86_64` is `amd64`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8")]
pub struct PlatformError(pub String);

/// A platform as in an OCI index entry (`platform` object of a descriptor).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Platform {
    pub architecture: String,
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
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
        .normalized()
    }

    /// The platform hull runs on.
    pub fn host() -> Platform {
        let arch = std::env::consts::ARCH;
        let (arch, variant) = match arch {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// containerd's `platforms.Normalize`.
    pub fn normalized(mut self) -> Platform {
        self.os = self.os.to_lowercase();
        let arch = self.architecture.to_lowercase();
        let variant = self.variant.take().map(|v| v.to_lowercase());
        let (arch, variant) = match arch.as_str() {
            "i386" => ("386".to_string(), None),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_string(),
                variant.filter(|v| v != "v1" && !v.is_empty()),
            ),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                variant.filter(|v| v != "8" && v != "v8" && !v.is_empty()),
            ),
            "armhf" => ("arm".to_string(), Some("v7".to_string())),
            "armel" => ("arm".to_string(), Some("v6".to_string())),
            "arm" => (
                "arm".to_string(),
                Some(match variant.as_deref() {
                    None | Some("") | Some("7") | Some("v7") => "v7".to_string(),
                    Some("5") | Some("6") | Some("8") => {
                        format!("v{}", variant.unwrap_or_default())
                    }
                    Some(v) => v.to_string(),
                }),
            ),
            _ => (arch, variant.filter(|v| !v.is_empty())),
        };
        self.architecture = arch;
        self.variant = variant;
        self
    }

    /// Whether an image built for `other` runs as `self` asks (both normalised first).
    pub fn matches(&self, other: &Platform) -> bool {
        let a = self.clone().normalized();
        let b = other.clone().normalized();
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let p = |s: &str| s.parse::<Platform>().unwrap().to_string();
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
    }

    #[test]
    fn matching() {
        let a: Platform = "linux/arm64".parse().unwrap();
        let b = Platform::new("linux", "arm64", Some("v8"));
        assert!(a.matches(&b));
        assert!(!a.matches(&"linux/amd64".parse().unwrap()));
        assert_eq!(Platform::host().os, std::env::consts::OS);
    }
}
