//! Unpacked layers: one directory per chain ID, written once, shared by every image.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use hull_layer::{Compression, UnpackOptions, WhiteoutMode};
use hull_metadata::{LayerRecord, LayerState};
use hull_oci::{ChainId, DiffId, Digest, Digester, ImageId};

use crate::error::{ImageError, Result};
use crate::store::Store;

/// Reader that hashes and counts what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    digester: Digester,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            digester: Digester::new(hull_oci::Algorithm::Sha256),
            count: 0,
        }
    }

    pub(crate) fn finish(self) -> (Digest, u64) {
        (self.digester.finish(), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(chunk) = buf.get(..n) {
            self.digester.update(chunk);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// What to unpack and what it must turn out to be.
pub(crate) struct LayerTarget<'a> {
    pub chain_id: &'a ChainId,
    pub parent: Option<&'a ChainId>,
    /// The diff ID the image config promises; `None` when the caller computes it (import).
    pub expected_diff: Option<&'a DiffId>,
    /// The blob the layer came from, for error messages and the blob → diff ID record.
    pub blob: &'a Digest,
    pub media_type: &'a str,
}

impl Store {
    pub(crate) fn layer_dir(&self, chain: &ChainId) -> PathBuf {
        self.layers_dir().join(chain.digest().hex())
    }

    /// The layer's own files (overlayfs format), usable as a lowerdir.
    pub fn layer_diff_dir(&self, chain: &ChainId) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    /// A layer is present when its record exists and its directory is in place.
    pub(crate) fn layer_present(&self, chain: &ChainId) -> Result<bool> {
        Ok(self.metadata().layer(chain)?.is_some() && self.layer_diff_dir(chain).is_dir())
    }

    pub(crate) fn unpack_options() -> UnpackOptions {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
            apply_ownership: root,
            create_devices: root,
            max_bytes: None,
        }
    }

    /// Unpacks a (possibly compressed) layer stream into a fresh directory and, when its
    /// content is what was promised, moves it into place as `target.chain_id`. The stream is
    /// read to its end, so a reader that hashes the compressed bytes sees all of them.
    /// `before_commit` runs after unpacking and before the layer becomes visible (the
    /// caller verifies and commits the compressed blob there). Returns the diff ID, the size
    /// of the layer's tar stream and its size as Docker counts it (`UnpackStats::content`).
    pub(crate) fn unpack_layer(
        &self,
        compressed: impl Read + Send,
        compression: Compression,
        target: &LayerTarget<'_>,
        before_commit: impl FnOnce() -> Result<()>,
    ) -> Result<(DiffId, u64, u64)> {
        let tmp = self.layers_dir().join("tmp").join(format!(
            "{}-{:08x}",
            target.chain_id.digest().short(),
            rand::random::<u32>()
        ));
        let diff_dir = tmp.join("diff");
        fs_err::create_dir_all(&diff_dir).map_err(|e| ImageError::io(&diff_dir, e))?;
        let result = (|| {
            let decompressed = hull_layer::decompress(compressed, compression)
                .map_err(|e| ImageError::io(target.blob.to_string(), e))?;
            let mut hashing = HashingReader::new(decompressed);
            let stats = hull_layer::unpack(&mut hashing, &diff_dir, &Self::unpack_options())?;
            // Trailing bytes after the tar end-of-archive blocks belong to the digest too.
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|e| ImageError::io(target.blob.to_string(), e))?;
            let (diff, size) = hashing.finish();
            let diff = DiffId(diff);
            if let Some(expected) = target.expected_diff
                && expected != &diff
            {
                return Err(ImageError::DiffIdMismatch {
                    blob: target.blob.clone(),
                    expected: expected.to_string(),
                    actual: diff.to_string(),
                });
            }
            before_commit()?;
            sync_dir_tree(&tmp)?;
            let dest = self.layer_dir(target.chain_id);
            // std's rename, not fs-err's: the raw OS error is needed below (fs-err's wrapper
            // hides it), and the error built for the user names the path anyway.
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => {}
                // Another process finished the same layer first, or one killed before it
                // recorded the layer left it complete in place: keep that one.
                Err(e)
                    if dest.join("diff").is_dir()
                        && matches!(
                            e.raw_os_error(),
                            Some(libc_errno::EEXIST) | Some(libc_errno::ENOTEMPTY)
                        ) =>
                {
                    remove_tree(&tmp);
                }
                Err(e) => return Err(ImageError::io(&dest, e)),
            }
            sync_parent(&dest)?;
            self.metadata().put_layer(&LayerRecord {
                chain_id: target.chain_id.clone(),
                diff_id: diff.clone(),
                parent: target.parent.cloned(),
                size,
                content_size: Some(stats.content),
                state: LayerState::Committed,
            })?;
            if target.expected_diff.is_some() {
                self.metadata()
                    .record_blob_diff(target.blob, &diff, target.media_type)?;
            }
            Ok((diff, size, stats.content))
        })();
        if result.is_err() {
            remove_tree(&tmp);
        }
        result
    }

    /// Removes an unpacked layer's directory (GC, repair).
    pub(crate) fn remove_layer_dir(&self, chain: &ChainId) -> Result<()> {
        let dir = self.layer_dir(chain);
        if dir.exists() {
            let trash = self.layers_dir().join("tmp").join(format!(
                "rm-{}-{:08x}",
                chain.digest().short(),
                rand::random::<u32>()
            ));
            // Rename first so a half-deleted layer is never visible under its name.
            fs_err::rename(&dir, &trash).map_err(|e| ImageError::io(&dir, e))?;
            remove_tree(&trash);
        }
        Ok(())
    }

    /// Chain IDs whose directories exist under `layers/`.
    pub(crate) fn layer_dirs(&self) -> Result<Vec<ChainId>> {
        let dir = self.layers_dir();
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let entry = entry.map_err(|e| ImageError::io(&dir, e))?;
            let name = entry.file_name();
            if let Some(Ok(c)) = name
                .to_str()
                .map(|n| format!("sha256:{n}").parse::<ChainId>())
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Read-only overlay mount of an image's layers under `ROOT/mounts/<id>`; returns the path.
    /// Mounting twice returns the existing mount.
    pub fn mount(&self, id: &ImageId) -> Result<PathBuf> {
        let rec = self
            .metadata()
            .image(id)?
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        let target = self.root().join("mounts").join(id.digest().hex());
        if is_mountpoint(&target) {
            return Ok(target);
        }
        fs_err::create_dir_all(&target).map_err(|e| ImageError::io(&target, e))?;
        let mut lowers: Vec<PathBuf> = rec
            .layers
            .iter()
            .rev()
            .map(|c| self.layer_diff_dir(c))
            .collect();
        if lowers.is_empty() {
            return Err(ImageError::NoLayers(id.clone()));
        }
        if lowers.len() == 1 {
            // overlayfs needs two lower layers when there is no upper one; an empty directory
            // keeps a one-layer image on the same path as the others (a bind mount would show
            // the layer's whiteout devices instead of hiding them).
            let empty = self.layers_dir().join("empty");
            fs_err::create_dir_all(&empty).map_err(|e| ImageError::io(&empty, e))?;
            lowers.push(empty);
        }
        // Read-only (no upper directory), one `lowerdir+` per layer where the kernel has it.
        crate::snapshot::overlay::mount_overlay(&lowers, None, &target).map_err(|e| {
            ImageError::io(
                &target,
                std::io::Error::other(format!("mounting the image's layers: {e}")),
            )
        })?;
        Ok(target)
    }

    /// Undoes [`Store::mount`]; false when it was not mounted.
    pub fn unmount(&self, id: &ImageId) -> Result<bool> {
        let target = self.root().join("mounts").join(id.digest().hex());
        if !is_mountpoint(&target) {
            return Ok(false);
        }
        match rustix::mount::unmount(target.as_path(), rustix::mount::UnmountFlags::empty()) {
            Ok(()) => {}
            // Still in use (a process reading it, or one that was forked with a copy of this
            // mount table at a bad moment): detach it now; the kernel drops it when unused.
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(target.as_path(), rustix::mount::UnmountFlags::DETACH)
                    .map_err(|e| ImageError::io(&target, e.into()))?;
            }
            Err(e) => return Err(ImageError::io(&target, e.into())),
        }
        let _ = fs_err::remove_dir(&target);
        Ok(true)
    }

    /// `hull image export`: the image's flattened root filesystem as one tar stream.
    pub fn export(&self, id: &ImageId, out: &mut dyn io::Write) -> Result<u64> {
        let img = self.image(id)?;
        let mut readers: Vec<hull_layer::LayerSource> = Vec::new();
        for desc in &img.manifest.layers {
            let compression = Compression::from_media_type(&desc.media_type)
                .ok_or_else(|| ImageError::UnsupportedLayer(desc.media_type.clone()))?;
            let content = self.content().clone();
            let digest = desc.digest.clone();
            readers.push(Box::new(move || {
                let f = content
                    .open_blob(&digest)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                hull_layer::decompress(io::BufReader::with_capacity(1 << 20, f), compression)
            }));
        }
        Ok(hull_layer::export_flattened(readers, out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/plain\\"), "/plain\\");
    }

    #[test]
    fn root_is_a_mount_point_and_a_fresh_dir_is_not() {
        assert!(is_mountpoint(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(dir.path()));
    }
}

mod libc_errno {
    pub const EEXIST: i32 = 17;
    pub const ENOTEMPTY: i32 = 39;
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo` (a device-number comparison
/// misses bind mounts and mounts of the same filesystem).
fn is_mountpoint(path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| Path::new(&unescape_mountinfo(mount_point)) == path)
}

/// Undoes the octal escapes (`\040` for a space) of a mountinfo path.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Flushes a freshly unpacked tree to disk with one `syncfs` (cheaper than an fsync per file,
/// and it covers directory entries too).
pub(crate) fn sync_dir_tree(dir: &Path) -> Result<()> {
    let f = fs_err::File::open(dir).map_err(|e| ImageError::io(dir, e))?;
    rustix::fs::syncfs(&f).map_err(|e| ImageError::io(dir, e.into()))?;
    Ok(())
}

pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        let f = fs_err::File::open(parent).map_err(|e| ImageError::io(parent, e))?;
        f.sync_all().map_err(|e| ImageError::io(parent, e))?;
    }
    Ok(())
}

/// Best-effort recursive removal that also copes with read-only directories left by layers.
pub(crate) fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    // A layer may contain dirs without write permission (e.g. mode 0555): open them up.
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(md) = std::fs::symlink_metadata(&p)
            && md.is_dir()
        {
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(path);
}
