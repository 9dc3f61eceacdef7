//! Puts test content into a registry with plain distribution-spec requests (monolithic upload:
//! POST then PUT with the digest; PUT manifest).

// Test helpers: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hull_oci::Digest;
use hull_oci::media_type::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};

pub struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

/// An image made of one blob layer.
pub struct Pushed {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub layer: Vec<u8>,
    pub layer_digest: Digest,
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl Pusher {
    /// `auth` is a whole `Authorization` value (`Basic …` or `Bearer …`).
    pub fn new(host: &str, auth: Option<String>) -> Pusher {
        Pusher {
            http: reqwest::Client::new(),
            base: format!("http://{host}"),
            auth,
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.auth {
            Some(a) => rb.header("authorization", a),
            None => rb,
        }
    }

    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let resp = self
            .req(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            202,
            "starting upload: {:?}",
            resp.text().await
        );
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .req(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "finishing upload: {:?}",
            resp.text().await
        );
        digest
    }

    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let resp = self
            .req(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "putting manifest: {:?}",
            resp.text().await
        );
    }

    /// Pushes an OCI image whose single layer is `layer`, tagged `tag`.
    pub async fn image(&self, repo: &str, tag: &str, layer: Vec<u8>) -> Pushed {
        let layer_digest = self.blob(repo, &layer).await;
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
        }))
        .unwrap();
        let config_digest = self.blob(repo, &config).await;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        self.manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        Pushed {
            manifest_digest: Digest::sha256_of(&manifest),
            manifest,
            layer,
            layer_digest,
        }
    }
}
