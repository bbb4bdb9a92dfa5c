//! `load`: read an archive (ocitar's, docker's, containerd's, skopeo's, buildkit's; plain or compressed),
//! walk each image through the selected platforms, verify every blob it keeps and commit it to the store,
//! all or nothing: `index.json` is replaced last, under the store lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::archive::read::{blob_digest, Archive, Entry, Input, Kind, Loc, Spool};
use super::copy;
use super::digest::{self, Algorithm, Digest, Verified};
use super::document;
use super::error::{Error, Result};
use super::platform::{Matcher, Platform};
use super::reference::{self, Reference, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::sink::Sink;
use super::store::{Entries, IndexEntry, IndexFile, Ingest, Store};
use super::walk::{
    self, BlobSource, Descriptor, Selection, MT_DOCKER_CONFIG, MT_DOCKER_LAYER,
    MT_DOCKER_LAYER_GZIP, MT_DOCKER_MANIFEST,
};
use super::Progress;

/// Staging files open at once while blobs are copied from a seekable archive.
const OPEN_BLOBS: usize = 128;

/// One image load wrote (or found already there).
#[derive(Clone, Debug, Serialize)]
pub struct LoadedImage {
    /// Familiar names (`alpine:3.20`); empty for an unnamed image.
    pub names: Vec<String>,
    /// Digest of the top-level descriptor written to the store.
    pub digest: Digest,
    /// Media type of that descriptor.
    pub media_type: String,
    /// Platforms loaded, as the image writes them.
    pub platforms: Vec<String>,
    /// Platforms the image lists that were not loaded: those whose content the archive lacks (a sparse
    /// archive) and, into a store directory, those the platform list left out.
    pub absent: Vec<String>,
    /// Attestation manifests loaded with those platforms.
    pub attestations: usize,
    /// Names that pointed at another image before; that image stays in the store, unnamed.
    pub moved: Vec<String>,
    /// Foreign layers (with `urls`) the archive does not hold: loaded as descriptors, without blobs.
    pub foreign: Vec<Digest>,
}

/// What load did.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Every image of the archive, in archive order.
    pub images: Vec<LoadedImage>,
    /// Blobs staged and committed.
    pub blobs_written: usize,
    /// Blobs the store had already (not rewritten).
    pub blobs_present: usize,
    /// Blobs a registry mounted from another of its repositories (0 for a store directory).
    pub blobs_mounted: usize,
    /// Bytes of the blobs written.
    pub bytes_written: u64,
}

/// An image found in an archive: its top-level descriptors (one per name, or one unnamed).
pub struct Found {
    /// The first entry: the image's top-level descriptor.
    pub top: Descriptor,
    /// Every entry (the first included).
    pub entries: Vec<Descriptor>,
}

/// A copy of an archive entry in the spool, with what hashing it on the way proved.
type Copied = (PathBuf, Verified);

/// A blob to write, as a sink keeps it until then: its digest and size, nothing of its descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl From<&Descriptor> for Blob {
    fn from(d: &Descriptor) -> Blob {
        Blob {
            digest: d.digest.clone(),
            size: d.size,
        }
    }
}

/// The name of the archive entry holding a blob, made when a message needs it: `blobs/<alg>/<hex>` for
/// a blob found by digest, else the Docker path it was found under.
enum EntryName<'a> {
    Blob(Digest),
    Path(&'a str),
}

impl std::fmt::Display for EntryName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryName::Blob(d) => d.blob_name_display().fmt(f),
            EntryName::Path(p) => f.write_str(p),
        }
    }
}

/// The walker's view of an archive, plus the documents synthesized for Docker-format images.
pub struct ArchiveSource<'a> {
    /// The archive read.
    pub archive: &'a Archive,
    synthesized: HashMap<Digest, Vec<u8>>,
    /// Docker layers and configs named by path rather than by digest.
    by_path: HashMap<Digest, String>,
    /// Docker layers copied into the spool while hashed to learn their digest (a load into a store),
    /// with what hashing them proved: staged from there when needed, not read and hashed again.
    prehashed: HashMap<Digest, Copied>,
}

impl<'a> ArchiveSource<'a> {
    /// A source over `archive`.
    pub fn new(archive: &'a Archive) -> ArchiveSource<'a> {
        ArchiveSource {
            archive,
            synthesized: HashMap::new(),
            by_path: HashMap::new(),
            prehashed: HashMap::new(),
        }
    }

    /// A reader of blob `desc`'s bytes (not verified: the caller hashes them).
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when the blob is missing, [`Error::SizeMismatch`] when its size differs.
    pub(crate) fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>> {
        if let Some(bytes) = self.synthesized.get(&desc.digest) {
            return Ok(Box::new(bytes.as_slice()));
        }
        let Some((name, e)) = self.entry(&desc.digest)? else {
            return Err(Error::archive(
                desc.digest.blob_name(),
                "blob is missing from the archive",
            ));
        };
        self.check_size(&name, e, &desc.digest, desc.size)?;
        self.archive.open(e)
    }

    /// Whether `d` is a document ocitar made (a Docker archive's manifest).
    pub fn is_synthesized(&self, d: &Digest) -> bool {
        self.synthesized.contains_key(d)
    }

    /// The entry holding `d`'s bytes, by digest (`blobs/<alg>/<hex>`) or by Docker path.
    fn entry(&self, d: &Digest) -> Result<Option<(EntryName<'_>, &Entry)>> {
        if let Some(e) = self.archive.blob(d) {
            return Ok(Some((EntryName::Blob(d.clone()), e)));
        }
        match self.by_path.get(d) {
            Some(p) => Ok(self
                .archive
                .get(p)?
                .map(|(name, e)| (EntryName::Path(name), e))),
            None => Ok(None),
        }
    }

    fn check_size(&self, name: &EntryName<'_>, e: &Entry, d: &Digest, size: u64) -> Result<()> {
        if e.size != size {
            return Err(Error::SizeMismatch {
                digest: d.to_string(),
                location: format!("{}:{name}", self.archive.label()),
                expected: size,
                found: e.size.to_string(),
            });
        }
        Ok(())
    }

    /// Where `desc`'s bytes can be copied from by the kernel: its range of a seekable, uncompressed
    /// archive file (and the name of that range in errors). `None` for blobs staged otherwise.
    ///
    /// # Errors
    /// As [`ArchiveSource::stage`] for a blob that is missing or of the wrong size.
    fn file_range(&self, blob: &Blob) -> Result<Option<(&std::fs::File, u64)>> {
        if self.synthesized.contains_key(&blob.digest) || self.prehashed.contains_key(&blob.digest)
        {
            return Ok(None);
        }
        let Some((name, e)) = self.entry(&blob.digest)? else {
            return Ok(None);
        };
        self.check_size(&name, e, &blob.digest, blob.size)?;
        Ok(self.archive.file_range(e))
    }

    /// How messages name the archive entry holding blob `d` (`<archive>:<entry>`).
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] for a link loop on its Docker path.
    fn location(&self, d: &Digest) -> Result<String> {
        let name = match self.entry(d)? {
            Some((name, _)) => name.to_string(),
            None => d.blob_name(),
        };
        Ok(format!("{}:{name}", self.archive.label()))
    }

    /// Stage blob `desc` in `ingest`, proven: a file already hashed (a spooled stream entry, a Docker
    /// layer hashed to learn its digest) is staged as it is with what its hashing proved; anything else
    /// is written into the ingest, hashed and counted on the way.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when the blob is missing; [`Error::SizeMismatch`] /
    /// [`Error::DigestMismatch`]; [`Error::Io`]; the progress callback's error.
    fn stage(&self, desc: &Blob, ingest: &mut Ingest, progress: &mut Progress) -> Result<()> {
        let tick = &mut |k| progress.advance(k);
        if let Some(bytes) = self.synthesized.get(&desc.digest) {
            let loc = format!("{}:manifest.json", self.archive.label());
            return ingest.write_blob(bytes.as_slice(), &desc.digest, desc.size, &loc, tick);
        }
        let Some((name, e)) = self.entry(&desc.digest)? else {
            return Err(Error::archive(
                desc.digest.blob_name(),
                "blob is missing from the archive",
            ));
        };
        self.check_size(&name, e, &desc.digest, desc.size)?;
        let loc = format!("{}:{name}", self.archive.label());
        let hashed = match (self.prehashed.get(&desc.digest), &e.loc) {
            (Some((p, v)), _) => Some((p, v)),
            (None, Loc::Spooled(s)) if s.1.digest().algorithm() == desc.digest.algorithm() => {
                Some((&s.0, &s.1))
            }
            _ => None,
        };
        if let Some((p, v)) = hashed {
            v.matches(&desc.digest, desc.size, &loc)?;
            tick(desc.size).map_err(|e| Error::io(p, e))?;
            return ingest.stage(p.clone(), v.clone());
        }
        ingest.write_blob(self.archive.open(e)?, &desc.digest, desc.size, &loc, tick)
    }
}

impl BlobSource for ArchiveSource<'_> {
    fn blob_size(&self, d: &Descriptor) -> Option<u64> {
        if let Some(b) = self.synthesized.get(&d.digest) {
            return Some(b.len() as u64);
        }
        self.entry(&d.digest).ok().flatten().map(|(_, e)| e.size)
    }

    fn document(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>> {
        if let Some(b) = self.synthesized.get(&desc.digest) {
            return Ok(Some(b.clone()));
        }
        let Some((name, e)) = self.entry(&desc.digest)? else {
            return Ok(None);
        };
        self.check_size(&name, e, &desc.digest, desc.size)?;
        let bytes = self.archive.read_small(&name.to_string(), e)?;
        let loc = format!("{}:{name}", self.archive.label());
        digest::check(
            &desc.digest,
            desc.size,
            &desc.digest.algorithm().digest(&bytes),
            bytes.len() as u64,
            &loc,
        )?;
        Ok(Some(bytes))
    }

    fn has_blob(&self, desc: &Descriptor) -> bool {
        self.synthesized.contains_key(&desc.digest)
            || matches!(self.entry(&desc.digest), Ok(Some(_)))
    }

    fn malformed(&self, location: &str, reason: String) -> Error {
        Error::archive(location, reason)
    }
}

impl Spool for Ingest {
    fn temp_file(&mut self) -> Result<(PathBuf, std::fs::File)> {
        Ingest::temp_file(self)
    }
}

/// Find the images of an archive: `index.json` entries grouped by digest, or, without an index (or with
/// an empty one), Docker `manifest.json` entries turned into Docker schema-2 manifests. A load passes its
/// `spool`: Docker layers hashed to learn their digest are copied into it on the way.
///
/// # Errors
/// [`Error::InvalidArchive`] when the archive has neither, when they are malformed, or when
/// `manifest.json` names paths outside the archive or missing files.
pub(crate) fn find_images(
    source: &mut ArchiveSource<'_>,
    spool: Option<&mut dyn Spool>,
) -> Result<Vec<Found>> {
    let ar = source.archive;
    if let Some((name, e)) = ar.get("index.json")? {
        if let Some((layout, le)) = ar.get("oci-layout")? {
            document::check_layout(&ar.read_small(layout, le)?)
                .map_err(|r| Error::archive("oci-layout", r))?;
        }
        let bytes = ar.read_small(name, e)?;
        let index = IndexFile::parse(&bytes).map_err(|r| Error::archive("index.json", r))?;
        if !index.entries.is_empty() {
            let mut found: Vec<Found> = Vec::new();
            let mut at: HashMap<Digest, usize> = HashMap::new();
            for (i, mut d) in index.entries.into_iter().enumerate() {
                name_entry(&mut d)
                    .map_err(|r| Error::archive("index.json", format!("manifests[{i}]: {r}")))?;
                match at.get(&d.digest).and_then(|&i| found.get_mut(i)) {
                    Some(f) => f.entries.push(d),
                    None => {
                        at.insert(d.digest.clone(), found.len());
                        found.push(Found {
                            top: d.clone(),
                            entries: vec![d],
                        });
                    }
                }
            }
            return Ok(found);
        }
    }
    if let Some((name, e)) = ar.get("manifest.json")? {
        let bytes = ar.read_small(name, e)?;
        return docker_images(source, &bytes, spool);
    }
    if ar.contains("repositories") {
        return Err(Error::archive(
            ar.label(),
            "legacy Docker archive with only 'repositories' and no manifest.json (written by Docker before 1.10); re-save it with a current docker",
        ));
    }
    if let Some(at) = ar.lone_zero_block {
        return Err(Error::archive(
            ar.label(),
            format!("the archive ends early: a lone zero block at byte {at} ends it before any index.json or manifest.json, and more data follows that tar readers do not read"),
        ));
    }
    Err(Error::archive(
        ar.label(),
        "not an image archive: no index.json or manifest.json",
    ))
}

/// Check the names of an archive's `index.json` entry, and make its two name annotations agree: a
/// `ref.name` that says otherwise than the image name becomes that name's tag, so that it cannot reach
/// the store (the image name decides, as in containerd). Entries that agree are kept as written.
///
/// # Errors
/// A reason when a name annotation is not a valid reference (see [`reference::archive_name`]).
fn name_entry(d: &mut Descriptor) -> std::result::Result<(), String> {
    let (image, refn) = (
        d.annotation(ANNOTATION_IMAGE_NAME),
        d.annotation(ANNOTATION_REF_NAME),
    );
    let name = reference::archive_name(image, refn)?;
    let (Some(image), Some(refn)) = (image, refn) else {
        return Ok(());
    };
    if reference::ref_name_agrees(image, refn) {
        return Ok(());
    }
    let mut a = d.annotations.clone();
    match name.and_then(|r| r.tag) {
        Some(tag) => a.insert(ANNOTATION_REF_NAME.to_string(), tag),
        None => a.remove(ANNOTATION_REF_NAME),
    };
    d.set_annotations(a);
    Ok(())
}

#[derive(serde::Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// What a Docker config contributes to the manifest made for it: digest, size, and the platform as the
/// descriptor writes it (an arm64 config keeps its `v8`).
struct DockerConfig {
    digest: Digest,
    size: u64,
    platform: Option<(Value, Platform)>,
}

fn docker_config(ar: &Archive, name: &str, e: &Entry) -> Result<DockerConfig> {
    let bytes = ar.read_small(name, e)?;
    let json = document::parse_document(&bytes)
        .map_err(|r| Error::archive(name, format!("image config: {r}")))?;
    let platform = Platform::from_json(&json).map(|p| {
        let mut pj = serde_json::Map::new();
        for key in ["architecture", "os", "os.version", "variant"] {
            if let Some(v) = json
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                pj.insert(key.into(), Value::String(v.to_string()));
            }
        }
        (Value::Object(pj), p)
    });
    Ok(DockerConfig {
        digest: Digest::sha256_of(&bytes),
        size: bytes.len() as u64,
        platform,
    })
}

/// A Docker layer's digest and whether it is gzip. A layer named by path (not by digest) is hashed to
/// learn its digest; with a `spool` (a load) the bytes are copied into it on the way, and that copy is
/// returned, so that staging the layer later does not read and hash it again.
fn docker_layer(
    ar: &Archive,
    name: &str,
    e: &Entry,
    spool: Option<&mut (dyn Spool + '_)>,
) -> Result<(Digest, bool, Option<Copied>)> {
    match (&e.loc, blob_digest(name)) {
        (Loc::Spooled(s), _) => return Ok((s.1.digest().clone(), head_is_gzip(ar, e)?, None)),
        (Loc::Hashed(h), _) => return Ok((h.0.clone(), h.1, None)),
        (_, Some(d)) => return Ok((d, head_is_gzip(ar, e)?, None)),
        _ => {}
    }
    let mut head = Vec::new();
    let (found, copy) = match spool {
        Some(spool) => {
            let (tmp, file) = spool.temp_file()?;
            let mut w = HeadCapture(
                &mut head,
                std::io::BufWriter::with_capacity(digest::COPY_BUFFER, file),
            );
            let found = digest::copy_hashing(ar.open(e)?, &mut w, name, &tmp)?;
            w.1.flush().map_err(|err| Error::io(&tmp, err))?;
            (found.clone(), Some((tmp, found)))
        }
        None => {
            let mut w = HeadCapture(&mut head, std::io::sink());
            let found = digest::copy_hashing(ar.open(e)?, &mut w, name, Path::new(name))?;
            (found, None)
        }
    };
    if found.size() != e.size {
        return Err(Error::archive(name, "truncated"));
    }
    Ok((
        found.digest().clone(),
        head.starts_with(&[0x1f, 0x8b]),
        copy,
    ))
}

fn docker_list(bytes: &[u8]) -> Result<Vec<DockerEntry>> {
    let v = document::parse_json(bytes).map_err(|r| Error::archive("manifest.json", r))?;
    let list: Vec<DockerEntry> = match v {
        Value::Null => {
            return Err(Error::archive(
                "manifest.json",
                "is null: the archive lists no image",
            ))
        }
        v => serde_json::from_value(v).map_err(|e| {
            Error::archive(
                "manifest.json",
                format!("not a list of {{Config, RepoTags, Layers}} entries: {e}"),
            )
        })?,
    };
    if list.is_empty() {
        return Err(Error::archive("manifest.json", "lists no image"));
    }
    Ok(list)
}

/// The images of a Docker archive's `manifest.json`, each as a Docker schema-2 manifest made for it.
/// Every config and layer is read once, however many entries share it.
fn docker_images(
    source: &mut ArchiveSource<'_>,
    bytes: &[u8],
    mut spool: Option<&mut dyn Spool>,
) -> Result<Vec<Found>> {
    let ar = source.archive;
    let list = docker_list(bytes)?;
    let mut configs: HashMap<String, DockerConfig> = HashMap::new();
    let mut layer_of: HashMap<String, (Digest, bool)> = HashMap::new();
    let mut found = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let what = |field: &str| format!("manifest.json[{i}].{field}");
        let (config_name, config_entry) = docker_path(ar, &entry.config, &what("Config"))?;
        if !configs.contains_key(&config_name) {
            let config = docker_config(ar, &config_name, config_entry)?;
            configs.insert(config_name.clone(), config);
        }
        let Some(config) = configs.get(&config_name) else {
            continue;
        };
        source
            .by_path
            .insert(config.digest.clone(), config_name.to_string());
        let mut layers = Vec::new();
        for (j, l) in entry.layers.iter().enumerate() {
            let (name, e) = docker_path(ar, l, &what(&format!("Layers[{j}]")))?;
            let (d, gz) = match layer_of.get(&name) {
                Some(known) => known.clone(),
                None => {
                    let (d, gz, copy) = docker_layer(ar, &name, e, spool.as_deref_mut())?;
                    if let Some(copy) = copy {
                        source.prehashed.insert(d.clone(), copy);
                    }
                    layer_of.insert(name.clone(), (d.clone(), gz));
                    (d, gz)
                }
            };
            source.by_path.insert(d.clone(), name.to_string());
            let mt = if gz {
                MT_DOCKER_LAYER_GZIP
            } else {
                MT_DOCKER_LAYER
            };
            layers.push(
                serde_json::json!({"mediaType": mt, "size": e.size, "digest": d.to_string()}),
            );
        }
        let top = docker_manifest(source, config, layers)?;
        found.push(docker_found(top, entry, &what("RepoTags"))?);
    }
    Ok(found)
}

/// The manifest made for one `manifest.json` entry (kept with the source's synthesized documents), and
/// its descriptor.
fn docker_manifest(
    source: &mut ArchiveSource<'_>,
    config: &DockerConfig,
    layers: Vec<Value>,
) -> Result<Descriptor> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": MT_DOCKER_CONFIG, "size": config.size, "digest": config.digest.to_string()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::archive("manifest.json", e.to_string()))?;
    let md = Digest::sha256_of(&manifest_bytes);
    let mut top = Descriptor::new(MT_DOCKER_MANIFEST, md.clone(), manifest_bytes.len() as u64);
    if let Some((pj, p)) = &config.platform {
        if let Some(o) = top.raw.as_object_mut() {
            o.insert("platform".into(), pj.clone());
        }
        top.platform = Some(p.clone());
    }
    source.synthesized.insert(md, manifest_bytes);
    Ok(top)
}

/// One image per `manifest.json` entry: one descriptor per tag, or one unnamed.
fn docker_found(top: Descriptor, entry: &DockerEntry, what: &str) -> Result<Found> {
    let mut entries = Vec::new();
    for tag in entry.repo_tags.iter().flatten() {
        let r = Reference::parse(tag).map_err(|e| Error::archive(what, e.to_string()))?;
        if let (Some(full), Some(t)) = (r.full_name(), r.tag.clone()) {
            let mut d = top.clone();
            d.set_annotations(BTreeMap::from([
                (ANNOTATION_IMAGE_NAME.to_string(), full),
                (ANNOTATION_REF_NAME.to_string(), t),
            ]));
            entries.push(d);
        }
    }
    if entries.is_empty() {
        entries.push(top.clone());
    }
    Ok(Found {
        top: entries.first().cloned().unwrap_or(top),
        entries,
    })
}

/// Passes bytes on to a writer, keeping the first two (gzip's magic) aside.
struct HeadCapture<'a, W: Write>(&'a mut Vec<u8>, W);

impl<W: Write> Write for HeadCapture<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() < 2 {
            let need = 2 - self.0.len();
            self.0.extend(buf.iter().take(need));
        }
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

fn head_is_gzip(ar: &Archive, e: &Entry) -> Result<bool> {
    let mut head = Vec::with_capacity(2);
    ar.open(e)?
        .take(2)
        .read_to_end(&mut head)
        .map_err(|err| Error::io(ar.label(), err))?;
    Ok(head == [0x1f, 0x8b])
}

/// Resolve a path named by `manifest.json` to a regular file inside the archive.
fn docker_path<'a>(ar: &'a Archive, path: &str, what: &str) -> Result<(String, &'a Entry)> {
    if path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(Error::archive(
            what,
            format!("path {path:?} leaves the archive"),
        ));
    }
    let norm: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let norm = norm.join("/");
    match ar.get(&norm)? {
        Some((n, e)) if e.kind == Kind::File => Ok((n.to_string(), e)),
        Some((n, _)) => Err(Error::archive(
            what,
            format!("path {path:?} resolves to {n:?}, which is not a regular file"),
        )),
        None => Err(Error::archive(
            what,
            format!("path {path:?} is not in the archive"),
        )),
    }
}

/// Load `input` into the store at `store_path` (created when missing), keeping only `platforms`.
///
/// # Errors
/// [`Error::InvalidPlatform`] before anything is read; [`Error::InvalidArchive`] for malformed, truncated
/// or unsafe archives; [`Error::PlatformNotFound`] when a listed platform is absent or incomplete in an
/// image; [`Error::DigestMismatch`] / [`Error::SizeMismatch`] for content that fails verification;
/// [`Error::Store`] for a malformed or locked store; [`Error::Io`]. On any error the store is unchanged.
pub fn load(
    input: Input,
    store_path: &Path,
    platforms: &[String],
    progress: &mut Progress,
) -> Result<LoadReport> {
    let matcher = Matcher::only(Platform::parse_list(platforms)?);
    let sink = StoreSink::open(store_path)?;
    run(sink, input, &matcher, progress)
}

/// One image of an archive, walked and selected: what [`run`] hands a [`Sink`].
pub struct Selected<'a> {
    /// The image's top-level descriptor and its `index.json` entries (its names).
    pub found: Found,
    /// How messages name the image: its first familiar name, else its digest.
    pub label: String,
    /// What the platform list selects of it: the walked tree, pruned (borrowed from the walk, dropped
    /// once the sink has taken what it keeps).
    pub sel: Selection<'a>,
}

/// Load `input` into `sink`, keeping what `matcher` selects: read the archive (spooling a stream where the
/// sink says), find its images, walk and select each one, check one size per digest across all of them,
/// then let the sink take the selections, write the blobs and publish the names. Everything before
/// [`Sink::write`] is the same for every sink.
///
/// # Errors
/// As [`load`]; the sink's errors.
pub fn run<S: Sink>(
    mut sink: S,
    input: Input,
    matcher: &Matcher,
    progress: &mut Progress,
) -> Result<LoadReport> {
    let archive = Archive::read(input, sink.spool())?;
    let mut source = ArchiveSource::new(&archive);
    let found = if sink.keeps_hashed_layers() {
        find_images(&mut source, Some(sink.spool()))?
    } else {
        find_images(&mut source, None)?
    };
    // Each image goes to the sink as soon as it is selected, and its walked tree (parsed documents) is
    // dropped once the sink took what it keeps: memory holds one tree at a time, not one per image.
    let mut sizes = OneSizePerDigest::default();
    for f in found {
        let label = f
            .entries
            .iter()
            .find_map(Descriptor::full_name)
            .map_or_else(|| f.top.digest.to_string(), |n| reference::familiar(&n));
        let image = walk::walk(&source, &f.top)?;
        let sel = walk::select(&image, matcher, &label, |r| {
            Error::archive(archive.label(), r)
        })?;
        sizes.check(&sel, archive.label())?;
        sink.add(Selected {
            found: f,
            label,
            sel,
        })?;
    }
    drop(sizes);
    sink.write(&source, progress)?;
    sink.publish()
}

/// One digest, one size, across every image of an archive (within one image [`walk::select`] checks it
/// too).
#[derive(Default)]
struct OneSizePerDigest(HashMap<Digest, u64>);

impl OneSizePerDigest {
    /// Check one more image's blobs against those of the images before it.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] naming the digest and both sizes.
    fn check(&mut self, sel: &Selection<'_>, label: &str) -> Result<()> {
        for d in sel.blobs() {
            match self.0.get(&d.digest) {
                Some(&size) if size != d.size => {
                    return Err(Error::SizeMismatch {
                        digest: d.digest.to_string(),
                        location: format!("descriptors in {label}"),
                        expected: size,
                        found: d.size.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    self.0.insert(d.digest.clone(), d.size);
                }
            }
        }
        Ok(())
    }
}

/// A store directory as load's [`Sink`]: blobs staged in an [`Ingest`] (a stream spooled straight into
/// it), then committed with `index.json` replaced last under the store lock; dropped uncommitted, it
/// leaves the store as it was.
pub struct StoreSink {
    store: Store,
    ingest: Ingest,
    /// What each image's commit and report need; its walked tree and descriptors are not kept.
    images: Vec<Kept>,
    written: usize,
    present: usize,
    bytes: u64,
}

/// One image as the store sink keeps it from [`Sink::add`] to the commit: its `index.json` entries (its
/// names), the digest and size of each blob to write, and what the report says of it.
struct Kept {
    /// The top-level descriptor's digest and media type.
    digest: Digest,
    media_type: String,
    /// The image's `index.json` entries.
    entries: Vec<Descriptor>,
    /// Every blob it needs, each once.
    blobs: Box<[Blob]>,
    platforms: Vec<String>,
    /// Platforms listed but absent, then those the platform list left out.
    absent: Vec<String>,
    attestations: usize,
    foreign: Vec<Digest>,
}

impl Kept {
    fn new(found: Found, sel: &Selection<'_>) -> Kept {
        Kept {
            digest: found.top.digest,
            media_type: found.top.media_type,
            entries: found.entries,
            blobs: sel.blobs().into_iter().map(Blob::from).collect(),
            platforms: sel.platforms(),
            absent: [sel.absent(), sel.left_out()].concat(),
            attestations: sel.attestations(),
            foreign: sel.foreign(),
        }
    }
}

impl StoreSink {
    /// A sink into the store at `path`, created when missing (a staging directory is made in it now).
    ///
    /// # Errors
    /// As [`Store::open_or_new`] and [`Store::ingest`].
    pub fn open(path: &Path) -> Result<StoreSink> {
        let store = Store::open_or_new(path)?;
        let ingest = store.ingest()?;
        Ok(StoreSink {
            store,
            ingest,
            images: Vec::new(),
            written: 0,
            present: 0,
            bytes: 0,
        })
    }

    /// The blobs the images need that the store lacks, each once; blobs it has are relied on (they
    /// must still be there at commit) and counted present.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] when the store holds a blob of another size than the archive says;
    /// [`Error::Store`] / [`Error::Io`] when a blob path cannot be examined.
    fn missing<'a>(&mut self, images: &'a [Kept]) -> Result<Vec<&'a Blob>> {
        let mut seen = HashSet::new();
        let mut missing = Vec::new();
        // A new store has no blob directory: nothing to look for, blob by blob.
        let mut dirs: Vec<(Algorithm, bool)> = Vec::new();
        for d in images.iter().flat_map(|k| k.blobs.iter()) {
            if !seen.insert(&d.digest) {
                continue;
            }
            let alg = d.digest.algorithm();
            let has_dir = match dirs.iter().find(|(a, _)| *a == alg) {
                Some(&(_, has)) => has,
                None => {
                    let has = self.store.has_blob_dir(alg)?;
                    dirs.push((alg, has));
                    has
                }
            };
            let existing = if has_dir {
                self.store.existing_blob(&d.digest)?
            } else {
                None
            };
            match existing {
                Some(size) if size != d.size => {
                    return Err(Error::SizeMismatch {
                        digest: d.digest.to_string(),
                        location: self.store.blob_path(&d.digest).display().to_string(),
                        expected: d.size,
                        found: size.to_string(),
                    })
                }
                Some(_) => {
                    self.present += 1;
                    self.ingest.rely_on(d.digest.clone());
                }
                None => missing.push(d),
            }
        }
        Ok(missing)
    }

    /// Copy blobs held in ranges of a seekable archive file into staging files by the kernel, on every
    /// core ([`copy::copy_verified_all`]), and stage each with what its copy proved. Each batch names
    /// its blobs for messages only while it is copied.
    ///
    /// # Errors
    /// As [`copy::copy_verified_all`]; [`Error::Io`] when a staging file cannot be made.
    fn copy_ranges(
        &mut self,
        ranged: &[(&Blob, &std::fs::File, u64)],
        source: &ArchiveSource<'_>,
        progress: &mut Progress,
    ) -> Result<()> {
        let files = self
            .ingest
            .blob_files(ranged.iter().map(|(d, _, _)| d.digest.algorithm()))?;
        let create = |batch: &[(&Blob, &std::fs::File, u64)]| -> Result<Vec<_>> {
            batch
                .iter()
                .map(|(d, _, _)| files.create(&d.digest))
                .collect()
        };
        let mut batches = ranged.chunks(OPEN_BLOBS);
        // Creating files in one directory is the kernel's serial part of a load of many small blobs:
        // the next batch's staging files are made on a second thread while this batch is copied.
        std::thread::scope(|scope| {
            let mut next = batches.next().map(|b| (b, scope.spawn(move || create(b))));
            while let Some((batch, made)) = next.take() {
                let staging = made
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                next = batches.next().map(|b| (b, scope.spawn(move || create(b))));
                self.copy_batch(batch, &staging, source, progress)?;
            }
            Ok(())
        })
    }

    /// Copy one batch of blobs into their staging files ([`copy::copy_verified_all`]) and stage each
    /// with what its copy proved.
    ///
    /// # Errors
    /// As [`copy::copy_verified_all`].
    fn copy_batch(
        &mut self,
        batch: &[(&Blob, &std::fs::File, u64)],
        staging: &[(PathBuf, std::fs::File)],
        source: &ArchiveSource<'_>,
        progress: &mut Progress,
    ) -> Result<()> {
        let locations = batch
            .iter()
            .map(|(d, _, _)| source.location(&d.digest))
            .collect::<Result<Vec<_>>>()?;
        let jobs: Vec<copy::Job<'_>> = batch
            .iter()
            .zip(staging)
            .zip(&locations)
            .map(|(((d, file, offset), (tmp, dst)), location)| copy::Job {
                src: file,
                src_offset: *offset,
                dst,
                dst_offset: 0,
                size: d.size,
                digest: &d.digest,
                location,
                dest: tmp,
            })
            .collect();
        // `true`: the pool starts the writeback of each large staging file as it copies.
        let proofs = copy::copy_verified_all(&jobs, true, progress)?;
        drop(jobs);
        for ((tmp, _), proof) in staging.iter().zip(proofs) {
            self.ingest.stage_written(tmp, proof)?;
        }
        Ok(())
    }
}

impl Sink for StoreSink {
    fn spool(&mut self) -> &mut dyn Spool {
        &mut self.ingest
    }

    fn keeps_hashed_layers(&self) -> bool {
        true
    }

    fn add(&mut self, image: Selected<'_>) -> Result<()> {
        // Writing and publishing need the selection's blob digests and sizes and its platforms, not
        // its tree.
        self.images.push(Kept::new(image.found, &image.sel));
        Ok(())
    }

    fn write(&mut self, source: &ArchiveSource<'_>, progress: &mut Progress) -> Result<()> {
        // The images are lent to the copy (borrowed records, not a copy of each) and kept after.
        let images = std::mem::take(&mut self.images);
        let written = self.write_images(&images, source, progress);
        self.images = images;
        written
    }

    fn publish(self) -> Result<LoadReport> {
        self.publish_images()
    }
}

impl StoreSink {
    /// Blobs in a seekable archive file are copied by the kernel on every core; the rest (documents,
    /// spooled streams, in-memory archives) one by one.
    fn write_images(
        &mut self,
        images: &[Kept],
        source: &ArchiveSource<'_>,
        progress: &mut Progress,
    ) -> Result<()> {
        let missing = self.missing(images)?;
        progress.start(missing.iter().fold(0u64, |t, d| t.saturating_add(d.size)));
        let mut ranged = Vec::new();
        for &d in &missing {
            if self.ingest.is_staged(&d.digest) {
                continue;
            }
            match source.file_range(d)? {
                Some((file, offset)) => ranged.push((d, file, offset)),
                None => source.stage(d, &mut self.ingest, progress)?,
            }
        }
        self.copy_ranges(&ranged, source, progress)?;
        self.written = missing.len();
        self.bytes = missing.iter().fold(0u64, |t, d| t.saturating_add(d.size));
        progress.finish()
    }

    fn publish_images(self) -> Result<LoadReport> {
        let StoreSink {
            store,
            ingest,
            images: kept,
            written,
            present,
            bytes,
            ..
        } = self;
        let index_path = store.root().join("index.json");
        let images = ingest.commit(|index| {
            let mut out = Vec::new();
            let mut merge = Merge::new(index);
            for k in kept {
                let moved = merge
                    .add(&k.entries)
                    .map_err(|r| Error::store(&index_path, r))?;
                out.push(LoadedImage {
                    names: walk::familiar_names(&k.entries),
                    digest: k.digest,
                    media_type: k.media_type,
                    platforms: k.platforms,
                    absent: k.absent,
                    attestations: k.attestations,
                    moved,
                    foreign: k.foreign,
                });
            }
            merge.finish();
            Ok(out)
        })?;
        Ok(LoadReport {
            images,
            blobs_written: written,
            blobs_present: present,
            blobs_mounted: 0,
            bytes_written: bytes,
        })
    }
}

fn name_key(d: &Descriptor) -> Option<String> {
    stored_name(
        d.annotation(ANNOTATION_IMAGE_NAME),
        d.annotation(ANNOTATION_REF_NAME),
    )
}

/// The one name an entry with these annotations holds in a store (see [`reference::entry_names`]).
fn stored_name(image_name: Option<&str>, ref_name: Option<&str>) -> Option<String> {
    reference::entry_names(image_name, ref_name)
        .into_iter()
        .next()
}

fn entry_key(e: &IndexEntry) -> Option<String> {
    stored_name(e.image_name.as_deref(), e.ref_name.as_deref())
}

/// Names merged into `index.json` under the store lock, image by image, in time linear in the entries
/// of the index and of every image (names are looked up, not searched for).
struct Merge<'a> {
    index: &'a mut Entries,
    /// Which entries hold each name.
    holders: HashMap<String, Vec<usize>>,
    /// Which (digest, name) pairs are listed.
    listed: HashSet<(Digest, Option<String>)>,
}

impl<'a> Merge<'a> {
    fn new(index: &'a mut Entries) -> Merge<'a> {
        let mut holders: HashMap<String, Vec<usize>> = HashMap::new();
        let mut listed = HashSet::new();
        for (i, e) in index.iter().enumerate() {
            let key = entry_key(e);
            if let Some(k) = &key {
                holders.entry(k.clone()).or_default().push(i);
            }
            listed.insert((e.digest.clone(), key));
        }
        Merge {
            index,
            holders,
            listed,
        }
    }

    /// Add `entries` (one image): a name that pointed at another image moves here, and that image stays
    /// as an unnamed entry; entries already there are not duplicated. Returns the moved names.
    ///
    /// # Errors
    /// A reason string when an entry that loses its name is not a descriptor.
    fn add(&mut self, entries: &[Descriptor]) -> std::result::Result<Vec<String>, String> {
        let mut moved = Vec::new();
        for new in entries {
            let key = name_key(new);
            if let Some(k) = &key {
                // The name leaves every other image that holds it.
                let mut leaving = Vec::new();
                if let Some(list) = self.holders.get_mut(k) {
                    let index = &*self.index;
                    list.retain(|&i| {
                        let other = index.get(i).is_some_and(|e| e.digest != new.digest);
                        if other {
                            leaving.push(i);
                        }
                        !other
                    });
                }
                for i in leaving {
                    self.index.unname(i)?;
                    let Some(e) = self.index.get(i) else { continue };
                    moved.push(reference::familiar(k));
                    self.listed.remove(&(e.digest.clone(), key.clone()));
                    self.listed.insert((e.digest.clone(), None));
                }
            }
            if self.listed.insert((new.digest.clone(), key.clone())) {
                if let Some(k) = key {
                    self.holders.entry(k).or_default().push(self.index.len());
                }
                self.index.push(new);
            }
        }
        moved.sort();
        moved.dedup();
        Ok(moved)
    }

    /// Drop redundant unnamed entries: one is kept only when its digest has no named entry and it is the
    /// first unnamed one of that digest.
    fn finish(self) {
        let named: HashSet<&Digest> = self
            .listed
            .iter()
            .filter_map(|(d, k)| k.as_ref().map(|_| d))
            .collect();
        let mut first_unnamed: HashSet<Digest> = HashSet::new();
        self.index.retain(|e| {
            entry_key(e).is_some()
                || (!named.contains(&e.digest) && first_unnamed.insert(e.digest.clone()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(index: &mut Entries, entries: &[Descriptor]) -> Vec<String> {
        let mut m = Merge::new(index);
        let moved = m.add(entries).unwrap();
        m.finish();
        moved
    }

    fn index_of(entries: &[Descriptor]) -> Entries {
        let mut index = Entries::new_index();
        entries.iter().for_each(|d| index.push(d));
        index
    }

    fn entry(seed: &str, name: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(walk::MT_OCI_INDEX, Digest::sha256_of(seed.as_bytes()), 1);
        if let Some(n) = name {
            d.set_annotations(BTreeMap::from([
                (
                    ANNOTATION_IMAGE_NAME.to_string(),
                    format!("docker.io/library/{n}"),
                ),
                (ANNOTATION_REF_NAME.to_string(), "1".to_string()),
            ]));
        }
        d
    }

    fn names(index: &Entries) -> Vec<(String, Option<String>)> {
        index
            .iter()
            .map(|e| (e.digest.hex()[..6].to_string(), entry_key(e)))
            .collect()
    }

    #[test]
    fn merge_moves_names_and_drops_redundant_unnamed_entries() {
        let mut index = index_of(&[
            entry("a", None),
            entry("b", Some("app:1")),
            entry("c", None),
            entry("c", None),
            entry("d", None),
        ]);
        // `app:1` moves from b to c; b stays unnamed; c's unnamed entries go (c is named now); d stays.
        let moved = merge(&mut index, &[entry("c", Some("app:1"))]);
        assert_eq!(moved, ["app:1"]);
        let hex = |s: &str| Digest::sha256_of(s.as_bytes()).hex()[..6].to_string();
        assert_eq!(
            names(&index),
            [
                (hex("a"), None),
                (hex("b"), None),
                (hex("d"), None),
                (hex("c"), Some("docker.io/library/app:1".to_string())),
            ]
        );
        // Loading the same again changes nothing.
        let before = names(&index);
        assert!(merge(&mut index, &[entry("c", Some("app:1"))]).is_empty());
        assert_eq!(names(&index), before);
        // An unnamed image already present is not listed twice.
        merge(&mut index, &[entry("a", None)]);
        assert_eq!(names(&index), before);
    }

    #[test]
    fn merge_of_many_names_moves_each_once_and_keeps_the_order() {
        let owned: Vec<String> = (0..100).map(|i| format!("n{i}:1")).collect();
        let mut old: Vec<Descriptor> = owned.iter().map(|n| entry("old", Some(n))).collect();
        old.push(entry("other", Some("keep:1")));
        let mut index = index_of(&old);
        // The new image takes n50..n149: fifty names move, fifty are new; n0..n49 stay on "old".
        let new: Vec<Descriptor> = (50..150)
            .map(|i| entry("new", Some(&format!("n{i}:1"))))
            .collect();
        let moved = merge(&mut index, &new);
        let mut want: Vec<String> = (50..100).map(|i| format!("n{i}:1")).collect();
        want.sort();
        assert_eq!(moved, want);
        let hex = |s: &str| Digest::sha256_of(s.as_bytes()).hex()[..6].to_string();
        let full = |i: usize| Some(format!("docker.io/library/n{i}:1"));
        let mut expected: Vec<(String, Option<String>)> =
            (0..50).map(|i| (hex("old"), full(i))).collect();
        expected.push((hex("other"), Some("docker.io/library/keep:1".into())));
        expected.extend((50..150).map(|i| (hex("new"), full(i))));
        assert_eq!(names(&index), expected);
        // Merging the same again changes nothing; a name listed twice in one archive is listed once.
        assert!(merge(&mut index, &new).is_empty());
        assert!(merge(&mut index, &new[..1]).is_empty());
        assert_eq!(names(&index), expected);
    }
}
