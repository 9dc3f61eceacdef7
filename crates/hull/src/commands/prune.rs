//! `hull image prune [-a] [-f]`.

use hull_image::{PruneReport, RemoveEvent};

use crate::cli::PruneArgs;
use crate::commands::{Ctx, confirm};
use crate::output::{Printer, human};

const DANGLING_WARNING: &str = "WARNING! This will remove all dangling images.";
const ALL_WARNING: &str =
    "WARNING! This will remove all images without at least one container associated to them.";

/// The report as Docker prints it.
pub fn report_text(report: &PruneReport) -> String {
    let mut s = String::new();
    if !report.deleted.is_empty() {
        s.push_str("Deleted Images:\n");
        for e in &report.deleted {
            match e {
                RemoveEvent::Untagged(name) => s.push_str(&format!("untagged: {name}\n")),
                RemoveEvent::Deleted(id) => s.push_str(&format!("deleted: {id}\n")),
            }
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "Total reclaimed space: {}",
        human::size(report.reclaimed)
    ));
    s
}

pub fn run(ctx: &Ctx, args: PruneArgs) -> anyhow::Result<()> {
    if !args.force {
        let warning = if args.all {
            ALL_WARNING
        } else {
            DANGLING_WARNING
        };
        if !confirm(&format!("{warning}\nAre you sure you want to continue?"))? {
            return Ok(());
        }
    }
    let store = ctx.store()?;
    let report = store.prune(args.all)?;
    Printer::stdout().line(report_text(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_report() {
        let id = format!("sha256:{}", "a".repeat(64));
        let report = PruneReport {
            deleted: vec![
                RemoveEvent::Untagged("busybox:latest".into()),
                RemoveEvent::Deleted(id.parse().unwrap()),
            ],
            reclaimed: 4_261_456,
        };
        assert_eq!(
            report_text(&report),
            format!(
                "Deleted Images:\nuntagged: busybox:latest\ndeleted: {id}\n\nTotal reclaimed space: 4.261MB"
            )
        );
        assert_eq!(
            report_text(&PruneReport::default()),
            "Total reclaimed space: 0B"
        );
    }
}
