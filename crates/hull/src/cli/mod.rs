//! The command line, as clap types only: verbs and flags are spelled as Docker's.

mod build;
mod image;
mod push;
mod search;
mod serve;
mod system;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use build::*;
pub use image::*;
pub use push::*;
pub use search::*;
pub use serve::*;
pub use system::*;

#[derive(Debug, Parser)]
#[command(
    name = "hull",
    version,
    about = "A daemonless container image engine",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Store directory (default: $HULL_ROOT, /var/lib/hull for root, else ~/.local/share/hull)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Log level of diagnostics on stderr
    #[arg(long, short = 'l', global = true, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Registry reachable over plain http (repeatable)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// List images
    Images(ImagesArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage the store
    #[command(subcommand)]
    System(SystemCommand),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Show the hull version information
    Version(VersionArgs),
    /// Search a registry for repositories
    Search(SearchArgs),
    /// Run a registry (OCI distribution spec 1.1) serving a local directory
    Serve(ServeArgs),
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(BuilderCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove", visible_alias = "rmi")]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Export an image's flattened filesystem as a tar archive
    Export(ExportArgs),
    /// Mount an image's filesystem read-only and print the mount point
    Mount(MountArgs),
    /// Unmount an image mounted with `image mount`
    #[command(visible_alias = "unmount")]
    Umount(MountArgs),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the store's disk usage
    Df(DfArgs),
    /// Check the store's consistency
    Check(CheckArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hull").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&[
            "images",
            "--root",
            "/tmp/x",
            "--insecure-registry",
            "a:5000",
            "--insecure-registry",
            "b",
        ])
        .unwrap();
        assert_eq!(cli.global.root, Some(PathBuf::from("/tmp/x")));
        assert_eq!(cli.global.insecure_registries, vec!["a:5000", "b"]);
        let cli = parse(&["--log-level", "debug", "version"]).unwrap();
        assert_eq!(cli.global.log_level, Some(LogLevel::Debug));
    }

    #[test]
    fn image_subcommands_share_flags() {
        let cli = parse(&[
            "image",
            "ls",
            "-a",
            "-q",
            "--digests",
            "--filter",
            "dangling=true",
        ])
        .unwrap();
        let Command::Image(ImageCommand::Ls(a)) = cli.command else {
            panic!("wrong command")
        };
        assert!(a.all && a.quiet && a.digests);
        assert_eq!(a.filter, vec!["dangling=true"]);
        assert!(matches!(
            parse(&["image", "rm", "-f", "x"]).unwrap().command,
            Command::Image(ImageCommand::Rm(RmiArgs { force: true, .. }))
        ));
        assert!(matches!(
            parse(&["image", "list"]).unwrap().command,
            Command::Image(ImageCommand::Ls(_))
        ));
    }

    #[test]
    fn history_human_flag_as_docker_spells_it() {
        let h = |args: &[&str]| match parse(args).unwrap().command {
            Command::History(h) => h,
            other => panic!("{other:?}"),
        };
        assert!(h(&["history", "busybox"]).human);
        assert!(!h(&["history", "-H=false", "busybox"]).human);
        assert!(!h(&["history", "--human=false", "busybox"]).human);
        let a = h(&["history", "-H", "busybox"]);
        assert!(a.human);
        assert_eq!(a.image, "busybox");
    }

    #[test]
    fn pull_and_login_flags() {
        let Command::Pull(p) = parse(&["pull", "-q", "-a", "--platform", "linux/arm64", "busybox"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(p.quiet && p.all_tags);
        assert_eq!(p.platform.as_deref(), Some("linux/arm64"));
        let Command::Login(l) = parse(&["login", "-u", "me", "--password-stdin", "reg:5000"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(l.username.as_deref(), Some("me"));
        assert!(l.password_stdin);
        assert_eq!(l.server.as_deref(), Some("reg:5000"));
        assert!(parse(&["login", "-p", "x", "--password-stdin"]).is_err());
    }

    #[test]
    fn import_and_save_flags() {
        let Command::Import(i) = parse(&[
            "import",
            "-c",
            "CMD [\"sh\"]",
            "--change",
            "ENV A=b",
            "-m",
            "msg",
            "-",
            "demo:1",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(i.changes.len(), 2);
        assert_eq!(i.file, "-");
        assert_eq!(i.reference.as_deref(), Some("demo:1"));
        let Command::Save(s) = parse(&["save", "-o", "x.tar", "--format", "oci-archive", "a", "b"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(s.format, ArchiveKind::OciArchive);
        assert_eq!(s.images, vec!["a", "b"]);
        assert!(parse(&["save"]).is_err());
        assert!(parse(&["save", "--format", "zip", "a"]).is_err());
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&["images", "--bogus"]).is_err());
        assert!(parse(&["tag", "only-one"]).is_err());
        assert!(parse(&["nosuchverb"]).is_err());
    }
}
