//! `hull inspect` / `hull image inspect`: a JSON array like `docker image inspect`, or a
//! template per image. Images that are found are printed even when others are not; each
//! missing one is an `Error:` line and the exit status is 1, as Docker does.

use crate::cli::InspectArgs;
use crate::commands::Ctx;
use crate::error::{EXIT_FAILURE, Reported, error_line};
use crate::output::Printer;

pub fn run(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for name in &args.images {
        match store.resolve(name).and_then(|id| store.inspect(&id)) {
            Ok(v) => items.push(v),
            Err(e) => errors.push(anyhow::Error::from(e)),
        }
    }
    Printer::stdout().inspect(args.format.as_deref(), &items)?;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => {
            for e in &errors {
                eprintln!("{}", error_line(e));
            }
            Err(Reported { code: EXIT_FAILURE }.into())
        }
    }
}
