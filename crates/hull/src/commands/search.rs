//! `hull search [--registry HOST] [--limit N] [--filter F]… [--no-trunc] [--format F]
//! [HOST/]TERM`: Docker's `search` (Docker 25's columns: NAME DESCRIPTION STARS OFFICIAL),
//! against Docker Hub or any registry answering `/v1/search` (`hull serve` does).

use hull_distribution::search::{self, SearchResult};
use serde_json::{Value, json};

use crate::cli::SearchArgs;
use crate::commands::Ctx;
use crate::error::UserError;
use crate::output::{Columns, Format, Printer};

/// Docker's default registry.
const DEFAULT_REGISTRY: &str = "docker.io";
/// Descriptions are cut to this many characters unless `--no-trunc`.
const DESCRIPTION_WIDTH: usize = 45;
const MAX_LIMIT: usize = 100;

const COLUMNS: Columns = Columns {
    default_table: "{{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}",
    headers: &[
        ("Name", "NAME"),
        ("Description", "DESCRIPTION"),
        ("StarCount", "STARS"),
        ("IsOfficial", "OFFICIAL"),
        ("IsAutomated", "AUTOMATED"),
    ],
};

/// `--filter` conditions, as Docker's search understands them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub stars: Option<u64>,
    pub is_official: Option<bool>,
    pub is_automated: Option<bool>,
}

fn parse_bool(key: &str, value: &str) -> Result<bool, UserError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(UserError::new(format!(
            "invalid filter '{key}={value}': expected true or false"
        ))),
    }
}

impl Filters {
    pub fn parse(args: &[String]) -> Result<Filters, UserError> {
        let mut f = Filters::default();
        for a in args {
            let Some((key, value)) = a.split_once('=') else {
                return Err(UserError::new(format!(
                    "bad format of filter (expected name=value): {a}"
                )));
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "stars" => {
                    let n = value.trim().parse::<u64>().map_err(|_| {
                        UserError::new(format!("invalid filter 'stars={value}': not a number"))
                    })?;
                    f.stars = Some(f.stars.map_or(n, |s| s.max(n)));
                }
                "is-official" => f.is_official = Some(parse_bool(key, value)?),
                "is-automated" => f.is_automated = Some(parse_bool(key, value)?),
                other => {
                    return Err(UserError::new(format!("invalid filter '{other}'"))
                        .hint("search filters are stars=N, is-official=true|false and is-automated=true|false"));
                }
            }
        }
        Ok(f)
    }

    pub fn keeps(&self, r: &SearchResult) -> bool {
        self.stars.is_none_or(|s| r.star_count >= s)
            && self.is_official.is_none_or(|o| r.is_official == o)
            && self.is_automated.is_none_or(|a| r.is_automated == a)
    }
}

/// `HOST/term` → (`Some(HOST)`, `term`) when the first component looks like a host (has a `.`
/// or `:`, or is `localhost`), as Docker splits a search term.
pub fn split_term(term: &str) -> (Option<&str>, &str) {
    match term.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (Some(host), rest)
        }
        _ => (None, term),
    }
}

/// Docker's `Ellipsis`: at most `width` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn ok_mark(b: bool) -> &'static str {
    if b { "[OK]" } else { "" }
}

pub fn row_json(r: &SearchResult, no_trunc: bool) -> Value {
    let description = r.description.replace(['\n', '\r'], " ");
    let description = if no_trunc {
        description
    } else {
        ellipsis(&description, DESCRIPTION_WIDTH)
    };
    json!({
        "Name": r.name,
        "Description": description,
        "StarCount": r.star_count.to_string(),
        "IsOfficial": ok_mark(r.is_official),
        "IsAutomated": ok_mark(r.is_automated),
    })
}

pub async fn run(ctx: &Ctx, args: SearchArgs) -> anyhow::Result<()> {
    if !(1..=MAX_LIMIT).contains(&args.limit) {
        return Err(UserError::new(format!(
            "limit {} is outside the range of [1, {MAX_LIMIT}]",
            args.limit
        ))
        .into());
    }
    let filters = Filters::parse(&args.filter)?;
    let format = Format::parse(args.format.as_deref());
    let (host, term) = split_term(&args.term);
    let registry = args
        .registry
        .as_deref()
        .or(host)
        .unwrap_or(DEFAULT_REGISTRY)
        .to_string();
    if term.trim().is_empty() {
        return Err(UserError::new("search needs a term").into());
    }
    let client = ctx.client()?;
    let results = search::search(&client, &registry, term, args.limit).await?;
    let rows: Vec<Value> = results
        .results
        .iter()
        .filter(|r| filters.keeps(r))
        .map(|r| row_json(r, args.no_trunc))
        .collect();
    Printer::stdout().listing(&format, &COLUMNS, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, desc: &str, stars: u64, official: bool) -> SearchResult {
        SearchResult {
            name: name.into(),
            description: desc.into(),
            star_count: stars,
            is_official: official,
            is_automated: false,
        }
    }

    #[test]
    fn terms_split_like_docker() {
        assert_eq!(split_term("busybox"), (None, "busybox"));
        assert_eq!(split_term("lab/busybox"), (None, "lab/busybox"));
        assert_eq!(
            split_term("127.0.0.1:5000/busy"),
            (Some("127.0.0.1:5000"), "busy")
        );
        assert_eq!(split_term("localhost/x"), (Some("localhost"), "x"));
        assert_eq!(split_term("quay.io/app"), (Some("quay.io"), "app"));
    }

    #[test]
    fn filters_parse_and_keep() {
        let f = Filters::parse(&["stars=3".into(), "is-official=true".into()]).unwrap();
        assert!(f.keeps(&result("a", "", 3, true)));
        assert!(!f.keeps(&result("a", "", 2, true)));
        assert!(!f.keeps(&result("a", "", 5, false)));
        for bad in ["stars=x", "is-official=maybe", "label=x", "stars"] {
            assert!(Filters::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_as_docker_prints_them() {
        let long = "A very long description that goes on and on past the column";
        let v = row_json(&result("lab/app", long, 7, true), false);
        let d = v["Description"].as_str().unwrap();
        assert_eq!(d.chars().count(), 45);
        assert!(d.ends_with('…'));
        assert_eq!(v["IsOfficial"], "[OK]");
        assert_eq!(v["StarCount"], "7");
        let v = row_json(&result("x", "two\nlines", 0, false), true);
        assert_eq!(v["Description"], "two lines");
        assert_eq!(v["IsOfficial"], "");
        assert_eq!(ellipsis("short", 45), "short");
    }
}
