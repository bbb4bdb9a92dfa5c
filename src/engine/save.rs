//! `save`: resolve references in a store or a registry, select platforms, and write one deterministic archive that is
//! at once an OCI image layout and a Docker archive (`manifest.json`). Every blob is re-hashed as it is
//! copied; nothing is written before every reference, platform and shape has been checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::archive::gzip::ParallelGzip;
use super::archive::read;
use super::archive::write::{header_bytes, padding, TarWriter, MODE_BLOB, MODE_DIR, MODE_JSON};
use super::archive::Compression;
use super::content::{Origin, Source, StoreSource};
use super::copy;
use super::digest::{self, Digest};
use super::error::{Error, IoContext, Result};
use super::platform::{Matcher, Platform};
use super::reference::{Reference, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::store::{entry_display_names, OCI_LAYOUT};
use super::walk::{self, Descriptor, Kept, Selection, MT_OCI_INDEX};
use super::Progress;

/// How each image's top-level descriptor is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IndexShape {
    /// The store's own top-level descriptor and index blob, unchanged (sparse when filtered).
    #[default]
    Keep,
    /// A new index listing only what is saved (the platforms, their attestations, entries without a
    /// platform); the store's own when nothing is left out.
    Subset,
    /// The single selected platform manifest as the image itself.
    Manifest,
}

impl std::str::FromStr for IndexShape {
    type Err = Error;

    /// `keep`, `subset` or `manifest`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other value.
    fn from_str(s: &str) -> Result<IndexShape> {
        match s {
            "keep" => Ok(IndexShape::Keep),
            "subset" => Ok(IndexShape::Subset),
            "manifest" => Ok(IndexShape::Manifest),
            _ => Err(Error::InvalidArgument(format!(
                "index must be 'keep', 'subset' or 'manifest', not {s:?}"
            ))),
        }
    }
}

/// What to save.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// References to save, as typed (names, `name@digest`, digests or digest prefixes).
    pub refs: Vec<String>,
    /// Platform specifiers (each may list several, comma-separated); empty for every platform.
    pub platforms: Vec<String>,
    /// Which top-level document each image gets (`keep`, `subset`, `manifest`).
    pub index: IndexShape,
    /// The platform whose manifest `manifest.json` describes first; default the host's.
    pub prefer: Option<String>,
    /// Compression of the whole archive stream (`gzip` or `zstd`), or none.
    pub compression: Option<Compression>,
}

/// One image written by save.
#[derive(Clone, Debug, Serialize)]
pub struct SavedImage {
    /// Familiar names (`alpine:3.20`); empty when saved by digest.
    pub names: Vec<String>,
    /// Digest of the top-level descriptor written.
    pub digest: Digest,
    /// The store's digest, when the written one differs (`subset`, `manifest`).
    pub original_digest: Option<Digest>,
    /// Media type of the top-level descriptor written.
    pub media_type: String,
    /// Platforms saved, as the image writes them.
    pub platforms: Vec<String>,
    /// Platforms the written index lists without their content (a sparse archive): those the store lacks
    /// and those the platform list left out, with `IndexShape::Keep`; empty for the other shapes.
    pub absent: Vec<String>,
    /// Attestation manifests saved with those platforms.
    pub attestations: usize,
}

/// What save wrote.
#[derive(Clone, Debug, Serialize)]
pub struct SaveReport {
    /// Every image saved, in the order of the references.
    pub images: Vec<SavedImage>,
    /// Distinct blobs in the archive.
    pub blobs: usize,
    /// Bytes of those blobs.
    pub blob_bytes: u64,
    /// Bytes of the tar archive, before any compression.
    pub archive_bytes: u64,
}

/// Where a blob's bytes come from. Per blob the plan keeps only its digest and size (in [`Plan::blobs`])
/// and this: a source blob is opened by its lean descriptor (media type, digest, size) when it is
/// written, so that thousands of images do not hold their parsed descriptors until the end.
// Nearly every blob is a `Source`: boxing it would add an allocation per blob to save nothing.
#[allow(clippy::large_enum_variant)]
enum Content {
    Source(Origin, Descriptor),
    Memory(Vec<u8>),
}

struct Plan {
    images: Vec<SavedImage>,
    index_entries: Vec<Value>,
    manifest_json: Vec<DockerEntry>,
    /// Every blob, by digest: digests order as their entry names (`blobs/<alg>/<hex>`) do.
    blobs: BTreeMap<Digest, (u64, Content)>,
}

/// An entry of Docker's `manifest.json`.
#[derive(Serialize)]
struct DockerEntry {
    /// The image manifest the entry describes: one entry per distinct manifest.
    #[serde(skip)]
    manifest: Digest,
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Save `opts.refs` from the store at `store` into `out`.
///
/// # Errors
/// [`Error::InvalidPlatform`], [`Error::InvalidReference`], [`Error::ImageNotFound`],
/// [`Error::AmbiguousReference`], [`Error::PlatformNotFound`], [`Error::InvalidArgument`] (a shape that
/// cannot be written) before anything is written; then [`Error::DigestMismatch`] / [`Error::SizeMismatch`]
/// for a store blob that fails verification, [`Error::Store`] for a malformed store, [`Error::Io`].
pub fn save<W: Write>(
    store: &Path,
    opts: &SaveOptions,
    out: W,
    dest: &Path,
    progress: &mut Progress,
) -> Result<(SaveReport, W)> {
    let store = StoreSource::open(store)?;
    save_from(&store, opts, out, dest, progress)
}

/// Save `opts.refs` from `source` (a store directory or a registry) into `out`.
///
/// # Errors
/// As [`save`], with the source's errors (a registry's [`Error::Registry`]).
pub fn save_from<W: Write>(
    source: &dyn Source,
    opts: &SaveOptions,
    out: W,
    dest: &Path,
    progress: &mut Progress,
) -> Result<(SaveReport, W)> {
    let plan = plan(source, opts)?;
    write(source, plan, opts.compression, out, dest, progress)
}

/// Save to a path. A regular file (or a path that does not exist yet) is written to a temporary file
/// beside it and renamed on success; on failure no file is left. A path that exists and is not a regular
/// file (a character or block device, a FIFO, `/dev/fd/N`, a link to one) is written into directly, as
/// `/dev/stdout` is; partial output there cannot be taken back.
///
/// # Errors
/// As [`save`]; [`Error::InvalidArgument`] for an output inside the store being read; [`Error::Io`] naming
/// `path` (`EISDIR` for a directory).
pub fn save_to_path(
    store: &Path,
    opts: &SaveOptions,
    path: &Path,
    progress: &mut Progress,
) -> Result<SaveReport> {
    save_from_to_path(&StoreSource::open(store)?, opts, path, progress)
}

/// Save from `source` (a store directory or a registry) to a file, as [`save_to_path`].
///
/// # Errors
/// As [`save_to_path`], with the source's errors.
pub fn save_from_to_path(
    source: &dyn Source,
    opts: &SaveOptions,
    path: &Path,
    progress: &mut Progress,
) -> Result<SaveReport> {
    if let Some(root) = source.directory() {
        refuse_inside_store(root, path)?;
    }
    let plan = plan(source, opts)?;
    match output_kind(path)? {
        OutputKind::Direct { truncate } => {
            let file = OpenOptions::new()
                .write(true)
                .truncate(truncate)
                .open(path)
                .at(path)?;
            let out = BufWriter::with_capacity(digest::COPY_BUFFER, file);
            let (report, w) = write(source, plan, opts.compression, out, path, progress)?;
            w.into_inner()
                .map_err(|e| Error::io(path, e.into_error()))?;
            Ok(report)
        }
        OutputKind::Replace => replace_file(source, plan, opts.compression, path, progress),
    }
}

/// How an output path is written.
enum OutputKind {
    /// Into the existing file (a device, a FIFO, a descriptor), truncated first when it is a regular file.
    Direct { truncate: bool },
    /// Through a temporary file beside it, renamed over it.
    Replace,
}

/// Whether `path` is written directly or replaced.
///
/// # Errors
/// [`Error::Io`] with `EISDIR` for a directory; [`Error::Io`] when `path` cannot be examined.
fn output_kind(path: &Path) -> Result<OutputKind> {
    let Some(meta) = super::fs::metadata_if_exists(path)? else {
        return Ok(OutputKind::Replace);
    };
    if meta.is_dir() {
        return Err(Error::io(path, io::Error::from_raw_os_error(libc::EISDIR)));
    }
    if !meta.is_file() {
        return Ok(OutputKind::Direct { truncate: false });
    }
    // `/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N` name an open descriptor, even when it is a regular
    // file: replacing the link would not reach the descriptor (and would break `/dev`).
    if through_descriptor(path) {
        return Ok(OutputKind::Direct { truncate: true });
    }
    Ok(OutputKind::Replace)
}

/// Whether `path`, or a link on its way to the file it names, is a `/proc/…/fd/N` or `/dev/fd/N` link.
fn through_descriptor(path: &Path) -> bool {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        if p.starts_with("/proc") || p.starts_with("/dev/fd") {
            return true;
        }
        match fs::read_link(&p) {
            Ok(target) => {
                p = match p.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Refuse an output path inside the store being read (`-o STORE/index.json` would destroy the store).
///
/// # Errors
/// [`Error::InvalidArgument`] naming both paths.
fn refuse_inside_store(store: &Path, path: &Path) -> Result<()> {
    let Ok(root) = super::fs::canonicalize(store) else {
        return Ok(());
    };
    let resolved = super::fs::canonicalize(path).or_else(|_| {
        super::fs::canonicalize(parent_dir(path))
            .map(|d| d.join(path.file_name().unwrap_or_default()))
    });
    match resolved {
        Ok(out) if out.starts_with(&root) => Err(Error::InvalidArgument(format!(
            "output {} is inside the store {} being read",
            path.display(),
            store.display()
        ))),
        _ => Ok(()),
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write the archive to a temporary file beside `path`, then rename it over `path`; on failure the
/// temporary file is removed.
///
/// # Errors
/// As [`save`], plus [`Error::Io`] naming `path`.
fn replace_file(
    source: &dyn Source,
    plan: Plan,
    compression: Option<Compression>,
    path: &Path,
    progress: &mut Progress,
) -> Result<SaveReport> {
    let dir = parent_dir(path);
    let name = path.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("output {} is not a file name", path.display()))
    })?;
    // An unpredictable name, created new (never through a planted link), removed on drop.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.ocitar-", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .at(path)?;
    let report = match compression {
        None => write_file(source, plan, tmp.as_file(), path, progress)?,
        Some(_) => {
            let out = BufWriter::with_capacity(digest::COPY_BUFFER, tmp.as_file());
            let (report, w) = write(source, plan, compression, out, path, progress)?;
            w.into_inner()
                .map_err(|e| Error::io(path, e.into_error()))?;
            report
        }
    };
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(report)
}

/// A blob to write (a lean descriptor), with its bytes when they are not in the store (a rewritten
/// index).
type PlannedBlob = (Descriptor, Option<Vec<u8>>);

struct Request {
    entry: Descriptor,
    origin: Origin,
    names: Vec<Reference>,
}

fn plan(source: &dyn Source, opts: &SaveOptions) -> Result<Plan> {
    let matcher = Matcher::only(Platform::parse_list(&opts.platforms)?);
    let prefer = match &opts.prefer {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    if opts.refs.is_empty() {
        return Err(Error::InvalidArgument("no image reference given".into()));
    }
    let mut requests: Vec<Request> = Vec::new();
    for typed in &opts.refs {
        let (mut r, entry, origin) = source.resolve(typed)?;
        // Matched only through a raw `ref.name` (`img0`): the image's own full name, when it has one, is
        // the name to write.
        if let Some(own) = entry.annotation(ANNOTATION_IMAGE_NAME) {
            let matched_by_name = r.full_name().is_some_and(|full| {
                crate::engine::reference::entry_names(Some(own), None).contains(&full)
            });
            if !matched_by_name && r.digest.is_none() {
                if let Ok(own) = Reference::parse(own) {
                    r = own;
                }
            }
        }
        let pos = match requests.iter().position(|q| q.entry.digest == entry.digest) {
            Some(i) => i,
            None => {
                requests.push(Request {
                    entry,
                    origin,
                    names: Vec::new(),
                });
                requests.len() - 1
            }
        };
        if let Some(req) = requests
            .get_mut(pos)
            .filter(|q| r.tag.is_some() && !q.names.contains(&r))
        {
            req.names.push(r);
        }
    }
    let mut plan = Plan {
        images: Vec::new(),
        index_entries: Vec::new(),
        manifest_json: Vec::new(),
        blobs: BTreeMap::new(),
    };
    for req in &requests {
        let label = req
            .names
            .first()
            .and_then(Reference::familiar_name)
            .or_else(|| entry_display_names(&req.entry).into_iter().next())
            .unwrap_or_else(|| req.entry.digest.to_string());
        let image = walk::walk(source.blobs(req.origin), &req.entry)?;
        let sel = walk::select(&image, &matcher, &label, |r| source.invalid(r))?;
        plan_image(&mut plan, req, &sel, opts.index, &prefer, &label)?;
    }
    check_entries(&plan)?;
    Ok(plan)
}

/// Refuse, before anything is written, an archive that load, inspect and verify would refuse for its
/// number of entries (its blobs, their directories and the three top-level files) or their names.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the count and the limit.
fn check_entries(plan: &Plan) -> Result<()> {
    let algorithms: HashSet<&str> = plan.blobs.keys().map(|d| d.algorithm().name()).collect();
    let n = plan.blobs.len() + algorithms.len() + 4; // blobs/, blobs/<alg>/, index.json, manifest.json, oci-layout
    let limit = read::max_entries();
    // What the reader's table costs for these entries: names and a fixed cost each.
    let names: usize = plan.blobs.keys().map(blob_name_len).sum::<usize>()
        + algorithms.iter().map(|a| a.len() + 7).sum::<usize>()
        + "blobs/index.jsonmanifest.jsonoci-layout".len();
    let metadata = (names as u64).saturating_add((n as u64).saturating_mul(read::ENTRY_COST));
    if n > limit || metadata > read::max_metadata(limit) {
        return Err(Error::InvalidArgument(format!(
            "the archive would hold {n} entries ({} blobs), more than load, inspect and verify read: {}; save fewer images per archive, or raise the limit where the archive is read too",
            plan.blobs.len(),
            read::entry_limit_text(limit)
        )));
    }
    Ok(())
}

/// Add one selected image to the plan in `shape`: its blobs, `index.json` descriptors and
/// `manifest.json` entry, and what the report says of it.
///
/// # Errors
/// As [`manifest_shape`].
fn plan_image(
    plan: &mut Plan,
    req: &Request,
    sel: &Selection<'_>,
    shape: IndexShape,
    prefer: &Platform,
    label: &str,
) -> Result<()> {
    let selected = sel.platform_manifests();
    let (top, blobs) = match shape {
        IndexShape::Keep => (
            req.entry.clone(),
            sel.blobs().into_iter().map(|d| (d.lean(), None)).collect(),
        ),
        IndexShape::Subset => subset_shape(req, sel),
        IndexShape::Manifest => manifest_shape(req, &selected, label)?,
    };
    let written_digest = top.digest.clone();
    for (d, mem) in blobs {
        let (digest, size) = (d.digest.clone(), d.size);
        let content = match mem {
            Some(bytes) => Content::Memory(bytes),
            None => Content::Source(req.origin, d),
        };
        plan.blobs.entry(digest).or_insert((size, content));
    }
    let familiar = add_index_entries(plan, req, &top);
    add_docker_entry(plan, &selected, prefer, &familiar);
    plan.images.push(SavedImage {
        names: familiar,
        original_digest: (written_digest != req.entry.digest).then(|| req.entry.digest.clone()),
        digest: written_digest,
        media_type: top.media_type.clone(),
        platforms: sel.platforms(),
        // The index written lists these without their content: every platform not saved, in the kept
        // shape; none in a subset or a single manifest.
        absent: if shape == IndexShape::Keep {
            [sel.absent(), sel.left_out()].concat()
        } else {
            Vec::new()
        },
        attestations: if shape == IndexShape::Manifest {
            0
        } else {
            sel.attestations()
        },
    });
    Ok(())
}

/// `subset`: the top-level descriptor of the rewritten index (the store's when nothing was left out) and
/// the blobs, rewritten indexes with their new bytes.
fn subset_shape(req: &Request, sel: &Selection<'_>) -> (Descriptor, Vec<PlannedBlob>) {
    let (top, mut rewritten) = subset(sel);
    let mut top_entry = req.entry.clone();
    top_entry.retarget(top.digest.clone(), top.size);
    let blobs = sel
        .blobs()
        .into_iter()
        .map(|d| match rewritten.remove(&d.digest) {
            Some((nd, bytes)) => (nd.lean(), Some(bytes)),
            None => (d.lean(), None),
        })
        .collect();
    (top_entry, blobs)
}

/// `manifest`: the one selected platform manifest as the image, with the entry's annotations and its
/// platform, and its blobs (foreign layers left out).
///
/// # Errors
/// [`Error::InvalidArgument`] when more or fewer than one platform is selected.
fn manifest_shape(
    req: &Request,
    selected: &[&walk::Manifest],
    label: &str,
) -> Result<(Descriptor, Vec<PlannedBlob>)> {
    let [m] = selected else {
        return Err(Error::InvalidArgument(format!(
            "index='manifest' writes one platform per image, but {} platforms of image {label} are selected ({}); choose one with platforms=",
            selected.len(),
            selected.iter().map(|m| m.platform_name()).collect::<Vec<_>>().join(", ")
        )));
    };
    let mut top = m.desc.clone();
    top.set_annotations(req.entry.annotations.clone());
    if let (Some(p), Some(obj)) = (&m.platform, top.raw.as_object_mut()) {
        if !obj.contains_key("platform") {
            obj.insert("platform".into(), p.to_json());
        }
    }
    let mut blobs = vec![(m.desc.lean(), None)];
    blobs.extend(m.blobs_there().map(|d| (d.lean(), None)));
    Ok((top, blobs))
}

/// `index.json`: one descriptor per requested name, or one unnamed. Returns the familiar names.
fn add_index_entries(plan: &mut Plan, req: &Request, top: &Descriptor) -> Vec<String> {
    let mut base = top.annotations.clone();
    base.remove(ANNOTATION_IMAGE_NAME);
    base.remove(ANNOTATION_REF_NAME);
    let mut familiar = Vec::new();
    if req.names.is_empty() {
        let mut d = top.clone();
        d.set_annotations(base.clone());
        plan.index_entries.push(d.raw);
    }
    for r in &req.names {
        let (Some(full), Some(tag), Some(fam)) = (r.full_name(), r.tag.clone(), r.familiar_name())
        else {
            continue;
        };
        let mut a = base.clone();
        a.insert(ANNOTATION_IMAGE_NAME.into(), full);
        a.insert(ANNOTATION_REF_NAME.into(), tag);
        let mut d = top.clone();
        d.set_annotations(a);
        plan.index_entries.push(d.raw);
        familiar.push(fam);
    }
    familiar
}

/// `manifest.json`: the preferred platform among those saved, if it is an image with a config. Images
/// that share their described manifest share one entry, with all their names.
fn add_docker_entry(
    plan: &mut Plan,
    selected: &[&walk::Manifest],
    prefer: &Platform,
    familiar: &[String],
) {
    let Some(m) = selected
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| prefer.matches(p)))
        .or_else(|| selected.first())
    else {
        return;
    };
    let Some(c) = m
        .config
        .as_ref()
        .filter(|c| walk::is_image_config(&c.media_type))
    else {
        return;
    };
    match plan
        .manifest_json
        .iter_mut()
        .find(|e| e.manifest == m.desc.digest)
    {
        Some(e) => {
            for f in familiar {
                let tags = e.repo_tags.get_or_insert_with(Vec::new);
                if !tags.contains(f) {
                    tags.push(f.clone());
                }
            }
        }
        None => plan.manifest_json.push(DockerEntry {
            manifest: m.desc.digest.clone(),
            config: c.digest.blob_name(),
            repo_tags: (!familiar.is_empty()).then(|| familiar.to_vec()),
            layers: m.layers.iter().map(|l| l.digest.blob_name()).collect(),
        }),
    }
}

/// Indexes rewritten for `subset`, by their original digest: the new descriptor and bytes.
pub(crate) type Rewritten = BTreeMap<Digest, (Descriptor, Vec<u8>)>;

/// Rewrite the selection's indexes to list only kept content. Returns the top-level descriptor (the
/// image's own when nothing was left out) and the rewritten indexes.
pub(crate) fn subset(sel: &Selection<'_>) -> (Descriptor, Rewritten) {
    let kept = sel.kept();
    let mut out = BTreeMap::new();
    let top = sel
        .root
        .as_ref()
        .and_then(|root| rewrite(root, &kept, &mut out))
        .unwrap_or_else(|| sel.image.top.clone());
    (top, out)
}

/// Rewrite the index `n` (and the indexes below it) to list only entries whose content is kept anywhere
/// in the image. Returns its new descriptor when it (or anything below it) changed; the new documents go
/// into `out`.
fn rewrite(n: &Kept<'_>, kept: &HashSet<&Digest>, out: &mut Rewritten) -> Option<Descriptor> {
    let Kept::Index {
        desc,
        json,
        children,
        ..
    } = n
    else {
        return None;
    };
    let below: HashMap<&Digest, &Kept<'_>> =
        children.iter().map(|c| (&c.desc().digest, c)).collect();
    let mut changed = false;
    let mut list = Vec::new();
    for raw in json
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // The walk read every entry; an entry listed again, or walked under another index, is kept
        // as written when its content is kept.
        let Some(digest) = walk::listed_digest(raw) else {
            continue;
        };
        if !kept.contains(&digest) {
            changed = true;
            continue;
        }
        match below.get(&digest).and_then(|c| rewrite(c, kept, out)) {
            Some(nd) => {
                changed = true;
                let mut raw = raw.clone();
                walk::retarget_json(&mut raw, &nd.digest, nd.size);
                list.push(raw);
            }
            None => list.push(raw.clone()),
        }
    }
    if !changed {
        return None;
    }
    let mut doc = (*json).clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("manifests".into(), Value::Array(list));
    }
    let bytes = serde_json::to_vec(&doc).ok()?;
    let mut nd = (*desc).clone();
    nd.retarget(Digest::sha256_of(&bytes), bytes.len() as u64);
    out.insert(desc.digest.clone(), (nd.clone(), bytes));
    Some(nd)
}

/// The output stream, compressed or not.
enum Sink<W: Write> {
    Plain(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Sink<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Gzip(w) => w.finish(),
            Sink::Zstd(w) => w.finish(),
        }
    }
}

/// One archive entry, in write order.
enum Item<'p> {
    Dir(&'p str),
    File(&'p str, u32, &'p [u8]),
    Blob(&'p Digest, u64, &'p Content),
}

/// The top-level documents of an archive.
struct Documents {
    dirs: Vec<String>,
    index: Vec<u8>,
    manifest: Vec<u8>,
}

fn documents(plan: &Plan) -> Result<Documents> {
    let mut dirs: Vec<String> = vec!["blobs/".into()];
    for d in plan.blobs.keys() {
        let dir = format!("blobs/{}/", d.algorithm().name());
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": plan.index_entries,
    }))
    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let manifest = serde_json::to_vec(&plan.manifest_json)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(Documents {
        dirs,
        index,
        manifest,
    })
}

/// Every entry, names sorted bytewise: `blobs/`, each `blobs/<alg>/` followed by its blobs (digests order
/// as their names), then the three top-level files.
fn items<'p>(plan: &'p Plan, docs: &'p Documents) -> Vec<Item<'p>> {
    let mut out = Vec::with_capacity(plan.blobs.len() + docs.dirs.len() + 3);
    out.extend(docs.dirs.first().map(|d| Item::Dir(d.as_str())));
    let mut dir = None;
    for (digest, (size, content)) in &plan.blobs {
        let name = digest.algorithm().name();
        if dir != Some(name) {
            dir = Some(name);
            out.extend(
                docs.dirs
                    .iter()
                    .find(|d| {
                        d.strip_prefix("blobs/").and_then(|d| d.strip_suffix('/')) == Some(name)
                    })
                    .map(|d| Item::Dir(d.as_str())),
            );
        }
        out.push(Item::Blob(digest, *size, content));
    }
    out.push(Item::File("index.json", MODE_JSON, docs.index.as_slice()));
    out.push(Item::File(
        "manifest.json",
        MODE_JSON,
        docs.manifest.as_slice(),
    ));
    out.push(Item::File("oci-layout", MODE_BLOB, OCI_LAYOUT));
    out
}

/// The length of a blob's entry name, `blobs/<alg>/<hex>`.
fn blob_name_len(d: &Digest) -> usize {
    "blobs//".len() + d.algorithm().name().len() + d.hex().len()
}

/// Where a rewritten index's bytes come from, in errors.
const MEMORY_LOCATION: &str = "a rewritten index";

fn report(plan: Plan, archive_bytes: u64) -> SaveReport {
    SaveReport {
        blobs: plan.blobs.len(),
        blob_bytes: plan.blobs.values().map(|(s, _)| *s).sum(),
        images: plan.images,
        archive_bytes,
    }
}

/// Write the archive to `out` as a stream (compressed or not): each blob is read, hashed and written
/// in one pass, with the hashing on a second thread for large blobs.
fn write<W: Write>(
    source: &dyn Source,
    plan: Plan,
    compression: Option<Compression>,
    out: W,
    dest: &Path,
    progress: &mut Progress,
) -> Result<(SaveReport, W)> {
    let sink = match compression {
        None => Sink::Plain(out),
        // One gzip member (mtime 0, no file name) deflated in pieces cut at fixed offsets: the same bytes
        // whatever the number of threads.
        Some(Compression::Gzip) => Sink::Gzip(ParallelGzip::new(out, 6, copy::threads())),
        Some(Compression::Zstd) => Sink::Zstd(zstd::stream::write::Encoder::new(out, 3).at(dest)?),
        Some(other) => return Err(Compression::not_written(other.name())),
    };
    let docs = documents(&plan)?;
    progress.start(plan.blobs.values().map(|(s, _)| *s).sum());
    let mut tar = TarWriter::new(sink, dest);
    for item in items(&plan, &docs) {
        match item {
            Item::Dir(n) => tar.dir(n)?,
            Item::File(n, mode, bytes) => tar.file(n, mode, bytes)?,
            Item::Blob(digest, size, content) => {
                let mut tick = |k: u64| progress.advance(k);
                match content {
                    Content::Memory(bytes) => {
                        tar.blob(digest, size, bytes.as_slice(), MEMORY_LOCATION, &mut tick)?;
                    }
                    Content::Source(origin, desc) => {
                        let f = source.open(*origin, desc)?;
                        let loc = source.location(*origin, digest);
                        tar.blob(digest, size, f, &loc, &mut tick)?;
                    }
                }
            }
        }
    }
    let archive_bytes = tar.written() + 1024;
    let sink = tar.finish()?;
    let out = sink.finish().at(dest)?;
    progress.finish()?;
    Ok((report(plan, archive_bytes), out))
}

/// Write the uncompressed archive into the regular file `file` (opened for reading and writing): every
/// entry's offset is known in advance, so headers and documents are written in place and the source
/// copies the blobs to their offsets, each verified ([`Source::copy_into`]: kernel copies hashed as
/// written on every core for a store directory, parallel fetches for a registry). The bytes are those
/// [`write`] produces.
fn write_file(
    source: &dyn Source,
    plan: Plan,
    file: &fs::File,
    dest: &Path,
    progress: &mut Progress,
) -> Result<SaveReport> {
    let docs = documents(&plan)?;
    progress.start(plan.blobs.values().map(|(s, _)| *s).sum());
    // Bytes between blobs (headers, documents, padding), written at `pos` before the next blob.
    let mut pending: Vec<u8> = Vec::new();
    let mut pos = 0u64;
    let mut blobs: Vec<(Origin, &Descriptor, u64)> = Vec::new();
    let flush = |pending: &mut Vec<u8>, pos: &mut u64| -> Result<()> {
        file.write_all_at(pending, *pos).at(dest)?;
        *pos = pos.saturating_add(pending.len() as u64);
        pending.clear();
        Ok(())
    };
    for item in items(&plan, &docs) {
        match item {
            Item::Dir(n) => pending.extend(header_bytes(n, 0, MODE_DIR, tar::EntryType::Directory)),
            Item::File(n, mode, bytes) => {
                let len = bytes.len() as u64;
                pending.extend(header_bytes(n, len, mode, tar::EntryType::Regular));
                pending.extend_from_slice(bytes);
                pending.extend_from_slice(padding(len));
            }
            Item::Blob(digest, size, Content::Memory(bytes)) => {
                let len = bytes.len() as u64;
                let found = digest.algorithm().digest(bytes);
                digest::check(digest, size, &found, len, MEMORY_LOCATION)?;
                pending.extend(header_bytes(
                    &digest.blob_name(),
                    size,
                    MODE_BLOB,
                    tar::EntryType::Regular,
                ));
                pending.extend_from_slice(bytes);
                pending.extend_from_slice(padding(len));
                progress.advance(len).at(dest)?;
            }
            Item::Blob(digest, size, Content::Source(origin, desc)) => {
                pending.extend(header_bytes(
                    &digest.blob_name(),
                    size,
                    MODE_BLOB,
                    tar::EntryType::Regular,
                ));
                flush(&mut pending, &mut pos)?;
                blobs.push((*origin, desc, pos));
                pos = pos.saturating_add(size);
                pending.extend_from_slice(padding(size));
            }
        }
    }
    pending.extend_from_slice(&[0u8; 1024]);
    flush(&mut pending, &mut pos)?;
    source.copy_into(&blobs, file, dest, progress)?;
    progress.finish()?;
    Ok(report(plan, pos))
}
