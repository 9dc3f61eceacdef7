//! Writable snapshots for the builder: a layer chain with a place to change it, and its
//! commit as a new layer.
//!
//! Two snapshotters make them ([`Snapshotter`]; `HULL_SNAPSHOTTER=overlay|copy|auto`):
//! - **overlay** mounts the chain's layer directories as overlayfs lower directories under a
//!   fresh upper directory. Committing is cheap because the upper directory already is a layer
//!   in the store's format (overlayfs whiteouts): it is written once as a tar into the content
//!   store (uncompressed, so its digest is its diff ID, as `import` stores layers; `push`
//!   compresses) and then renamed into `layers/<chain>/diff` as it is, with no unpacking.
//! - **copy**, where overlayfs is unavailable (no module, an upper filesystem it cannot use,
//!   no privilege to mount): `merged` is a plain directory the chain is applied to bottom-up
//!   (whiteouts and opaque directories honoured, data reflinked where the filesystem can),
//!   and every path's inode number, change time and type are recorded. Committing walks the
//!   tree against that record and builds the upper directory overlayfs would have left for the
//!   same changes (changed entries with their ancestor directories as copy-up makes them,
//!   whiteouts for what is gone, opaque directories for directories made anew), so the rest of
//!   the commit is the same code and gives the same diff ID as overlay mode.
//!
//!   Inode number and ctime suffice to see a change: ctime cannot be set from userspace and
//!   moves on every change of data or metadata (a rename included), and an inode number is
//!   not reused while the recorded file still exists. A file removed and made again may get
//!   the old number back (ext4 and xfs reuse at once), but then has a new ctime; for
//!   directories, where overlayfs tells the two apart (opaque), the inode generation is
//!   compared too. Preparing waits out one clock tick so that no change falls in the tick the
//!   copy was recorded in. The record lives in memory, about 150
//!   bytes a path (a 100 000-file image: about 15 MB); a killed process's snapshot has no
//!   record to lose, it is removed like any stale snapshot. Files with several names in the
//!   chain get one copy per name, as overlayfs copies up only the name written through (links a
//!   step makes are kept). What it cannot see as overlayfs does: a file only opened for writing
//!   (overlayfs copies it up unchanged) is not in the layer.
//!
//! `auto` (the default) tries overlay and falls back to copy for the store, once, with a
//! warning saying why, when the mount fails in a way that means overlay is not available here
//! (ENODEV, EINVAL, EPERM, EOPNOTSUPP) or the chain is deeper than overlayfs allows.
//!
//! ```text
//! ROOT/snapshots/<id>/upper   the snapshot's changes (copy mode: built at commit)
//! ROOT/snapshots/<id>/work    overlayfs' work directory (overlay mode)
//! ROOT/snapshots/<id>/merged  the mount point (copy mode: the tree itself)
//! ```
//! A snapshot left by a killed process is unmounted and removed by `prune` and `system check
//! --repair` (see [`Store::remove_stale_snapshots`]).
//!
//! Limit: overlay mode passes each layer with its own `lowerdir+` (Linux 6.8; older kernels get
//! the one-page `lowerdir=` string, about 40 layers), up to overlayfs' 500 lower directories;
//! copy mode has no limit on the chain but copies the whole tree for every snapshot.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hull_layer::DiffOptions;
use hull_metadata::{LayerRecord, LayerState, Lease, LeaseResource};
use hull_oci::{ChainId, DiffId, Digest, media_type};
use rustix::io::Errno;

use crate::error::{ImageError, Result};
use crate::layers::remove_tree;
use crate::store::Store;

mod copy;
pub(crate) mod overlay;

/// How snapshots are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// Overlay where it works, else copy (decided once per store and process).
    Auto,
    /// An overlayfs mount; failing to mount is an error.
    Overlay,
    /// A copy of the chain, diffed at commit.
    Copy,
}

impl Snapshotter {
    /// The environment variable that chooses: `overlay`, `copy` or `auto` (also when unset).
    pub const ENV: &str = "HULL_SNAPSHOTTER";

    /// The snapshotter `HULL_SNAPSHOTTER` asks for.
    pub fn from_env() -> Result<Snapshotter> {
        std::env::var_os(Self::ENV).map_or(Ok(Snapshotter::Auto), |v| Self::parse(&v))
    }

    /// A value of `HULL_SNAPSHOTTER`.
    pub fn parse(value: &std::ffi::OsStr) -> Result<Snapshotter> {
        match value.to_str() {
            Some("" | "auto") => Ok(Snapshotter::Auto),
            Some("overlay") => Ok(Snapshotter::Overlay),
            Some("copy") => Ok(Snapshotter::Copy),
            _ => Err(ImageError::Other(format!(
                "{}={}: unknown snapshotter (use overlay, copy or auto)",
                Self::ENV,
                value.to_string_lossy()
            ))),
        }
    }
}

/// Stores (by root) whose snapshots `auto` makes by copying, overlay having failed there.
static COPY_STORES: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn auto_copies(root: &Path) -> bool {
    COPY_STORES
        .lock()
        .map(|m| m.as_ref().is_some_and(|m| m.contains(root)))
        .unwrap_or(false)
}

/// Records that `root` copies from now on; true the first time.
fn set_auto_copies(root: &Path) -> bool {
    match COPY_STORES.lock() {
        Ok(mut m) => m
            .get_or_insert_with(HashSet::new)
            .insert(root.to_path_buf()),
        Err(_) => false,
    }
}

/// Mount failures that mean overlayfs cannot be used here at all: no overlay filesystem
/// (ENODEV), an upper filesystem it refuses (EINVAL, EOPNOTSUPP), no privilege (EPERM).
fn overlay_unavailable(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::NODEV | Errno::INVAL | Errno::PERM | Errno::OPNOTSUPP
    )
}

/// A writable view of a layer chain. Dropping it unmounts and removes it.
#[derive(Debug)]
pub struct Snapshot {
    /// The shared store lock, held while the snapshot exists: prune and repair (exclusive)
    /// wait for it, and then remove only snapshots no process holds.
    _lock: crate::store::StoreLock,
    dir: PathBuf,
    parent: Option<ChainId>,
    backing: Backing,
}

#[derive(Debug)]
enum Backing {
    Overlay { mounted: bool },
    Copy(copy::Record),
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

    /// The snapshot's own changes (overlayfs upper directory; in copy mode only filled by
    /// the commit).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn parent(&self) -> Option<&ChainId> {
        self.parent.as_ref()
    }

    /// Whether the snapshot is an overlay mount rather than a copy.
    pub fn is_overlay(&self) -> bool {
        matches!(self.backing, Backing::Overlay { .. })
    }

    fn unmount(&mut self) -> Result<()> {
        if let Backing::Overlay { mounted } = &mut self.backing
            && *mounted
        {
            let merged = self.dir.join("merged");
            rustix::mount::unmount(merged.as_path(), rustix::mount::UnmountFlags::empty())
                .or_else(|_| {
                    rustix::mount::unmount(merged.as_path(), rustix::mount::UnmountFlags::DETACH)
                })
                .map_err(|e| ImageError::io(&merged, e.into()))?;
            *mounted = false;
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

    /// A writable snapshot on top of the layer chain ending at `parent` (an empty root when
    /// `None`), made by the snapshotter `HULL_SNAPSHOTTER` chooses.
    pub fn prepare_snapshot(&self, parent: Option<&ChainId>) -> Result<Snapshot> {
        self.prepare_snapshot_with(parent, Snapshotter::from_env()?)
    }

    /// [`Store::prepare_snapshot`] with the snapshotter given.
    pub fn prepare_snapshot_with(
        &self,
        parent: Option<&ChainId>,
        snapshotter: Snapshotter,
    ) -> Result<Snapshot> {
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
        let deep = lowers.len() > overlay::MAX_LOWERS;
        let use_copy = match snapshotter {
            Snapshotter::Copy => true,
            Snapshotter::Overlay if deep => {
                return Err(ImageError::Other(format!(
                    "layer chain of {} layers is deeper than overlayfs allows ({} lower \
                     directories); HULL_SNAPSHOTTER=copy has no such limit",
                    lowers.len(),
                    overlay::MAX_LOWERS
                )));
            }
            Snapshotter::Overlay => false,
            Snapshotter::Auto => {
                if deep {
                    tracing::info!(
                        layers = lowers.len(),
                        "layer chain deeper than overlayfs allows: copying it for the snapshot"
                    );
                }
                deep || auto_copies(self.root())
            }
        };
        let dir = self
            .snapshots_dir()
            .join(format!("{:016x}", rand::random::<u64>()));
        let mut snap = Snapshot {
            _lock: self.shared_lock()?,
            dir,
            parent: parent.cloned(),
            backing: Backing::Overlay { mounted: false },
        };
        for sub in ["upper", "merged"] {
            let p = snap.dir.join(sub);
            fs_err::create_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        if !use_copy {
            match self.mount_snapshot(&snap, &mut lowers) {
                Ok(()) => {
                    snap.backing = Backing::Overlay { mounted: true };
                    return Ok(snap);
                }
                Err((errno, e))
                    if snapshotter == Snapshotter::Auto && overlay_unavailable(errno) =>
                {
                    if set_auto_copies(self.root()) {
                        tracing::warn!(
                            store = %self.root().display(),
                            "overlay snapshots are unavailable ({e}); copying layers for build \
                             steps instead (HULL_SNAPSHOTTER=copy|overlay chooses)"
                        );
                    }
                    remove_tree(&snap.dir.join("work"));
                    lowers.retain(|p| !p.ends_with("empty"));
                }
                Err((_, e)) => return Err(e),
            }
        }
        lowers.reverse();
        let record = copy::prepare(&lowers, &snap.path())?;
        snap.backing = Backing::Copy(record);
        Ok(snap)
    }

    /// Mounts the overlay of `lowers` (topmost first) for `snap`; the errno with the error
    /// when it fails.
    fn mount_snapshot(
        &self,
        snap: &Snapshot,
        lowers: &mut Vec<PathBuf>,
    ) -> std::result::Result<(), (Errno, ImageError)> {
        let io_err = |p: &Path, e: io::Error| {
            let errno = e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error);
            (errno, ImageError::io(p, e))
        };
        if lowers.is_empty() {
            let empty = self.layers_dir().join("empty");
            fs_err::create_dir_all(&empty).map_err(|e| io_err(&empty, e))?;
            lowers.push(empty);
        }
        let work = snap.dir.join("work");
        fs_err::create_dir_all(&work).map_err(|e| io_err(&work, e))?;
        let (merged, upper) = (snap.path(), snap.upper());
        overlay::mount_overlay(
            lowers,
            Some(overlay::Upper {
                upper: &upper,
                work: &work,
            }),
            &merged,
        )
        .map_err(|e| {
            (
                e.errno,
                ImageError::io(
                    &merged,
                    io::Error::other(format!("mounting an overlay snapshot: {e}")),
                ),
            )
        })
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
        if let Backing::Copy(record) = &snap.backing {
            copy::diff(&snap.path(), record, &upper)?;
        }
        let changed = fs_err::read_dir(&upper)
            .map_err(|e| ImageError::io(&upper, e))?
            .next()
            .is_some();
        if !changed {
            return Ok(None);
        }
        let ingest = format!("snapshot-{:016x}", rand::random::<u64>());
        let mut writer = self.content().writer(&ingest, None)?;
        let sizes = hull_layer::write_layer_diff(&upper, &mut writer, opts)?;
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
                size: sizes.tar,
                content_size: Some(sizes.content),
                state: LayerState::Committed,
            })?;
        }
        Ok(Some(CommittedLayer {
            chain_id,
            diff_id,
            blob,
            size: sizes.tar,
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
        let (_dir, store, lease) = store();
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
            owners: None,
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
        let (_dir, store, lease) = store();
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

    fn store() -> (tempfile::TempDir, Store, Lease) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store
            .metadata()
            .lease(std::time::Duration::from_secs(60))
            .unwrap();
        (dir, store, lease)
    }

    /// Names, types, modes and owners of a layer blob's entries.
    fn entries(store: &Store, blob: &Digest) -> Vec<String> {
        let f = store.content().open_blob(blob).unwrap();
        let mut out = Vec::new();
        for e in tar::Archive::new(f).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            out.push(format!(
                "{} {:?} {:o} {}:{} {:?}",
                String::from_utf8_lossy(&e.path_bytes()),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            ));
        }
        out
    }

    /// The parent layer the change sequence works on.
    fn parent_layer(store: &Store, lease: &Lease, mode: Snapshotter) -> CommittedLayer {
        use std::os::unix::fs::PermissionsExt;
        let s = store.prepare_snapshot_with(None, mode).unwrap();
        let p = s.path();
        for d in ["d/keep", "tree/sub", "re", "deep/a/b", "ro"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        for f in [
            "keep",
            "mod",
            "chm",
            "del",
            "mv_src",
            "hl_src",
            "tree/y",
            "tree/sub/x",
            "re/old",
            "deep/a/b/c",
            "d/keep/k",
            "ro/f",
        ] {
            std::fs::write(p.join(f), format!("{f}\n")).unwrap();
        }
        std::fs::set_permissions(p.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        for pair in ["pair", "pair2"] {
            std::fs::write(p.join(format!("{pair}_a")), pair).unwrap();
            std::fs::hard_link(p.join(format!("{pair}_a")), p.join(format!("{pair}_b"))).unwrap();
        }
        std::os::unix::fs::chown(p.join("d/keep/k"), Some(1000), Some(1000)).unwrap();
        store.commit_snapshot(s, &CLAMP, lease).unwrap().unwrap()
    }

    const CLAMP: DiffOptions = DiffOptions {
        clamp_mtime: Some(1_000),
        owners: None,
    };

    /// One of each kind of change a build step makes.
    fn change(root: &Path) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(root.join("new"), "new\n").unwrap();
        std::fs::write(root.join("d/newfile"), "new in an old dir\n").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("mod"))
            .unwrap();
        f.write_all(b"more\n").unwrap();
        drop(f);
        std::fs::write(root.join("deep/a/b/c"), "rewritten\n").unwrap();
        std::fs::set_permissions(root.join("chm"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(root.join("del")).unwrap();
        std::fs::remove_dir_all(root.join("tree")).unwrap();
        std::fs::remove_dir_all(root.join("re")).unwrap();
        std::fs::create_dir(root.join("re")).unwrap();
        std::fs::write(root.join("re/new"), "again\n").unwrap();
        std::fs::rename(root.join("mv_src"), root.join("d/mv_dst")).unwrap();
        std::os::unix::fs::symlink("keep", root.join("link")).unwrap();
        std::fs::hard_link(root.join("hl_src"), root.join("hl_new")).unwrap();
        std::fs::create_dir_all(root.join("made/sub")).unwrap();
        std::fs::write(root.join("made/sub/f"), "f\n").unwrap();
        // Through one name of a file linked in the parent; and replaced by a rename.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("pair_a"))
            .unwrap();
        f.write_all(b"more\n").unwrap();
        drop(f);
        std::fs::write(root.join("pair2.tmp"), "replaced").unwrap();
        std::fs::rename(root.join("pair2.tmp"), root.join("pair2_a")).unwrap();
        // A file made and removed again leaves nothing.
        std::fs::write(root.join("tmp"), "t").unwrap();
        std::fs::remove_file(root.join("tmp")).unwrap();
    }

    #[test]
    fn copy_snapshots_commit_the_same_layer_as_overlay_snapshots() {
        hull_test::require_root!();
        let (_d, store, lease) = store();
        let parent = parent_layer(&store, &lease, Snapshotter::Overlay);
        let mut layers = Vec::new();
        for mode in [Snapshotter::Overlay, Snapshotter::Copy] {
            let s = store
                .prepare_snapshot_with(Some(&parent.chain_id), mode)
                .unwrap();
            assert_eq!(s.is_overlay(), mode == Snapshotter::Overlay);
            assert_eq!(
                std::fs::read_to_string(s.path().join("deep/a/b/c")).unwrap(),
                "deep/a/b/c\n"
            );
            change(&s.path());
            layers.push(store.commit_snapshot(s, &CLAMP, &lease).unwrap().unwrap());
        }
        let (overlay, copied) = (&layers[0], &layers[1]);
        let listed = entries(&store, &overlay.blob);
        assert_eq!(listed, entries(&store, &copied.blob));
        assert_eq!(overlay.diff_id, copied.diff_id, "{listed:#?}");
        let names: Vec<&str> = listed
            .iter()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for want in [
            ".wh.del",
            ".wh.mv_src",
            ".wh.tree",
            "chm",
            "d/mv_dst",
            "d/newfile",
            "deep/a/b/c",
            "hl_new",
            "hl_src",
            "link",
            "made/sub/f",
            "mod",
            "new",
            "re/.wh..wh..opq",
            "re/new",
            "pair_a",
            "pair2_a",
        ] {
            assert!(names.contains(&want), "{want} missing from {listed:#?}");
        }
        for unchanged in ["keep", "d/keep", "re/old", "ro", "tmp", "pair_b", "pair2_b"] {
            assert!(!names.contains(&unchanged), "{unchanged} in {listed:#?}");
        }

        // Both read back the same, in either mode.
        let views: Vec<Snapshot> = [Snapshotter::Overlay, Snapshotter::Copy]
            .into_iter()
            .map(|m| {
                store
                    .prepare_snapshot_with(Some(&copied.chain_id), m)
                    .unwrap()
            })
            .collect();
        for v in &views {
            let p = v.path();
            assert_eq!(
                std::fs::read_to_string(p.join("mod")).unwrap(),
                "mod\nmore\n"
            );
            assert!(!p.join("tree").exists() && !p.join("re/old").exists());
            assert_eq!(
                std::fs::read_link(p.join("link")).unwrap(),
                Path::new("keep")
            );
            use std::os::unix::fs::MetadataExt;
            let ro = std::fs::metadata(p.join("ro")).unwrap();
            assert_eq!(ro.mode() & 0o7777, 0o555);
            let k = std::fs::metadata(p.join("d/keep/k")).unwrap();
            assert_eq!((k.uid(), k.gid()), (1000, 1000));
            let (a, b) = (
                std::fs::metadata(p.join("hl_src")).unwrap(),
                std::fs::metadata(p.join("hl_new")).unwrap(),
            );
            // overlayfs shows one lower inode under both names; the copy has one per name
            assert_eq!(a.ino() == b.ino(), v.is_overlay(), "hl_src and hl_new");
        }

        // Nothing changed: no layer.
        let s = store
            .prepare_snapshot_with(Some(&copied.chain_id), Snapshotter::Copy)
            .unwrap();
        assert!(!s.is_overlay());
        assert_eq!(store.commit_snapshot(s, &CLAMP, &lease).unwrap(), None);
    }

    #[test]
    fn copy_snapshots_keep_metadata_and_drop_overlay_markers() {
        hull_test::require_root!();
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let (_d, store, lease) = store();
        let s = store
            .prepare_snapshot_with(None, Snapshotter::Copy)
            .unwrap();
        let p = s.path();
        std::fs::create_dir(p.join("opq")).unwrap();
        std::fs::write(p.join("opq/old"), "old").unwrap();
        std::fs::write(p.join("gone"), "x").unwrap();
        std::fs::write(p.join("suid"), "x").unwrap();
        std::fs::set_permissions(p.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        rustix::fs::setxattr(
            p.join("suid").as_path(),
            "user.note",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("null").as_path(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        let l1 = store.commit_snapshot(s, &CLAMP, &lease).unwrap().unwrap();
        let s = store
            .prepare_snapshot_with(Some(&l1.chain_id), Snapshotter::Copy)
            .unwrap();
        std::fs::remove_file(s.path().join("gone")).unwrap();
        std::fs::remove_dir_all(s.path().join("opq")).unwrap();
        std::fs::create_dir(s.path().join("opq")).unwrap();
        std::fs::write(s.path().join("opq/new"), "new").unwrap();
        let l2 = store.commit_snapshot(s, &CLAMP, &lease).unwrap().unwrap();

        let v = store
            .prepare_snapshot_with(Some(&l2.chain_id), Snapshotter::Copy)
            .unwrap();
        let p = v.path();
        let mut seen: Vec<String> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        seen.sort();
        assert_eq!(seen, ["null", "opq", "suid"], "no whiteout in the tree");
        assert_eq!(
            std::fs::read_dir(p.join("opq")).unwrap().count(),
            1,
            "the opaque directory hides the old entries"
        );
        let mut v8 = [0u8; 8];
        assert!(
            rustix::fs::lgetxattr(p.join("opq").as_path(), "trusted.overlay.opaque", &mut v8)
                .is_err(),
            "overlay xattrs stay out of the tree"
        );
        let n = rustix::fs::lgetxattr(p.join("suid").as_path(), "user.note", &mut v8).unwrap();
        assert_eq!(&v8[..n], b"kept");
        let md = std::fs::metadata(p.join("suid")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o4755);
        let null = std::fs::symlink_metadata(p.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        let orig = std::fs::metadata(store.layer_diff_dir(&l1.chain_id).join("suid")).unwrap();
        assert_eq!(
            (md.mtime(), md.mtime_nsec()),
            (orig.mtime(), orig.mtime_nsec()),
            "times to the nanosecond"
        );
    }

    #[test]
    fn a_chain_of_fifty_layers_in_copy_mode() {
        hull_test::require_root!();
        let (_d, store, lease) = store();
        let mut parent: Option<ChainId> = None;
        for i in 0..50 {
            let s = store
                .prepare_snapshot_with(parent.as_ref(), Snapshotter::Copy)
                .unwrap();
            std::fs::write(s.path().join(format!("f{i}")), i.to_string()).unwrap();
            match i {
                10 => std::fs::write(s.path().join("victim"), "from layer 10").unwrap(),
                30 => std::fs::remove_file(s.path().join("victim")).unwrap(),
                _ => {}
            }
            let l = store.commit_snapshot(s, &CLAMP, &lease).unwrap().unwrap();
            parent = Some(l.chain_id);
        }
        for mode in [Snapshotter::Copy, Snapshotter::Overlay] {
            let top = store.prepare_snapshot_with(parent.as_ref(), mode).unwrap();
            assert_eq!(
                std::fs::read_to_string(top.path().join("f49")).unwrap(),
                "49"
            );
            assert!(!top.path().join("victim").exists());
            assert_eq!(std::fs::read_dir(top.path()).unwrap().count(), 50);
        }
    }

    #[test]
    fn the_snapshotter_variable_names_itself_when_wrong() {
        use std::ffi::OsStr;
        assert_eq!(
            Snapshotter::parse(OsStr::new("copy")).unwrap(),
            Snapshotter::Copy
        );
        assert_eq!(
            Snapshotter::parse(OsStr::new("")).unwrap(),
            Snapshotter::Auto
        );
        let e = Snapshotter::parse(OsStr::new("zfs"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "HULL_SNAPSHOTTER=zfs: unknown snapshotter (use overlay, copy or auto)"
        );
        // auto falls back on what means "no overlay here", not on any failure
        assert!(overlay_unavailable(Errno::NODEV) && overlay_unavailable(Errno::PERM));
        assert!(!overlay_unavailable(Errno::NOENT) && !overlay_unavailable(Errno::NOSPC));
    }

    #[test]
    fn auto_copies_where_overlay_refuses_the_upper_filesystem() {
        hull_test::require_root!();
        // overlayfs refuses another overlayfs as its upper filesystem (EINVAL).
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
            }
        }
        let outer = tempfile::tempdir().unwrap();
        for d in ["l", "u", "w", "m"] {
            std::fs::create_dir(outer.path().join(d)).unwrap();
        }
        let lowers = [outer.path().join("l")];
        let m = outer.path().join("m");
        overlay::mount_overlay(
            &lowers,
            Some(overlay::Upper {
                upper: &outer.path().join("u"),
                work: &outer.path().join("w"),
            }),
            &m,
        )
        .unwrap();
        let _mounted = Unmount(m.clone());
        let store = Store::open(&m.join("store")).unwrap();
        let lease = store
            .metadata()
            .lease(std::time::Duration::from_secs(60))
            .unwrap();

        let e = store
            .prepare_snapshot_with(None, Snapshotter::Overlay)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounting an overlay snapshot"), "{e}");
        // what the kernel logged on the filesystem context, not only EINVAL
        assert!(e.contains("not supported as upperdir"), "{e}");
        for _ in 0..2 {
            let s = store
                .prepare_snapshot_with(None, Snapshotter::Auto)
                .unwrap();
            assert!(!s.is_overlay());
            std::fs::write(s.path().join("f"), "f").unwrap();
            let l = store.commit_snapshot(s, &CLAMP, &lease).unwrap().unwrap();
            assert_eq!(entries(&store, &l.blob), ["f Regular 644 0:0 None"]);
        }
        assert!(auto_copies(store.root()));
    }
}
