//! `hull version [--format]`.

use serde_json::{Value, json};

use crate::cli::VersionArgs;
use crate::commands::Ctx;
use crate::output::{Printer, Template, table};

pub fn info(ctx: &Ctx) -> Value {
    let host = hull_oci::Platform::host();
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": host.os,
        "Arch": host.architecture,
        "Store": ctx.root.display().to_string(),
    })
}

pub fn text(info: &Value) -> String {
    let field = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let lines = vec![
        format!("Version:\t{}", field("Version")),
        format!("OS/Arch:\t{}/{}", field("Os"), field("Arch")),
        format!("Store:\t{}", field("Store")),
    ];
    table::align(&lines)
}

pub fn run(ctx: &Ctx, args: VersionArgs) -> anyhow::Result<()> {
    let info = info(ctx);
    let mut printer = Printer::stdout();
    match args
        .format
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        None => printer.line(text(&info).trim_end()),
        Some("json") => printer.line(info),
        Some(t) => printer.line(Template::parse(t)?.render(&info)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let v =
            json!({"Version": "0.1.0", "Os": "linux", "Arch": "amd64", "Store": "/var/lib/hull"});
        assert_eq!(
            text(&v),
            "Version:   0.1.0\nOS/Arch:   linux/amd64\nStore:     /var/lib/hull\n"
        );
    }
}
