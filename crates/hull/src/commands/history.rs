//! `hull history`.

use hull_image::HistoryRow;
use serde_json::{Value, json};

use crate::cli::HistoryArgs;
use crate::commands::Ctx;
use crate::output::{Columns, Format, Printer, human};

const COLUMNS: Columns = Columns {
    default_table: "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    headers: &[
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ],
};

const NON_HUMAN_TABLE: &str = "{{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

/// Width of CREATED BY unless `--no-trunc` (Docker's).
const CREATED_BY_WIDTH: usize = 45;

pub struct Options {
    pub human: bool,
    pub no_trunc: bool,
}

fn id_text(row: &HistoryRow, no_trunc: bool) -> String {
    match &row.id {
        None => "<missing>".to_string(),
        Some(id) if no_trunc => id.clone(),
        Some(id) => human::short_id(id),
    }
}

pub fn row_json(row: &HistoryRow, opts: &Options, now: jiff::Timestamp) -> Value {
    let created_by = row.created_by.replace('\t', " ");
    let created_by = if opts.no_trunc {
        created_by
    } else {
        human::ellipsis(&created_by, CREATED_BY_WIDTH)
    };
    let (created_at, size) = if opts.human {
        (
            human::created_at(row.created),
            human::size_with_precision(row.size, 3),
        )
    } else {
        (human::rfc3339(row.created), row.size.to_string())
    };
    json!({
        "Comment": row.comment,
        "CreatedAt": created_at,
        "CreatedBy": created_by,
        "CreatedSince": human::since(row.created, now),
        "ID": id_text(row, opts.no_trunc),
        "Size": size,
    })
}

pub fn run(ctx: &Ctx, args: HistoryArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let id = store.resolve(&args.image)?;
    let rows = store.history(&id)?;
    let mut printer = Printer::stdout();
    if args.quiet {
        for r in &rows {
            printer.line(id_text(r, args.no_trunc))?;
        }
        return Ok(());
    }
    let opts = Options {
        human: args.human,
        no_trunc: args.no_trunc,
    };
    let now = jiff::Timestamp::now();
    let json_rows: Vec<Value> = rows.iter().map(|r| row_json(r, &opts, now)).collect();
    let format = match Format::parse(args.format.as_deref()) {
        Format::Default if !args.human => Format::Table(NON_HUMAN_TABLE.to_string()),
        f => f,
    };
    printer.listing(&format, &COLUMNS, &json_rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render_listing;

    fn rows() -> Vec<HistoryRow> {
        vec![
            HistoryRow {
                id: Some(format!("sha256:{}", "c".repeat(64))),
                created: Some("2024-06-01T12:00:00Z".parse().unwrap()),
                created_by: "/bin/sh -c #(nop)  CMD [\"sh\"]".to_string(),
                size: 0,
                comment: String::new(),
                empty_layer: true,
            },
            HistoryRow {
                id: Some(format!("sha256:{}", "d".repeat(64))),
                created: Some("2024-06-01T11:00:00Z".parse().unwrap()),
                created_by: "/bin/sh -c #(nop) ADD file:4b03b5f551e3fbdf47ec609712007327828f7530cc3455c43bbcdcaf449a75a9 in / "
                    .to_string(),
                size: 4_261_456,
                comment: "imported".to_string(),
                empty_layer: false,
            },
            HistoryRow {
                id: None,
                created: None,
                created_by: "LABEL a=b".to_string(),
                size: 0,
                comment: String::new(),
                empty_layer: true,
            },
        ]
    }

    #[test]
    fn docker_table() {
        let now: jiff::Timestamp = "2024-06-15T12:00:00Z".parse().unwrap();
        let opts = Options {
            human: true,
            no_trunc: false,
        };
        let json_rows: Vec<Value> = rows().iter().map(|r| row_json(r, &opts, now)).collect();
        let out = render_listing(&Format::Default, &COLUMNS, &json_rows).unwrap();
        let want = "\
IMAGE          CREATED       CREATED BY                                      SIZE      COMMENT
cccccccccccc   2 weeks ago   /bin/sh -c #(nop)  CMD [\"sh\"]                   0B        
dddddddddddd   2 weeks ago   /bin/sh -c #(nop) ADD file:4b03b5f551e3fbdf4…   4.26MB    imported
<missing>      N/A           LABEL a=b                                       0B        
";
        assert_eq!(out, want);
    }

    #[test]
    fn non_human_and_untruncated() {
        let now: jiff::Timestamp = "2024-06-15T12:00:00Z".parse().unwrap();
        let opts = Options {
            human: false,
            no_trunc: true,
        };
        let r = &rows()[1];
        let v = row_json(r, &opts, now);
        assert_eq!(v["Size"], "4261456");
        assert_eq!(v["CreatedAt"], "2024-06-01T11:00:00Z");
        assert_eq!(v["ID"], format!("sha256:{}", "d".repeat(64)));
        assert_eq!(v["CreatedBy"], r.created_by.as_str());
    }
}
