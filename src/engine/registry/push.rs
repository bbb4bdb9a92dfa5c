//! Load into a registry: the archive is read and walked as for a store directory, then pushed so that
//! nothing is reachable half-written: blobs (checked with HEAD, mounted across repositories of one
//! registry when possible, else uploaded, each verified on the way), then manifests by digest, then
//! indexes by digest, tags last, each checked against the digest pushed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::transport::{header, shown, status_error, Payload, ATTEMPTS};
use super::{Registry, Target, ACCEPT};
use crate::engine::archive::read::{Input, Spool, TempSpool};
use crate::engine::digest::{Digest, Hasher, Verified};
use crate::engine::error::{Error, Result};
use crate::engine::load::{self, ArchiveSource, LoadReport, LoadedImage, Selected};
use crate::engine::platform::{Matcher, Platform};
use crate::engine::reference;
use crate::engine::save::{subset, IndexShape};
use crate::engine::sink::Sink;
use crate::engine::walk::{self, Descriptor, Kept, Node, Selection, Summary};
use crate::engine::Progress;

/// One image to push: where, and what.
struct Plan {
    targets: Vec<Target>,
    top: Descriptor,
    /// Manifests and indexes, children before parents, with their bytes.
    documents: Vec<(Descriptor, Vec<u8>)>,
    /// Configs, layers and other blobs.
    blobs: Vec<Descriptor>,
    sel: Summary,
}

/// Load `input` into `registry`, keeping `platforms`, each image shaped as `shape`.
///
/// # Errors
/// As a load into a store directory ([`Error::InvalidArchive`], [`Error::PlatformNotFound`],
/// [`Error::DigestMismatch`], …); [`Error::PlatformNotFound`] before anything is uploaded when
/// `shape` is `Keep` and the index pushed would list content the registry would not hold;
/// [`Error::Registry`] / [`Error::Authentication`]; a failure among the tags lists the tags moved.
pub fn load(
    input: Input,
    registry: &Registry,
    platforms: &[String],
    shape: IndexShape,
    progress: &mut Progress,
) -> Result<LoadReport> {
    let matcher = Matcher::only(Platform::parse_list(platforms)?);
    let sink = RegistrySink {
        registry,
        shape,
        spool: TempSpool::new("ocitar-push-", false)?,
        plans: Vec::new(),
        counts: Counts::default(),
    };
    load::run(sink, input, &matcher, progress)
}

/// A registry as load's [`Sink`]: a stream is spooled into a private temporary directory; each image is
/// planned in the shape asked for (a would-be-sparse index refused before any upload); then blobs are
/// pushed (each upload committed only with the [`Verified`] its bytes proved), manifests and indexes by
/// digest, and tags last.
pub struct RegistrySink<'r> {
    registry: &'r Registry,
    shape: IndexShape,
    spool: TempSpool,
    plans: Vec<Plan>,
    counts: Counts,
}

impl Sink for RegistrySink<'_> {
    fn spool(&mut self) -> &mut dyn Spool {
        &mut self.spool
    }

    fn keeps_hashed_layers(&self) -> bool {
        false
    }

    fn add(&mut self, image: Selected<'_>) -> Result<()> {
        let Selected { found, label, sel } = image;
        let mut targets = Vec::new();
        for n in found.entries.iter().filter_map(Descriptor::full_name) {
            let t = self.registry.rename(&n)?;
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        if targets.is_empty() {
            targets.push(unnamed_target(self.registry, &label)?);
        }
        self.plans.push(plan(&sel, self.shape, &label, targets)?);
        Ok(())
    }

    fn write(&mut self, source: &ArchiveSource<'_>, progress: &mut Progress) -> Result<()> {
        prepare(self.registry, &self.plans)?;
        push_blobs(self.registry, source, &self.plans, &self.counts, progress)?;
        // Manifests and indexes by digest (children before parents), in every repository: each run of
        // adjacent image manifests `jobs` at once (a registry may sync every manifest it stores, as
        // distribution does, and concurrent syncs share one journal commit); anything else only after
        // everything before it is in.
        for p in &self.plans {
            for t in &p.targets {
                for run in p
                    .documents
                    .chunk_by(|(a, _), (b, _)| is_image_manifest(a) && is_image_manifest(b))
                {
                    crate::engine::inspect::parallel_n(
                        run,
                        self.registry.jobs,
                        |_| 0,
                        |(d, bytes)| {
                            put_manifest(self.registry, t, &d.digest.to_string(), d, bytes)
                        },
                        &mut Progress::none(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Tags last.
    fn publish(self) -> Result<LoadReport> {
        tag_all(self.registry, &self.plans, &self.counts)
    }
}

/// Whether `d` is an image manifest (never an index): such documents do not depend on each other.
fn is_image_manifest(d: &Descriptor) -> bool {
    matches!(
        d.media_type.as_str(),
        walk::MT_OCI_MANIFEST | walk::MT_DOCKER_MANIFEST
    )
}

/// Where an image without a name goes: the base's repository, by digest only.
fn unnamed_target(registry: &Registry, label: &str) -> Result<Target> {
    if registry.base.host.is_none() || registry.base.prefix.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "image {label} has no name: load it into a registry base that names a repository (host/repository), where it is pushed by digest"
        )));
    }
    let mut t = registry.target("x")?;
    t.repository = registry.base.prefix.clone();
    t.reference.tag = None;
    Ok(t)
}

/// Whether an index in the tree lists a descriptor that is not in `kept`.
fn lists_other_than(n: &Node, kept: &HashSet<&Digest>) -> bool {
    match n {
        Node::Index { children, .. } => children
            .iter()
            .any(|c| !kept.contains(&c.desc().digest) || lists_other_than(c, kept)),
        _ => false,
    }
}

/// Documents of the kept tree, children before parents; `rewritten` replaces indexes (subset).
fn documents(
    n: &Kept<'_>,
    rewritten: &BTreeMap<Digest, (Descriptor, Vec<u8>)>,
    out: &mut Vec<(Descriptor, Vec<u8>)>,
) {
    match n {
        Kept::Index {
            desc,
            doc,
            children,
            ..
        } => {
            for c in children {
                documents(c, rewritten, out);
            }
            match rewritten.get(&desc.digest) {
                Some((d, bytes)) => out.push((d.clone(), bytes.clone())),
                None => out.push(((*desc).clone(), doc.to_vec())),
            }
        }
        Kept::Manifest(m) => out.push((m.desc.clone(), m.doc.clone())),
        Kept::Blob(_) => {}
    }
}

/// Documents of the selection's tree, children before parents; `rewritten` replaces indexes.
fn selected_documents(
    sel: &Selection<'_>,
    rewritten: &BTreeMap<Digest, (Descriptor, Vec<u8>)>,
    out: &mut Vec<(Descriptor, Vec<u8>)>,
) {
    if let Some(root) = &sel.root {
        documents(root, rewritten, out);
    }
}

/// What to push for one image in `shape`: its documents (children before parents) and its other blobs.
///
/// # Errors
/// As [`keep_shape`] and [`manifest_shape`].
fn plan(sel: &Selection<'_>, shape: IndexShape, label: &str, targets: Vec<Target>) -> Result<Plan> {
    let mut docs = Vec::new();
    let top = match shape {
        IndexShape::Keep => keep_shape(sel, label, &mut docs)?,
        IndexShape::Subset => {
            let (top, rewritten) = subset(sel);
            selected_documents(sel, &rewritten, &mut docs);
            top
        }
        IndexShape::Manifest => manifest_shape(sel, label, &mut docs)?,
    };
    // Documents come from the archive verified by the walker; a rewritten one was hashed as it was made.
    let blobs = plan_blobs(sel, shape, &top);
    Ok(Plan {
        targets,
        top,
        documents: docs,
        blobs,
        sel: sel.summary(),
    })
}

/// The image's own top-level descriptor and documents, unchanged.
///
/// # Errors
/// [`Error::PlatformNotFound`] when an index would list content the registry would not hold (a
/// registry refuses it): load with `index='subset'` or `'manifest'`.
fn keep_shape(
    sel: &Selection<'_>,
    label: &str,
    docs: &mut Vec<(Descriptor, Vec<u8>)>,
) -> Result<Descriptor> {
    if lists_other_than(&sel.image.root, &sel.kept()) {
        // The platforms (never attestations) the index lists that the selection does not keep.
        let mut dropped = sel.absent();
        dropped.extend(sel.left_out());
        return Err(Error::PlatformNotFound {
            image: format!(
                "{label} (a registry refuses an index that lists content it does not hold; load with index='subset' or index='manifest')"
            ),
            missing: dropped,
            available: sel.platforms(),
        });
    }
    selected_documents(sel, &BTreeMap::new(), docs);
    Ok(sel.image.top.clone())
}

/// The one selected platform manifest as the image.
///
/// # Errors
/// [`Error::InvalidArgument`] when more or fewer than one platform is selected.
fn manifest_shape(
    sel: &Selection<'_>,
    label: &str,
    docs: &mut Vec<(Descriptor, Vec<u8>)>,
) -> Result<Descriptor> {
    let chosen = sel.platform_manifests();
    let [m] = chosen.as_slice() else {
        return Err(Error::InvalidArgument(format!(
            "index='manifest' pushes one platform per image, but {} platforms of image {label} are selected ({}); choose one with platforms=",
            chosen.len(),
            sel.platforms().join(", ")
        )));
    };
    docs.push((m.desc.clone(), m.doc.clone()));
    Ok(m.desc.clone())
}

/// The selected blobs that are not documents; for `Manifest`, only those of the manifest pushed.
fn plan_blobs(sel: &Selection<'_>, shape: IndexShape, top: &Descriptor) -> Vec<Descriptor> {
    let mut document_digests: HashSet<&Digest> = HashSet::new();
    if let Some(root) = &sel.root {
        root.each(&mut |n| {
            if !matches!(n, Kept::Blob(_)) {
                document_digests.insert(&n.desc().digest);
            }
        });
    }
    let keep: Option<HashSet<&Digest>> = (shape == IndexShape::Manifest).then(|| {
        sel.platform_manifests()
            .into_iter()
            .filter(|m| m.desc.digest == top.digest)
            .flat_map(|m| m.config.iter().chain(m.layers.iter()).map(|d| &d.digest))
            .collect()
    });
    sel.blobs()
        .into_iter()
        .filter(|d| !document_digests.contains(&d.digest))
        .filter(|d| keep.as_ref().is_none_or(|k| k.contains(&d.digest)))
        .map(Descriptor::lean)
        .collect()
}

/// Counts of what the blob step did.
#[derive(Default)]
struct Counts {
    uploaded: AtomicUsize,
    mounted: AtomicUsize,
    present: AtomicUsize,
    bytes: AtomicU64,
}

/// One token per host for every repository the load writes (push and pull: a mount reads too).
///
/// # Errors
/// [`Error::Authentication`] / [`Error::Registry`] from the token exchange.
fn prepare(registry: &Registry, plans: &[Plan]) -> Result<()> {
    let mut scopes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in plans.iter().flat_map(|p| p.targets.iter()) {
        let s = format!("repository:{}:pull,push", t.repository);
        let v = scopes.entry(t.api_host().to_string()).or_default();
        if !v.contains(&s) {
            v.push(s);
        }
    }
    for (host, s) in &scopes {
        registry.client.prepare(host, s)?;
    }
    Ok(())
}

/// Push every blob: each (host, repository, blob) once; the first repository of a host that receives a
/// blob is where later repositories mount it from, so those go first; within each batch, largest first.
///
/// # Errors
/// The first failing blob's error.
fn push_blobs(
    registry: &Registry,
    source: &ArchiveSource<'_>,
    plans: &[Plan],
    counts: &Counts,
    progress: &mut Progress,
) -> Result<()> {
    let mut work: Vec<(&Target, &Descriptor)> = Vec::new();
    let mut seen = HashSet::new();
    for p in plans {
        for t in &p.targets {
            for b in &p.blobs {
                if seen.insert((t.api_host(), t.repository.as_str(), b.digest.clone())) {
                    work.push((t, b));
                }
            }
        }
    }
    let mut first_repo: HashMap<(&str, &Digest), &str> = HashMap::new();
    let (mut firsts, mut rest) = (Vec::new(), Vec::new());
    for (t, b) in work {
        match first_repo.get(&(t.api_host(), &b.digest)) {
            Some(from) => rest.push((t, b, Some(*from))),
            None => {
                first_repo.insert((t.api_host(), &b.digest), t.repository.as_str());
                firsts.push((t, b, None));
            }
        }
    }
    // Largest first in each batch: a large upload never starts last, alone.
    for batch in [&mut firsts, &mut rest] {
        batch.sort_by_key(|(_, b, _)| std::cmp::Reverse(b.size));
    }
    for batch in [&firsts, &rest] {
        crate::engine::inspect::parallel_n(
            batch,
            registry.jobs,
            |(_, b, _)| b.size,
            |(t, b, from)| put_blob(registry, source, t, b, *from, counts),
            progress,
        )?;
    }
    Ok(())
}

fn tag_all(registry: &Registry, plans: &[Plan], counts: &Counts) -> Result<LoadReport> {
    let mut moved_so_far: Vec<String> = Vec::new();
    let mut images = Vec::new();
    for p in plans {
        let bytes = p
            .documents
            .iter()
            .find(|(d, _)| d.digest == p.top.digest)
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        let mut names = Vec::new();
        let mut moved = Vec::new();
        for t in &p.targets {
            let Some(tag) = t.reference.tag.clone() else {
                continue;
            };
            let before = current_digest(registry, t, &tag)?;
            if let Err(e) = put_manifest(registry, t, &tag, &p.top, bytes) {
                return Err(with_moved(e, moved_so_far));
            }
            let name = reference::familiar(&t.display());
            moved_so_far.push(match &before {
                Some(d) => format!("{} (was {d})", t.display()),
                None => format!("{} (new)", t.display()),
            });
            if before.as_ref().is_some_and(|d| d != &p.top.digest) {
                moved.push(name.clone());
            }
            names.push(name);
        }
        images.push(LoadedImage {
            names,
            digest: p.top.digest.clone(),
            media_type: p.top.media_type.clone(),
            platforms: p.sel.platforms.clone(),
            absent: p.sel.absent.clone(),
            attestations: p.sel.attestations,
            moved,
            foreign: p.sel.foreign.clone(),
        });
    }
    Ok(LoadReport {
        images,
        blobs_written: counts.uploaded.load(Ordering::Relaxed),
        blobs_present: counts.present.load(Ordering::Relaxed),
        blobs_mounted: counts.mounted.load(Ordering::Relaxed),
        bytes_written: counts.bytes.load(Ordering::Relaxed),
    })
}

fn with_moved(e: Error, moved: Vec<String>) -> Error {
    match e {
        Error::Registry {
            status,
            code,
            url,
            message,
            ..
        } => Error::Registry {
            status,
            code,
            url,
            message,
            moved,
        },
        Error::Authentication {
            status,
            code,
            url,
            message,
        } if !moved.is_empty() => Error::Registry {
            status,
            code,
            url,
            message: format!("authentication failed: {message}"),
            moved,
        },
        other => other,
    }
}

/// The digest `tag` points at now, `None` when it does not exist.
fn current_digest(registry: &Registry, t: &Target, tag: &str) -> Result<Option<Digest>> {
    let path = format!("/v2/{}/manifests/{tag}", t.repository);
    let resp = registry.client.send(
        t.api_host(),
        "HEAD",
        &path,
        &[("accept", ACCEPT)],
        &Payload::Empty,
    )?;
    match resp.status().as_u16() {
        200 => Ok(header(&resp, "docker-content-digest").and_then(|d| d.parse().ok())),
        404 => Ok(None),
        _ => Err(status_error(
            resp,
            &registry.client.url(t.api_host(), &path)?,
        )),
    }
}

fn put_manifest(
    registry: &Registry,
    t: &Target,
    reference: &str,
    d: &Descriptor,
    bytes: &[u8],
) -> Result<()> {
    let path = format!("/v2/{}/manifests/{reference}", t.repository);
    let url = registry.client.url(t.api_host(), &path)?;
    let mt = if d.media_type.is_empty() {
        walk::MT_OCI_MANIFEST
    } else {
        d.media_type.as_str()
    };
    let resp = registry.client.send(
        t.api_host(),
        "PUT",
        &path,
        &[("content-type", mt)],
        &Payload::Bytes(bytes),
    )?;
    if resp.status().as_u16() != 201 {
        return Err(status_error(resp, &url));
    }
    if let Some(got) = header(&resp, "docker-content-digest").and_then(|g| g.parse::<Digest>().ok())
    {
        if got != d.digest {
            return Err(Error::DigestMismatch {
                digest: d.digest.to_string(),
                location: shown(&url),
                found: got.to_string(),
            });
        }
    }
    Ok(())
}

/// Push one blob into `t`'s repository unless it is there: mount it from `from` (same host) when
/// given, else (or when the mount is answered with an upload session) upload it, verified.
fn put_blob(
    registry: &Registry,
    source: &ArchiveSource<'_>,
    t: &Target,
    b: &Descriptor,
    from: Option<&str>,
    counts: &Counts,
) -> Result<()> {
    let head = format!("/v2/{}/blobs/{}", t.repository, b.digest);
    let resp = registry
        .client
        .send(t.api_host(), "HEAD", &head, &[], &Payload::Empty)?;
    if resp.status().as_u16() == 200 {
        counts.present.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let verdict: Mutex<Option<Result<Verified>>> = Mutex::new(None);
    let open = || -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(Verifying {
            inner: source.open_blob(b)?,
            hasher: Some(b.digest.algorithm().hasher()),
            desc: b,
            location: format!("{}:{}", source.archive.label(), b.digest.blob_name()),
            verdict: &verdict,
        }))
    };
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let Some(session) = start_upload(registry, t, b, from)? else {
            counts.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        match upload(registry, t, b, &session, &open, &verdict)? {
            Ok(proof) => {
                counts.uploaded.fetch_add(1, Ordering::Relaxed);
                counts.bytes.fetch_add(proof.size(), Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Registry {
        status: 0,
        code: String::new(),
        url: shown(&head),
        message: "upload failed".into(),
        moved: Vec::new(),
    }))
}

/// Send the blob's bytes into the upload `session` and commit it in one request (PUT `?digest=`),
/// hashed and counted on the way: the last chunk is handed to the connection only once the bytes prove
/// the descriptor's digest and size (a [`Verified`]), so a registry never completes an upload of bytes
/// that failed verification. `Ok(Ok(proof))` when the blob is in place; `Ok(Err(e))` to retry after
/// when the connection dropped or the registry lost the session (distribution cannot resume one).
///
/// # Errors
/// [`Error::DigestMismatch`] / [`Error::SizeMismatch`] for bytes that fail verification; any other
/// answer of the registry.
fn upload<'a>(
    registry: &Registry,
    t: &Target,
    b: &Descriptor,
    session: &str,
    open: &'a Opener<'a>,
    verdict: &Mutex<Option<Result<Verified>>>,
) -> Result<std::result::Result<Verified, Error>> {
    let sep = if session.contains('?') { '&' } else { '?' };
    let put = format!("{session}{sep}digest={}", b.digest);
    let sent = registry.client.send(
        t.api_host(),
        "PUT",
        &put,
        &[("content-type", "application/octet-stream")],
        &Payload::Stream(open, b.size),
    );
    let proof = verdict.lock().ok().and_then(|mut v| v.take());
    if let Some(Err(e)) = proof {
        return Err(e);
    }
    match sent {
        Ok(resp) if resp.status().as_u16() == 201 => match proof {
            Some(Ok(v)) => Ok(Ok(v)),
            // An empty body is never read: its proof is read here.
            _ => prove(open()?, verdict).map(Ok),
        },
        Ok(resp) if resp.status().as_u16() == 404 => Ok(Err(status_error(resp, &put))),
        Ok(resp) => Err(status_error(resp, &put)),
        Err(e @ Error::Registry { status: 0, .. }) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// Opens a blob's bytes again for each attempt to send them.
type Opener<'a> = dyn Fn() -> Result<Box<dyn Read + 'a>> + Sync + 'a;

/// Read a verifying reader to its end and take what it proved.
///
/// # Errors
/// What verification found; [`Error::Io`] when the blob cannot be read.
fn prove(mut r: Box<dyn Read + '_>, verdict: &Mutex<Option<Result<Verified>>>) -> Result<Verified> {
    let copied = io::copy(&mut r, &mut io::sink());
    match verdict.lock().ok().and_then(|mut v| v.take()) {
        Some(v) => v,
        None => Err(Error::io(
            "<upload>",
            copied
                .err()
                .unwrap_or_else(|| io::Error::other("blob ended early")),
        )),
    }
}

/// Start an upload of `b` into `t`'s repository: a mount from `from` when given (`None` when the
/// registry mounted it), else, or when the mount is answered with a session, the session's URL.
///
/// # Errors
/// [`Error::Registry`] for an answer other than 201 (mount) or 202 with a `Location`.
fn start_upload(
    registry: &Registry,
    t: &Target,
    b: &Descriptor,
    from: Option<&str>,
) -> Result<Option<String>> {
    let client = &registry.client;
    let host = t.api_host();
    let post = match from {
        Some(src) => format!(
            "/v2/{}/blobs/uploads/?mount={}&from={src}",
            t.repository, b.digest
        ),
        None => format!("/v2/{}/blobs/uploads/", t.repository),
    };
    let post_url = client.url(host, &post)?;
    let resp = client.send(host, "POST", &post, &[], &Payload::Empty)?;
    match resp.status().as_u16() {
        201 if from.is_some() => return Ok(None),
        202 => {}
        _ => return Err(status_error(resp, &post_url)),
    }
    let Some(location) = header(&resp, "location") else {
        return Err(Error::Registry {
            status: 202,
            code: String::new(),
            url: shown(&post_url),
            message: "upload session without a Location".into(),
            moved: Vec::new(),
        });
    };
    client.url(host, location).map(Some)
}

/// Hashes and counts what an upload reads; when the last byte is read, what the bytes proved (a
/// [`Verified`], or the mismatch) goes into `verdict`, and a mismatch fails the read, so the request
/// ends before the registry has the whole blob.
struct Verifying<'a, R> {
    inner: R,
    hasher: Option<Hasher>,
    desc: &'a Descriptor,
    location: String,
    verdict: &'a Mutex<Option<Result<Verified>>>,
}

impl<R: Read> Read for Verifying<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(h) = self.hasher.as_mut() else {
            return Ok(n);
        };
        h.update(buf.get(..n).unwrap_or_default());
        // Checked when the last byte is read (the HTTP body ends there, without a read at EOF).
        if h.len() < self.desc.size && n > 0 {
            return Ok(n);
        }
        let Some(h) = self.hasher.take() else {
            return Ok(n);
        };
        let found = h.verify(&self.desc.digest, self.desc.size, &self.location);
        let failed = found.is_err();
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(found);
        }
        if failed {
            return Err(io::Error::other("blob failed verification"));
        }
        Ok(n)
    }
}
