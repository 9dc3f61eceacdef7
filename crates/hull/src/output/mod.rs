//! What goes to stdout: tables, JSON and `--format` templates, as Docker prints them.

pub mod human;
pub mod table;
pub mod template;

use std::io::Write;

use anyhow::Context as _;
use serde_json::Value;

pub use template::{FormatError, Template};

/// What `--format` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// No `--format`, or `table`: the command's default table.
    Default,
    /// `table TEMPLATE`: a header row from the field names, then one row per item, aligned.
    Table(String),
    /// `json`: one JSON object per line.
    Json,
    /// Any other template, rendered once per item.
    Template(String),
}

impl Format {
    pub fn parse(format: Option<&str>) -> Format {
        let Some(f) = format.map(str::trim).filter(|f| !f.is_empty()) else {
            return Format::Default;
        };
        if f == "json" {
            return Format::Json;
        }
        if f == "table" {
            return Format::Default;
        }
        match f.strip_prefix("table") {
            Some(rest) if rest.starts_with(char::is_whitespace) => {
                Format::Table(unescape(rest.trim_start()))
            }
            _ => Format::Template(unescape(f)),
        }
    }
}

/// Docker lets `\t` and `\n` be typed as two characters in `--format`.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// The shape of one kind of listing: its default table and a header for each field.
pub struct Columns {
    /// The default table's row template (without the `table` word).
    pub default_table: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
}

impl Columns {
    fn header_for(&self, field: &str) -> String {
        self.headers
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, h)| (*h).to_string())
            .unwrap_or_else(|| field.to_uppercase())
    }
}

/// Writes a command's data to its output (stdout in the binary, a buffer in tests).
pub struct Printer<W: Write> {
    out: W,
}

impl Printer<std::io::StdoutLock<'static>> {
    pub fn stdout() -> Self {
        Printer::new(std::io::stdout().lock())
    }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Self {
        Printer { out }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    /// One line of text.
    pub fn line(&mut self, text: impl std::fmt::Display) -> anyhow::Result<()> {
        writeln!(self.out, "{text}").context("writing output")?;
        self.out.flush().context("writing output")
    }

    /// A listing of `rows` (JSON objects keyed by Docker's field names) as `format` asks.
    pub fn listing(
        &mut self,
        format: &Format,
        columns: &Columns,
        rows: &[Value],
    ) -> anyhow::Result<()> {
        let text = render_listing(format, columns, rows)?;
        self.out
            .write_all(text.as_bytes())
            .context("writing output")?;
        self.out.flush().context("writing output")
    }

    /// `inspect`: an indented JSON array of the items, or a template per item.
    pub fn inspect(&mut self, format: Option<&str>, items: &[Value]) -> anyhow::Result<()> {
        let text = match format.filter(|f| !f.trim().is_empty()) {
            None => {
                if items.is_empty() {
                    "[]\n".to_string()
                } else {
                    let mut s = to_json_indented(&Value::Array(items.to_vec()))?;
                    s.push('\n');
                    s
                }
            }
            Some(f) => {
                let f = if f.trim() == "json" { "{{json .}}" } else { f };
                let t = Template::parse(&unescape(f))?;
                let mut s = String::new();
                for item in items {
                    s.push_str(&t.render(item)?);
                    s.push('\n');
                }
                s
            }
        };
        self.out
            .write_all(text.as_bytes())
            .context("writing output")?;
        self.out.flush().context("writing output")
    }
}

/// JSON indented with four spaces, as `docker inspect` prints it.
pub fn to_json_indented(v: &Value) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).context("encoding JSON")?;
    String::from_utf8(buf).context("encoding JSON")
}

/// Renders a listing to text.
pub fn render_listing(
    format: &Format,
    columns: &Columns,
    rows: &[Value],
) -> Result<String, FormatError> {
    match format {
        Format::Json => {
            let mut s = String::new();
            for row in rows {
                s.push_str(&row.to_string());
                s.push('\n');
            }
            Ok(s)
        }
        Format::Default => render_table(&unescape(columns.default_table), columns, rows),
        Format::Table(t) => render_table(t, columns, rows),
        Format::Template(t) => {
            let t = Template::parse(t)?;
            let mut s = String::new();
            for row in rows {
                s.push_str(&t.render(row)?);
                s.push('\n');
            }
            Ok(s)
        }
    }
}

fn render_table(text: &str, columns: &Columns, rows: &[Value]) -> Result<String, FormatError> {
    let t = Template::parse(text)?;
    // The header is the same template run over the field names' headers, as Docker does.
    let mut header = serde_json::Map::new();
    for (field, h) in columns.headers {
        header.insert((*field).to_string(), Value::String((*h).to_string()));
    }
    if let Some(Value::Object(first)) = rows.first() {
        for key in first.keys() {
            if !header.contains_key(key) {
                header.insert(key.clone(), Value::String(columns.header_for(key)));
            }
        }
    }
    let mut lines = vec![t.render(&Value::Object(header))?];
    for row in rows {
        lines.extend(t.render(row)?.split('\n').map(str::to_string));
    }
    Ok(table::align(&lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLUMNS: Columns = Columns {
        default_table: "{{.Repository}}\\t{{.Tag}}\\t{{.Size}}",
        headers: &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Size", "SIZE"),
        ],
    };

    fn rows() -> Vec<Value> {
        vec![
            json!({"Repository": "busybox", "Tag": "latest", "Size": "4.26MB"}),
            json!({"Repository": "<none>", "Tag": "<none>", "Size": "0B"}),
        ]
    }

    #[test]
    fn parses_format_flags() {
        assert_eq!(Format::parse(None), Format::Default);
        assert_eq!(Format::parse(Some("table")), Format::Default);
        assert_eq!(Format::parse(Some("json")), Format::Json);
        assert_eq!(
            Format::parse(Some("table {{.ID}}\\t{{.Tag}}")),
            Format::Table("{{.ID}}\t{{.Tag}}".into())
        );
        assert_eq!(
            Format::parse(Some("{{.ID}}")),
            Format::Template("{{.ID}}".into())
        );
        // Only the word `table` followed by a space selects a table.
        assert_eq!(
            Format::parse(Some("tables{{.ID}}")),
            Format::Template("tables{{.ID}}".into())
        );
    }

    #[test]
    fn default_table_has_header_and_rows() {
        let s = render_listing(&Format::Default, &COLUMNS, &rows()).unwrap();
        assert_eq!(
            s,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n<none>       <none>    0B\n"
        );
        let empty = render_listing(&Format::Default, &COLUMNS, &[]).unwrap();
        assert_eq!(empty, "REPOSITORY   TAG       SIZE\n");
    }

    #[test]
    fn custom_table_and_template() {
        let s = render_listing(
            &Format::parse(Some("table {{.Tag}}\\t{{.Repository}}")),
            &COLUMNS,
            &rows(),
        )
        .unwrap();
        assert_eq!(
            s,
            "TAG       REPOSITORY\nlatest    busybox\n<none>    <none>\n"
        );
        let s = render_listing(
            &Format::parse(Some("{{.Repository}}:{{.Tag}}")),
            &COLUMNS,
            &rows(),
        )
        .unwrap();
        assert_eq!(s, "busybox:latest\n<none>:<none>\n");
    }

    #[test]
    fn json_lines() {
        let s = render_listing(&Format::Json, &COLUMNS, &rows()).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["Repository"], "busybox");
        assert_eq!(render_listing(&Format::Json, &COLUMNS, &[]).unwrap(), "");
    }

    #[test]
    fn inspect_output() {
        let mut p = Printer::new(Vec::new());
        p.inspect(None, &[]).unwrap();
        assert_eq!(String::from_utf8(p.into_inner()).unwrap(), "[]\n");
        let mut p = Printer::new(Vec::new());
        p.inspect(None, &[json!({"Id": "x"})]).unwrap();
        assert_eq!(
            String::from_utf8(p.into_inner()).unwrap(),
            "[\n    {\n        \"Id\": \"x\"\n    }\n]\n"
        );
        let mut p = Printer::new(Vec::new());
        p.inspect(Some("{{.Id}}"), &[json!({"Id": "x"}), json!({"Id": "y"})])
            .unwrap();
        assert_eq!(String::from_utf8(p.into_inner()).unwrap(), "x\ny\n");
    }
}
