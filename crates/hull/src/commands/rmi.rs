//! `hull rmi` / `hull image rm`: `Untagged:` and `Deleted:` lines as Docker prints them. Every
//! name is tried; each failure is its own `Error:` line and makes the exit status 1.

use hull_image::RemoveEvent;

use crate::cli::RmiArgs;
use crate::commands::Ctx;
use crate::error::{EXIT_FAILURE, Reported, error_line};
use crate::output::Printer;

pub fn event_line(e: &RemoveEvent) -> String {
    match e {
        RemoveEvent::Untagged(name) => format!("Untagged: {name}"),
        RemoveEvent::Deleted(id) => format!("Deleted: {id}"),
    }
}

pub fn run(ctx: &Ctx, args: RmiArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut printer = Printer::stdout();
    let mut errors = Vec::new();
    for name in &args.images {
        match store.remove(name, args.force) {
            Ok(events) => {
                for e in &events {
                    printer.line(event_line(e))?;
                }
            }
            Err(e) => errors.push(anyhow::Error::from(e)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let id = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            event_line(&RemoveEvent::Untagged("busybox:latest".into())),
            "Untagged: busybox:latest"
        );
        assert_eq!(
            event_line(&RemoveEvent::Deleted(id.parse().unwrap())),
            format!("Deleted: {id}")
        );
    }
}
