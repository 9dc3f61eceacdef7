//! hull's configuration file (TOML): `$HULL_CONFIG`, else `/etc/hull/config.toml` for root,
//! else `$XDG_CONFIG_HOME/hull/config.toml` (`~/.config/hull/config.toml`). A missing default
//! file is no error; a missing `$HULL_CONFIG` file is. Flags win over the file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Docker's default `max-concurrent-downloads`.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 6;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    /// Registries reached over plain http (`host[:port]`).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Layers downloaded at once by `pull`.
    #[serde(default)]
    pub max_concurrent_downloads: Option<usize>,
    /// The store directory (the `--root` flag wins).
    #[serde(default)]
    pub root: Option<PathBuf>,
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<FileConfig> {
        let cfg: FileConfig = toml::from_str(text)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        if cfg.max_concurrent_downloads == Some(0) {
            anyhow::bail!(
                "reading configuration {}: max-concurrent-downloads must be at least 1",
                path.display()
            );
        }
        Ok(cfg)
    }

    /// Loads the configuration file that applies, or the defaults when there is none.
    pub fn load() -> anyhow::Result<FileConfig> {
        let explicit = std::env::var_os("HULL_CONFIG").filter(|p| !p.is_empty());
        let path = match &explicit {
            Some(p) => PathBuf::from(p),
            None => match default_path() {
                Some(p) => p,
                None => return Ok(FileConfig::default()),
            },
        };
        match fs_err::read_to_string(&path) {
            Ok(text) => FileConfig::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(anyhow::Error::new(e).context("reading configuration (HULL_CONFIG)")),
        }
    }
}

fn default_path() -> Option<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/etc/hull/config.toml"));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(x).join("hull/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .map(|h| PathBuf::from(h).join(".config/hull/config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_keys() {
        let cfg = FileConfig::parse(
            "insecure-registries = [\"myreg:5000\"]\nmax-concurrent-downloads = 3\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(cfg.insecure_registries, vec!["myreg:5000".to_string()]);
        assert_eq!(cfg.max_concurrent_downloads, Some(3));
        assert_eq!(
            FileConfig::parse("", Path::new("c.toml")).unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn refusals_name_the_file() {
        let e = FileConfig::parse("insecure-registry = []", Path::new("/etc/hull/config.toml"))
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("/etc/hull/config.toml"), "{msg}");
        assert!(msg.contains("insecure-registry"), "{msg}");
        let e = FileConfig::parse("max-concurrent-downloads = 0", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("at least 1"));
    }
}
