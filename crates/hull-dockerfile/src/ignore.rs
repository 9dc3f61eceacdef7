//! `.dockerignore` matching with Docker's semantics (`dockerignore.ReadAll` and
//! moby/patternmatcher's `MatchesOrParentMatches`):
//!
//! - a line starting with `#` is a comment; lines are trimmed, blank lines skipped;
//! - `!pattern` is an exception that re-includes what earlier patterns excluded; the last
//!   pattern that matches a path decides;
//! - patterns are cleaned like Go's `filepath.Clean` (so `./a`, `a/` and `/a` all mean `a`);
//! - `*` and `?` do not cross `/`, `**` matches any number of directories (`**/x`, `a/**`,
//!   `a/**/b`), `[...]` is a character class, `\` escapes;
//! - a pattern that matches a directory excludes everything below it, unless an exception
//!   re-includes it.

use thiserror::Error;

/// A `.dockerignore` pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IgnoreError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matcher {
    patterns: Vec<IgnorePattern>,
}

/// One pattern of a [`Matcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePattern {
    pattern: String,
    exception: bool,
    toks: Vec<Tok>,
}

impl IgnorePattern {
    /// The cleaned pattern, without the `!`.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether this is a `!` exception.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    fn matches(&self, path: &str) -> bool {
        let n = self.toks.len();
        let states = self.run(path);
        states.get(n).copied().unwrap_or(false)
    }

    /// Whether some path that starts with `prefix` could match.
    fn could_match_with_prefix(&self, prefix: &str) -> bool {
        self.run(prefix).iter().any(|b| *b)
    }

    /// NFA simulation over the tokens: the set of token positions reached after `input`.
    fn run(&self, input: &str) -> Vec<bool> {
        let n = self.toks.len();
        let mut cur = vec![false; n + 1];
        set(&mut cur, 0);
        self.close(&mut cur);
        for ch in input.chars() {
            if !cur.iter().any(|b| *b) {
                break;
            }
            let mut nxt = vec![false; n + 1];
            for (i, tok) in self.toks.iter().enumerate() {
                if !get(&cur, i) {
                    continue;
                }
                match tok {
                    Tok::Lit(c) if *c == ch => set(&mut nxt, i + 1),
                    Tok::One if ch != '/' => set(&mut nxt, i + 1),
                    Tok::Star if ch != '/' => set(&mut nxt, i),
                    Tok::AnyEnd => set(&mut nxt, i),
                    Tok::AnyDirs => {
                        set(&mut nxt, i);
                        if ch == '/' {
                            set(&mut nxt, i + 1);
                        }
                    }
                    Tok::Class { negated, ranges } => {
                        let inside = ranges.iter().any(|(lo, hi)| *lo <= ch && ch <= *hi);
                        if inside != *negated {
                            set(&mut nxt, i + 1);
                        }
                    }
                    _ => {}
                }
            }
            self.close(&mut nxt);
            cur = nxt;
        }
        cur
    }

    fn close(&self, states: &mut [bool]) {
        for (i, tok) in self.toks.iter().enumerate() {
            if get(states, i) && matches!(tok, Tok::Star | Tok::AnyEnd | Tok::AnyDirs) {
                set(states, i + 1);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**` (with a following `/` eaten) before more pattern: `(.*/)?`.
    AnyDirs,
    /// `**` at the end: anything.
    AnyEnd,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

fn get(v: &[bool], i: usize) -> bool {
    v.get(i).copied().unwrap_or(false)
}

fn set(v: &mut [bool], i: usize) {
    if let Some(b) = v.get_mut(i) {
        *b = true;
    }
}

impl Matcher {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Matcher, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let invert = pattern.starts_with('!');
            if invert {
                pattern = pattern.get(1..).unwrap_or_default().trim();
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = clean_path(pattern);
                if let Some(rest) = cleaned.strip_prefix('/').filter(|r| !r.is_empty()) {
                    cleaned = rest.to_owned();
                }
            }
            patterns.push(if invert {
                format!("!{cleaned}")
            } else {
                cleaned
            });
        }
        Matcher::new(patterns)
    }

    /// Builds a matcher from patterns already split into lines (`!` marks exceptions).
    pub fn new<I, S>(patterns: I) -> Result<Matcher, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean_path(p);
            let (exception, body) = match p.strip_prefix('!') {
                Some("") => return Err(IgnoreError::LoneExclamation),
                Some(rest) => (true, rest.to_owned()),
                None => (false, p),
            };
            let toks = compile(&body).ok_or_else(|| IgnoreError::BadPattern(body.clone()))?;
            out.push(IgnorePattern {
                pattern: body,
                exception,
                toks,
            });
        }
        Ok(Matcher { patterns: out })
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded from the build
    /// context. A path is excluded when the last pattern matching it, or one of its parent
    /// directories, is not an exception. `is_dir` does not change the answer: Docker cleans
    /// the trailing `/` off patterns, so `build/` also excludes a file named `build`.
    pub fn excluded(&self, path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        let path = clean_path(path);
        let path = path.trim_start_matches('/');
        if path.is_empty() || path == "." {
            return false;
        }
        let parents: Vec<&str> = path
            .char_indices()
            .filter(|(_, c)| *c == '/')
            .filter_map(|(i, _)| path.get(..i))
            .collect();
        let mut matched = false;
        for p in &self.patterns {
            // Only a pattern that can change the answer is tried.
            if p.exception != matched {
                continue;
            }
            if p.matches(path) || parents.iter().any(|parent| p.matches(parent)) {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Whether an exception could re-include something below `dir`. A walker that finds an
    /// excluded directory may skip it whole when this is false.
    pub fn could_match_inside(&self, dir: &str) -> bool {
        let dir = clean_path(dir);
        let dir = dir.trim_start_matches('/');
        let prefix = if dir.is_empty() || dir == "." {
            String::new()
        } else {
            format!("{dir}/")
        };
        let ancestors: Vec<&str> = prefix
            .char_indices()
            .filter(|(_, c)| *c == '/')
            .filter_map(|(i, _)| prefix.get(..i))
            .collect();
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| p.could_match_with_prefix(&prefix) || ancestors.iter().any(|a| p.matches(a)))
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Compiles a cleaned pattern; `None` for a malformed one (unclosed `[`, bad range).
fn compile(pattern: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut k = 0;
    while let Some(&ch) = chars.get(k) {
        k += 1;
        match ch {
            '*' if chars.get(k) == Some(&'*') => {
                k += 1;
                if chars.get(k) == Some(&'/') {
                    k += 1;
                }
                toks.push(if k >= chars.len() {
                    Tok::AnyEnd
                } else {
                    Tok::AnyDirs
                });
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => match chars.get(k) {
                Some(&n) => {
                    toks.push(Tok::Lit(n));
                    k += 1;
                }
                None => return None,
            },
            '[' => {
                let negated = chars.get(k) == Some(&'^');
                if negated {
                    k += 1;
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                while let Some(&c) = chars.get(k) {
                    k += 1;
                    if c == ']' && !ranges.is_empty() {
                        closed = true;
                        break;
                    }
                    let lo = if c == '\\' {
                        let e = *chars.get(k)?;
                        k += 1;
                        e
                    } else {
                        c
                    };
                    let mut hi = lo;
                    if chars.get(k) == Some(&'-') && chars.get(k + 1).is_some_and(|c| *c != ']') {
                        let mut h = *chars.get(k + 1)?;
                        k += 2;
                        if h == '\\' {
                            h = *chars.get(k)?;
                            k += 1;
                        }
                        if h < lo {
                            return None;
                        }
                        hi = h;
                    }
                    ranges.push((lo, hi));
                }
                if !closed {
                    return None;
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Some(toks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).unwrap()
    }

    #[test]
    fn cleaning_like_go() {
        assert_eq!(clean_path("./a/b/"), "a/b");
        assert_eq!(clean_path("/a/../b"), "/b");
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("a//b/./c"), "a/b/c");
    }

    #[test]
    fn comments_blanks_and_leading_slashes() {
        let mm = m("# comment\n\n  /node_modules  \n./build/\n #not a comment\n");
        let pats: Vec<&str> = mm.patterns().iter().map(|p| p.pattern()).collect();
        assert_eq!(pats, ["node_modules", "build", "#not a comment"]);
        assert!(mm.excluded("node_modules", true));
        assert!(mm.excluded("node_modules/x/y.js", false));
        assert!(mm.excluded("build", false));
        assert!(!mm.excluded("src/node_modules", true));
    }

    #[test]
    fn single_star_stays_in_one_directory() {
        let mm = m("*.log\ndocs/*.md\n");
        assert!(mm.excluded("a.log", false));
        assert!(!mm.excluded("sub/a.log", false));
        assert!(mm.excluded("docs/readme.md", false));
        assert!(!mm.excluded("docs/deep/readme.md", false));
    }

    #[test]
    fn double_star_crosses_directories() {
        let mm = m("**/*.tmp\na/**/z\nout/**\n");
        assert!(mm.excluded("x.tmp", false));
        assert!(mm.excluded("p/q/x.tmp", false));
        assert!(mm.excluded("a/z", false));
        assert!(mm.excluded("a/b/c/z", false));
        assert!(!mm.excluded("b/z", false));
        assert!(mm.excluded("out/x", false));
        assert!(mm.excluded("out/x/y", false));
        assert!(!mm.excluded("outx", false));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let mm = m("*.md\n!README.md\nREADME*\n");
        assert!(mm.excluded("CHANGES.md", false));
        assert!(mm.excluded("README.md", false));
        let mm = m("*.md\n!README.md\n");
        assert!(!mm.excluded("README.md", false));
        assert!(mm.has_exceptions());
    }

    #[test]
    fn directory_exclusion_with_exception_inside() {
        let mm = m("vendor\n!vendor/keep/**\n");
        assert!(mm.excluded("vendor", true));
        assert!(mm.excluded("vendor/drop.go", false));
        assert!(!mm.excluded("vendor/keep/a.go", false));
        assert!(mm.could_match_inside("vendor"));
        assert!(mm.could_match_inside("vendor/keep"));
        assert!(!mm.could_match_inside("vendor/other"));
        let none = m("vendor\n");
        assert!(!none.could_match_inside("vendor"));
        let deep = m("*\n!**/*.go\n");
        assert!(deep.could_match_inside("anything/at/all"));
        assert!(!deep.excluded("x/y.go", false));
        assert!(deep.excluded("x/y.rs", false));
    }

    #[test]
    fn question_mark_classes_and_escapes() {
        let mm = m("file?.txt\n[a-c]*.bin\n[^x]z\nlit\\*\n");
        assert!(mm.excluded("file1.txt", false));
        assert!(!mm.excluded("file/.txt", false));
        assert!(mm.excluded("b1.bin", false));
        assert!(!mm.excluded("d1.bin", false));
        assert!(mm.excluded("az", false));
        assert!(!mm.excluded("xz", false));
        assert!(mm.excluded("lit*", false));
        assert!(!mm.excluded("litx", false));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert_eq!(Matcher::parse("!\n"), Err(IgnoreError::LoneExclamation));
        assert!(matches!(
            Matcher::parse("[abc\n"),
            Err(IgnoreError::BadPattern(_))
        ));
        assert!(matches!(
            Matcher::parse("[z-a]\n"),
            Err(IgnoreError::BadPattern(_))
        ));
        assert!(matches!(
            Matcher::parse("trailing\\\n"),
            Err(IgnoreError::BadPattern(_))
        ));
    }

    #[test]
    fn context_root_and_bom() {
        let mm = m("\u{feff}*\n");
        assert!(!mm.excluded(".", true));
        assert!(!mm.excluded("", true));
        assert!(mm.excluded("anything", false));
        assert!(mm.excluded("./anything", false));
    }
}
