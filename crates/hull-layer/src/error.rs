//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// What went wrong while reading, unpacking or writing a layer. Entry paths are shown as the
/// tar stream spells them (lossily decoded and quoted, so hostile names cannot forge terminal
/// output).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    #[error("opening unpack root {}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("reading tar header {}", after_entry(after.as_deref()))]
    Header {
        /// The last entry read before the bad header, if any.
        after: Option<String>,
        #[source]
        source: io::Error,
    },

    #[error("tar stream ends without an end-of-archive marker {}", after_entry(after.as_deref()))]
    MissingEnd { after: Option<String> },

    #[error(
        "tar entry {path:?} is truncated: its header declares {expected} bytes, the stream held {actual}"
    )]
    Truncated {
        path: String,
        expected: u64,
        actual: u64,
    },

    #[error("layer exceeds the limit of {limit} uncompressed bytes (at tar entry {path:?})")]
    TooLarge { path: String, limit: u64 },

    #[error("tar extension headers {} exceed {limit} bytes", before_entry(after.as_deref()))]
    HeadersTooLarge { after: Option<String>, limit: u64 },

    #[error("invalid tar entry name {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    #[error("tar entry {path:?}: {reason}")]
    InvalidEntry { path: String, reason: String },

    #[error("tar entry {path:?}: {what} is not supported")]
    Unsupported { path: String, what: String },

    #[error("hardlink {path:?}: resolving its target {target:?} inside the root")]
    HardlinkTarget {
        path: String,
        target: String,
        #[source]
        source: io::Error,
    },

    #[error("{op} {path:?}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },

    #[error("writing tar entry {path:?}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },

    #[error("reading {} to archive it", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("opening layer {index} of the stack (0 is the bottom)")]
    OpenLayer {
        index: usize,
        #[source]
        source: io::Error,
    },
}

fn after_entry(after: Option<&str>) -> String {
    match after {
        Some(p) => format!("after entry {p:?}"),
        None => "at the start of the stream".to_string(),
    }
}

fn before_entry(after: Option<&str>) -> String {
    match after {
        Some(p) => format!("following entry {p:?}"),
        None => "at the start of the stream".to_string(),
    }
}

/// Lossy, display-only form of raw path bytes.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_entry() {
        let e = LayerError::Truncated {
            path: "etc/passwd".into(),
            expected: 10,
            actual: 3,
        };
        assert_eq!(
            e.to_string(),
            "tar entry \"etc/passwd\" is truncated: its header declares 10 bytes, the stream held 3"
        );
        let e = LayerError::MissingEnd { after: None };
        assert_eq!(
            e.to_string(),
            "tar stream ends without an end-of-archive marker at the start of the stream"
        );
    }
}
