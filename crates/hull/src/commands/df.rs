//! `hull system df [-v] [--format]`: where the store's bytes are, in Docker's layout.

use std::collections::HashMap;

use hull_image::{DiskUsage, ImageSummary};
use serde_json::{Value, json};

use crate::cli::DfArgs;
use crate::commands::Ctx;
use crate::output::{Columns, Format, Printer, human, render_listing};

const SUMMARY: Columns = Columns {
    default_table: "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    headers: &[
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ],
};

const IMAGES: Columns = Columns {
    default_table: "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}",
    headers: &[
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("Size", "SIZE"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
    ],
};

/// Docker's RECLAIMABLE cell: `4.26MB (70%)`.
pub fn reclaimable(part: u64, total: u64) -> String {
    if total == 0 {
        return human::size(part);
    }
    let pct = u128::from(part) * 100 / u128::from(total);
    format!("{} ({pct}%)", human::size(part))
}

pub fn summary_rows(du: &DiskUsage) -> Vec<Value> {
    let active = du.images.iter().filter(|i| !i.dangling).count();
    vec![
        json!({
            "Type": "Images",
            "TotalCount": du.images.len().to_string(),
            "Active": active.to_string(),
            "Size": human::size(du.images_bytes),
            "Reclaimable": reclaimable(du.images_reclaimable, du.images_bytes),
        }),
        json!({
            "Type": "Unused data",
            "TotalCount": "-",
            "Active": "0",
            "Size": human::size(du.unreferenced_bytes),
            "Reclaimable": reclaimable(du.unreferenced_bytes, du.unreferenced_bytes),
        }),
        json!({
            "Type": "Partial downloads",
            "TotalCount": "-",
            "Active": "-",
            "Size": human::size(du.ingest_bytes),
            "Reclaimable": human::size(0),
        }),
        json!({
            "Type": "Metadata",
            "TotalCount": "-",
            "Active": "-",
            "Size": human::size(du.metadata_bytes),
            "Reclaimable": human::size(0),
        }),
    ]
}

/// One row per tag of each image (`<none>` for an untagged one).
pub fn image_rows(du: &DiskUsage, listed: &[ImageSummary], now: jiff::Timestamp) -> Vec<Value> {
    let created: HashMap<_, _> = listed.iter().map(|s| (s.id.clone(), s.created)).collect();
    let mut rows = Vec::new();
    for img in &du.images {
        let when = created.get(&img.id).copied().flatten();
        let names: Vec<(String, String)> = if img.tags.is_empty() {
            vec![("<none>".to_string(), "<none>".to_string())]
        } else {
            img.tags
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
                    _ => (t.clone(), "<none>".to_string()),
                })
                .collect()
        };
        for (repo, tag) in names {
            rows.push(json!({
                "Repository": repo,
                "Tag": tag,
                "ID": human::short_id(&img.id.to_string()),
                "CreatedSince": human::since(when, now),
                "Size": human::size(img.size),
                "SharedSize": human::size(img.shared),
                "UniqueSize": human::size(img.unique),
            }));
        }
    }
    rows
}

pub fn run(ctx: &Ctx, args: DfArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let du = store.disk_usage()?;
    let format = Format::parse(args.format.as_deref());
    let mut printer = Printer::stdout();
    if !args.verbose {
        return printer.listing(&format, &SUMMARY, &summary_rows(&du));
    }
    let listed = store.list()?;
    let rows = image_rows(&du, &listed, jiff::Timestamp::now());
    if format != Format::Default {
        return printer.listing(&format, &IMAGES, &rows);
    }
    let images = render_listing(&Format::Default, &IMAGES, &rows)?;
    let other: Vec<String> = std::iter::once("TYPE\tSIZE".to_string())
        .chain(summary_rows(&du).iter().skip(1).map(|r| {
            format!(
                "{}\t{}",
                r["Type"].as_str().unwrap_or_default(),
                r["Size"].as_str().unwrap_or_default()
            )
        }))
        .collect();
    printer.line(format!(
        "Images space usage:\n\n{images}\nOther space usage:\n\n{}",
        crate::output::table::align(&other).trim_end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_image::ImageUsage;

    fn usage() -> DiskUsage {
        DiskUsage {
            images: vec![
                ImageUsage {
                    id: format!("sha256:{}", "a".repeat(64)).parse().unwrap(),
                    tags: vec![
                        "busybox:latest".into(),
                        "127.0.0.1:5000/lab/busybox:oci".into(),
                    ],
                    size: 4_261_456,
                    shared: 0,
                    unique: 4_261_456,
                    dangling: false,
                },
                ImageUsage {
                    id: format!("sha256:{}", "b".repeat(64)).parse().unwrap(),
                    tags: vec![],
                    size: 1000,
                    shared: 0,
                    unique: 1000,
                    dangling: true,
                },
            ],
            images_bytes: 4_262_456,
            images_reclaimable: 1000,
            dangling_reclaimable: 1000,
            unreferenced_bytes: 0,
            ingest_bytes: 0,
            metadata_bytes: 4096,
        }
    }

    #[test]
    fn summary_table() {
        let out = render_listing(&Format::Default, &SUMMARY, &summary_rows(&usage())).unwrap();
        let want = "\
TYPE                TOTAL     ACTIVE    SIZE      RECLAIMABLE
Images              2         1         4.262MB   1kB (0%)
Unused data         -         0         0B        0B
Partial downloads   -         -         0B        0B
Metadata            -         -         4.096kB   0B
";
        assert_eq!(out, want);
        assert_eq!(reclaimable(50, 100), "50B (50%)");
    }

    #[test]
    fn verbose_rows() {
        let now = jiff::Timestamp::now();
        let rows = image_rows(&usage(), &[], now);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1]["Repository"], "127.0.0.1:5000/lab/busybox");
        assert_eq!(rows[1]["Tag"], "oci");
        assert_eq!(rows[2]["Repository"], "<none>");
        assert_eq!(rows[2]["CreatedSince"], "N/A");
    }
}
