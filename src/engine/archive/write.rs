//! A deterministic tar writer: ustar headers with uid/gid 0, no user names, mtime 0 and fixed modes, GNU
//! long-name records for names over 100 bytes, and blob data hashed and checked while it is copied.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::engine::digest::{self, Digest};
use crate::engine::error::{Error, Result};

/// Mode of blob files and `oci-layout`.
pub const MODE_BLOB: u32 = 0o444;
/// Mode of JSON documents.
pub const MODE_JSON: u32 = 0o644;
/// Mode of directories.
pub const MODE_DIR: u32 = 0o755;

/// The header record(s) of an entry: a GNU long-name record first when `name` is over 100 bytes.
pub fn header_bytes(name: &str, size: u64, mode: u32, kind: tar::EntryType) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    if name.len() > 100 {
        let mut long = name.as_bytes().to_vec();
        long.push(0);
        let n = long.len() as u64;
        out.extend_from_slice(&raw_header(
            "././@LongLink",
            n,
            0o644,
            tar::EntryType::GNULongName,
        ));
        out.extend_from_slice(&long);
        out.extend_from_slice(padding(n));
        let short: String = name.chars().take(100).collect();
        out.extend_from_slice(&raw_header(&short, size, mode, kind));
    } else {
        out.extend_from_slice(&raw_header(name, size, mode, kind));
    }
    out
}

fn raw_header(name: &str, size: u64, mode: u32, kind: tar::EntryType) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    // Names here are ASCII and at most 100 bytes: write the name field directly.
    for (slot, b) in h.as_old_mut().name.iter_mut().zip(name.as_bytes()) {
        *slot = *b;
    }
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h.set_cksum();
    *h.as_bytes()
}

/// The zeros that pad `size` bytes of data to a whole 512-byte record.
pub fn padding(size: u64) -> &'static [u8] {
    static ZEROS: [u8; 512] = [0u8; 512];
    // The remainder is below 512, so it fits in usize.
    let rem = usize::try_from((512 - (size % 512)) % 512).unwrap_or(0);
    ZEROS.get(..rem).unwrap_or_default()
}

/// Writes tar entries to `W` in the order given, counting the bytes written.
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
    dest: std::path::PathBuf,
}

impl<W: Write> TarWriter<W> {
    /// A writer over `out`; `dest` names the output in error messages.
    pub fn new(out: W, dest: &Path) -> TarWriter<W> {
        TarWriter {
            out,
            written: 0,
            dest: dest.to_path_buf(),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.dest, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn header(&mut self, name: &str, size: u64, mode: u32, kind: tar::EntryType) -> Result<()> {
        self.put(&header_bytes(name, size, mode, kind))
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        self.put(padding(size))
    }

    /// A directory entry (`name` ends with `/`).
    ///
    /// # Errors
    /// [`Error::Io`] on write failure.
    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.header(name, 0, MODE_DIR, tar::EntryType::Directory)
    }

    /// A regular file with in-memory content.
    ///
    /// # Errors
    /// [`Error::Io`] on write failure.
    pub fn file(&mut self, name: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        self.header(name, bytes.len() as u64, mode, tar::EntryType::Regular)?;
        self.put(bytes)?;
        self.pad(bytes.len() as u64)
    }

    /// A blob copied from `reader`, hashed while copied and checked against `digest` and `size`.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] / [`Error::SizeMismatch`] naming `location`; [`Error::Io`].
    pub fn blob<R: Read>(
        &mut self,
        digest: &Digest,
        size: u64,
        reader: R,
        location: &str,
        tick: &mut dyn FnMut(u64) -> io::Result<()>,
    ) -> Result<()> {
        self.header(
            &digest.blob_name(),
            size,
            MODE_BLOB,
            tar::EntryType::Regular,
        )?;
        let dest = self.dest.clone();
        let mut counting = Counting {
            inner: &mut self.out,
            n: 0,
        };
        digest::copy_verified(reader, &mut counting, digest, size, location, &dest, tick)?;
        self.written += counting.n;
        self.pad(size)
    }

    /// Write the end-of-archive marker and return the inner writer.
    ///
    /// # Errors
    /// [`Error::Io`] on write or flush failure.
    pub fn finish(mut self) -> Result<W> {
        self.put(&[0u8; 1024])?;
        self.out.flush().map_err(|e| Error::io(&self.dest, e))?;
        Ok(self.out)
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
