//! From text to logical lines (BuildKit's `frontend/dockerfile/parser/parser.go`): parser
//! directives, line continuations, comments and blank lines inside continuations, heredoc
//! bodies; then each logical line to an instruction (`instructions.rs`) and the instructions to
//! stages.

use thiserror::Error;

use crate::ast::{Directives, Dockerfile, Heredoc, Instruction, InstructionKind, Span, Stage};
use crate::instructions::{self, Built};
use crate::lex::{Lexer, NoVars};

/// A Dockerfile that cannot be parsed, with the (1-based) line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Dockerfile:{line}: {message}")]
pub struct ParseError {
    /// The first line of the offending instruction (0 when the file as a whole is wrong and
    /// empty).
    pub line: usize,
    /// What is wrong, worded as BuildKit words it.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = DirectiveState::default();
    let mut stages = Stages::default();
    let mut i = 0;
    while let Some(first) = lines.get(i) {
        let raw = trim_newline(first);
        let start = i + 1;
        let left = raw.trim_start();
        directives.possible_directive(left, start)?;
        i += 1;
        let escape = directives.escape();
        let first_text = if is_comment(raw) { "" } else { left };
        let (mut line, mut end_of_line) = trim_continuation(first_text, escape);
        if end_of_line && line.is_empty() {
            continue;
        }
        while !end_of_line {
            let Some(next) = lines.get(i) else {
                break;
            };
            i += 1;
            let raw = trim_newline(next);
            // Comments and blank lines inside a continuation are skipped (the latter with a
            // warning in BuildKit).
            if is_comment(raw) || raw.trim_start().is_empty() {
                continue;
            }
            let (more, eol) = trim_continuation(raw, escape);
            line.push_str(&more);
            end_of_line = eol;
        }
        let logical = instructions::split_command(&line);
        let mut heredocs = Vec::new();
        if logical.can_contain_heredoc(start)? && line.contains("<<") {
            for marker in heredoc_markers(&line) {
                let terminator = marker.name.as_str();
                let mut content = String::new();
                let mut terminated = false;
                while let Some(body_line) = lines.get(i) {
                    i += 1;
                    let mut candidate = trim_newline(body_line);
                    if marker.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == terminator {
                        terminated = true;
                        break;
                    }
                    content.push_str(body_line);
                }
                if !terminated {
                    return Err(ParseError::new(start, "unterminated heredoc"));
                }
                heredocs.push(Heredoc {
                    raw_content: content,
                    ..marker
                });
            }
        }
        let span = Span { start, end: i };
        stages.add(instructions::build(logical, heredocs, span, escape)?)?;
    }
    stages.finish(directives.directives, lines.len())
}

/// Groups instructions into stages as they are parsed, so errors come out in line order.
#[derive(Default)]
struct Stages {
    any: bool,
    global_args: Vec<Instruction>,
    stages: Vec<Stage>,
}

impl Stages {
    fn add(&mut self, built: Built) -> Result<(), ParseError> {
        self.any = true;
        match built {
            Built::From(stage) => {
                if let Some(name) = &stage.name
                    && self.stages.iter().any(|s| s.name.as_ref() == Some(name))
                {
                    return Err(ParseError::new(
                        stage.span.start,
                        format!("duplicate stage name {name:?}"),
                    ));
                }
                self.stages.push(stage);
            }
            Built::Instruction(node) => match self.stages.last_mut() {
                Some(stage) => stage.instructions.push(node),
                None if matches!(node.kind, InstructionKind::Arg(_)) => self.global_args.push(node),
                None => {
                    return Err(ParseError::new(
                        node.span.start,
                        "no build stage in current context",
                    ));
                }
            },
        }
        Ok(())
    }

    fn finish(self, directives: Directives, line_count: usize) -> Result<Dockerfile, ParseError> {
        if !self.any {
            return Err(ParseError::new(line_count, "file with no instructions"));
        }
        if self.stages.is_empty() {
            return Err(ParseError::new(
                line_count,
                "dockerfile contains no stages to build",
            ));
        }
        Ok(Dockerfile {
            directives,
            global_args: self.global_args,
            stages: self.stages,
        })
    }
}

#[derive(Debug, Default)]
struct DirectiveState {
    done: bool,
    directives: Directives,
}

impl DirectiveState {
    fn escape(&self) -> char {
        self.directives.escape_char()
    }

    /// Looks for `# key=value` at the top of the file; the first line that is not a known
    /// directive (an instruction, a comment, a blank line, an unknown directive) ends the
    /// directive section.
    fn possible_directive(&mut self, line: &str, line_no: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        let slot_seen = match key.as_str() {
            "syntax" => self.directives.syntax.is_some(),
            "escape" => self.directives.escape.is_some(),
            "check" => self.directives.check.is_some(),
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if slot_seen {
            return Err(ParseError::new(
                line_no,
                format!("only one {key} parser directive can be used"),
            ));
        }
        match key.as_str() {
            "syntax" => self.directives.syntax = Some(value.to_owned()),
            "check" => self.directives.check = Some(value.to_owned()),
            _ => {
                if value != "`" && value != "\\" {
                    return Err(ParseError::new(
                        line_no,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ));
                }
                self.directives.escape = value.chars().next();
            }
        }
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(i, _)| i);
    let (key, rest) = rest.split_at(key_end);
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

/// Removes the line ending (any trailing `\r` and `\n`).
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (followed only by blanks) and says whether the logical
/// line ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    match body.strip_suffix(escape) {
        Some(rest) => (rest.to_owned(), false),
        None => (line.to_owned(), true),
    }
}

/// The heredoc markers of an instruction line, in order (BuildKit's `heredocsFromLine`): the
/// line is split into words keeping quotes and escapes, and each word of the form
/// `[fd]<<[-]name` is a marker.
fn heredoc_markers(line: &str) -> Vec<Heredoc> {
    let lexer = Lexer::new('\\')
        .raw_quotes(true)
        .raw_escapes(true)
        .skip_unset(true)
        .heredoc_words(true);
    let words = lexer.expand_words(line, &NoVars).unwrap_or_default();
    words
        .iter()
        .filter_map(|w| parse_heredoc_marker(w))
        .collect()
}

/// Parses `^(\d*)<<(-?)\s*([^<]*)$` and the delimiter's quoting.
pub(crate) fn parse_heredoc_marker(word: &str) -> Option<Heredoc> {
    let digits_end = word
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(word.len(), |(i, _)| i);
    let (fd, rest) = word.split_at(digits_end);
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    // Lex the delimiter with and without quotes: it must be one word, and if quotes were
    // removed from it, its body is not expanded.
    let plain = Lexer::new('\\').skip_unset(true);
    let words = plain.expand_words(rest, &NoVars).ok()?;
    let [name] = words.as_slice() else {
        return None;
    };
    let raw_words = plain.raw_quotes(true).expand_words(rest, &NoVars).ok()?;
    let raw = raw_words.first()?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Some(Heredoc {
        name: name.clone(),
        raw_content: String::new(),
        expand: quotes(name) == quotes(raw),
        chomp,
        fd: fd.parse().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_syntax() {
        assert_eq!(match_directive("# escape=`"), Some(("escape", "`")));
        assert_eq!(
            match_directive("#syntax = docker/dockerfile:1  "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(match_directive("# not a directive"), None);
        assert_eq!(match_directive("# 1x=y"), None);
        assert_eq!(match_directive("# x="), None);
    }

    #[test]
    fn heredoc_marker_forms() {
        let m = parse_heredoc_marker("<<EOF").unwrap();
        assert_eq!(
            (m.name.as_str(), m.expand, m.chomp, m.fd),
            ("EOF", true, false, 0)
        );
        let m = parse_heredoc_marker("<<-'EOT'").unwrap();
        assert_eq!((m.name.as_str(), m.expand, m.chomp), ("EOT", false, true));
        let m = parse_heredoc_marker("3<<\"E O F\"").unwrap();
        assert_eq!((m.name.as_str(), m.expand, m.fd), ("E O F", false, 3));
        let m = parse_heredoc_marker("<<E\"O\"F").unwrap();
        assert_eq!((m.name.as_str(), m.expand), ("EOF", false));
        assert!(parse_heredoc_marker("<<").is_none());
        assert!(parse_heredoc_marker("cat<<EOF").is_none());
        assert!(parse_heredoc_marker("<<<EOF").is_none());
    }

    #[test]
    fn heredoc_markers_of_a_line() {
        let names: Vec<String> = heredoc_markers("RUN <<A cat - <<-\"B\" > f 2<<C '<<D' \"<<E\"")
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, ["A", "B", "C"]);
        let spaced = heredoc_markers("RUN << EOF");
        assert_eq!(spaced.len(), 1);
    }

    #[test]
    fn continuation_trimming() {
        assert_eq!(
            trim_continuation("RUN a \\", '\\'),
            ("RUN a ".to_owned(), false)
        );
        assert_eq!(
            trim_continuation("RUN a \\ \t", '\\'),
            ("RUN a ".to_owned(), false)
        );
        assert_eq!(
            trim_continuation("RUN a `", '`'),
            ("RUN a ".to_owned(), false)
        );
        assert_eq!(
            trim_continuation("RUN a \\x", '\\'),
            ("RUN a \\x".to_owned(), true)
        );
    }
}
