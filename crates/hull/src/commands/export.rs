//! `hull image export IMAGE [-o FILE]`: the image's flattened root filesystem as a tar.

use std::io::Write;

use anyhow::Context as _;

use crate::cli::ExportArgs;
use crate::commands::{Ctx, Sink};

pub fn run(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<()> {
    let mut sink = Sink::open(args.output.as_deref())?;
    let store = ctx.store()?;
    let id = store.resolve(&args.image)?;
    {
        let mut w = sink.writer();
        store.export(&id, &mut w)?;
        w.flush().context("writing the archive")?;
    }
    sink.finish()
}
