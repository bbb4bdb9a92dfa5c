//! A registry (the OCI distribution API) as a store: references resolved against a base
//! (`host[:port][/prefix]`), manifests fetched with the full Accept list and checked against their
//! digest, blobs streamed (resumed with `Range` after a dropped connection) and verified by whoever
//! copies them. [`RegistrySource`] is a [`Source`] for save; [`push`] is load's registry sink.

pub mod auth;
pub mod push;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ureq::http::Response;
use ureq::Body;

use super::content::{Origin, Source};
use super::digest::{self, Digest};
use super::document::{self, MAX_DOCUMENT_BYTES as MAX_DOCUMENT};
use super::error::{Error, Result};
use super::reference::Reference;
use super::walk::{
    BlobSource, Descriptor, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST,
};
use super::Progress;
use transport::{header, read_limited, shown, status_error, Client, Payload};

pub use transport::Options;

/// Every manifest media type ocitar reads, for `Accept`.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Times a dropped blob download is resumed.
const RESUMES: u32 = 3;

/// A registry base: `host[:port][/prefix]`, or none (each reference names its own registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// The registry host (`name[:port]`), `None` for no base.
    pub host: Option<String>,
    /// The path under the host (`mirror`), empty for none.
    pub prefix: String,
}

impl Base {
    /// Parse `host[:port][/prefix]` (an optional `docker://` in front); empty is no base.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the host or prefix is not valid in a reference.
    pub fn parse(s: &str) -> Result<Base> {
        let s = s
            .strip_prefix("docker://")
            .unwrap_or(s)
            .trim_end_matches('/');
        if s.is_empty() {
            return Ok(Base {
                host: None,
                prefix: String::new(),
            });
        }
        let (host, prefix) = s.split_once('/').unwrap_or((s, ""));
        // Validated as a reference would be: `host/prefix/x`.
        let probe = format!(
            "{host}/{}x",
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            }
        );
        let bad =
            |why: String| Error::InvalidArgument(format!("invalid registry base {s:?}: {why}"));
        let r = Reference::parse(&probe).map_err(|e| bad(e.to_string()))?;
        if !looks_like_host(host)
            || !r
                .repository
                .is_some_and(|n| n.starts_with(&format!("{host}/")))
        {
            return Err(bad(
                "it must start with a registry host (with a '.' or ':', or localhost)".into(),
            ));
        }
        Ok(Base {
            host: Some(host.to_string()),
            prefix: prefix.to_string(),
        })
    }

    /// `docker://BASE` as written.
    pub fn display(&self) -> String {
        match &self.host {
            None => "docker://".into(),
            Some(h) if self.prefix.is_empty() => format!("docker://{h}"),
            Some(h) => format!("docker://{h}/{}", self.prefix),
        }
    }
}

/// Whether the first component of a name is a registry host (Docker's rule).
fn looks_like_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost"
}

/// A reference resolved to a registry: the API host, repository and tag or digest, and the full name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host as named (`docker.io`, `127.0.0.1:5000`).
    pub host: String,
    /// The repository on that host (`library/alpine`).
    pub repository: String,
    /// The reference as resolved (full name).
    pub reference: Reference,
}

impl Target {
    /// The host requests go to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        api_host(&self.host)
    }

    /// The tag or digest to fetch (the digest when both are given).
    pub fn tag_or_digest(&self) -> String {
        match (&self.reference.digest, &self.reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// `host/repository[:tag][@digest]`.
    pub fn display(&self) -> String {
        let mut s = format!("{}/{}", self.host, self.repository);
        if let Some(t) = &self.reference.tag {
            s.push_str(&format!(":{t}"));
        }
        if let Some(d) = &self.reference.digest {
            s.push_str(&format!("@{d}"));
        }
        s
    }
}

/// Docker Hub's API host for `docker.io`.
pub fn api_host(host: &str) -> &str {
    if host == "docker.io" {
        "registry-1.docker.io"
    } else {
        host
    }
}

/// A registry store: a base and a client.
pub struct Registry {
    /// Where references without a host are read and loads go.
    pub base: Base,
    /// The HTTP client (auth, retries).
    pub client: Client,
    /// Blobs moved at once.
    pub jobs: usize,
}

impl Registry {
    /// A registry store at `base`.
    ///
    /// # Errors
    /// As [`Base::parse`] and [`Client::new`].
    pub fn open(base: &str, options: Options, jobs: usize) -> Result<Registry> {
        Ok(Registry {
            base: Base::parse(base)?,
            client: Client::new(options)?,
            jobs: jobs.max(1),
        })
    }

    /// Where `typed` is read from: with a base, a reference without a host is read from the base, its
    /// path as written (no `library/` added); a reference with a host, or any reference without a base,
    /// is normalized as Docker does.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when it does not parse, or is a bare digest (a registry needs a
    /// repository).
    pub fn target(&self, typed: &str) -> Result<Target> {
        let typed = typed.strip_prefix("docker://").unwrap_or(typed);
        let first = typed.split('/').next().unwrap_or_default();
        let has_host = typed.contains('/') && looks_like_host(first);
        let full = match (&self.base.host, has_host) {
            (Some(h), false) if self.base.prefix.is_empty() => format!("{h}/{typed}"),
            (Some(h), false) => format!("{h}/{}/{typed}", self.base.prefix),
            _ => typed.to_string(),
        };
        let reference = Reference::parse(&full)?;
        let Some(repo) = reference.repository.clone() else {
            return Err(Error::InvalidReference {
                reference: typed.to_string(),
                reason: "a registry needs a repository name, not a bare digest".into(),
            });
        };
        let (host, repository) = repo.split_once('/').unwrap_or(("docker.io", &repo));
        Ok(Target {
            host: host.to_string(),
            repository: repository.to_string(),
            reference,
        })
    }

    /// Where an image named `name` (a full name, `docker.io/library/alpine:3.20`) is pushed: the host
    /// swapped for the base's, the path kept (after the base's prefix). Without a base, the name itself.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when the result is not a valid reference.
    pub fn rename(&self, name: &str) -> Result<Target> {
        let r = Reference::parse(name)?;
        let repo = r.repository.clone().unwrap_or_default();
        let path = repo.split_once('/').map_or(repo.as_str(), |(_, p)| p);
        let mut full = match &self.base.host {
            None => repo.clone(),
            Some(h) if self.base.prefix.is_empty() => format!("{h}/{path}"),
            Some(h) => format!("{h}/{}/{path}", self.base.prefix),
        };
        if let Some(t) = &r.tag {
            full.push_str(&format!(":{t}"));
        }
        self.target(&full)
    }

    /// The manifest `target` names, its descriptor and bytes, checked against the reference's digest and
    /// the registry's `Docker-Content-Digest`.
    ///
    /// # Errors
    /// [`Error::ImageNotFound`] for a 404; [`Error::DigestMismatch`] when the bytes do not hash to the
    /// digest asked for or announced; [`Error::Registry`] / [`Error::Authentication`].
    pub fn manifest(&self, target: &Target) -> Result<(Descriptor, Vec<u8>)> {
        let host = target.api_host();
        let want = target.tag_or_digest();
        let path = format!("/v2/{}/manifests/{want}", target.repository);
        let resp = self
            .client
            .send(host, "GET", &path, &[("accept", ACCEPT)], &Payload::Empty)?;
        let url = self.client.url(host, &path)?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(Error::ImageNotFound {
                reference: target.display(),
                store: PathBuf::from(format!("docker://{}/{}", target.host, target.repository)),
                candidates: Vec::new(),
            });
        }
        if status != 200 {
            return Err(status_error(resp, &url));
        }
        let announced =
            header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
        let content_type = header(&resp, "content-type")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let bytes = read_limited(resp, &url, MAX_DOCUMENT)?;
        // The digest asked for, else the one announced, decides the algorithm; both must agree.
        let algorithm = target
            .reference
            .digest
            .as_ref()
            .or(announced.as_ref())
            .map_or(digest::Algorithm::Sha256, Digest::algorithm);
        let found = algorithm.digest(&bytes);
        let size = bytes.len() as u64;
        for want in [&target.reference.digest, &announced].into_iter().flatten() {
            if want.algorithm() == algorithm {
                digest::check(want, size, &found, size, &shown(&url))?;
            }
        }
        let doc = document::parse_json(&bytes).map_err(|reason| Error::Registry {
            status,
            code: "MANIFEST_INVALID".into(),
            url: shown(&url),
            message: reason,
            moved: Vec::new(),
        })?;
        let body_type = doc
            .get("mediaType")
            .and_then(|m| m.as_str().map(str::to_string));
        let media_type = body_type
            .or(content_type)
            .unwrap_or_else(|| MT_OCI_MANIFEST.to_string());
        Ok((
            Descriptor::new(&media_type, found, bytes.len() as u64),
            bytes,
        ))
    }
}

fn is_manifest(desc: &Descriptor) -> bool {
    matches!(
        desc.media_type.as_str(),
        MT_OCI_INDEX | MT_OCI_MANIFEST | MT_DOCKER_LIST | MT_DOCKER_MANIFEST
    )
}

/// One repository of a registry, as the walker sees it. Documents fetched are kept for the operation.
pub struct Repo<'r> {
    registry: &'r Registry,
    /// The repository (host and name).
    pub target: Target,
    documents: Mutex<HashMap<Digest, Vec<u8>>>,
}

impl<'r> Repo<'r> {
    /// The repository of `target`.
    pub fn new(registry: &'r Registry, target: Target) -> Repo<'r> {
        Repo {
            registry,
            target,
            documents: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, kind: &str, d: &Digest) -> String {
        format!("/v2/{}/{kind}/{d}", self.target.repository)
    }

    /// Open blob `desc` for streaming, resuming with `Range` after a dropped connection.
    ///
    /// # Errors
    /// [`Error::Store`] naming the URL for a 404; [`Error::Registry`] / [`Error::Authentication`].
    pub fn open_blob(&self, desc: &Descriptor) -> Result<BlobReader<'_>> {
        let mut r = BlobReader {
            client: &self.registry.client,
            host: self.target.api_host().to_string(),
            path: self.path("blobs", &desc.digest),
            size: desc.size,
            done: 0,
            skip: 0,
            resumes: 0,
            body: None,
        };
        r.connect()?;
        Ok(r)
    }

    /// A reader of `desc`'s bytes: a document the walk read (a manifest, an index, an image config) from
    /// what was kept, any other manifest from the manifests endpoint, any other blob streamed.
    ///
    /// # Errors
    /// As [`Repo::open_blob`]; [`Error::Store`] for a manifest the registry does not have.
    pub fn open_any(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        if let Some(bytes) = self.kept(&desc.digest) {
            return Ok(Box::new(io::Cursor::new(bytes)));
        }
        if is_manifest(desc) {
            return match self.document(desc)? {
                Some(bytes) => Ok(Box::new(io::Cursor::new(bytes))),
                None => Err(Error::store(
                    format!(
                        "{}/{}@{}",
                        self.target.host, self.target.repository, desc.digest
                    ),
                    "manifest not found in the registry",
                )),
            };
        }
        Ok(Box::new(Filling(self.open_blob(desc)?)))
    }

    fn fetch(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>> {
        let manifest = is_manifest(desc);
        let client = &self.registry.client;
        let host = self.target.api_host();
        let path = self.path(if manifest { "manifests" } else { "blobs" }, &desc.digest);
        let url = client.url(host, &path)?;
        if desc.size > MAX_DOCUMENT {
            return Err(self.malformed(&shown(&url), format!("document over {MAX_DOCUMENT} bytes")));
        }
        let resp = client.send(host, "GET", &path, &[("accept", ACCEPT)], &Payload::Empty)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(status_error(resp, &url)),
        }
        let bytes = read_limited(resp, &url, desc.size.saturating_add(1))?;
        let found = desc.digest.algorithm().digest(&bytes);
        digest::check(
            &desc.digest,
            desc.size,
            &found,
            bytes.len() as u64,
            &shown(&url),
        )?;
        Ok(Some(bytes))
    }

    /// The document `digest` names, when it was fetched (or remembered) before.
    fn kept(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.documents
            .lock()
            .ok()
            .and_then(|m| m.get(digest).cloned())
    }

    /// Keep `bytes` as the document `digest` names (a resolved top-level manifest).
    pub fn remember(&self, digest: &Digest, bytes: Vec<u8>) {
        if let Ok(mut m) = self.documents.lock() {
            m.insert(digest.clone(), bytes);
        }
    }
}

impl BlobSource for Repo<'_> {
    fn document(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>> {
        if let Some(b) = self.kept(&desc.digest) {
            return Ok(Some(b));
        }
        let got = self.fetch(desc)?;
        if let Some(b) = &got {
            self.remember(&desc.digest, b.clone());
        }
        Ok(got)
    }

    // A registry refuses manifests that name content it does not hold: every blob a manifest names is
    // there (a blob lost since is an error when it is copied).
    fn has_blob(&self, _desc: &Descriptor) -> bool {
        true
    }

    fn blob_size(&self, desc: &Descriptor) -> Option<u64> {
        Some(desc.size)
    }

    /// The documents not kept yet, `jobs` at a time.
    fn read_ahead(&self, descs: &[Descriptor], each: &mut dyn FnMut(&[u8])) -> bool {
        let want: Vec<&Descriptor> = {
            let Ok(kept) = self.documents.lock() else {
                return false;
            };
            let mut listed = HashSet::new();
            descs
                .iter()
                .filter(|d| {
                    d.size <= MAX_DOCUMENT
                        && !kept.contains_key(&d.digest)
                        && listed.insert(&d.digest)
                })
                .collect()
        };
        // One document alone is left to the walk: nothing would overlap.
        if want.len() > 1 {
            let _ = super::inspect::parallel_n(
                &want,
                self.registry.jobs,
                |_| 0,
                |d| {
                    if let Ok(Some(bytes)) = self.fetch(d) {
                        self.remember(&d.digest, bytes);
                    }
                    Ok(())
                },
                &mut Progress::none(),
            );
        }
        if let Ok(kept) = self.documents.lock() {
            let mut listed = HashSet::new();
            for d in descs.iter().filter(|d| listed.insert(&d.digest)) {
                if let Some(doc) = kept.get(&d.digest) {
                    each(doc);
                }
            }
        }
        true
    }

    fn malformed(&self, location: &str, reason: String) -> Error {
        Error::Registry {
            status: 200,
            code: "MANIFEST_INVALID".into(),
            url: format!("{}/{} {location}", self.target.host, self.target.repository),
            message: reason,
            moved: Vec::new(),
        }
    }
}

/// A blob download that resumes with `Range` after a dropped connection (a 200 instead of a 206 restarts
/// the blob: the bytes already passed on are skipped, and the consumer's hash over everything it got
/// decides).
pub struct BlobReader<'c> {
    client: &'c Client,
    host: String,
    path: String,
    size: u64,
    done: u64,
    skip: u64,
    resumes: u32,
    body: Option<ureq::BodyReader<'static>>,
}

impl BlobReader<'_> {
    fn connect(&mut self) -> Result<()> {
        let range = format!("bytes={}-", self.done);
        let headers: &[(&str, &str)] = if self.done > 0 {
            &[("range", range.as_str())]
        } else {
            &[]
        };
        let resp: Response<Body> =
            self.client
                .send(&self.host, "GET", &self.path, headers, &Payload::Empty)?;
        let url = self.client.url(&self.host, &self.path)?;
        match resp.status().as_u16() {
            200 => self.skip = self.done,
            206 if self.done > 0 && resumes_at(&resp, self.done) => self.skip = 0,
            404 => return Err(Error::store(shown(&url), "blob not found in the registry")),
            _ => return Err(status_error(resp, &url)),
        }
        self.body = Some(resp.into_body().into_reader());
        Ok(())
    }

    fn reconnect(&mut self, cause: io::Error) -> io::Result<()> {
        if self.resumes >= RESUMES {
            return Err(cause);
        }
        self.resumes += 1;
        self.body = None;
        self.connect().map_err(io::Error::other)
    }
}

/// Whether a 206 answers from `offset` on (`Content-Range: bytes OFFSET-…`): any other range is an error,
/// not bytes to splice in.
fn resumes_at(resp: &Response<Body>, offset: u64) -> bool {
    header(resp, "content-range")
        .and_then(|r| r.trim().strip_prefix("bytes "))
        .and_then(|r| r.split('-').next())
        .and_then(|start| start.trim().parse::<u64>().ok())
        == Some(offset)
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            match body.read(buf) {
                Ok(0) if self.done < self.size => {
                    self.reconnect(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-blob",
                    ))?;
                }
                Ok(0) => return Ok(0),
                Ok(n) if self.skip > 0 => {
                    let dropped = (n as u64).min(self.skip);
                    self.skip -= dropped;
                    let keep = n - usize::try_from(dropped).unwrap_or(n);
                    if keep > 0 {
                        buf.copy_within(n - keep..n, 0);
                        self.done += keep as u64;
                        return Ok(keep);
                    }
                }
                Ok(n) => {
                    self.done += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.reconnect(e)?,
            }
        }
    }
}

/// Reads until the caller's buffer is full or the stream ends. A response body comes in pieces of the
/// HTTP client's buffer (128 KiB); every read that returns costs the copier a write and a hand-over to
/// its hashing thread, so fewer, fuller reads are cheaper.
struct Filling<R>(R);

impl<R: Read> Read for Filling<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
            match self.0.read(rest) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Any error ends the copy: the bytes of this call are not needed.
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// Save's view of a registry: every reference resolved up front (one token for every repository).
pub struct RegistrySource<'r> {
    registry: &'r Registry,
    repos: Vec<Repo<'r>>,
    resolved: Vec<(String, Reference, Descriptor, Origin)>,
}

impl<'r> RegistrySource<'r> {
    /// Resolve every reference of `refs` (manifests fetched, no blob downloaded).
    ///
    /// # Errors
    /// As [`Registry::target`] and [`Registry::manifest`].
    pub fn open(registry: &'r Registry, refs: &[String]) -> Result<RegistrySource<'r>> {
        let targets = refs
            .iter()
            .map(|r| registry.target(r))
            .collect::<Result<Vec<_>>>()?;
        let mut scopes: HashMap<&str, Vec<String>> = HashMap::new();
        for t in &targets {
            scopes
                .entry(t.api_host())
                .or_default()
                .push(format!("repository:{}:pull", t.repository));
        }
        for (host, s) in &scopes {
            registry.client.prepare(host, s)?;
        }
        let mut src = RegistrySource {
            registry,
            repos: Vec::new(),
            resolved: Vec::new(),
        };
        for (typed, t) in refs.iter().zip(targets) {
            let (desc, bytes) = registry.manifest(&t)?;
            let origin = match src
                .repos
                .iter()
                .position(|r| r.target.host == t.host && r.target.repository == t.repository)
            {
                Some(i) => i,
                None => {
                    src.repos.push(Repo::new(registry, t.clone()));
                    src.repos.len() - 1
                }
            };
            if let Some(repo) = src.repos.get(origin) {
                repo.remember(&desc.digest, bytes);
            }
            let mut reference = t.reference.clone();
            // The digest the tag points at is not part of the name written.
            if reference.tag.is_some() {
                reference.digest = None;
            }
            src.resolved.push((typed.clone(), reference, desc, origin));
        }
        Ok(src)
    }

    fn repo(&self, origin: Origin) -> Result<&Repo<'r>> {
        self.repos
            .get(origin)
            .ok_or_else(|| self.invalid(format!("no repository {origin}")))
    }
}

impl Source for RegistrySource<'_> {
    fn resolve(&self, typed: &str) -> Result<(Reference, Descriptor, Origin)> {
        self.resolved
            .iter()
            .find(|(t, ..)| t == typed)
            .map(|(_, r, d, o)| (r.clone(), d.clone(), *o))
            .ok_or_else(|| Error::ImageNotFound {
                reference: typed.to_string(),
                store: PathBuf::from(self.registry.base.display()),
                candidates: Vec::new(),
            })
    }

    fn blobs(&self, origin: Origin) -> &dyn BlobSource {
        match self.repos.get(origin).or_else(|| self.repos.first()) {
            Some(r) => r,
            None => &NoBlobs,
        }
    }

    fn open(&self, origin: Origin, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        self.repo(origin)?.open_any(desc)
    }

    fn location(&self, origin: Origin, digest: &Digest) -> String {
        match self.repos.get(origin) {
            Some(r) => format!("{}/{}@{digest}", r.target.host, r.target.repository),
            None => digest.to_string(),
        }
    }

    /// `jobs` blobs at once, largest first (a large blob never starts last, alone), each hashed on a
    /// second thread while it is received and written ([`digest::copy_verified`]).
    fn copy_into(
        &self,
        blobs: &[(Origin, &Descriptor, u64)],
        file: &File,
        dest: &Path,
        progress: &mut Progress,
    ) -> Result<()> {
        let mut order: Vec<&(Origin, &Descriptor, u64)> = blobs.iter().collect();
        order.sort_by_key(|(_, d, _)| std::cmp::Reverse(d.size));
        super::inspect::parallel_n(
            &order,
            self.registry.jobs,
            |(_, d, _)| d.size,
            |(origin, desc, offset)| {
                let reader = self.repo(*origin)?.open_any(desc)?;
                let mut out = AtWriter { file, pos: *offset };
                let loc = self.location(*origin, &desc.digest);
                digest::copy_verified(
                    reader,
                    &mut out,
                    &desc.digest,
                    desc.size,
                    &loc,
                    dest,
                    &mut |_| Ok(()),
                )
                .map(drop)
            },
            progress,
        )
    }

    fn invalid(&self, reason: String) -> Error {
        Error::Registry {
            status: 200,
            code: String::new(),
            url: self.registry.base.display(),
            message: reason,
            moved: Vec::new(),
        }
    }
}

/// The empty source (never used: a registry source has a repository per resolved reference).
struct NoBlobs;

impl BlobSource for NoBlobs {
    fn document(&self, _desc: &Descriptor) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    fn has_blob(&self, _desc: &Descriptor) -> bool {
        false
    }
    fn blob_size(&self, _desc: &Descriptor) -> Option<u64> {
        None
    }
    fn malformed(&self, location: &str, reason: String) -> Error {
        Error::store(location, reason)
    }
}

/// Writes at increasing offsets of a file (several blobs of one archive file at once).
struct AtWriter<'f> {
    file: &'f File,
    pos: u64,
}

impl io::Write for AtWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(base: &str) -> Registry {
        Registry::open(base, Options::default(), 1).unwrap()
    }

    #[test]
    fn refs_resolve_against_the_base() {
        let t = reg("127.0.0.1:5000").target("demo:1.0").unwrap();
        assert_eq!(
            (t.host.as_str(), t.repository.as_str()),
            ("127.0.0.1:5000", "demo")
        );
        assert_eq!(t.reference.full_name().unwrap(), "127.0.0.1:5000/demo:1.0");
        let t = reg("r:5000/mirror").target("library/alpine:3.20").unwrap();
        assert_eq!(t.display(), "r:5000/mirror/library/alpine:3.20");
        let t = reg("").target("alpine").unwrap();
        assert_eq!(
            (t.api_host(), t.repository.as_str()),
            ("registry-1.docker.io", "library/alpine")
        );
        let t = reg("r:5000").target("ghcr.io/org/app:1.2").unwrap();
        assert_eq!(t.display(), "ghcr.io/org/app:1.2");
        assert!(reg("")
            .target("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
            .is_err());
    }

    #[test]
    fn names_move_onto_the_base_keeping_their_path() {
        let r = reg("r.internal:5000/mirror");
        let t = r.rename("docker.io/library/alpine:3.20").unwrap();
        assert_eq!(t.display(), "r.internal:5000/mirror/library/alpine:3.20");
        let t = reg("docker://127.0.0.1:5000")
            .rename("ghcr.io/org/app:1.2")
            .unwrap();
        assert_eq!(t.display(), "127.0.0.1:5000/org/app:1.2");
        let t = reg("").rename("ghcr.io/org/app:1.2").unwrap();
        assert_eq!(t.display(), "ghcr.io/org/app:1.2");
    }

    #[test]
    fn bases_must_name_a_host() {
        assert!(Base::parse("mirror").is_err());
        assert!(Base::parse("R:5000/Up").is_err());
        assert_eq!(
            Base::parse("docker://localhost:5000/a/").unwrap().display(),
            "docker://localhost:5000/a"
        );
    }
}
