//! One logical line to one instruction: the keyword, the `--flags` before the arguments, the
//! argument forms of each instruction (BuildKit's `parser/line_parsers.go`) and the checks and
//! flags of each instruction (BuildKit's `instructions/parse.go` and `bflag.go`).

use std::time::Duration;

use crate::ast::{
    Add, ArgDecl, Command, Copy, Healthcheck, Heredoc, Instruction, InstructionKind, KeyValue,
    NetworkMode, Onbuild, Run, SecurityMode, Source, Span, Stage,
};
use crate::mount::Mount;
use crate::parser::{ParseError, parse_heredoc_marker};

/// What a logical line turns into: a stage header or an instruction.
#[derive(Debug)]
pub(crate) enum Built {
    From(Stage),
    Instruction(Instruction),
}

/// A logical line split into keyword, flags and arguments (BuildKit's `splitCommand`).
#[derive(Debug, Clone)]
pub(crate) struct Logical {
    /// The keyword as written.
    cmd: String,
    /// Raw `--name[=value]` words before the arguments.
    flags: Vec<String>,
    /// The rest of the line, trimmed.
    args: String,
    /// The whole line, trimmed.
    original: String,
}

fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

pub(crate) fn split_command(line: &str) -> Logical {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_blank) {
        Some(i) => trimmed.split_at(i),
        None => (trimmed, ""),
    };
    let rest = rest.trim_start_matches(is_blank);
    let (flags, args) = if rest.is_empty() {
        (Vec::new(), String::new())
    } else {
        extract_builder_flags(rest)
    };
    Logical {
        cmd: cmd.to_owned(),
        flags,
        args: args.trim().to_owned(),
        original: trimmed.to_owned(),
    }
}

impl Logical {
    fn lower(&self) -> String {
        self.cmd.to_ascii_lowercase()
    }

    /// Whether heredoc markers on this line open heredocs: RUN, COPY and ADD (also as an
    /// ONBUILD trigger) in shell form.
    pub(crate) fn can_contain_heredoc(&self, line_no: usize) -> Result<bool, ParseError> {
        let err = |m: String| ParseError::new(line_no, m);
        match self.lower().as_str() {
            "run" | "copy" | "add" => Ok(parse_json(&self.args).map_err(err)?.is_none()),
            "onbuild" if !self.args.is_empty() => {
                let inner = split_command(&self.args);
                match inner.lower().as_str() {
                    "run" | "copy" | "add" => Ok(parse_json(&inner.args).map_err(err)?.is_none()),
                    _ => Ok(false),
                }
            }
            _ => Ok(false),
        }
    }
}

/// Splits the leading `--flag` words off an instruction's arguments (BuildKit's
/// `extractBuilderFlags`): quotes group, `\` escapes, a lone `--` ends the flags.
fn extract_builder_flags(line: &str) -> (Vec<String>, String) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let cur = chars.get(k).copied();
        if phase == Phase::Spaces {
            let Some((pos, ch)) = cur else {
                break;
            };
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            let next_is_dash = chars.get(k + 1).is_some_and(|(_, c)| *c == '-');
            if ch != '-' || !next_is_dash {
                return (words, line.get(pos..).unwrap_or_default().to_owned());
            }
            phase = Phase::Word;
        }
        let Some((pos, ch)) = cur else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, line.get(pos..).unwrap_or_default().to_owned());
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some((_, n)) = chars.get(k + 1) {
                        word.push(*n);
                        k += 1;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.get(k + 1) {
                        Some((_, n)) => {
                            word.push(*n);
                            k += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => {}
        }
        k += 1;
    }
    (words, String::new())
}

#[derive(Clone, Copy, PartialEq)]
enum FlagType {
    Bool,
    Str,
    Strs,
}

/// Parsed `--flags` of one instruction (BuildKit's `BFlags`).
struct Flags {
    values: Vec<(&'static str, Vec<String>)>,
}

impl Flags {
    fn parse(raw: &[String], specs: &[(&'static str, FlagType)]) -> Result<Flags, String> {
        let mut values: Vec<(&'static str, Vec<String>)> = Vec::new();
        for arg in raw {
            let Some(arg) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if arg.is_empty() {
                break;
            }
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let Some(&(spec_name, ty)) = specs.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: {name}"));
            };
            let seen = values.iter().position(|(n, _)| *n == spec_name);
            if seen.is_some() && ty != FlagType::Strs {
                return Err(format!("duplicate flag specified: {name}"));
            }
            let value = match ty {
                FlagType::Bool => match value {
                    Some("") => return Err(format!("missing a value on flag: {name}")),
                    None => "true".to_owned(),
                    Some(v) => match v.to_ascii_lowercase().as_str() {
                        "true" => "true".to_owned(),
                        "false" => "false".to_owned(),
                        _ => {
                            return Err(format!(
                                "expecting boolean value for flag {name}, not: {v}"
                            ));
                        }
                    },
                },
                FlagType::Str | FlagType::Strs => match value {
                    Some(v) => v.to_owned(),
                    None => return Err(format!("missing a value on flag: {name}")),
                },
            };
            match seen.and_then(|i| values.get_mut(i)) {
                Some((_, list)) => list.push(value),
                None => values.push((spec_name, vec![value])),
            }
        }
        Ok(Flags { values })
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn string(&self, name: &str) -> Option<String> {
        self.all(name).pop()
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// `Ok(Some(words))` for a JSON array of strings, `Ok(None)` for anything that is not a JSON
/// array (shell form), `Err` for a JSON array with a non-string element.
fn parse_json(args: &str) -> Result<Option<Vec<String>>, String> {
    if !args.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(args) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only".to_owned(),
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn whitespace_delimited(args: &str) -> Vec<String> {
    args.split(is_blank)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Exec form for a JSON string array, else the whole text as shell form.
fn command(args: &str) -> Result<Command, String> {
    Ok(match parse_json(args)? {
        Some(words) => Command::Exec(words),
        None => Command::Shell(args.to_owned()),
    })
}

/// A JSON string array, else whitespace-separated words (COPY, ADD, VOLUME).
fn json_or_words(args: &str) -> Result<(Vec<String>, bool), String> {
    Ok(match parse_json(args)? {
        Some(words) => (words, true),
        None => (whitespace_delimited(args), false),
    })
}

/// Splits on blanks outside quotes, keeping quotes and escapes (BuildKit's `parseWords`): the
/// words of ENV, LABEL and ARG, whose quotes go when the builder expands them.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut k = 0;
    while let Some(&ch) = chars.get(k) {
        k += 1;
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            // The escape character works inside double quotes only.
            if ch == escape && q != '\'' {
                match chars.get(k) {
                    None => {
                        quote = None;
                        continue;
                    }
                    Some(&n) => {
                        word.push(ch);
                        word.push(n);
                        k += 1;
                        continue;
                    }
                }
            }
            word.push(ch);
            continue;
        }
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if ch.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        if ch == escape {
            match chars.get(k) {
                None => continue,
                Some(&n) => {
                    word.push(ch);
                    word.push(n);
                    k += 1;
                    continue;
                }
            }
        }
        word.push(ch);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `KEY value with spaces` (legacy) or `KEY=value ...`.
fn parse_name_val(args: &str, keyword: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = parse_words(args, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} requires at least one argument"));
    };
    let pairs = if !first.contains('=') {
        let Some(split) = args.find(is_blank) else {
            return Err(format!("{keyword} must have two arguments"));
        };
        let (key, value) = args.split_at(split);
        vec![KeyValue {
            key: key.to_owned(),
            value: value.trim_start_matches(is_blank).to_owned(),
        }]
    } else {
        let mut pairs = Vec::new();
        for w in &words {
            let Some((key, value)) = w.split_once('=') else {
                return Err(format!(
                    "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                ));
            };
            pairs.push(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        pairs
    };
    if pairs.iter().any(|p| p.key.is_empty()) {
        return Err(format!("{keyword} names can not be blank"));
    }
    Ok(pairs)
}

fn exactly_one(args: &str, keyword: &str) -> Result<String, String> {
    if args.is_empty() {
        return Err(format!("{keyword} requires exactly one argument"));
    }
    Ok(args.to_owned())
}

/// Turns a logical line (and the heredocs read after it) into a stage header or instruction.
pub(crate) fn build(
    logical: Logical,
    heredocs: Vec<Heredoc>,
    span: Span,
    escape: char,
) -> Result<Built, ParseError> {
    build_inner(logical, heredocs, span, escape).map_err(|m| ParseError::new(span.start, m))
}

fn build_inner(
    l: Logical,
    heredocs: Vec<Heredoc>,
    span: Span,
    escape: char,
) -> Result<Built, String> {
    let lower = l.lower();
    let no_flags = |l: &Logical| Flags::parse(&l.flags, &[]).map(|_| ());
    let kind = match lower.as_str() {
        "from" => return build_from(l, span).map(Built::From),
        "run" => {
            let flags = Flags::parse(
                &l.flags,
                &[
                    ("mount", FlagType::Strs),
                    ("network", FlagType::Str),
                    ("security", FlagType::Str),
                ],
            )?;
            let mounts = flags
                .all("mount")
                .iter()
                .map(|m| Mount::parse(m).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => return Err(format!("unsupported network mode {other:?}")),
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(SecurityMode::Sandbox),
                Some("insecure") => Some(SecurityMode::Insecure),
                Some(other) => return Err(format!("security {other:?} is not valid")),
            };
            InstructionKind::Run(Run {
                mounts,
                network,
                security,
                command: command(&l.args)?,
                heredocs,
            })
        }
        "cmd" => {
            no_flags(&l)?;
            InstructionKind::Cmd(command(&l.args)?)
        }
        "entrypoint" => {
            no_flags(&l)?;
            InstructionKind::Entrypoint(command(&l.args)?)
        }
        "shell" => {
            no_flags(&l)?;
            match parse_json(&l.args)? {
                Some(words) if !words.is_empty() => InstructionKind::Shell(words),
                Some(_) => return Err("SHELL requires at least one argument".to_owned()),
                None if l.args.is_empty() => {
                    return Err("SHELL requires at least one argument".to_owned());
                }
                None => {
                    return Err("SHELL requires the arguments to be in JSON notation".to_owned());
                }
            }
        }
        "env" => {
            no_flags(&l)?;
            InstructionKind::Env(parse_name_val(&l.args, "ENV", escape)?)
        }
        "label" => {
            no_flags(&l)?;
            InstructionKind::Label(parse_name_val(&l.args, "LABEL", escape)?)
        }
        "arg" => {
            no_flags(&l)?;
            let words = parse_words(&l.args, escape);
            if words.is_empty() {
                return Err("ARG requires at least one argument".to_owned());
            }
            InstructionKind::Arg(
                words
                    .into_iter()
                    .map(|w| match w.split_once('=') {
                        Some((name, value)) => ArgDecl {
                            name: name.to_owned(),
                            default: Some(value.to_owned()),
                        },
                        None => ArgDecl {
                            name: w,
                            default: None,
                        },
                    })
                    .collect(),
            )
        }
        "expose" => {
            no_flags(&l)?;
            let ports = whitespace_delimited(&l.args);
            if ports.is_empty() {
                return Err("EXPOSE requires at least one argument".to_owned());
            }
            InstructionKind::Expose(ports)
        }
        "volume" => {
            no_flags(&l)?;
            let (volumes, _) = json_or_words(&l.args)?;
            if volumes.is_empty() {
                return Err("VOLUME requires at least one argument".to_owned());
            }
            if volumes.iter().any(|v| v.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".to_owned());
            }
            InstructionKind::Volume(volumes)
        }
        "workdir" => {
            no_flags(&l)?;
            InstructionKind::Workdir(exactly_one(&l.args, "WORKDIR")?)
        }
        "user" => {
            no_flags(&l)?;
            InstructionKind::User(exactly_one(&l.args, "USER")?)
        }
        "stopsignal" => {
            no_flags(&l)?;
            InstructionKind::Stopsignal(exactly_one(&l.args, "STOPSIGNAL")?)
        }
        "maintainer" => {
            no_flags(&l)?;
            InstructionKind::Maintainer(exactly_one(&l.args, "MAINTAINER")?)
        }
        "healthcheck" => InstructionKind::Healthcheck(build_healthcheck(&l)?),
        "copy" => InstructionKind::Copy(build_copy(&l, &heredocs)?),
        "add" => InstructionKind::Add(build_add(&l, &heredocs)?),
        "onbuild" => {
            if l.args.is_empty() {
                return Err("ONBUILD requires at least one argument".to_owned());
            }
            no_flags(&l)?;
            let inner = split_command(&l.args);
            match inner.lower().as_str() {
                "onbuild" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned());
                }
                "from" | "maintainer" => {
                    return Err(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        inner.cmd.to_ascii_uppercase()
                    ));
                }
                _ => {}
            }
            let mut expression = inner.original.clone();
            for h in &heredocs {
                expression.push('\n');
                expression.push_str(&h.raw_content);
                expression.push_str(&h.name);
            }
            let Built::Instruction(trigger) = build_inner(inner, heredocs, span, escape)? else {
                return Err("FROM isn't allowed as an ONBUILD trigger".to_owned());
            };
            InstructionKind::Onbuild(Onbuild {
                expression,
                instruction: Box::new(trigger),
            })
        }
        _ => return Err(format!("unknown instruction: {}", l.cmd)),
    };
    Ok(Built::Instruction(Instruction {
        span,
        original: l.original,
        kind,
    }))
}

fn build_from(l: Logical, span: Span) -> Result<Stage, String> {
    let args = whitespace_delimited(&l.args);
    let name = match args.as_slice() {
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                && lower.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                ));
            }
            Some(lower)
        }
        [_] => None,
        _ => return Err("FROM requires either one or three arguments".to_owned()),
    };
    let flags = Flags::parse(&l.flags, &[("platform", FlagType::Str)])?;
    Ok(Stage {
        span,
        original: l.original,
        base: args.into_iter().next().unwrap_or_default(),
        name,
        platform: flags.string("platform"),
        instructions: Vec::new(),
    })
}

/// COPY and ADD arguments: at least a source and a destination; heredoc markers among the
/// sources become inline sources.
fn sources_and_dest(
    l: &Logical,
    keyword: &str,
    heredocs: &[Heredoc],
) -> Result<(Vec<Source>, String), String> {
    let (mut args, json) = json_or_words(&l.args)?;
    if args.len() < 2 {
        return Err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let dest = args.pop().unwrap_or_default();
    if !json && parse_heredoc_marker(&dest).is_some() {
        return Err(format!(
            "{keyword} cannot accept a heredoc as a destination"
        ));
    }
    let sources = args
        .into_iter()
        .map(|src| match parse_heredoc_marker(&src).filter(|_| !json) {
            Some(marker) => {
                let found = heredocs.iter().find(|h| h.name == marker.name);
                Source::Heredoc(found.cloned().unwrap_or(marker))
            }
            None => Source::Path(src),
        })
        .collect();
    Ok((sources, dest))
}

fn check_two_args(l: &Logical, keyword: &str) -> Result<(), String> {
    if json_or_words(&l.args)?.0.len() < 2 {
        return Err(format!(
            "{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    Ok(())
}

fn build_copy(l: &Logical, heredocs: &[Heredoc]) -> Result<Copy, String> {
    check_two_args(l, "COPY")?;
    let flags = Flags::parse(
        &l.flags,
        &[
            ("from", FlagType::Str),
            ("chown", FlagType::Str),
            ("chmod", FlagType::Str),
            ("link", FlagType::Bool),
            ("parents", FlagType::Bool),
            ("exclude", FlagType::Strs),
        ],
    )?;
    let (sources, dest) = sources_and_dest(l, "COPY", heredocs)?;
    Ok(Copy {
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        exclude: flags.all("exclude"),
        sources,
        dest,
    })
}

fn build_add(l: &Logical, heredocs: &[Heredoc]) -> Result<Add, String> {
    check_two_args(l, "ADD")?;
    let flags = Flags::parse(
        &l.flags,
        &[
            ("chown", FlagType::Str),
            ("chmod", FlagType::Str),
            ("link", FlagType::Bool),
            ("exclude", FlagType::Strs),
            ("keep-git-dir", FlagType::Bool),
            ("checksum", FlagType::Str),
            ("unpack", FlagType::Bool),
        ],
    )?;
    let (sources, dest) = sources_and_dest(l, "ADD", heredocs)?;
    Ok(Add {
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.all("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        unpack: flags.bool("unpack"),
        sources,
        dest,
    })
}

fn build_healthcheck(l: &Logical) -> Result<Healthcheck, String> {
    let args = l.args.as_str();
    let typ_end = args.find(char::is_whitespace).unwrap_or(args.len());
    let (typ, rest) = args.split_at(typ_end);
    let rest = rest.trim_start();
    if typ.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".to_owned());
    }
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        // BuildKit does not look at flags here.
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_owned());
        }
        return Ok(Healthcheck::None);
    }
    let flags = Flags::parse(
        &l.flags,
        &[
            ("interval", FlagType::Str),
            ("timeout", FlagType::Str),
            ("start-period", FlagType::Str),
            ("start-interval", FlagType::Str),
            ("retries", FlagType::Str),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"));
    }
    let cmd = command(rest)?;
    let empty = match &cmd {
        Command::Exec(v) => v.is_empty(),
        Command::Shell(s) => s.is_empty(),
    };
    if empty {
        return Err("Missing command after HEALTHCHECK CMD".to_owned());
    }
    let interval = |name: &str| -> Result<Option<Duration>, String> {
        let Some(value) = flags.string(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let nanos =
            parse_go_duration(&value).ok_or_else(|| format!("time: invalid duration {value:?}"))?;
        if nanos == 0 {
            return Ok(None);
        }
        if nanos < 1_000_000 {
            return Err(format!("Interval {name:?} cannot be less than 1ms"));
        }
        Ok(u64::try_from(nanos).ok().map(Duration::from_nanos))
    };
    let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let n: i32 = v
                .parse()
                .map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            u32::try_from(n).ok()
        }
    };
    Ok(Healthcheck::Cmd {
        command: cmd,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    })
}

/// Go's `time.ParseDuration`, in nanoseconds (negative values allowed).
fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(end)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = int.checked_mul(scale)?;
        if !frac_part.is_empty() {
            let digits = frac_part
                .get(..frac_part.len().min(18))
                .unwrap_or(frac_part);
            let frac: i128 = digits.parse().ok()?;
            let denom = 10i128.checked_pow(u32::try_from(digits.len()).ok()?)?;
            value = value.checked_add(frac.checked_mul(scale)? / denom)?;
        }
        total = total.checked_add(value)?;
        if total > i128::from(i64::MAX) {
            return None;
        }
        rest = after;
    }
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_of(s: &str) -> (Vec<String>, String) {
        extract_builder_flags(s)
    }

    #[test]
    fn builder_flags_are_split_off() {
        assert_eq!(
            flags_of("--a=1 --b rest of it"),
            (vec!["--a=1".into(), "--b".into()], "rest of it".into())
        );
        assert_eq!(
            flags_of("--a=\"x y\" z"),
            (vec!["--a=x y".into()], "z".into())
        );
        assert_eq!(flags_of("--a -- --b"), (vec!["--a".into()], " --b".into()));
        assert_eq!(flags_of("echo --a"), (vec![], "echo --a".into()));
        assert_eq!(flags_of("-x"), (vec![], "-x".into()));
        assert_eq!(flags_of("--only"), (vec!["--only".into()], "".into()));
    }

    #[test]
    fn flag_values_by_type() {
        let specs = [
            ("s", FlagType::Str),
            ("b", FlagType::Bool),
            ("m", FlagType::Strs),
        ];
        let raw = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = Flags::parse(&raw(&["--s=x", "--b", "--m=1", "--m=2"]), &specs).unwrap();
        assert_eq!(f.string("s").as_deref(), Some("x"));
        assert_eq!(f.bool("b"), Some(true));
        assert_eq!(f.all("m"), vec!["1", "2"]);
        let e = |v: &[&str]| Flags::parse(&raw(v), &specs).err().unwrap();
        assert_eq!(e(&["--nope"]), "unknown flag: nope");
        assert_eq!(e(&["--s"]), "missing a value on flag: s");
        assert_eq!(e(&["--b="]), "missing a value on flag: b");
        assert_eq!(
            e(&["--b=maybe"]),
            "expecting boolean value for flag b, not: maybe"
        );
        assert_eq!(e(&["--s=1", "--s=2"]), "duplicate flag specified: s");
        assert_eq!(
            Flags::parse(&raw(&["--b=FALSE"]), &specs)
                .unwrap()
                .bool("b"),
            Some(false)
        );
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words("a=\"x y\" b='1 2' c=d\\ e", '\\'),
            vec!["a=\"x y\"", "b='1 2'", "c=d\\ e"]
        );
        assert_eq!(parse_words("  a   b  ", '\\'), vec!["a", "b"]);
        assert_eq!(parse_words("a=\"\"", '\\'), vec!["a=\"\""]);
        assert_eq!(parse_words("\"\"", '\\'), vec!["\"\""]);
        assert_eq!(
            parse_words("a=\"q\\\"q\" b", '\\'),
            vec!["a=\"q\\\"q\"", "b"]
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_go_duration("10us"), Some(10_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("-5s"), Some(-5_000_000_000));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("99999999999h"), None);
    }

    #[test]
    fn json_detection() {
        assert_eq!(
            parse_json("[\"a\", \"b\"]"),
            Ok(Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse_json("[]"), Ok(Some(vec![])));
        assert_eq!(parse_json("[not json"), Ok(None));
        assert_eq!(parse_json("[\"a\"] trailing"), Ok(None));
        assert_eq!(parse_json("echo [\"a\"]"), Ok(None));
        assert!(parse_json("[\"a\", 1]").is_err());
    }
}
