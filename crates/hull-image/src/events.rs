//! Progress as typed events; front ends render them (bars on a terminal, lines when piped).

use std::sync::Arc;

use hull_oci::Digest;

/// What happens to one layer during a pull, load or push (a push reports a layer by its diff
/// ID, as Docker does, and a registry that has the blob already as `AlreadyExists`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEvent {
    /// Queued behind the concurrency limit.
    Waiting,
    /// Present already (unpacked layer with the same chain ID).
    AlreadyExists,
    /// Bytes of the blob received so far, of `total` when known.
    Downloading { current: u64, total: Option<u64> },
    /// A partial download from an earlier attempt is being resumed from this offset.
    Resuming { offset: u64 },
    /// Download done; digest being verified.
    Verifying,
    /// Blob present locally; being unpacked.
    Extracting { current: u64, total: Option<u64> },
    /// Layer stored and unpacked.
    Complete,
    /// Push: queued; its blob is being found (or compressed) and checked against the registry.
    Preparing,
    /// Push: bytes of the blob sent so far, of `total`.
    Pushing { current: u64, total: Option<u64> },
    /// Push: the registry linked the blob from another of its repositories.
    Mounted { from: String },
    /// Push: the blob was uploaded.
    Pushed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The reference resolved to this manifest (or index) digest.
    Resolved { reference: String, digest: Digest },
    /// A layer's state changed. `short` is the 12-character short form Docker prints.
    Layer { digest: Digest, event: LayerEvent },
    /// Free-form status line ("Loaded image: …").
    Status(String),
}

/// Receiver of progress events; must be cheap and non-blocking.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> EventSink {
    Arc::new(|_| {})
}
