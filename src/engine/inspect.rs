//! `inspect` and `verify`: what a store, an archive or a registry image holds, per image and platform,
//! read through the one walker and [`walk::Selection`]; `verify` (stores and archives) also re-hashes
//! every blob (in parallel) and checks every size and reference.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::archive::read::{Archive, Entry, Input, TempSpool};
use super::content::Source;
use super::digest::{self, Digest};
use super::document;
use super::error::{Error, IoContext, Result};
use super::fs;
use super::load::{find_images, ArchiveSource};
use super::platform::Matcher;
use super::reference::ANNOTATION_IMAGE_NAME;
use super::registry::{Registry, RegistrySource};
use super::store::{Store, MISSING_STORE, OCI_LAYOUT};
use super::walk::{self, BlobSource, Choice, Descriptor, Fate, Image, Kept, Node, Selection};
use super::Progress;

/// An image walked for an inventory: its familiar names and its tree.
struct Walked {
    names: Vec<String>,
    image: Image,
}

/// A config or layer a present manifest names, as verify checks it.
struct BlobRef {
    digest: Digest,
    size: u64,
    foreign: bool,
}

/// One platform of an image.
#[derive(Clone, Debug, Serialize)]
pub struct PlatformEntry {
    /// containerd's format (`linux/arm64/v8`, `windows(10.0.20348.2031)/amd64`), as the image writes it.
    pub platform: String,
    /// The platform manifest's digest.
    pub digest: Digest,
    /// Whether the manifest and all its blobs are there (false for a sparse archive's absent platforms).
    pub present: bool,
    /// Bytes of manifest, config and layers.
    pub size: u64,
    /// Layers the manifest lists.
    pub layers: usize,
    /// Digests of the attestation manifests that describe this platform.
    pub attestations: Vec<Digest>,
    /// Foreign layers (with `urls`) whose blobs are not there: not missing, fetched from their URLs.
    pub foreign: Vec<Digest>,
}

/// One image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageEntry {
    /// Familiar names (`alpine:3.20`).
    pub names: Vec<String>,
    /// Digest of the top-level descriptor.
    pub digest: Digest,
    /// Media type of the top-level descriptor (an index, a manifest list or a manifest).
    pub media_type: String,
    /// Its platforms, present or absent, in the order its indexes list them.
    pub platforms: Vec<PlatformEntry>,
    /// Bytes of every blob of the image that is present.
    pub size: u64,
}

/// What a store or archive holds.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// The path inspected, as given.
    pub path: String,
    /// `store`, `archive` or `registry`.
    pub kind: &'static str,
    /// For archives: `oci` (has index.json) or `docker` (manifest.json only).
    pub format: Option<&'static str>,
    /// For archives: the compression the file had (`gzip`, `zstd`, `xz`, `bzip2`), if any.
    pub compression: Option<&'static str>,
    /// Every image, one per top-level digest.
    pub images: Vec<ImageEntry>,
    /// Distinct blobs reachable from the images and present.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of blobs reachable from more than one image.
    pub shared_bytes: u64,
    /// Whether every blob was re-hashed (`verify`).
    pub verified: bool,
}

/// The sum of sizes, saturating: descriptor sizes come from the input and may be anything up to 2^64-1.
fn total(sizes: impl Iterator<Item = u64>) -> u64 {
    sizes.fold(0, u64::saturating_add)
}

/// Blobs of every image summarized so far: size and how many images hold each.
type Owners = HashMap<Digest, (u64, usize)>;

/// Build the inventory of walked images; an opaque blob an index lists counts only when `present(d)`.
fn summarize(
    path: &Path,
    kind: &'static str,
    images: &[Walked],
    present: &dyn Fn(&Descriptor) -> bool,
) -> Inventory {
    let mut owners = Owners::new();
    let entries = images
        .iter()
        .map(|w| image_entry(w, present, &mut owners))
        .collect();
    inventory(path, kind, entries, &owners)
}

fn inventory(
    path: &Path,
    kind: &'static str,
    images: Vec<ImageEntry>,
    owners: &Owners,
) -> Inventory {
    Inventory {
        path: path.display().to_string(),
        kind,
        format: None,
        compression: None,
        images,
        blobs: owners.len(),
        bytes: total(owners.values().map(|(s, _)| *s)),
        shared_bytes: total(owners.values().filter(|(_, n)| *n > 1).map(|(s, _)| *s)),
        verified: false,
    }
}

/// One image of the inventory; its present blobs are counted in `owners` (an opaque blob an index lists
/// only when `present(d)`).
fn image_entry(
    w: &Walked,
    present: &dyn Fn(&Descriptor) -> bool,
    owners: &mut Owners,
) -> ImageEntry {
    let image = &w.image;
    // Every platform, selectable or not: the image's size counts its blobs only when it passes
    // select's checks.
    let sel = Selection::new(image, &Matcher::all());
    let selectable = sel.check("", Error::InvalidArgument).is_ok();
    // The walk read every selected document and found every selected config and layer; only opaque
    // blobs an index lists are looked for here.
    let mut opaque = HashSet::new();
    if let Some(root) = &sel.root {
        root.each(&mut |n| {
            if let Kept::Blob(desc) = n {
                opaque.insert(&desc.digest);
            }
        });
    }
    let mut blobs: BTreeMap<&Digest, u64> = BTreeMap::new();
    blobs.insert(&image.top.digest, image.top.size);
    let counted = if selectable { sel.blobs() } else { Vec::new() };
    for d in counted
        .into_iter()
        .filter(|d| !opaque.contains(&d.digest) || present(d))
    {
        blobs.insert(&d.digest, d.size);
    }
    for (d, s) in &blobs {
        owners.entry((*d).clone()).or_insert((*s, 0)).1 += 1;
    }
    ImageEntry {
        names: w.names.clone(),
        digest: image.top.digest.clone(),
        media_type: image.top.media_type.clone(),
        platforms: platforms_of(&sel),
        size: total(blobs.values().copied()),
    }
}

/// An image's platforms, present or absent, in the order its indexes list them, each named as the image
/// writes it (containerd's format, `arm64/v8` kept as written), attestations left out.
fn platforms_of(sel: &Selection<'_>) -> Vec<PlatformEntry> {
    let mut attestations: HashMap<&Digest, Vec<Digest>> = HashMap::new();
    for c in &sel.choices {
        if let Node::Manifest(a) = c.node {
            if let Some(subject) = &a.attestation_of {
                attestations
                    .entry(subject)
                    .or_default()
                    .push(a.desc.digest.clone());
            }
        }
    }
    let row = |c: &Choice<'_>| {
        let d = c.node.desc();
        let mut row = PlatformEntry {
            platform: c.node.platform_shown(),
            digest: d.digest.clone(),
            present: c.fate == Fate::Kept,
            size: d.size,
            layers: 0,
            attestations: Vec::new(),
            foreign: Vec::new(),
        };
        if let Node::Manifest(m) = c.node {
            row.size = total(
                std::iter::once(d.size)
                    .chain(m.config.iter().chain(m.layers.iter()).map(|b| b.size)),
            );
            row.layers = m.layers.len();
            row.attestations = attestations.get(&d.digest).cloned().unwrap_or_default();
            row.foreign = m.foreign.clone();
        }
        row
    };
    sel.choices
        .iter()
        .filter(|c| !c.node.is_attestation())
        .map(row)
        .collect()
}

/// The configs and layers of an image's manifests, as verify checks them.
fn references(image: &Image) -> Vec<BlobRef> {
    image
        .manifests()
        .iter()
        .flat_map(|m| m.config.iter().chain(m.layers.iter()))
        .map(|b| BlobRef {
            digest: b.digest.clone(),
            size: b.size,
            foreign: b.is_foreign(),
        })
        .collect()
}

fn walk_all(source: &dyn BlobSource, groups: Vec<Vec<Descriptor>>) -> Result<Vec<Walked>> {
    groups
        .into_iter()
        .filter_map(|g| {
            let top = g.first()?.clone();
            let names = walk::familiar_names(&g);
            Some(walk::walk(source, &top).map(|image| Walked { names, image }))
        })
        .collect()
}

/// Walk each image (its familiar names and top-level descriptor), summarize it and drop its tree;
/// `refs` receives what verify checks of each.
fn summarize_each(
    source: &dyn BlobSource,
    images: impl Iterator<Item = Result<(Vec<String>, Descriptor)>>,
    mut refs: Option<&mut Vec<BlobRef>>,
) -> Result<(Vec<ImageEntry>, Owners)> {
    let mut owners = Owners::new();
    let mut out = Vec::new();
    for found in images {
        let (names, top) = found?;
        let image = walk::walk(source, &top)?;
        if let Some(refs) = refs.as_deref_mut() {
            refs.extend(references(&image));
        }
        let walked = Walked { names, image };
        out.push(image_entry(&walked, &|d| source.has_blob(d), &mut owners));
    }
    Ok((out, owners))
}

/// Which images of a store an inventory shows.
#[derive(Clone, Copy)]
enum Shown<'a> {
    /// Every image.
    All,
    /// The one image a reference names ([`Store::resolve`]), with every name the store gives it.
    One(&'a str),
    /// The images these names list ([`super::store::Entries::listed`]), each with the names that listed it.
    Listed(&'a [String]),
}

/// Inspect the images of a store that `shown` says one image at a time: each is walked, summarized and
/// dropped. `refs` receives what verify checks of each.
fn inspect_store(
    path: &Path,
    shown: Shown<'_>,
    refs: Option<&mut Vec<BlobRef>>,
) -> Result<(Store, Inventory)> {
    let store = Store::open(path)?;
    let entries = store.read_entries()?;
    let groups = match shown {
        Shown::All => entries.by_image(),
        Shown::One(typed) => {
            let (_, top) = store.resolve(&entries, typed)?;
            let mut groups = entries.by_image();
            groups.retain(|g| g.first().is_some_and(|e| e.digest == top.digest));
            groups
        }
        Shown::Listed(names) => entries.listed(names)?,
    };
    let images = groups.iter().filter_map(|g| {
        let first = g.first()?;
        let names = walk::familiar_names_of(
            g.iter()
                .map(|e| (e.image_name.as_deref(), e.ref_name.as_deref())),
        );
        let top = first
            .descriptor()
            .map_err(|r| Error::store(path.join("index.json"), r));
        Some(top.map(|top| (names, top)))
    });
    let (images, owners) = summarize_each(&store, images, refs)?;
    let inv = inventory(path, "store", images, &owners);
    Ok((store, inv))
}

/// One image of a store directory, as [`inspect`] shows it: the image `typed` names (a name, a digest or
/// a unique digest prefix), with every name the store gives it; only its documents are read.
///
/// # Errors
/// As [`inspect`]; [`Error::InvalidReference`], [`Error::ImageNotFound`], [`Error::AmbiguousReference`].
pub fn inspect_image(path: &Path, typed: &str) -> Result<Inventory> {
    missing_store(path)?;
    Ok(inspect_store(path, Shown::One(typed), None)?.1)
}

/// The images of a store directory that `names` list, as `docker image ls REPOSITORY[:TAG]` lists them
/// ([`super::store::Entries::listed`]: a repository lists every tag of it), each with the names that listed it; only
/// their documents are read. Names that list nothing give an inventory without images.
///
/// # Errors
/// As [`inspect`]; [`Error::InvalidReference`] for a name that is not a reference.
pub fn list_store(path: &Path, names: &[String]) -> Result<Inventory> {
    missing_store(path)?;
    Ok(inspect_store(path, Shown::Listed(names), None)?.1)
}

/// What a store directory or an archive file holds: images, platforms (present or absent), sizes.
/// Reads only JSON documents (and, for compressed archives, streams past the rest).
///
/// # Errors
/// [`Error::Store`] / [`Error::InvalidArchive`] for malformed input, digest errors for documents that do
/// not match, [`Error::Io`].
pub fn inspect(path: &Path) -> Result<Inventory> {
    missing_store(path)?;
    if fs::metadata_if_exists(path)?.is_some_and(|m| m.is_dir()) {
        return Ok(inspect_store(path, Shown::All, None)?.1);
    }
    let mut spool = TempSpool::new("ocitar-inspect-", true)?;
    let archive = Archive::read(Input::Path(path.to_path_buf()), &mut spool)?;
    inspect_archive(path, &archive)
}

/// A path that does not exist and is not named like an archive file (`.tar`, `.tgz`, `.gz`, `.zst`, …) is a
/// missing store; a missing archive file stays an [`Error::Io`] (not found) when it is opened.
///
/// # Errors
/// [`Error::Store`] naming `path` when it is a missing store.
fn missing_store(path: &Path) -> Result<()> {
    let archive_like = path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        [
            "tar", "tgz", "gz", "zst", "tzst", "xz", "txz", "bz2", "tbz2",
        ]
        .contains(&e.as_str())
    });
    if archive_like || fs::symlink_metadata_if_exists(path)?.is_some() {
        return Ok(());
    }
    Err(Error::store(path, MISSING_STORE))
}

/// What a registry holds under `typed` (`docker://REF` or `REF` resolved against the registry's base):
/// its platforms and sizes, read from manifests only (no layer is downloaded).
///
/// # Errors
/// [`Error::InvalidReference`], [`Error::ImageNotFound`], [`Error::Registry`],
/// [`Error::Authentication`], [`Error::DigestMismatch`] for a manifest that does not match its digest.
pub fn inspect_registry(registry: &Registry, typed: &str) -> Result<Inventory> {
    let refs = [typed.to_string()];
    let source = RegistrySource::open(registry, &refs)?;
    let (reference, mut top, origin) = source.resolve(typed)?;
    if let Some(name) = reference.full_name() {
        let mut a = BTreeMap::new();
        a.insert(ANNOTATION_IMAGE_NAME.to_string(), name);
        top.set_annotations(a);
    }
    let blobs = source.blobs(origin);
    let images = walk_all(blobs, vec![vec![top]])?;
    let shown = registry.target(typed)?.display();
    Ok(summarize(
        Path::new(&format!("docker://{shown}")),
        "registry",
        &images,
        &|d| blobs.has_blob(d),
    ))
}

fn inspect_archive(path: &Path, archive: &Archive) -> Result<Inventory> {
    Ok(archive_images(path, archive, None)?.1)
}

/// Walk every image of an archive and summarize it, one image at a time; `refs` receives what verify
/// checks of each.
fn archive_images<'a>(
    path: &Path,
    archive: &'a Archive,
    refs: Option<&mut Vec<BlobRef>>,
) -> Result<(ArchiveSource<'a>, Inventory)> {
    let mut source = ArchiveSource::new(archive);
    let found = find_images(&mut source, None)?;
    let docker = found
        .iter()
        .filter_map(|f| f.entries.first())
        .any(|d| source.is_synthesized(&d.digest));
    let images = found.iter().filter_map(|f| {
        let top = f.entries.first()?.clone();
        Some(Ok((walk::familiar_names(&f.entries), top)))
    });
    let (images, owners) = summarize_each(&source, images, refs)?;
    let mut inv = inventory(path, "archive", images, &owners);
    inv.format = Some(if docker { "docker" } else { "oci" });
    inv.compression = archive.compression.map(|c| c.name());
    Ok((source, inv))
}

/// Run `work` on every item with the copy pool's width ([`super::copy::threads`], `OCITAR_THREADS`),
/// reporting bytes done; stops at the first error.
fn parallel<T: Sync>(
    items: &[T],
    size: impl Fn(&T) -> u64 + Sync,
    work: impl Fn(&T) -> Result<()> + Sync,
    progress: &mut Progress,
) -> Result<()> {
    parallel_n(items, super::copy::threads(), size, work, progress)
}

/// Run `work` on every item with at most `threads` threads, reporting bytes done; stops at the first
/// error (registry transfers use it with their `jobs`).
///
/// # Errors
/// The first error of `work`; [`Error::Cancelled`] when the progress callback fails.
pub(crate) fn parallel_n<T: Sync>(
    items: &[T],
    threads: usize,
    size: impl Fn(&T) -> u64 + Sync,
    work: impl Fn(&T) -> Result<()> + Sync,
    progress: &mut Progress,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    progress.start(total(items.iter().map(&size)));
    let threads = threads.clamp(1, items.len().max(1));
    // Workers wake the reporting thread when they end, so a small job does not wait out a poll interval.
    let reporter = std::thread::current();
    let ended = AtomicUsize::new(0);
    let worker = || {
        let _wake = WakeOnDrop(&reporter, &ended);
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            if let Err(e) = work(item) {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(e);
                }
                break;
            }
            done.fetch_add(size(item), Ordering::Relaxed);
        }
    };
    let mut reported = 0;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(worker);
        }
        while ended.load(Ordering::Acquire) < threads {
            std::thread::park_timeout(std::time::Duration::from_millis(50));
            let now = done.load(Ordering::Relaxed);
            if progress.advance(now.saturating_sub(reported)).is_err() {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(Error::Cancelled);
                }
            }
            reported = now;
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    progress.finish()
}

/// Counts a worker as ended and unparks the reporting thread when dropped (when the worker returns or
/// unwinds).
struct WakeOnDrop<'a>(&'a std::thread::Thread, &'a AtomicUsize);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Release);
        self.0.unpark();
    }
}

fn hash_file(path: &Path, expected: &Digest, size: u64) -> Result<()> {
    let f = fs::open(path)?;
    let loc = path.display().to_string();
    digest::copy_verified(
        f,
        &mut std::io::sink(),
        expected,
        size,
        &loc,
        path,
        &mut |_| Ok(()),
    )
    .map(drop)
}

/// Re-hash and check everything a store or archive holds, raising on the first fault; returns the
/// inventory. Absent platforms of sparse images are reported, not faults; a store's leftover staging
/// directories from a killed load are ignored.
///
/// # Errors
/// [`Error::DigestMismatch`] / [`Error::SizeMismatch`] naming the blob and its path, [`Error::Store`] /
/// [`Error::InvalidArchive`] for a bad `oci-layout`, `index.json`, a blob name that is not a digest, or a
/// manifest whose config or layer is missing; [`Error::Io`].
pub fn verify(path: &Path, progress: &mut Progress) -> Result<Inventory> {
    missing_store(path)?;
    if fs::metadata_if_exists(path)?.is_some_and(|m| m.is_dir()) {
        return verify_store(path, progress);
    }
    let mut spool = TempSpool::new("ocitar-inspect-", true)?;
    let archive = Archive::read(Input::Path(path.to_path_buf()), &mut spool)?;
    let mut refs = Vec::new();
    let (source, mut inv) = archive_images(path, &archive, Some(&mut refs))?;
    // An OCI layout archive (one with index.json) has a valid oci-layout.
    if archive.contains("index.json") {
        let Some((name, e)) = archive.get("oci-layout")? else {
            return Err(Error::archive(
                "oci-layout",
                format!(
                    "missing: an archive with index.json is an OCI image layout and needs {}",
                    String::from_utf8_lossy(OCI_LAYOUT)
                ),
            ));
        };
        let bytes = archive.read_small(name, e)?;
        document::check_layout(&bytes).map_err(|r| Error::archive("oci-layout", r))?;
    }
    check_references(
        &refs,
        |d| source.blob_size(&Descriptor::new("", d.clone(), 0)),
        |d| {
            Error::archive(
                d.blob_name(),
                format!(
                    "blob {d} is listed by a manifest but missing from {}",
                    archive.label()
                ),
            )
        },
        archive.label(),
    )?;
    // Every blob entry against its name (streams were hashed as they were read).
    let blobs: Vec<(String, Digest, &Entry)> = archive
        .blobs()
        .map(|(d, e)| (d.blob_name(), d.clone(), e))
        .collect();
    if archive.is_seekable() {
        parallel(
            &blobs,
            |(_, _, e)| e.size,
            |(n, d, e)| {
                let r = archive.open(e)?;
                let loc = format!("{}:{n}", archive.label());
                digest::copy_verified(
                    r,
                    &mut std::io::sink(),
                    d,
                    e.size,
                    &loc,
                    Path::new(n),
                    &mut |_| Ok(()),
                )
                .map(drop)
            },
            progress,
        )?;
    }
    inv.verified = true;
    Ok(inv)
}

/// Every config and layer of every present manifest is there with its descriptor's size.
fn check_references(
    refs: &[BlobRef],
    size_of: impl Fn(&Digest) -> Option<u64>,
    missing: impl Fn(&Digest) -> Error,
    location: &str,
) -> Result<()> {
    for b in refs {
        match size_of(&b.digest) {
            None if b.foreign => {}
            None => return Err(missing(&b.digest)),
            Some(s) if s != b.size => {
                return Err(Error::SizeMismatch {
                    digest: b.digest.to_string(),
                    location: format!("{location}:{}", b.digest.blob_name()),
                    expected: b.size,
                    found: s.to_string(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn verify_store(path: &Path, progress: &mut Progress) -> Result<Inventory> {
    Store::open(path)?;
    let layout = path.join("oci-layout");
    let bytes = document::read_bounded(fs::open(&layout)?, 64)
        .at(&layout)?
        .unwrap_or_default();
    document::check_layout(&bytes).map_err(|r| Error::store(&layout, r))?;
    let mut refs = Vec::new();
    let (store, mut inv) = inspect_store(path, Shown::All, Some(&mut refs))?;
    // Every file under blobs/<alg>/ is named by a digest and hashes to it.
    let mut files: Vec<(PathBuf, Digest, u64)> = Vec::new();
    let blobs = path.join("blobs");
    if fs::metadata_if_exists(&blobs)?.is_some_and(|m| m.is_dir()) {
        for alg in fs::read_dir(&blobs)? {
            let alg = alg.at(&blobs)?;
            let alg_path = alg.path();
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            if !fs::metadata_if_exists(&alg_path)?.is_some_and(|m| m.is_dir()) {
                return Err(Error::store(
                    &alg_path,
                    "expected a directory blobs/<algorithm>",
                ));
            }
            for f in fs::read_dir(&alg_path)? {
                let f = f.at(&alg_path)?;
                let p = f.path();
                let hex = f.file_name().to_string_lossy().into_owned();
                let d = Digest::from_parts(&alg_name, &hex)
                    .map_err(|e| Error::store(&p, format!("not a blob name: {e}")))?;
                let meta = fs::symlink_metadata(&p)?;
                if !meta.is_file() {
                    return Err(Error::store(&p, "a blob must be a regular file"));
                }
                files.push((p, d, meta.len()));
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    // Sizes first (a truncated blob is named with both sizes), then every byte.
    let sizes: HashMap<&Digest, u64> = files.iter().map(|(_, d, s)| (d, *s)).collect();
    check_references(
        &refs,
        |d| sizes.get(d).copied(),
        |d| {
            Error::store(
                store.blob_path(d),
                format!("blob {d} is listed by a manifest but missing"),
            )
        },
        &path.display().to_string(),
    )?;
    parallel(
        &files,
        |(_, _, s)| *s,
        |(p, d, s)| hash_file(p, d, *s),
        progress,
    )?;
    inv.verified = true;
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_hashes_on_as_many_threads_as_ocitar_threads_says() {
        // The only test that sets OCITAR_THREADS; others reading it meanwhile just run on one worker.
        std::env::set_var("OCITAR_THREADS", "1");
        let seen = Mutex::new(std::collections::HashSet::new());
        let items: Vec<u64> = (0..64).collect();
        let work = |_: &u64| {
            seen.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_millis(1));
            Ok(())
        };
        parallel(&items, |_| 1, work, &mut Progress::none()).unwrap();
        std::env::remove_var("OCITAR_THREADS");
        assert_eq!(seen.into_inner().unwrap().len(), 1);
    }
}
