//! Docker's token authentication (distribution `docs/spec/auth/token.md`, `jwt.md`, `scope.md`),
//! with the registry as its own token server: `GET /token?service=…&scope=…` (several `scope`
//! parameters, each possibly several space-separated scopes; `account` is accepted and ignored,
//! the credentials decide) authenticates the caller with htpasswd basic auth, or answers an
//! anonymous caller, and returns an ES256 JWT carrying the `access` claim
//! (`[{type, name, actions}]`). `POST /token` with an OAuth2 form and `grant_type=password`
//! does the same (refresh tokens are not issued, so other grants are refused).
//!
//! What a token grants is the intersection of what was asked and what the rules allow, never
//! an error for asking too much (as Docker Hub). Rules ([`AccessRule`]) are a union: an account
//! gets every action of every rule that matches it and the resource. A rule's account is a user
//! name, `*` (any signed-in user) or the empty string (anyone, anonymous callers included:
//! signing in never takes a right away). With no rules at all, signed-in users may do anything
//! and anonymous callers nothing. `registry:catalog:search` (asked by Docker for search) is
//! granted to everyone, as search lists only what the caller may pull.
//!
//! Signing key: a PEM file (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, P-256) from the
//! configuration, or one kept in the registry storage under `_auth/token-keys/<kid>.pem`. The
//! first start on an empty storage generates one; replicas on one bucket that race to do so
//! each store their own under its own key id, and every replica validates a token by its `kid`
//! header, loading the public half of any stored key on demand, so no conditional write is
//! needed for them to accept each other's tokens. The stored key is as readable as the
//! registry's data.
//!
//! Validation checks the ES256 signature, `exp` and `nbf` with 60 s of leeway (distribution's),
//! `aud` (the service) and `iss`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::auth::{BasicAuth, Htpasswd};
use crate::names::RepoName;
use crate::storage::{Key, Prefix, RegistryStorage, StorageError};

pub const DEFAULT_SERVICE: &str = "hull-registry";
pub const DEFAULT_ISSUER: &str = "hull";
/// Docker Hub's and distribution's token lifetime.
pub const DEFAULT_EXPIRATION_SECS: u64 = 300;
/// Clock skew tolerated on `exp` and `nbf` (distribution's leeway).
pub const LEEWAY_SECS: u64 = 60;
/// Where generated signing keys are kept in the registry storage.
pub const KEYS_DIR: &str = "_auth/token-keys";

const REPOSITORY: &str = "repository";
const REGISTRY: &str = "registry";
const CATALOG: &str = "catalog";
const PULL: &str = "pull";
const PUSH: &str = "push";
const DELETE: &str = "delete";
const ALL: &str = "*";
const SEARCH: &str = "search";
/// Largest stored key object read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The `[token]` table of `hull serve`'s configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenConfig {
    /// The token endpoint URL challenges name; default `<scheme>://<Host header>/token`.
    pub realm: Option<String>,
    /// The `service` of challenges and the `aud` of tokens.
    pub service: String,
    /// The `iss` of tokens.
    pub issuer: String,
    /// A PEM P-256 private key to sign with; default: generated once, kept in the storage.
    pub signing_key: Option<PathBuf>,
    /// Token lifetime in seconds.
    pub expiration_secs: u64,
    /// Who may do what (see the module docs).
    pub access: Vec<AccessRule>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: DEFAULT_SERVICE.to_string(),
            issuer: DEFAULT_ISSUER.to_string(),
            signing_key: None,
            expiration_secs: DEFAULT_EXPIRATION_SECS,
            access: Vec::new(),
        }
    }
}

/// One `[[token.access]]` rule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessRule {
    /// A user name, `*` (any signed-in user) or `""` (anyone, anonymous included).
    pub account: String,
    /// `repository` (default) or `registry` (with name `catalog`, for `/v2/_catalog`).
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    /// A glob over repository names: `*` is any run of characters (`/` included), `?` one
    /// character; `${account}` stands for the signed-in user's name.
    #[serde(alias = "name")]
    pub repository: String,
    /// `pull`, `push`, `delete` or `*` (all of them); `*` for the catalog.
    pub actions: Vec<String>,
}

fn default_type() -> String {
    REPOSITORY.to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading token signing key {path}: {source}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token signing key {path}: {reason}")]
    BadKey { path: String, reason: String },
    #[error("token access rule {index} (account {account:?}): {reason}")]
    Rule {
        index: usize,
        account: String,
        reason: String,
    },
    #[error("token configuration: {0}")]
    Config(String),
    #[error("token signing keys in the registry storage: {0}")]
    Storage(#[from] StorageError),
    #[error("generating a token signing key failed")]
    Generate,
    #[error("signing a token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// One entry of a token's `access` claim, or one requested scope: `type:name:actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn new(kind: &str, name: &str, actions: &[&str]) -> Access {
        Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    /// Parses a `scope` value: space-separated `type[(class)]:name:action,action` entries
    /// (the name may hold colons, as `host:port/repo` does); malformed entries are skipped.
    pub fn parse_scopes(scope: &str) -> Vec<Access> {
        scope
            .split_whitespace()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                let kind = kind.split('(').next().unwrap_or(kind);
                if kind.is_empty() || name.is_empty() {
                    return None;
                }
                let actions: Vec<String> = actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect();
                Some(Access {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    actions,
                })
            })
            .collect()
    }

    /// `type:name:actions`, as challenges write a scope.
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// A token's claims (distribution's `ClaimSet`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The account, empty for an anonymous caller.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

impl Claims {
    /// Whether the token grants `action` on the resource.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == ALL)
        })
    }

    /// The signed-in account, `None` for an anonymous token.
    pub fn account(&self) -> Option<&str> {
        Some(self.sub.as_str()).filter(|s| !s.is_empty())
    }
}

/// A token as the token endpoint answers it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: SystemTime,
    pub claims: Claims,
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Present but not valid (signature, expiry, audience, issuer, unknown key).
    Invalid(String),
}

struct Signer {
    kid: String,
    key: EncodingKey,
}

/// Verification keys by id; when the signing key lives in storage, unknown ids are looked up
/// there (keys other replicas generated).
struct Verifiers {
    known: Mutex<HashMap<String, Arc<DecodingKey>>>,
    storage: Option<Arc<dyn RegistryStorage>>,
}

/// Token authentication for a [`crate::Registry`]: credentials, rules, keys. Cheap to clone.
#[derive(Clone)]
pub struct TokenAuth {
    inner: Arc<Inner>,
}

struct Inner {
    config: TokenConfig,
    basic: BasicAuth,
    signer: Signer,
    verifiers: Verifiers,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("service", &self.inner.config.service)
            .field("issuer", &self.inner.config.issuer)
            .field("kid", &self.inner.signer.kid)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key id of a public key: 32 hex characters of its SHA-256 (usable as a storage key
/// segment).
fn key_id(public: &[u8]) -> String {
    let d = hull_oci::Digest::sha256_of(public);
    d.hex().get(..32).unwrap_or(d.hex()).to_string()
}

/// The DER of the first PEM block of one of `labels`.
fn pem_block(text: &str, labels: &[&str]) -> Option<Vec<u8>> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = text.find(&begin) {
            let rest = text.get(start + begin.len()..)?;
            let stop = rest.find(&end)?;
            let b64: String = rest
                .get(..stop)?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            return base64::engine::general_purpose::STANDARD.decode(b64).ok();
        }
    }
    None
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A signer and the matching verifier from a PEM private key.
fn keys_from_pem(text: &str, path: &str) -> Result<(Signer, DecodingKey), TokenError> {
    let bad = |reason: &str| TokenError::BadKey {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let der = pem_block(text, &["PRIVATE KEY", "EC PRIVATE KEY"])
        .ok_or_else(|| bad("no PRIVATE KEY or EC PRIVATE KEY PEM block"))?;
    let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|e| bad(&format!("not an EC P-256 private key ({e})")))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| bad("the key cannot be re-encoded as PKCS#8"))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok((
        Signer {
            kid: key_id(&public),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        },
        DecodingKey::from_ec_der(&public),
    ))
}

fn keys_dir() -> Result<Key, StorageError> {
    Key::new(KEYS_DIR)
}

fn stored_key(kid: &str) -> Result<Key, StorageError> {
    keys_dir()?.join(&format!("{kid}.pem"))
}

fn is_kid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The storage's signing key: the first stored one in key order, else a new one stored.
async fn storage_signer(
    storage: &dyn RegistryStorage,
) -> Result<(Signer, DecodingKey), TokenError> {
    let prefix = Prefix::dir(&keys_dir()?);
    for attempt in 0..2 {
        for key in storage.list_after(&prefix, None, 16).await? {
            if !key.as_str().ends_with(".pem") {
                continue;
            }
            if let Some(bytes) = storage.get_bytes(&key, MAX_KEY_FILE).await? {
                let text = String::from_utf8_lossy(&bytes);
                return keys_from_pem(&text, key.as_str());
            }
        }
        if attempt == 0 {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| TokenError::Generate)?;
            let pkcs8 = pair.to_pkcs8v1().map_err(|_| TokenError::Generate)?;
            let kid = key_id(pair.public_key().as_ref());
            let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
            storage
                .put(&stored_key(&kid)?, Bytes::from(pem.into_bytes()))
                .await?;
            tracing::info!("generated token signing key {kid}");
        }
    }
    Err(TokenError::Config(format!(
        "no signing key readable under {KEYS_DIR} after storing one"
    )))
}

/// Go's-`path.Match`-like glob where `*` also crosses `/`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

fn repository_actions(actions: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in actions {
        if a == ALL {
            for x in [PULL, PUSH, DELETE, ALL] {
                out.insert(x.to_string());
            }
        } else {
            out.insert(a.clone());
        }
    }
    out
}

fn validate_rules(rules: &[AccessRule]) -> Result<(), TokenError> {
    for (i, r) in rules.iter().enumerate() {
        let err = |reason: String| TokenError::Rule {
            index: i + 1,
            account: r.account.clone(),
            reason,
        };
        let allowed: &[&str] = match r.kind.as_str() {
            REPOSITORY => &[PULL, PUSH, DELETE, ALL],
            REGISTRY => {
                if r.repository != CATALOG {
                    return Err(err(format!(
                        "a registry rule names `catalog`, not {:?}",
                        r.repository
                    )));
                }
                &[ALL, SEARCH]
            }
            other => {
                return Err(err(format!(
                    "unknown type {other:?} (repository or registry)"
                )));
            }
        };
        if r.repository.is_empty() {
            return Err(err("empty repository pattern".into()));
        }
        for a in &r.actions {
            if !allowed.contains(&a.as_str()) {
                return Err(err(format!(
                    "unknown action {a:?} (expected one of {})",
                    allowed.join(", ")
                )));
            }
        }
    }
    Ok(())
}

impl TokenAuth {
    /// Token auth over `htpasswd`'s users; the signing key is loaded from the configured file
    /// or from `storage` (generated there on first use).
    pub async fn new(
        config: TokenConfig,
        htpasswd: Htpasswd,
        storage: Arc<dyn RegistryStorage>,
    ) -> Result<TokenAuth, TokenError> {
        // Only aws-lc is compiled in; installing it explicitly keeps another crate's
        // `rust_crypto` feature from making the default ambiguous.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        );
        validate_rules(&config.access)?;
        if config.service.is_empty() || config.issuer.is_empty() {
            return Err(TokenError::Config(
                "service and issuer must not be empty".into(),
            ));
        }
        if config.expiration_secs == 0 {
            return Err(TokenError::Config(
                "expiration-secs must be at least 1".into(),
            ));
        }
        let ((signer, verifier), from_storage) = match &config.signing_key {
            Some(path) => {
                let text = fs_read(path).await?;
                (keys_from_pem(&text, &path.display().to_string())?, None)
            }
            None => (storage_signer(&*storage).await?, Some(storage)),
        };
        let mut known = HashMap::new();
        known.insert(signer.kid.clone(), Arc::new(verifier));
        Ok(TokenAuth {
            inner: Arc::new(Inner {
                basic: BasicAuth::new(config.service.clone(), htpasswd),
                config,
                signer,
                verifiers: Verifiers {
                    known: Mutex::new(known),
                    storage: from_storage,
                },
            }),
        })
    }

    pub fn config(&self) -> &TokenConfig {
        &self.inner.config
    }

    /// The id (`kid` header) of the key tokens are signed with.
    pub fn key_id(&self) -> &str {
        &self.inner.signer.kid
    }

    /// The realm challenges name: the configured one, else the token endpoint of the host the
    /// client spoke to.
    pub fn realm(&self, host: Option<&str>, https: bool) -> String {
        if let Some(r) = &self.inner.config.realm {
            return r.clone();
        }
        let host = host
            .filter(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            })
            .unwrap_or("localhost");
        let scheme = if https { "https" } else { "http" };
        format!("{scheme}://{host}/token")
    }

    /// A `WWW-Authenticate: Bearer` value.
    pub fn challenge(&self, realm: &str, scope: &[Access], error: Option<&str>) -> String {
        let mut s = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            realm.replace('"', ""),
            self.inner.config.service.replace('"', "")
        );
        if !scope.is_empty() {
            let scopes: Vec<String> = scope.iter().map(Access::scope).collect();
            s.push_str(&format!(",scope=\"{}\"", scopes.join(" ").replace('"', "")));
        }
        if let Some(e) = error {
            s.push_str(&format!(",error=\"{e}\""));
        }
        s
    }

    /// The signed-in user an `Authorization: Basic` header names with the right password;
    /// `Ok(None)` without such a header (anonymous), `Err(())` for wrong credentials.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Option<String>, ()> {
        match authorization {
            Some(v)
                if v.trim_start()
                    .get(..6)
                    .is_some_and(|s| s.eq_ignore_ascii_case("basic ")) =>
            {
                self.inner
                    .basic
                    .authenticate(Some(v))
                    .await
                    .map(Some)
                    .ok_or(())
            }
            _ => Ok(None),
        }
    }

    /// Whether `user` and `password` are valid credentials.
    pub async fn check_password(&self, user: &str, password: &str) -> bool {
        self.inner.basic.check_password(user, password).await
    }

    /// The actions the rules allow `account` (`None`: anonymous) on a resource.
    pub fn allowed(&self, account: Option<&str>, kind: &str, name: &str) -> BTreeSet<String> {
        let rules = &self.inner.config.access;
        let mut out = BTreeSet::new();
        match kind {
            REPOSITORY => {
                if RepoName::parse(name).is_none() {
                    return out;
                }
                if rules.is_empty() {
                    if account.is_some() {
                        out = repository_actions(&[ALL.to_string()]);
                    }
                    return out;
                }
                for r in rules.iter().filter(|r| r.kind == REPOSITORY) {
                    if rule_matches(r, account, name) {
                        out.extend(repository_actions(&r.actions));
                    }
                }
            }
            REGISTRY if name == CATALOG => {
                out.insert(SEARCH.to_string());
                if rules.is_empty() {
                    if account.is_some() {
                        out.insert(ALL.to_string());
                    }
                    return out;
                }
                for r in rules.iter().filter(|r| r.kind == REGISTRY) {
                    if rule_matches(r, account, name) {
                        out.extend(r.actions.iter().cloned());
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Whether `account` may pull `name` (search lists only those).
    pub fn may_pull(&self, account: Option<&str>, name: &RepoName) -> bool {
        self.allowed(account, REPOSITORY, name.as_str())
            .contains(PULL)
    }

    /// What a token for `account` asking `requested` carries: the intersection with what the
    /// rules allow, resources repeated in `requested` merged.
    pub fn grant(&self, account: Option<&str>, requested: &[Access]) -> Vec<Access> {
        let mut out: Vec<Access> = Vec::new();
        for req in requested {
            let allowed = self.allowed(account, &req.kind, &req.name);
            let actions: Vec<String> = req
                .actions
                .iter()
                .filter(|a| allowed.contains(*a))
                .cloned()
                .collect();
            if actions.is_empty() {
                continue;
            }
            match out
                .iter_mut()
                .find(|a| a.kind == req.kind && a.name == req.name)
            {
                Some(a) => {
                    for x in actions {
                        if !a.actions.contains(&x) {
                            a.actions.push(x);
                        }
                    }
                }
                None => out.push(Access {
                    kind: req.kind.clone(),
                    name: req.name.clone(),
                    actions,
                }),
            }
        }
        out
    }

    /// Signs a token for `account` granting what the rules allow of `requested`.
    pub fn issue(
        &self,
        account: Option<&str>,
        requested: &[Access],
    ) -> Result<IssuedToken, TokenError> {
        let access = self.grant(account, requested);
        let now = now_secs();
        let cfg = &self.inner.config;
        let claims = Claims {
            iss: cfg.issuer.clone(),
            sub: account.unwrap_or_default().to_string(),
            aud: cfg.service.clone(),
            exp: now.saturating_add(cfg.expiration_secs),
            nbf: now.saturating_sub(1),
            iat: now,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            access,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.inner.signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.inner.signer.key)
            .map_err(TokenError::Sign)?;
        Ok(IssuedToken {
            token,
            expires_in: cfg.expiration_secs,
            issued_at: UNIX_EPOCH + Duration::from_secs(now),
            claims,
        })
    }

    /// The claims of a valid token (signature, `exp`/`nbf` with leeway, `aud`, `iss`).
    pub async fn validate(&self, token: &str) -> Result<Claims, BearerError> {
        let invalid = |s: String| BearerError::Invalid(s);
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("malformed: {e}")))?;
        if header.alg != Algorithm::ES256 {
            return Err(invalid(format!("algorithm {:?} is not ES256", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("no key id (kid)".into()))?;
        let key = self.verifier(&kid).await?;
        let cfg = &self.inner.config;
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_audience(&[cfg.service.as_str()]);
        v.set_issuer(&[cfg.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The claims of an `Authorization: Bearer` header's token.
    pub async fn bearer(&self, authorization: Option<&str>) -> Result<Claims, BearerError> {
        let v = authorization.ok_or(BearerError::Missing)?.trim();
        let (scheme, token) = v.split_once(' ').ok_or(BearerError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Missing);
        }
        self.validate(token.trim()).await
    }

    async fn verifier(&self, kid: &str) -> Result<Arc<DecodingKey>, BearerError> {
        let verifiers = &self.inner.verifiers;
        if let Some(k) = lock(&verifiers.known).get(kid) {
            return Ok(Arc::clone(k));
        }
        let unknown = || BearerError::Invalid(format!("unknown signing key {kid:?}"));
        let storage = verifiers.storage.as_ref().ok_or_else(unknown)?;
        if !is_kid(kid) {
            return Err(unknown());
        }
        let key = stored_key(kid).map_err(|_| unknown())?;
        let bytes = match storage.get_bytes(&key, MAX_KEY_FILE).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(unknown()),
            Err(e) => {
                tracing::warn!("loading token key {kid}: {e}");
                return Err(unknown());
            }
        };
        let (signer, decoding) = keys_from_pem(&String::from_utf8_lossy(&bytes), key.as_str())
            .map_err(|e| BearerError::Invalid(e.to_string()))?;
        if signer.kid != kid {
            return Err(unknown());
        }
        let decoding = Arc::new(decoding);
        lock(&verifiers.known).insert(kid.to_string(), Arc::clone(&decoding));
        Ok(decoding)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn fs_read(path: &std::path::Path) -> Result<String, TokenError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| TokenError::ReadKey {
            path: path.display().to_string(),
            source,
        })
}

fn rule_matches(r: &AccessRule, account: Option<&str>, name: &str) -> bool {
    let account_ok = match r.account.as_str() {
        "" => true,
        "*" => account.is_some(),
        a => account == Some(a),
    };
    if !account_ok {
        return false;
    }
    let pattern = if r.repository.contains("${account}") {
        match account {
            Some(a) => r.repository.replace("${account}", a),
            None => return false,
        }
    } else {
        r.repository.clone()
    };
    glob(pattern.as_bytes(), name.as_bytes())
}

/// The JSON body of a token reply (distribution's token spec, with OAuth2's `access_token`).
pub fn reply_json(t: &IssuedToken) -> String {
    let issued_at = jiff::Timestamp::try_from(t.issued_at)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    serde_json::json!({
        "token": t.token,
        "access_token": t.token,
        "expires_in": t.expires_in,
        "issued_at": issued_at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(account: &str, repo: &str, actions: &[&str]) -> AccessRule {
        AccessRule {
            account: account.into(),
            kind: REPOSITORY.into(),
            repository: repo.into(),
            actions: actions.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    async fn auth(rules: Vec<AccessRule>) -> TokenAuth {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn RegistryStorage> =
            Arc::new(crate::FsStorage::open(dir.path()).await.unwrap());
        let config = TokenConfig {
            access: rules,
            ..TokenConfig::default()
        };
        TokenAuth::new(config, Htpasswd::default(), storage)
            .await
            .unwrap()
    }

    #[test]
    fn scopes_parse() {
        let s = Access::parse_scopes(
            "repository:a/b:pull,push repository(plugin):c:pull registry:catalog:* bad",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], Access::new("repository", "a/b", &["pull", "push"]));
        assert_eq!(s[1], Access::new("repository", "c", &["pull"]));
        assert_eq!(s[2].scope(), "registry:catalog:*");
        let s = Access::parse_scopes("repository:localhost:5000/x:pull");
        assert_eq!(s[0].name, "localhost:5000/x");
    }

    #[test]
    fn config_reads_kebab_case_and_docker_names() {
        let c: TokenConfig = serde_json::from_str(
            r#"{"realm": "https://r.example/token", "expiration-secs": 60,
                "signing-key": "/k.pem",
                "access": [
                  {"account": "", "repository": "public/*", "actions": ["pull"]},
                  {"account": "admin", "type": "registry", "name": "catalog", "actions": ["*"]}
                ]}"#,
        )
        .unwrap();
        assert_eq!(c.service, DEFAULT_SERVICE);
        assert_eq!(c.expiration_secs, 60);
        assert_eq!(c.access[0].kind, "repository");
        assert_eq!(c.access[1].repository, "catalog");
        assert!(serde_json::from_str::<TokenConfig>(r#"{"expiry": 1}"#).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob(b"team/*", b"team/a"));
        assert!(glob(b"team/*", b"team/a/b"));
        assert!(!glob(b"team/*", b"other/a"));
        assert!(glob(b"*", b"x"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*-dev", b"team/app-dev"));
        assert!(!glob(b"app", b"app2"));
    }

    #[tokio::test]
    async fn grants_are_the_intersection_of_asked_and_allowed() {
        let a = auth(vec![
            rule("alice", "*", &["*"]),
            rule("*", "team/*", &["pull"]),
            rule("", "public/*", &["pull"]),
            rule("*", "home/${account}/*", &["pull", "push"]),
        ])
        .await;
        let ask = |n: &str| vec![Access::new("repository", n, &["pull", "push"])];
        assert_eq!(
            a.grant(Some("alice"), &ask("x"))[0].actions,
            vec!["pull", "push"]
        );
        assert_eq!(
            a.grant(Some("bob"), &ask("team/x"))[0].actions,
            vec!["pull"]
        );
        assert!(a.grant(Some("bob"), &ask("x")).is_empty());
        assert!(a.grant(None, &ask("team/x")).is_empty());
        assert_eq!(a.grant(None, &ask("public/x"))[0].actions, vec!["pull"]);
        assert_eq!(
            a.grant(Some("bob"), &ask("public/x"))[0].actions,
            vec!["pull"]
        );
        assert_eq!(
            a.grant(Some("bob"), &ask("home/bob/app"))[0].actions,
            vec!["pull", "push"]
        );
        assert!(a.grant(Some("bob"), &ask("home/carol/app")).is_empty());
        // The catalog needs a registry rule; search is everyone's.
        let cat = [Access::new("registry", "catalog", &["*", "search"])];
        assert_eq!(a.grant(Some("alice"), &cat)[0].actions, vec!["search"]);
    }

    #[tokio::test]
    async fn without_rules_signed_in_users_get_everything() {
        let a = auth(vec![]).await;
        let ask = [
            Access::new("repository", "x", &["pull", "push", "delete"]),
            Access::new("registry", "catalog", &["*"]),
        ];
        assert_eq!(a.grant(Some("u"), &ask), ask.to_vec());
        assert!(a.grant(None, &ask).is_empty());
    }

    #[tokio::test]
    async fn tokens_round_trip_and_keys_persist() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn RegistryStorage> =
            Arc::new(crate::FsStorage::open(dir.path()).await.unwrap());
        let a = TokenAuth::new(
            TokenConfig::default(),
            Htpasswd::default(),
            Arc::clone(&storage),
        )
        .await
        .unwrap();
        let t = a
            .issue(Some("u"), &[Access::new("repository", "x", &["pull"])])
            .unwrap();
        let c = a.validate(&t.token).await.unwrap();
        assert_eq!(c.sub, "u");
        assert!(c.allows("repository", "x", "pull"));
        assert!(!c.allows("repository", "x", "push"));
        // A second instance on the same storage signs with the same key.
        let b = TokenAuth::new(TokenConfig::default(), Htpasswd::default(), storage)
            .await
            .unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert!(b.validate(&t.token).await.is_ok());
        // Another service refuses it.
        let other_dir = tempfile::tempdir().unwrap();
        let other = TokenAuth::new(
            TokenConfig::default(),
            Htpasswd::default(),
            Arc::new(crate::FsStorage::open(other_dir.path()).await.unwrap()),
        )
        .await
        .unwrap();
        assert!(matches!(
            other.validate(&t.token).await,
            Err(BearerError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn bad_rules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn RegistryStorage> =
            Arc::new(crate::FsStorage::open(dir.path()).await.unwrap());
        let config = TokenConfig {
            access: vec![rule("a", "x", &["pul"])],
            ..TokenConfig::default()
        };
        let e = TokenAuth::new(config, Htpasswd::default(), storage)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unknown action \"pul\""), "{e}");
    }

    #[test]
    fn pem_round_trips() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pem = pem_encode("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref());
        let (signer, _) = keys_from_pem(&pem, "k.pem").unwrap();
        assert_eq!(signer.kid, key_id(pair.public_key().as_ref()));
        assert!(keys_from_pem("nothing", "k.pem").is_err());
    }
}
