//! The one error type of the engine: every failure a caller can see, with the path, reference, digest,
//! expected and found values it concerns. The Python bindings map each variant to one exception class.

use std::path::{Path, PathBuf};

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A platform specifier does not parse.
    #[error("invalid platform {spec:?}: {reason}")]
    InvalidPlatform {
        /// The specifier as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An image reference does not parse.
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A reference matches nothing in the store.
    #[error("image not found: {reference:?} matches no image in {store}{}", hint(.candidates))]
    ImageNotFound {
        /// The reference as typed.
        reference: String,
        /// The store searched.
        store: PathBuf,
        /// The closest names the store has (at most three).
        candidates: Vec<String>,
    },

    /// A reference matches two or more different images.
    #[error("ambiguous reference {reference:?}: it matches {}", .matches.join(" and "))]
    AmbiguousReference {
        /// The reference as typed.
        reference: String,
        /// The names of the images it matches.
        matches: Vec<String>,
    },

    /// A required platform is absent from an image, or present without all of its content.
    #[error(
        "platform not found: image {image} has no complete {} (it has: {})",
        .missing.join(", "),
        if .available.is_empty() { "none".to_string() } else { .available.join(", ") }
    )]
    PlatformNotFound {
        /// The image, as named or by digest.
        image: String,
        /// The platforms required and not complete.
        missing: Vec<String>,
        /// The platforms the image has.
        available: Vec<String>,
    },

    /// Content does not hash to its digest.
    #[error("digest mismatch for {digest} at {location}: content hashes to {found}")]
    DigestMismatch {
        /// The digest the content should have.
        digest: String,
        /// Where the content was read (an archive entry, a store path).
        location: String,
        /// The digest it has.
        found: String,
    },

    /// Content is not the size its descriptor says.
    #[error("size mismatch for {digest} at {location}: expected {expected} bytes, found {found}")]
    SizeMismatch {
        /// The digest of the content.
        digest: String,
        /// Where the content was read.
        location: String,
        /// The size its descriptor states.
        expected: u64,
        /// The size found (`more than N` when reading stopped early).
        found: String,
    },

    /// The archive is malformed, truncated, unsafe or over a limit.
    #[error("invalid archive: {entry}: {reason}")]
    InvalidArchive {
        /// The entry concerned (or the archive, for whole-archive faults).
        entry: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The store is malformed, locked too long, or a blob it names is missing.
    #[error("store error: {path}: {reason}")]
    Store {
        /// The store, or the file in it, concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An argument has a wrong value (an option's value, a shape that cannot be written).
    #[error("{0}")]
    InvalidArgument(String),

    /// A filesystem or stream error, with the path it concerns.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file concerned, or a label for what has no path (`<stream>`, `<progress>`).
        path: PathBuf,
        #[source]
        /// The error.
        source: std::io::Error,
    },

    /// A registry answered with an error (or could not be reached). `url` never carries credentials;
    /// `moved` lists the tags already moved when a push failed among its tags (`tag (was digest)`).
    #[error("registry error: {}{}{}{}", status_text(*.status), if .code.is_empty() { String::new() } else { format!(" {}", .code) }, format!(" at {url}: {message}"), moved_text(.moved))]
    Registry {
        /// HTTP status (0: no response).
        status: u16,
        /// The OCI error code (`MANIFEST_BLOB_UNKNOWN`), empty when none.
        code: String,
        /// The request URL without its query (never credentials).
        url: String,
        /// The registry's message, or what failed.
        message: String,
        /// Tags already moved (`name (was digest)`), when a push failed among its tags.
        moved: Vec<String>,
    },

    /// A registry refused the credentials (401 or 403), or none were found for it.
    #[error("authentication failed: {}{} at {url}: {message}", status_text(*.status), if .code.is_empty() { String::new() } else { format!(" {}", .code) })]
    Authentication {
        /// HTTP status (0: no response).
        status: u16,
        /// The OCI error code (`MANIFEST_BLOB_UNKNOWN`), empty when none.
        code: String,
        /// The request URL without its query (never credentials).
        url: String,
        /// The registry's message, or what failed.
        message: String,
    },

    /// The operation was cancelled by its caller (progress callback or signal).
    #[error("cancelled")]
    Cancelled,
}

fn hint(candidates: &[String]) -> String {
    if candidates.is_empty() {
        String::new()
    } else {
        format!(" (closest: {})", candidates.join(", "))
    }
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "no response".to_string()
    } else {
        format!("HTTP {status}")
    }
}

fn moved_text(moved: &[String]) -> String {
    if moved.is_empty() {
        String::new()
    } else {
        format!(" (tags already moved: {})", moved.join(", "))
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        // A cancellation raised inside a reader or writer travels as an io::Error; unwrap it here.
        if source.kind() == std::io::ErrorKind::Interrupted
            && source.get_ref().is_some_and(|e| e.is::<Cancelled>())
        {
            return Error::Cancelled;
        }
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An archive-format error on `entry`.
    pub fn archive(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArchive {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    /// A store error on `path`.
    pub fn store(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Store {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The message shown to a person: [`Display`](std::fmt::Display) with every character that could
    /// act on a terminal escaped (see [`printable`]); names and paths may come from an archive.
    pub fn message(&self) -> String {
        printable(&self.to_string()).into_owned()
    }
}

/// `s` with control characters (C0, DEL, C1: what starts ANSI and OSC sequences) and invisible
/// formatting characters (bidirectional overrides, zero-width, line separators) written as `\xNN` or
/// `\uNNNN`, so that text from an archive cannot act on the terminal that shows it. The same set as the
/// Python helper `ocitar._text.printable`.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if u32::from(c) < 0x100 {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_acts_on_a_terminal() {
        assert_eq!(printable("alpine:3.20"), "alpine:3.20");
        assert_eq!(
            printable("a\u{1b}]0;x\u{7}b\u{9b}31m\n\u{202e}"),
            "a\\x1b]0;x\\x07b\\x9b31m\\x0a\\u202e"
        );
        let e = Error::archive("blobs/\u{1b}[2J", "bad");
        assert_eq!(e.message(), "invalid archive: blobs/\\x1b[2J: bad");
    }
}

/// Marker carried inside an `io::Error` when a progress callback or signal cancels a copy.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    /// Turn an `io::Error` into [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
