//! `hull system check [--repair]`: every problem on its own line, then a summary; exit status
//! 1 while problems remain.

use hull_image::CheckReport;

use crate::cli::CheckArgs;
use crate::commands::Ctx;
use crate::error::UserError;
use crate::output::Printer;

pub fn report_lines(r: &CheckReport) -> Vec<String> {
    let mut lines: Vec<String> = r.problems.iter().map(|p| format!("problem: {p}")).collect();
    lines.extend(r.repaired.iter().map(|p| format!("repaired: {p}")));
    let verdict = match (r.problems.len(), r.repaired.len()) {
        (0, _) => "no problems found".to_string(),
        (n, 0) => format!("{n} problem{} found", plural(n)),
        (n, m) => format!("{n} problem{} found, {m} repaired", plural(n)),
    };
    lines.push(format!(
        "checked {} blobs, {} layers, {} images: {verdict}",
        r.blobs_checked, r.layers_checked, r.images_checked
    ));
    lines
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn run(ctx: &Ctx, args: CheckArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let report = store.check(args.repair)?;
    let mut printer = Printer::stdout();
    for line in report_lines(&report) {
        printer.line(line)?;
    }
    if report.ok() || (args.repair && !report.repaired.is_empty()) {
        return Ok(());
    }
    let n = report.problems.len();
    let err = UserError::new(format!("the store has {n} problem{}", plural(n)));
    Err(if args.repair {
        err.into()
    } else {
        err.hint("hull system check --repair drops what is damaged so it can be fetched again")
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let ok = CheckReport {
            blobs_checked: 3,
            layers_checked: 1,
            images_checked: 1,
            ..CheckReport::default()
        };
        assert_eq!(
            report_lines(&ok),
            vec!["checked 3 blobs, 1 layers, 1 images: no problems found".to_string()]
        );
        let bad = CheckReport {
            problems: vec!["blob sha256:x is corrupt".into()],
            repaired: vec!["removed blob sha256:x".into()],
            ..CheckReport::default()
        };
        assert_eq!(
            report_lines(&bad),
            vec![
                "problem: blob sha256:x is corrupt".to_string(),
                "repaired: removed blob sha256:x".to_string(),
                "checked 0 blobs, 0 layers, 0 images: 1 problem found, 1 repaired".to_string(),
            ]
        );
    }
}
