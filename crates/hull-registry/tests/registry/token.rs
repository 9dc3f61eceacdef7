//! Docker's token flow: hull's own client and skopeo through `/token`, per-repository rules,
//! refused tokens, challenges, and mounts that need pull on their source.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hull_distribution::{
    BlobFile, BlobOptions, ClientConfig, DistributionError, RegistryClient, UploadOptions,
    credentials,
};
use hull_oci::{Digest, Reference, media_type as mt};
use hull_registry::{AccessRule, Htpasswd, Registry, TokenAuth, TokenConfig};
use hull_test::fixtures::{self, FixtureName};

use crate::support::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn rule(account: &str, kind: &str, repository: &str, actions: &[&str]) -> AccessRule {
    AccessRule {
        account: account.into(),
        kind: kind.into(),
        repository: repository.into(),
        actions: actions.iter().map(|a| (*a).to_string()).collect(),
    }
}

/// alice may do anything and list the catalog; any signed-in user may pull `team/*`; bob may
/// pull and push `bob/*`; anyone may pull `public/*`.
fn rules() -> Vec<AccessRule> {
    vec![
        rule("alice", "repository", "*", &["*"]),
        rule("alice", "registry", "catalog", &["*"]),
        rule("*", "repository", "team/*", &["pull"]),
        rule("bob", "repository", "bob/*", &["pull", "push"]),
        rule("", "repository", "public/*", &["pull"]),
    ]
}

fn token_server(dir: &Path, key: Option<PathBuf>) -> TestServer {
    let users = htpasswd_text(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let config = TokenConfig {
        access: rules(),
        signing_key: key,
        ..TokenConfig::default()
    };
    TestServer::start_custom(dir, move |storage| async move {
        let token = TokenAuth::new(
            config,
            Htpasswd::parse(&users).unwrap(),
            Arc::clone(&storage),
        )
        .await
        .unwrap();
        Registry::builder(storage).token_auth(Some(token)).build()
    })
}

fn get(url: &str, token: &str) -> reqwest::blocking::Response {
    client().get(url).bearer_auth(token).send().unwrap()
}

/// Pushes `data` as a blob of `repo` with a token; returns its digest.
fn push_blob_as(base: &str, repo: &str, data: &[u8], token: &str) -> Digest {
    let d = Digest::sha256_of(data);
    let resp = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .bearer_auth(token)
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "pushing blob to {repo}");
    d
}

fn skopeo_push(layout: &Path, tag: &str, dest: &str, creds: &str) -> anyhow::Result<String> {
    let mut cmd = hull_test::peers::skopeo();
    cmd.args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ])
    .args(["--dest-creds", creds])
    .arg(format!("oci:{}:{tag}", layout.display()))
    .arg(format!("docker://{dest}"));
    hull_test::peers::run(&mut cmd)
}

fn skopeo_inspect(reference: &str, creds: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = hull_test::peers::skopeo();
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    match creds {
        Some(c) => cmd.args(["--creds", c]),
        None => cmd.arg("--no-creds"),
    };
    cmd.arg(format!("docker://{reference}"));
    hull_test::peers::run(&mut cmd)
}

#[test]
fn skopeo_pushes_and_pulls_through_the_token_flow_by_the_rules() {
    hull_test::require_bin!("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path(), None);
    let host = server.host();
    let (layout, tag) = fixtures::layout(FixtureName::BusyboxOci).unwrap();
    let want = layout_digest(&layout, &tag);

    skopeo_push(
        &layout,
        &tag,
        &format!("{host}/team/busybox:{tag}"),
        "alice:alice-pw",
    )
    .unwrap();
    skopeo_push(
        &layout,
        &tag,
        &format!("{host}/public/busybox:{tag}"),
        "alice:alice-pw",
    )
    .unwrap();

    // bob may pull team/* and copies it out whole.
    let out = tempfile::tempdir().unwrap();
    let mut copy = hull_test::peers::skopeo();
    copy.args(["copy", "--quiet", "--src-tls-verify=false"])
        .args(["--src-creds", "bob:bob-pw"])
        .arg(format!("docker://{host}/team/busybox:{tag}"))
        .arg(format!("dir:{}", out.path().display()));
    hull_test::peers::run(&mut copy).unwrap();
    let m = std::fs::read(out.path().join("manifest.json")).unwrap();
    assert_eq!(Digest::sha256_of(&m), want);

    // bob may not push team/*: skopeo fails and nothing of the repository is stored.
    let err = skopeo_push(
        &layout,
        &tag,
        &format!("{host}/team/other:{tag}"),
        "bob:bob-pw",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.to_lowercase().contains("unauthorized")
            || err.contains("401")
            || err.contains("denied"),
        "{err}"
    );
    for leftover in [
        "objects/catalog/team/other",
        "objects/repositories/team/other",
    ] {
        assert!(
            !dir.path().join(leftover).exists(),
            "{leftover} was written"
        );
    }
    // bob may push his own namespace.
    skopeo_push(
        &layout,
        &tag,
        &format!("{host}/bob/busybox:{tag}"),
        "bob:bob-pw",
    )
    .unwrap();

    // Anonymous callers may pull public/* and nothing else.
    let raw = skopeo_inspect(&format!("{host}/public/busybox:{tag}"), None).unwrap();
    assert_eq!(Digest::sha256_of(raw.as_bytes()), want);
    let err = skopeo_inspect(&format!("{host}/team/busybox:{tag}"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );
    // Wrong password: refused by the token endpoint.
    assert!(skopeo_inspect(&format!("{host}/team/busybox:{tag}"), Some("bob:nope")).is_err());
}

fn hull_client(config_dir: &Path, host: &str, user: &str, pass: &str) -> RegistryClient {
    credentials::store(config_dir, host, &credentials::Credential::new(user, pass)).unwrap();
    RegistryClient::new(ClientConfig {
        docker_config_dir: Some(config_dir.to_path_buf()),
        retry_base_delay: Duration::from_millis(10),
        max_retries: 2,
        ..ClientConfig::default()
    })
    .unwrap()
}

#[test]
fn hull_client_pushes_and_pulls_through_the_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path(), None);
    let host = server.host();
    let files = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let alice = hull_client(&files.path().join("alice"), &host, "alice", "alice-pw");
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer = b"token layer".to_vec();
        let repo = Reference::parse(&format!("{host}/team/app:v1")).unwrap();
        for data in [&config, &layer] {
            let path = files.path().join(Digest::sha256_of(data).hex());
            std::fs::write(&path, data).unwrap();
            alice
                .push_blob(
                    &repo,
                    BlobFile {
                        digest: &Digest::sha256_of(data),
                        size: data.len() as u64,
                        path: &path,
                    },
                    &[],
                    &UploadOptions::default(),
                    None,
                )
                .await
                .unwrap();
        }
        let manifest = image_manifest(&config, &[&layer]);
        let d = alice
            .put_manifest(&repo, mt::OCI_MANIFEST, manifest.clone().into())
            .await
            .unwrap();
        assert_eq!(d, Digest::sha256_of(&manifest));

        // bob pulls (team/* is readable by any signed-in user) and gets the same bytes.
        let bob = hull_client(&files.path().join("bob"), &host, "bob", "bob-pw");
        let got = bob.get_manifest(&repo).await.unwrap();
        assert_eq!(got.digest, d);
        let mut stream = bob
            .get_blob(&repo, &Digest::sha256_of(&layer), 0, BlobOptions::default())
            .await
            .unwrap();
        let mut bytes = Vec::new();
        use futures_util::StreamExt as _;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(bytes, layer);

        // bob may not push there: the registry denies it, the tag is unchanged.
        let other = Reference::parse(&format!("{host}/team/app:v2")).unwrap();
        let err = bob
            .put_manifest(&other, mt::OCI_MANIFEST, manifest.clone().into())
            .await
            .unwrap_err();
        assert!(
            matches!(err, DistributionError::Denied { .. }),
            "unexpected error: {err}"
        );
        assert!(bob.get_manifest(&other).await.unwrap_err().is_not_found());

        // Wrong credentials are named as such.
        let mallory = hull_client(&files.path().join("m"), &host, "bob", "wrong");
        let err = mallory.get_manifest(&repo).await.unwrap_err();
        assert!(
            matches!(err, DistributionError::CredentialsRefused { .. }),
            "unexpected error: {err}"
        );
    });
}

/// The JWT parts of a token, decoded: (header, claims).
fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    (
        serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap(),
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap(),
    )
}

#[test]
fn token_endpoint_answers_as_the_spec_and_grants_the_intersection() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path(), None);
    let base = server.url();
    let resp = client()
        .get(format!(
            "{base}/token?{}",
            form(&[
                ("service", "hull-registry"),
                ("scope", "repository:team/x:pull,push,delete"),
                ("scope", "repository:bob/y:push repository:public/z:pull"),
                ("scope", "registry:catalog:*"),
                ("account", "bob"),
            ])
        ))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    let issued: jiff::Timestamp = body["issued_at"].as_str().unwrap().parse().unwrap();
    assert!((jiff::Timestamp::now().as_second() - issued.as_second()).abs() < 60);
    let (header, claims) = decode(token);
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string());
    assert_eq!(claims["iss"], "hull");
    assert_eq!(claims["aud"], "hull-registry");
    assert_eq!(claims["sub"], "bob");
    for c in ["exp", "nbf", "iat"] {
        assert!(claims[c].is_u64(), "{c}");
    }
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        claims["access"],
        serde_json::json!([
            {"type": "repository", "name": "team/x", "actions": ["pull"]},
            {"type": "repository", "name": "bob/y", "actions": ["push"]},
            {"type": "repository", "name": "public/z", "actions": ["pull"]},
        ])
    );
    // Anonymous: only the anonymous rule.
    let anon = fetch_token(
        &base,
        None,
        &["repository:team/x:pull", "repository:public/z:pull"],
    );
    let (_, claims) = decode(&anon);
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "public/z", "actions": ["pull"]}])
    );
    // Wrong password and foreign service are refused.
    let resp = client()
        .get(format!("{base}/token"))
        .basic_auth("bob", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(format!("{base}/token?service=elsewhere"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The OAuth2 password grant.
    let resp = client()
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-pw"),
            ("service", "hull-registry"),
            ("scope", "repository:any/thing:pull,push"),
        ]))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    let (_, claims) = decode(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
}

#[test]
fn challenges_name_realm_service_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path(), None);
    let base = server.url();
    let realm = format!("http://{}/token", server.host());
    let resp = client().get(format!("{base}/v2/")).send().unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(&resp, "www-authenticate").unwrap(),
        format!("Bearer realm=\"{realm}\",service=\"hull-registry\"")
    );
    assert_eq!(error_code(resp), "UNAUTHORIZED");
    let resp = client()
        .get(format!("{base}/v2/team/x/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(
        header(&resp, "www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"{realm}\",service=\"hull-registry\",scope=\"repository:team/x:pull\""
        )
    );
    // A pull token is not enough to push: insufficient_scope, naming what the push needs.
    let pull = fetch_token(
        &base,
        Some(("bob", "bob-pw")),
        &["repository:team/x:pull,push"],
    );
    assert_eq!(get(&format!("{base}/v2/"), &pull).status(), 200);
    assert_eq!(
        get(&format!("{base}/v2/team/x/tags/list"), &pull).status(),
        404,
        "a granted pull reaches the handler"
    );
    let resp = client()
        .put(format!("{base}/v2/team/x/manifests/v1"))
        .bearer_auth(&pull)
        .header("content-type", mt::OCI_MANIFEST)
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(&resp, "www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"{realm}\",service=\"hull-registry\",scope=\"repository:team/x:pull,push\",error=\"insufficient_scope\""
        )
    );
    // Deletes need `delete`; the catalog `registry:catalog:*`.
    let resp = client()
        .delete(format!("{base}/v2/team/x/manifests/v1"))
        .bearer_auth(&pull)
        .send()
        .unwrap();
    assert!(
        header(&resp, "www-authenticate")
            .unwrap()
            .contains("repository:team/x:delete")
    );
    let resp = get(&format!("{base}/v2/_catalog"), &pull);
    assert_eq!(resp.status(), 401);
    assert!(
        header(&resp, "www-authenticate")
            .unwrap()
            .contains("registry:catalog:*")
    );
    let cat = fetch_token(&base, Some(("alice", "alice-pw")), &["registry:catalog:*"]);
    assert_eq!(get(&format!("{base}/v2/_catalog"), &cat).status(), 200);
    // The realm follows the Host header when none is configured.
    let resp = client()
        .get(format!("{base}/v2/"))
        .header("host", "registry.example:8443")
        .send()
        .unwrap();
    assert!(
        header(&resp, "www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"http://registry.example:8443/token\"")
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn tampered_expired_and_foreign_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let key_path = dir.path().join("token-key.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let server = token_server(&data, Some(key_path));
    let base = server.url();
    let url = format!("{base}/v2/team/x/tags/list");
    let valid = fetch_token(&base, Some(("bob", "bob-pw")), &["repository:team/x:pull"]);
    assert_eq!(
        get(&url, &valid).status(),
        404,
        "the valid token is accepted"
    );
    let (header_json, claims) = decode(&valid);
    let kid = header_json["kid"].as_str().unwrap().to_string();

    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
    let mint = |claims: &serde_json::Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, claims, &encoding).unwrap()
    };
    let refused = |token: &str, what: &str| {
        let resp = get(&url, token);
        assert_eq!(resp.status(), 401, "{what}");
        assert!(
            header(&resp, "www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{what}"
        );
    };
    // A token minted here with the same claims is accepted: what follows fails for its defect.
    assert_eq!(get(&url, &mint(&claims)).status(), 404);

    // Tampered: claims changed after signing.
    let mut broader = claims.clone();
    broader["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(serde_json::to_vec(&broader).unwrap()),
        parts[2]
    );
    refused(&tampered, "tampered");
    // Signature of another token.
    let other = fetch_token(
        &base,
        Some(("alice", "alice-pw")),
        &["repository:team/x:pull"],
    );
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.split('.').nth(2).unwrap()
    );
    assert_eq!(get(&url, &spliced).status(), 401, "spliced signature");

    let t = now();
    let mut expired = claims.clone();
    expired["exp"] = (t - 3600).into();
    expired["nbf"] = (t - 7200).into();
    expired["iat"] = (t - 7200).into();
    refused(&mint(&expired), "expired");
    let mut early = claims.clone();
    early["nbf"] = (t + 3600).into();
    refused(&mint(&early), "not yet valid");
    let mut foreign = claims.clone();
    foreign["aud"] = "another-registry".into();
    refused(&mint(&foreign), "wrong audience");
    let mut issuer = claims.clone();
    issuer["iss"] = "someone-else".into();
    refused(&mint(&issuer), "wrong issuer");
    // Unsigned.
    let none = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    refused(&none, "alg none");
    // Signed by another registry's key.
    let elsewhere_dir = tempfile::tempdir().unwrap();
    let elsewhere = token_server(elsewhere_dir.path(), None);
    let foreign_token = fetch_token(
        &elsewhere.url(),
        Some(("bob", "bob-pw")),
        &["repository:team/x:pull"],
    );
    refused(&foreign_token, "another registry's token");
    refused("garbage", "not a JWT");
}

#[test]
fn replicas_on_one_storage_accept_each_others_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let a = token_server(dir.path(), None);
    let b = token_server(dir.path(), None);
    let token = fetch_token(
        &a.url(),
        Some(("bob", "bob-pw")),
        &["repository:team/x:pull"],
    );
    assert_eq!(get(&format!("{}/v2/", b.url()), &token).status(), 200);
    let keys = std::fs::read_dir(dir.path().join("objects/_auth/token-keys"))
        .unwrap()
        .count();
    assert_eq!(keys, 1, "the second replica reuses the stored key");
}

#[test]
fn mounts_need_pull_on_the_source_repository() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path(), None);
    let base = server.url();
    let alice = fetch_token(
        &base,
        Some(("alice", "alice-pw")),
        &[
            "repository:alice/src:pull,push",
            "repository:team/base:pull,push",
            "repository:alice/dst:pull,push",
        ],
    );
    let secret = push_blob_as(&base, "alice/src", b"alice's private layer", &alice);
    let shared = push_blob_as(&base, "team/base", b"a team layer", &alice);

    let bob = fetch_token(
        &base,
        Some(("bob", "bob-pw")),
        &[
            "repository:bob/app:pull,push",
            "repository:alice/src:pull",
            "repository:team/base:pull",
        ],
    );
    let mount = |token: &str, to: &str, d: &Digest, from: &str| {
        client()
            .post(format!(
                "{base}/v2/{to}/blobs/uploads/?mount={d}&from={from}"
            ))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    // Without pull on alice/src the mount becomes a plain upload and links nothing.
    let resp = mount(&bob, "bob/app", &secret, "alice/src");
    assert_eq!(resp.status(), 202);
    assert!(
        header(&resp, "location")
            .unwrap()
            .contains("/v2/bob/app/blobs/uploads/")
    );
    let resp = client()
        .head(format!("{base}/v2/bob/app/blobs/{secret}"))
        .bearer_auth(&bob)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404, "the blob leaked into bob/app");
    // With pull on the source it mounts.
    assert_eq!(mount(&bob, "bob/app", &shared, "team/base").status(), 201);
    assert_eq!(
        mount(&alice, "alice/dst", &secret, "alice/src").status(),
        201
    );
    let resp = get(&format!("{base}/v2/bob/app/blobs/{shared}"), &bob);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), b"a team layer");
}
