//! Registry authentication challenges (`WWW-Authenticate`, RFC 7235 §4.1 with the Docker token
//! spec's Bearer parameters) and token server replies (distribution `docs/spec/auth/token.md`).

use std::time::Duration;

/// One challenge from a `WWW-Authenticate` header. Schemes other than Basic and Bearer are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        error: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: one or more `scheme param=value, …` challenges, values
/// either tokens or quoted strings (which may hold commas and `\"` escapes).
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_ws_and_commas();
        let Some(scheme) = p.token() else { break };
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            p.skip_ws();
            let save = p.i;
            let Some(name) = p.token() else { break };
            p.skip_ws();
            if !p.eat(b'=') {
                // Not a parameter: the start of the next challenge.
                p.i = save;
                break;
            }
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            params.push((name.to_ascii_lowercase(), value));
            p.skip_ws();
            if !p.eat(b',') {
                // Garbage or the end: resynchronise on the next comma.
                while let Some(c) = p.peek() {
                    if c == b',' {
                        break;
                    }
                    p.i += 1;
                }
                if !p.eat(b',') {
                    break;
                }
            }
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = get("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                        error: get("error"),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic {
                realm: get("realm"),
            }),
            _ => {}
        }
        if p.peek().is_none() {
            break;
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// An RFC 7230 token (plus `/`, which token68 values and sloppy servers use).
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        let t = self.s.get(start..self.i)?;
        if t.is_empty() {
            None
        } else {
            Some(String::from_utf8_lossy(t).into_owned())
        }
    }

    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        self.i += 1; // opening quote
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A token server's reply. Docker's spec calls the field `token`; OAuth2 calls it `access_token`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens without `expires_in` last 60 seconds (token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are dropped this long before they expire, so none expires in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

impl TokenReply {
    /// The token and how long to keep using it.
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let keep = lifetime
            .checked_sub(EXPIRY_MARGIN)
            .filter(|d| !d.is_zero())
            .unwrap_or(lifetime / 2);
        Some((token, keep))
    }
}

/// The scope to pull from a repository (token spec "Requesting a Token").
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope to push to a repository (pull too: a push checks what is there first).
pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// The scopes of a push that mounts blobs from `from`: push to the target, pull from the source,
/// space-separated as one cache key (sent as separate `scope` parameters).
pub(crate) fn mount_scope(repository: &str, from: &str) -> String {
    format!("{} {}", push_scope(repository), pull_scope(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let c = parse_www_authenticate(
            r#"bearer realm = "https://a/token", scope="repository:x/y:pull,push", error="insufficient_scope", service="a \"b\"""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://a/token".into(),
                service: Some("a \"b\"".into()),
                scope: Some("repository:x/y:pull,push".into()),
                error: Some("insufficient_scope".into()),
            }]
        );
    }

    #[test]
    fn basic_and_several_challenges() {
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".into())
            }]
        );
        assert_eq!(
            parse_www_authenticate(r#"Negotiate abc, Basic realm="r", Bearer realm="https://t/""#),
            vec![
                Challenge::Basic {
                    realm: Some("r".into())
                },
                Challenge::Bearer {
                    realm: "https://t/".into(),
                    service: None,
                    scope: None,
                    error: None
                }
            ]
        );
        assert_eq!(
            parse_www_authenticate("Basic"),
            vec![Challenge::Basic { realm: None }]
        );
    }

    #[test]
    fn garbage_never_panics_and_bearer_needs_a_realm() {
        for s in [
            "",
            "\"",
            "Bearer",
            "Bearer realm",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer ===",
        ] {
            let c = parse_www_authenticate(s);
            assert!(
                c.iter()
                    .all(|c| !matches!(c, Challenge::Bearer { realm, .. } if realm.is_empty())),
                "{s}"
            );
        }
        assert!(parse_www_authenticate("Bearer service=\"x\"").is_empty());
    }

    #[test]
    fn token_replies() {
        let r: TokenReply =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(r.into_token(), Some(("a".into(), Duration::from_secs(295))));
        let r: TokenReply = serde_json::from_str(r#"{"token":"t","access_token":"a"}"#).unwrap();
        assert_eq!(r.into_token(), Some(("t".into(), Duration::from_secs(55))));
        let r: TokenReply = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(r.into_token(), None);
    }
}
