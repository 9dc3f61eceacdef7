//! `hull save` and `hull load`: docker-archive (manifest.json + config + layer tars, the layout
//! every Docker, Podman and skopeo version reads) and oci-archive (an OCI image layout in a tar).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Read, Write};

use hull_layer::Compression;
use hull_metadata::{ImageRecord, LeaseResource};
use hull_oci::{
    ChainId, Descriptor, Digest, ImageConfig, ImageId, Index, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
    Manifest, ParsedManifest, Platform, Reference, media_type,
};
use serde::{Deserialize, Serialize};

use crate::error::{ImageError, Result};
use crate::events::{Event, EventSink};
use crate::layers::LayerTarget;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    DockerArchive,
    OciArchive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: ImageId,
    pub tags: Vec<Reference>,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Largest metadata file (manifest.json, index.json, repositories) read from an archive.
const MAX_ARCHIVE_METADATA: u64 = 16 * 1024 * 1024;

fn tar_header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Paths here are short and ASCII; set_path only fails on overlong names.
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar_header(path, data.len() as u64);
    b.append_data(&mut h, path, data)
        .map_err(|e| ImageError::io(path, e))
}

impl Store {
    /// Writes the named images to `out` as one archive.
    pub fn save(&self, names: &[String], format: ArchiveFormat, out: &mut dyn Write) -> Result<()> {
        let _lock = self.shared_lock()?;
        let mut images = Vec::new();
        for n in names {
            let id = self.resolve(n)?;
            // A name given with a tag is saved under that tag only; an ID under all its tags.
            let tags = match Reference::parse(n) {
                Ok(r) if r.digest().is_none() && self.metadata().tag(&r)?.as_ref() == Some(&id) => {
                    vec![r]
                }
                _ => self.metadata().tags_of(&id)?,
            };
            images.push((self.image(&id)?, tags));
        }
        let mut builder = tar::Builder::new(out);
        match format {
            ArchiveFormat::DockerArchive => self.save_docker(&images, &mut builder)?,
            ArchiveFormat::OciArchive => self.save_oci(&images, &mut builder)?,
        }
        builder
            .into_inner()
            .and_then(|w| w.flush())
            .map_err(|e| ImageError::io("archive", e))?;
        Ok(())
    }

    fn save_docker<W: Write>(
        &self,
        images: &[(crate::query::Image, Vec<Reference>)],
        b: &mut tar::Builder<W>,
    ) -> Result<()> {
        let mut entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut written = std::collections::HashSet::new();
        for (img, tags) in images {
            let config_name = format!("{}.json", img.record.id.digest().hex());
            if written.insert(config_name.clone()) {
                let config = self
                    .content()
                    .read_capped(img.record.id.digest(), MAX_CONFIG_SIZE)?;
                append_bytes(b, &config_name, &config)?;
            }
            let mut layer_paths = Vec::new();
            for (desc, diff) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
                let path = format!("{}/layer.tar", diff.digest().hex());
                if written.insert(path.clone()) {
                    self.append_uncompressed_layer(b, &path, desc, diff)?;
                }
                layer_paths.push(path);
            }
            let repo_tags: Vec<String> = tags
                .iter()
                .map(|t| format!("{}:{}", t.familiar_name(), t.tag().unwrap_or("latest")))
                .collect();
            if let Some(top) = img.config.rootfs.diff_ids.last() {
                for t in tags {
                    repositories.entry(t.familiar_name()).or_default().insert(
                        t.tag().unwrap_or("latest").to_string(),
                        top.digest().hex().to_string(),
                    );
                }
            }
            entries.push(ArchiveManifestEntry {
                config: config_name,
                repo_tags: Some(repo_tags),
                layers: layer_paths,
            });
        }
        let manifest =
            serde_json::to_vec(&entries).map_err(|e| ImageError::Other(e.to_string()))?;
        append_bytes(b, "manifest.json", &manifest)?;
        if !repositories.is_empty() {
            let repos =
                serde_json::to_vec(&repositories).map_err(|e| ImageError::Other(e.to_string()))?;
            append_bytes(b, "repositories", &repos)?;
        }
        Ok(())
    }

    /// Streams a layer blob, decompressed, into the archive. The tar header needs the size
    /// first: the unpacked layer's record has it; otherwise the blob is read once to count.
    fn append_uncompressed_layer<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        path: &str,
        desc: &Descriptor,
        diff: &hull_oci::DiffId,
    ) -> Result<()> {
        let compression = Compression::from_media_type(&desc.media_type)
            .ok_or_else(|| ImageError::UnsupportedLayer(desc.media_type.clone()))?;
        let open = || -> Result<Box<dyn Read + Send>> {
            let f = self.content().open_blob(&desc.digest)?;
            hull_layer::decompress(io::BufReader::with_capacity(1 << 20, f), compression)
                .map_err(|e| ImageError::io(desc.digest.to_string(), e))
        };
        let known = self
            .metadata()
            .layers()?
            .into_iter()
            .find(|l| &l.diff_id == diff)
            .map(|l| l.size);
        let size = match known {
            Some(s) => s,
            None => io::copy(&mut open()?, &mut io::sink())
                .map_err(|e| ImageError::io(desc.digest.to_string(), e))?,
        };
        let mut h = tar_header(path, size);
        b.append_data(&mut h, path, open()?.take(size))
            .map_err(|e| ImageError::io(path, e))
    }

    fn save_oci<W: Write>(
        &self,
        images: &[(crate::query::Image, Vec<Reference>)],
        b: &mut tar::Builder<W>,
    ) -> Result<()> {
        append_bytes(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut written = std::collections::HashSet::new();
        let mut index = Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
        };
        for (img, tags) in images {
            let mut blobs = vec![
                img.record.manifest_digest.clone(),
                img.record.id.digest().clone(),
            ];
            blobs.extend(img.manifest.layers.iter().map(|l| l.digest.clone()));
            for d in blobs {
                if !written.insert(d.clone()) {
                    continue;
                }
                let path = format!("blobs/{}/{}", d.algorithm(), d.hex());
                let size = self
                    .content()
                    .size(&d)?
                    .ok_or_else(|| ImageError::NotFound(format!("blob {d}")))?;
                let mut h = tar_header(&path, size);
                let f = self.content().open_blob(&d)?;
                b.append_data(&mut h, &path, io::BufReader::new(f).take(size))
                    .map_err(|e| ImageError::io(&path, e))?;
            }
            let manifest_size = self
                .content()
                .size(&img.record.manifest_digest)?
                .unwrap_or(0);
            let mut base = Descriptor::new(
                &img.record.manifest_media_type,
                img.record.manifest_digest.clone(),
                manifest_size,
            );
            base.platform = Some(img.config.platform());
            if tags.is_empty() {
                index.manifests.push(base.clone());
            }
            for t in tags {
                let mut d = base.clone();
                let mut ann = BTreeMap::new();
                ann.insert(ANNOTATION_IMAGE_NAME.to_string(), t.to_string());
                ann.insert(
                    ANNOTATION_REF_NAME.to_string(),
                    t.tag().unwrap_or("latest").to_string(),
                );
                d.annotations = Some(ann);
                index.manifests.push(d);
            }
        }
        let bytes = serde_json::to_vec(&index).map_err(|e| ImageError::Other(e.to_string()))?;
        append_bytes(b, "index.json", &bytes)
    }

    /// Loads a docker-archive or oci-archive (plain or gzip/zstd-compressed) from a stream.
    pub fn load(&self, input: Box<dyn Read + Send>, events: EventSink) -> Result<Vec<LoadedImage>> {
        let _lock = self.shared_lock()?;
        let lease = self
            .metadata()
            .lease(std::time::Duration::from_secs(3600))?;
        let mut buffered = io::BufReader::with_capacity(1 << 20, input);
        let compression = hull_layer::detect_compression(&mut buffered)
            .map_err(|e| ImageError::io("archive", e))?;
        let reader = hull_layer::decompress(buffered, compression)
            .map_err(|e| ImageError::io("archive", e))?;
        let mut archive = tar::Archive::new(reader);
        let mut files: HashMap<String, (Digest, u64)> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
        let entries = archive
            .entries()
            .map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| ImageError::InvalidArchive(e.to_string()))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Ok(Some(target)) = entry.link_name() {
                        let target = target.to_string_lossy().to_string();
                        let resolved = resolve_link(&path, &target, entry.header().entry_type());
                        links.insert(path, resolved);
                    }
                    continue;
                }
                _ => continue,
            }
            if matches!(
                path.as_str(),
                "manifest.json" | "index.json" | "repositories" | "oci-layout"
            ) {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(MAX_ARCHIVE_METADATA + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| ImageError::InvalidArchive(format!("{path}: {e}")))?;
                if buf.len() as u64 > MAX_ARCHIVE_METADATA {
                    return Err(ImageError::InvalidArchive(format!("{path} is too large")));
                }
                meta.insert(path, buf);
                continue;
            }
            if path.ends_with("/VERSION") || path.ends_with("/json") {
                continue;
            }
            let ingest = format!("load-{:016x}", rand::random::<u64>());
            let (digest, size) = self.content().ingest_reader(&ingest, &mut entry, None)?;
            lease.add(&LeaseResource::Blob(digest.clone()))?;
            files.insert(path, (digest, size));
        }
        let lookup = |p: &str| -> Result<(Digest, u64)> {
            let mut p = p.trim_start_matches("./").to_string();
            for _ in 0..8 {
                if let Some(f) = files.get(&p) {
                    return Ok(f.clone());
                }
                match links.get(&p) {
                    Some(t) => p = t.clone(),
                    None => break,
                }
            }
            Err(ImageError::InvalidArchive(format!(
                "{p} is named but not in the archive"
            )))
        };
        let mut loaded = Vec::new();
        if let Some(m) = meta.get("manifest.json") {
            let entries: Vec<ArchiveManifestEntry> = serde_json::from_slice(m)
                .map_err(|e| ImageError::InvalidArchive(format!("manifest.json: {e}")))?;
            for e in entries {
                let (config_digest, config_size) = lookup(&e.config)?;
                let mut layers = Vec::new();
                for l in &e.layers {
                    let (d, s) = lookup(l)?;
                    let compression = self.sniff_blob(&d)?;
                    let mt = match compression {
                        Compression::None => media_type::OCI_LAYER,
                        Compression::Gzip => media_type::OCI_LAYER_GZIP,
                        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
                    };
                    layers.push(Descriptor::new(mt, d, s));
                }
                let manifest = Manifest {
                    schema_version: 2,
                    media_type: Some(media_type::OCI_MANIFEST.to_string()),
                    artifact_type: None,
                    config: Descriptor::new(media_type::OCI_CONFIG, config_digest, config_size),
                    layers,
                    subject: None,
                    annotations: None,
                };
                let bytes =
                    serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
                let digest = self.content().put_bytes(&bytes)?;
                lease.add(&LeaseResource::Blob(digest.clone()))?;
                let mut tags = Vec::new();
                for t in e.repo_tags.unwrap_or_default() {
                    tags.push(Reference::parse(&t)?);
                }
                let id = self.register_from_content(
                    &manifest,
                    &digest,
                    media_type::OCI_MANIFEST,
                    &[],
                    &lease,
                    &events,
                )?;
                for t in &tags {
                    self.metadata().set_tag(t, &id)?;
                }
                loaded.push(LoadedImage { id, tags });
            }
        } else if let Some(idx) = meta.get("index.json") {
            // OCI layout: every blob's name must be its digest.
            for (path, (digest, _)) in &files {
                if let Some(rest) = path.strip_prefix("blobs/") {
                    let named: Digest = rest.replacen('/', ":", 1).parse().map_err(|_| {
                        ImageError::InvalidArchive(format!("{path} is not named by a digest"))
                    })?;
                    if digest.algorithm() == named.algorithm() && &named != digest {
                        return Err(ImageError::InvalidArchive(format!(
                            "{path} has digest {digest}"
                        )));
                    }
                }
            }
            let index: Index = match ParsedManifest::from_slice(idx, Some(media_type::OCI_INDEX))? {
                ParsedManifest::Index(i) => i,
                ParsedManifest::Image(_) => {
                    return Err(ImageError::InvalidArchive(
                        "index.json is not an index".into(),
                    ));
                }
            };
            for desc in &index.manifests {
                let name = desc.annotations.as_ref().and_then(|a| {
                    a.get(ANNOTATION_IMAGE_NAME).or_else(|| {
                        a.get(ANNOTATION_REF_NAME)
                            .filter(|n| n.contains(':') || n.contains('/'))
                    })
                });
                let tags: Vec<Reference> = name
                    .and_then(|n| Reference::parse(n).ok())
                    .into_iter()
                    .collect();
                let (manifest, digest, mt, extra) = self.resolve_layout_manifest(desc)?;
                let id =
                    self.register_from_content(&manifest, &digest, &mt, &extra, &lease, &events)?;
                for t in &tags {
                    self.metadata().set_tag(t, &id)?;
                }
                loaded.push(LoadedImage { id, tags });
            }
        } else {
            return Err(ImageError::InvalidArchive(
                "neither manifest.json (docker-archive) nor index.json (oci-archive) found".into(),
            ));
        }
        drop(lease);
        Ok(loaded)
    }

    fn sniff_blob(&self, d: &Digest) -> Result<Compression> {
        let f = self.content().open_blob(d)?;
        let mut r = io::BufReader::new(f);
        let c =
            hull_layer::detect_compression(&mut r).map_err(|e| ImageError::io(d.to_string(), e))?;
        let _ = r.fill_buf();
        Ok(c)
    }

    /// Follows an index entry of a layout to the platform manifest for this host.
    fn resolve_layout_manifest(
        &self,
        desc: &Descriptor,
    ) -> Result<(Manifest, Digest, String, Vec<Digest>)> {
        let bytes = self
            .content()
            .read_capped(&desc.digest, MAX_MANIFEST_SIZE)?;
        match ParsedManifest::from_slice(&bytes, Some(&desc.media_type))? {
            ParsedManifest::Image(m) => {
                let mt = m
                    .media_type
                    .clone()
                    .unwrap_or_else(|| desc.media_type.clone());
                Ok((m, desc.digest.clone(), mt, Vec::new()))
            }
            ParsedManifest::Index(i) => {
                let host = Platform::host();
                let child = i
                    .matching(&host)
                    .into_iter()
                    .next()
                    .cloned()
                    .ok_or_else(|| ImageError::PlatformMismatch {
                        reference: desc.digest.to_string(),
                        wanted: host.to_string(),
                        available: i.platforms().join(", "),
                    })?;
                let (m, d, mt, mut extra) = self.resolve_layout_manifest(&child)?;
                extra.push(desc.digest.clone());
                Ok((m, d, mt, extra))
            }
        }
    }

    /// Unpacks an image whose blobs are all in the content store and records it.
    pub(crate) fn register_from_content(
        &self,
        manifest: &Manifest,
        manifest_digest: &Digest,
        manifest_media_type: &str,
        extra_blobs: &[Digest],
        lease: &hull_metadata::Lease,
        events: &EventSink,
    ) -> Result<ImageId> {
        let config_bytes = self
            .content()
            .read_capped(&manifest.config.digest, MAX_CONFIG_SIZE)?;
        let config = ImageConfig::from_slice(&config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::LayerCountMismatch {
                diff_ids: config.rootfs.diff_ids.len(),
                layers: manifest.layers.len(),
            });
        }
        let chain = ChainId::chain(&config.rootfs.diff_ids);
        let mut size = 0;
        for (i, desc) in manifest.layers.iter().enumerate() {
            let (Some(chain_id), Some(diff)) = (chain.get(i), config.rootfs.diff_ids.get(i)) else {
                continue;
            };
            lease.add(&LeaseResource::Layer(chain_id.clone()))?;
            if self.layer_present(chain_id)? {
                events(Event::Layer {
                    digest: desc.digest.clone(),
                    event: crate::events::LayerEvent::AlreadyExists,
                });
            } else {
                let compression = Compression::from_media_type(&desc.media_type)
                    .ok_or_else(|| ImageError::UnsupportedLayer(desc.media_type.clone()))?;
                let f = self.content().open_blob(&desc.digest)?;
                let target = LayerTarget {
                    chain_id,
                    parent: i.checked_sub(1).and_then(|p| chain.get(p)),
                    expected_diff: Some(diff),
                    blob: &desc.digest,
                    media_type: &desc.media_type,
                };
                self.unpack_layer(
                    io::BufReader::with_capacity(1 << 20, f),
                    compression,
                    &target,
                    || Ok(()),
                )
                .map_err(|e| e.context(format!("layer {}", desc.digest)))?;
                events(Event::Layer {
                    digest: desc.digest.clone(),
                    event: crate::events::LayerEvent::Complete,
                });
            }
            size += self
                .metadata()
                .layer(chain_id)?
                .map(|l| l.docker_size())
                .unwrap_or(0);
        }
        let id = ImageId(manifest.config.digest.clone());
        let mut blobs = vec![manifest_digest.clone(), manifest.config.digest.clone()];
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        blobs.extend(extra_blobs.iter().cloned());
        self.metadata().put_image(&ImageRecord {
            id: id.clone(),
            manifest_digest: manifest_digest.clone(),
            manifest_media_type: manifest_media_type.to_string(),
            created: config.created.clone(),
            size,
            added_at: jiff::Timestamp::now().as_second(),
            layers: chain,
            blobs,
        })?;
        Ok(id)
    }
}

/// A symlink target in an archive is relative to the link's directory; a hardlink's is
/// relative to the archive root.
fn resolve_link(link: &str, target: &str, kind: tar::EntryType) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if kind == tar::EntryType::Symlink && !target.starts_with('/') {
        parts.extend(link.split('/').filter(|c| !c.is_empty()));
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}
