//! `hull import FILE|- [REPOSITORY[:TAG]] [-c INSTRUCTION]... [-m MESSAGE] [--platform P]`:
//! prints the new image's ID.

use std::io::{IsTerminal, Read};

use anyhow::Context as _;
use hull_image::ImportOptions;

use crate::cli::ImportArgs;
use crate::commands::{Ctx, parse_platform, parse_reference};
use crate::error::UserError;
use crate::output::Printer;

pub fn run(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    if args.file.contains("://") {
        return Err(UserError::new(format!(
            "importing from a URL is not supported: {}",
            args.file
        ))
        .hint("download the tarball first, then import the file")
        .into());
    }
    let reference = args.reference.as_deref().map(parse_reference).transpose()?;
    let platform = parse_platform(args.platform.as_deref())?;
    let input: Box<dyn Read + Send> = if args.file == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(
                UserError::new("requested import from stdin, but stdin is a terminal")
                    .hint("redirect a tarball to stdin, or name the file")
                    .into(),
            );
        }
        Box::new(stdin)
    } else {
        Box::new(fs_err::File::open(&args.file).context("opening the tarball")?)
    };
    // `--change`s are Dockerfile instructions, read by the Dockerfile parser and applied by
    // the builder's dispatcher.
    let mut config = hull_oci::ImageConfig::default();
    hull_build::apply_changes(&mut config, &args.changes)?;
    let store = ctx.store()?;
    let id = store.import(
        input,
        ImportOptions {
            reference,
            config: config.config,
            message: args.message,
            platform,
            source: args.file,
        },
    )?;
    Printer::stdout().line(id)
}
