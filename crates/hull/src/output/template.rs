//! Go templates for `--format`, through `gtmpl`, with the functions Docker adds (`json`,
//! `join`, `lower`, `upper`, `title`, `split`, `truncate`, `pad`).
//!
//! Data arrives as JSON. The top-level object of a row is a struct in Docker's Go code, so an
//! unknown field there is an error (a typo gets a message); nested objects are maps, where a
//! missing key prints `<no value>` as Go's does.

use std::collections::HashMap;

use gtmpl::error::ExecError;
use gtmpl::{Context, Func, FuncError, Value};

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template: executing {template:?}: {reason}")]
    Execute { template: String, reason: String },
}

/// A parsed `--format` template.
pub struct Template {
    text: String,
    inner: gtmpl::Template,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, FormatError> {
        let mut inner = gtmpl::Template::default();
        inner.add_funcs(&FUNCS);
        inner.add_func("_hull_print", go_print);
        inner
            .parse(wrap_output_actions(text))
            .map_err(|e| FormatError::Parse(e.to_string()))?;
        Ok(Template {
            text: text.to_string(),
            inner,
        })
    }

    pub fn render(&self, data: &serde_json::Value) -> Result<String, FormatError> {
        let ctx = Context::from(to_value(data, true));
        self.inner.render(&ctx).map_err(|e| FormatError::Execute {
            template: self.text.clone(),
            reason: describe(&e),
        })
    }
}

fn describe(e: &ExecError) -> String {
    match e {
        ExecError::NoFiledFor(field, _) => format!("can't evaluate field {field}"),
        other => other.to_string(),
    }
}

const FUNCS: [(&str, Func); 8] = [
    ("json", json as Func),
    ("join", join as Func),
    ("lower", lower as Func),
    ("upper", upper as Func),
    ("title", title as Func),
    ("split", split as Func),
    ("truncate", truncate as Func),
    ("pad", pad as Func),
];

/// JSON to template values: objects become `Object` at the top (unknown fields are errors)
/// and `Map` below it.
pub fn to_value(v: &serde_json::Value, top: bool) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(|x| to_value(x, false)).collect()),
        serde_json::Value::Object(o) => {
            let map: HashMap<String, Value> = o
                .iter()
                .map(|(k, x)| (k.clone(), to_value(x, false)))
                .collect();
            if top {
                Value::Object(map)
            } else {
                Value::Map(map)
            }
        }
    }
}

/// Template values back to JSON, for the `json` function. Object keys come out sorted, as
/// Go's encoder sorts map keys.
pub fn from_value(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(from_value).collect()),
        Value::Object(o) | Value::Map(o) => {
            let map: serde_json::Map<String, serde_json::Value> =
                o.iter().map(|(k, x)| (k.clone(), from_value(x))).collect();
            serde_json::Value::Object(map)
        }
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str, want: usize) -> Result<&'a Value, FuncError> {
    if args.len() != want {
        return Err(FuncError::ExactlyXArgs(name.to_string(), want));
    }
    args.get(i)
        .ok_or_else(|| FuncError::ExactlyXArgs(name.to_string(), want))
}

fn string_arg(args: &[Value], i: usize, name: &str, want: usize) -> Result<String, FuncError> {
    match arg(args, i, name, want)? {
        Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

fn int_arg(args: &[Value], i: usize, name: &str, want: usize) -> Result<usize, FuncError> {
    match arg(args, i, name, want)? {
        Value::Number(n) => n
            .as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "json", 1)?;
    serde_json::to_string(&from_value(v))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join", 2)?;
    match arg(args, 0, "join", 2)? {
        Value::Array(a) => Ok(Value::String(
            a.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        Value::Nil | Value::NoValue => Ok(Value::String(String::new())),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "lower", 1)?.to_lowercase(),
    ))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "upper", 1)?.to_uppercase(),
    ))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title", 1)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "split", 2)?;
    let sep = string_arg(args, 1, "split", 2)?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "truncate", 2)?;
    let n = int_arg(args, 1, "truncate", 2)?;
    Ok(Value::String(s.chars().take(n).collect()))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "pad", 3)?;
    let before = int_arg(args, 1, "pad", 3)?;
    let after = int_arg(args, 2, "pad", 3)?;
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

/// Routes every action that prints a value through [`go_print`], so lists and maps print as Go
/// prints them (`[a b]`, `map[k:v]`) where gtmpl would print its own debug form. Control
/// actions (`if`, `range`, `end`, …), comments and variable declarations are left alone.
fn wrap_output_actions(text: &str) -> String {
    const CONTROL: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = find_action_end(after) else {
            out.push_str(after);
            return out;
        };
        let (action, tail) = after.split_at(end + 2);
        rest = tail;
        let inner = action
            .strip_prefix("{{")
            .and_then(|a| a.strip_suffix("}}"))
            .unwrap_or_default();
        let (open, inner) = match inner.strip_prefix('-') {
            Some(i) if i.starts_with(char::is_whitespace) => ("{{- ", i),
            _ => ("{{", inner),
        };
        let (close, inner) = match inner.strip_suffix('-') {
            Some(i) if i.ends_with(char::is_whitespace) => (" -}}", i),
            _ => ("}}", inner),
        };
        let body = inner.trim();
        let first = body
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or_default();
        let declares = body.starts_with('$') && body.contains('=');
        if body.is_empty() || body.starts_with("/*") || CONTROL.contains(&first) || declares {
            out.push_str(action);
        } else {
            out.push_str(&format!("{open}_hull_print ({body}){close}"));
        }
    }
    out.push_str(rest);
    out
}

/// Byte offset of the `}}` closing the action that `s` starts with, skipping string literals.
fn find_action_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 2;
    let mut quote: Option<u8> = None;
    while let Some(&b) = bytes.get(i) {
        match quote {
            Some(q) if b == b'\\' && q == b'"' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'`' || b == b'\'' => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// A value as Go's `fmt.Print` shows it: lists as `[a b]`, maps as `map[k:v]` (keys sorted).
fn go_print(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "print", 1)?;
    Ok(Value::String(go_format(v)))
}

fn go_format(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_format).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) | Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", m.get(k).map(go_format).unwrap_or_default()))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::NoValue => "<no value>".to_string(),
        Value::Nil => "<nil>".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_and_maps_print_as_go_prints_them() {
        let data = json!({"Tags": ["a:1", "b:2"], "Labels": {"z": "1", "a": "2"}, "Empty": []});
        assert_eq!(
            render("{{.Tags}} {{.Labels}} {{.Empty}}", data.clone()).unwrap(),
            "[a:1 b:2] map[a:2 z:1] []"
        );
        assert_eq!(
            render(
                "{{- range $i, $t := .Tags -}} {{$i}}={{$t}} {{- end}}",
                data.clone()
            )
            .unwrap(),
            "0=a:11=b:2"
        );
        assert_eq!(
            render(
                "{{if .Tags}}{{index .Tags 1}}{{else}}none{{end}}",
                data.clone()
            )
            .unwrap(),
            "b:2"
        );
        assert_eq!(
            render("{{/* a comment */}}{{join .Tags \"}}\"}}", data).unwrap(),
            "a:1}}b:2"
        );
    }

    fn render(t: &str, data: serde_json::Value) -> Result<String, FormatError> {
        Template::parse(t)?.render(&data)
    }

    #[test]
    fn fields_and_functions() {
        let data = json!({
            "ID": "0123456789ab",
            "Repository": "busybox",
            "Config": {"Cmd": ["sh", "-c"], "Labels": {"a": "b"}},
            "Size": 4261456u64,
        });
        assert_eq!(render("{{.ID}}", data.clone()).unwrap(), "0123456789ab");
        assert_eq!(
            render("{{json .Config}}", data.clone()).unwrap(),
            r#"{"Cmd":["sh","-c"],"Labels":{"a":"b"}}"#
        );
        assert_eq!(
            render("{{join .Config.Cmd \" \"}}", data.clone()).unwrap(),
            "sh -c"
        );
        assert_eq!(
            render("{{upper .Repository}}:{{.Size}}", data.clone()).unwrap(),
            "BUSYBOX:4261456"
        );
        assert_eq!(
            render("{{index .Config.Labels \"a\"}}", data.clone()).unwrap(),
            "b"
        );
        assert_eq!(
            render("{{.Config.Labels.missing}}", data.clone()).unwrap(),
            "<no value>"
        );
        assert_eq!(
            render("{{range .Config.Cmd}}[{{.}}]{{end}}", data.clone()).unwrap(),
            "[sh][-c]"
        );
        assert_eq!(
            render("{{title \"hello world\"}} {{truncate .Repository 4}}", data).unwrap(),
            "Hello World busy"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = render("{{.Nope}}", json!({"ID": "x"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template: executing \"{{.Nope}}\": can't evaluate field Nope"
        );
        let e = render("{{.ID", json!({})).unwrap_err();
        assert!(e.to_string().starts_with("template parsing error"), "{e}");
        assert!(render("{{json}}", json!({})).is_err());
    }
}
