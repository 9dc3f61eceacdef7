//! `hull image mount IMAGE` (prints the mount point) and `hull image umount IMAGE`.

use crate::cli::MountArgs;
use crate::commands::Ctx;
use crate::error::UserError;
use crate::output::Printer;

pub fn mount(ctx: &Ctx, args: MountArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let id = store.resolve(&args.image)?;
    let path = store.mount(&id)?;
    Printer::stdout().line(path.display())
}

pub fn umount(ctx: &Ctx, args: MountArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let id = store.resolve(&args.image)?;
    if !store.unmount(&id)? {
        return Err(UserError::new(format!("image {} is not mounted", args.image)).into());
    }
    Printer::stdout().line(&args.image)
}
