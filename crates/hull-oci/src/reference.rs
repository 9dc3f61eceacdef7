//! Image references with Docker's normalisation (`busybox` → `docker.io/library/busybox:latest`).
//!
//! Grammar from distribution's `reference` package: `[DOMAIN/]PATH[:TAG][@DIGEST]`. We parse by
//! hand, not with `oci-spec`'s `Reference`, so each refusal says which part is wrong ("repository
//! name must be lowercase", "invalid tag …") — the message a user needs at the CLI.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_REGISTRY: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error("invalid reference format {0:?}: repository name must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
    #[error(
        "invalid reference format {reference:?}: repository name is longer than 255 characters"
    )]
    TooLong { reference: String },
    #[error("invalid reference format {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

/// A fully-qualified image reference. At least one of tag and digest is set.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference as Docker does, defaulting the registry to `docker.io`, single-component
    /// Docker Hub names to `library/`, and the tag to `latest` when there is no digest.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_name_only(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses like [`Reference::parse`] but leaves the tag empty when none was given (for
    /// `--all-tags`, `images --filter reference=`, …).
    pub fn parse_name_only(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let invalid = |reason: &str| ReferenceError::Invalid {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((name, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        reference: s.to_string(),
                        source,
                    })?;
                (name, Some(digest))
            }
            None => (s, None),
        };
        // A tag is a ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest.get(last_slash..).and_then(|t| t.find(':')) {
            Some(i) => {
                let at = last_slash + i;
                (
                    rest.get(..at).unwrap_or_default(),
                    Some(rest.get(at + 1..).unwrap_or_default()),
                )
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|e| invalid(&e))?;
        }
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        validate_registry(&registry).map_err(|e| invalid(&e))?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_string()));
        }
        validate_path(&path).map_err(|e| invalid(&e))?;
        let registry = if registry == LEGACY_REGISTRY {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong {
                reference: s.to_string(),
            });
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Builds a reference from already-validated parts (the repository is validated here).
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        let mut r = Self::parse_name_only(&s)?;
        r.digest = digest;
        Ok(r)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker prints it: `busybox`, `user/app`, `127.0.0.1:5000/lab/busybox`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            let short = self
                .repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository);
            // A first component that looks like a host (`foo.bar/x`, `localhost/x`) would be
            // read back as a registry: keep the registry then, as Docker's FamiliarName does.
            let first = short.split('/').next().unwrap_or_default();
            if short.contains('/') && (first.contains('.') || first == "localhost") {
                self.name()
            } else {
                short.to_string()
            }
        } else {
            self.name()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        validate_tag(tag).map_err(|reason| ReferenceError::Invalid {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with neither tag nor digest.
    pub fn without_tag(&self) -> Self {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// What a registry's manifest endpoint is asked for: the digest if present, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tag {tag:?} (a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -)"
        ))
    }
}

fn validate_registry(host: &str) -> Result<(), String> {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || host.starts_with('[') => (h, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("invalid registry port in {host:?}"));
    }
    let valid_host = if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    if valid_host {
        Ok(())
    } else {
        Err(format!("invalid registry host {host:?}"))
    }
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn validate_path(path: &str) -> Result<(), String> {
    for comp in path.split('/') {
        if comp.is_empty() {
            return Err("empty path component in repository name".to_string());
        }
        let bytes = comp.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut i = 0;
        let mut prev_alnum = false;
        while let Some(&b) = bytes.get(i) {
            if alnum(b) {
                prev_alnum = true;
                i += 1;
                continue;
            }
            if !prev_alnum {
                return Err(format!("invalid repository name component {comp:?}"));
            }
            // a separator run: ".", "_", "__" or "-+"
            let start = i;
            while bytes.get(i).is_some_and(|&c| c == b'-') {
                i += 1;
            }
            if i == start {
                match (bytes.get(i), bytes.get(i + 1)) {
                    (Some(b'_'), Some(b'_')) => i += 2,
                    (Some(b'_' | b'.'), _) => i += 1,
                    _ => return Err(format!("invalid character in repository name {comp:?}")),
                }
            }
            prev_alnum = false;
        }
        if !prev_alnum {
            return Err(format!("invalid repository name component {comp:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(p("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(p("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            p("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("localhost/app"), "localhost/app:latest");
        assert_eq!(
            p("127.0.0.1:5000/lab/busybox:x"),
            "127.0.0.1:5000/lab/busybox:x"
        );
        assert_eq!(p("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            p(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn familiar_names() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar_name();
        assert_eq!(f("busybox"), "busybox");
        assert_eq!(f("user/app"), "user/app");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b");
        // Read back, these must name the same repository on Docker Hub.
        assert_eq!(f("docker.io/foo.bar/baz"), "docker.io/foo.bar/baz");
        assert_eq!(f("docker.io/localhost/x"), "docker.io/localhost/x");
        for name in ["docker.io/foo.bar/baz", "docker.io/localhost/x", "user/app"] {
            let r = Reference::parse(name).unwrap();
            assert_eq!(
                Reference::parse(&r.familiar_name()).unwrap().name(),
                r.name()
            );
        }
        assert_eq!(
            f("127.0.0.1:5000/lab/busybox"),
            "127.0.0.1:5000/lab/busybox"
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let e = |s: &str| Reference::parse(s).unwrap_err().to_string();
        assert!(e("BusyBox").contains("must be lowercase"));
        assert!(e("busybox:").contains("invalid tag"));
        assert!(e("busybox:-x").contains("invalid tag"));
        assert!(e("busybox@sha256:12").contains("hex"));
        assert!(e("a//b").contains("empty path"));
        assert!(e("a/../b").contains("invalid"));
        assert!(e("a_-b").contains("invalid"));
        assert!(e("").contains("empty"));
        assert!(e(&format!("a/{}", "b".repeat(300))).contains("255"));
        assert!(e("host:abc/x").contains("port"));
    }

    #[test]
    fn separators() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "a-b.c_d"] {
            Reference::parse(ok).unwrap();
        }
        for bad in ["a___b", "a..b", "-a", "a-", "a.", "_a"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = Reference::parse(&s);
        }

        #[test]
        fn display_round_trips(s in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}(:[a-z0-9]{1,5})?") {
            let r = Reference::parse(&s).unwrap();
            proptest::prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }
}
