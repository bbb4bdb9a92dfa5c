//! Reading archives: detect compression by magic bytes, check every entry's name and type (an unsafe one
//! is refused wherever it appears), and build a table of entries. A seekable uncompressed archive is
//! indexed by offset and read later only where needed; a stream is read once, in order, its files
//! spooled into a staging directory (verified on the way when they are named by digest).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::guard::{Refused, TarGuard, MAX_NAME};
use super::table::Table;
use super::Compression;
use crate::engine::digest::{self, Digest, Verified};
use crate::engine::document::{self, MAX_DOCUMENT_BYTES};
use crate::engine::error::{Error, IoContext, Result};

/// Where an archive comes from.
pub enum Input {
    /// A file on disk (read by offset when uncompressed).
    Path(PathBuf),
    /// Bytes in memory, shared with their owner (a `Vec`, or a Python `bytes` borrowed without a copy).
    Bytes(SharedBytes),
    /// A stream (a pipe, a Python file object): read once, in order.
    Reader(Box<dyn Read + Send>),
}

/// The kind of an archive entry, after its checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic or hard link, with its target as an archive path (already resolved, inside the archive).
    Link(String),
}

/// Where an entry's bytes are. Sixteen bytes: what a stream's entries carry beside is boxed, so that
/// the table of a seekable archive (offsets only) stays small.
#[derive(Clone, Debug)]
pub enum Loc {
    /// At this offset of the seekable input.
    Offset(u64),
    /// In this spooled file, with the digest and size its content was hashed to as it was spooled
    /// (checked against the name for blobs).
    Spooled(Box<(PathBuf, Verified)>),
    /// Held in memory (a small entry of a stream), with the digest of its content as for `Spooled`.
    Memory(Box<(Arc<[u8]>, Digest)>),
    /// Read from a stream, hashed (verified against the name for blobs) and dropped: the digest its
    /// bytes hashed to, and whether they start as gzip does.
    Hashed(Box<(Digest, bool)>),
    /// No data (directories, links).
    None,
}

/// One checked archive entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// What the entry is.
    pub kind: Kind,
    /// Bytes of data the header declares.
    pub size: u64,
    /// Where those bytes are.
    pub loc: Loc,
}

/// Immutable bytes in memory, shared with whoever owns them.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

enum Data {
    File(File),
    Bytes(SharedBytes),
    Spooled,
}

/// An archive's table of entries, by normalized name (no `./` prefix, no trailing `/`); blobs by digest.
pub struct Archive {
    entries: Table,
    data: Data,
    label: String,
    /// The compression the input had.
    pub compression: Option<Compression>,
    /// Where one zero block ended the archive while more data follows it (entries no tar reader reads).
    pub lone_zero_block: Option<u64>,
}

/// Entries of a stream up to this size are held in memory rather than spooled to a file (JSON documents,
/// empty files), within [`MEMORY_BUDGET`] in all.
const MEMORY_ENTRY: u64 = 64 << 10;
/// Bytes of a stream's entries held in memory, counting [`ENTRY_OVERHEAD`] for each.
const MEMORY_BUDGET: u64 = 64 << 20;
const ENTRY_OVERHEAD: u64 = 64;

/// Where a stream's files are spooled.
pub trait Spool {
    /// A new temporary file.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    fn temp_file(&mut self) -> Result<(PathBuf, File)>;

    /// Whether to keep an entry's bytes (else they are only hashed). Default: keep everything.
    fn keep(&self, _name: &str, _size: u64) -> bool {
        true
    }
}

/// A spool in a private temporary directory, made atomically with an unpredictable name and mode 0700 under
/// `$TMPDIR`, its files created new (never through a planted link), and removed with everything in it when
/// the spool is dropped (on success or error). `documents_only` keeps just what may be a document (what
/// `inspect` and `verify` read); otherwise every entry is kept (a push into a registry needs the blobs).
pub struct TempSpool {
    dir: tempfile::TempDir,
    n: u64,
    documents_only: bool,
}

impl TempSpool {
    /// A new private directory named `<prefix><random>` in the system's temporary directory.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary directory when it cannot be made.
    pub fn new(prefix: &str, documents_only: bool) -> Result<TempSpool> {
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&tmp)
            .at(&tmp)?;
        Ok(TempSpool {
            dir,
            n: 0,
            documents_only,
        })
    }
}

impl Spool for TempSpool {
    fn temp_file(&mut self) -> Result<(PathBuf, File)> {
        self.n += 1;
        let p = self.dir.path().join(self.n.to_string());
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .at(&p)?;
        Ok((p, f))
    }

    fn keep(&self, _name: &str, size: u64) -> bool {
        !self.documents_only || size <= MAX_DOCUMENT_BYTES
    }
}

fn bad(entry: &str, reason: impl Into<String>) -> Error {
    Error::archive(shorten(entry), reason)
}

/// An entry name for a message: names longer than 300 characters (a PAX name may hold a megabyte) keep
/// their start and end.
fn shorten(name: &str) -> String {
    let chars = name.chars().count();
    if chars <= 300 {
        return name.to_string();
    }
    let head: String = name.chars().take(200).collect();
    let tail: String = name.chars().skip(chars - 80).collect();
    format!("{head}…({} characters)…{tail}", chars - 280)
}

/// Most memory a decompressor may use (xz and zstd choose their window from the stream's header; a
/// hostile header could otherwise ask for gigabytes).
pub const MAX_DECODER_MEMORY: u64 = 128 << 20;

impl Archive {
    /// Read an archive's table of entries. Seekable uncompressed input is indexed by offset (data is
    /// skipped); anything else is read once and every file spooled through `spool`.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] for malformed, truncated or unsafe archives (naming the entry),
    /// [`Error::DigestMismatch`] for a spooled blob whose bytes do not hash to its name, [`Error::Io`].
    pub fn read(input: Input, spool: &mut dyn Spool) -> Result<Archive> {
        match input {
            Input::Path(p) => {
                let mut f = crate::engine::fs::open(&p)?;
                // A pipe, FIFO or device (`load -i <(…)`, `/dev/stdin`) cannot seek: read it as a stream.
                let meta = f.metadata().at(&p)?;
                if !meta.is_file() && !meta.is_dir() {
                    return Archive::from_reader(Box::new(f), p.display().to_string(), spool);
                }
                let mut head = [0u8; 6];
                let n = read_head(&mut f, &mut head).at(&p)?;
                f.seek(SeekFrom::Start(0)).at(&p)?;
                let label = p.display().to_string();
                match Compression::sniff(head.get(..n).unwrap_or_default()) {
                    Some(c) => {
                        let (r, budget) =
                            decoded(c, Box::new(BufReader::with_capacity(1 << 20, f)))?;
                        Archive::from_stream(r, Some(c), label, spool, budget)
                    }
                    None => {
                        let len = f.metadata().at(&p)?.len();
                        let (entries, lone_zero_block) = index_seekable(&f, len, &label)?;
                        Ok(Archive {
                            entries,
                            data: Data::File(f),
                            label,
                            compression: None,
                            lone_zero_block,
                        })
                    }
                }
            }
            Input::Bytes(b) => {
                let label = "<bytes>".to_string();
                let all = (*b).as_ref();
                match Compression::sniff(all.get(..all.len().min(6)).unwrap_or_default()) {
                    Some(c) => {
                        let r: Box<dyn Read + Send> = Box::new(io::Cursor::new(ArcBytes(b)));
                        let (r, budget) = decoded(c, r)?;
                        Archive::from_stream(r, Some(c), label, spool, budget)
                    }
                    None => {
                        let len = all.len() as u64;
                        let (entries, lone_zero_block) =
                            index_seekable(io::Cursor::new(all), len, &label)?;
                        Ok(Archive {
                            entries,
                            data: Data::Bytes(b),
                            label,
                            compression: None,
                            lone_zero_block,
                        })
                    }
                }
            }
            Input::Reader(r) => Archive::from_reader(r, "<stream>".into(), spool),
        }
    }

    /// Read a stream once: sniff its compression, then read it in order.
    fn from_reader(
        mut r: Box<dyn Read + Send>,
        label: String,
        spool: &mut dyn Spool,
    ) -> Result<Archive> {
        let mut head = [0u8; 6];
        let n = read_head(&mut r, &mut head).map_err(|e| Error::io(&label, e))?;
        let chained: Box<dyn Read + Send> =
            Box::new(io::Cursor::new(head.get(..n).unwrap_or_default().to_vec()).chain(r));
        let c = Compression::sniff(head.get(..n).unwrap_or_default());
        let (reader, budget) = match c {
            Some(c) => decoded(c, chained)?,
            None => (chained, SpoolBudget::new(None)),
        };
        Archive::from_stream(reader, c, label, spool, budget)
    }

    fn from_stream(
        reader: Box<dyn Read + Send>,
        compression: Option<Compression>,
        label: String,
        spool: &mut dyn Spool,
        mut budget: SpoolBudget,
    ) -> Result<Archive> {
        let mut reader = check_stream_start(reader, compression, &label)?;
        let mut entries = Table::new();
        let lone_zero_block;
        {
            let mut ar = tar::Archive::new(TarGuard::new(&mut reader));
            let iter = ar.entries().map_err(|e| tar_error(&label, None, &e))?;
            let mut gate = Gate::new();
            let mut memory = 0u64;
            for item in iter {
                let Some((mut e, name, kind, size)) = gate.pass(item, &entries, &label)? else {
                    continue;
                };
                let loc = if kind == Kind::File {
                    let mut to = Destination {
                        spool: &mut *spool,
                        budget: &mut budget,
                        memory: &mut memory,
                    };
                    to.take(&mut e, &name, size, &label)?
                } else {
                    Loc::None
                };
                entries.insert(name, Entry { kind, size, loc });
            }
            entries.finish();
            let mut guard = ar.into_inner();
            drain(&mut guard, compression, &label)?;
            lone_zero_block = guard.lone_zero_block();
        }
        Ok(Archive {
            entries,
            data: Data::Spooled,
            label,
            compression,
            lone_zero_block,
        })
    }

    /// The file and offset holding `e`'s data, when the archive is a seekable, uncompressed file.
    pub fn file_range(&self, e: &Entry) -> Option<(&File, u64)> {
        match (&e.loc, &self.data) {
            (Loc::Offset(off), Data::File(f)) => Some((f, *off)),
            _ => None,
        }
    }

    /// A human label for messages: the path, `<bytes>` or `<stream>`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the archive is read by offset (only the needed bytes are read).
    pub fn is_seekable(&self) -> bool {
        !matches!(self.data, Data::Spooled)
    }

    /// The entry with a normalized name, links followed (at most 16 hops), and the name it was found
    /// under (`name`, or the target of the last link).
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] for a link loop.
    pub fn get<'s: 'r, 'n: 'r, 'r>(
        &'s self,
        name: &'n str,
    ) -> Result<Option<(&'r str, &'s Entry)>> {
        self.entries
            .resolve(name)
            .map_err(|at| bad(at, "link chain too long or a loop"))
    }

    /// The entry of blob `d` (`blobs/<alg>/<hex>`), found by digest.
    pub fn blob(&self, d: &Digest) -> Option<&Entry> {
        self.entries.blob(d)
    }

    /// Whether an entry exists (links not followed).
    pub fn contains(&self, name: &str) -> bool {
        self.entries.get(name).is_some()
    }

    /// Every blob entry (`blobs/<alg>/<hex>`), by digest.
    pub fn blobs(&self) -> impl Iterator<Item = (&Digest, &Entry)> {
        self.entries.blobs()
    }

    /// The name of every entry (links not followed): the blobs (`blobs/<alg>/<hex>`), then the others.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        let blobs = self.entries.blobs().map(|(d, _)| d.blob_name());
        blobs.chain(self.entries.others().map(|(n, _)| n.to_string()))
    }

    /// A reader over an entry's bytes.
    ///
    /// # Errors
    /// [`Error::Io`] when a spooled file cannot be opened.
    pub fn open(&self, e: &Entry) -> Result<Box<dyn Read + '_>> {
        match (&e.loc, &self.data) {
            (Loc::Offset(off), Data::File(f)) => Ok(Box::new(FileRange {
                file: f,
                pos: *off,
                end: off.saturating_add(e.size),
            })),
            (Loc::Offset(off), Data::Bytes(b)) => {
                let b = (**b).as_ref();
                let start = usize::try_from(*off).unwrap_or(usize::MAX).min(b.len());
                let end = usize::try_from(off.saturating_add(e.size))
                    .unwrap_or(usize::MAX)
                    .min(b.len());
                Ok(Box::new(b.get(start..end).unwrap_or(&[])))
            }
            (Loc::Spooled(s), _) => Ok(Box::new(crate::engine::fs::open(&s.0)?)),
            (Loc::Memory(m), _) => Ok(Box::new(io::Cursor::new(Arc::clone(&m.0)))),
            _ => Ok(Box::new(io::empty())),
        }
    }

    /// A JSON document's bytes (`index.json`, `manifest.json`, an index, manifest or config), refused
    /// when over [`MAX_DOCUMENT_BYTES`]; the document's other limits are checked where it is parsed
    /// ([`document::parse_document`]).
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] over the limit or when short; [`Error::Io`].
    pub fn read_small(&self, name: &str, e: &Entry) -> Result<Vec<u8>> {
        if e.size > MAX_DOCUMENT_BYTES {
            return Err(bad(name, document::over_size(e.size)));
        }
        let out = document::read_bounded(self.open(e)?.take(e.size), e.size)
            .map_err(|err| Error::io(&self.label, err))?
            .unwrap_or_default();
        if out.len() as u64 != e.size {
            return Err(bad(name, "truncated"));
        }
        Ok(out)
    }
}

struct ArcBytes(SharedBytes);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

/// A byte range of a file, read with `pread` (no shared file position).
struct FileRange<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self
            .file
            .read_at(buf.get_mut(..want).unwrap_or_default(), self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn read_head<R: Read>(r: &mut R, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match r.read(head.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Size of a tar block: every header is one.
const BLOCK: usize = 512;

/// Read the first block of a (decompressed) stream, refuse what cannot be a tar archive (a stream
/// compressed twice, a first block that is not a tar header: [`first_block_fault`]), and give the stream
/// back whole.
///
/// # Errors
/// [`Error::InvalidArchive`] naming `label`; read errors of the decompressor (a truncated stream).
fn check_stream_start(
    mut r: Box<dyn Read + Send>,
    outer: Option<Compression>,
    label: &str,
) -> Result<Box<dyn Read + Send>> {
    let mut block = vec![0u8; BLOCK];
    let n = read_head(&mut r, &mut block).map_err(|e| read_error(label, "at its start", &e))?;
    block.truncate(n);
    if let Some(outer) = outer {
        refuse_twice_compressed(&block, outer, label)?;
    }
    if let Some(reason) = first_block_fault(&block) {
        return Err(bad(label, reason));
    }
    Ok(Box::new(io::Cursor::new(block).chain(r)))
}

/// A decompressed stream that starts with another compressor's magic bytes (`head`) is refused with that
/// cause (the tar reader would report a numeric header field that is not text).
///
/// # Errors
/// [`Error::InvalidArchive`] for a stream compressed twice.
fn refuse_twice_compressed(head: &[u8], outer: Compression, label: &str) -> Result<()> {
    // A tar's first bytes are its first entry's name: "BZh…" counts as bzip2 only with a block header.
    let inner = Compression::sniff(head).filter(|c| {
        *c != Compression::Bzip2
            || (head.get(3).is_some_and(u8::is_ascii_digit)
                && head.get(4..10) == Some(&[0x31, 0x41, 0x59, 0x26, 0x53, 0x59][..]))
    });
    match inner {
        Some(inner) => Err(bad(
            label,
            format!(
                "the archive is compressed twice ({} inside {}): decompress it once, then load the result",
                inner.name(),
                outer.name()
            ),
        )),
        None => Ok(()),
    }
}

/// Whether the input's first block (`block`: at most 512 bytes, fewer when the input ends sooner) can
/// start a tar archive; `Some(reason)` when it cannot. The rule: input that ends before its first block is
/// complete is "not a tar archive", unless what there is carries the ustar/GNU magic (a real archive cut
/// inside its first header: "truncated"); a complete first block is "not a tar archive" when it has
/// neither the magic nor a valid header checksum. Empty input and an all-zero block (an empty archive)
/// pass.
fn first_block_fault(block: &[u8]) -> Option<String> {
    let n = block.len();
    if n == 0 || (n == BLOCK && block.iter().all(|b| *b == 0)) {
        return None;
    }
    let magic = block.get(257..262) == Some(&b"ustar"[..]);
    if n < BLOCK {
        return Some(if magic {
            format!("truncated inside its first header ({n} of {BLOCK} bytes)")
        } else {
            format!("not a tar archive (it ends after {n} bytes, inside what would be its first {BLOCK}-byte header)")
        });
    }
    (!magic && !header_checksum_ok(block))
        .then(|| format!("not a tar archive (its first {BLOCK} bytes are not a tar header)"))
}

/// Whether a header block's checksum field (octal, at bytes 148..156) matches the sum of its bytes with
/// that field counted as spaces; unsigned or, as old tars wrote it, signed.
fn header_checksum_ok(block: &[u8]) -> bool {
    const FIELD: std::ops::Range<usize> = 148..156;
    let Some(field) = block.get(FIELD) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(field) else {
        return false;
    };
    let Ok(stated) = i64::from_str_radix(text.trim_matches([' ', '\0']), 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, b) in block.iter().enumerate() {
        let b = if FIELD.contains(&i) { b' ' } else { *b };
        unsigned += i64::from(b);
        signed += i64::from(i8::from_ne_bytes([b]));
    }
    stated == unsigned || stated == signed
}

/// The entry an I/O error carries when the guard or the spool budget refused it.
fn refused(e: &io::Error) -> Option<&Refused> {
    e.get_ref().and_then(|r| r.downcast_ref::<Refused>())
}

/// A decompressor over `r`, and the spool budget that follows how many compressed bytes it has read.
fn decoded(c: Compression, r: Box<dyn Read + Send>) -> Result<(Box<dyn Read + Send>, SpoolBudget)> {
    let raw = Arc::new(AtomicU64::new(0));
    let counted = Box::new(SharedCount {
        inner: r,
        n: Arc::clone(&raw),
    });
    Ok((decoder(c, counted)?, SpoolBudget::new(Some(raw))))
}

struct SharedCount<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for SharedCount<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

/// Least a compressed stream may spool, whatever its compression ratio.
pub const SPOOL_FLOOR: u64 = 1 << 30;
/// Most bytes a compressed stream may spool per compressed byte read beyond [`SPOOL_FLOOR`] (image
/// layers are compressed already: an archive of them compresses about 1:1, a bomb 1:1000).
pub const SPOOL_RATIO: u64 = 64;

/// How much of a stream may be spooled to files: without `OCITAR_MAX_SPOOL` (bytes), a plain stream is
/// not limited (every byte spooled is a byte sent) and a compressed one may spool [`SPOOL_FLOOR`] or
/// [`SPOOL_RATIO`] times the compressed bytes read, whichever is more; `OCITAR_MAX_SPOOL` sets a fixed
/// limit for every stream instead.
pub struct SpoolBudget {
    fixed: Option<u64>,
    raw: Option<Arc<AtomicU64>>,
    spooled: u64,
}

impl SpoolBudget {
    fn new(raw: Option<Arc<AtomicU64>>) -> SpoolBudget {
        let fixed = std::env::var("OCITAR_MAX_SPOOL")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        SpoolBudget {
            fixed,
            raw,
            spooled: 0,
        }
    }

    fn limit(&self) -> Option<u64> {
        self.fixed.or_else(|| {
            let raw = self.raw.as_ref()?.load(Ordering::Relaxed);
            Some(SPOOL_FLOOR.max(raw.saturating_mul(SPOOL_RATIO)))
        })
    }

    fn over(&self, name: &str, total: u64) -> Error {
        let why = match self.fixed {
            Some(f) => format!("the {f}-byte limit OCITAR_MAX_SPOOL sets"),
            None => format!("what a compressed stream may expand to ({SPOOL_FLOOR} bytes, or {SPOOL_RATIO} times the compressed bytes read; OCITAR_MAX_SPOOL raises it)"),
        };
        bad(
            name,
            format!(
                "spooling this entry would take the stream's spool to {total} bytes, over {why}"
            ),
        )
    }

    /// An entry of `size` bytes is about to be spooled: refused at once when it cannot fit a fixed limit.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] naming the entry and the limit.
    fn admit(&self, name: &str, size: u64) -> Result<()> {
        let total = self.spooled.saturating_add(size);
        match self.fixed {
            Some(f) if total > f => Err(self.over(name, total)),
            _ => Ok(()),
        }
    }

    /// `n` more bytes spooled.
    fn take(&mut self, name: &str, n: u64) -> Result<()> {
        self.spooled = self.spooled.saturating_add(n);
        match self.limit() {
            Some(l) if self.spooled > l => Err(self.over(name, self.spooled)),
            _ => Ok(()),
        }
    }
}

/// Where a stream's file entries go: memory (small ones, within [`MEMORY_BUDGET`]), a spool file (within
/// the [`SpoolBudget`]), or nowhere (hashed only: entries the spool does not keep).
struct Destination<'a> {
    spool: &'a mut dyn Spool,
    budget: &'a mut SpoolBudget,
    memory: &'a mut u64,
}

impl Destination<'_> {
    /// Read a file entry of `size` bytes, hashing it (against its name for blobs), into its place.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when short or over a limit, [`Error::DigestMismatch`], [`Error::Io`].
    fn take<R: Read>(&mut self, e: &mut R, name: &str, size: u64, label: &str) -> Result<Loc> {
        let expected = blob_digest(name);
        let alg = expected
            .as_ref()
            .map_or(digest::Algorithm::Sha256, Digest::algorithm);
        let keep = self.spool.keep(name, size) && may_be_needed(name);
        let in_memory = keep
            && size <= MEMORY_ENTRY
            && self.memory.saturating_add(size + ENTRY_OVERHEAD) <= MEMORY_BUDGET;
        let at = (name, Path::new(name));
        let (path, held, (found, gzip)) = if in_memory {
            *self.memory += size + ENTRY_OVERHEAD;
            let mut held = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            let copied = copy_hash_into(e, &mut held, alg, size, at, label)?;
            (None, Some(held), copied)
        } else if keep {
            self.budget.admit(name, size)?;
            let (path, file) = self.spool.temp_file()?;
            let mut w = Budgeted {
                inner: file,
                budget: &mut *self.budget,
                name,
            };
            let copied = copy_hash_into(e, &mut w, alg, size, (name, &path), label)?;
            (Some(path), None, copied)
        } else {
            let copied = copy_hash_into(e, &mut io::sink(), alg, size, at, label)?;
            (None, None, copied)
        };
        if found.size() != size {
            return Err(bad(
                name,
                format!(
                    "truncated: header says {size} bytes, found {}",
                    found.size()
                ),
            ));
        }
        if let Some(d) = &expected {
            found.matches(d, size, &format!("{label}:{name}"))?;
        }
        Ok(match (path, held) {
            (Some(p), _) => Loc::Spooled(Box::new((p, found))),
            (None, Some(buf)) => Loc::Memory(Box::new((buf.into(), found.digest().clone()))),
            (None, None) => Loc::Hashed(Box::new((found.digest().clone(), gzip))),
        })
    }
}

/// A spool file's writer that counts what it writes against the stream's [`SpoolBudget`].
struct Budgeted<'a, W> {
    inner: W,
    budget: &'a mut SpoolBudget,
    name: &'a str,
}

impl<W: io::Write> io::Write for Budgeted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(Error::InvalidArchive { entry, reason }) =
            self.budget.take(self.name, buf.len() as u64)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Refused { entry, reason },
            ));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether an image could need an entry, so that a stream spools it: a blob (`blobs/<alg>/<hex>`), a
/// file at the root (`index.json`, `manifest.json`, `oci-layout`, `repositories`, a Docker archive's
/// config `<hex>.json` or layer `<hex>.tar`) or a Docker archive's `<id>/layer.tar`. Other entries are
/// hashed as they pass and not kept.
fn may_be_needed(name: &str) -> bool {
    blob_digest(name).is_some()
        || !name.contains('/')
        || name
            .split_once('/')
            .is_some_and(|(dir, file)| !dir.is_empty() && file == "layer.tar")
}

fn decoder(c: Compression, r: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> {
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(r)
                .map_err(|e| bad("<archive>", format!("zstd: {e}")))?;
            // 2^27 = MAX_DECODER_MEMORY: frames that need a larger window are refused.
            d.window_log_max(27)
                .map_err(|e| bad("<archive>", format!("zstd: {e}")))?;
            Box::new(d)
        }
        Compression::Xz => {
            let stream = xz2::stream::Stream::new_stream_decoder(
                MAX_DECODER_MEMORY,
                xz2::stream::CONCATENATED,
            )
            .map_err(|e| bad("<archive>", format!("xz: {e}")))?;
            Box::new(xz2::read::XzDecoder::new_stream(r, stream))
        }
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
    })
}

/// The error for a failure of the tar reader (or the decompressor below it) in `label`, after the entry
/// `last` (`None`: at the first header).
fn tar_error(label: &str, last: Option<&str>, e: &io::Error) -> Error {
    let at = match last {
        Some(name) => format!("after entry {:?}", shorten(name)),
        None => {
            if let Some(reason) = not_a_tar(e) {
                return bad(label, reason);
            }
            "at its first header".to_string()
        }
    };
    read_error(label, &at, e)
}

/// Plain words for a first header whose numeric fields are not numbers (it passed
/// [`first_block_fault`] on its magic or checksum alone): the tar reader's own message would quote the
/// input's bytes.
fn not_a_tar(e: &io::Error) -> Option<&'static str> {
    if refused(e).is_some() {
        return None;
    }
    e.to_string()
        .contains("numeric field")
        .then_some("not a tar archive (its first 512 bytes are not a tar header)")
}

/// The error for a read failure in `label` (an archive or an entry) at the place `at` describes.
fn read_error(label: &str, at: &str, e: &io::Error) -> Error {
    if let Some(r) = refused(e) {
        return bad(&r.entry, r.reason.clone());
    }
    let msg = e.to_string();
    let reason = if msg.contains("too much memory") || msg.contains("memory limit") {
        format!("the compressed stream needs a decoder window over the {MAX_DECODER_MEMORY}-byte limit {at} ({msg})")
    } else if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("unexpected EOF")
        || msg.contains("failed to fill whole buffer")
        || msg.contains("failed to read entire block")
    {
        format!("truncated archive {at} ({msg})")
    } else {
        format!("not a readable tar archive {at} ({msg})")
    };
    bad(label, reason)
}

/// Copy `r` (an entry whose header says `size` bytes) into `w`, hashing with `alg`; returns the digest,
/// the byte count and whether the content starts like gzip. Large entries are hashed on a second thread
/// while copied.
fn copy_hash_into<R: Read, W: io::Write>(
    r: &mut R,
    w: &mut W,
    alg: digest::Algorithm,
    size: u64,
    (name, path): (&str, &Path),
    label: &str,
) -> Result<(Verified, bool)> {
    let mut head: Vec<u8> = Vec::with_capacity(2);
    let mut hashing = digest::Hashing::new(alg.hasher(), size, path);
    loop {
        let k = hashing.step(
            |b| loop {
                match r.read(b) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let at = format!("inside entry {:?}", shorten(name));
                        return Err(read_error(label, &at, &e));
                    }
                    Ok(k) => return Ok(k),
                }
            },
            |chunk| {
                if head.len() < 2 {
                    head.extend(chunk.iter().take(2 - head.len()));
                }
                w.write_all(chunk).map_err(|e| match refused(&e) {
                    Some(r) => bad(&r.entry, r.reason.clone()),
                    None => Error::io(path, e),
                })
            },
        )?;
        if k == 0 {
            break;
        }
    }
    Ok((hashing.finish()?.into_verified(), head == [0x1f, 0x8b]))
}

/// The digest a blob entry's name declares (`blobs/<alg>/<hex>`).
pub fn blob_digest(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Digest::from_parts(alg, hex).ok()
}

/// Most entries an archive may hold by default (an image archive holds one per blob, and a few more):
/// beyond it the table of entries would grow without bound. An entry costs at most about 200 bytes of
/// that table (a blob ~90 bytes: its digest and [`Entry`] in the sorted vector of [`Table`]; any other
/// entry its name and a map node), so the default bounds it near 50 MiB and admits ~12,000 images of 4 platforms x 3 layers (21 blobs each). `save` refuses an
/// archive over the same limit, so that what it writes is read back.
pub const MAX_ENTRIES: usize = 1 << 18;
/// The environment variable that sets the entry limit (for save, load, inspect and verify alike).
pub const MAX_ENTRIES_VAR: &str = "OCITAR_MAX_ENTRIES";

/// The entry limit in force: [`MAX_ENTRIES_VAR`] when set to a positive integer, else [`MAX_ENTRIES`].
pub fn max_entries() -> usize {
    std::env::var(MAX_ENTRIES_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_ENTRIES)
}

/// How the entry limit is named in messages: its value, and how to raise it.
pub fn entry_limit_text(limit: usize) -> String {
    format!("the limit of {limit} entries ({MAX_ENTRIES_VAR} raises it; default {MAX_ENTRIES}, about 200 bytes of memory each)")
}
/// Bytes of entry names and table entries kept per archive, for each entry the limit admits: an entry
/// costs its names and [`ENTRY_COST`], and a sha256 blob's 205 bytes fit with room for longer names.
pub const METADATA_PER_ENTRY: u64 = 256;
/// What an entry of the table costs beside its names (map node and [`Entry`]).
pub const ENTRY_COST: u64 = 128;

/// Most bytes of names and entries kept for `limit` entries (64 MiB at the default limit).
pub fn max_metadata(limit: usize) -> u64 {
    (limit as u64).saturating_mul(METADATA_PER_ENTRY)
}

/// Drain what follows the end-of-archive marker so a pipe's writer is not cut off, and so that a
/// compressed stream's own check (gzip's CRC-32 and length trailer, xz's and zstd's checksums) is read
/// and verified, as `gzip -t` does; a bounded amount, since a decompressor can expand a few bytes of
/// trailing garbage to terabytes. Trailing bytes that do not start another gzip member are ignored, as
/// gzip does.
///
/// # Errors
/// [`Error::InvalidArchive`] when the compressed stream is corrupt or cut short after the archive's end.
fn drain<R: Read>(r: &mut R, compression: Option<Compression>, label: &str) -> Result<()> {
    let res = io::copy(&mut r.take(MAX_TRAILING), &mut io::sink());
    match (res, compression) {
        (Err(e), Some(c)) if e.to_string() != "invalid gzip header" => Err(bad(
            label,
            format!(
                "the {} stream is corrupt after the archive's end ({e}): its trailer does not check",
                c.name()
            ),
        )),
        _ => Ok(()),
    }
}

/// Most bytes read (decompressed) after the end-of-archive marker of a stream.
const MAX_TRAILING: u64 = 16 << 20;

/// Whether a new entry goes into the table: `false` for a directory listed again.
///
/// # Errors
/// [`Error::InvalidArchive`] for a name listed twice (other than a directory), past `limit` entries
/// ([`max_entries`]) and past [`max_metadata`] bytes of names and entries kept (`kept` counts them).
fn admit(entries: &Table, kept: &mut u64, name: &str, kind: &Kind, limit: usize) -> Result<bool> {
    if let Some(prev) = entries.listed(name) {
        if prev.kind == Kind::Dir && *kind == Kind::Dir {
            return Ok(false);
        }
        return Err(bad(
            name,
            "duplicate entry (the archive holds this name twice)",
        ));
    }
    if entries.len() >= limit {
        return Err(bad(
            name,
            format!(
                "the archive holds more entries than {}",
                entry_limit_text(limit)
            ),
        ));
    }
    let link = match kind {
        Kind::Link(t) => t.len(),
        _ => 0,
    };
    *kept = kept.saturating_add((name.len() + link) as u64 + ENTRY_COST);
    if *kept > max_metadata(limit) {
        return Err(bad(
            name,
            format!(
                "the archive's entry names and metadata pass the {}-byte limit (after {} entries; {METADATA_PER_ENTRY} bytes for each entry of {})",
                max_metadata(limit),
                entries.len(),
                entry_limit_text(limit)
            ),
        ));
    }
    Ok(true)
}

/// The table of a seekable archive, and where a lone zero block ended it.
type Indexed = (Table, Option<u64>);

fn index_seekable<R: Read + Seek>(mut r: R, len: u64, label: &str) -> Result<Indexed> {
    let mut block = [0u8; BLOCK];
    let n = read_head(&mut r, &mut block).map_err(|e| Error::io(label, e))?;
    if let Some(reason) = first_block_fault(block.get(..n).unwrap_or_default()) {
        return Err(bad(label, reason));
    }
    r.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(label, e))?;
    let mut entries = Table::new();
    let mut ar = tar::Archive::new(TarGuard::new(r));
    let iter = ar
        .entries_with_seek()
        .map_err(|e| tar_error(label, None, &e))?;
    let mut gate = Gate::new();
    for item in iter {
        let Some((e, name, kind, size)) = gate.pass(item, &entries, label)? else {
            continue;
        };
        let loc = if kind == Kind::File {
            let off = e.raw_file_position();
            if off.checked_add(size).is_none_or(|end| end > len) {
                return Err(bad(
                    &name,
                    format!("truncated: entry of {size} bytes runs past the end of the archive"),
                ));
            }
            Loc::Offset(off)
        } else {
            Loc::None
        };
        entries.insert(name, Entry { kind, size, loc });
    }
    entries.finish();
    // The block after the end-of-archive block, through the guard: is it a lone zero block?
    let mut guard = ar.into_inner();
    let _ = io::copy(&mut (&mut guard).take(512), &mut io::sink());
    Ok((entries, guard.lone_zero_block()))
}

/// A tar entry [`Gate::pass`] let through, with its name, kind and size.
type Passed<'a, R> = (tar::Entry<'a, R>, String, Kind, u64);

/// What both table builders check of each tar entry before they record it, in order: the tar reader's
/// error (naming the last entry read), a global header, the entry's own checks ([`check_entry`]) and its
/// admission into the table ([`admit`]).
struct Gate {
    last: Option<String>,
    kept: u64,
    limit: usize,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            last: None,
            kept: 0,
            limit: max_entries(),
        }
    }

    /// The entry `item` with its name, kind and size; `None` for one the table does not record.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] from the tar reader or any check.
    fn pass<'a, R: Read>(
        &mut self,
        item: io::Result<tar::Entry<'a, R>>,
        entries: &Table,
        label: &str,
    ) -> Result<Option<Passed<'a, R>>> {
        let mut e = item.map_err(|e| tar_error(label, self.last.as_deref(), &e))?;
        read_global_header(&mut e, label)?;
        let Some((name, kind, size)) = check_entry(&e)? else {
            return Ok(None);
        };
        self.last = Some(name.clone());
        if !admit(entries, &mut self.kept, &name, &kind, self.limit)? {
            return Ok(None);
        }
        Ok(Some((e, name, kind, size)))
    }
}

/// Normalize an entry or link path: strip `./`, refuse absolute paths, `..`, empty or non-UTF-8 names.
fn normalize(raw: &[u8], what: &str) -> Result<Option<String>> {
    let Ok(s) = std::str::from_utf8(raw) else {
        return Err(bad(
            &String::from_utf8_lossy(raw),
            format!("{what} is not valid UTF-8"),
        ));
    };
    if s.starts_with('/') {
        return Err(bad(s, format!("{what} is an absolute path")));
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad(s, format!("{what} contains '..'"))),
            c if c.contains('\0') => return Err(bad(s, format!("{what} contains a NUL byte"))),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

/// Resolve a symlink target relative to the link's directory, inside the archive.
fn resolve_link(link: &str, target: &[u8]) -> Result<String> {
    let Ok(t) = std::str::from_utf8(target) else {
        return Err(bad(link, "link target is not valid UTF-8"));
    };
    if t.starts_with('/') {
        return Err(bad(link, format!("link target {t:?} is an absolute path")));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(bad(link, format!("link target {t:?} leaves the archive")));
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad(link, format!("link target {t:?} is the archive root")));
    }
    Ok(parts.join("/"))
}

/// Read a PAX global header's records through the guard, which checks them (the tar reader would skip
/// them, by seeking when it can).
///
/// # Errors
/// [`Error::InvalidArchive`] for records the guard refuses or a short read.
fn read_global_header<R: Read>(e: &mut tar::Entry<'_, R>, label: &str) -> Result<()> {
    if e.header().entry_type().is_pax_global_extensions() {
        io::copy(e, &mut io::sink())
            .map_err(|err| read_error(label, "inside a PAX global header", &err))?;
    }
    Ok(())
}

/// Check one entry: its name, its type, and where blobs and the layout files may be. Returns `None` for
/// entries to ignore (the root directory, PAX global headers).
///
/// # Errors
/// [`Error::InvalidArchive`] naming the entry: see [`entry_name`], [`entry_kind`] and [`check_place`].
fn check_entry<R: Read>(e: &tar::Entry<'_, R>) -> Result<Option<(String, Kind, u64)>> {
    let et = e.header().entry_type();
    if et.is_pax_global_extensions() {
        return Ok(None);
    }
    let Some(name) = entry_name(&e.path_bytes(), et.is_dir())? else {
        return Ok(None);
    };
    let kind = entry_kind(e, et, &name)?;
    let size = e.size();
    check_place(&name, &kind, size)?;
    Ok(Some((name, kind, size)))
}

/// An entry's name, normalized; `None` for the root directory.
///
/// # Errors
/// [`Error::InvalidArchive`] for a name over [`MAX_NAME`] bytes, one [`normalize`] refuses, or an empty
/// name on anything but a directory.
fn entry_name(raw: &[u8], is_dir: bool) -> Result<Option<String>> {
    if raw.len() > MAX_NAME {
        return Err(bad(
            &String::from_utf8_lossy(raw),
            format!(
                "entry name of {} bytes is over the {MAX_NAME}-byte limit",
                raw.len()
            ),
        ));
    }
    match normalize(raw, "entry name")? {
        Some(name) => Ok(Some(name)),
        None if is_dir => Ok(None),
        None => Err(bad(
            &String::from_utf8_lossy(raw),
            "entry has an empty name",
        )),
    }
}

/// What an entry is: a file, a directory, or a link (its target resolved inside the archive).
///
/// # Errors
/// [`Error::InvalidArchive`] naming the entry for a link without a target or pointing outside, devices,
/// FIFOs, GNU sparse files and any other type.
fn entry_kind<R: Read>(e: &tar::Entry<'_, R>, et: tar::EntryType, name: &str) -> Result<Kind> {
    if et.is_file() || et == tar::EntryType::Continuous {
        Ok(Kind::File)
    } else if et.is_dir() {
        Ok(Kind::Dir)
    } else if et.is_symlink() {
        let target = e
            .link_name_bytes()
            .ok_or_else(|| bad(name, "symlink without a target"))?;
        Ok(Kind::Link(resolve_link(name, &target)?))
    } else if et.is_hard_link() {
        let target = e
            .link_name_bytes()
            .ok_or_else(|| bad(name, "hard link without a target"))?;
        let t = normalize(&target, "hard link target")
            .map_err(|err| match err {
                Error::InvalidArchive { entry, reason } => {
                    bad(name, format!("{reason} ({entry:?})"))
                }
                other => other,
            })?
            .ok_or_else(|| bad(name, "hard link to the archive root"))?;
        Ok(Kind::Link(t))
    } else if et.is_character_special() || et.is_block_special() || et.is_fifo() {
        Err(bad(
            name,
            "device or fifo entries are not allowed in an image archive",
        ))
    } else if et.is_gnu_sparse() {
        Err(bad(
            name,
            "GNU sparse file (type 'S'): sparse entries are not supported in an image archive",
        ))
    } else {
        Err(bad(
            name,
            format!(
                "unsupported entry type {:?} (only files, directories and links are allowed)",
                char::from(et.as_byte())
            ),
        ))
    }
}

/// Where an entry may be: below `blobs/` only `blobs/<alg>/` directories and `blobs/<alg>/<hex>` regular
/// files of a known algorithm; the layout files (`index.json`, `manifest.json`, `oci-layout`,
/// `repositories`) regular files within the document size limit.
///
/// # Errors
/// [`Error::InvalidArchive`] naming the entry.
fn check_place(name: &str, kind: &Kind, size: u64) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.first() == Some(&"blobs") {
        match parts.as_slice() {
            [_] | [_, _] if *kind != Kind::Dir => return Err(bad(name, "expected a directory")),
            [_, alg] if !matches!(*alg, "sha256" | "sha512") => {
                return Err(bad(
                    name,
                    format!("unknown digest algorithm {alg:?} (sha256 and sha512 are supported)"),
                ))
            }
            [_, alg, hex] => {
                if *kind != Kind::File {
                    return Err(bad(name, "a blob must be a regular file (links, directories and devices are refused)"));
                }
                Digest::from_parts(alg, hex)
                    .map_err(|err| bad(name, format!("not a blob name: {err}")))?;
            }
            [_, _, _, _, ..] => return Err(bad(name, "unexpected path below blobs/<alg>/")),
            _ => {}
        }
    }
    if matches!(
        name,
        "index.json" | "manifest.json" | "oci-layout" | "repositories"
    ) {
        if *kind != Kind::File {
            return Err(bad(name, "must be a regular file"));
        }
        if size > MAX_DOCUMENT_BYTES {
            return Err(bad(name, document::over_size(size)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_block_tells_not_a_tar_from_truncated() {
        let mut header = tar::Header::new_ustar();
        header.set_path("oci-layout").unwrap();
        header.set_size(0);
        header.set_cksum();
        let real = header.as_bytes().to_vec();
        assert_eq!(first_block_fault(&real), None);
        assert_eq!(first_block_fault(&[]), None, "empty input: no entries");
        assert_eq!(first_block_fault(&[0u8; BLOCK]), None, "an empty archive");
        let short = first_block_fault(b"hello\n").unwrap();
        assert!(
            short.starts_with("not a tar archive") && short.contains("6 bytes"),
            "{short}"
        );
        let cut = first_block_fault(&real[..300]).unwrap();
        assert!(cut.starts_with("truncated"), "{cut}");
        assert!(first_block_fault(&[b'x'; BLOCK])
            .unwrap()
            .starts_with("not a tar archive"));
        // A v7 header (no magic) passes on its checksum; break the checksum and it is not a tar.
        let mut v7 = real.clone();
        v7[257..265].fill(0);
        v7[148..156].fill(b' ');
        let sum: u32 = v7.iter().map(|b| u32::from(*b)).sum();
        v7[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(header_checksum_ok(&v7));
        assert_eq!(first_block_fault(&v7), None);
        v7[0] ^= 1;
        assert!(first_block_fault(&v7).is_some());
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(
            normalize(b"./blobs/sha256/", "n").unwrap().as_deref(),
            Some("blobs/sha256")
        );
        assert_eq!(normalize(b"./", "n").unwrap(), None);
        assert!(normalize(b"/etc/passwd", "n").is_err());
        assert!(normalize(b"blobs/sha256/../../x", "n").is_err());
        assert!(normalize(b"\xff\xfe", "n").is_err());
    }

    #[test]
    fn a_compressed_stream_spools_the_floor_or_its_ratio() {
        let raw = Arc::new(AtomicU64::new(1 << 20));
        let mut b = SpoolBudget {
            fixed: None,
            raw: Some(Arc::clone(&raw)),
            spooled: 0,
        };
        b.take("a", SPOOL_FLOOR).unwrap();
        let err = b.take("bomb", 1).unwrap_err().to_string();
        assert!(err.contains("OCITAR_MAX_SPOOL raises it"), "{err}");
        raw.store(1 << 30, Ordering::Relaxed);
        b.take("b", 10 << 30).unwrap();
        let plain = SpoolBudget {
            fixed: None,
            raw: None,
            spooled: 0,
        };
        assert_eq!(plain.limit(), None);
    }

    #[test]
    fn only_entries_an_image_may_need_are_spooled() {
        for n in [
            "index.json",
            "abc.json",
            "abc.tar",
            "abc/layer.tar",
            "repositories",
        ] {
            assert!(may_be_needed(n), "{n}");
        }
        let blob = format!("blobs/sha256/{}", "a".repeat(64));
        assert!(may_be_needed(&blob));
        for n in ["junk/big.bin", "abc/json", "a/b/layer.tar", "blobs/x"] {
            assert!(!may_be_needed(n), "{n}");
        }
    }

    #[test]
    fn resolves_links_inside_only() {
        assert_eq!(
            resolve_link("b/layer.tar", b"../a/layer.tar").unwrap(),
            "a/layer.tar"
        );
        assert!(resolve_link("b/layer.tar", b"../../x").is_err());
        assert!(resolve_link("b/layer.tar", b"/etc/passwd").is_err());
    }

    struct NoSpool;

    impl Spool for NoSpool {
        fn temp_file(&mut self) -> Result<(PathBuf, File)> {
            Err(Error::InvalidArgument("no spool".into()))
        }

        fn keep(&self, _name: &str, _size: u64) -> bool {
            false
        }
    }

    fn tar_with_pax(records: &[(&str, &[u8])], name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions(records.iter().copied()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    fn read(bytes: Vec<u8>, stream: bool) -> Result<Archive> {
        let input = if stream {
            Input::Reader(Box::new(io::Cursor::new(bytes)))
        } else {
            Input::Bytes(Arc::new(bytes))
        };
        Archive::read(input, &mut NoSpool)
    }

    #[test]
    fn guard_follows_pax_size_records_and_long_names() {
        let long = "d/".repeat(200) + "file";
        let bytes = tar_with_pax(
            &[("path", long.as_bytes()), ("size", b"5")],
            "short",
            b"hello",
        );
        for stream in [false, true] {
            let ar = read(bytes.clone(), stream).unwrap();
            let (_, e) = ar.get(&long).unwrap().unwrap();
            assert_eq!(e.size, 5);
        }
    }

    #[test]
    fn names_lists_blobs_by_their_entry_name_and_every_other_entry() {
        let d = Digest::sha256_of(b"blob");
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("index.json", &b"{}"[..]), (&d.blob_name(), b"blob")] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        for stream in [false, true] {
            let ar = read(bytes.clone(), stream).unwrap();
            let names: Vec<String> = ar.names().collect();
            assert_eq!(names, [d.blob_name(), "index.json".to_string()]);
            for n in &names {
                assert!(ar.get(n).unwrap().is_some(), "{n}");
            }
        }
    }

    #[test]
    fn guard_refuses_an_oversized_extension_header_before_reading_it() {
        let huge = vec![b'x'; usize::try_from(super::super::guard::MAX_EXTENSION).unwrap() + 1];
        let bytes = tar_with_pax(&[("comment", &huge)], "f", b"x");
        for stream in [false, true] {
            let r = read(bytes.clone(), stream);
            let Err(Error::InvalidArchive { entry, reason }) = r else {
                panic!("an oversized PAX header was not refused: {:?}", r.err());
            };
            assert!(!entry.is_empty());
            assert!(reason.contains("limit"), "{reason}");
        }
    }
}
