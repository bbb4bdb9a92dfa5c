//! One reading of a tar: a reader between the input and the tar reader that follows the tar framing as
//! the bytes pass, and refuses what the tar reader would buffer without bound or read differently from
//! POSIX readers (Go's `archive/tar`, GNU tar, Python's `tarfile`): PAX records are parsed by their
//! length prefix, and a record the tar reader would split differently, a duplicated `path`, `linkpath`
//! or `size`, a GNU long name that disagrees with a PAX path, or a name longer than [`MAX_NAME`] is
//! refused before the entry it describes is read.

use std::io::{self, Read, Seek, SeekFrom};

/// Largest PAX extended header or GNU long-name / long-link entry accepted. The tar reader keeps these
/// in memory whole, so without a cap a compressed archive of a few kilobytes could claim gigabytes.
pub const MAX_EXTENSION: u64 = 64 << 10;
/// Longest entry or link name accepted, in bytes (an image archive's names are under 100 bytes).
pub const MAX_NAME: usize = 4 << 10;

/// An entry the [`TarGuard`] refused, carried inside the `io::Error` the tar reader passes on.
#[derive(Debug)]
pub struct Refused {
    /// The entry (or header place) refused.
    pub entry: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.entry, self.reason)
    }
}

impl std::error::Error for Refused {}

fn refuse(entry: String, reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Refused { entry, reason })
}

/// The extension entries that describe the next entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExtKind {
    Pax,
    Global,
    LongName,
    LongLink,
}

/// An extension entry's data being collected.
struct Ext {
    kind: ExtKind,
    buf: Vec<u8>,
    want: usize,
    /// Where its header starts (for messages).
    at: u64,
}

enum GuardState {
    /// Collecting a 512-byte header block.
    Header {
        block: Box<[u8; 512]>,
        filled: usize,
    },
    /// Inside an entry's data and padding; the next header starts at `next`. An extension entry's data
    /// (at most [`MAX_EXTENSION`] bytes) is collected.
    Data { next: u64, ext: Option<Ext> },
    /// After the end-of-archive block, or where the tar reader itself will fail: bytes pass unchecked.
    Off,
}

/// What the extension entries read so far say about the next entry.
#[derive(Default)]
struct Pending {
    size: Option<u64>,
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// The reader described in the module documentation. It mirrors the tar reader's rules: a PAX `size`
/// record sets the size of the next entry that is not an extension; seeks (skipping data) land on the
/// next header.
pub struct TarGuard<R> {
    inner: R,
    pos: u64,
    state: GuardState,
    pending: Pending,
    /// Where the end-of-archive block was found.
    end: Option<u64>,
    /// The first bytes after it (up to a block).
    after_end: Vec<u8>,
}

impl<R> TarGuard<R> {
    /// A guard over `inner`, positioned at an archive's first header.
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            pos: 0,
            state: GuardState::Header {
                block: Box::new([0u8; 512]),
                filled: 0,
            },
            pending: Pending::default(),
            end: None,
            after_end: Vec::new(),
        }
    }

    /// Where a lone zero block ended the archive: one zero block followed by a block that is not zero
    /// (more entries that no tar reader reads), as far as the bytes read through the guard show.
    pub fn lone_zero_block(&self) -> Option<u64> {
        self.end.filter(|_| self.after_end.iter().any(|&b| b != 0))
    }

    fn at_header(&mut self) {
        self.state = GuardState::Header {
            block: Box::new([0u8; 512]),
            filled: 0,
        };
    }

    /// Follow the framing over `data`, the bytes just read at `self.pos`.
    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                GuardState::Off => {
                    if self.end.is_some() && self.after_end.len() < 512 {
                        let k = (512 - self.after_end.len()).min(data.len());
                        self.after_end
                            .extend_from_slice(data.get(..k).unwrap_or_default());
                    }
                    self.pos = self.pos.saturating_add(data.len() as u64);
                    return Ok(());
                }
                GuardState::Header { block, filled } => {
                    let k = 512usize.saturating_sub(*filled).min(data.len());
                    let (now, rest) = data.split_at(k);
                    if let Some(dst) = block.get_mut(*filled..*filled + k) {
                        dst.copy_from_slice(now);
                    }
                    *filled += k;
                    self.pos = self.pos.saturating_add(k as u64);
                    data = rest;
                    if *filled == 512 {
                        let block = std::mem::replace(block, Box::new([0u8; 512]));
                        self.header(&block)?;
                    }
                }
                GuardState::Data { next, ext } => {
                    let left = next.saturating_sub(self.pos);
                    let k = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    let (now, rest) = data.split_at(k);
                    if let Some(x) = ext {
                        let take = x.want.saturating_sub(x.buf.len()).min(k);
                        x.buf.extend_from_slice(now.get(..take).unwrap_or_default());
                    }
                    self.pos = self.pos.saturating_add(k as u64);
                    data = rest;
                    if self.pos >= *next {
                        self.data_done()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// An entry's data ended: take what an extension entry says about the next entry, expect the next
    /// header.
    fn data_done(&mut self) -> io::Result<()> {
        let state = std::mem::replace(&mut self.state, GuardState::Off);
        if let GuardState::Data { ext: Some(x), .. } = state {
            self.extension(x)?;
        }
        self.at_header();
        Ok(())
    }

    /// Check an extension entry's data and keep what it says about the next entry.
    fn extension(&mut self, x: Ext) -> io::Result<()> {
        let here = || format!("<extension header at byte {}>", x.at);
        match x.kind {
            ExtKind::LongName | ExtKind::LongLink => {
                let mut name = x.buf;
                if name.last() == Some(&0) {
                    name.pop();
                }
                let slot = if x.kind == ExtKind::LongName {
                    &mut self.pending.long_name
                } else {
                    &mut self.pending.long_link
                };
                *slot = Some(name);
            }
            ExtKind::Pax | ExtKind::Global => {
                let records = pax_records(&x.buf).map_err(|r| refuse(here(), r))?;
                let mut seen: Vec<&[u8]> = Vec::new();
                for (key, value) in records {
                    check_record(key, value, x.kind == ExtKind::Global, &mut seen)
                        .map_err(|r| refuse(entry_for(value, key, &here), r))?;
                    if x.kind == ExtKind::Global {
                        continue;
                    }
                    match key {
                        b"size" => {
                            self.pending.size =
                                std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
                        }
                        b"path" => self.pending.path = Some(value.to_vec()),
                        b"linkpath" => self.pending.linkpath = Some(value.to_vec()),
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The extension entries before an ordinary entry agree with each other; they are consumed.
    fn real_entry(&mut self) -> io::Result<Option<u64>> {
        let p = std::mem::take(&mut self.pending);
        for (gnu, pax, what) in [
            (&p.long_name, &p.path, "name"),
            (&p.long_link, &p.linkpath, "link target"),
        ] {
            if let (Some(g), Some(x)) = (gnu, pax) {
                if g != x {
                    return Err(refuse(
                        String::from_utf8_lossy(x).into_owned(),
                        format!(
                            "a GNU long {what} ({:?}) disagrees with the PAX {what}: tar readers differ on which wins",
                            String::from_utf8_lossy(g)
                        ),
                    ));
                }
            }
        }
        Ok(p.size)
    }

    /// A header block is complete.
    fn header(&mut self, block: &[u8; 512]) -> io::Result<()> {
        let start = self.pos.saturating_sub(512);
        if block.iter().all(|&b| b == 0) {
            // End of archive: the tar reader stops here.
            self.end = Some(start);
            self.state = GuardState::Off;
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(block);
        let et = h.entry_type();
        let Ok(header_size) = h.entry_size() else {
            self.state = GuardState::Off;
            return Ok(());
        };
        let kind = if et.is_pax_local_extensions() {
            Some(ExtKind::Pax)
        } else if et.is_pax_global_extensions() {
            Some(ExtKind::Global)
        } else if et.is_gnu_longname() {
            Some(ExtKind::LongName)
        } else if et.is_gnu_longlink() {
            Some(ExtKind::LongLink)
        } else {
            None
        };
        let name = || match String::from_utf8_lossy(&h.path_bytes()) {
            n if n.is_empty() => format!("<header at byte {start}>"),
            n => n.into_owned(),
        };
        let size = match kind {
            Some(_) => header_size,
            None => {
                check_prefix(block).map_err(|r| refuse(name(), r))?;
                self.real_entry()?.unwrap_or(header_size)
            }
        };
        let limit = match kind {
            Some(ExtKind::LongName | ExtKind::LongLink) => MAX_NAME as u64 + 1,
            _ => MAX_EXTENSION,
        };
        if kind.is_some() && size > limit {
            let what = match kind {
                Some(ExtKind::LongName | ExtKind::LongLink) => "GNU long-name entry",
                _ => "PAX extended header",
            };
            return Err(refuse(
                name(),
                format!("{what} of {size} bytes is over the {limit}-byte limit"),
            ));
        }
        if et.is_gnu_sparse() {
            // Refused by the entry checks; its extension blocks follow the header.
            self.state = GuardState::Off;
            return Ok(());
        }
        let Some(next) = size
            .checked_add(511)
            .map(|s| s & !511)
            .and_then(|padded| self.pos.checked_add(padded))
        else {
            self.state = GuardState::Off;
            return Ok(());
        };
        let ext = kind.map(|kind| {
            let want = usize::try_from(size).unwrap_or(0);
            Ext {
                kind,
                buf: Vec::with_capacity(want),
                want,
                at: start,
            }
        });
        self.state = GuardState::Data { next, ext };
        if self.pos >= next {
            self.data_done()?;
        }
        Ok(())
    }
}

/// The entry a PAX record problem is reported against: the path it sets (messages shorten a long one),
/// else the header's place.
fn entry_for(value: &[u8], key: &[u8], here: &dyn Fn() -> String) -> String {
    if key == b"path" {
        String::from_utf8_lossy(value).into_owned()
    } else {
        here()
    }
}

/// A header that is not ustar keeps other fields (GNU: access and change times) where ustar keeps a name
/// prefix; some readers (Python's `tarfile`) still read those bytes as a prefix of the name.
fn check_prefix(block: &[u8; 512]) -> Result<(), String> {
    let ustar = block.get(257..263) == Some(b"ustar\0".as_slice());
    let prefix = block.get(345).copied().unwrap_or(0);
    if !ustar && prefix != 0 {
        return Err("a non-ustar header with bytes in the name-prefix field: tar readers differ on its name".into());
    }
    Ok(())
}

/// Check one PAX record: no newline inside it (the tar reader splits records at newlines), at most one
/// of each of `path`, `linkpath` and `size` (readers differ on which one wins), no GNU sparse record, no
/// name over [`MAX_NAME`]; a global header sets none of them.
fn check_record<'a>(
    key: &'a [u8],
    value: &[u8],
    global: bool,
    seen: &mut Vec<&'a [u8]>,
) -> Result<(), String> {
    let k = String::from_utf8_lossy(key);
    if key.contains(&b'\n') || value.contains(&b'\n') {
        return Err(format!(
            "PAX record {k:?} holds a newline: tar readers differ on the records it hides"
        ));
    }
    if key.starts_with(b"GNU.sparse.") {
        return Err(
            "GNU sparse file (PAX format): sparse entries are not supported in an image archive"
                .into(),
        );
    }
    if matches!(key, b"path" | b"linkpath" | b"size") {
        if global {
            return Err(format!(
                "PAX global header sets {k:?}: tar readers differ on whether it applies"
            ));
        }
        if seen.contains(&key) {
            return Err(format!(
                "PAX header holds {k:?} twice: tar readers differ on which one wins"
            ));
        }
        seen.push(key);
        if key != b"size" && value.len() > MAX_NAME {
            return Err(format!(
                "PAX {k} of {} bytes is over the {MAX_NAME}-byte limit for names",
                value.len()
            ));
        }
    }
    Ok(())
}

/// One PAX record: key and value.
pub type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// PAX extension records, parsed by their length prefix as POSIX readers do (`LEN KEY=VALUE\n`, LEN
/// counting the whole record).
///
/// # Errors
/// A reason for a record whose length, key or terminating newline is malformed.
pub fn pax_records(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("malformed PAX record: no length")?;
        let len: usize = std::str::from_utf8(data.get(..space).unwrap_or_default())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("malformed PAX record: bad length")?;
        let record = data
            .get(..len)
            .filter(|r| r.len() > space + 1 && r.last() == Some(&b'\n'))
            .ok_or("malformed PAX record: its length runs past the header or misses its newline")?;
        let body = record.get(space + 1..len - 1).unwrap_or_default();
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("malformed PAX record: no '='")?;
        let (key, value) = body.split_at(eq);
        out.push((key, value.get(1..).unwrap_or_default()));
        data = data.get(len..).unwrap_or_default();
    }
    Ok(out)
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(buf.get(..n).unwrap_or(buf))?;
        Ok(n)
    }
}

impl<R: Seek> Seek for TarGuard<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = self.inner.seek(to)?;
        self.pos = pos;
        // The tar reader seeks only to skip an entry's data to the next header.
        match &self.state {
            GuardState::Data { next, .. } if pos == *next => self.data_done()?,
            GuardState::Data { next, ext: None } if pos < *next => {}
            GuardState::Header { filled: 0, .. } | GuardState::Off => {}
            _ => self.state = GuardState::Off,
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_follow_the_length_prefix() {
        let data = b"27 comment=a\n13 path=evil\n\n13 path=good\n";
        let recs = pax_records(data).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].0, b"comment");
        assert_eq!(recs[1], (b"path".as_slice(), b"good".as_slice()));
        assert!(pax_records(b"99 path=x\n").is_err());
        assert!(pax_records(b"9 pathx\n").is_err());
        assert!(pax_records(b"x path=y\n").is_err());
    }
}
