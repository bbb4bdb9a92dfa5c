//! `inspect` and `verify`: what a store or an archive holds, per image and platform, read through the one
//! walker; `verify` also re-hashes every blob (in parallel) and checks every size and reference.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::archive::read::{Archive, Entry, Input, Kind, TempSpool};
use super::content::Source;
use super::digest::{self, Digest};
use super::document;
use super::error::{Error, IoContext, Result};
use super::load::{find_images, ArchiveSource};
use super::platform::Matcher;
use super::reference::ANNOTATION_IMAGE_NAME;
use super::registry::{Registry, RegistrySource};
use super::store::{IndexFile, Store, MISSING_STORE, OCI_LAYOUT};
use super::walk::{self, BlobSource, Descriptor, Image, Node};
use super::Progress;

/// An image's `index.json` entries (one per name) and its walked tree.
type Walked = (Vec<Descriptor>, Image);

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
    /// `store` or `archive`.
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

/// `index.json` entries grouped by digest, in the order each digest first appears.
fn group(entries: &[Descriptor]) -> Vec<Vec<Descriptor>> {
    let mut out: Vec<Vec<Descriptor>> = Vec::new();
    let mut at: HashMap<&Digest, usize> = HashMap::new();
    for d in entries {
        match at.get(&d.digest).and_then(|&i| out.get_mut(i)) {
            Some(g) => g.push(d.clone()),
            None => {
                at.insert(&d.digest, out.len());
                out.push(vec![d.clone()]);
            }
        }
    }
    out
}

/// The sum of sizes, saturating: descriptor sizes come from the input and may be anything up to 2^64-1.
fn total(sizes: impl Iterator<Item = u64>) -> u64 {
    sizes.fold(0, u64::saturating_add)
}

/// Build the inventory of walked images; `sizes` of blobs count only when `present(d)`.
fn summarize(
    path: &Path,
    kind: &'static str,
    images: &[Walked],
    present: &dyn Fn(&Descriptor) -> bool,
) -> Inventory {
    let mut owners: HashMap<Digest, (u64, usize)> = HashMap::new();
    let mut out = Vec::new();
    for (entries, image) in images {
        let sel =
            walk::select(image, &Matcher::all(), "", Error::InvalidArgument).unwrap_or_default();
        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        blobs.insert(image.top.digest.clone(), image.top.size);
        for d in &sel.blobs {
            if present(d) {
                blobs.insert(d.digest.clone(), d.size);
            }
        }
        for (d, s) in &blobs {
            owners.entry(d.clone()).or_insert((*s, 0)).1 += 1;
        }
        let manifests = image.manifests();
        let mut attestations: HashMap<&Digest, Vec<Digest>> = HashMap::new();
        for a in &manifests {
            if let Some(subject) = &a.attestation_of {
                attestations
                    .entry(subject)
                    .or_default()
                    .push(a.desc.digest.clone());
            }
        }
        let mut platforms = Vec::new();
        for m in manifests.iter().filter(|m| !m.is_attestation()) {
            let size = total(
                std::iter::once(m.desc.size)
                    .chain(m.config.iter().chain(m.layers.iter()).map(|b| b.size)),
            );
            platforms.push(PlatformEntry {
                platform: m
                    .desc
                    .platform
                    .as_ref()
                    .or(m.platform.as_ref())
                    .map_or_else(|| "unknown".into(), raw_platform),
                digest: m.desc.digest.clone(),
                present: m.complete(),
                size,
                layers: m.layers.len(),
                attestations: attestations
                    .get(&m.desc.digest)
                    .cloned()
                    .unwrap_or_default(),
                foreign: m.foreign.clone(),
            });
        }
        for d in image.absent() {
            if d.attestation_of().is_some() || d.platform.as_ref().is_some_and(|p| p.is_unknown()) {
                continue;
            }
            platforms.push(PlatformEntry {
                platform: d
                    .platform
                    .as_ref()
                    .map_or_else(|| "unknown".into(), raw_platform),
                digest: d.digest.clone(),
                present: false,
                size: d.size,
                layers: 0,
                attestations: Vec::new(),
                foreign: Vec::new(),
            });
        }
        out.push(ImageEntry {
            names: walk::familiar_names(entries),
            digest: image.top.digest.clone(),
            media_type: image.top.media_type.clone(),
            platforms,
            size: total(blobs.values().copied()),
        });
    }
    Inventory {
        path: path.display().to_string(),
        kind,
        format: None,
        compression: None,
        images: out,
        blobs: owners.len(),
        bytes: total(owners.values().map(|(s, _)| *s)),
        shared_bytes: total(owners.values().filter(|(_, n)| *n > 1).map(|(s, _)| *s)),
        verified: false,
    }
}

/// A platform in containerd's format, normalized (`arm64/v8` shows as `arm64`); [`fix_platform_names`]
/// then puts back the text the image wrote where its descriptor has one.
fn raw_platform(p: &super::platform::Platform) -> String {
    p.to_string()
}

fn fix_platform_names(inv: &mut Inventory, images: &[Walked]) {
    for (entry, (_, image)) in inv.images.iter_mut().zip(images) {
        let mut raw: HashMap<Digest, String> = HashMap::new();
        let mut order: Vec<Digest> = Vec::new();
        collect_raw(&image.root, &mut raw, &mut order);
        for p in &mut entry.platforms {
            if let Some(t) = raw.get(&p.digest) {
                p.platform.clone_from(t);
            }
        }
        // Platforms in the order the index lists them, present or not (a digest listed twice: its first).
        let mut position: HashMap<&Digest, usize> = HashMap::new();
        for (i, d) in order.iter().enumerate() {
            position.entry(d).or_insert(i);
        }
        entry
            .platforms
            .sort_by_key(|p| position.get(&p.digest).copied().unwrap_or(usize::MAX));
    }
}

fn collect_raw(n: &Node, out: &mut HashMap<Digest, String>, order: &mut Vec<Digest>) {
    match n {
        Node::Index { children, .. } => children.iter().for_each(|c| collect_raw(c, out, order)),
        Node::Manifest(m) => {
            order.push(m.desc.digest.clone());
            if let Some(t) = m.desc.platform_text() {
                out.insert(m.desc.digest.clone(), t);
            }
        }
        Node::Absent { desc } | Node::Blob { desc } => {
            order.push(desc.digest.clone());
            if let Some(t) = desc.platform_text() {
                out.insert(desc.digest.clone(), t);
            }
        }
    }
}

fn walk_all(source: &dyn BlobSource, groups: Vec<Vec<Descriptor>>) -> Result<Vec<Walked>> {
    groups
        .into_iter()
        .filter_map(|g| {
            let top = g.first()?.clone();
            Some(walk::walk(source, &top).map(|image| (g, image)))
        })
        .collect()
}

fn inspect_store(path: &Path) -> Result<(Store, IndexFile, Vec<Walked>, Inventory)> {
    let store = Store::open(path)?;
    let index = store.read_index()?;
    let images = walk_all(&store, group(&index.entries))?;
    let mut inv = summarize(path, "store", &images, &|d| store.has_blob(d));
    fix_platform_names(&mut inv, &images);
    Ok((store, index, images, inv))
}

/// What a store directory or an archive file holds: images, platforms (present or absent), sizes.
/// Reads only JSON documents (and, for compressed archives, streams past the rest).
///
/// # Errors
/// [`Error::Store`] / [`Error::InvalidArchive`] for malformed input, digest errors for documents that do
/// not match, [`Error::Io`].
pub fn inspect(path: &Path) -> Result<Inventory> {
    missing_store(path)?;
    if path.is_dir() {
        return Ok(inspect_store(path)?.3);
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
    if archive_like || fs::symlink_metadata(path).is_ok() {
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
    let mut inv = summarize(
        Path::new(&format!("docker://{shown}")),
        "registry",
        &images,
        &|d| blobs.has_blob(d),
    );
    fix_platform_names(&mut inv, &images);
    Ok(inv)
}

fn inspect_archive(path: &Path, archive: &Archive) -> Result<Inventory> {
    Ok(archive_images(path, archive)?.2)
}

/// Walk every image of an archive and summarize it.
fn archive_images<'a>(
    path: &Path,
    archive: &'a Archive,
) -> Result<(ArchiveSource<'a>, Vec<Walked>, Inventory)> {
    let mut source = ArchiveSource::new(archive);
    let found = find_images(&mut source, None)?;
    let docker = found
        .iter()
        .filter_map(|f| f.entries.first())
        .any(|d| source.is_synthesized(&d.digest));
    let images = walk_all(&source, found.into_iter().map(|f| f.entries).collect())?;
    let mut inv = summarize(path, "archive", &images, &|d| source.has_blob(d));
    fix_platform_names(&mut inv, &images);
    inv.format = Some(if docker { "docker" } else { "oci" });
    inv.compression = archive.compression.map(|c| c.name());
    Ok((source, images, inv))
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
    let f = File::open(path).at(path)?;
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
    if path.is_dir() {
        return verify_store(path, progress);
    }
    let mut spool = TempSpool::new("ocitar-inspect-", true)?;
    let archive = Archive::read(Input::Path(path.to_path_buf()), &mut spool)?;
    let (source, images, mut inv) = archive_images(path, &archive)?;
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
        &images,
        |d| source.blob_size(d),
        |d| {
            Error::archive(
                d.digest.blob_name(),
                format!(
                    "blob {} is listed by a manifest but missing from {}",
                    d.digest,
                    archive.label()
                ),
            )
        },
        archive.label(),
    )?;
    // Every blob entry against its name (streams were hashed as they were read).
    let blobs: Vec<(String, Digest, &Entry)> = archive
        .names()
        .filter_map(|n| super::archive::read::blob_digest(n).map(|d| (n.to_string(), d)))
        .filter_map(|(n, d)| archive.get(&n).ok().flatten().map(|(_, e)| (n, d, e)))
        .filter(|(_, _, e)| e.kind == Kind::File)
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
            },
            progress,
        )?;
    }
    inv.verified = true;
    Ok(inv)
}

/// Every config and layer of every present manifest is there with its descriptor's size.
fn check_references(
    images: &[Walked],
    size_of: impl Fn(&Descriptor) -> Option<u64>,
    missing: impl Fn(&Descriptor) -> Error,
    location: &str,
) -> Result<()> {
    for (_, image) in images {
        for m in image.manifests() {
            for b in m.config.iter().chain(m.layers.iter()) {
                if b.is_foreign() && size_of(b).is_none() {
                    continue;
                }
                match size_of(b) {
                    None => return Err(missing(b)),
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
        }
    }
    Ok(())
}

fn verify_store(path: &Path, progress: &mut Progress) -> Result<Inventory> {
    Store::open(path)?;
    let layout = path.join("oci-layout");
    let bytes = File::open(&layout)
        .and_then(|f| document::read_bounded(f, 64))
        .at(&layout)?
        .unwrap_or_default();
    document::check_layout(&bytes).map_err(|r| Error::store(&layout, r))?;
    let (store, _, images, mut inv) = inspect_store(path)?;
    // Every file under blobs/<alg>/ is named by a digest and hashes to it.
    let mut files: Vec<(PathBuf, Digest, u64)> = Vec::new();
    let blobs = path.join("blobs");
    if blobs.is_dir() {
        for alg in fs::read_dir(&blobs).at(&blobs)? {
            let alg = alg.at(&blobs)?;
            let alg_path = alg.path();
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            if !alg_path.is_dir() {
                return Err(Error::store(
                    &alg_path,
                    "expected a directory blobs/<algorithm>",
                ));
            }
            for f in fs::read_dir(&alg_path).at(&alg_path)? {
                let f = f.at(&alg_path)?;
                let p = f.path();
                let hex = f.file_name().to_string_lossy().into_owned();
                let d = Digest::from_parts(&alg_name, &hex)
                    .map_err(|e| Error::store(&p, format!("not a blob name: {e}")))?;
                let meta = fs::symlink_metadata(&p).at(&p)?;
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
        &images,
        |d| sizes.get(&d.digest).copied(),
        |d| {
            Error::store(
                store.blob_path(&d.digest),
                format!("blob {} is listed by a manifest but missing", d.digest),
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
