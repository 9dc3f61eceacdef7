//! Arguments of `hull push`.

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Compression of layers stored uncompressed (imported or loaded images)
    #[arg(long, value_enum, default_value_t = PushCompression::Gzip, value_name = "ALGORITHM")]
    pub compression: PushCompression,
    /// Image to push: NAME[:TAG]
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PushCompression {
    Gzip,
    Zstd,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command, ImageCommand};

    use super::*;

    #[test]
    fn push_flags() {
        let cli = Cli::try_parse_from(["hull", "push", "-a", "-q", "reg:5000/a/b"]).unwrap();
        let Command::Push(p) = cli.command else {
            panic!("wrong command")
        };
        assert!(p.all_tags && p.quiet);
        assert_eq!(p.compression, PushCompression::Gzip);
        assert_eq!(p.name, "reg:5000/a/b");
        let cli =
            Cli::try_parse_from(["hull", "image", "push", "--compression", "zstd", "x:1"]).unwrap();
        let Command::Image(ImageCommand::Push(p)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(p.compression, PushCompression::Zstd);
        assert!(Cli::try_parse_from(["hull", "push", "--compression", "lz4", "x"]).is_err());
        assert!(Cli::try_parse_from(["hull", "push"]).is_err());
    }
}
