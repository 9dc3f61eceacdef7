//! `hull login [-u USER] [-p PASS | --password-stdin] [SERVER]`: checks the credentials with the
//! registry, then stores them in Docker's `config.json` (or its credential helper).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use hull_distribution::credentials::{self, Credential};

use crate::cli::LoginArgs;
use crate::commands::Ctx;
use crate::error::UserError;
use crate::output::Printer;

/// Docker's default registry.
pub const DEFAULT_SERVER: &str = "docker.io";

/// The registry host a `login`/`logout` argument names: scheme and path dropped, Docker Hub's
/// aliases folded to `docker.io` (Docker's `registry.ConvertToHostname`).
pub fn registry_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DEFAULT_SERVER.to_string(),
        h => h.to_string(),
    }
}

pub fn config_dir() -> anyhow::Result<PathBuf> {
    credentials::default_config_dir().ok_or_else(|| {
        UserError::new("cannot find the Docker configuration directory")
            .hint("set DOCKER_CONFIG or HOME")
            .into()
    })
}

pub async fn run(ctx: &Ctx, args: LoginArgs) -> anyhow::Result<()> {
    let registry = registry_host(args.server.as_deref().unwrap_or(DEFAULT_SERVER));
    let dir = config_dir()?;
    let client = ctx.client()?;
    if args.password_stdin && args.username.is_none() {
        return Err(UserError::new("must provide --username with --password-stdin").into());
    }
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let interactive = std::io::stdin().is_terminal();
    if args.username.is_none() && args.password.is_none() {
        // Docker first tries what is stored.
        if let Some(cred) = credentials::lookup(&dir, &registry)?
            && !cred.is_identity_token()
            && client
                .check_login(&registry, &cred.username, &cred.secret)
                .await
                .is_ok()
        {
            eprintln!("Authenticating with existing credentials...");
            return Printer::stdout().line("Login Succeeded");
        }
    }
    let username = match args.username {
        Some(u) => u,
        None => {
            if !interactive {
                return Err(not_a_tty());
            }
            prompt(&format!("Username for {registry}: "))?
        }
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        p
    } else {
        if !interactive {
            return Err(not_a_tty());
        }
        prompt_hidden("Password: ")?
    };
    if username.trim().is_empty() {
        return Err(UserError::new("username is required").into());
    }
    if password.is_empty() {
        return Err(UserError::new("password is required").into());
    }
    // The client's errors already say "logging in to REGISTRY".
    client.check_login(&registry, &username, &password).await?;
    credentials::store(&dir, &registry, &Credential::new(username, password))
        .with_context(|| format!("storing the credentials for {registry}"))?;
    Printer::stdout().line("Login Succeeded")
}

fn not_a_tty() -> anyhow::Error {
    UserError::new("cannot perform an interactive login from a non TTY device")
        .hint("use --username with --password-stdin")
        .into()
}

fn prompt(question: &str) -> anyhow::Result<String> {
    let mut err = std::io::stderr();
    write!(err, "{question}").context("writing to stderr")?;
    err.flush().context("writing to stderr")?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a line from the terminal with echo off; echo is restored whatever happens.
fn prompt_hidden(question: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Flush, &quiet).context("turning terminal echo off")?;
    let answer = prompt(question);
    let restored = tcsetattr(&stdin, OptionalActions::Flush, &saved);
    eprintln!();
    restored.context("restoring the terminal settings")?;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(registry_host("docker.io"), "docker.io");
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_host("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(registry_host("quay.io"), "quay.io");
    }
}
