//! `hull pull`: resolve, fetch manifests and config, then download, verify and unpack the
//! layers in parallel — each layer hashed, decompressed and unpacked while it streams.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hull_distribution::{BlobOptions, RegistryClient};
use hull_layer::Compression;
use hull_metadata::{ImageRecord, LeaseResource};
use hull_oci::{
    ChainId, DiffId, Digest, ImageConfig, ImageId, MAX_CONFIG_SIZE, ParsedManifest, Platform,
    Reference,
};
use tokio::sync::{Semaphore, mpsc};

use crate::error::{ImageError, Result};
use crate::events::{Event, EventSink, LayerEvent};
use crate::layers::LayerTarget;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform asked for with `--platform`; `None` means the host's, where a
    /// single-platform image for another platform is pulled with a warning (as Docker does).
    pub platform: Option<Platform>,
    /// Layers downloaded at once (Docker's `max-concurrent-downloads`, default 6).
    pub max_concurrent_downloads: usize,
    /// Range requests in flight per large layer (1 = one stream).
    pub parallel_ranges: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            max_concurrent_downloads: 6,
            parallel_ranges: 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PullResult {
    /// The reference pulled (normalised).
    pub reference: Reference,
    /// The digest the reference resolved to (the index digest for multi-platform images).
    pub digest: Digest,
    pub image: ImageId,
    /// Layers downloaded or unpacked by this pull.
    pub new_layers: usize,
    /// Everything was present already.
    pub up_to_date: bool,
}

/// How long a pull's lease protects what it has fetched if the process dies.
const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Bytes in flight between the download task and the unpacking thread, per layer.
const CHANNEL_DEPTH: usize = 16;
/// Progress granularity.
const PROGRESS_STEP: u64 = 512 * 1024;

/// Pulls every tag of `reference`'s repository.
pub async fn pull_all_tags(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PullOptions,
    events: EventSink,
) -> Result<Vec<PullResult>> {
    let tags = client.list_tags(reference).await?;
    let mut out = Vec::new();
    for tag in tags {
        let r = reference.with_tag(&tag)?;
        out.push(pull(store, client, &r, opts, events.clone()).await?);
    }
    Ok(out)
}

/// Pulls one image by tag or digest.
pub async fn pull(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PullOptions,
    events: EventSink,
) -> Result<PullResult> {
    let lock_store = store.clone();
    let lock = tokio::task::spawn_blocking(move || {
        // Taken on a blocking thread: it waits while a GC runs.
        lock_store.shared_lock()
    })
    .await
    .map_err(|e| ImageError::Other(format!("lock task failed: {e}")))??;
    let result = pull_locked(store, client, reference, opts, events).await;
    drop(lock);
    result
}

async fn pull_locked(
    store: &Store,
    client: &RegistryClient,
    reference: &Reference,
    opts: &PullOptions,
    events: EventSink,
) -> Result<PullResult> {
    let md = store.metadata();
    let lease = md.lease(LEASE_TTL)?;
    let wanted = opts.platform.clone().unwrap_or_else(Platform::host);

    let top = client.get_manifest(reference).await?;
    events(Event::Resolved {
        reference: reference.to_string(),
        digest: top.digest.clone(),
    });
    lease.add(&LeaseResource::Blob(top.digest.clone()))?;
    store.content().put_bytes(&top.bytes)?;
    let mut blobs = vec![top.digest.clone()];

    let (manifest, manifest_digest, manifest_mt) =
        match ParsedManifest::from_slice(&top.bytes, Some(&top.media_type))? {
            ParsedManifest::Image(m) => (m, top.digest.clone(), top.media_type.clone()),
            ParsedManifest::Index(index) => {
                let choice = index.matching(&wanted).into_iter().next().cloned();
                let Some(desc) = choice else {
                    let offered = index.platforms();
                    return Err(ImageError::PlatformMismatch {
                        reference: reference.to_string(),
                        wanted: wanted.to_string(),
                        available: if offered.is_empty() {
                            "no platforms".to_string()
                        } else {
                            offered.join(", ")
                        },
                    });
                };
                let child = client
                    .get_manifest_by_digest(reference, &desc.digest)
                    .await?;
                lease.add(&LeaseResource::Blob(child.digest.clone()))?;
                store.content().put_bytes(&child.bytes)?;
                blobs.push(child.digest.clone());
                match ParsedManifest::from_slice(&child.bytes, Some(&child.media_type))? {
                    ParsedManifest::Image(m) => (m, child.digest, child.media_type),
                    ParsedManifest::Index(_) => {
                        return Err(ImageError::Other(format!(
                            "{reference}: nested index {} is not supported",
                            desc.digest
                        )));
                    }
                }
            }
        };
    if !manifest.is_image() {
        return Err(ImageError::NotAnImage {
            reference: reference.to_string(),
            what: format!("manifest {manifest_digest}"),
            media_type: manifest.config.media_type.clone(),
        });
    }

    let config_digest = manifest.config.digest.clone();
    if manifest.config.size > MAX_CONFIG_SIZE {
        return Err(hull_oci::DocumentError::TooLarge {
            what: "image config",
            size: manifest.config.size,
            limit: MAX_CONFIG_SIZE,
        }
        .into());
    }
    lease.add(&LeaseResource::Blob(config_digest.clone()))?;
    if !store.content().exists(&config_digest) {
        let bytes =
            fetch_small_blob(client, reference, &config_digest, manifest.config.size).await?;
        store.content().put_bytes(&bytes)?;
    }
    blobs.push(config_digest.clone());
    let config_bytes = store
        .content()
        .read_capped(&config_digest, MAX_CONFIG_SIZE)?;
    let config = ImageConfig::from_slice(&config_bytes)?;
    let found = config.platform();
    if !found.matches(&wanted) {
        match &opts.platform {
            Some(_) => {
                return Err(ImageError::WrongPlatform {
                    reference: reference.to_string(),
                    found: found.to_string(),
                    wanted: wanted.to_string(),
                });
            }
            None => events(Event::Status(format!(
                "WARNING: The requested image's platform ({found}) does not match the detected host platform ({wanted}) and no specific platform was requested"
            ))),
        }
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCountMismatch {
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }
    let chain = ChainId::chain(&config.rootfs.diff_ids);
    let image_id = ImageId(config_digest.clone());

    // Fetch and unpack the layers.
    let semaphore = Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1)));
    let mut tasks = Vec::new();
    for (i, desc) in manifest.layers.iter().enumerate() {
        blobs.push(desc.digest.clone());
        let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
            ImageError::UnsupportedLayer(format!("{} ({})", desc.digest, desc.media_type))
        })?;
        let job = LayerJob {
            store: store.clone(),
            client: client.clone(),
            reference: reference.clone(),
            blob: desc.digest.clone(),
            size: desc.size,
            media_type: desc.media_type.clone(),
            compression,
            chain_id: chain
                .get(i)
                .cloned()
                .ok_or_else(|| ImageError::Other("chain".into()))?,
            parent: i.checked_sub(1).and_then(|p| chain.get(p).cloned()),
            diff_id: config
                .rootfs
                .diff_ids
                .get(i)
                .cloned()
                .ok_or_else(|| ImageError::Other("diff".into()))?,
            parallel_ranges: opts.parallel_ranges,
            events: events.clone(),
        };
        lease.add(&LeaseResource::Blob(job.blob.clone()))?;
        lease.add(&LeaseResource::Layer(job.chain_id.clone()))?;
        events(Event::Layer {
            digest: job.blob.clone(),
            event: LayerEvent::Waiting,
        });
        let sem = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let blob = job.blob.clone();
            job.run()
                .await
                .map_err(|e| e.context(format!("layer {blob}")))
        }));
    }
    let mut new_layers = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(fetched)) => new_layers += usize::from(fetched),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(ImageError::Other(format!("layer task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let mut size = 0u64;
    for c in &chain {
        size += md.layer(c)?.map(|l| l.docker_size()).unwrap_or(0);
    }
    let existed = md.image(&image_id)?.is_some();
    md.put_image(&ImageRecord {
        id: image_id.clone(),
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: manifest_mt,
        created: config.created.clone(),
        size,
        added_at: jiff::Timestamp::now().as_second(),
        layers: chain,
        blobs,
    })?;
    let old = if reference.tag().is_some() {
        md.set_tag(reference, &image_id)?
    } else {
        None
    };
    md.add_repo_digest(&image_id, &reference.name(), &top.digest)?;
    drop(lease);
    Ok(PullResult {
        reference: reference.clone(),
        digest: top.digest,
        image: image_id.clone(),
        new_layers,
        up_to_date: existed && new_layers == 0 && old.as_ref().is_none_or(|o| o == &image_id),
    })
}

async fn fetch_small_blob(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    size: u64,
) -> Result<Vec<u8>> {
    let mut stream = client
        .get_blob(reference, digest, 0, BlobOptions::default())
        .await?;
    let mut buf = Vec::with_capacity(usize::try_from(size.min(MAX_CONFIG_SIZE)).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() as u64 + chunk.len() as u64 > size.min(MAX_CONFIG_SIZE) {
            return Err(ImageError::Other(format!(
                "blob {digest} is larger than the {size} bytes its descriptor declares"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    let actual = Digest::sha256_of(&buf);
    if digest.algorithm() == hull_oci::Algorithm::Sha256 && &actual != digest {
        return Err(ImageError::Other(format!(
            "blob {digest}: downloaded content has digest {actual}"
        )));
    }
    Ok(buf)
}

struct LayerJob {
    store: Store,
    client: RegistryClient,
    reference: Reference,
    blob: Digest,
    size: u64,
    media_type: String,
    compression: Compression,
    chain_id: ChainId,
    parent: Option<ChainId>,
    diff_id: DiffId,
    parallel_ranges: usize,
    events: EventSink,
}

impl LayerJob {
    fn event(&self, event: LayerEvent) {
        (self.events)(Event::Layer {
            digest: self.blob.clone(),
            event,
        });
    }

    /// Returns whether anything was fetched or unpacked.
    async fn run(self) -> Result<bool> {
        let store = self.store.clone();
        let layer_present = store.layer_present(&self.chain_id)?;
        let blob_present = store.content().exists(&self.blob);
        if layer_present && blob_present {
            self.event(LayerEvent::AlreadyExists);
            return Ok(false);
        }
        if blob_present {
            // Downloaded before but not unpacked (or the layer was removed): unpack from disk.
            self.event(LayerEvent::Extracting {
                current: 0,
                total: Some(self.size),
            });
            let job = Arc::new(self);
            let j = job.clone();
            tokio::task::spawn_blocking(move || {
                let f = j.store.content().open_blob(&j.blob)?;
                let r = io::BufReader::with_capacity(1 << 20, f);
                j.store
                    .unpack_layer(r, j.compression, &j.target(), || Ok(()))
                    .map(|_| ())
            })
            .await
            .map_err(|e| ImageError::Other(format!("unpack task failed: {e}")))??;
            job.event(LayerEvent::Complete);
            return Ok(true);
        }
        // Another hull process may be fetching the same blob: wait for it rather than fail
        // (containerd does the same), then use what it committed.
        let content = store.content().clone();
        let ingest_ref = format!("pull-{}", self.blob);
        let (blob, size) = (self.blob.clone(), self.size);
        let first = tokio::task::spawn_blocking({
            let content = content.clone();
            let ingest_ref = ingest_ref.clone();
            let blob = blob.clone();
            move || content.writer(&ingest_ref, Some((&blob, size)))
        })
        .await
        .map_err(|e| ImageError::Other(format!("ingest task failed: {e}")))?;
        let writer = match first {
            Ok(w) => w,
            Err(hull_content::ContentError::Locked { .. }) => {
                self.event(LayerEvent::Waiting);
                let w = tokio::task::spawn_blocking(move || {
                    content.writer_blocking(&ingest_ref, Some((&blob, size)))
                })
                .await
                .map_err(|e| ImageError::Other(format!("ingest task failed: {e}")))??;
                if store.content().exists(&self.blob) {
                    // The other process committed it: start over from what is on disk now.
                    w.discard();
                    return Box::pin(self.run()).await;
                }
                w
            }
            Err(e) => return Err(e.into()),
        };
        self.download_and_unpack(layer_present, writer).await?;
        Ok(true)
    }

    fn target(&self) -> LayerTarget<'_> {
        LayerTarget {
            chain_id: &self.chain_id,
            parent: self.parent.as_ref(),
            expected_diff: Some(&self.diff_id),
            blob: &self.blob,
            media_type: &self.media_type,
        }
    }

    /// Streams the blob into the content store and, unless the layer is already unpacked,
    /// through the decompressor into a new layer directory at the same time.
    async fn download_and_unpack(
        self,
        layer_present: bool,
        mut writer: hull_content::Writer,
    ) -> Result<()> {
        let size = self.size;
        let mut offset = writer.offset();
        if offset > size {
            writer.truncate()?;
            offset = 0;
        }
        let opts = BlobOptions {
            parallel_ranges: self.parallel_ranges,
            ..BlobOptions::default()
        };
        let mut stream = self
            .client
            .get_blob(&self.reference, &self.blob, offset, opts)
            .await?;
        if stream.start() != offset {
            // The registry ignored Range: start over.
            writer.truncate()?;
            offset = 0;
        } else if offset > 0 {
            self.event(LayerEvent::Resuming { offset });
        }
        let existing: Box<dyn Read + Send> = if offset > 0 {
            Box::new(io::BufReader::new(writer.existing_reader()?).take(offset))
        } else {
            Box::new(io::empty())
        };

        let (tx, rx) = mpsc::channel::<std::result::Result<Bytes, String>>(CHANNEL_DEPTH);
        let job = Arc::new(self);
        let j = job.clone();
        let worker = tokio::task::spawn_blocking(move || -> Result<()> {
            let network = ChannelReader::new(rx);
            let tee = TeeReader {
                inner: network,
                writer,
            };
            let mut source = existing.chain(tee);
            let expected = (j.blob.clone(), j.size);
            if layer_present {
                // Only the blob is missing: store it, don't unpack.
                io::copy(&mut source, &mut io::sink())
                    .map_err(|e| ImageError::io(j.blob.to_string(), e))?;
                let (_, tee) = source.into_inner();
                tee.writer.commit(&expected.0, Some(expected.1))?;
                return Ok(());
            }
            let target = j.target();
            let writer_slot: WriterSlot = Arc::new(std::sync::Mutex::new(None));
            {
                // unpack_layer consumes the reader; hand the writer back out for commit.
                let reader = SlotReader {
                    inner: Some(source),
                    slot: writer_slot.clone(),
                };
                j.store.unpack_layer(reader, j.compression, &target, || {
                    let w = take_slot(&writer_slot).ok_or_else(|| {
                        ImageError::Other(format!("layer {}: stream not finished", j.blob))
                    })?;
                    w.commit(&expected.0, Some(expected.1))?;
                    Ok(())
                })?;
            }
            Ok(())
        });

        let mut received = offset;
        let mut last_report = 0u64;
        job.event(LayerEvent::Downloading {
            current: received,
            total: Some(job.size),
        });
        let mut send_failed = false;
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(|e| e.to_string());
            if let Ok(b) = &item {
                received += b.len() as u64;
            }
            let failed = item.is_err();
            if tx.send(item).await.is_err() {
                send_failed = true;
                break;
            }
            if failed {
                break;
            }
            if received - last_report >= PROGRESS_STEP {
                last_report = received;
                job.event(LayerEvent::Downloading {
                    current: received,
                    total: Some(job.size),
                });
            }
        }
        drop(tx);
        let outcome = worker
            .await
            .map_err(|e| ImageError::Other(format!("unpack task failed: {e}")))?;
        outcome?;
        if send_failed {
            return Err(ImageError::Other("unpacking stopped early".to_string()));
        }
        job.event(LayerEvent::Verifying);
        job.event(LayerEvent::Complete);
        Ok(())
    }
}

/// Reads `Bytes` chunks from the download task on a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<std::result::Result<Bytes, String>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<std::result::Result<Bytes, String>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        if let Some(dst) = buf.get_mut(..n) {
            dst.copy_from_slice(&chunk);
        }
        Ok(n)
    }
}

/// Copies everything read from `inner` into the content writer (which hashes it).
struct TeeReader<R> {
    inner: R,
    writer: hull_content::Writer,
}

impl<R: Read> Read for TeeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(chunk) = buf.get(..n) {
            io::Write::write_all(&mut self.writer, chunk)?;
        }
        Ok(n)
    }
}

/// Wraps the chained source; at end of stream it parks the content writer in `slot` so the
/// commit can happen after unpacking and before the layer becomes visible.
struct SlotReader<R> {
    inner: Option<io::Chain<R, TeeReader<ChannelReader>>>,
    slot: WriterSlot,
}

type WriterSlot = Arc<std::sync::Mutex<Option<hull_content::Writer>>>;

fn take_slot(slot: &WriterSlot) -> Option<hull_content::Writer> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl<R: Read> Read for SlotReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(chain) = self.inner.take()
        {
            let (_, tee) = chain.into_inner();
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(tee.writer);
        }
        Ok(n)
    }
}
