//! HTTP basic authentication against an htpasswd file (bcrypt entries only, as distribution's
//! `auth.htpasswd` accepts): every request but `/metrics`, `/v2/` included, must carry valid
//! credentials, or gets `401 UNAUTHORIZED` with a `WWW-Authenticate: Basic` challenge.
//! ([`crate::token`] uses the same users for Docker's token flow, where the token endpoint
//! checks the credentials and `/v2/` wants signed tokens instead.)
//!
//! bcrypt is slow on purpose (tens of milliseconds per check), and clients send credentials
//! with every request: a successful check is remembered, keyed by a SHA-256 over user, password
//! and the stored hash, so that a changed password or hash never matches an old entry.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hull_oci::Digest;

/// Most remembered successful checks (cleared whole when full).
const MAX_CACHED: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading htpasswd file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("htpasswd line {line}: {reason}")]
    Line { line: usize, reason: &'static str },
}

/// Users and their bcrypt hashes.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Parses `user:hash` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Htpasswd, AuthError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason| AuthError::Line {
                line: i + 1,
                reason,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected user:hash"))?;
            if user.is_empty() {
                return Err(err("empty user name"));
            }
            if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                return Err(err("only bcrypt hashes are supported (htpasswd -B)"));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd { users })
    }

    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Htpasswd::parse(&text)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Basic authentication for a [`crate::Registry`].
#[derive(Clone, Debug)]
pub struct BasicAuth {
    realm: String,
    htpasswd: Arc<Htpasswd>,
    verified: Arc<Mutex<HashSet<Digest>>>,
}

impl BasicAuth {
    pub fn new(realm: impl Into<String>, htpasswd: Htpasswd) -> BasicAuth {
        BasicAuth {
            realm: realm.into(),
            htpasswd: Arc::new(htpasswd),
            verified: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\"", self.realm.replace('"', ""))
    }

    /// Whether an `Authorization` header value names a user with the right password.
    pub async fn check(&self, authorization: Option<&str>) -> bool {
        self.authenticate(authorization).await.is_some()
    }

    /// The user an `Authorization: Basic` header names, if the password is right.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Option<String> {
        let (user, pass) = authorization.and_then(decode_basic)?;
        self.check_password(&user, &pass).await.then_some(user)
    }

    /// Whether `pass` is `user`'s password. bcrypt's comparison is constant-time; the cache
    /// is keyed by a SHA-256 over the secret, so a lookup reveals nothing through timing.
    pub async fn check_password(&self, user: &str, pass: &str) -> bool {
        let Some(hash) = self.htpasswd.users.get(user).cloned() else {
            return false;
        };
        let key = Digest::sha256_of(format!("{user}\0{pass}\0{hash}").as_bytes());
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return true;
        }
        let pass = pass.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

/// `Basic base64(user:pass)` → `(user, pass)`.
fn decode_basic(v: &str) -> Option<(String, String)> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_files_parse() {
        let h = Htpasswd::parse("# users\n\nalice:$2y$05$abc\nbob:$2b$04$def\n").unwrap();
        assert_eq!(h.len(), 2);
        assert!(Htpasswd::parse("alice:{SHA}xyz").is_err());
        assert!(Htpasswd::parse("alice").is_err());
        assert!(Htpasswd::parse(":$2y$05$abc").is_err());
    }

    #[test]
    fn basic_headers_decode() {
        assert_eq!(
            decode_basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(decode_basic("Bearer abc"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
    }

    #[tokio::test]
    async fn passwords_are_checked_and_remembered() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new("r", Htpasswd::parse(&format!("u:{hash}")).unwrap());
        let header = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(auth.check(Some(&header("u", "secret"))).await);
        assert!(auth.check(Some(&header("u", "secret"))).await);
        assert!(!auth.check(Some(&header("u", "wrong"))).await);
        assert!(!auth.check(Some(&header("x", "secret"))).await);
        assert!(!auth.check(None).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
    }
}
