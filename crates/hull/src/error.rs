//! How failures reach the user: one `Error: ` line with the whole cause chain, optional
//! `hint: ` lines, and an exit status (1 for failures, 125 for bad usage, as Docker's).

use std::fmt;

/// Exit status of a failed command.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for a command line that does not parse (Docker's).
pub const EXIT_USAGE: u8 = 125;

/// A failure the user can act on, with what to try next.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hints: Vec<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> UserError {
        UserError {
            message: message.into(),
            hints: Vec::new(),
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> UserError {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// The command has already reported what went wrong (several `Error:` lines from `rmi`,
/// a `system check` report); only the exit status is left to give.
#[derive(Debug)]
pub struct Reported {
    pub code: u8,
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.code)
    }
}

impl std::error::Error for Reported {}

/// The error line: `Error: ` and the causes joined with `: `, each cause once (library errors
/// sometimes repeat their source in their own message).
pub fn error_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() {
            continue;
        }
        if parts.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    // One line, whatever the messages hold.
    format!("Error: {}", parts.join(": ").replace('\n', " "))
}

/// `hint:` lines for an error: those a command attached, then general ones.
pub fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut out = Vec::new();
    for cause in err.chain() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            out.extend(u.hints.iter().cloned());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
            && out.is_empty()
        {
            out.push(
                "the store needs write access: run as root, or choose another store with --root DIR"
                    .to_string(),
            );
        }
    }
    out
}

/// Whether the failure is only a closed stdout (`hull images | head -1`): not worth a word.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit status for an error.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|c| c.downcast_ref::<Reported>().map(|r| r.code))
        .unwrap_or(EXIT_FAILURE)
}

/// clap's error as one line (`unexpected argument '--bogus' found`), followed by where to
/// read the usage.
pub fn usage_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut message = String::new();
    for line in rendered.lines() {
        if line.trim().is_empty() {
            break;
        }
        let line = line.trim();
        let line = line.strip_prefix("error: ").unwrap_or(line);
        if !message.is_empty() {
            message.push(' ');
        }
        message.push_str(line);
    }
    let command = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|u| {
            u.split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "hull".to_string());
    format!("Error: {message} (see '{command} --help')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn chain_on_one_line() {
        let err = anyhow::Error::new(std::io::Error::other("connection reset"))
            .context("fetching layer sha256:abc")
            .context("pulling busybox");
        assert_eq!(
            error_line(&err),
            "Error: pulling busybox: fetching layer sha256:abc: connection reset"
        );
        let err = anyhow::anyhow!("line one\nline two");
        assert_eq!(error_line(&err), "Error: line one line two");
        assert_eq!(exit_code(&err), EXIT_FAILURE);
    }

    #[test]
    fn repeated_sources_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "/x: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::new(Wrapper(std::io::Error::other("denied")));
        assert_eq!(error_line(&err), "Error: /x: denied");
    }

    #[test]
    fn hints_and_codes() {
        let err: anyhow::Error = UserError::new("cannot do it").hint("try this").into();
        let err = err.context("doing");
        assert_eq!(hints(&err), vec!["try this".to_string()]);
        let err: anyhow::Error = Reported { code: 3 }.into();
        assert_eq!(exit_code(&err), 3);
        let err = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing output")
            .unwrap_err();
        assert!(is_broken_pipe(&err));
    }
}
