//! `hull images` / `hull image ls`.

use hull_image::{ImageSummary, Store};
use serde_json::{Value, json};

use crate::cli::ImagesArgs;
use crate::commands::Ctx;
use crate::error::UserError;
use crate::output::{Columns, Format, Printer, human};

const COLUMNS: Columns = Columns {
    default_table: "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
    headers: &[
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("Containers", "CONTAINERS"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("VirtualSize", "VIRTUAL SIZE"),
    ],
};

const DIGESTS_TABLE: &str =
    "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// `--filter` conditions, as Docker's image list understands them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub dangling: Option<bool>,
    /// Glob patterns over `name[:tag]`; a row matching any of them is shown.
    pub references: Vec<String>,
    pub before: Option<String>,
    pub since: Option<String>,
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
                "dangling" => {
                    let v = match value.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(UserError::new(format!(
                                "invalid filter 'dangling={value}': expected true or false"
                            )));
                        }
                    };
                    if f.dangling.is_some_and(|d| d != v) {
                        return Err(UserError::new(
                            "invalid filter: dangling=true and dangling=false together match nothing",
                        ));
                    }
                    f.dangling = Some(v);
                }
                "reference" => f.references.push(value.to_string()),
                "before" => f.before = Some(value.to_string()),
                "since" => f.since = Some(value.to_string()),
                other => {
                    return Err(UserError::new(format!("invalid filter '{other}'"))
                        .hint("image filters are dangling=, reference=, before= and since="));
                }
            }
        }
        Ok(f)
    }

    fn keeps(&self, row: &ImageSummary, before: Option<&Bound>, since: Option<&Bound>) -> bool {
        if let Some(d) = self.dangling
            && row.dangling != d
        {
            return false;
        }
        if !self.references.is_empty() {
            let Some(repo) = &row.repository else {
                return false;
            };
            if !self
                .references
                .iter()
                .any(|p| reference_matches(p, repo, row.tag.as_deref()))
            {
                return false;
            }
        }
        if let Some(b) = before
            && (row.id == b.id || row.created.is_none_or(|c| Some(c) >= b.created))
        {
            return false;
        }
        if let Some(s) = since
            && (row.id == s.id || row.created.is_none_or(|c| Some(c) <= s.created))
        {
            return false;
        }
        true
    }
}

struct Bound {
    id: hull_oci::ImageId,
    created: Option<jiff::Timestamp>,
}

/// Docker's `reference.FamiliarMatch`: the pattern against `name:tag`, then against `name`.
pub fn reference_matches(pattern: &str, repository: &str, tag: Option<&str>) -> bool {
    if let Some(t) = tag
        && glob_match(pattern, &format!("{repository}:{t}"))
    {
        return true;
    }
    glob_match(pattern, repository)
}

/// Go's `path.Match`: `*` is any run of non-`/` characters, `?` one non-`/` character,
/// `[...]` a class (`^` or `!` negates, ranges with `-`), `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some(('*', rest)) => {
            // `*` may swallow 0..k characters up to the next '/'.
            let limit = n.iter().position(|c| *c == '/').unwrap_or(n.len());
            (0..=limit).any(|k| n.get(k..).is_some_and(|tail| glob_at(rest, tail)))
        }
        Some(('?', rest)) => match n.split_first() {
            Some((c, tail)) if *c != '/' => glob_at(rest, tail),
            _ => false,
        },
        Some(('[', rest)) => {
            let Some((c, tail)) = n.split_first() else {
                return false;
            };
            if *c == '/' {
                return false;
            }
            match class_match(rest, *c) {
                Some((true, after)) => glob_at(after, tail),
                _ => false,
            }
        }
        Some(('\\', rest)) => match (rest.split_first(), n.split_first()) {
            (Some((pc, prest)), Some((c, tail))) if pc == c => glob_at(prest, tail),
            _ => false,
        },
        Some((pc, rest)) => match n.split_first() {
            Some((c, tail)) if c == pc => glob_at(rest, tail),
            _ => false,
        },
    }
}

/// Matches `c` against the class starting after `[`; returns whether it matched and the
/// pattern after `]`, or `None` for a malformed class (which matches nothing, as Go's
/// `ErrBadPattern`).
fn class_match(p: &[char], c: char) -> Option<(bool, &[char])> {
    let (negated, mut rest) = match p.split_first() {
        Some(('^' | '!', r)) => (true, r),
        _ => (false, p),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let (lo, r) = match rest.split_first() {
            None => return None,
            Some((']', r)) if !first => return Some((matched != negated, r)),
            Some(('\\', r)) => {
                let (e, r) = r.split_first()?;
                (*e, r)
            }
            Some((x, r)) => (*x, r),
        };
        first = false;
        rest = r;
        let hi = match rest {
            ['-', ']', ..] => lo,
            ['-', '\\', e, r @ ..] => {
                rest = r;
                *e
            }
            ['-', e, r @ ..] => {
                rest = r;
                *e
            }
            _ => lo,
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

fn bound(store: &Store, rows: &[ImageSummary], name: &str) -> anyhow::Result<Bound> {
    let id = store.resolve(name)?;
    let created = rows.iter().find(|r| r.id == id).and_then(|r| r.created);
    Ok(Bound { id, created })
}

pub fn row_json(row: &ImageSummary, no_trunc: bool, now: jiff::Timestamp) -> Value {
    let id = if no_trunc {
        row.id.to_string()
    } else {
        human::short_id(&row.id.to_string())
    };
    let size = human::size_with_precision(row.size, 3);
    json!({
        "Containers": "N/A",
        "CreatedAt": human::created_at(row.created),
        "CreatedSince": human::since(row.created, now),
        "Digest": row.digest.as_ref().map_or_else(|| "<none>".to_string(), ToString::to_string),
        "ID": id,
        "Repository": row.repository.clone().unwrap_or_else(|| "<none>".to_string()),
        "SharedSize": "N/A",
        "Size": size,
        "Tag": row.tag.clone().unwrap_or_else(|| "<none>".to_string()),
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
}

/// Newest first, then by name, as Docker lists.
fn sort_rows(rows: &mut [ImageSummary]) {
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.repository.is_none().cmp(&b.repository.is_none()))
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
            .then_with(|| a.id.cmp(&b.id))
    });
}

pub fn run(ctx: &Ctx, args: ImagesArgs) -> anyhow::Result<()> {
    let mut filters = Filters::parse(&args.filter)?;
    if let Some(r) = &args.repository {
        filters.references.push(r.clone());
    }
    let format = Format::parse(args.format.as_deref());
    let store = ctx.store()?;
    let all_rows = store.list()?;
    let before = filters
        .before
        .as_deref()
        .map(|b| bound(&store, &all_rows, b))
        .transpose()?;
    let since = filters
        .since
        .as_deref()
        .map(|s| bound(&store, &all_rows, s))
        .transpose()?;
    let mut rows: Vec<ImageSummary> = all_rows
        .iter()
        .filter(|r| filters.keeps(r, before.as_ref(), since.as_ref()))
        .cloned()
        .collect();
    sort_rows(&mut rows);
    let mut printer = Printer::stdout();
    if args.quiet {
        // One ID per row, as Docker prints (an image under two tags appears twice).
        for r in &rows {
            let id = if args.no_trunc {
                r.id.to_string()
            } else {
                human::short_id(&r.id.to_string())
            };
            printer.line(id)?;
        }
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let json_rows: Vec<Value> = rows
        .iter()
        .map(|r| row_json(r, args.no_trunc, now))
        .collect();
    let format = match (format, args.digests) {
        (Format::Default, true) => Format::Table(DIGESTS_TABLE.to_string()),
        (f, _) => f,
    };
    printer.listing(&format, &COLUMNS, &json_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        let f = Filters::parse(&[
            "dangling=true".to_string(),
            "reference=busy*".to_string(),
            "reference=*/lab/*".to_string(),
        ])
        .unwrap();
        assert_eq!(f.dangling, Some(true));
        assert_eq!(f.references, vec!["busy*", "*/lab/*"]);
        assert_eq!(
            Filters::parse(&["dangling=0".to_string()])
                .unwrap()
                .dangling,
            Some(false)
        );
        for bad in ["dangling", "dangling=maybe", "label=x", "nope=1"] {
            assert!(Filters::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(
            Filters::parse(&["dangling=true".to_string(), "dangling=false".to_string()]).is_err()
        );
        let e = Filters::parse(&["foo=bar".to_string()]).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'foo'");
    }

    #[test]
    fn globs_like_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("*", "busybox"));
        assert!(!glob_match("*", "lab/busybox"));
        assert!(glob_match("*/*", "lab/busybox"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[^a-c]usybox", "busybox"));
        assert!(glob_match("[!x]usybox", "busybox"));
        assert!(glob_match("busybox\\:1", "busybox:1"));
        assert!(!glob_match("busy", "busybox"));
        assert!(!glob_match("[a-", "a"));
    }

    #[test]
    fn reference_filter_as_docker() {
        assert!(reference_matches("busybox", "busybox", Some("latest")));
        assert!(reference_matches(
            "busybox:latest",
            "busybox",
            Some("latest")
        ));
        assert!(!reference_matches("busybox:1", "busybox", Some("latest")));
        assert!(reference_matches("busybox:*", "busybox", Some("1.36")));
        assert!(reference_matches(
            "127.0.0.1:5000/lab/*",
            "127.0.0.1:5000/lab/busybox",
            Some("oci")
        ));
        assert!(!reference_matches(
            "lab/*",
            "127.0.0.1:5000/lab/busybox",
            Some("oci")
        ));
    }

    fn summary(
        repo: Option<&str>,
        tag: Option<&str>,
        created: &str,
        hexchar: char,
    ) -> ImageSummary {
        ImageSummary {
            id: format!("sha256:{}", hexchar.to_string().repeat(64))
                .parse()
                .unwrap(),
            repository: repo.map(str::to_string),
            tag: tag.map(str::to_string),
            digest: None,
            created: Some(created.parse().unwrap()),
            size: 4_261_456,
            dangling: repo.is_none(),
        }
    }

    #[test]
    fn rows_and_filters() {
        let now: jiff::Timestamp = "2024-06-15T12:00:00Z".parse().unwrap();
        let tagged = summary(Some("busybox"), Some("latest"), "2024-06-01T12:00:00Z", 'a');
        let v = row_json(&tagged, false, now);
        assert_eq!(v["ID"], "aaaaaaaaaaaa");
        assert_eq!(v["Size"], "4.26MB");
        assert_eq!(v["CreatedSince"], "2 weeks ago");
        assert_eq!(v["Digest"], "<none>");
        let dangling = summary(None, None, "2024-06-10T12:00:00Z", 'b');
        let v = row_json(&dangling, true, now);
        assert_eq!(v["Repository"], "<none>");
        assert_eq!(v["ID"], format!("sha256:{}", "b".repeat(64)));

        let f = Filters::parse(&["dangling=true".to_string()]).unwrap();
        assert!(f.keeps(&dangling, None, None));
        assert!(!f.keeps(&tagged, None, None));
        let f = Filters::parse(&["reference=busy*".to_string()]).unwrap();
        assert!(f.keeps(&tagged, None, None));
        assert!(!f.keeps(&dangling, None, None));
        let b = Bound {
            id: dangling.id.clone(),
            created: dangling.created,
        };
        let f = Filters::default();
        assert!(f.keeps(&tagged, Some(&b), None));
        assert!(!f.keeps(&tagged, None, Some(&b)));

        let mut rows = vec![tagged.clone(), dangling.clone()];
        sort_rows(&mut rows);
        assert_eq!(rows[0], dangling, "newest first");
    }
}
