//! Repository names and tags as the distribution spec 1.1 defines them ("Pulling manifests").

use std::fmt;

/// Longest repository name accepted (distribution's limit; the spec lets registries set one).
pub const MAX_NAME_LEN: usize = 255;

/// A repository name matching
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
/// Every component starts with a letter or digit, so no component is `.`, `..` or `_`-prefixed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Option<RepoName> {
        (s.len() <= MAX_NAME_LEN && !s.is_empty() && s.split('/').all(valid_component))
            .then(|| RepoName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while b.get(*i).copied().is_some_and(alnum) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while let Some(&sep) = b.get(i) {
        match sep {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut i) {
            return false;
        }
    }
    true
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        (first_ok
            && b.len() <= 128
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')))
        .then(|| Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec() {
        for good in [
            "a",
            "library/busybox",
            "a/b/c/d",
            "my-repo",
            "my--repo",
            "a.b",
            "a_b",
            "a__b",
            "0",
            "lab/debian-12.x_y",
        ] {
            assert!(RepoName::parse(good).is_some(), "{good} refused");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            ".a",
            "a.",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "_a",
            "a/_uploads",
            "a b",
            "a:b",
            "a%2fb",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad:?} accepted");
        }
        assert!(RepoName::parse(&"a".repeat(MAX_NAME_LEN)).is_some());
        assert!(RepoName::parse(&"a".repeat(MAX_NAME_LEN + 1)).is_none());
    }

    #[test]
    fn tags_follow_the_spec() {
        for good in ["latest", "v1.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(Tag::parse(good).is_some(), "{good} refused");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_none(), "{bad:?} accepted");
        }
    }
}
