//! Arguments of `hull serve`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: 127.0.0.1:5000; port 0 picks a free one)
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Directory holding the registry's content (default: <root>/registry)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Registry configuration file (TOML: addr, data, read-only, delete-enabled, max-manifest-size, htpasswd, tls-cert, tls-key, gc-interval-secs)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
}
