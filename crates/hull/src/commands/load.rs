//! `hull load [-i FILE] [-q]`: `Loaded image: NAME:TAG`, or `Loaded image ID: sha256:…` for an
//! image without tags.

use std::io::{IsTerminal, Read};

use anyhow::Context as _;
use hull_image::LoadedImage;

use crate::cli::LoadArgs;
use crate::commands::{Ctx, familiar};
use crate::error::UserError;
use crate::output::Printer;
use crate::progress::{Activity, Mode, Progress};

pub fn loaded_lines(images: &[LoadedImage]) -> Vec<String> {
    let mut lines = Vec::new();
    for img in images {
        if img.tags.is_empty() {
            lines.push(format!("Loaded image ID: {}", img.id));
        }
        for t in &img.tags {
            lines.push(format!("Loaded image: {}", familiar(t)));
        }
    }
    lines
}

pub fn run(ctx: &Ctx, args: LoadArgs) -> anyhow::Result<()> {
    let input: Box<dyn Read + Send> = match &args.input {
        Some(path) => {
            Box::new(fs_err::File::open(path).with_context(|| "opening the archive".to_string())?)
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(
                    UserError::new("requested load from stdin, but stdin is empty")
                        .hint("use -i FILE or redirect an archive to stdin")
                        .into(),
                );
            }
            Box::new(stdin)
        }
    };
    let store = ctx.store()?;
    let progress = Progress::new(Mode::detect(args.quiet), Activity::Load);
    let loaded = store.load(input, progress.sink());
    progress.finish();
    let loaded = loaded?;
    let mut printer = Printer::stdout();
    for line in loaded_lines(&loaded) {
        printer.line(line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let id: hull_oci::ImageId = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let images = vec![
            LoadedImage {
                id: id.clone(),
                tags: vec![hull_oci::Reference::parse("demo/busybox:1.0").unwrap()],
            },
            LoadedImage {
                id: id.clone(),
                tags: vec![],
            },
        ];
        assert_eq!(
            loaded_lines(&images),
            vec![
                "Loaded image: demo/busybox:1.0".to_string(),
                format!("Loaded image ID: {id}"),
            ]
        );
    }
}
