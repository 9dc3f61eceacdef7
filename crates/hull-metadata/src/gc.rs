//! Mark-and-sweep garbage collection as a pure function: given the roots and edges the metadata
//! holds and what exists on disk, say what may be deleted. The caller deletes, under the store
//! lock, and leases keep in-flight work alive (containerd's design: GC never races a pull).

use std::collections::{BTreeSet, HashMap};

use hull_oci::{ChainId, Digest};

/// Everything GC must keep, gathered from metadata in one read transaction.
#[derive(Debug, Default, Clone)]
pub struct GcRoots {
    /// Blobs referenced by an image record (manifests, indexes, configs, compressed layers).
    pub blobs: BTreeSet<Digest>,
    /// Layers referenced by an image record (every chain ID of its stack).
    pub layers: BTreeSet<ChainId>,
    /// Parent edges between layers.
    pub layer_parents: HashMap<ChainId, ChainId>,
}

/// What a GC run would delete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcPlan {
    pub blobs: Vec<Digest>,
    pub layers: Vec<ChainId>,
}

impl GcPlan {
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.layers.is_empty()
    }
}

/// Marks from `roots` (following layer parents) and sweeps what is present but unmarked.
pub fn mark_and_sweep(
    roots: &GcRoots,
    present_blobs: impl IntoIterator<Item = Digest>,
    present_layers: impl IntoIterator<Item = ChainId>,
) -> GcPlan {
    let mut live_layers: BTreeSet<ChainId> = BTreeSet::new();
    for l in &roots.layers {
        let mut cur = Some(l.clone());
        // Walk the parent chain; stop at a layer already marked (its parents are marked too).
        while let Some(c) = cur {
            if !live_layers.insert(c.clone()) {
                break;
            }
            cur = roots.layer_parents.get(&c).cloned();
        }
    }
    let blobs = present_blobs
        .into_iter()
        .filter(|d| !roots.blobs.contains(d))
        .collect();
    let layers = present_layers
        .into_iter()
        .filter(|l| !live_layers.contains(l))
        .collect();
    GcPlan { blobs, layers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_oci::DiffId;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn keeps_parents_of_live_layers() {
        let chain = ChainId::chain(&[DiffId(d("a")), DiffId(d("b")), DiffId(d("c"))]);
        let mut roots = GcRoots::default();
        roots.layers.insert(chain[2].clone());
        roots
            .layer_parents
            .insert(chain[2].clone(), chain[1].clone());
        roots
            .layer_parents
            .insert(chain[1].clone(), chain[0].clone());
        let orphan = ChainId(d("orphan"));
        roots.blobs.insert(d("m"));
        let plan = mark_and_sweep(
            &roots,
            vec![d("m"), d("x")],
            vec![
                chain[0].clone(),
                chain[1].clone(),
                chain[2].clone(),
                orphan.clone(),
            ],
        );
        assert_eq!(plan.blobs, vec![d("x")]);
        assert_eq!(plan.layers, vec![orphan]);
    }
}
