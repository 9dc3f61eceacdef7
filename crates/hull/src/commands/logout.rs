//! `hull logout [SERVER]`.

use hull_distribution::credentials;

use crate::cli::LogoutArgs;
use crate::commands::Ctx;
use crate::commands::login::{DEFAULT_SERVER, config_dir, registry_host};
use crate::output::Printer;

pub fn run(_ctx: &Ctx, args: LogoutArgs) -> anyhow::Result<()> {
    let registry = registry_host(args.server.as_deref().unwrap_or(DEFAULT_SERVER));
    let dir = config_dir()?;
    let mut printer = Printer::stdout();
    if credentials::erase(&dir, &registry)? {
        printer.line(format!("Removing login credentials for {registry}"))
    } else {
        printer.line(format!("Not logged in to {registry}"))
    }
}
