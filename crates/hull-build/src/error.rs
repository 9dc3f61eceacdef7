use thiserror::Error;

/// Why a build cannot go on. Errors tied to a Dockerfile line render as BuildKit's do
/// (`Dockerfile:LINE: message`).
#[derive(Debug, Error)]
pub enum BuildError {
    #[error("Dockerfile:{line}: {message}")]
    Dockerfile { line: usize, message: String },
    #[error("target stage \"{0}\" could not be found")]
    UnknownTarget(String),
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
    #[error("build context: {0}")]
    Context(String),
    #[error("{0}")]
    Store(String),
    #[error(
        "Dockerfile:{line}: process \"{command}\" did not complete successfully: exit code: {code}"
    )]
    RunFailed {
        line: usize,
        command: String,
        code: i32,
    },
}

impl BuildError {
    pub(crate) fn at(line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Dockerfile {
            line,
            message: message.into(),
        }
    }
}
