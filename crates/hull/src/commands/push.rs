//! `hull push [-q] [-a] [--compression gzip|zstd] NAME[:TAG]`. Progress goes to stderr in
//! Docker's words; stdout gets one `TAG: digest: sha256:… size: N` line per tag pushed.

use anyhow::Context as _;
use hull_image::{Compression, PushOptions, PushResult};

use crate::cli::{PushArgs, PushCompression};
use crate::commands::Ctx;
use crate::error::UserError;
use crate::output::Printer;
use crate::progress::{Activity, Mode, Progress};

/// The line Docker prints when a tag is pushed.
pub fn summary_line(result: &PushResult) -> String {
    format!(
        "{}: digest: {} size: {}",
        result.reference.tag().unwrap_or(hull_oci::DEFAULT_TAG),
        result.digest,
        result.size
    )
}

pub async fn run(ctx: &Ctx, args: PushArgs) -> anyhow::Result<()> {
    let reference = super::parse_name_arg(&args.name, args.all_tags)?;
    if reference.digest().is_some() {
        return Err(
            UserError::new(format!("cannot push a digest reference: {}", args.name))
                .hint("tag the image (hull tag) and push the tag")
                .into(),
        );
    }
    let store = ctx.store()?;
    let tags = if args.all_tags {
        let tags = hull_image::repository_tags(&store, &reference)?;
        if tags.is_empty() {
            return Err(UserError::new(format!(
                "an image does not exist locally with the name: {}",
                reference.familiar_name()
            ))
            .into());
        }
        tags
    } else {
        let store_ref = reference.clone();
        if store.metadata().tag(&store_ref)?.is_none() {
            return Err(UserError::new(format!(
                "an image does not exist locally with the tag: {}",
                reference.familiar_name()
            ))
            .hint(format!("tag an image first: hull tag IMAGE {}", args.name))
            .into());
        }
        vec![reference.clone()]
    };
    let client = ctx.client()?;
    let opts = PushOptions {
        compression: match args.compression {
            PushCompression::Gzip => Compression::Gzip,
            PushCompression::Zstd => Compression::Zstd,
        },
        ..PushOptions::default()
    };
    let progress = Progress::new(Mode::detect(args.quiet), Activity::Push);
    let mut printer = Printer::stdout();
    progress.message(&format!(
        "The push refers to repository [{}]",
        reference.name()
    ));
    for r in tags {
        let result = hull_image::push(&store, &client, &r, &opts, progress.sink()).await;
        progress.finish();
        let result = result.with_context(|| format!("pushing {}", args.name))?;
        printer.line(summary_line(&result))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary() {
        let d = format!("sha256:{}", "e".repeat(64));
        let result = PushResult {
            reference: hull_oci::Reference::parse("127.0.0.1:5000/x/y:v1").unwrap(),
            image: d.parse().unwrap(),
            digest: d.parse().unwrap(),
            size: 528,
        };
        assert_eq!(summary_line(&result), format!("v1: digest: {d} size: 528"));
    }

    #[test]
    fn layer_words_are_dockers() {
        use hull_image::LayerEvent;

        use crate::progress::{bar_line, status_text};

        let words = |e: LayerEvent| status_text(Activity::Push, &e);
        assert_eq!(words(LayerEvent::Preparing), "Preparing");
        assert_eq!(words(LayerEvent::AlreadyExists), "Layer already exists");
        assert_eq!(
            words(LayerEvent::Mounted { from: "x/z".into() }),
            "Mounted from x/z"
        );
        assert_eq!(words(LayerEvent::Pushed), "Pushed");
        // A pull still says it its way.
        assert_eq!(
            status_text(Activity::Pull, &LayerEvent::AlreadyExists),
            "Already exists"
        );
        let d: hull_oci::Digest = format!("sha256:{}", "ab12".repeat(16)).parse().unwrap();
        let pushing = LayerEvent::Pushing {
            current: 0,
            total: Some(100),
        };
        assert_eq!(
            bar_line(Activity::Push, &d, &pushing, false),
            "ab12ab12ab12: Pushing       0B/100B"
        );
    }
}
