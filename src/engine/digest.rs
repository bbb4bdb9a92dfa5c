//! Content digests: a parsed `Digest` (`sha256:<64 hex>` or `sha512:<128 hex>`), and a copier that hashes
//! and counts bytes as they stream through, then checks digest and size before anything is trusted.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::Digest as _;

use super::error::{Error, Result};

/// Size of the buffer used to stream blobs: 256 KiB chunks keep the chunks in flight within L2 (measured
/// 13 % faster loads than 1 MiB, benches/README.md).
pub const COPY_BUFFER: usize = 256 << 10;

/// A hash algorithm ocitar can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256 (`sha256:` and 64 hex digits).
    Sha256,
    /// SHA-512 (`sha512:` and 128 hex digits).
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in digests and blob directories.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The digest of `bytes` with this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }

    /// A fresh hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher {
                state: State::Sha256(sha2::Sha256::new()),
                len: 0,
            },
            Algorithm::Sha512 => Hasher {
                state: State::Sha512(sha2::Sha512::new()),
                len: 0,
            },
        }
    }
}

/// A parsed, validated content digest, held as the hash's raw bytes: a sha256 digest inline (no heap
/// allocation, 40 bytes in all), a sha512 one boxed. Equality, hashing and order are those of the bytes,
/// and bytes order as their lowercase hex does, so digests sort as `<alg>:<hex>` and as the blob names
/// `blobs/<alg>/<hex>` of an archive (sha256 before sha512).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(Bytes);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Bytes {
    Sha256([u8; 32]),
    Sha512(Box<[u8; 64]>),
}

impl Digest {
    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Bytes::Sha256(_) => Algorithm::Sha256,
            Bytes::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The hash's raw bytes (32 or 64).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Bytes::Sha256(b) => b,
            Bytes::Sha512(b) => &b[..],
        }
    }

    /// The lowercase hex encoding, formatted on the stack (it derefs to `&str`).
    pub fn hex(&self) -> Hex {
        let mut out = Hex {
            buf: [0; 128],
            len: 0,
        };
        for (pair, b) in out.buf.chunks_exact_mut(2).zip(self.as_bytes()) {
            pair.copy_from_slice(&[hex_digit(b >> 4), hex_digit(b & 15)]);
            out.len += 2;
        }
        out
    }

    /// The path of this blob inside a layout: `blobs/<alg>/<hex>`.
    pub fn blob_name(&self) -> String {
        self.blob_name_display().to_string()
    }

    /// [`Digest::blob_name`], written where it is displayed (no string made).
    pub fn blob_name_display(&self) -> impl fmt::Display + '_ {
        struct BlobName<'a>(&'a Digest);
        impl fmt::Display for BlobName<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "blobs/{}/{}", self.0.algorithm().name(), self.0.hex())
            }
        }
        BlobName(self)
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Algorithm::Sha256.digest(bytes)
    }

    /// Parse `<alg>` and `<hex>` as found in a blob path (`blobs/<alg>/<hex>`).
    ///
    /// # Errors
    /// The same as [`Digest::from_str`].
    pub fn from_parts(alg: &str, hex: &str) -> Result<Digest> {
        parse_parts(alg, hex).map_err(|why| invalid(&format!("{alg}:{hex}"), &why))
    }
}

/// The lowercase hex of a [`Digest`], on the stack: a `&str` by `Deref`, a path component by `AsRef`.
#[derive(Clone, Copy)]
pub struct Hex {
    buf: [u8; 128],
    len: usize,
}

impl std::ops::Deref for Hex {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever written into `buf`.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl AsRef<std::path::Path> for Hex {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&**self)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The lowercase hex digit of a nibble (0–15).
fn hex_digit(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + (n - 10)
    }
}

fn invalid(s: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("invalid digest {s:?}: {why}"))
}

/// The bytes of `hex` (lowercase, of `alg`'s length), or why not.
fn parse_parts(alg: &str, hex: &str) -> std::result::Result<Digest, String> {
    let algorithm = match alg {
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => return Err("unsupported algorithm (sha256 and sha512 are supported)".into()),
    };
    if hex.len() != algorithm.hex_len() {
        return Err(format!(
            "{alg} needs {} hex digits, found {}",
            algorithm.hex_len(),
            hex.len()
        ));
    }
    let mut bytes = [0u8; 64];
    for (out, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        match pair {
            [hi, lo] => *out = (nibble(*hi)? << 4) | nibble(*lo)?,
            _ => return Err("hex must be lowercase 0-9a-f".into()),
        }
    }
    Ok(Digest::from_raw(algorithm, &bytes))
}

fn nibble(c: u8) -> std::result::Result<u8, String> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err("hex must be lowercase 0-9a-f".into()),
    }
}

impl Digest {
    /// A digest of `algorithm` from the first 32 or 64 bytes of `raw` (zeros where it is shorter).
    fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Digest {
        match algorithm {
            Algorithm::Sha256 => {
                let mut b = [0u8; 32];
                b.iter_mut().zip(raw).for_each(|(o, i)| *o = *i);
                Digest(Bytes::Sha256(b))
            }
            Algorithm::Sha512 => {
                let mut b = Box::new([0u8; 64]);
                b.iter_mut().zip(raw).for_each(|(o, i)| *o = *i);
                Digest(Bytes::Sha512(b))
            }
        }
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Parse `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the string when the algorithm is unknown or the hex is not
    /// lowercase hex of the right length. Callers that read archives re-wrap it as an archive error.
    fn from_str(s: &str) -> Result<Digest> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid(s, "expected <algorithm>:<hex>"))?;
        parse_parts(alg, hex).map_err(|why| invalid(s, &why))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm().name())?;
        f.write_str(":")?;
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digest")
            .field("algorithm", &self.algorithm())
            .field("hex", &self.hex())
            .finish()
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An incremental hasher of either algorithm that counts the bytes it is fed: what it finishes into is
/// a digest and a size proven by those bytes ([`Hasher::verify`], [`Hasher::into_verified`]).
#[derive(Clone)]
pub struct Hasher {
    state: State,
    len: u64,
}

#[derive(Clone)]
enum State {
    /// SHA-256 (SHA-NI where the CPU has it).
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self.state {
            State::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            State::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
    }

    /// The digest and size of what was fed, for content whose digest is learned by hashing it (a Docker
    /// archive's layer named by path).
    pub fn into_verified(self) -> Verified {
        let size = self.len;
        Verified {
            digest: self.finish(),
            size,
        }
    }

    /// What was fed, checked against the digest and size expected of it.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] or [`Error::DigestMismatch`] naming `expected` and `location`.
    pub fn verify(self, expected: &Digest, size: u64, location: &str) -> Result<Verified> {
        let found_size = self.len;
        let found = self.finish();
        check(expected, size, &found, found_size, location)?;
        Ok(Verified {
            digest: found,
            size: found_size,
        })
    }
}

/// A digest and a size proven by bytes that were hashed and counted. Only a [`Hasher`] makes one (its
/// fields are private and it has no other constructor), so a `Verified` in hand means the content was
/// read: the store stages and commits, and the registry push commits an upload, only with one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    digest: Digest,
    size: u64,
}

impl Verified {
    /// The digest the bytes hash to.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// How many bytes there were.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether these are the bytes a descriptor names (digest and size), else the error naming
    /// `location`.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] or [`Error::DigestMismatch`].
    pub fn matches(&self, expected: &Digest, size: u64, location: &str) -> Result<()> {
        check(expected, size, &self.digest, self.size, location)
    }
}

/// Check a digest and size that were measured against the ones expected.
///
/// # Errors
/// [`Error::SizeMismatch`] or [`Error::DigestMismatch`] naming `expected` and `location`.
pub fn check(
    expected: &Digest,
    size: u64,
    found: &Digest,
    found_size: u64,
    location: &str,
) -> Result<()> {
    if found_size != size {
        return Err(Error::SizeMismatch {
            digest: expected.to_string(),
            location: location.to_string(),
            expected: size,
            found: found_size.to_string(),
        });
    }
    if found != expected {
        return Err(Error::DigestMismatch {
            digest: expected.to_string(),
            location: location.to_string(),
            found: found.to_string(),
        });
    }
    Ok(())
}

/// Copy exactly the blob `expected` of `size` bytes from `reader` to `writer`, hashing while copying,
/// calling `tick(n)` after each chunk. Reads at most `size + 1` bytes, so an over-long source is caught
/// without reading it whole.
///
/// # Errors
/// [`Error::SizeMismatch`] when the source holds fewer or more bytes than `size`,
/// [`Error::DigestMismatch`] when the bytes hash to another digest, [`Error::Io`] on read or write
/// failures (naming `location` for reads and `dest` for writes).
pub fn copy_verified<R: Read, W: Write>(
    reader: R,
    writer: &mut W,
    expected: &Digest,
    size: u64,
    location: &str,
    dest: &std::path::Path,
    tick: &mut dyn FnMut(u64) -> io::Result<()>,
) -> Result<Verified> {
    let mut reader = reader.take(size.saturating_add(1));
    let mut hashing = Hashing::new(expected.algorithm().hasher(), size, dest);
    let mut total: u64 = 0;
    loop {
        let n = hashing.step(
            |buf| read_some(&mut reader, buf, location),
            |chunk| {
                total += chunk.len() as u64;
                if total > size {
                    return Err(Error::SizeMismatch {
                        digest: expected.to_string(),
                        location: location.to_string(),
                        expected: size,
                        found: format!("more than {size}"),
                    });
                }
                writer.write_all(chunk).map_err(|e| Error::io(dest, e))?;
                tick(chunk.len() as u64).map_err(|e| Error::io(dest, e))
            },
        )?;
        if n == 0 {
            break;
        }
    }
    hashing.finish()?.verify(expected, size, location)
}

/// Hashes content as it passes through in chunks: on the calling thread for small content, on a
/// second thread ([`HashPipe`]) for content of at least [`PARALLEL_HASH_MIN`] bytes, so that copying
/// large blobs costs about the slower of hashing and copying, not their sum.
pub struct Hashing<'p> {
    hasher: Hasher,
    pipe: Option<HashPipe>,
    buf: Vec<u8>,
    dest: &'p std::path::Path,
}

impl<'p> Hashing<'p> {
    /// Hash into `hasher` content expected to be `size` bytes; `dest` names the output in errors.
    pub fn new(hasher: Hasher, size: u64, dest: &'p std::path::Path) -> Hashing<'p> {
        let large = size >= PARALLEL_HASH_MIN;
        let small = usize::try_from(size)
            .unwrap_or(COPY_BUFFER)
            .clamp(8192, COPY_BUFFER);
        Hashing {
            pipe: large.then(|| HashPipe::new(hasher.clone())),
            hasher,
            buf: if large { Vec::new() } else { vec![0u8; small] },
            dest,
        }
    }

    /// Fill a buffer with `read`, pass the bytes read to `consume`, then hash them. Returns the number
    /// of bytes (0 at the end).
    ///
    /// # Errors
    /// Those of `read` and `consume`; [`Error::Io`] naming `dest` when the hashing thread stopped.
    pub fn step(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> Result<usize>,
        consume: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<usize> {
        let mut owned = self.pipe.as_ref().map(HashPipe::buffer);
        let buf = match owned.as_mut() {
            Some(o) => o.as_mut_slice(),
            None => self.buf.as_mut_slice(),
        };
        let n = read(buf)?.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        consume(buf.get(..n).unwrap_or_default())?;
        match (self.pipe.as_mut(), owned) {
            (Some(p), Some(o)) => p.hash(o, n).map_err(|e| Error::io(self.dest, e))?,
            _ => self.hasher.update(self.buf.get(..n).unwrap_or_default()),
        }
        Ok(n)
    }

    /// The hasher, once everything passed has been hashed.
    ///
    /// # Errors
    /// [`Error::Io`] naming `dest` when the hashing thread panicked.
    pub fn finish(self) -> Result<Hasher> {
        match self.pipe {
            Some(p) => p.finish().map_err(|e| Error::io(self.dest, e)),
            None => Ok(self.hasher),
        }
    }
}

/// A hasher on a second thread: the caller hands it filled buffers (which come back as spares) and
/// goes on reading and writing while it hashes. At most [`PIPELINE_DEPTH`] buffers wait.
pub struct HashPipe {
    to_hasher: Option<std::sync::mpsc::SyncSender<(Vec<u8>, usize)>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<Hasher>>,
}

impl HashPipe {
    /// Start hashing into `hasher` on a new thread.
    pub fn new(hasher: Hasher) -> HashPipe {
        let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_DEPTH);
        let (to_reader, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::spawn(move || {
            let mut h = hasher;
            for (buf, n) in chunks {
                h.update(buf.get(..n).unwrap_or_default());
                // The caller may be gone already (an error); then the buffer is simply dropped.
                let _ = to_reader.send(buf);
            }
            h
        });
        HashPipe {
            to_hasher: Some(to_hasher),
            spare,
            thread: Some(thread),
        }
    }

    /// A buffer of [`COPY_BUFFER`] bytes to fill: a returned one when there is one.
    pub fn buffer(&self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| vec![0u8; COPY_BUFFER])
    }

    /// Hash the first `n` bytes of `buf` (after everything handed over before).
    ///
    /// # Errors
    /// When the hashing thread has stopped (it panicked).
    pub fn hash(&mut self, buf: Vec<u8>, n: usize) -> io::Result<()> {
        match &self.to_hasher {
            Some(tx) if tx.send((buf, n)).is_ok() => Ok(()),
            _ => Err(io::Error::other("hashing thread stopped")),
        }
    }

    /// Wait for the hashing to finish and return the hasher.
    ///
    /// # Errors
    /// When the hashing thread panicked.
    pub fn finish(mut self) -> io::Result<Hasher> {
        self.to_hasher = None;
        self.thread
            .take()
            .map(std::thread::JoinHandle::join)
            .and_then(std::result::Result::ok)
            .ok_or_else(|| io::Error::other("hashing thread panicked"))
    }
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        self.to_hasher = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Blobs at least this large are hashed on a second thread while they are copied.
pub const PARALLEL_HASH_MIN: u64 = 4 << 20;
/// Chunks in flight between the copying and the hashing thread.
const PIPELINE_DEPTH: usize = 8;

fn read_some<R: Read>(reader: &mut R, buf: &mut [u8], location: &str) -> Result<usize> {
    loop {
        match reader.read(buf) {
            // A reader that claims more than the buffer holds is taken at the buffer's length.
            Ok(n) => return Ok(n.min(buf.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted && e.get_ref().is_none() => continue,
            Err(e) => return Err(Error::io(location, e)),
        }
    }
}

/// Hash and count everything `reader` yields, copying it to `writer`. For content whose digest is not
/// known beforehand (Docker archive layers): the digest and size learned.
///
/// # Errors
/// [`Error::Io`] naming `location` (reads) or `dest` (writes).
pub fn copy_hashing<R: Read, W: Write>(
    mut reader: R,
    writer: &mut W,
    location: &str,
    dest: &std::path::Path,
) -> Result<Verified> {
    let mut hasher = Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && e.get_ref().is_none() => continue,
            Err(e) => return Err(Error::io(location, e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        writer.write_all(chunk).map_err(|e| Error::io(dest, e))?;
    }
    Ok(hasher.into_verified())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_formats_sha256_and_sha512() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.blob_name(), format!("blobs/sha256/{}", &EMPTY[7..]));
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(
            long.parse::<Digest>().unwrap().algorithm(),
            Algorithm::Sha512
        );
    }

    #[test]
    fn a_digest_round_trips_through_its_text_and_is_held_inline() {
        for text in [
            EMPTY.to_string(),
            Digest::sha256_of(b"x").to_string(),
            Algorithm::Sha512.digest(b"x").to_string(),
            format!("sha512:{}", "0123456789abcdef".repeat(8)),
        ] {
            let d: Digest = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
            let (alg, hex) = text.split_once(':').unwrap();
            assert_eq!(&*d.hex(), hex);
            assert_eq!(d.algorithm().name(), alg);
            assert_eq!(d.as_bytes().len() * 2, hex.len());
            assert_eq!(Digest::from_parts(alg, hex).unwrap(), d);
            assert_eq!(d.blob_name(), format!("blobs/{alg}/{hex}"));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("{text:?}"));
        }
        // A sha256 digest is its 32 bytes and a tag: no heap string.
        assert!(std::mem::size_of::<Digest>() <= 40);
        assert_eq!(
            Algorithm::Sha512.digest(b"abc").to_string(),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn digests_order_as_their_text_and_blob_names_do() {
        let mut digests: Vec<Digest> = (0..500u32)
            .map(|i| Digest::sha256_of(&i.to_le_bytes()))
            .chain((0..50u32).map(|i| Algorithm::Sha512.digest(&i.to_le_bytes())))
            .collect();
        digests.push(
            "sha256:00000000000000000000000000000000000000000000000000000000000000ff"
                .parse()
                .unwrap(),
        );
        digests.push(
            "sha256:f000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
        );
        let mut by_text = digests.clone();
        by_text.sort_by_key(ToString::to_string);
        let mut by_name = digests.clone();
        by_name.sort_by_key(Digest::blob_name);
        digests.sort();
        assert_eq!(digests, by_text);
        assert_eq!(digests, by_name);
        assert_eq!(digests.last().unwrap().algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn parse_errors_name_the_digest_and_why() {
        let e = "sha256:ABC".parse::<Digest>().unwrap_err().to_string();
        assert!(
            e.contains("\"sha256:ABC\"") && e.contains("needs 64 hex digits, found 3"),
            "{e}"
        );
        let upper = EMPTY.replace('e', "E");
        let e = upper.parse::<Digest>().unwrap_err().to_string();
        assert!(e.contains("hex must be lowercase 0-9a-f"), "{e}");
        let e = Digest::from_parts("md5", "00").unwrap_err().to_string();
        assert!(
            e.contains("\"md5:00\"") && e.contains("unsupported algorithm"),
            "{e}"
        );
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &EMPTY.to_uppercase().replace("SHA256", "sha256"),
            &EMPTY[..EMPTY.len() - 1],
            &format!("{EMPTY}0"),
            "sha256:../../../../etc/passwd",
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
    }

    #[test]
    fn copy_verified_checks_size_and_digest() {
        let data = b"hello world";
        let d = Digest::sha256_of(data);
        let mut out = Vec::new();
        let p = std::path::Path::new("out");
        copy_verified(&data[..], &mut out, &d, 11, "src", p, &mut |_| Ok(())).unwrap();
        assert_eq!(out, data);
        let e = copy_verified(
            &data[..],
            &mut Vec::new(),
            &d,
            10,
            "src",
            p,
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
        let e = copy_verified(
            &data[..],
            &mut Vec::new(),
            &d,
            12,
            "src",
            p,
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
        let other = Digest::sha256_of(b"x");
        let e = copy_verified(
            &data[..],
            &mut Vec::new(),
            &other,
            11,
            "src",
            p,
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(e.to_string().contains("src"));
    }
}
