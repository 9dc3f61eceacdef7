//! One module per verb; this one holds what they share: the store and registry client built
//! from flags and the configuration file, output files, and confirmation prompts.

mod build;
mod build_runtime;
mod df;
mod export;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod login;
mod logout;
mod mount;
mod prune;
mod pull;
mod push;
mod rmi;
mod save;
mod search;
mod serve;
mod system_check;
mod tag;
mod version;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hull_distribution::{ClientConfig, RegistryClient};
use hull_image::Store;
use hull_oci::{Platform, Reference};

use crate::cli::{BuilderCommand, Cli, Command, ImageCommand, SystemCommand};
use crate::config::{DEFAULT_MAX_CONCURRENT_DOWNLOADS, FileConfig};
use crate::error::UserError;

/// The NAME[:TAG] argument of `pull` and `push`: a repository alone with `--all-tags`, where a
/// tag or digest is refused as Docker refuses it.
pub fn parse_name_arg(name: &str, all_tags: bool) -> anyhow::Result<Reference> {
    if !all_tags {
        return Ok(Reference::parse(name)?);
    }
    let r = Reference::parse_name_only(name)?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(UserError::new("tag can't be used with --all-tags/-a").into());
    }
    Ok(r)
}

/// Settings every command sees: flags merged over the configuration file.
pub struct Ctx {
    pub root: PathBuf,
    pub insecure_registries: Vec<String>,
    pub max_concurrent_downloads: usize,
}

impl Ctx {
    pub fn new(cli: &Cli, file: FileConfig) -> Ctx {
        let mut insecure_registries = file.insecure_registries;
        for r in &cli.global.insecure_registries {
            if !insecure_registries.contains(r) {
                insecure_registries.push(r.clone());
            }
        }
        Ctx {
            root: cli
                .global
                .root
                .clone()
                .or(file.root)
                .unwrap_or_else(Store::default_root),
            insecure_registries,
            max_concurrent_downloads: file
                .max_concurrent_downloads
                .unwrap_or(DEFAULT_MAX_CONCURRENT_DOWNLOADS),
        }
    }

    /// Opens (creating if needed) the store.
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("opening the store at {}", self.root.display()))
    }

    /// A registry client honouring the insecure registries.
    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        let cfg = ClientConfig {
            insecure_registries: self.insecure_registries.clone(),
            user_agent: format!("hull/{}", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Ok(RegistryClient::new(cfg)?)
    }
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx::new(&cli, FileConfig::load()?);
    match cli.command {
        Command::Pull(a) => pull::run(&ctx, a).await,
        Command::Push(a) => push::run(&ctx, a).await,
        Command::Images(a) => images::run(&ctx, a),
        Command::History(a) => history::run(&ctx, a),
        Command::Inspect(a) => inspect::run(&ctx, a),
        Command::Tag(a) => tag::run(&ctx, a),
        Command::Rmi(a) => rmi::run(&ctx, a),
        Command::Save(a) => save::run(&ctx, a),
        Command::Load(a) => load::run(&ctx, a),
        Command::Import(a) => import::run(&ctx, a),
        Command::Image(sub) => match sub {
            ImageCommand::Ls(a) => images::run(&ctx, a),
            ImageCommand::Pull(a) => pull::run(&ctx, a).await,
            ImageCommand::Push(a) => push::run(&ctx, a).await,
            ImageCommand::Inspect(a) => inspect::run(&ctx, a),
            ImageCommand::History(a) => history::run(&ctx, a),
            ImageCommand::Rm(a) => rmi::run(&ctx, a),
            ImageCommand::Tag(a) => tag::run(&ctx, a),
            ImageCommand::Prune(a) => prune::run(&ctx, a),
            ImageCommand::Save(a) => save::run(&ctx, a),
            ImageCommand::Load(a) => load::run(&ctx, a),
            ImageCommand::Import(a) => import::run(&ctx, a),
            ImageCommand::Export(a) => export::run(&ctx, a),
            ImageCommand::Mount(a) => mount::mount(&ctx, a),
            ImageCommand::Umount(a) => mount::umount(&ctx, a),
        },
        Command::System(sub) => match sub {
            SystemCommand::Df(a) => df::run(&ctx, a),
            SystemCommand::Check(a) => system_check::run(&ctx, a),
        },
        Command::Login(a) => login::run(&ctx, a).await,
        Command::Logout(a) => logout::run(&ctx, a),
        Command::Version(a) => version::run(&ctx, a),
        Command::Search(a) => search::run(&ctx, a).await,
        Command::Serve(a) => serve::run(&ctx, a, cli.global.log_level).await,
        Command::Build(a) => build::run(&ctx, a).await,
        Command::Builder(BuilderCommand::Prune(a)) => build::prune(&ctx, a),
    }
}

/// Parses `--platform`.
pub fn parse_platform(p: Option<&str>) -> anyhow::Result<Option<Platform>> {
    p.map(|p| p.parse::<Platform>().map_err(anyhow::Error::from))
        .transpose()
}

/// Parses a reference typed by the user, tag defaulting to `latest`.
pub fn parse_reference(s: &str) -> anyhow::Result<Reference> {
    Ok(Reference::parse(s)?)
}

/// `NAME:TAG` as Docker prints tags (`busybox:latest`, `127.0.0.1:5000/lab/busybox:oci`).
pub fn familiar(r: &Reference) -> String {
    match (r.tag(), r.digest()) {
        (Some(t), _) => format!("{}:{t}", r.familiar_name()),
        (None, Some(d)) => format!("{}@{d}", r.familiar_name()),
        (None, None) => r.familiar_name(),
    }
}

/// Where a binary stream goes: a file written durably (temp file, fsync, rename), or stdout
/// unless it is a terminal.
pub enum Sink {
    File(tempfile::NamedTempFile, PathBuf),
    Stdout(std::io::Stdout),
}

impl Sink {
    pub fn open(output: Option<&Path>) -> anyhow::Result<Sink> {
        match output {
            Some(path) => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let tmp = tempfile::Builder::new()
                    .prefix(".hull-")
                    .tempfile_in(&dir)
                    .with_context(|| format!("creating {}", path.display()))?;
                Ok(Sink::File(tmp, path.to_path_buf()))
            }
            None => {
                let out = std::io::stdout();
                if out.is_terminal() {
                    return Err(UserError::new(
                        "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                    )
                    .into());
                }
                Ok(Sink::Stdout(out))
            }
        }
    }

    pub fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Sink::File(f, _) => {
                Box::new(std::io::BufWriter::with_capacity(1 << 20, f.as_file_mut()))
            }
            Sink::Stdout(s) => Box::new(std::io::BufWriter::with_capacity(1 << 20, s.lock())),
        }
    }

    /// Makes the output durable and visible under its name.
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::File(f, path) => {
                f.as_file()
                    .sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
                f.persist(&path)
                    .map_err(|e| e.error)
                    .with_context(|| format!("writing {}", path.display()))?;
                if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    // The rename is durable once the directory is synced.
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Ok(())
            }
            Sink::Stdout(s) => s.lock().flush().context("writing to stdout"),
        }
    }
}

/// Asks a yes/no question on stderr and reads the answer from stdin (`y` or `yes`).
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut err = std::io::stderr();
    write!(err, "{question} [y/N] ").context("writing to stderr")?;
    err.flush().context("writing to stderr")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer from stdin")?;
    Ok(is_yes(&answer))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert!(is_yes("y\n"));
        assert!(is_yes(" YES \n"));
        assert!(!is_yes(""));
        assert!(!is_yes("n\n"));
        assert!(!is_yes("yep\n"));
    }

    #[test]
    fn familiar_names() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(familiar(&r), "busybox:latest");
        let r = Reference::parse("127.0.0.1:5000/lab/busybox:oci").unwrap();
        assert_eq!(familiar(&r), "127.0.0.1:5000/lab/busybox:oci");
    }

    #[test]
    fn file_sink_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        let mut sink = Sink::open(Some(&path)).unwrap();
        sink.writer().write_all(b"data").unwrap();
        assert!(!path.exists(), "visible before it is complete");
        sink.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
