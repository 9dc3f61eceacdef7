//! Docker's credential configuration (`config.json` in `$DOCKER_CONFIG` or `~/.docker`):
//! `auths` entries (base64 `user:pass` in `auth`, or an `identitytoken`), a default helper in
//! `credsStore`, and per-registry helpers in `credHelpers` (`docker-credential-<name>` speaking
//! the docker-credential-helpers protocol: `get`/`store`/`erase`, JSON on stdin and stdout).
//!
//! Lookup order is Docker's: a registry's `credHelpers` entry, then `credsStore`, then `auths`.
//! Writes keep every field hull does not know and are atomic (temp file, fsync, rename, 0600).
//!
//! Written here rather than taken from the `docker_credential` crate: that crate only reads, and its
//! errors name neither the file nor the helper, which `hull login` needs for its messages.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

/// The key Docker uses for Docker Hub in `auths` and with helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// The username helpers report for an identity (refresh) token rather than a password.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";
const CONFIG_FILE: &str = "config.json";
/// config.json and helper replies are small; a bigger one is not a Docker config.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running credential helper {program}")]
    HelperSpawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper {program} {action} for {server} failed: {reason}")]
    Helper {
        program: String,
        action: &'static str,
        server: String,
        reason: String,
    },
}

/// A username and its secret (a password, or an identity token when the username is
/// [`IDENTITY_TOKEN_USERNAME`]). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret: String,
}

impl Credential {
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Credential {
        Credential {
            username: username.into(),
            secret: secret.into(),
        }
    }

    /// Whether `secret` is an identity token (exchanged with the OAuth2 refresh-token grant).
    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USERNAME
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `$DOCKER_CONFIG`, else `~/.docker`; `None` when neither can be known.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker"))
}

/// The key a registry is stored under: Docker Hub's legacy URL, else the host as given.
pub fn server_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// The host part of an `auths` key, which may be a bare host or a URL such as
/// `https://index.docker.io/v1/`.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn key_matches(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    host == registry || (is_docker_hub(host) && is_docker_hub(registry))
}

/// Credentials for `registry` (a host such as `docker.io` or `127.0.0.1:5000`), if any.
pub fn lookup(config_dir: &Path, registry: &str) -> Result<Option<Credential>, CredentialError> {
    let path = config_dir.join(CONFIG_FILE);
    let Some(config) = read_config(&path)? else {
        return Ok(None);
    };
    if let Some(helper) = helper_for(&config, registry) {
        return helper_get(&helper, &server_key(registry));
    }
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    // An exact key wins over an equivalent spelling (`https://host` vs `host`).
    let entry = auths.get(&server_key(registry)).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| key_matches(k, registry))
            .map(|(_, v)| v)
    });
    match entry {
        Some(v) => decode_auth_entry(&path, registry, v),
        None => Ok(None),
    }
}

/// Saves credentials for `registry`: through its helper when one is configured, else into
/// `auths`. The file is replaced atomically with mode 0600 and keeps fields hull doesn't know.
pub fn store(config_dir: &Path, registry: &str, cred: &Credential) -> Result<(), CredentialError> {
    let path = config_dir.join(CONFIG_FILE);
    let mut config = read_config(&path)?.unwrap_or_default();
    if let Some(helper) = helper_for(&config, registry) {
        return helper_store(&helper, &server_key(registry), cred);
    }
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let Some(auths) = auths.as_object_mut() else {
        return Err(CredentialError::Invalid {
            path,
            reason: "\"auths\" is not an object".into(),
        });
    };
    let key = auths
        .keys()
        .find(|k| key_matches(k, registry))
        .cloned()
        .unwrap_or_else(|| server_key(registry));
    let mut entry = match auths.remove(&key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    entry.remove("auth");
    entry.remove("identitytoken");
    entry.remove("username");
    entry.remove("password");
    if cred.is_identity_token() {
        entry.insert("identitytoken".into(), Value::String(cred.secret.clone()));
    } else {
        let pair = format!("{}:{}", cred.username, cred.secret);
        entry.insert("auth".into(), Value::String(B64.encode(pair)));
    }
    auths.insert(key, Value::Object(entry));
    write_config(config_dir, &path, &config)
}

/// Removes the credentials of `registry` (helper and `auths`); returns whether any existed.
pub fn erase(config_dir: &Path, registry: &str) -> Result<bool, CredentialError> {
    let path = config_dir.join(CONFIG_FILE);
    let Some(mut config) = read_config(&path)? else {
        return Ok(false);
    };
    let mut erased = false;
    if let Some(helper) = helper_for(&config, registry) {
        erased |= helper_erase(&helper, &server_key(registry))?;
    }
    if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| key_matches(k, registry))
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        if !keys.is_empty() {
            erased = true;
            write_config(config_dir, &path, &config)?;
        }
    }
    Ok(erased)
}

fn read_config(path: &Path) -> Result<Option<Map<String, Value>>, CredentialError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut text = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|source| CredentialError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(CredentialError::Invalid {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_CONFIG_BYTES} bytes"),
        });
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    let value: Value = serde_json::from_slice(&text).map_err(|source| CredentialError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    match value {
        Value::Object(m) => Ok(Some(m)),
        _ => Err(CredentialError::Invalid {
            path: path.to_path_buf(),
            reason: "not a JSON object".into(),
        }),
    }
}

fn write_config(
    config_dir: &Path,
    path: &Path,
    config: &Map<String, Value>,
) -> Result<(), CredentialError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CredentialError::Write { path: p, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(config_dir)
        .map_err(werr(config_dir))?;
    // Docker follows a symlinked config.json and replaces its target.
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(werr(path))?,
        _ => path.to_path_buf(),
    };
    let dir = target.parent().unwrap_or(config_dir);
    let mut text = serde_json::to_vec_pretty(config).map_err(|e| CredentialError::Write {
        path: target.clone(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(werr(dir))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(werr(tmp.path()))?;
    tmp.write_all(&text).map_err(werr(&target))?;
    tmp.as_file().sync_all().map_err(werr(&target))?;
    tmp.persist(&target).map_err(|e| CredentialError::Write {
        path: target.clone(),
        source: e.error,
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Best effort: the rename is durable once the directory is synced.
        let _ = d.sync_all();
    }
    Ok(())
}

fn decode_auth_entry(
    path: &Path,
    registry: &str,
    v: &Value,
) -> Result<Option<Credential>, CredentialError> {
    let invalid = |reason: String| CredentialError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let field = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Ok(Some(Credential::new(IDENTITY_TOKEN_USERNAME, token)));
    }
    if let Some(auth) = field("auth") {
        let raw = B64
            .decode(auth.trim())
            .map_err(|_| invalid(format!("the auth of {registry} is not valid base64")))?;
        let pair = String::from_utf8(raw)
            .map_err(|_| invalid(format!("the auth of {registry} is not valid UTF-8")))?;
        let (user, pass) = pair
            .split_once(':')
            .ok_or_else(|| invalid(format!("the auth of {registry} is not user:password")))?;
        return Ok(Some(Credential::new(user, pass)));
    }
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok(Some(Credential::new(u, p))),
        _ => Ok(None),
    }
}

/// The helper program suffix for `registry`: its `credHelpers` entry, else `credsStore`.
fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
    let per_registry = config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| {
            helpers.get(registry).or_else(|| {
                helpers
                    .iter()
                    .find(|(k, _)| key_matches(k, registry))
                    .map(|(_, v)| v)
            })
        })
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    per_registry
        .or_else(|| {
            config
                .get("credsStore")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
}

/// What helpers answer when they have nothing (docker-credential-helpers `credentials.errCredentialsNotFound`).
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

fn run_helper(
    helper: &str,
    action: &'static str,
    server: &str,
    input: &[u8],
) -> Result<Result<Vec<u8>, String>, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CredentialError::HelperSpawn {
            program: program.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status below.
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| CredentialError::HelperSpawn {
            program: program.clone(),
            source,
        })?;
    if out.stdout.len() as u64 > MAX_CONFIG_BYTES {
        return Err(CredentialError::Helper {
            program,
            action,
            server: server.to_string(),
            reason: "reply too large".into(),
        });
    }
    if out.status.success() {
        Ok(Ok(out.stdout))
    } else {
        // Helpers print their error on stdout; never echo more than a line of it.
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect::<String>();
        Ok(Err(if text.is_empty() {
            format!("exited with {}", out.status)
        } else {
            text
        }))
    }
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credential>, CredentialError> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let program = format!("docker-credential-{helper}");
    match run_helper(helper, "get", server, server.as_bytes())? {
        Ok(stdout) => {
            let reply: Reply =
                serde_json::from_slice(&stdout).map_err(|_| CredentialError::Helper {
                    program,
                    action: "get",
                    server: server.to_string(),
                    reason: "reply is not the expected JSON".into(),
                })?;
            if reply.secret.is_empty() {
                Ok(None)
            } else {
                Ok(Some(Credential::new(reply.username, reply.secret)))
            }
        }
        Err(msg) if msg.contains(NOT_FOUND_MESSAGE) => Ok(None),
        Err(reason) => Err(CredentialError::Helper {
            program,
            action: "get",
            server: server.to_string(),
            reason,
        }),
    }
}

fn helper_store(helper: &str, server: &str, cred: &Credential) -> Result<(), CredentialError> {
    let mut body = BTreeMap::new();
    body.insert("ServerURL", server);
    body.insert("Username", cred.username.as_str());
    body.insert("Secret", cred.secret.as_str());
    let input = serde_json::to_vec(&body).unwrap_or_default();
    match run_helper(helper, "store", server, &input)? {
        Ok(_) => Ok(()),
        Err(reason) => Err(CredentialError::Helper {
            program: format!("docker-credential-{helper}"),
            action: "store",
            server: server.to_string(),
            reason,
        }),
    }
}

fn helper_erase(helper: &str, server: &str) -> Result<bool, CredentialError> {
    match run_helper(helper, "erase", server, server.as_bytes())? {
        Ok(_) => Ok(true),
        Err(msg) if msg.contains(NOT_FOUND_MESSAGE) => Ok(false),
        Err(reason) => Err(CredentialError::Helper {
            program: format!("docker-credential-{helper}"),
            action: "erase",
            server: server.to_string(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"other.example":{"auth":"YTpi","email":"x@y"}},"psFormat":"{{.ID}}","proxies":{"default":{"httpProxy":"p"}}}"#,
        )
        .unwrap();
        store(
            dir.path(),
            "reg.example:5000",
            &Credential::new("alice", "s3cret"),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "{{.ID}}");
        assert_eq!(v["proxies"]["default"]["httpProxy"], "p");
        assert_eq!(v["auths"]["other.example"]["email"], "x@y");
        assert_eq!(
            lookup(dir.path(), "reg.example:5000").unwrap(),
            Some(Credential::new("alice", "s3cret"))
        );
        assert_eq!(
            lookup(dir.path(), "other.example").unwrap(),
            Some(Credential::new("a", "b"))
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        assert!(erase(dir.path(), "reg.example:5000").unwrap());
        assert!(!erase(dir.path(), "reg.example:5000").unwrap());
        assert_eq!(lookup(dir.path(), "reg.example:5000").unwrap(), None);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "{{.ID}}");
    }

    #[test]
    fn docker_hub_aliases_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "docker.io", &Credential::new("u", "p")).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert!(v["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        for alias in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                lookup(dir.path(), alias).unwrap(),
                Some(Credential::new("u", "p")),
                "{alias}"
            );
        }
        assert_eq!(lookup(dir.path(), "quay.io").unwrap(), None);
    }

    #[test]
    fn url_keys_and_identity_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://reg.example/v2/":{"identitytoken":"tok"}}}"#,
        )
        .unwrap();
        let c = lookup(dir.path(), "reg.example").unwrap().unwrap();
        assert!(c.is_identity_token());
        assert_eq!(c.secret, "tok");
        store(dir.path(), "reg.example", &Credential::new("bob", "pw")).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let entry = &v["auths"]["https://reg.example/v2/"];
        assert!(entry.get("identitytoken").is_none());
        assert!(entry["auth"].is_string());
    }

    #[test]
    fn missing_and_broken_configs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lookup(dir.path(), "x.example").unwrap(), None);
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = lookup(dir.path(), "x.example").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"x.example":{"auth":"!!!"}}}"#,
        )
        .unwrap();
        let e = lookup(dir.path(), "x.example").unwrap_err().to_string();
        assert!(e.contains("base64"), "{e}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credential::new("alice", "hunter2");
        let d = format!("{c:?}");
        assert!(d.contains("alice"));
        assert!(!d.contains("hunter2"));
    }

    #[test]
    fn missing_helper_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"x.example":"hull-absent-helper"}}"#,
        )
        .unwrap();
        let e = lookup(dir.path(), "x.example").unwrap_err().to_string();
        assert!(e.contains("docker-credential-hull-absent-helper"), "{e}");
        // Another registry is not affected by that helper.
        assert_eq!(lookup(dir.path(), "y.example").unwrap(), None);
    }
}
