//! Opening the store, its locks, and name resolution.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs4::FileExt;
use hull_content::ContentStore;
use hull_metadata::Metadata;
use hull_oci::{Digest, ImageId, Reference};

use crate::error::{ImageError, Result};

/// One hull store (see the crate docs for its layout). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    content: ContentStore,
    metadata: Arc<Metadata>,
}

/// Held while a command works on the store; GC takes the exclusive form. Each guard opens
/// the lock file anew, so guards are independent `flock`s (one per open file description).
#[derive(Debug)]
pub(crate) struct StoreLock {
    file: File,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

impl Store {
    /// The default root: `$HULL_ROOT`, else `/var/lib/hull` for root, else
    /// `$XDG_DATA_HOME/hull` (`~/.local/share/hull`).
    pub fn default_root() -> PathBuf {
        if let Some(r) = std::env::var_os("HULL_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(r);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/hull");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|r| !r.is_empty()) {
            return PathBuf::from(x).join("hull");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".local/share/hull")
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in ["", "content", "layers", "layers/tmp", "mounts", "tmp"] {
            let p = root.join(dir);
            fs_err::create_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        let content = ContentStore::open(&root.join("content"))?;
        let metadata = Metadata::open(&root.join("metadata.db"))?;
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                content,
                metadata,
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    pub fn metadata(&self) -> &Arc<Metadata> {
        &self.inner.metadata
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.inner.root.join("layers")
    }

    fn lock_file(&self) -> Result<File> {
        let path = self.inner.root.join("lock");
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        Ok(file.into_parts().0)
    }

    /// Shared lock: many commands at once, but not while GC sweeps. Blocks.
    pub(crate) fn shared_lock(&self) -> Result<StoreLock> {
        let file = self.lock_file()?;
        FileExt::lock_shared(&file).map_err(|e| ImageError::io(self.inner.root.join("lock"), e))?;
        Ok(StoreLock { file })
    }

    /// Exclusive lock for GC: waits for running pulls and loads to finish. Blocks.
    pub(crate) fn exclusive_lock(&self) -> Result<StoreLock> {
        let file = self.lock_file()?;
        FileExt::lock(&file).map_err(|e| ImageError::io(self.inner.root.join("lock"), e))?;
        Ok(StoreLock { file })
    }

    /// Resolves what a user typed — a full or short image ID, a name with tag, or
    /// `name@digest` — to an image, as Docker does (an exact tag wins over an ID prefix).
    pub fn resolve(&self, name: &str) -> Result<ImageId> {
        let md = self.metadata();
        let id_like = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = id_like.len() >= 4
            && id_like.bytes().all(|b| b.is_ascii_hexdigit())
            && !name.contains('/');
        if let Ok(r) = Reference::parse(name) {
            if let Some(d) = r.digest() {
                if let Some(id) = md.image_by_repo_digest(&r.name(), d)? {
                    return Ok(id);
                }
                // The digest may be the config digest (image ID) itself.
                if md.image(&ImageId(d.clone()))?.is_some() {
                    return Ok(ImageId(d.clone()));
                }
                return Err(ImageError::NotFound(name.to_string()));
            }
            if let Some(id) = md.tag(&r)? {
                return Ok(id);
            }
        }
        if looks_like_id {
            if id_like.len() == 64
                && let Ok(d) = format!("sha256:{id_like}").parse::<Digest>()
                && md.image(&ImageId(d.clone()))?.is_some()
            {
                return Ok(ImageId(d));
            }
            let found = md.images_by_prefix(id_like)?;
            match found.len() {
                0 => {}
                1 => {
                    return found
                        .into_iter()
                        .next()
                        .ok_or_else(|| ImageError::NotFound(name.into()));
                }
                _ => return Err(ImageError::Ambiguous(name.to_string())),
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }
}
