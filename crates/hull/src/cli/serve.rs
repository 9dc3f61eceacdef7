//! Arguments of `hull serve`.

use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// Address to listen on (default: 127.0.0.1:5000; port 0 picks a free one)
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Directory holding the registry's content (default: <root>/registry)
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// Registry configuration file (TOML: addr, data, read-only, delete-enabled, max-manifest-size, htpasswd, tls-cert, tls-key, gc-interval-secs)
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Collect garbage online this often (e.g. 30m, 6h, 1d; default: never)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub gc_interval: Option<Duration>,
    /// Serve pulls only: refuse pushes and deletes
    #[arg(long)]
    pub read_only: bool,
    /// Require HTTP basic auth with the users of this htpasswd file (bcrypt entries)
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Keep content in this S3 bucket instead of --data (credentials from AWS_* variables or the config file)
    #[arg(long, value_name = "BUCKET", global = true)]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL (MinIO, Ceph, s3s-fs; default: AWS)
    #[arg(long, value_name = "URL", global = true, requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: $AWS_REGION, else us-east-1)
    #[arg(long, value_name = "REGION", global = true, requires = "s3_bucket")]
    pub s3_region: Option<String>,
    /// Key prefix inside the bucket
    #[arg(long, value_name = "PREFIX", global = true, requires = "s3_bucket")]
    pub s3_prefix: Option<String>,
    /// Authenticate with tokens from this server's /token endpoint (users from --htpasswd, rules from the config file's [token] table)
    #[arg(long)]
    pub token_auth: bool,
    /// Mirror this registry: serve and keep its content on demand, refuse pushes
    #[arg(long, value_name = "URL")]
    pub proxy_remote: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Remove untagged manifests and unreferenced blobs from the registry's storage (safe while it serves)
    Gc(ServeGcArgs),
    /// Edit a repository's search metadata
    #[command(subcommand)]
    Repo(ServeRepoCommand),
}

#[derive(Debug, Args)]
pub struct ServeGcArgs {
    /// Report what would be removed without removing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Spare everything written within this long (pushes in progress)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub grace: Duration,
    /// Keep manifests no tag reaches
    #[arg(long)]
    pub keep_untagged: bool,
    /// Print the report as JSON
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServeRepoCommand {
    /// Set a repository's description, official flag or star count (shown by `hull search`)
    Set(ServeRepoSetArgs),
}

#[derive(Debug, Args)]
pub struct ServeRepoSetArgs {
    /// Repository name (e.g. library/alpine)
    pub name: String,
    /// One-line description
    #[arg(long)]
    pub description: Option<String>,
    /// Mark as official (`--official=false` clears it)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub official: Option<bool>,
    /// Star count
    #[arg(long)]
    pub stars: Option<u64>,
}

/// `90`, `90s`, `30m`, `6h`, `1d`: a whole number with an optional unit (seconds by default).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 30m, 6h or 1d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration {s:?}: units are s, m, h and d")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid duration {s:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "h", "1w", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
