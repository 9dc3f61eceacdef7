//! `hull pull [-q] [-a] [--platform P] NAME[:TAG|@DIGEST]`. Progress goes to stderr; the
//! pulled reference is the one line on stdout (all of it with `-q`).

use anyhow::Context as _;
use hull_image::{PullOptions, PullResult};

use crate::cli::PullArgs;
use crate::commands::{Ctx, familiar, parse_platform};
use crate::output::Printer;
use crate::progress::{Activity, Mode, Progress};

/// Whether the user typed a tag or digest (Docker says `Using default tag: latest` if not).
fn names_tag_or_digest(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':') || name.contains('@')
}

/// The lines Docker prints after a pull.
pub fn summary_lines(result: &PullResult) -> [String; 2] {
    let status = if result.up_to_date {
        format!(
            "Status: Image is up to date for {}",
            familiar(&result.reference)
        )
    } else {
        format!(
            "Status: Downloaded newer image for {}",
            familiar(&result.reference)
        )
    };
    [format!("Digest: {}", result.digest), status]
}

pub async fn run(ctx: &Ctx, args: PullArgs) -> anyhow::Result<()> {
    let platform = parse_platform(args.platform.as_deref())?;
    let reference = super::parse_name_arg(&args.name, args.all_tags)?;
    let store = ctx.store()?;
    let client = ctx.client()?;
    let opts = PullOptions {
        platform,
        max_concurrent_downloads: ctx.max_concurrent_downloads,
        ..PullOptions::default()
    };
    let progress = Progress::new(Mode::detect(args.quiet), Activity::Pull);
    let mut printer = Printer::stdout();
    if args.all_tags {
        progress.message(&format!(
            "Pulling all tags of {}",
            reference.familiar_name()
        ));
        let results =
            hull_image::pull_all_tags(&store, &client, &reference, &opts, progress.sink()).await;
        progress.finish();
        let results = results.with_context(|| format!("pulling {}", args.name))?;
        for r in &results {
            for line in summary_lines(r) {
                progress.message(&line);
            }
        }
        return printer.line(reference.name());
    }
    if !names_tag_or_digest(&args.name) {
        progress.message(&format!("Using default tag: {}", hull_oci::DEFAULT_TAG));
    }
    progress.message(&format!(
        "{}: Pulling from {}",
        reference.manifest_ref(),
        reference.repository()
    ));
    let result = hull_image::pull(&store, &client, &reference, &opts, progress.sink()).await;
    progress.finish();
    let result = result.with_context(|| format!("pulling {}", args.name))?;
    for line in summary_lines(&result) {
        progress.message(&line);
    }
    printer.line(&result.reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tag_detection() {
        assert!(!names_tag_or_digest("busybox"));
        assert!(!names_tag_or_digest("127.0.0.1:5000/lab/busybox"));
        assert!(names_tag_or_digest("127.0.0.1:5000/lab/busybox:oci"));
        assert!(names_tag_or_digest("busybox@sha256:abc"));
    }

    #[test]
    fn summary() {
        let d = format!("sha256:{}", "e".repeat(64));
        let result = PullResult {
            reference: hull_oci::Reference::parse("busybox").unwrap(),
            digest: d.parse().unwrap(),
            image: d.parse().unwrap(),
            new_layers: 1,
            up_to_date: false,
        };
        assert_eq!(
            summary_lines(&result),
            [
                format!("Digest: {d}"),
                "Status: Downloaded newer image for busybox:latest".to_string()
            ]
        );
    }
}
