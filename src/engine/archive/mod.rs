//! Tar archives: the deterministic writer save uses, and the reader load, inspect and verify use.

pub mod guard;
pub mod gzip;
pub mod read;
pub mod table;
pub mod write;

use super::error::{Error, Result};

/// Compression of a whole archive stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952); read with any number of members, written as one.
    Gzip,
    /// Zstandard frames.
    Zstd,
    /// xz (LZMA2); read only.
    Xz,
    /// bzip2; read only.
    Bzip2,
}

impl Compression {
    /// Recognise a compressed stream by its first bytes.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else {
            None
        }
    }

    /// What save writes: the only names `compression=` accepts.
    pub const WRITTEN: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    /// The compression save writes under `name`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any name but those of [`Compression::WRITTEN`].
    pub fn for_writing(name: &str) -> Result<Compression> {
        Compression::WRITTEN
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| Compression::not_written(name))
    }

    /// The error for a compression save does not write.
    pub fn not_written(name: &str) -> Error {
        Error::InvalidArgument(format!(
            "compression must be None, 'gzip' or 'zstd', not {name:?}"
        ))
    }

    /// The name used by options and messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }
}
