//! Writable snapshots for the builder: an overlay mount of a layer chain with a fresh upper
//! directory, and its commit as a new layer.
//!
//! Committing is cheap because the upper directory already is a layer in the store's format
//! (overlayfs whiteouts): it is written once as a tar into the content store (uncompressed, so
//! its digest is its diff ID, as `import` stores layers; `push` compresses) and then renamed
//! into `layers/<chain>/diff` as it is, with no unpacking.
//!
//! ```text
//! ROOT/snapshots/<id>/upper   the snapshot's changes
//! ROOT/snapshots/<id>/work    overlayfs' work directory
//! ROOT/snapshots/<id>/merged  the mount point
//! ```
//! A snapshot left by a killed process is unmounted and removed by `prune` and `system check
//! --repair` (see [`Store::remove_stale_snapshots`]).
//!
//! Limit: each layer directory goes to overlayfs with its own `lowerdir+` (Linux 6.8; older
//! kernels get the one-page `lowerdir=` string, about 40 layers), up to overlayfs' 500 lower
//! directories.

use std::io;
use std::path::{Path, PathBuf};

use hull_layer::DiffOptions;
use hull_metadata::{LayerRecord, LayerState, Lease, LeaseResource};
use hull_oci::{ChainId, DiffId, Digest, media_type};

use crate::error::{ImageError, Result};
use crate::layers::remove_tree;
use crate::store::Store;

mod overlay;

/// A writable overlay over a layer chain. Dropping it unmounts and removes it.
#[derive(Debug)]
pub struct Snapshot {
    /// The shared store lock, held while the snapshot exists: prune and repair (exclusive)
    /// wait for it, and then remove only snapshots no process holds.
    _lock: crate::store::StoreLock,
    dir: PathBuf,
    parent: Option<ChainId>,
    mounted: bool,
}

/// A layer made from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLayer {
    pub chain_id: ChainId,
    pub diff_id: DiffId,
    /// The uncompressed layer blob (its digest is the diff ID).
    pub blob: Digest,
    /// Bytes of the layer tar.
    pub size: u64,
}

impl Snapshot {
    /// The root filesystem to work in.
    pub fn path(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// The snapshot's own changes (overlayfs upper directory).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn parent(&self) -> Option<&ChainId> {
        self.parent.as_ref()
    }

    fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            let merged = self.path();
            rustix::mount::unmount(merged.as_path(), rustix::mount::UnmountFlags::empty())
                .or_else(|_| {
                    rustix::mount::unmount(merged.as_path(), rustix::mount::UnmountFlags::DETACH)
                })
                .map_err(|e| ImageError::io(&merged, e.into()))?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Snapshot {
    // Runs before the fields drop: the lock is released after the snapshot is gone.
    fn drop(&mut self) {
        let _ = self.unmount();
        remove_tree(&self.dir);
    }
}

impl Store {
    fn snapshots_dir(&self) -> PathBuf {
        self.root().join("snapshots")
    }

    /// Mounts a writable snapshot on top of the layer chain ending at `parent` (an empty root
    /// when `None`).
    pub fn prepare_snapshot(&self, parent: Option<&ChainId>) -> Result<Snapshot> {
        let mut lowers: Vec<PathBuf> = Vec::new();
        let mut cur = parent.cloned();
        while let Some(c) = cur {
            let rec = self
                .metadata()
                .layer(&c)?
                .ok_or_else(|| ImageError::Other(format!("layer {c} is not in the store")))?;
            lowers.push(self.layer_diff_dir(&c));
            cur = rec.parent;
        }
        if lowers.is_empty() {
            let empty = self.layers_dir().join("empty");
            fs_err::create_dir_all(&empty).map_err(|e| ImageError::io(&empty, e))?;
            lowers.push(empty);
        }
        let dir = self
            .snapshots_dir()
            .join(format!("{:016x}", rand::random::<u64>()));
        let mut snap = Snapshot {
            _lock: self.shared_lock()?,
            dir,
            parent: parent.cloned(),
            mounted: false,
        };
        for sub in ["upper", "work", "merged"] {
            let p = snap.dir.join(sub);
            fs_err::create_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        let merged = snap.path();
        let (upper, work) = (snap.upper(), snap.dir.join("work"));
        overlay::mount_overlay(
            &lowers,
            Some(overlay::Upper {
                upper: &upper,
                work: &work,
            }),
            &merged,
        )
        .map_err(|e| {
            ImageError::io(
                &merged,
                io::Error::other(format!("mounting an overlay snapshot: {e}")),
            )
        })?;
        snap.mounted = true;
        Ok(snap)
    }

    /// Turns a snapshot's changes into a layer on top of its parent, kept by `lease`; `None`
    /// when nothing changed. A layer already in the store with the same chain ID is reused.
    pub fn commit_snapshot(
        &self,
        mut snap: Snapshot,
        opts: &DiffOptions,
        lease: &Lease,
    ) -> Result<Option<CommittedLayer>> {
        snap.unmount()?;
        let upper = snap.upper();
        let changed = fs_err::read_dir(&upper)
            .map_err(|e| ImageError::io(&upper, e))?
            .next()
            .is_some();
        if !changed {
            return Ok(None);
        }
        let ingest = format!("snapshot-{:016x}", rand::random::<u64>());
        let mut writer = self.content().writer(&ingest, None)?;
        let size = hull_layer::write_layer_diff(&upper, &mut writer, opts)?;
        let (blob, _) = writer.commit_computed()?;
        lease.add(&LeaseResource::Blob(blob.clone()))?;
        let diff_id = DiffId(blob.clone());
        let chain_id = ChainId::compute(snap.parent.as_ref(), &diff_id);
        self.metadata()
            .record_blob_diff(&blob, &diff_id, media_type::OCI_LAYER)?;
        lease.add(&LeaseResource::Layer(chain_id.clone()))?;
        if !self.layer_present(&chain_id)? {
            self.adopt_layer_dir(&upper, &chain_id)?;
            self.metadata().put_layer(&LayerRecord {
                chain_id: chain_id.clone(),
                diff_id: diff_id.clone(),
                parent: snap.parent.clone(),
                size,
                state: LayerState::Committed,
            })?;
        }
        Ok(Some(CommittedLayer {
            chain_id,
            diff_id,
            blob,
            size,
        }))
    }

    /// Moves a finished upper directory into place as a layer's `diff`, durably.
    fn adopt_layer_dir(&self, upper: &Path, chain: &ChainId) -> Result<()> {
        let tmp = self.layers_dir().join("tmp").join(format!(
            "{}-{:08x}",
            chain.digest().short(),
            rand::random::<u32>()
        ));
        fs_err::create_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let diff = tmp.join("diff");
        fs_err::rename(upper, &diff).map_err(|e| ImageError::io(&diff, e))?;
        let synced = crate::layers::sync_dir_tree(&tmp);
        let dest = self.layer_dir(chain);
        let moved = synced.and_then(|()| match std::fs::rename(&tmp, &dest) {
            Ok(()) => crate::layers::sync_parent(&dest),
            // Made by another build meanwhile: keep that one.
            Err(_) if dest.join("diff").is_dir() => {
                remove_tree(&tmp);
                Ok(())
            }
            Err(e) => Err(ImageError::io(&dest, e)),
        });
        if moved.is_err() {
            remove_tree(&tmp);
        }
        moved
    }

    /// Unmounts and removes snapshots no live process is using (those a killed build left).
    /// Returns how many were removed. Runs under the exclusive store lock.
    pub(crate) fn remove_stale_snapshots(&self) -> Result<usize> {
        let dir = self.snapshots_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(ImageError::io(&dir, e)),
        };
        let mut n = 0;
        for e in entries {
            let e = e.map_err(|err| ImageError::io(&dir, err))?;
            let path = e.path();
            let merged = path.join("merged");
            let _ = rustix::mount::unmount(merged.as_path(), rustix::mount::UnmountFlags::DETACH);
            remove_tree(&path);
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_commit_as_layers_and_stack() {
        hull_test::require_root!();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store
            .metadata()
            .lease(std::time::Duration::from_secs(60))
            .unwrap();
        let opts = DiffOptions::default();

        let first = store.prepare_snapshot(None).unwrap();
        std::fs::write(first.path().join("a"), "a").unwrap();
        std::fs::create_dir(first.path().join("d")).unwrap();
        std::fs::write(first.path().join("d/x"), "x").unwrap();
        let l1 = store
            .commit_snapshot(first, &opts, &lease)
            .unwrap()
            .unwrap();
        assert_eq!(l1.chain_id.digest(), l1.diff_id.digest());

        let second = store.prepare_snapshot(Some(&l1.chain_id)).unwrap();
        assert_eq!(
            std::fs::read_to_string(second.path().join("d/x")).unwrap(),
            "x"
        );
        std::fs::remove_file(second.path().join("a")).unwrap();
        std::fs::write(second.path().join("b"), "b").unwrap();
        let l2 = store
            .commit_snapshot(second, &opts, &lease)
            .unwrap()
            .unwrap();
        assert_eq!(
            l2.chain_id,
            ChainId::compute(Some(&l1.chain_id), &l2.diff_id)
        );

        // the layer's blob is the tar of the change, whiteout included
        let mut names = Vec::new();
        let f = store.content().open_blob(&l2.blob).unwrap();
        for e in tar::Archive::new(f).entries().unwrap() {
            names.push(String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap());
        }
        assert_eq!(names, vec![".wh.a", "b"]);

        // the stack mounts as the merged view
        let third = store.prepare_snapshot(Some(&l2.chain_id)).unwrap();
        let mut seen: Vec<String> = std::fs::read_dir(third.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        seen.sort();
        assert_eq!(seen, vec!["b", "d"]);
        // nothing changed: no layer, and the snapshot is gone
        let snap_dir = third.dir.clone();
        assert_eq!(store.commit_snapshot(third, &opts, &lease).unwrap(), None);
        assert!(!snap_dir.exists());

        // the same change twice gives the same layer
        let fixed = DiffOptions {
            clamp_mtime: Some(1_000),
        };
        let mut layers = Vec::new();
        for _ in 0..2 {
            let s = store.prepare_snapshot(Some(&l1.chain_id)).unwrap();
            std::fs::remove_file(s.path().join("a")).unwrap();
            std::fs::write(s.path().join("b"), "b").unwrap();
            layers.push(store.commit_snapshot(s, &fixed, &lease).unwrap().unwrap());
        }
        assert_eq!(layers[0], layers[1]);
        let dropped = store.prepare_snapshot(None).unwrap();
        let dropped_dir = dropped.dir.clone();
        drop(dropped);
        assert!(!dropped_dir.exists(), "a dropped snapshot is removed");
    }

    /// Regression: the chain went to overlayfs in one `lowerdir=` option, capped at a page
    /// (about 40 layers).
    #[test]
    fn a_chain_of_sixty_layers_mounts() {
        hull_test::require_root!();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store
            .metadata()
            .lease(std::time::Duration::from_secs(60))
            .unwrap();
        let opts = DiffOptions::default();
        let mut parent: Option<ChainId> = None;
        for i in 0..60 {
            let s = store.prepare_snapshot(parent.as_ref()).unwrap();
            std::fs::write(s.path().join(format!("f{i}")), i.to_string()).unwrap();
            match i {
                10 => std::fs::write(s.path().join("victim"), "from layer 10").unwrap(),
                30 => std::fs::remove_file(s.path().join("victim")).unwrap(),
                _ => {}
            }
            let l = store.commit_snapshot(s, &opts, &lease).unwrap().unwrap();
            parent = Some(l.chain_id);
        }
        let top = store.prepare_snapshot(parent.as_ref()).unwrap();
        assert_eq!(
            std::fs::read_to_string(top.path().join("f59")).unwrap(),
            "59"
        );
        assert_eq!(std::fs::read_to_string(top.path().join("f0")).unwrap(), "0");
        assert!(!top.path().join("victim").exists());
        let n = std::fs::read_dir(top.path()).unwrap().count();
        assert_eq!(n, 60);
    }
}
