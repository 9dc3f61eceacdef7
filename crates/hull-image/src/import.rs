//! `hull import`: a root filesystem tarball becomes a one-layer image, with Dockerfile-style
//! `--change` instructions applied to its config.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use hull_layer::Compression;
use hull_metadata::{ImageRecord, LeaseResource};
use hull_oci::{
    ChainId, ContainerConfig, Descriptor, Digest, History, ImageConfig, ImageId, Manifest,
    Platform, Reference, RootFs, media_type,
};

use crate::error::{ImageError, Result};
use crate::layers::LayerTarget;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag for the new image.
    pub reference: Option<Reference>,
    /// Dockerfile instructions (`CMD ["sh"]`, `ENV A=b`, …) applied to the config.
    pub changes: Vec<String>,
    /// Commit message, recorded as the history comment.
    pub message: Option<String>,
    /// Platform recorded in the config (default: the host's).
    pub platform: Option<Platform>,
    /// What the history says the layer was imported from (`-` for stdin, or a file name).
    pub source: String,
}

impl Store {
    /// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image. The
    /// stream is hashed, stored and unpacked in one pass.
    pub fn import(&self, input: Box<dyn Read + Send>, opts: ImportOptions) -> Result<ImageId> {
        let mut container = ContainerConfig::default();
        for change in &opts.changes {
            apply_change(&mut container, change)?;
        }
        let _lock = self.shared_lock()?;
        let lease = self
            .metadata()
            .lease(std::time::Duration::from_secs(3600))?;
        let mut buffered = io::BufReader::with_capacity(1 << 20, input);
        let compression = hull_layer::detect_compression(&mut buffered)
            .map_err(|e| ImageError::io("import", e))?;
        let tar = hull_layer::decompress(buffered, compression)
            .map_err(|e| ImageError::io("import", e))?;

        // The layer is stored uncompressed (its digest is its diff ID); push compresses it.
        let ingest = format!("import-{:016x}", rand::random::<u64>());
        let writer = self.content().writer(&ingest, None)?;
        let slot = Arc::new(Mutex::new(Some(writer)));
        let tee = TeeToSlot {
            inner: tar,
            slot: slot.clone(),
        };
        // The chain ID of a one-layer image is its diff ID, which is known only at the end:
        // unpack under a placeholder name, then rename.
        let committed: Arc<Mutex<Option<(Digest, u64)>>> = Arc::new(Mutex::new(None));
        let placeholder = ChainId(Digest::sha256_of(ingest.as_bytes()));
        let target = LayerTarget {
            chain_id: &placeholder,
            parent: None,
            expected_diff: None,
            blob: &placeholder.0,
            media_type: media_type::OCI_LAYER,
        };
        let c2 = committed.clone();
        let (diff, size) = self.unpack_layer_staged(tee, &target, move || {
            let w = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| ImageError::Other("import stream was not consumed".into()))?;
            let done = w.commit_computed()?;
            *c2.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
            Ok(())
        })?;
        let (blob, blob_size) = committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| ImageError::Other("import layer was not committed".into()))?;
        lease.add(&LeaseResource::Blob(blob.clone()))?;
        self.metadata()
            .record_blob_diff(&blob, &diff, media_type::OCI_LAYER)?;
        let chain_id = ChainId(diff.0.clone());
        lease.add(&LeaseResource::Layer(chain_id.clone()))?;

        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let now = jiff::Timestamp::now().to_string();
        let config = ImageConfig {
            created: Some(now.clone()),
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: Some(container),
            rootfs: RootFs {
                fs_type: "layers".to_string(),
                diff_ids: vec![diff.clone()],
            },
            history: vec![History {
                created: Some(now.clone()),
                created_by: None,
                comment: Some(
                    opts.message
                        .clone()
                        .unwrap_or_else(|| format!("Imported from {}", opts.source)),
                ),
                ..History::default()
            }],
            ..ImageConfig::default()
        };
        let config_bytes = config.to_vec();
        let config_digest = self.content().put_bytes(&config_bytes)?;
        lease.add(&LeaseResource::Blob(config_digest.clone()))?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: Descriptor::new(
                media_type::OCI_CONFIG,
                config_digest.clone(),
                config_bytes.len() as u64,
            ),
            layers: vec![Descriptor::new(
                media_type::OCI_LAYER,
                blob.clone(),
                blob_size,
            )],
            subject: None,
            annotations: None,
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
        let manifest_digest = self.content().put_bytes(&manifest_bytes)?;
        let id = ImageId(config_digest.clone());
        self.metadata().put_image(&ImageRecord {
            id: id.clone(),
            manifest_digest: manifest_digest.clone(),
            manifest_media_type: media_type::OCI_MANIFEST.to_string(),
            created: Some(now),
            size,
            added_at: jiff::Timestamp::now().as_second(),
            layers: vec![chain_id],
            blobs: vec![manifest_digest, config_digest, blob],
        })?;
        if let Some(r) = &opts.reference {
            let r = if r.tag().is_none() {
                r.with_tag(hull_oci::DEFAULT_TAG)?
            } else {
                r.clone()
            };
            self.metadata().set_tag(&r, &id)?;
        }
        drop(lease);
        Ok(id)
    }

    /// Like `unpack_layer` for a stream whose diff ID (and so chain ID) is known only at
    /// its end: unpacks under the placeholder, then renames to the real chain ID.
    fn unpack_layer_staged(
        &self,
        tar: impl Read + Send,
        target: &LayerTarget<'_>,
        before_commit: impl FnOnce() -> Result<()>,
    ) -> Result<(hull_oci::DiffId, u64)> {
        let (diff, size) = self.unpack_layer(tar, Compression::None, target, before_commit)?;
        let real = ChainId(diff.0.clone());
        let from = self.layer_dir(target.chain_id);
        let to = self.layer_dir(&real);
        self.metadata().delete_layer(target.chain_id)?;
        if self.layer_present(&real)? {
            crate::layers::remove_tree(&from);
        } else {
            if to.exists() {
                crate::layers::remove_tree(&to);
            }
            fs_err::rename(&from, &to).map_err(|e| ImageError::io(&to, e))?;
            self.metadata().put_layer(&hull_metadata::LayerRecord {
                chain_id: real,
                diff_id: diff.clone(),
                parent: None,
                size,
                state: hull_metadata::LayerState::Committed,
            })?;
        }
        Ok((diff, size))
    }
}

struct TeeToSlot<R> {
    inner: R,
    slot: Arc<Mutex<Option<hull_content::Writer>>>,
}

impl<R: Read> Read for TeeToSlot<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Some(chunk) = buf.get(..n)
            && let Some(w) = self.slot.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
        {
            io::Write::write_all(w, chunk)?;
        }
        Ok(n)
    }
}

/// Applies one Dockerfile instruction to a config, as `docker import --change` does.
pub(crate) fn apply_change(c: &mut ContainerConfig, change: &str) -> Result<()> {
    let bad = |reason: &str| ImageError::InvalidChange {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = change.trim();
    let (instr, rest) = trimmed
        .split_once(|ch: char| ch.is_whitespace())
        .map(|(a, b)| (a, b.trim()))
        .unwrap_or((trimmed, ""));
    if rest.is_empty() {
        return Err(bad("missing arguments"));
    }
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => c.cmd = Some(command_form(rest)),
        "ENTRYPOINT" => c.entrypoint = Some(command_form(rest)),
        "SHELL" => {
            c.shell = Some(
                serde_json::from_str::<Vec<String>>(rest)
                    .map_err(|_| bad("SHELL needs a JSON array"))?,
            )
        }
        "WORKDIR" => c.working_dir = Some(rest.to_string()),
        "USER" => c.user = Some(rest.to_string()),
        "STOPSIGNAL" => c.stop_signal = Some(rest.to_string()),
        "ONBUILD" => c
            .on_build
            .get_or_insert_with(Vec::new)
            .push(rest.to_string()),
        "ENV" => {
            let env = c.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(rest).map_err(|r| bad(&r))? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = c.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(rest).map_err(|r| bad(&r))? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in rest.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let valid = !num.is_empty()
                    && num.split('-').all(|n| n.parse::<u16>().is_ok())
                    && matches!(proto, "tcp" | "udp" | "sctp");
                if !valid {
                    return Err(bad(&format!("invalid port {p:?}")));
                }
                ports.insert(format!("{num}/{proto}"), serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let vols = c.volumes.get_or_insert_with(BTreeMap::new);
            let list = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols.insert(v, serde_json::json!({}));
            }
        }
        other => {
            return Err(bad(&format!(
                "{other} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR"
            )));
        }
    }
    Ok(())
}

/// JSON (exec) form when it parses as a string array, else shell form.
fn command_form(rest: &str) -> Vec<String> {
    if rest.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(rest)
    {
        return v;
    }
    vec!["/bin/sh".to_string(), "-c".to_string(), rest.to_string()]
}

/// `K=V K2="v 2"` pairs, or the legacy `K V` form with one pair.
fn key_values(rest: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let words = shell_words(rest)?;
    if words.first().is_some_and(|w| !w.contains('=')) {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| "expected KEY=VALUE".to_string())?;
        return Ok(vec![(k.to_string(), unquote(v.trim()))]);
    }
    words
        .into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("{w:?} is not KEY=VALUE"))?;
            if k.is_empty() {
                return Err(format!("{w:?} has an empty key"));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn unquote(s: &str) -> String {
    shell_words(s)
        .ok()
        .filter(|w| w.len() == 1)
        .and_then(|w| w.into_iter().next())
        .unwrap_or_else(|| s.to_string())
}

/// Splits on whitespace, honouring double and single quotes and backslash escapes.
fn shell_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for ch in changes {
            apply_change(&mut c, ch).unwrap();
        }
        c
    }

    #[test]
    fn changes_like_docker_import() {
        let c = apply(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app --flag",
            "ENV A=1 B=\"two words\"",
            "ENV C 3 4",
            "ENV A=override",
            "WORKDIR /srv",
            "USER 1000:1000",
            "LABEL org.x=y z=\"w v\"",
            "EXPOSE 80 53/udp",
            "VOLUME /data",
        ]);
        assert_eq!(c.cmd.unwrap(), vec!["sh", "-c", "echo hi"]);
        assert_eq!(
            c.entrypoint.unwrap(),
            vec!["/bin/sh", "-c", "/bin/app --flag"]
        );
        assert_eq!(c.env.unwrap(), vec!["B=two words", "C=3 4", "A=override"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.labels.unwrap().get("z").map(String::as_str), Some("w v"));
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
        assert!(c.volumes.unwrap().contains_key("/data"));
    }

    #[test]
    fn bad_changes_are_refused() {
        let mut c = ContainerConfig::default();
        for bad in [
            "RUN ls",
            "CMD",
            "EXPOSE http",
            "ENV =x",
            "LABEL a=\"b",
            "SHELL sh",
        ] {
            let e = apply_change(&mut c, bad).unwrap_err().to_string();
            assert!(e.contains("invalid --change"), "{bad}: {e}");
        }
    }
}
