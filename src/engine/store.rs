//! The OCI image-layout store: open or create it, read `index.json`, resolve references, read blobs
//! verified, and ingest new blobs so that nothing becomes visible before it is verified.
//!
//! Durability contract (what is on disk when):
//! 1. New blobs are written to files in a private staging directory inside the store
//!    (`.ocitar-ingest-<pid>-<n>-<nanos>/`, at their blob names `<alg>/<hex>` when the digest is known
//!    before the bytes, else `tmp-<n>`), hashed and counted while written, and checked against their
//!    descriptors; writeback of a large one starts as soon as it is complete (`sync_file_range`). The
//!    load holds a `flock` on its staging directory while it runs. A crash here leaves only the staging
//!    directory, which readers ignore and the next ingest removes once its lock can be taken (the owner
//!    is gone, whatever PID namespace it ran in: no process ids are compared).
//! 2. Only when every blob of the operation is verified are they all `fsync`ed; then, under an exclusive
//!    `flock` on the store directory, `index.json` is re-read and updated in memory (a lock timeout, a
//!    malformed index, a refused update or an updated index over the size ocitar reads stops here, the
//!    store untouched), the blobs are renamed into `blobs/<alg>/<hex>` (a store without `blobs/<alg>/`
//!    gets the staging directory's `<alg>/` by one rename), and the blob directories `fsync`ed. A crash
//!    here leaves complete, unreferenced blobs: a valid store. A failure here (a blob path holding a
//!    directory, FIFO or link; a full disk while `index.json` is written) removes the blobs and
//!    directories this commit added again.
//! 3. Still under the lock, `index.json` is written to a temporary file, `fsync`ed, renamed over the old
//!    one, and the store directory `fsync`ed. Readers see the old or the new index, never a torn one, and
//!    concurrent writers lose no entry. A crash here leaves `.ocitar-ingest-<pid>-index.json.tmp` beside
//!    the old index.
//!
//! Whatever a killed process left (staging directories, temporary index files, all named
//! `.ocitar-ingest-<pid>-…`) is ignored by readers and `verify`, and removed by the next ingest: a staging
//! directory once its lock can be taken, a temporary file while the store lock is free.
//!
//! Symbolic links among the store's own files (`oci-layout`, `index.json`, `blobs/`, `blobs/<alg>/`, a
//! blob) are refused, never followed: everything ocitar reads and writes stays inside the store.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::num::NonZeroU64;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::copy::WRITEBACK_MIN;
use super::digest::{copy_verified, Algorithm, Digest, Verified, COPY_BUFFER};
use super::document::{self, parse_document, MAX_DOCUMENT_BYTES};
use super::error::{Error, IoContext, Result};
use super::fs;
use super::reference::{self, Reference, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::walk::{BlobSource, Descriptor, MT_OCI_INDEX};

/// The content of `oci-layout`.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INGEST_PREFIX: &str = ".ocitar-ingest-";
/// Most staged files an ingest `fsync`s one by one before it uses one `syncfs(2)` instead
/// ([`Ingest::sync_staged`]).
const FSYNC_EACH_MAX: usize = 64;
/// Default wait for the store lock, in seconds (`OCITAR_LOCK_TIMEOUT` overrides it).
pub const DEFAULT_LOCK_TIMEOUT: f64 = 300.0;

/// An OCI image-layout directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// A parsed `index.json` of an archive: the document (kept whole, so unknown fields survive) and its
/// entries, within every limit of [`parse_document`] (a store's own `index.json` is read by [`Entries`]).
#[derive(Clone, Debug)]
pub struct IndexFile {
    /// The whole document.
    pub json: Value,
    /// Its `manifests`, read as descriptors (`null` read as none).
    pub entries: Vec<Descriptor>,
}

impl IndexFile {
    /// Parse `index.json` bytes; `manifests: null` counts as empty.
    ///
    /// # Errors
    /// A reason string when the bytes are not a JSON object with a `manifests` array of descriptors.
    pub fn parse(bytes: &[u8]) -> std::result::Result<IndexFile, String> {
        let json = parse_document(bytes)?;
        let entries = match json.get("manifests") {
            Some(Value::Array(a)) => a
                .iter()
                .map(Descriptor::from_json)
                .collect::<std::result::Result<Vec<_>, _>>()?,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err("\"manifests\" is not an array".into()),
        };
        Ok(IndexFile { json, entries })
    }
}

/// A store's `index.json`, read to look images up and rewritten by a commit: per entry its digest, its two
/// name annotations and its JSON text, parsed into a [`Descriptor`] only when an operation takes that
/// entry ([`IndexEntry::descriptor`]), and the document's other members as JSON texts. An entry costs a
/// small record, never a tree of JSON values, so a store of 50,000 names is read in milliseconds; the
/// document's size and count of values bound it (objects are not counted, since none is built).
#[derive(Debug, Default)]
pub struct Entries {
    list: Vec<IndexEntry>,
    /// Every member of the document but `manifests` (`schemaVersion`, `mediaType`, unknown ones), as read.
    fields: BTreeMap<String, Box<str>>,
}

/// One `index.json` entry as [`Entries`] keeps it.
#[derive(Debug)]
pub struct IndexEntry {
    /// The entry's digest.
    pub digest: Digest,
    /// `io.containerd.image.name`, when the entry has one.
    pub image_name: Option<String>,
    /// `org.opencontainers.image.ref.name`, when the entry has one.
    pub ref_name: Option<String>,
    /// The entry's JSON text, as read (or as written, for an entry a commit adds).
    raw: Box<str>,
}

impl IndexEntry {
    /// The entry for a descriptor, its JSON written from the descriptor's.
    fn of(d: &Descriptor) -> IndexEntry {
        IndexEntry {
            digest: d.digest.clone(),
            image_name: d.annotation(ANNOTATION_IMAGE_NAME).map(str::to_string),
            ref_name: d.annotation(ANNOTATION_REF_NAME).map(str::to_string),
            raw: d.raw.to_string().into_boxed_str(),
        }
    }

    /// The entry as a candidate for [`pick`].
    pub fn named(&self) -> Named<'_> {
        Named {
            image_name: self.image_name.as_deref(),
            ref_name: self.ref_name.as_deref(),
            digest: &self.digest,
        }
    }

    /// The familiar names of the entry, for messages and reports.
    pub fn display_names(&self) -> Vec<String> {
        display_names(self.image_name.as_deref(), self.ref_name.as_deref())
    }

    /// The whole descriptor.
    ///
    /// # Errors
    /// A reason string when the entry is not a descriptor ([`Descriptor::from_json`]).
    pub fn descriptor(&self) -> std::result::Result<Descriptor, String> {
        let v: Value = serde_json::from_str(&self.raw).map_err(|e| e.to_string())?;
        Descriptor::from_json(&v)
    }
}

/// `index.json` as [`Entries::parse_lean`] reads it: the entries' JSON texts and the other members' texts.
struct LeanIndex {
    manifests: Option<Vec<Box<RawValue>>>,
    fields: BTreeMap<String, Box<RawValue>>,
}

impl<'de> Deserialize<'de> for LeanIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LeanIndex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<LeanIndex, A::Error> {
                let (mut manifests, mut fields) = (None, BTreeMap::new());
                // A member given twice: the last one counts, as for the whole parser.
                while let Some(k) = map.next_key::<String>()? {
                    if k == "manifests" {
                        manifests = map.next_value()?;
                    } else {
                        fields.insert(k, map.next_value()?);
                    }
                }
                Ok(LeanIndex { manifests, fields })
            }
        }
        d.deserialize_map(V)
    }
}

/// What [`Entries`] reads of an entry (the rest of [`Descriptor::from_json`]'s checks hold too: a
/// `mediaType` that is a string or null, a `size` that is a non-negative integer, string annotations).
#[derive(Deserialize)]
struct LeanEntry<'a> {
    #[serde(rename = "mediaType")]
    _media_type: Option<AnyText>,
    #[serde(borrow)]
    digest: Text<'a>,
    #[serde(rename = "size")]
    _size: u64,
    annotations: Option<Names>,
}

/// A JSON string, borrowed from the document when it has no escapes.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A JSON string, checked and dropped.
struct AnyText;

impl<'de> Deserialize<'de> for AnyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Text::deserialize(d).map(|_| AnyText)
    }
}

/// The name annotations of an entry; every other annotation is checked to be a string and skipped.
#[derive(Default)]
struct Names {
    image: Option<String>,
    reference: Option<String>,
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Names, A::Error> {
                let mut out = Names::default();
                let mut n = 0usize;
                while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
                    let Text(v) = map.next_value::<Text<'de>>()?;
                    n += 1;
                    if n > document::MAX_ANNOTATIONS {
                        return Err(serde::de::Error::custom("too many annotations"));
                    }
                    match k.as_ref() {
                        ANNOTATION_IMAGE_NAME => out.image = Some(v.into_owned()),
                        ANNOTATION_REF_NAME => out.reference = Some(v.into_owned()),
                        _ => {}
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl Entries {
    /// Read `index.json` bytes entry by entry. A document this reader does not take is read whole by
    /// [`IndexFile::parse`], whose message says what is wrong with it (or, when that reads it, whose
    /// entries are used).
    ///
    /// # Errors
    /// A reason string: over the size, depth or value limits, or not an index of descriptors.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Entries, String> {
        document::check_size_and_shape(bytes)?;
        if let Some(entries) = Entries::parse_lean(bytes) {
            return Ok(entries);
        }
        Ok(Entries::from_index(&IndexFile::parse(bytes)?))
    }

    /// The entries of the index a store holds before anything is loaded into it.
    pub fn new_index() -> Entries {
        let fields = [
            ("mediaType", format!("\"{MT_OCI_INDEX}\"")),
            ("schemaVersion", "2".to_string()),
        ];
        Entries {
            list: Vec::new(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into_boxed_str()))
                .collect(),
        }
    }

    fn parse_lean(bytes: &[u8]) -> Option<Entries> {
        let index: LeanIndex = serde_json::from_slice(bytes).ok()?;
        let mut list = Vec::new();
        for raw in index.manifests.unwrap_or_default() {
            let e: LeanEntry<'_> = serde_json::from_str(raw.get()).ok()?;
            let names = e.annotations.unwrap_or_default();
            let digest = e.digest.0.parse::<Digest>().ok()?;
            list.push(IndexEntry {
                digest,
                image_name: names.image,
                ref_name: names.reference,
                raw: raw.into(),
            });
        }
        let fields = index
            .fields
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        Some(Entries { list, fields })
    }

    /// The entries of a parsed index.
    pub fn from_index(index: &IndexFile) -> Entries {
        let fields = match index.json.as_object() {
            Some(m) => m
                .iter()
                .filter(|(k, _)| *k != "manifests")
                .map(|(k, v)| (k.clone(), v.to_string().into_boxed_str()))
                .collect(),
            None => BTreeMap::new(),
        };
        Entries {
            list: index.entries.iter().map(IndexEntry::of).collect(),
            fields,
        }
    }

    /// Every entry, in the order of the index.
    pub fn iter(&self) -> std::slice::Iter<'_, IndexEntry> {
        self.list.iter()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the index lists nothing.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The entry at `i`.
    pub fn get(&self, i: usize) -> Option<&IndexEntry> {
        self.list.get(i)
    }

    /// Add `d` as the last entry.
    pub fn push(&mut self, d: &Descriptor) {
        self.list.push(IndexEntry::of(d));
    }

    /// Take the name annotations off entry `i` (its image stays, unnamed; the rest of its JSON stays).
    ///
    /// # Errors
    /// A reason string when the entry is not a descriptor.
    pub fn unname(&mut self, i: usize) -> std::result::Result<(), String> {
        let Some(e) = self.list.get_mut(i) else {
            return Ok(());
        };
        let mut d = e.descriptor()?;
        let mut a = d.annotations.clone();
        a.remove(ANNOTATION_IMAGE_NAME);
        a.remove(ANNOTATION_REF_NAME);
        d.set_annotations(a);
        *e = IndexEntry::of(&d);
        Ok(())
    }

    /// Keep only the entries `keep` says yes to, in their order.
    pub fn retain(&mut self, keep: impl FnMut(&IndexEntry) -> bool) {
        self.list.retain(keep);
    }

    /// The document, written back: its members in key order, each entry's and member's JSON text as read
    /// with the whitespace between tokens dropped (an indented `index.json` is written compact; unknown
    /// members, annotations, key order and number spellings stay as they were).
    pub fn to_bytes(&self) -> Vec<u8> {
        let size: usize = self.list.iter().map(|e| e.raw.len() + 1).sum();
        let mut out = Vec::with_capacity(size + 256);
        let mut members: BTreeMap<&str, Option<&str>> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), Some(&**v)))
            .collect();
        members.insert("manifests", None);
        out.push(b'{');
        for (i, (k, v)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(Value::from(k).to_string().as_bytes());
            out.push(b':');
            match v {
                Some(text) => push_compact(&mut out, text),
                None => {
                    out.push(b'[');
                    for (j, e) in self.list.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        push_compact(&mut out, &e.raw);
                    }
                    out.push(b']');
                }
            }
        }
        out.push(b'}');
        out
    }

    /// The entries grouped by digest (one group per image), in the order each digest first appears.
    pub fn by_image(&self) -> Vec<Vec<&IndexEntry>> {
        group_by_image(self.list.iter())
    }

    /// The entries `names` list, grouped as [`Entries::by_image`] groups them: a repository without tag
    /// or digest (`alpine`, `ghcr.io/org/app`) lists every tag of it, as `docker image ls REPOSITORY`
    /// does (and nothing else: not an entry whose bare `ref.name` reads the same); a name with a tag or a
    /// digest, or a digest, lists the entries `save` takes it for. A name that lists nothing is not an
    /// error.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] for a name that is not a reference.
    pub fn listed(&self, names: &[String]) -> Result<Vec<Vec<&IndexEntry>>> {
        let wanted = names
            .iter()
            .map(|typed| {
                let r = Reference::parse(typed)?;
                let tagged = typed
                    .rsplit_once(':')
                    .is_some_and(|(_, t)| !t.contains('/'));
                let repository = (r.digest.is_none() && !tagged)
                    .then(|| r.repository.clone())
                    .flatten();
                Ok((typed.as_str(), r, repository))
            })
            .collect::<Result<Vec<_>>>()?;
        let lists = |e: &&IndexEntry| {
            let (image, refn) = (e.image_name.as_deref(), e.ref_name.as_deref());
            wanted
                .iter()
                .any(|(typed, r, repository)| match repository {
                    Some(repo) => {
                        image
                            .or(refn)
                            .is_some_and(|raw| reference::may_be_in(raw, repo))
                            && reference::entry_names(image, refn)
                                .iter()
                                .any(|n| n.rsplit_once(':').is_some_and(|(rp, _)| rp == repo))
                    }
                    None => reference::matches(typed, r, image, refn, &e.digest),
                })
        };
        Ok(group_by_image(self.list.iter().filter(lists)))
    }
}

/// `entries` grouped by digest (one group per image), in the order each digest first appears.
fn group_by_image<'a>(entries: impl Iterator<Item = &'a IndexEntry>) -> Vec<Vec<&'a IndexEntry>> {
    let mut out: Vec<Vec<&IndexEntry>> = Vec::new();
    let mut at: std::collections::HashMap<&Digest, usize> = std::collections::HashMap::new();
    for e in entries {
        match at.get(&e.digest).and_then(|&i| out.get_mut(i)) {
            Some(g) => g.push(e),
            None => {
                at.insert(&e.digest, out.len());
                out.push(vec![e]);
            }
        }
    }
    out
}

/// Append the JSON text `json` without the whitespace between its tokens (strings kept byte for byte).
fn push_compact(out: &mut Vec<u8>, json: &str) {
    let space = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let bytes = json.as_bytes();
    if !bytes.iter().copied().any(space) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'"' {
            let end = document::string_end(bytes, i);
            out.extend_from_slice(bytes.get(i..end).unwrap_or_default());
            i = end;
        } else {
            if !space(b) {
                out.push(b);
            }
            i += 1;
        }
    }
}

/// The reason of the [`Error::Store`] for a store that does not exist.
pub const MISSING_STORE: &str =
    "no such store (a directory holding an OCI image layout: oci-layout, index.json, blobs/)";

/// What a file that is not a regular file is, for messages: "a directory", "a FIFO", ….
pub fn kind_of(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// The familiar names of an `index.json` entry, for messages and reports.
pub fn entry_display_names(d: &Descriptor) -> Vec<String> {
    display_names(
        d.annotation(ANNOTATION_IMAGE_NAME),
        d.annotation(ANNOTATION_REF_NAME),
    )
}

/// The familiar names of an image with these name annotations.
fn display_names(image: Option<&str>, refn: Option<&str>) -> Vec<String> {
    match (image, refn) {
        (Some(n), _) => vec![reference::familiar(n)],
        (None, Some(r)) => vec![r.to_string()],
        (None, None) => vec![],
    }
}

impl Store {
    /// Open an existing store.
    ///
    /// # Errors
    /// [`Error::Store`] naming the path when `oci-layout` or `index.json` is missing (or the directory
    /// does not exist); [`Error::Io`] when they cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        let Some(meta) = fs::metadata_if_exists(&root)? else {
            return Err(Error::store(&root, MISSING_STORE));
        };
        if !meta.is_dir() {
            return Err(Error::store(
                &root,
                "not a directory (an OCI image layout needs oci-layout, index.json and blobs/)",
            ));
        }
        for f in ["oci-layout", "index.json"] {
            let p = root.join(f);
            match fs::metadata_if_exists(&p)? {
                Some(m) if m.is_file() => {}
                Some(m) => {
                    return Err(Error::store(
                        &p,
                        format!("is {}, not a regular file", kind_of(&m)),
                    ))
                }
                None => {
                    return Err(Error::store(
                        &p,
                        "missing: this directory is not an OCI image layout",
                    ))
                }
            }
        }
        check_internals(&root)?;
        Ok(Store { root })
    }

    /// A store at `path` that may not exist yet: it is created when blobs are first committed.
    ///
    /// # Errors
    /// [`Error::Store`] when `path` exists and is neither an empty directory nor an OCI image layout.
    pub fn open_or_new(path: impl AsRef<Path>) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        if let Some(meta) = fs::metadata_if_exists(&root)? {
            if !meta.is_dir() {
                return Err(Error::store(&root, "exists and is not a directory"));
            }
            // A directory that holds nothing but what an interrupted creation leaves is still new.
            let mut fresh = !fs::exists(root.join("index.json"))?;
            if fresh {
                for e in fs::read_dir(&root)? {
                    let n = e.at(&root)?.file_name();
                    let n = n.to_string_lossy();
                    fresh &= n == "oci-layout" || n == "blobs" || Store::is_ingest_dir(&n);
                }
            }
            if !fresh {
                return Store::open(&root);
            }
            check_internals(&root)?;
        }
        Ok(Store { root })
    }

    /// Whether this store is being created (no `index.json` and no `oci-layout` yet, or only the
    /// `oci-layout` an interrupted creation wrote).
    ///
    /// # Errors
    /// [`Error::Io`] naming `index.json` or `oci-layout` when they cannot be examined or read (a
    /// directory there is not "absent").
    fn creating(&self) -> Result<bool> {
        Ok(!fs::exists(self.root.join("index.json"))?
            && fs::read_if_exists(self.root.join("oci-layout"))?.is_none_or(|b| b == OCI_LAYOUT))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a blob: `blobs/<alg>/<hex>`, built only from a parsed digest.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    /// Read `index.json` entry by entry ([`Entries`]), to look images up, list them or update them; an
    /// absent one (a store not created yet) reads as [`Entries::new_index`].
    ///
    /// # Errors
    /// [`Error::Store`] when it is malformed or over [`MAX_DOCUMENT_BYTES`]; [`Error::Io`] when unreadable.
    pub fn read_entries(&self) -> Result<Entries> {
        let p = self.root.join("index.json");
        match self.index_bytes()? {
            None => Ok(Entries::new_index()),
            Some(bytes) => Entries::parse(&bytes).map_err(|r| Error::store(&p, r)),
        }
    }

    /// The bytes of `index.json`, `None` for a store not created yet.
    ///
    /// # Errors
    /// [`Error::Store`] when it is over [`MAX_DOCUMENT_BYTES`]; [`Error::Io`] when unreadable.
    fn index_bytes(&self) -> Result<Option<Vec<u8>>> {
        let p = self.root.join("index.json");
        let f = match fs::open_if_exists(&p)? {
            Some(f) => f,
            None if self.creating()? => return Ok(None),
            None => {
                return Err(Error::io(
                    &p,
                    std::io::Error::from_raw_os_error(libc::ENOENT),
                ))
            }
        };
        let size = f.metadata().at(&p)?.len();
        let Some(bytes) = document::read_bounded(f, size).at(&p)? else {
            return Err(Error::store(
                &p,
                format!(
                    "index.json is over the {MAX_DOCUMENT_BYTES}-byte limit for JSON documents"
                ),
            ));
        };
        Ok(Some(bytes))
    }

    /// The `index.json` entry a reference names; entries with the same digest count as one image. A
    /// unique digest prefix (see [`digest_prefix`]) names an image too.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when `typed` does not parse, [`Error::ImageNotFound`] (with the closest
    /// names) when nothing matches, [`Error::AmbiguousReference`] when two different images match.
    pub fn resolve(&self, index: &Entries, typed: &str) -> Result<(Reference, Descriptor)> {
        let named: Vec<Named<'_>> = index.iter().map(IndexEntry::named).collect();
        let (r, found) = match pick(typed, &named) {
            Ok(found) => found,
            Err(Error::ImageNotFound { reference, .. }) => {
                return Err(Error::ImageNotFound {
                    reference,
                    store: self.root.clone(),
                    candidates: closest(
                        typed,
                        index.iter().flat_map(IndexEntry::display_names).collect(),
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        let p = self.root.join("index.json");
        match index.list.get(found) {
            Some(entry) => Ok((r, entry.descriptor().map_err(|e| Error::store(&p, e))?)),
            None => Err(Error::store(&p, "index.json changed while read")),
        }
    }

    /// The size of blob `d` when the store has it (a regular file), `None` when it has not.
    ///
    /// # Errors
    /// [`Error::Store`] naming the path when something else is there (a directory, a FIFO, a symbolic
    /// link, a device): ocitar neither follows nor replaces it; [`Error::Io`] when it cannot be examined.
    pub fn existing_blob(&self, d: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(d);
        match fs::symlink_metadata_if_exists(&p)? {
            Some(m) if m.is_file() => Ok(Some(m.len())),
            Some(m) => Err(Error::store(
                &p,
                format!(
                    "blob {d} is {}, not a regular file (remove it; `ocitar verify` checks the store)",
                    kind_of(&m)
                ),
            )),
            None => Ok(None),
        }
    }

    /// Whether the store has a `blobs/<alg>/` directory (or anything at its path); without one, it has
    /// no blob of `alg` and each need not be looked for.
    ///
    /// # Errors
    /// [`Error::Io`] when the path cannot be examined.
    pub fn has_blob_dir(&self, alg: Algorithm) -> Result<bool> {
        Ok(fs::symlink_metadata_if_exists(self.root.join("blobs").join(alg.name()))?.is_some())
    }

    /// Open a blob for reading, checking its size against `desc` (the digest is checked by the copier).
    ///
    /// # Errors
    /// [`Error::Store`] naming the path when the blob is missing or not a regular file,
    /// [`Error::SizeMismatch`] when its size differs from the descriptor's, [`Error::Io`] when it cannot
    /// be opened.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<File> {
        self.open_blob_sized(&desc.digest, desc.size)
    }

    /// Open the blob `digest`, which must hold `size` bytes (what [`Store::open_blob`] checks, from the
    /// digest and size alone).
    ///
    /// # Errors
    /// As [`Store::open_blob`].
    pub fn open_blob_sized(&self, digest: &Digest, size: u64) -> Result<File> {
        // Looked at before opening (opening a FIFO would wait for a writer), never followed.
        if self.existing_blob(digest)?.is_none() {
            let p = self.blob_path(digest);
            return Err(Error::store(&p, format!("blob {digest} is missing")));
        }
        self.open_regular_blob(digest, size)
    }

    /// Open the blob `digest`, which [`Store::existing_blob`] found a regular file, checking its size
    /// (`O_NOFOLLOW | O_NONBLOCK`: what is there now is not followed, and does not block).
    ///
    /// # Errors
    /// As [`Store::open_blob`].
    fn open_regular_blob(&self, digest: &Digest, size: u64) -> Result<File> {
        let p = self.blob_path(digest);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p)
            .at(&p)?;
        let len = f.metadata().at(&p)?.len();
        if len != size {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                location: p.display().to_string(),
                expected: size,
                found: len.to_string(),
            });
        }
        Ok(f)
    }

    /// Take the store's exclusive lock (`flock` on its directory), waiting at most `OCITAR_LOCK_TIMEOUT`
    /// seconds (default [`DEFAULT_LOCK_TIMEOUT`]).
    ///
    /// # Errors
    /// [`Error::Store`] naming the store when the wait times out; [`Error::Io`] when it cannot be opened.
    pub fn lock(&self) -> Result<StoreLock> {
        let timeout = std::env::var("OCITAR_LOCK_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(DEFAULT_LOCK_TIMEOUT);
        let dir = fs::open(&self.root)?;
        let start = Instant::now();
        loop {
            match dir.try_lock() {
                Ok(()) => return Ok(StoreLock { _dir: dir }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::io(&self.root, e)),
            }
            if start.elapsed().as_secs_f64() >= timeout {
                return Err(Error::store(
                    &self.root,
                    format!("locked by another process for more than {timeout} s (the lock is flock(2) on this directory; OCITAR_LOCK_TIMEOUT sets the wait)"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start an ingest: a private staging directory inside the store (created with the store if needed).
    /// Staging directories left by processes that no longer run are removed first.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created.
    pub fn ingest(&self) -> Result<Ingest> {
        let created_root = if fs::exists(&self.root)? {
            None
        } else {
            let mut top = self.root.clone();
            while let Some(parent) = top.parent() {
                if parent.as_os_str().is_empty() || fs::exists(parent)? {
                    break;
                }
                top = parent.to_path_buf();
            }
            fs::create_dir_all(&self.root)?;
            Some(top)
        };
        self.remove_stale_ingests()?;
        let (dir, lock) = self.new_staging_dir()?;
        Ok(Ingest {
            store: self.clone(),
            dir,
            _lock: lock,
            staged: BTreeMap::new(),
            named_dirs: Vec::new(),
            relied: Vec::new(),
            counter: 0,
            created_root,
            committed: false,
        })
    }

    /// Create a staging directory and take the lock on it that says its load is alive (`flock` on the
    /// directory, held until the ingest ends, in whatever PID namespace it runs).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created or locked.
    fn new_staging_dir(&self) -> Result<(PathBuf, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = self
                .root
                .join(format!("{INGEST_PREFIX}{}-{n}-{nanos}", std::process::id()));
            if !fs::create_dir(&dir)? {
                continue;
            }
            // None: a cleaner took it for stale between mkdir and here: make another.
            let Some(f) = fs::open_if_exists(&dir)? else {
                continue;
            };
            // Blocking: a cleaner that took the lock first (between mkdir and here) holds it only while
            // it removes the directory.
            f.lock().at(&dir)?;
            // Still ours (a cleaner did not remove it before the lock was taken)?
            use std::os::unix::fs::MetadataExt;
            let ours = f.metadata().at(&dir)?;
            if fs::symlink_metadata_if_exists(&dir)?
                .is_some_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev())
            {
                return Ok((dir, f));
            }
        }
    }

    /// Remove what loads that are gone left: staging directories whose lock can be taken (their owner
    /// ended, whatever PID namespace it ran in), and, when the store lock is free, temporary
    /// `index.json` / `oci-layout` files (only ever written under that lock). Removal is best effort:
    /// what cannot be removed now (another cleaner got there first) is left for the next ingest.
    ///
    /// # Errors
    /// [`Error::Io`] naming the store when its directory cannot be listed.
    fn remove_stale_ingests(&self) -> Result<()> {
        let mut store_lock: Option<Option<File>> = None;
        for e in fs::read_dir(&self.root)? {
            let e = e.at(&self.root)?;
            let name = e.file_name();
            if !name.to_str().is_some_and(Store::is_ingest_dir) {
                continue;
            }
            let path = e.path();
            if e.file_type().at(&path)?.is_dir() {
                let Ok(f) = fs::open(&path) else { continue };
                if f.try_lock().is_ok() {
                    let _ = fs::remove_dir_all(&path);
                }
            } else if store_lock
                .get_or_insert_with(|| try_lock(&self.root))
                .is_some()
            {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Whether `name` (a file directly in the store) is a staging directory of an ingest.
    pub fn is_ingest_dir(name: &str) -> bool {
        name.starts_with(INGEST_PREFIX)
    }
}

impl BlobSource for Store {
    /// The size of a regular file at the blob's path; `None` when there is none, or when it cannot be
    /// examined ([`Store::existing_blob`], on the way to reading it, then fails naming the path).
    fn blob_size(&self, desc: &Descriptor) -> Option<u64> {
        fs::symlink_metadata_if_exists(self.blob_path(&desc.digest))
            .ok()
            .flatten()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    }

    fn document(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>> {
        let p = self.blob_path(&desc.digest);
        if self.existing_blob(&desc.digest)?.is_none() {
            return Ok(None);
        }
        let f = self.open_regular_blob(&desc.digest, desc.size)?;
        let mut out = Vec::new();
        out.try_reserve_exact(usize::try_from(desc.size.min(MAX_DOCUMENT_BYTES)).unwrap_or(0))
            .map_err(|e| Error::io(&p, std::io::Error::new(std::io::ErrorKind::OutOfMemory, e)))?;
        let loc = p.display().to_string();
        super::digest::copy_verified(f, &mut out, &desc.digest, desc.size, &loc, &p, &mut |_| {
            Ok(())
        })?;
        Ok(Some(out))
    }

    /// Present when anything is at the blob's path, or when it cannot be told (a permission error, a file
    /// where a directory should be): reading it then fails naming the path, where "absent" would have
    /// reported a platform missing.
    fn has_blob(&self, desc: &Descriptor) -> bool {
        !matches!(
            fs::symlink_metadata_if_exists(self.blob_path(&desc.digest)),
            Ok(None)
        )
    }

    fn malformed(&self, location: &str, reason: String) -> Error {
        Error::store(
            self.root.join("blobs").join(location.replace(':', "/")),
            reason,
        )
    }
}

/// The store's lock when it is free now (`flock` with `LOCK_NB`), else `None`.
fn try_lock(root: &Path) -> Option<File> {
    let f = fs::open(root).ok()?;
    f.try_lock().is_ok().then_some(f)
}

/// The store's exclusive lock, released when dropped.
pub struct StoreLock {
    _dir: File,
}

/// New blobs being staged for one operation; nothing is visible in the store until [`Ingest::commit`].
/// Dropping an uncommitted ingest removes every file it wrote (and the store directory, if it created it).
pub struct Ingest {
    store: Store,
    dir: PathBuf,
    /// The lock on `dir` that tells other loads this one is alive.
    _lock: File,
    /// Staged blobs and where each is: `None` at its blob name (`<alg>/<hex>` in the staging directory,
    /// [`Ingest::blob_file`]), `Some(n)` in staging file `tmp-<n>` ([`Ingest::temp_file`]). No path is
    /// kept per blob.
    staged: BTreeMap<Digest, Option<NonZeroU64>>,
    /// The algorithms whose `<alg>/` directory the staging directory has.
    named_dirs: Vec<Algorithm>,
    /// Blobs found in the store, not staged: they must still be there when the index names them.
    relied: Vec<Digest>,
    counter: u64,
    created_root: Option<PathBuf>,
    committed: bool,
}

impl Ingest {
    /// A new temporary file in the staging directory.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    pub fn temp_file(&mut self) -> Result<(PathBuf, File)> {
        self.counter += 1;
        let p = self.temp_path(self.counter);
        let f = new_staging_file(&p)?;
        Ok((p, f))
    }

    /// The path of staging file number `n`.
    fn temp_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("tmp-{n}"))
    }

    /// A new file for blob `digest` at its blob name in the staging directory (`<alg>/<hex>`), for a
    /// writer that knows the digest its bytes must have. Staged there, a new store's blobs move into
    /// `blobs/` by one rename of their directory ([`Ingest::commit`]).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created (also when this ingest made it already).
    pub fn blob_file(&mut self, digest: &Digest) -> Result<(PathBuf, File)> {
        self.named_dir(digest.algorithm())?;
        let p = self.named_path(digest);
        let f = new_staging_file(&p)?;
        Ok((p, f))
    }

    /// What makes files at blob names in the staging directory ([`Ingest::blob_file`]) for blobs of
    /// `algs`, from any thread: a load creates the next batch's files while the current one is copied.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory for an algorithm cannot be made.
    pub fn blob_files(&mut self, algs: impl IntoIterator<Item = Algorithm>) -> Result<BlobFiles> {
        for alg in algs {
            self.named_dir(alg)?;
        }
        Ok(BlobFiles {
            dir: self.dir.clone(),
        })
    }

    /// Make the staging directory's `<alg>/` unless this ingest made it already.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be made.
    fn named_dir(&mut self, alg: Algorithm) -> Result<()> {
        if !self.named_dirs.contains(&alg) {
            fs::create_dir(self.dir.join(alg.name()))?;
            self.named_dirs.push(alg);
        }
        Ok(())
    }

    /// Where blob `digest` is staged at its blob name.
    fn named_path(&self, digest: &Digest) -> PathBuf {
        named_path(&self.dir, digest)
    }

    /// The staging file of a staged blob.
    fn staged_path(&self, digest: &Digest, slot: Option<NonZeroU64>) -> PathBuf {
        match slot {
            Some(n) => self.temp_path(n.get()),
            None => self.named_path(digest),
        }
    }

    /// Stage a file of the staging directory (from [`Ingest::temp_file`] or [`Ingest::blob_file`]) as
    /// the blob its bytes were proven to be, and start writing a large one back to disk (every staged
    /// file is made durable by [`Ingest::commit`]). Only a [`Verified`] names what a staged file holds:
    /// nothing reaches the store on a caller's word.
    ///
    /// # Errors
    /// [`Error::Store`] when `path` is not a file of this ingest's staging directory.
    pub fn stage(&mut self, path: PathBuf, blob: Verified) -> Result<()> {
        let slot = self.staging_slot(&path, &blob)?;
        let f = fs::open(&path)?;
        self.stage_slot(slot, &f, blob);
        Ok(())
    }

    /// [`Ingest::stage`] for a staging file still open (the copy that wrote it holds it): the same
    /// checks, without opening the file again.
    ///
    /// # Errors
    /// [`Error::Store`] when `path` is not a file of this ingest's staging directory.
    pub fn stage_open(&mut self, path: &Path, file: &File, blob: Verified) -> Result<()> {
        let slot = self.staging_slot(path, &blob)?;
        self.stage_slot(slot, file, blob);
        Ok(())
    }

    /// [`Ingest::stage_open`] for a staging file whose writeback its writer started already (the copy
    /// pool's `writeback` copies): the same checks, without asking for its writeback a second time.
    ///
    /// # Errors
    /// [`Error::Store`] when `path` is not a file of this ingest's staging directory.
    pub fn stage_written(&mut self, path: &Path, blob: Verified) -> Result<()> {
        let slot = self.staging_slot(path, &blob)?;
        self.staged.insert(blob.digest().clone(), slot);
        Ok(())
    }

    /// Stage `blob` in `slot`, starting the writeback of a large file (a small one is written back with
    /// the others by the sync: [`WRITEBACK_MIN`]).
    fn stage_slot(&mut self, slot: Option<NonZeroU64>, f: &File, blob: Verified) {
        if blob.size() > WRITEBACK_MIN {
            // SAFETY: sync_file_range on a descriptor we own; it only starts asynchronous writeback.
            unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
        self.staged.insert(blob.digest().clone(), slot);
    }

    /// Where staging file `path` is, for the blob `blob` proved it holds: at that blob's name
    /// ([`Ingest::blob_file`], `None`) or numbered (`tmp-<n>`, made by [`Ingest::temp_file`]).
    ///
    /// # Errors
    /// [`Error::Store`] for any other path.
    fn staging_slot(&self, path: &Path, blob: &Verified) -> Result<Option<NonZeroU64>> {
        let digest = blob.digest();
        if self.named_dirs.contains(&digest.algorithm()) && self.named_path(digest) == path {
            return Ok(None);
        }
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("tmp-"))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| (1..=self.counter).contains(&n) && self.temp_path(n) == path)
            .and_then(NonZeroU64::new);
        number.map(Some).ok_or_else(|| {
            Error::store(
                path,
                format!(
                    "is not a file of this load's staging directory {}",
                    self.dir.display()
                ),
            )
        })
    }

    /// Record that the index will name `digest`, found in the store rather than staged.
    pub fn rely_on(&mut self, digest: Digest) {
        self.relied.push(digest);
    }

    /// Whether `digest` is staged already.
    pub fn is_staged(&self, digest: &Digest) -> bool {
        self.staged.contains_key(digest)
    }

    /// Write the blob `expected` of `size` bytes from `reader` into a new staging file, hashing and
    /// counting as it is written (on a second thread for large blobs), and stage it once digest and size
    /// are proven. `tick(n)` is called as bytes are written.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] / [`Error::DigestMismatch`] naming `location`; [`Error::Io`] naming the
    /// source (reads) or the staging file (writes).
    pub fn write_blob<R: std::io::Read>(
        &mut self,
        reader: R,
        expected: &Digest,
        size: u64,
        location: &str,
        tick: &mut dyn FnMut(u64) -> std::io::Result<()>,
    ) -> Result<()> {
        let (tmp, file) = self.blob_file(expected)?;
        let mut w = std::io::BufWriter::with_capacity(COPY_BUFFER, file);
        let written =
            copy_verified(reader, &mut w, expected, size, location, &tmp, tick).and_then(|blob| {
                let file = w
                    .into_inner()
                    .map_err(|e| Error::io(&tmp, e.into_error()))?;
                Ok((blob, file))
            });
        match written {
            Ok((blob, file)) => self.stage_open(&tmp, &file, blob),
            Err(e) => {
                // Only proven bytes stay at a blob's name.
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Make every staged file durable. Up to [`FSYNC_EACH_MAX`] files are `fsync`ed one by one; more are
    /// made durable by one `syncfs(2)` on the staging directory's filesystem (the store's), which writes
    /// them back together and reports any writeback error on that filesystem (Linux 5.8 and later). Per-file
    /// `fsync` of thousands of small blobs commits the journal once per file: measured on this machine's
    /// ext4 (benches/README.md, "many images"), 21,000 blobs of 10 KiB took 30 s one by one against
    /// 0.1 s with one `syncfs`; the cost of `syncfs` is the other dirty data on the filesystem, hence the
    /// threshold. Either way nothing is renamed into `blobs/` before the sync returns without error.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, or the staging directory for `syncfs`.
    fn sync_staged(&self) -> Result<()> {
        if self.staged.len() <= FSYNC_EACH_MAX {
            for (d, &slot) in &self.staged {
                let tmp = self.staged_path(d, slot);
                fs::open(&tmp)?.sync_all().at(&tmp)?;
            }
            return Ok(());
        }
        let dir = fs::open(&self.dir)?;
        // SAFETY: syncfs on a descriptor we own and keep open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(Error::io(&self.dir, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Under the store lock: re-read `index.json` entry by entry ([`Entries`]: an index of any count of
    /// entries the size and value limits admit) and let `update` change it, then move the staged blobs
    /// into `blobs/` (blobs already there are kept, not rewritten) and replace `index.json` atomically.
    /// Nothing is renamed into the store when the lock, the index or `update` fails, or when the updated
    /// index would be over the limits ocitar reads; when a later step fails (a full disk while
    /// `index.json` is written), the blobs and directories this commit added are removed again, so the
    /// store is as it was.
    ///
    /// # Errors
    /// [`Error::Io`] on filesystem failures, [`Error::Store`] on lock timeout, a malformed index, a blob
    /// path that holds something other than a regular file or an updated index over the limits
    /// [`Store::read_entries`] reads within ([`document::check_size_and_shape`]), and whatever `update`
    /// returns.
    pub fn commit<T>(mut self, update: impl FnOnce(&mut Entries) -> Result<T>) -> Result<T> {
        // Durability first: every staged blob is on disk before any is named.
        self.sync_staged()?;
        // Lock, read and update the index before any blob is named, so that a lock timeout, a malformed
        // index or a refused update leaves the store as it was.
        let _lock = self.store.lock()?;
        for d in &self.relied {
            if self.store.existing_blob(d)?.is_none() {
                return Err(Error::store(
                    self.store.blob_path(d),
                    format!("blob {d} was removed while this load ran (a concurrent load failed and took back what it added); load again"),
                ));
            }
        }
        let mut index = self.store.read_entries()?;
        let out = update(&mut index)?;
        // A store ocitar can always read again: an index it would refuse to read is not written.
        let index_bytes = index.to_bytes();
        document::check_size_and_shape(&index_bytes).map_err(|r| {
            Error::store(
                self.store.root.join("index.json"),
                format!("this load would write an index.json that ocitar could not read again ({r}); nothing was loaded (remove images or names from the store first)"),
            )
        })?;
        let mut added = Added::default();
        match self.publish(&index_bytes, &mut added) {
            Ok(()) => {
                self.committed = true;
                Ok(out)
            }
            Err(e) => {
                if !added.index {
                    added.undo(&self.store);
                }
                Err(e)
            }
        }
    }

    /// Move the staged blobs into place and write `index.json`, recording in `added` what appeared.
    fn publish(&mut self, index_bytes: &[u8], added: &mut Added) -> Result<()> {
        let root = self.store.root.clone();
        check_internals(&root)?;
        let blobs = root.join("blobs");
        if fs::create_dir(&blobs)? {
            added.dirs.push(blobs.clone());
        }
        let mut algs: Vec<Algorithm> = self.staged.keys().map(Digest::algorithm).collect();
        algs.sort_unstable();
        algs.dedup();
        for alg in algs {
            let dest = blobs.join(alg.name());
            if !self.move_whole(alg, &dest, added)? {
                self.move_each(alg, &dest, added)?;
            }
            fs::open(&dest)?.sync_all().at(&dest)?;
        }
        fs::open(&blobs)?.sync_all().at(&blobs)?;
        if !fs::exists(root.join("oci-layout"))? {
            write_atomic(&root, "oci-layout", OCI_LAYOUT, &mut |_| {})?;
            added.layout = Some(root.join("oci-layout"));
        }
        write_atomic(&root, "index.json", index_bytes, &mut |done| {
            added.index = done;
        })
    }

    /// A store without `blobs/<alg>/` (a new one) gets the staging directory's `<alg>/` as it, by one
    /// rename, once the blobs of `alg` staged elsewhere are moved in beside the others and it holds
    /// nothing but staged blobs. `false` when that is not so: the blobs are then moved one by one.
    ///
    /// # Errors
    /// [`Error::Io`] naming what could not be listed or renamed.
    fn move_whole(&mut self, alg: Algorithm, dest: &Path, added: &mut Added) -> Result<bool> {
        if !self.named_dirs.contains(&alg) || fs::symlink_metadata_if_exists(dest)?.is_some() {
            return Ok(false);
        }
        let numbered: Vec<(Digest, NonZeroU64)> = self
            .staged
            .iter()
            .filter(|(d, _)| d.algorithm() == alg)
            .filter_map(|(d, slot)| slot.map(|n| (d.clone(), n)))
            .collect();
        for (d, n) in numbered {
            fs::rename(self.temp_path(n.get()), self.named_path(&d))?;
            self.staged.insert(d, None);
        }
        let dir = self.dir.join(alg.name());
        let mut held = 0usize;
        for e in fs::read_dir(&dir)? {
            e.at(&dir)?;
            held += 1;
        }
        let staged = self.staged.keys().filter(|d| d.algorithm() == alg).count();
        if held != staged {
            return Ok(false);
        }
        match fs::rename(&dir, dest) {
            Ok(()) => {
                added.trees.push(dest.to_path_buf());
                Ok(true)
            }
            // Made meanwhile by someone else (not ocitar: its commits hold the store lock).
            Err(Error::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Rename the staged blobs of `alg` into `dest` (`blobs/<alg>/`) one by one; blobs already there
    /// are kept, not rewritten.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Store`] for a blob path that holds something other than a regular file.
    fn move_each(&self, alg: Algorithm, dest: &Path, added: &mut Added) -> Result<()> {
        if fs::create_dir(dest)? {
            added.dirs.push(dest.to_path_buf());
        }
        for (digest, &slot) in self.staged.iter().filter(|(d, _)| d.algorithm() == alg) {
            if self.store.existing_blob(digest)?.is_some() {
                continue;
            }
            fs::rename(self.staged_path(digest, slot), self.store.blob_path(digest))?;
            added.blobs.push(digest.clone());
        }
        Ok(())
    }
}

/// Makes an ingest's staging files at blob names ([`Ingest::blob_files`]).
pub struct BlobFiles {
    /// The ingest's staging directory.
    dir: PathBuf,
}

impl BlobFiles {
    /// A new staging file for blob `digest`, at `<alg>/<hex>`, readable and writable.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created (it exists, or its algorithm's directory was not made).
    pub fn create(&self, digest: &Digest) -> Result<(PathBuf, File)> {
        let p = named_path(&self.dir, digest);
        let f = new_staging_file(&p)?;
        Ok((p, f))
    }
}

/// Where blob `digest` is staged at its blob name in staging directory `dir`: `<alg>/<hex>`.
fn named_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(digest.algorithm().name()).join(digest.hex())
}

/// Create staging file `p`, new (never one that is there), readable and writable, mode 0644.
///
/// # Errors
/// [`Error::Io`] naming `p`.
fn new_staging_file(p: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o644)
        .open(p)
        .at(p)
}

/// What a commit added to the store, removed again when it fails before `index.json` is replaced.
#[derive(Default)]
struct Added {
    /// Blobs renamed into `blobs/` one by one (by digest: no path kept per blob).
    blobs: Vec<Digest>,
    /// `blobs/<alg>/` directories renamed into place whole, with every blob in them.
    trees: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    layout: Option<PathBuf>,
    /// Whether the new `index.json` is in place (then nothing is undone: it names the blobs).
    index: bool,
}

impl Added {
    fn undo(&self, store: &Store) {
        for p in self.blobs.iter().map(|d| store.blob_path(d)) {
            let _ = fs::remove_file(p);
        }
        for t in &self.trees {
            let _ = fs::remove_dir_all(t);
        }
        if let Some(p) = &self.layout {
            let _ = fs::remove_file(p);
        }
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if !self.committed {
            if let Some(top) = &self.created_root {
                // Remove the directories this ingest created only while they are empty: another process
                // may have loaded into the new store meanwhile, and its content must survive.
                let root = &self.store.root;
                let _ = fs::remove_dir(root.join("blobs").join("sha256"));
                let _ = fs::remove_dir(root.join("blobs"));
                let mut dir = root.as_path();
                while fs::remove_dir(dir).is_ok() && dir != top.as_path() {
                    match dir.parent() {
                        Some(p) => dir = p,
                        None => break,
                    }
                }
            }
        }
    }
}

/// Replace `dir/name` atomically: write a temporary file beside it, fsync, rename, fsync the directory.
/// `renamed(true)` is called once the new file is in place (a later failure does not take it back).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    renamed: &mut dyn FnMut(bool),
) -> Result<()> {
    let tmp = dir.join(format!("{INGEST_PREFIX}{}-{name}.tmp", std::process::id()));
    let dest = dir.join(name);
    let res = (|| -> Result<()> {
        // Whatever is at our name (left by a killed process with our pid, or planted) is unlinked, never
        // followed: the file is created new.
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(bytes).and_then(|()| f.sync_all()).at(&tmp)?;
        fs::rename(&tmp, &dest)?;
        renamed(true);
        fs::open(dir)?.sync_all().at(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Refuse a store whose own files are symbolic links (`oci-layout`, `index.json`, `blobs/`,
/// `blobs/<algorithm>/`): following them would read and write outside the store, and replacing
/// `index.json` would replace the link, not what it points to. The store directory itself may be a link.
///
/// # Errors
/// [`Error::Store`] naming the link.
fn check_internals(root: &Path) -> Result<()> {
    let blobs = root.join("blobs");
    let mut paths = vec![
        root.join("oci-layout"),
        root.join("index.json"),
        blobs.clone(),
    ];
    if let Some(rd) = fs::read_dir_if_exists(&blobs)? {
        for e in rd {
            paths.push(e.at(&blobs)?.path());
        }
    }
    for p in paths {
        if fs::symlink_metadata_if_exists(&p)?.is_some_and(|m| m.file_type().is_symlink()) {
            return Err(Error::store(
                &p,
                "is a symbolic link: ocitar keeps a store's files inside it and does not follow links there",
            ));
        }
    }
    Ok(())
}

/// A candidate image for a reference: its two name annotations (either may be a familiar name) and digest.
pub struct Named<'a> {
    /// `io.containerd.image.name`, when the entry has one.
    pub image_name: Option<&'a str>,
    /// `org.opencontainers.image.ref.name`, when the entry has one.
    pub ref_name: Option<&'a str>,
    /// The digest of the entry's top-level document.
    pub digest: &'a Digest,
}

/// The digest prefix docker prints and takes back: 12 to 63 lowercase hex digits, bare or after `sha256:`.
pub fn digest_prefix(typed: &str) -> Option<&str> {
    let hex = typed.strip_prefix("sha256:").unwrap_or(typed);
    let hexdigit = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    ((12..64).contains(&hex.len()) && hex.bytes().all(hexdigit)).then_some(hex)
}

/// The one image (index into `candidates`) `typed` names, with the reference it stands for: by name or full
/// digest first, else by a unique digest prefix. Candidates with the same digest count as one image.
///
/// # Errors
/// [`Error::InvalidReference`] when `typed` is neither a reference nor a digest prefix;
/// [`Error::ImageNotFound`] (store and candidates left empty for the caller) when nothing matches;
/// [`Error::AmbiguousReference`] naming the images when two or more match.
pub fn pick(typed: &str, candidates: &[Named<'_>]) -> Result<(Reference, usize)> {
    let prefix = digest_prefix(typed);
    let parsed = Reference::parse(typed);
    let mut found: Vec<usize> = Vec::new();
    let add = |i: usize, found: &mut Vec<usize>| {
        let digest = candidates.get(i).map(|c| c.digest);
        if !found
            .iter()
            .any(|&f| candidates.get(f).map(|c| c.digest) == digest)
        {
            found.push(i);
        }
    };
    if let Ok(r) = &parsed {
        for (i, c) in candidates.iter().enumerate() {
            if reference::matches(typed, r, c.image_name, c.ref_name, c.digest) {
                add(i, &mut found);
            }
        }
    }
    if let (true, Some(hex)) = (found.is_empty(), prefix) {
        for (i, c) in candidates.iter().enumerate() {
            if c.digest.algorithm().name() == "sha256" && c.digest.hex().starts_with(hex) {
                add(i, &mut found);
            }
        }
    }
    match found.as_slice() {
        [one] => {
            let r = match (parsed, prefix) {
                (Ok(r), _) if r.digest.is_some() || prefix.is_none() => r,
                _ => Reference {
                    repository: None,
                    tag: None,
                    digest: candidates.get(*one).map(|c| c.digest.clone()),
                },
            };
            Ok((r, *one))
        }
        [] => match (parsed, prefix) {
            (Err(e), None) => Err(e),
            _ => Err(Error::ImageNotFound {
                reference: typed.to_string(),
                store: PathBuf::new(),
                candidates: Vec::new(),
            }),
        },
        many => Err(Error::AmbiguousReference {
            reference: typed.to_string(),
            matches: many
                .iter()
                .filter_map(|&i| candidates.get(i))
                .map(|c| {
                    let names = display_names(c.image_name, c.ref_name);
                    if names.is_empty() {
                        c.digest.to_string()
                    } else {
                        format!("{} ({})", names.join(", "), c.digest)
                    }
                })
                .collect(),
        }),
    }
}

/// The index of the image `typed` names among `images` listed elsewhere (an inventory, a report: each its
/// familiar names and digest), by [`pick`]'s rules.
///
/// # Errors
/// As [`pick`], with [`Error::ImageNotFound`] naming `path` and the closest names; the error of
/// [`Digest`]'s parser when a listed digest does not parse.
pub fn pick_listed(typed: &str, path: &Path, images: &[(Vec<String>, String)]) -> Result<usize> {
    let digests = images
        .iter()
        .map(|(_, d)| d.parse::<Digest>())
        .collect::<Result<Vec<_>>>()?;
    let mut named = Vec::new();
    for ((names, _), digest) in images.iter().zip(&digests) {
        let names: Vec<Option<&str>> = match names.as_slice() {
            [] => vec![None],
            _ => names.iter().map(|n| Some(n.as_str())).collect(),
        };
        named.extend(names.into_iter().map(|n| Named {
            image_name: n,
            ref_name: n,
            digest,
        }));
    }
    match pick(typed, &named) {
        Ok((_, i)) => {
            let found = named.get(i).map(|n| n.digest);
            digests
                .iter()
                .position(|d| Some(d) == found)
                .ok_or_else(|| Error::InvalidArgument(format!("{typed:?} matched no listed image")))
        }
        Err(Error::ImageNotFound { reference, .. }) => Err(Error::ImageNotFound {
            candidates: closest(
                &reference,
                images.iter().flat_map(|(n, _)| n.clone()).collect(),
            ),
            reference,
            store: path.to_path_buf(),
        }),
        Err(e) => Err(e),
    }
}

/// The three names closest to `typed` (edit distance), for "did you mean".
pub fn closest(typed: &str, mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .map(|n| (strsim::levenshtein(typed, &n), n))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// The default store: `$OCITAR_STORE`, else `$XDG_DATA_HOME/ocitar/store`, else
/// `~/.local/share/ocitar/store`.
///
/// # Errors
/// [`Error::InvalidArgument`] when none of `OCITAR_STORE`, `XDG_DATA_HOME` and `HOME` is set.
pub fn default_store() -> Result<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("OCITAR_STORE") {
        return Ok(p);
    }
    if let Some(p) = env("XDG_DATA_HOME") {
        return Ok(p.join("ocitar").join("store"));
    }
    match env("HOME") {
        Some(h) => Ok(h.join(".local").join("share").join("ocitar").join("store")),
        None => Err(Error::InvalidArgument(
            "no store given and none of OCITAR_STORE, XDG_DATA_HOME, HOME is set".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<'a>(name: Option<&'a str>, digest: &'a Digest) -> Named<'a> {
        Named {
            image_name: name,
            ref_name: None,
            digest,
        }
    }

    #[test]
    fn entries_are_read_lean_and_refused_as_the_whole_parser_refuses() {
        let d = Digest::sha256_of(b"x");
        let entry = |ann: &str| {
            format!(
                r#"{{"mediaType":"{MT_OCI_INDEX}","digest":"{d}","size":1,"annotations":{ann}}}"#
            )
        };
        // More objects than a document may hold: read entry by entry all the same.
        let many: Vec<String> = (0..60_000)
            .map(|i| {
                entry(&format!(
                    r#"{{"{ANNOTATION_IMAGE_NAME}":"docker.io/library/a:{i}","x\u0041":"y"}}"#
                ))
            })
            .collect();
        let doc = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, many.join(","));
        assert!(IndexFile::parse(doc.as_bytes()).is_err());
        let entries = Entries::parse(doc.as_bytes()).unwrap();
        assert_eq!(entries.iter().count(), 60_000);
        let last = entries.iter().last().unwrap();
        assert_eq!(
            last.image_name.as_deref(),
            Some("docker.io/library/a:59999")
        );
        assert_eq!(last.descriptor().unwrap().size, 1);
        // What the lean reader does not take gets the whole parser's message.
        for bad in [
            format!(r#"{{"manifests":[{}]}}"#, entry(r#"{"a":1}"#)),
            r#"{"manifests":[{"digest":"sha256:00","size":1}]}"#.to_string(),
            r#"{"manifests":{}}"#.to_string(),
            "[]".to_string(),
        ] {
            let whole = IndexFile::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(Entries::parse(bad.as_bytes()).unwrap_err(), whole, "{bad}");
        }
        // Duplicated keys: the last one counts, as for the whole parser.
        let dup = format!(
            r#"{{"manifests":[{{"digest":"{}","digest":"{d}","size":1}}]}}"#,
            Digest::sha256_of(b"y")
        );
        let e = Entries::parse(dup.as_bytes()).unwrap();
        assert_eq!(e.iter().next().unwrap().digest, d);
    }

    #[test]
    fn entries_are_written_back_as_read_compact_in_key_order() {
        let d = Digest::sha256_of(b"x");
        let image = ANNOTATION_IMAGE_NAME;
        let doc = format!(
            "{{\n \"schemaVersion\": 2,\n \"x-top\": {{\"b\": [1, 2.50], \"a\": \"s p\"}},\n \"manifests\": [\n  {{\"size\": 1, \"digest\": \"{d}\", \"x-entry\": \"a \\\" b\\u0041\",\n   \"annotations\": {{\"{image}\": \"docker.io/library/a:1\", \"k\": \"v\"}}}}\n ]\n}}"
        );
        let mut e = Entries::parse(doc.as_bytes()).unwrap();
        let entry = format!(
            r#"{{"size":1,"digest":"{d}","x-entry":"a \" b\u0041","annotations":{{"{image}":"docker.io/library/a:1","k":"v"}}}}"#
        );
        let top = r#""schemaVersion":2,"x-top":{"b":[1,2.50],"a":"s p"}"#;
        let written = String::from_utf8(e.to_bytes()).unwrap();
        assert_eq!(written, format!(r#"{{"manifests":[{entry}],{top}}}"#));
        // An entry that loses its name keeps its other members; an added one is written from its JSON.
        e.unname(0).unwrap();
        e.push(&Descriptor::new(MT_OCI_INDEX, Digest::sha256_of(b"y"), 2));
        let again = Entries::parse(&e.to_bytes()).unwrap();
        let first = again.get(0).unwrap();
        assert_eq!(first.image_name, None);
        let desc = first.descriptor().unwrap();
        assert_eq!(desc.annotations.get("k").map(String::as_str), Some("v"));
        assert_eq!(desc.raw["x-entry"], "a \" bA");
        assert_eq!(again.get(1).unwrap().digest, Digest::sha256_of(b"y"));
        assert_eq!(again.len(), 2);
        // A store's first index.
        assert_eq!(
            String::from_utf8(Entries::new_index().to_bytes()).unwrap(),
            format!(r#"{{"manifests":[],"mediaType":"{MT_OCI_INDEX}","schemaVersion":2}}"#)
        );
    }

    #[test]
    fn an_ingest_stages_only_proven_files_of_its_own_staging_directory() {
        use crate::engine::digest::Algorithm;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open_or_new(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        let mut ingest = store.ingest().unwrap_or_else(|e| panic!("{e}"));
        let outside = dir.path().join("outside");
        File::create(&outside).unwrap_or_else(|e| panic!("{e}"));
        let proof = Algorithm::Sha256.hasher().into_verified();
        assert!(matches!(
            ingest.stage(outside, proof.clone()),
            Err(Error::Store { .. })
        ));
        // Written through the ingest, bytes that are not what was expected are never staged.
        let other = Digest::sha256_of(b"other");
        let e = ingest.write_blob(&b"bytes"[..], &other, 5, "src", &mut |_| Ok(()));
        assert!(matches!(e, Err(Error::DigestMismatch { .. })), "{e:?}");
        assert!(!ingest.is_staged(&other));
        let good = Digest::sha256_of(b"bytes");
        ingest
            .write_blob(&b"bytes"[..], &good, 5, "src", &mut |_| Ok(()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ingest.is_staged(&good));
    }

    /// An ingest of `blobs` (written at their blob names) and of one blob staged numbered, committed.
    fn ingest_and_commit(
        store: &Store,
        blobs: &[&[u8]],
        numbered: &[u8],
        before: impl FnOnce(&Ingest),
    ) {
        let mut ingest = store.ingest().unwrap_or_else(|e| panic!("{e}"));
        for b in blobs {
            ingest
                .write_blob(
                    *b,
                    &Digest::sha256_of(b),
                    b.len() as u64,
                    "src",
                    &mut |_| Ok(()),
                )
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (tmp, mut f) = ingest.temp_file().unwrap_or_else(|e| panic!("{e}"));
        f.write_all(numbered).unwrap_or_else(|e| panic!("{e}"));
        let mut h = crate::engine::digest::Algorithm::Sha256.hasher();
        h.update(numbered);
        ingest
            .stage(tmp, h.into_verified())
            .unwrap_or_else(|e| panic!("{e}"));
        before(&ingest);
        ingest.commit(|_| Ok(())).unwrap_or_else(|e| panic!("{e}"));
    }

    fn blob_names(store: &Store) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(store.root().join("blobs/sha256"))
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{e}"))
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn hexes(blobs: &[&[u8]]) -> Vec<String> {
        let mut v: Vec<String> = blobs
            .iter()
            .map(|b| Digest::sha256_of(b).hex().to_string())
            .collect();
        v.sort();
        v
    }

    fn staging_dirs(store: &Store) -> usize {
        fs::read_dir(store.root())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| Store::is_ingest_dir(&e.file_name().to_string_lossy()))
            })
            .count()
    }

    #[test]
    fn a_new_store_gets_the_staged_blob_directory_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open_or_new(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        use std::os::unix::fs::MetadataExt;
        let staged = std::cell::Cell::new(0);
        ingest_and_commit(&store, &[b"a", b"b"], b"c", |ingest| {
            // Staged at their names, the numbered one beside them only at commit.
            let named = ingest.dir.join("sha256");
            assert!(
                fs::metadata(named.join(Digest::sha256_of(b"a").hex())).is_ok_and(|m| m.is_file())
            );
            staged.set(fs::metadata(named).map_or(0, |m| m.ino()));
        });
        assert_eq!(blob_names(&store), hexes(&[b"a", b"b", b"c"]));
        // One rename: blobs/sha256 is the staging directory's sha256/.
        let moved = fs::metadata(store.root().join("blobs/sha256")).map_or(1, |m| m.ino());
        assert_eq!(moved, staged.get());
        assert_eq!(staging_dirs(&store), 0);
        // The next load into it moves its blobs one by one, keeping those there.
        ingest_and_commit(&store, &[b"a", b"d"], b"e", |_| {});
        assert_eq!(blob_names(&store), hexes(&[b"a", b"b", b"c", b"d", b"e"]));
        assert_eq!(staging_dirs(&store), 0);
    }

    #[test]
    fn a_blob_directory_made_meanwhile_or_a_stray_staged_file_means_one_by_one() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open_or_new(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        // Someone else made blobs/sha256 while the load ran, with one of its blobs (kept, not replaced).
        let mine = store.blob_path(&Digest::sha256_of(b"a"));
        ingest_and_commit(&store, &[b"a", b"b"], b"c", |_| {
            fs::create_dir_all(mine.parent().unwrap()).unwrap_or_else(|e| panic!("{e}"));
            File::create(&mine)
                .and_then(|mut f| f.write_all(b"a"))
                .unwrap_or_else(|e| panic!("{e}"));
        });
        assert_eq!(blob_names(&store), hexes(&[b"a", b"b", b"c"]));
        // A file in the staging blob directory that nothing staged never reaches the store.
        let other = Store::open_or_new(dir.path().join("other")).unwrap_or_else(|e| panic!("{e}"));
        let stray = Digest::sha256_of(b"stray");
        ingest_and_commit(&other, &[b"a"], b"c", |ingest| {
            File::create(ingest.dir.join("sha256").join(stray.hex()))
                .and_then(|mut f| f.write_all(b"not it"))
                .unwrap_or_else(|e| panic!("{e}"));
        });
        assert_eq!(blob_names(&other), hexes(&[b"a", b"c"]));
        assert_eq!(staging_dirs(&other), 0);
    }

    #[test]
    fn an_ingest_stages_only_the_numbered_files_it_made() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open_or_new(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        let mut ingest = store.ingest().unwrap_or_else(|e| panic!("{e}"));
        let (tmp, _) = ingest.temp_file().unwrap_or_else(|e| panic!("{e}"));
        let proof = crate::engine::digest::Algorithm::Sha256
            .hasher()
            .into_verified();
        for planted in ["planted", "tmp-2", "tmp-01"] {
            let p = tmp.with_file_name(planted);
            let f = File::create(&p).unwrap_or_else(|e| panic!("{e}"));
            let e = ingest.stage_open(&p, &f, proof.clone());
            assert!(matches!(e, Err(Error::Store { .. })), "{planted}: {e:?}");
            let e = ingest.stage_written(&p, proof.clone());
            assert!(matches!(e, Err(Error::Store { .. })), "{planted}: {e:?}");
            let e = ingest.stage(p, proof.clone());
            assert!(matches!(e, Err(Error::Store { .. })), "{planted}: {e:?}");
        }
        assert!(!ingest.is_staged(proof.digest()));
        ingest
            .stage(tmp, proof.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ingest.is_staged(proof.digest()));
    }

    #[test]
    fn digest_prefixes_as_docker_prints_them() {
        assert_eq!(digest_prefix("bccf408bf52e"), Some("bccf408bf52e"));
        assert_eq!(digest_prefix("sha256:bccf408bf52e"), Some("bccf408bf52e"));
        assert_eq!(digest_prefix("bccf408bf52"), None, "11 digits are too few");
        assert_eq!(digest_prefix("alpine:3.20"), None);
        assert_eq!(digest_prefix("BCCF408BF52E"), None);
    }

    #[test]
    fn pick_by_name_full_digest_and_unique_prefix() {
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let images = [
            named(Some("docker.io/library/alpine:3.20"), &a),
            named(None, &b),
        ];
        assert_eq!(pick("alpine:3.20", &images).map(|(_, i)| i).ok(), Some(0));
        let short = b.hex().get(..12).unwrap_or_default().to_string();
        let (r, i) = pick(&short, &images).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((i, r.digest.as_ref()), (1, Some(&b)));
        assert_eq!(
            pick(&format!("sha256:{short}"), &images)
                .map(|(_, i)| i)
                .ok(),
            Some(1)
        );
        assert!(matches!(
            pick("sha256:000000000000", &images),
            Err(Error::ImageNotFound { .. })
        ));
    }

    #[test]
    fn an_ambiguous_prefix_names_every_match() {
        let d =
            |tail: &str| format!("sha256:{}{}", "ab".repeat(6), tail.repeat(52)).parse::<Digest>();
        let (Ok(a), Ok(b)) = (d("0"), d("1")) else {
            panic!("digests parse")
        };
        let images = [named(Some("x:1"), &a), named(None, &b)];
        match pick(&"ab".repeat(6), &images) {
            Err(Error::AmbiguousReference { matches, .. }) => {
                assert_eq!(matches, vec![format!("x:1 ({a})"), b.to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            pick(&format!("{}0", "ab".repeat(6)), &images)
                .map(|(_, i)| i)
                .ok(),
            Some(0)
        );
    }
}
