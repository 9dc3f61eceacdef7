//! Variable expansion and word splitting with the semantics of BuildKit's shell lexer
//! (`frontend/dockerfile/shell/lex.go`): `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`,
//! `${VAR+w}`, `${VAR:?w}`, `${VAR?w}`, `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`,
//! `${VAR/p/r}` and `${VAR//p/r}`, single and double quotes, and the escape character.
//!
//! The builder, not the shell, expands the words of ADD, ARG, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME and WORKDIR (see [`crate::InstructionKind::expands_words`]); RUN,
//! CMD, ENTRYPOINT, SHELL and HEALTHCHECK text is handed to the shell untouched.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

/// Where expansion looks variables up. Names are case-sensitive, as on Linux.
pub trait Lookup {
    /// The value of `name`, or `None` when it is unset (an empty value is set).
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: std::hash::BuildHasher> Lookup for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Lookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

fn lookup_pairs<'a, K: AsRef<str>, V: AsRef<str>>(
    pairs: &'a [(K, V)],
    name: &str,
) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

/// A list of `(name, value)` pairs; the last pair of a name wins, as in an environment list.
impl<K: AsRef<str>, V: AsRef<str>> Lookup for &[(K, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        lookup_pairs(self, name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Lookup for [(K, V); N] {
    fn get(&self, name: &str) -> Option<&str> {
        lookup_pairs(self, name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Lookup for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        lookup_pairs(self, name)
    }
}

/// A lookup in which every variable is unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVars;

impl Lookup for NoVars {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why a word could not be expanded; `word` is the whole input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct ExpandError {
    /// The text that was being expanded.
    pub word: String,
    /// What was wrong with it.
    pub reason: ExpandErrorKind,
}

/// The reasons expansion fails.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpandErrorKind {
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    /// `${NAME?message}` / `${NAME:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern { pattern: String, escaped: char },
}

/// Expands `word` as one word with `\` as escape character (BuildKit's `ProcessWord`): quotes
/// are removed, variables substituted, and unquoted whitespace kept as is.
pub fn expand(word: &str, lookup: &dyn Lookup) -> Result<String, ExpandError> {
    Lexer::new('\\').expand(word, lookup)
}

/// Expands `word` and splits the result into words (BuildKit's `ProcessWords`): splitting happens
/// after substitution, on unquoted whitespace, and empty words are dropped.
pub fn expand_words(word: &str, lookup: &dyn Lookup) -> Result<Vec<String>, ExpandError> {
    Lexer::new('\\').expand_words(word, lookup)
}

/// A configured shell lexer. The defaults match how the builder expands instruction words; the
/// switches match BuildKit's `Lex` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_quotes: bool,
    skip_unset: bool,
    heredoc_words: bool,
}

impl Lexer {
    /// A lexer with `escape` as escape character (`\` or the `# escape=` directive's value).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
            skip_unset: false,
            heredoc_words: false,
        }
    }

    /// Keep quote characters in the output (`RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (`RawEscapes`).
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (`SkipProcessQuotes`); used to expand the content of
    /// a heredoc, which is a script whose quotes belong to it.
    pub fn skip_quotes(mut self, on: bool) -> Self {
        self.skip_quotes = on;
        self
    }

    /// Leave references to unset variables as written (`SkipUnsetEnv`).
    pub fn skip_unset(mut self, on: bool) -> Self {
        self.skip_unset = on;
        self
    }

    /// Keep `<<` and the blanks after it in one word, as BuildKit does when it looks for
    /// heredoc markers on an instruction line.
    pub(crate) fn heredoc_words(mut self, on: bool) -> Self {
        self.heredoc_words = on;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` as a single word (see [`expand`]).
    pub fn expand(&self, word: &str, lookup: &dyn Lookup) -> Result<String, ExpandError> {
        self.process(word, lookup).map(|(w, _)| w)
    }

    /// Expands `word` and splits it into words (see [`expand_words`]).
    pub fn expand_words(
        &self,
        word: &str,
        lookup: &dyn Lookup,
    ) -> Result<Vec<String>, ExpandError> {
        self.process(word, lookup).map(|(_, ws)| ws)
    }

    fn process(
        &self,
        word: &str,
        lookup: &dyn Lookup,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut sw = ShellWord {
            lx: *self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
            raw_escapes: self.raw_escapes,
        };
        sw.process_stop_on(None, self.raw_escapes)
            .map_err(|reason| ExpandError {
                word: word.to_owned(),
                reason,
            })
    }
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct ShellWord<'a> {
    lx: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Lookup,
    raw_escapes: bool,
}

type Step<T> = Result<T, ExpandErrorKind>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Step<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' if !self.lx.skip_quotes => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if !self.lx.skip_quotes => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '<' if self.lx.heredoc_words => {
                    let value = self.process_possible_heredoc();
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.lx.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes the next one, except at the end.
                        let Some(escaped) = self.next() else {
                            break;
                        };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(c) => Err(ExpandErrorKind::Unterminated(c)),
            None => Ok((result, words.finish())),
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut out = "<<".to_owned();
        while let Some(c) = self.peek().filter(|c| *c == ' ' || *c == '\t') {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_single_quote(&mut self) -> Step<String> {
        // Everything up to the next single quote is literal; a single quote cannot be escaped.
        let mut result = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lx.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Step<String> {
        // Literal except `$`, and the escape character before `"`, `$` or itself.
        let mut result = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lx.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.lx.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lx.escape => {
                                self.next();
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        self.lookup.get(name).map(str::to_owned)
    }

    fn process_dollar(&mut self) -> Step<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(ExpandErrorKind::MissingBrace);
        };
        let mut modifier = ch.to_string();
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    let Some(next) = self.next() else {
                        return Err(ExpandErrorKind::MissingBrace);
                    };
                    ch = next;
                    modifier.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lx.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset_or_null = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    '-' => Ok(if unset_or_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset_or_null { String::new() } else { word }),
                    '?' => match value {
                        None => Err(ExpandErrorKind::Required {
                            name,
                            message: or_default(word, "is not allowed to be unset"),
                        }),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(ExpandErrorKind::Required {
                                name,
                                message: or_default(word, "is not allowed to be empty"),
                            })
                        }
                        Some(v) => Ok(v),
                    },
                    '%' | '#' => {
                        let (greedy, pattern) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, word),
                        };
                        let pat = Pattern::compile(&pattern)?;
                        let value = value.unwrap_or_default();
                        Ok(if ch == '%' {
                            pat.trim_suffix(&value, greedy)
                        } else {
                            pat.trim_prefix(&value, greedy)
                        })
                    }
                    _ => Err(ExpandErrorKind::UnsupportedModifier(modifier)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingSlash),
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lx.skip_unset && value.is_none() {
                    let slashes = if all { "//" } else { "/" };
                    return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
                }
                let pat = Pattern::compile(&pattern)?;
                Ok(pat.replace(&value.unwrap_or_default(), &replacement, all))
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(modifier)),
        }
    }

    fn process_name(&mut self) -> String {
        // A name is letters, digits and `_`; a leading digit reads digits only, and a special
        // parameter (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`) is one character.
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

fn or_default(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_owned()
    } else {
        word
    }
}

/// A shell pattern of `${VAR#p}`-style substitutions: `*`, `?`, and `\` escaping `*`, `?`, `\`
/// (or dropped before `}` and `/`); no bracket expressions, as in BuildKit. `*` and `?` do not
/// match a newline (BuildKit compiles the pattern to a Go regexp, where `.` excludes it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatTok {
    Lit(char),
    One,
    Star,
}

struct Pattern {
    toks: Vec<PatTok>,
}

impl Pattern {
    fn compile(pattern: &str) -> Step<Pattern> {
        let mut toks = Vec::new();
        let mut it = pattern.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => toks.push(PatTok::Star),
                '?' => toks.push(PatTok::One),
                '\\' => match it.peek().copied() {
                    Some('}' | '/') => {}
                    Some(n @ ('*' | '?' | '\\')) => {
                        it.next();
                        toks.push(PatTok::Lit(n));
                    }
                    other => {
                        return Err(ExpandErrorKind::InvalidPattern {
                            pattern: pattern.to_owned(),
                            escaped: other.unwrap_or('\u{FFFD}'),
                        });
                    }
                },
                c => toks.push(PatTok::Lit(c)),
            }
        }
        Ok(Pattern { toks })
    }

    /// The ends (exclusive char indices) of every match of the whole pattern that starts at
    /// `start`, as flags over positions `0..=s.len()`.
    fn match_ends(&self, s: &[char], start: usize) -> Vec<bool> {
        let accept = self.toks.len();
        let mut ends = vec![false; s.len() + 1];
        // NFA simulation: `cur` holds the token indices reached so far.
        let mut cur = vec![false; accept + 1];
        set(&mut cur, 0);
        self.close(&mut cur);
        for pos in start..=s.len() {
            if get(&cur, accept) {
                set(&mut ends, pos);
            }
            let Some(&ch) = s.get(pos) else {
                break;
            };
            if !cur.iter().any(|b| *b) {
                break;
            }
            let mut nxt = vec![false; accept + 1];
            for (i, tok) in self.toks.iter().enumerate() {
                if !get(&cur, i) {
                    continue;
                }
                match tok {
                    PatTok::Lit(c) if *c == ch => set(&mut nxt, i + 1),
                    PatTok::One if ch != '\n' => set(&mut nxt, i + 1),
                    PatTok::Star if ch != '\n' => set(&mut nxt, i),
                    _ => {}
                }
            }
            self.close(&mut nxt);
            cur = nxt;
        }
        ends
    }

    /// Adds the states reachable by letting `*` match nothing.
    fn close(&self, states: &mut [bool]) {
        for (i, tok) in self.toks.iter().enumerate() {
            if get(states, i) && *tok == PatTok::Star {
                set(states, i + 1);
            }
        }
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        let ends = self.match_ends(&s, 0);
        let end = if greedy {
            ends.iter().rposition(|b| *b)
        } else {
            ends.iter().position(|b| *b)
        };
        match end {
            Some(e) => s.iter().skip(e).collect(),
            None => value.to_owned(),
        }
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        let n = s.len();
        // Shortest suffix: the latest start whose match reaches the end; longest: the earliest.
        let reaches_end = |st: &usize| get(&self.match_ends(&s, *st), n);
        let start = if greedy {
            (0..=n).find(reaches_end)
        } else {
            (0..=n).rev().find(reaches_end)
        };
        match start {
            Some(st) => s.iter().take(st).collect(),
            None => value.to_owned(),
        }
    }

    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        let n = s.len();
        let mut out = String::new();
        let mut pos = 0;
        let mut last_end: Option<usize> = None;
        while pos <= n {
            let found = (pos..=n).find_map(|st| {
                let end = self.match_ends(&s, st).iter().rposition(|b| *b)?;
                // An empty match right after the previous match does not count (Go's rule).
                if end == st && last_end == Some(st) {
                    return None;
                }
                Some((st, end))
            });
            let Some((st, end)) = found else {
                break;
            };
            out.extend(s.iter().skip(pos).take(st - pos));
            out.push_str(replacement);
            last_end = Some(end);
            if end == st {
                // An empty match: keep the next character and move past it.
                out.extend(s.get(st));
                pos = st + 1;
            } else {
                pos = end;
            }
            if !all {
                break;
            }
        }
        out.extend(s.iter().skip(pos));
        out
    }
}

fn get(v: &[bool], i: usize) -> bool {
    v.get(i).copied().unwrap_or(false)
}

fn set(v: &mut [bool], i: usize) {
    if let Some(b) = v.get_mut(i) {
        *b = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("A", "apple"),
            ("E", ""),
            ("S", "a b  c"),
            ("P", "/usr/local/bin"),
            ("F", "file.tar.gz"),
        ]
    }

    fn x(word: &str) -> String {
        expand(word, &env()).unwrap()
    }

    fn xw(word: &str) -> Vec<String> {
        expand_words(word, &env()).unwrap()
    }

    fn err(word: &str) -> String {
        expand(word, &env()).unwrap_err().to_string()
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(x("$A"), "apple");
        assert_eq!(x("${A}"), "apple");
        assert_eq!(x("x${A}y"), "xappley");
        assert_eq!(x("$Ax"), "");
        assert_eq!(x("$UNSET"), "");
        assert_eq!(x("$"), "$");
        assert_eq!(x("a$ b"), "a$ b");
        assert_eq!(x("$1x"), "x");
        assert_eq!(x("$@"), "");
    }

    #[test]
    fn default_and_alternative_forms() {
        assert_eq!(x("${UNSET:-def}"), "def");
        assert_eq!(x("${E:-def}"), "def");
        assert_eq!(x("${E-def}"), "");
        assert_eq!(x("${UNSET-def}"), "def");
        assert_eq!(x("${A:-def}"), "apple");
        assert_eq!(x("${A:+alt}"), "alt");
        assert_eq!(x("${E:+alt}"), "");
        assert_eq!(x("${E+alt}"), "alt");
        assert_eq!(x("${UNSET+alt}"), "");
        assert_eq!(x("${UNSET:-$A}"), "apple");
        assert_eq!(x("${UNSET:-${E:-deep}}"), "deep");
    }

    #[test]
    fn required_variables() {
        assert_eq!(x("${A:?oops}"), "apple");
        assert_eq!(x("${E?oops}"), "");
        assert_eq!(
            err("${UNSET?}"),
            "failed to process \"${UNSET?}\": UNSET: is not allowed to be unset"
        );
        assert_eq!(
            err("${E:?}"),
            "failed to process \"${E:?}\": E: is not allowed to be empty"
        );
        assert_eq!(
            err("${UNSET:?need it}"),
            "failed to process \"${UNSET:?need it}\": UNSET: need it"
        );
    }

    #[test]
    fn prefix_and_suffix_removal() {
        assert_eq!(x("${F#*.}"), "tar.gz");
        assert_eq!(x("${F##*.}"), "gz");
        assert_eq!(x("${F%.*}"), "file.tar");
        assert_eq!(x("${F%%.*}"), "file");
        assert_eq!(x("${P#/usr}"), "/local/bin");
        assert_eq!(x("${P%/bin}"), "/usr/local");
        assert_eq!(x("${P#nomatch}"), "/usr/local/bin");
        assert_eq!(x("${F#?}"), "ile.tar.gz");
        assert_eq!(x("${F%\\*}"), "file.tar.gz");
        assert_eq!(x("${UNSET#x}"), "");
    }

    #[test]
    fn pattern_replacement() {
        assert_eq!(x("${P/\\//:}"), ":usr/local/bin");
        assert_eq!(x("${P//\\//:}"), ":usr:local:bin");
        assert_eq!(x("${F/.*/}"), "file");
        assert_eq!(x("${F//a/A}"), "file.tAr.gz");
        assert_eq!(x("${A//*/x}"), "x");
        assert_eq!(x("${A/p/}"), "aple");
        assert_eq!(x("${A//p/}"), "ale");
        assert_eq!(x("${A/#/x}"), "apple");
    }

    #[test]
    fn substitution_syntax_errors() {
        assert!(err("${A").contains("missing '}'"));
        assert!(err("${}").contains("bad substitution"));
        assert!(err("${:A}").contains("bad substitution"));
        assert!(err("${A:x}").contains("unsupported modifier (:x)"));
        assert!(err("${A!}").contains("unsupported modifier (!)"));
        assert!(err("${A/x").contains("missing '/'"));
        assert!(err("${A#\\x}").contains("invalid escape"));
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A\""), "apple");
        assert_eq!(x("\"a\\\"b\""), "a\"b");
        assert_eq!(x("\"a\\nb\""), "a\\nb");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("a\\ b"), "a b");
        assert_eq!(x("a\\"), "a");
        assert_eq!(x("'a\\'"), "a\\");
        assert!(err("'abc").contains("single-quote"));
        assert!(err("\"abc").contains("double-quote"));
    }

    #[test]
    fn backtick_escape() {
        let lx = Lexer::new('`');
        assert_eq!(lx.expand("`$A", &env()).unwrap(), "$A");
        assert_eq!(lx.expand("C:\\dir", &env()).unwrap(), "C:\\dir");
        assert_eq!(lx.expand("\"a`\"b\"", &env()).unwrap(), "a\"b");
    }

    #[test]
    fn word_splitting_happens_after_substitution() {
        assert_eq!(xw("a $S"), vec!["a", "a", "b", "c"]);
        assert_eq!(xw("\"$S\" x"), vec!["a b  c", "x"]);
        assert_eq!(xw("  lead   trail  "), vec!["lead", "trail"]);
        assert_eq!(xw("'' x"), vec!["x"]);
        assert_eq!(xw("a\\ b c"), vec!["a b", "c"]);
        assert_eq!(xw("pre$S"), vec!["prea", "b", "c"]);
        assert_eq!(x("a $S"), "a a b  c");
    }

    #[test]
    fn raw_and_skip_modes() {
        let raw = Lexer::new('\\').raw_quotes(true).raw_escapes(true);
        assert_eq!(
            raw.expand("'x' \"y\" \\z", &NoVars).unwrap(),
            "'x' \"y\" \\z"
        );
        let keep = Lexer::new('\\').skip_unset(true);
        assert_eq!(
            keep.expand("$NOPE ${NOPE} ${NOPE:-d} $A", &env()).unwrap(),
            "$NOPE ${NOPE} ${NOPE:-d} apple"
        );
        let script = Lexer::new('\\').skip_quotes(true);
        assert_eq!(
            script.expand("echo '$A' \"$A\"", &env()).unwrap(),
            "echo 'apple' \"apple\""
        );
    }

    #[test]
    fn lookups_of_every_kind() {
        let mut h = HashMap::new();
        h.insert("K".to_owned(), "v".to_owned());
        assert_eq!(expand("$K", &h).unwrap(), "v");
        let b: BTreeMap<String, String> = [("K".to_owned(), "w".to_owned())].into();
        assert_eq!(expand("$K", &b).unwrap(), "w");
        let list = [("K", "1"), ("K", "2")];
        assert_eq!(expand("$K", &list).unwrap(), "2");
        assert_eq!(expand("$K", &&list[..]).unwrap(), "2");
        assert_eq!(expand("$k", &list).unwrap(), "");
    }
}
