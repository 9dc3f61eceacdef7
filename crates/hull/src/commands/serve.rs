//! `hull serve`: the registry front end. Listens on `--addr`, keeps content under `--data`
//! (default `<root>/registry`), logs one access line per request on stderr, and stops
//! gracefully on SIGINT or SIGTERM (requests in flight finish first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hull_registry::gc::GcOptions;
use hull_registry::{
    BasicAuth, FsStorage, Htpasswd, MetricsConfig, ObjectStorage, Proxy, ProxyConfig, Registry,
    RegistryConfig, RegistryStorage, RepoInfoUpdate, RepoName, S3Config, TokenAuth, TokenConfig,
};
use serde::Deserialize;
use tracing::instrument::WithSubscriber as _;

use crate::cli::{
    LogLevel, ServeArgs, ServeCommand, ServeGcArgs, ServeRepoCommand, ServeRepoSetArgs,
};
use crate::commands::Ctx;

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
/// The realm basic-auth challenges name.
const AUTH_REALM: &str = "hull";

/// The `--config` file. Flags win over it.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ServeFile {
    addr: Option<String>,
    data: Option<PathBuf>,
    #[serde(default)]
    read_only: bool,
    delete_enabled: Option<bool>,
    max_manifest_size: Option<u64>,
    htpasswd: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// Run garbage collection this often (seconds; absent or 0: never).
    gc_interval_secs: Option<u64>,
    /// What scheduled collections spare: objects written within this many seconds (default 3600).
    gc_grace_secs: Option<u64>,
    /// S3-compatible object storage instead of `data`.
    s3: Option<S3Config>,
    /// Pull-through cache of an upstream registry.
    proxy: Option<ProxyConfig>,
    /// Token authentication (users from `htpasswd`, rules in `[[token.access]]`).
    token: Option<TokenConfig>,
    /// `/metrics`.
    #[serde(default)]
    metrics: MetricsConfig,
}

impl ServeFile {
    fn load(path: &Path) -> anyhow::Result<ServeFile> {
        let text = fs_err::read_to_string(path)?;
        toml::from_str(&text)
            .with_context(|| format!("reading registry configuration {}", path.display()))
    }
}

/// What the server runs with, flags merged over the file.
#[derive(Debug, PartialEq)]
struct Settings {
    addr: String,
    data: PathBuf,
    registry: RegistryConfig,
    htpasswd: Option<PathBuf>,
    /// Certificate chain and key, for HTTPS.
    tls: Option<(PathBuf, PathBuf)>,
    gc_interval: Option<Duration>,
    gc_grace: Duration,
    s3: Option<S3Config>,
    proxy: Option<ProxyConfig>,
    token: Option<TokenConfig>,
    metrics: MetricsConfig,
}

fn settings(root: &Path, args: &ServeArgs, file: ServeFile) -> anyhow::Result<Settings> {
    let defaults = RegistryConfig::default();
    let tls = match (
        args.tls_cert.clone().or(file.tls_cert),
        args.tls_key.clone().or(file.tls_key),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("HTTPS needs both a certificate (tls-cert) and its key (tls-key)"),
    };
    Ok(Settings {
        addr: args
            .addr
            .clone()
            .or(file.addr)
            .unwrap_or_else(|| DEFAULT_ADDR.to_string()),
        data: args
            .data
            .clone()
            .or(file.data)
            .unwrap_or_else(|| root.join("registry")),
        registry: RegistryConfig {
            read_only: args.read_only || file.read_only,
            delete_enabled: file.delete_enabled.unwrap_or(defaults.delete_enabled),
            max_manifest_size: file.max_manifest_size.unwrap_or(defaults.max_manifest_size),
        },
        htpasswd: args.htpasswd.clone().or(file.htpasswd),
        tls,
        gc_grace: file
            .gc_grace_secs
            .map_or(GcOptions::default().grace, Duration::from_secs),
        gc_interval: args
            .gc_interval
            .or(file.gc_interval_secs.map(Duration::from_secs))
            .filter(|d| !d.is_zero()),
        s3: match (&args.s3_bucket, file.s3) {
            (Some(bucket), from_file) => {
                // Flags name the bucket; the file may still hold credentials and options.
                let mut c = from_file
                    .filter(|c| &c.bucket == bucket)
                    .unwrap_or_else(|| S3Config::new(bucket.clone()));
                if let Some(e) = &args.s3_endpoint {
                    c.endpoint = Some(e.clone());
                }
                if let Some(r) = &args.s3_region {
                    c.region = Some(r.clone());
                }
                if let Some(p) = &args.s3_prefix {
                    c.prefix = Some(p.clone());
                }
                // Plain http only where the endpoint says so, and only for loopback.
                if let Some(e) = &c.endpoint
                    && e.starts_with("http://")
                    && hull_distribution::allows_plain_http(
                        e.trim_start_matches("http://")
                            .split('/')
                            .next()
                            .unwrap_or(""),
                        &[],
                    )
                {
                    c.allow_http = true;
                }
                Some(c)
            }
            (None, f) => f,
        },
        token: if args.token_auth {
            Some(file.token.unwrap_or_default())
        } else {
            file.token
        },
        metrics: file.metrics,
        proxy: match &args.proxy_remote {
            Some(remote) => {
                let mut p = file
                    .proxy
                    .filter(|p| &p.remote == remote)
                    .unwrap_or_else(|| ProxyConfig::new(remote.clone()));
                p.remote = remote.clone();
                Some(p)
            }
            None => file.proxy,
        },
    })
}

/// Access lines are `info` events: a server logs at `info` unless `--log-level` says otherwise.
fn log_dispatch(level: Option<LogLevel>) -> tracing::Dispatch {
    use std::io::IsTerminal as _;
    let filter = match level {
        Some(LogLevel::Debug) => "debug",
        None | Some(LogLevel::Info) => "info",
        Some(LogLevel::Warn) => "warn",
        Some(LogLevel::Error) | Some(LogLevel::Fatal) => "error",
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .into()
}

/// Collects garbage every `every`, online, sparing what was written within `grace` (so pushes
/// in progress keep what they wrote).
async fn collect_garbage(storage: Arc<dyn RegistryStorage>, every: Duration, grace: Duration) {
    let opts = GcOptions {
        grace,
        ..GcOptions::default()
    };
    loop {
        tokio::time::sleep(every).await;
        match hull_registry::gc::collect(&*storage, &opts).await {
            Ok(r) => tracing::info!(
                "garbage collection: {} manifests kept, {} untagged removed, {} blobs kept, {} deleted ({} bytes), {} links and {} idle uploads removed",
                r.manifests,
                r.manifests_deleted.len(),
                r.blobs_kept,
                r.blobs_deleted.len(),
                r.bytes_freed,
                r.links_deleted,
                r.uploads_aborted
            ),
            Err(e) => tracing::error!("{e}"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without signal handlers the default action (exit) still stops the server.
        _ => std::future::pending().await,
    }
}

/// Opens the storage the settings name: the S3 bucket, else the data directory.
async fn open_storage(s: &Settings) -> anyhow::Result<Arc<dyn RegistryStorage>> {
    if let Some(c) = &s.s3 {
        let storage =
            ObjectStorage::s3(c).with_context(|| format!("opening S3 bucket {}", c.bucket))?;
        return Ok(Arc::new(storage));
    }
    let storage = FsStorage::open(&s.data)
        .await
        .with_context(|| format!("opening registry storage {}", s.data.display()))?;
    Ok(Arc::new(storage))
}

fn storage_name(s: &Settings) -> String {
    match &s.s3 {
        Some(c) => format!(
            "s3://{}/{}",
            c.bucket,
            c.prefix.as_deref().unwrap_or_default()
        ),
        None => s.data.display().to_string(),
    }
}

pub async fn run(ctx: &Ctx, args: ServeArgs, log_level: Option<LogLevel>) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(p) => ServeFile::load(p)?,
        None => ServeFile::default(),
    };
    let s = settings(&ctx.root, &args, file)?;
    match &args.command {
        None => serve(s, log_level).await,
        Some(ServeCommand::Gc(a)) => gc(&s, a).await,
        Some(ServeCommand::Repo(ServeRepoCommand::Set(a))) => repo_set(ctx, &s, a).await,
    }
}

/// `hull serve gc`: one collection, reported as Docker-style lines or JSON.
async fn gc(s: &Settings, a: &ServeGcArgs) -> anyhow::Result<()> {
    let storage = open_storage(s).await?;
    let opts = GcOptions {
        grace: a.grace,
        dry_run: a.dry_run,
        keep_untagged: a.keep_untagged,
        ..GcOptions::default()
    };
    let r = hull_registry::gc::collect(&*storage, &opts).await?;
    let verb = if a.dry_run { "Would remove" } else { "Removed" };
    let mut out = crate::output::Printer::stdout();
    match a.format.as_deref() {
        Some("json") => {
            let v = serde_json::json!({
                "DryRun": a.dry_run,
                "ManifestsKept": r.manifests,
                "ManifestsDeleted": r.manifests_deleted,
                "BlobsKept": r.blobs_kept,
                "BlobsDeleted": r.blobs_deleted.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "SpaceReclaimed": r.bytes_freed,
                "LinksDeleted": r.links_deleted,
                "UploadsAborted": r.uploads_aborted,
            });
            out.line(format!("{v:#}"))?;
        }
        Some(other) => anyhow::bail!("unknown --format {other:?}: only json is supported"),
        None => {
            for m in &r.manifests_deleted {
                out.line(format!("{verb} manifest: {m}"))?;
            }
            for b in &r.blobs_deleted {
                out.line(format!("{verb} blob: {b}"))?;
            }
            out.line(format!(
                "{} manifests and {} blobs kept; {} untagged manifests, {} blobs ({}) and {} idle uploads {}",
                r.manifests,
                r.blobs_kept,
                r.manifests_deleted.len(),
                r.blobs_deleted.len(),
                crate::output::human::size(r.bytes_freed),
                r.uploads_aborted,
                if a.dry_run { "would be removed" } else { "removed" },
            ))?;
        }
    }
    Ok(())
}

/// `hull serve repo set NAME [--description TEXT] [--official[=BOOL]] [--stars N]`: edits
/// what `/v1/search` shows for a repository, in the storage directly (the server need not run).
async fn repo_set(_ctx: &Ctx, s: &Settings, a: &ServeRepoSetArgs) -> anyhow::Result<()> {
    let name = RepoName::parse(&a.name)
        .ok_or_else(|| anyhow::anyhow!("invalid repository name {:?}", a.name))?;
    if a.description.is_none() && a.official.is_none() && a.stars.is_none() {
        anyhow::bail!("nothing to set: give --description, --official or --stars");
    }
    let storage = open_storage(s).await?;
    let info = hull_registry::search::set_repo_info(
        &*storage,
        &name,
        RepoInfoUpdate {
            description: a.description.clone(),
            is_official: a.official,
            star_count: a.stars,
        },
    )
    .await?;
    crate::output::Printer::stdout().line(format!(
        "{name}: description {:?}, official {}, stars {}",
        info.description, info.is_official, info.star_count
    ))
}

async fn serve(s: Settings, log_level: Option<LogLevel>) -> anyhow::Result<()> {
    let htpasswd = match &s.htpasswd {
        Some(p) => Some(Htpasswd::load(p)?),
        None => None,
    };
    let storage = open_storage(&s).await?;
    let (basic, token) = match &s.token {
        Some(cfg) => (
            None,
            Some(
                TokenAuth::new(
                    cfg.clone(),
                    htpasswd.unwrap_or_default(),
                    Arc::clone(&storage),
                )
                .await
                .context("setting up token authentication")?,
            ),
        ),
        None => (htpasswd.map(|h| BasicAuth::new(AUTH_REALM, h)), None),
    };
    let auth_kind = if token.is_some() {
        ", token auth"
    } else if basic.is_some() {
        ", basic auth"
    } else {
        ""
    };
    let proxy = match &s.proxy {
        Some(p) => {
            Some(Proxy::new(p).with_context(|| format!("setting up the mirror of {}", p.remote))?)
        }
        None => None,
    };
    let mirror = proxy.as_ref().map(|p| p.remote().to_string());
    let registry = Registry::builder(storage)
        .config(s.registry.clone())
        .basic_auth(basic)
        .token_auth(token)
        .metrics(s.metrics.clone())
        .proxy(proxy)
        .build();
    let listener = tokio::net::TcpListener::bind(&s.addr)
        .await
        .with_context(|| format!("listening on {}", s.addr))?;
    let local: SocketAddr = listener
        .local_addr()
        .with_context(|| format!("listening on {}", s.addr))?;
    let tls = match &s.tls {
        Some((cert, key)) => Some(hull_registry::tls::server_config(cert, key)?),
        None => None,
    };
    eprintln!(
        "hull serve: listening on {}://{local} (data in {}{}{}{})",
        if tls.is_some() { "https" } else { "http" },
        storage_name(&s),
        mirror
            .map(|m| format!(", mirroring {m}"))
            .unwrap_or_default(),
        if s.registry.read_only {
            ", read-only"
        } else {
            ""
        },
        auth_kind
    );
    let dispatch = log_dispatch(log_level);
    let gc = s.gc_interval.map(|every| {
        tokio::spawn(
            collect_garbage(Arc::clone(registry.storage()), every, s.gc_grace)
                .with_subscriber(dispatch.clone()),
        )
    });
    let router = registry.router();
    let served = match tls {
        None => {
            hull_registry::serve(listener, router, shutdown_signal())
                .with_subscriber(dispatch)
                .await
        }
        Some(tls) => {
            hull_registry::serve_tls(listener, router, tls, shutdown_signal())
                .with_subscriber(dispatch)
                .await
        }
    };
    if let Some(gc) = gc {
        gc.abort();
    }
    served.context("serving the registry")?;
    eprintln!("hull serve: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/var/lib/hull";

    fn args(addr: Option<&str>, read_only: bool) -> ServeArgs {
        ServeArgs {
            command: None,
            gc_interval: None,
            addr: addr.map(str::to_string),
            data: None,
            config: None,
            read_only,
            htpasswd: None,
            tls_cert: None,
            tls_key: None,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_prefix: None,
            proxy_remote: None,
            token_auth: false,
        }
    }

    #[test]
    fn defaults_live_under_the_store_root() {
        let s = settings(Path::new(ROOT), &args(None, false), ServeFile::default()).unwrap();
        assert_eq!(s.addr, DEFAULT_ADDR);
        assert_eq!(s.data, PathBuf::from("/var/lib/hull/registry"));
        assert_eq!(s.registry, RegistryConfig::default());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: ServeFile = toml::from_str(
            "addr = \"0.0.0.0:6000\"\ndata = \"/srv/reg\"\ndelete-enabled = false\nmax-manifest-size = 1024\nhtpasswd = \"/etc/hull/htpasswd\"\ngc-interval-secs = 3600\n",
        )
        .unwrap();
        let s = settings(Path::new(ROOT), &args(Some("127.0.0.1:7000"), true), file).unwrap();
        assert_eq!(s.addr, "127.0.0.1:7000");
        assert_eq!(s.data, PathBuf::from("/srv/reg"));
        assert!(s.registry.read_only);
        assert!(!s.registry.delete_enabled);
        assert_eq!(s.registry.max_manifest_size, 1024);
        assert_eq!(s.htpasswd, Some(PathBuf::from("/etc/hull/htpasswd")));
        assert_eq!(s.gc_interval, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn tls_needs_both_files() {
        let file: ServeFile = toml::from_str("tls-cert = \"/c.pem\"\n").unwrap();
        assert!(settings(Path::new(ROOT), &args(None, false), file).is_err());
        let file: ServeFile =
            toml::from_str("tls-cert = \"/c.pem\"\ntls-key = \"/k.pem\"\n").unwrap();
        let s = settings(Path::new(ROOT), &args(None, false), file).unwrap();
        assert_eq!(
            s.tls,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
    }

    #[test]
    fn s3_and_proxy_come_from_flags_and_the_file() {
        let file: ServeFile = toml::from_str(
            "[s3]\nbucket = \"reg\"\nendpoint = \"http://127.0.0.1:9000\"\naccess-key-id = \"k\"\nsecret-access-key = \"s\"\n[proxy]\nremote = \"https://mirror.example\"\ntag-ttl-secs = 5\n",
        )
        .unwrap();
        let s = settings(Path::new(ROOT), &args(None, false), file).unwrap();
        let s3 = s.s3.unwrap();
        assert_eq!(s3.bucket, "reg");
        assert_eq!(s3.access_key_id.as_deref(), Some("k"));
        assert_eq!(s.proxy.unwrap().tag_ttl_secs, 5);
        let mut a = args(None, false);
        a.s3_bucket = Some("other".into());
        a.s3_endpoint = Some("http://127.0.0.1:9000".into());
        a.proxy_remote = Some("http://127.0.0.1:5000".into());
        let s = settings(Path::new(ROOT), &a, ServeFile::default()).unwrap();
        let s3 = s.s3.unwrap();
        assert_eq!(s3.bucket, "other");
        assert!(s3.allow_http, "loopback endpoints may be plain http");
        assert_eq!(s.proxy.unwrap().remote, "http://127.0.0.1:5000");
        a.s3_endpoint = Some("http://s3.example.com".into());
        let s = settings(Path::new(ROOT), &a, ServeFile::default()).unwrap();
        assert!(!s.s3.unwrap().allow_http);
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<ServeFile>("adr = \"x\"\n").is_err());
    }
}
