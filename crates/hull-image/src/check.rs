//! Accounting and repair: `system df`, `image prune` (with GC), `system check [--repair]`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hull_metadata::mark_and_sweep;
use hull_oci::{ChainId, Digest, ImageId};

use crate::error::Result;
use crate::query::RemoveEvent;
use crate::store::Store;

/// Ingests untouched for this long are abandoned (a live pull writes continuously).
const INGEST_GRACE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub deleted: Vec<RemoveEvent>,
    /// Bytes freed on disk (blobs, unpacked layers, abandoned downloads).
    pub reclaimed: u64,
}

#[derive(Debug, Clone)]
pub struct ImageUsage {
    pub id: ImageId,
    pub tags: Vec<String>,
    /// Bytes of blobs and unpacked layers this image uses.
    pub size: u64,
    /// Of `size`, bytes also used by other images.
    pub shared: u64,
    /// Of `size`, bytes only this image uses (freed when it is removed).
    pub unique: u64,
    pub dangling: bool,
}

/// Where every byte of the store is. `images_bytes + unreferenced_bytes + ingest_bytes +
/// metadata_bytes` is the store's size on disk.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub images: Vec<ImageUsage>,
    /// Blobs and layers used by at least one image, counted once.
    pub images_bytes: u64,
    /// Of `images_bytes`, what `image prune -a` would free.
    pub images_reclaimable: u64,
    /// Of `images_bytes`, what `image prune` (dangling only) would free.
    pub dangling_reclaimable: u64,
    /// Blobs and layers no image uses (left by interrupted work; `image prune` frees them).
    pub unreferenced_bytes: u64,
    /// Partial downloads kept for resuming.
    pub ingest_bytes: u64,
    /// The metadata database.
    pub metadata_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub blobs_checked: usize,
    pub layers_checked: usize,
    pub images_checked: usize,
    /// One line per problem found (the store is inconsistent).
    pub problems: Vec<String>,
    /// Leftovers of interrupted work that are harmless (the next pull reuses them, `image
    /// prune` removes them): unrecorded layer directories, interrupted unpacks, partial downloads.
    pub notes: Vec<String>,
    /// One line per repair made (with `--repair`).
    pub repaired: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Disk usage of a directory tree (allocated blocks, hard links counted once).
fn tree_usage(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = BTreeSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

impl Store {
    fn layer_usage(&self, chain: &ChainId) -> u64 {
        tree_usage(&self.layer_dir(chain))
    }

    /// `hull system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let _lock = self.shared_lock()?;
        let md = self.metadata();
        let blob_sizes: BTreeMap<Digest, u64> = self.content().list()?.into_iter().collect();
        let layer_dirs: BTreeSet<ChainId> = self.layer_dirs()?.into_iter().collect();
        let layer_sizes: BTreeMap<ChainId, u64> = layer_dirs
            .iter()
            .map(|c| (c.clone(), self.layer_usage(c)))
            .collect();
        let images = md.images()?;
        // How many images use each blob / layer.
        let mut blob_users: BTreeMap<Digest, usize> = BTreeMap::new();
        let mut layer_users: BTreeMap<ChainId, usize> = BTreeMap::new();
        for img in &images {
            for b in img.blobs.iter().collect::<BTreeSet<_>>() {
                *blob_users.entry(b.clone()).or_default() += 1;
            }
            for l in img.layers.iter().collect::<BTreeSet<_>>() {
                *layer_users.entry(l.clone()).or_default() += 1;
            }
        }
        let mut usage = DiskUsage::default();
        for img in &images {
            let tags: Vec<String> = md
                .tags_of(&img.id)?
                .iter()
                .map(|t| format!("{}:{}", t.familiar_name(), t.tag().unwrap_or("latest")))
                .collect();
            let mut size = 0;
            let mut shared = 0;
            for b in img.blobs.iter().collect::<BTreeSet<_>>() {
                let s = blob_sizes.get(b).copied().unwrap_or(0);
                size += s;
                if blob_users.get(b).copied().unwrap_or(0) > 1 {
                    shared += s;
                }
            }
            for l in img.layers.iter().collect::<BTreeSet<_>>() {
                let s = layer_sizes.get(l).copied().unwrap_or(0);
                size += s;
                if layer_users.get(l).copied().unwrap_or(0) > 1 {
                    shared += s;
                }
            }
            let dangling = tags.is_empty() && md.repo_digests(&img.id)?.is_empty();
            if dangling {
                usage.dangling_reclaimable += size - shared;
            }
            usage.images.push(ImageUsage {
                id: img.id.clone(),
                tags,
                size,
                shared,
                unique: size - shared,
                dangling,
            });
        }
        for (b, s) in &blob_sizes {
            if blob_users.contains_key(b) {
                usage.images_bytes += s;
            } else {
                usage.unreferenced_bytes += s;
            }
        }
        for (l, s) in &layer_sizes {
            if layer_users.contains_key(l) {
                usage.images_bytes += s;
            } else {
                usage.unreferenced_bytes += s;
            }
        }
        // With no containers yet, every image is unused: `prune -a` frees them all.
        usage.images_reclaimable = usage.images_bytes;
        usage.ingest_bytes = self.content().ingests()?.iter().map(|i| i.offset).sum();
        usage.unreferenced_bytes += tree_usage(&self.layers_dir().join("tmp"));
        usage.metadata_bytes = ["metadata.db", "metadata.db-wal", "metadata.db-shm"]
            .iter()
            .filter_map(|f| std::fs::metadata(self.root().join(f)).ok())
            .map(|m| m.len())
            .sum();
        Ok(usage)
    }

    /// `hull image prune`: removes dangling images (all images with `all`), then collects
    /// garbage.
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        let _lock = self.exclusive_lock()?;
        let md = self.metadata();
        let mut report = PruneReport::default();
        for img in md.images()? {
            let tagged = !md.tags_of(&img.id)?.is_empty();
            let has_digest = !md.repo_digests(&img.id)?.is_empty();
            if all || (!tagged && !has_digest) {
                for t in md.tags_of(&img.id)? {
                    report.deleted.push(RemoveEvent::Untagged(format!(
                        "{}:{}",
                        t.familiar_name(),
                        t.tag().unwrap_or("latest")
                    )));
                }
                for (repo, d) in md.repo_digests(&img.id)? {
                    report
                        .deleted
                        .push(RemoveEvent::Untagged(format!("{repo}@{d}")));
                }
                md.delete_image(&img.id)?;
                report.deleted.push(RemoveEvent::Deleted(img.id.clone()));
            }
        }
        report.reclaimed = self.collect_garbage_locked()?;
        Ok(report)
    }

    /// Deletes blobs and layers nothing references; returns bytes freed. Caller holds the
    /// exclusive lock.
    fn collect_garbage_locked(&self) -> Result<u64> {
        let md = self.metadata();
        md.expire_leases()?;
        let roots = md.gc_roots()?;
        let blobs = self.content().list()?;
        let sizes: BTreeMap<Digest, u64> = blobs.iter().cloned().collect();
        let mut present_layers: BTreeSet<ChainId> = self.layer_dirs()?.into_iter().collect();
        present_layers.extend(md.layers()?.into_iter().map(|l| l.chain_id));
        let plan = mark_and_sweep(&roots, blobs.into_iter().map(|(d, _)| d), present_layers);
        let mut freed = 0;
        for b in &plan.blobs {
            if self.content().delete(b)? {
                freed += sizes.get(b).copied().unwrap_or(0);
            }
        }
        for l in &plan.layers {
            freed += self.layer_usage(l);
            md.delete_layer(l)?;
            self.remove_layer_dir(l)?;
        }
        let tmp = self.layers_dir().join("tmp");
        freed += tree_usage(&tmp).saturating_sub(tree_usage_dir_only(&tmp));
        self.clear_layer_tmp()?;
        self.remove_stale_snapshots()?;
        let before: u64 = self.content().ingests()?.iter().map(|i| i.offset).sum();
        self.content().prune_ingests(INGEST_GRACE)?;
        let after: u64 = self.content().ingests()?.iter().map(|i| i.offset).sum();
        freed += before.saturating_sub(after);
        Ok(freed)
    }

    /// Removes everything under `layers/tmp` (interrupted unpacks). Caller holds the
    /// exclusive lock, so no unpack is running.
    fn clear_layer_tmp(&self) -> Result<Vec<String>> {
        let tmp = self.layers_dir().join("tmp");
        let mut removed = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                crate::layers::remove_tree(&e.path());
                removed.push(e.path().display().to_string());
            }
        }
        Ok(removed)
    }

    /// `hull system check`: re-hashes every blob, checks every record's references and every
    /// layer's presence. With `repair`, removes what is broken so that the next pull restores it.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let _lock = if repair {
            self.exclusive_lock()?
        } else {
            self.shared_lock()?
        };
        let md = self.metadata();
        let mut report = CheckReport::default();
        let blobs = self.content().list()?;
        let mut good_blobs = BTreeSet::new();
        for (d, _) in &blobs {
            report.blobs_checked += 1;
            match self.content().verify(d) {
                Ok(()) => {
                    good_blobs.insert(d.clone());
                }
                Err(e) => {
                    report.problems.push(format!("blob {d}: {e}"));
                    if repair && self.content().delete(d)? {
                        report.repaired.push(format!("removed corrupt blob {d}"));
                    }
                }
            }
        }
        for stray in self.content().list_strays()? {
            report
                .problems
                .push(format!("stray file in content store: {}", stray.display()));
            if repair && std::fs::remove_file(&stray).is_ok() {
                report.repaired.push(format!("removed {}", stray.display()));
            }
        }
        let records: BTreeMap<ChainId, hull_metadata::LayerRecord> = md
            .layers()?
            .into_iter()
            .map(|l| (l.chain_id.clone(), l))
            .collect();
        let dirs: BTreeSet<ChainId> = self.layer_dirs()?.into_iter().collect();
        for (c, rec) in &records {
            report.layers_checked += 1;
            if !self.layer_diff_dir(c).is_dir() {
                report
                    .problems
                    .push(format!("layer {c}: recorded but its directory is missing"));
                if repair {
                    md.delete_layer(c)?;
                    report.repaired.push(format!("forgot layer {c}"));
                }
            }
            if let Some(p) = &rec.parent
                && !records.contains_key(p)
            {
                // Layers of one pull are unpacked in parallel and recorded as each completes,
                // so a pull killed mid-way can leave a child without its parent; images are
                // only recorded once their whole chain is, and the next pull completes it.
                report.notes.push(format!(
                    "layer {c}: parent layer {p} is not recorded yet (an interrupted pull)"
                ));
            }
        }
        for c in dirs.difference(&records.keys().cloned().collect()) {
            // A complete layer renamed into place by a process killed before it wrote the
            // record: the next pull of that layer adopts it.
            report.notes.push(format!(
                "layer directory {} has no record",
                self.layer_dir(c).display()
            ));
            if repair {
                self.remove_layer_dir(c)?;
                report
                    .repaired
                    .push(format!("removed unrecorded layer {c}"));
            }
        }
        for i in self.content().ingests()? {
            report.notes.push(format!(
                "partial download {} ({} bytes) kept for resuming",
                i.ingest_ref, i.offset
            ));
        }
        if let Ok(rd) = std::fs::read_dir(self.layers_dir().join("tmp")) {
            let leftovers: Vec<_> = rd.flatten().collect();
            for l in &leftovers {
                report
                    .notes
                    .push(format!("interrupted unpack {}", l.path().display()));
            }
            if repair && !leftovers.is_empty() {
                for p in self.clear_layer_tmp()? {
                    report
                        .repaired
                        .push(format!("removed interrupted unpack {p}"));
                }
            }
        }
        if repair {
            let n = self.remove_stale_snapshots()?;
            if n > 0 {
                report
                    .repaired
                    .push(format!("removed {n} snapshots of interrupted builds"));
            }
        }
        for img in md.images()? {
            report.images_checked += 1;
            let mut broken = false;
            for b in &img.blobs {
                if !good_blobs.contains(b) {
                    // Layer blobs can be fetched again by the next pull; manifests and
                    // configs are what the record is.
                    report
                        .problems
                        .push(format!("image {}: blob {b} is missing", img.id));
                    if b == img.id.digest() || b == &img.manifest_digest {
                        broken = true;
                    }
                }
            }
            for l in &img.layers {
                if !records.contains_key(l) || !dirs.contains(l) {
                    report
                        .problems
                        .push(format!("image {}: layer {l} is missing", img.id));
                }
            }
            if broken && repair {
                md.delete_image(&img.id)?;
                report.repaired.push(format!(
                    "removed image {} (its manifest or config is gone; pull it again)",
                    img.id
                ));
            }
        }
        Ok(report)
    }
}

fn tree_usage_dir_only(path: &std::path::Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        })
        .unwrap_or(0)
}
