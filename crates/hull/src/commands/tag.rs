//! `hull tag SOURCE TARGET`.

use crate::cli::TagArgs;
use crate::commands::{Ctx, parse_reference};

pub fn run(ctx: &Ctx, args: TagArgs) -> anyhow::Result<()> {
    let target = parse_reference(&args.target)?;
    if target.digest().is_some() {
        anyhow::bail!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        );
    }
    let store = ctx.store()?;
    store.tag(&args.source, &target)?;
    Ok(())
}
