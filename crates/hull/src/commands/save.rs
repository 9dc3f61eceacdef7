//! `hull save [-o FILE] [--format docker-archive|oci-archive] IMAGE...`.

use std::io::Write;

use anyhow::Context as _;
use hull_image::ArchiveFormat;

use crate::cli::{ArchiveKind, SaveArgs};
use crate::commands::{Ctx, Sink};

pub fn run(ctx: &Ctx, args: SaveArgs) -> anyhow::Result<()> {
    let format = match args.format {
        ArchiveKind::DockerArchive => ArchiveFormat::DockerArchive,
        ArchiveKind::OciArchive => ArchiveFormat::OciArchive,
    };
    // Refuse a terminal before touching the store, as Docker does.
    let mut sink = Sink::open(args.output.as_deref())?;
    let store = ctx.store()?;
    {
        let mut w = sink.writer();
        store.save(&args.images, format, &mut w)?;
        w.flush().context("writing the archive")?;
    }
    sink.finish()
}
