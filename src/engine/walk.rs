//! The one walker: from a top-level descriptor through OCI indexes, Docker manifest lists, nested
//! indexes, single manifests and attestation manifests, over any [`BlobSource`] (a store, an archive or a
//! registry repository); then [`select`] applies a platform [`Matcher`] and the requirement rule and
//! returns the tree pruned to what is kept ([`Selection`]). Save, load, inspect and verify all go through
//! here.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::digest::Digest;
use super::document::{parse_document, MAX_DEPTH, MAX_DOCUMENT_BYTES};
use super::error::{Error, Result};
use super::platform::{Matcher, Platform};
use super::reference;

use super::oci::{self, kind, ImageManifest, Kind};
pub use super::oci::{
    ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REFERENCE_TYPE, MT_DOCKER_CONFIG, MT_DOCKER_LAYER,
    MT_DOCKER_LAYER_GZIP, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_INDEX,
    MT_OCI_MANIFEST,
};

/// A content descriptor as found in an index or manifest. `raw` keeps the original JSON object so that
/// rewritten documents carry every field they had.
#[derive(Clone, Debug)]
pub struct Descriptor {
    /// The `mediaType` field.
    pub media_type: String,
    /// The `digest` field, parsed.
    pub digest: Digest,
    /// The `size` field.
    pub size: u64,
    /// The `platform` field, normalized; `None` when absent or incomplete.
    pub platform: Option<Platform>,
    /// The `annotations` field.
    pub annotations: BTreeMap<String, String>,
    /// The descriptor's JSON as read, unknown fields included (written back unchanged).
    pub raw: Value,
}

impl Descriptor {
    /// Read a descriptor from JSON.
    ///
    /// # Errors
    /// A reason string when the value is not an object, lacks a parseable `digest` or a non-negative
    /// integer `size`, or has non-string annotations. Callers wrap it in their own error.
    pub fn from_json(v: &Value) -> std::result::Result<Descriptor, String> {
        let obj = v.as_object().ok_or("descriptor is not a JSON object")?;
        let media_type = match obj.get("mediaType") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("descriptor mediaType is not a string".into()),
        };
        let digest = obj
            .get("digest")
            .and_then(Value::as_str)
            .ok_or("descriptor has no digest string")?
            .parse::<Digest>()
            .map_err(|e| e.to_string())?;
        let size = obj
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("descriptor {digest} has no non-negative integer size"))?;
        let platform = obj.get("platform").and_then(Platform::from_json);
        let mut annotations = BTreeMap::new();
        match obj.get("annotations") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let s = v.as_str().ok_or_else(|| {
                        format!("descriptor {digest}: annotation {k:?} is not a string")
                    })?;
                    annotations.insert(k.clone(), s.to_string());
                }
            }
            Some(_) => return Err(format!("descriptor {digest}: annotations is not an object")),
        }
        Ok(Descriptor {
            media_type,
            digest,
            size,
            platform,
            annotations,
            raw: v.clone(),
        })
    }

    /// A new descriptor (for documents ocitar writes).
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        let raw = serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size});
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            raw,
        }
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The full name this entry gives its image (the image name, else `ref.name`, by
    /// [`reference::entry_names`]), when it has one.
    pub fn full_name(&self) -> Option<String> {
        reference::entry_names(
            self.annotation(reference::ANNOTATION_IMAGE_NAME),
            self.annotation(reference::ANNOTATION_REF_NAME),
        )
        .into_iter()
        .next()
    }

    /// Replace the annotations (in `raw` too); an empty map removes the field.
    pub fn set_annotations(&mut self, annotations: BTreeMap<String, String>) {
        if let Some(obj) = self.raw.as_object_mut() {
            if annotations.is_empty() {
                obj.remove("annotations");
            } else {
                let m = annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                obj.insert("annotations".into(), Value::Object(m));
            }
        }
        self.annotations = annotations;
    }

    /// The descriptor's media type, digest and size only (no platform, annotations or JSON): what
    /// moving a blob needs, at a tenth of the memory of a parsed descriptor.
    pub fn lean(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            platform: None,
            annotations: BTreeMap::new(),
            raw: Value::Null,
        }
    }

    /// Point this descriptor at other content (digest and size, in `raw` too).
    pub fn retarget(&mut self, digest: Digest, size: u64) {
        retarget_json(&mut self.raw, &digest, size);
        self.digest = digest;
        self.size = size;
    }

    /// The platform as the descriptor writes it, in containerd's format (`linux/arm64/v8` keeps its
    /// variant), or `None` without a platform.
    pub fn platform_text(&self) -> Option<String> {
        let p = self.raw.get("platform")?;
        let os = p.get("os")?.as_str()?;
        let arch = p.get("architecture")?.as_str()?;
        let mut s = os.to_string();
        if let Some(v) = p
            .get("os.version")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            s.push_str(&format!("({v})"));
        }
        s.push('/');
        s.push_str(arch);
        if let Some(v) = p
            .get("variant")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            s.push('/');
            s.push_str(v);
        }
        Some(s)
    }

    /// Whether this is a foreign layer: one with `urls` to fetch it from (Windows base layers, as
    /// `docker save` writes them), which an archive or store may hold without its blob.
    pub fn is_foreign(&self) -> bool {
        self.raw
            .get("urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty())
    }

    /// The manifest this attestation manifest describes: its `vnd.docker.reference.digest`, when it is
    /// marked as an attestation (buildkit's `attestation-manifest` reference type, or the `unknown/unknown`
    /// platform that other writers give it with another reference type).
    pub fn attestation_of(&self) -> Option<&str> {
        let marked = self.annotation(ANNOTATION_REFERENCE_TYPE) == Some("attestation-manifest")
            || self.platform.as_ref().is_some_and(Platform::is_unknown);
        marked
            .then(|| self.annotation(ANNOTATION_REFERENCE_DIGEST))
            .flatten()
    }
}

/// Point the descriptor JSON `raw` at other content: its `digest` and `size`, every other field as it was.
pub fn retarget_json(raw: &mut Value, digest: &Digest, size: u64) {
    if let Some(obj) = raw.as_object_mut() {
        obj.insert("digest".into(), Value::String(digest.to_string()));
        obj.insert("size".into(), Value::from(size));
    }
}

/// The digest of the descriptor JSON `raw` (an entry an index lists), when it has a valid one: what
/// finding a walked entry again needs, without reading the whole descriptor a second time.
pub fn listed_digest(raw: &Value) -> Option<Digest> {
    raw.get("digest")?.as_str()?.parse().ok()
}

/// Where the walker reads documents and asks for blobs: a store or an archive.
pub trait BlobSource {
    /// The bytes of the document `desc` names, verified against its digest and size; `None` when the
    /// blob is not there (a sparse archive or store).
    ///
    /// # Errors
    /// Digest and size mismatches, read errors, and documents over [`MAX_DOCUMENT_BYTES`].
    fn document(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>>;

    /// Whether the blob `desc` names is there (its content is verified when it is copied).
    fn has_blob(&self, desc: &Descriptor) -> bool;

    /// The size of the blob `desc` names, when it is there.
    fn blob_size(&self, desc: &Descriptor) -> Option<u64>;

    /// The error for a malformed document at `location` in this source.
    fn malformed(&self, location: &str, reason: String) -> Error;

    /// Fetch the documents `descs` name before the walk asks for them, several at once, and keep them
    /// for [`BlobSource::document`]: for a source across a network, one round trip for all instead of
    /// one each. Then pass each of those documents it holds to `each`. What fails here is not kept and
    /// is left for the walk to meet in its own order. Returns whether it reads ahead; a directory or an
    /// archive does not (its reads are local).
    fn read_ahead(&self, _descs: &[Descriptor], _each: &mut dyn FnMut(&[u8])) -> bool {
        false
    }
}

/// A walked image: its top-level descriptor and the tree below it.
#[derive(Clone, Debug)]
pub struct Image {
    /// The top-level descriptor the walk started from.
    pub top: Descriptor,
    /// The node of that descriptor, and the tree below it.
    pub root: Node,
}

/// One node of an image tree.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a tree built once per image; boxing buys nothing"
)]
pub enum Node {
    /// An image index or manifest list, with its original bytes and its children in order.
    Index {
        /// The index's descriptor.
        desc: Descriptor,
        /// Its bytes, as read (verified).
        doc: Vec<u8>,
        /// Its JSON.
        json: Value,
        /// Its children, in the order it lists them; a child listed again (here or by an index walked
        /// before) appears only where it was first listed.
        children: Vec<Node>,
    },
    /// An image (or artifact) manifest.
    Manifest(Manifest),
    /// A child listed by an index whose blob is not in the source (a sparse archive or store).
    Absent {
        /// The child's descriptor, as the index lists it.
        desc: Descriptor,
    },
    /// A child of another kind (an opaque blob listed by an index).
    Blob {
        /// The child's descriptor, as the index lists it.
        desc: Descriptor,
    },
}

/// A manifest with what it needs and what of that is missing.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest's descriptor.
    pub desc: Descriptor,
    /// Its bytes, as read (verified).
    pub doc: Vec<u8>,
    /// From the descriptor, else from the config.
    pub platform: Option<Platform>,
    /// The manifest an attestation manifest describes.
    pub attestation_of: Option<Digest>,
    /// The config it names, when it names one.
    pub config: Option<Descriptor>,
    /// The layers it lists, in order.
    pub layers: Vec<Descriptor>,
    /// Config and layer blobs the source does not have (a set: a manifest may list many).
    pub missing: HashSet<Digest>,
    /// Foreign layers the source does not have: kept as descriptors, never copied, not missing.
    pub foreign: Vec<Digest>,
}

impl Manifest {
    /// Whether every blob the manifest needs is in the source.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// Whether this is an attestation (never counted as a platform): see [`Node::is_attestation`].
    pub fn is_attestation(&self) -> bool {
        is_attestation(&self.desc, self.platform.as_ref())
    }

    /// The platform as shown to users: see [`Node::platform_shown`].
    pub fn platform_name(&self) -> String {
        shown(self.platform_written())
    }

    /// The platform as the image writes it: the descriptor's, else the config's (normalized); `None`
    /// without either.
    pub fn platform_written(&self) -> Option<String> {
        self.desc
            .platform_text()
            .or_else(|| self.platform.as_ref().map(ToString::to_string))
    }

    /// The config and layers the source holds, as the manifest lists them: what copying the manifest's
    /// image copies (a missing blob is not there; a foreign layer the source lacks is fetched from its
    /// `urls`).
    pub fn blobs_there(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|b| !self.missing.contains(&b.digest) && !self.foreign.contains(&b.digest))
    }
}

/// The one rule for attestations: a manifest whose descriptor marks it as one
/// ([`Descriptor::attestation_of`]), or whose platform (the descriptor's, else its config's) is
/// `unknown/unknown`.
fn is_attestation(desc: &Descriptor, platform: Option<&Platform>) -> bool {
    desc.attestation_of().is_some() || platform.is_some_and(Platform::is_unknown)
}

/// A platform as shown to users: as written, else `unknown`.
fn shown(written: Option<String>) -> String {
    written.unwrap_or_else(|| "unknown".to_string())
}

impl Node {
    /// The node's descriptor: the top-level one, or the one its index lists.
    pub fn desc(&self) -> &Descriptor {
        match self {
            Node::Index { desc, .. } | Node::Absent { desc } | Node::Blob { desc } => desc,
            Node::Manifest(m) => &m.desc,
        }
    }

    /// Whether this is an attestation manifest, there or absent (never counted as a platform).
    pub fn is_attestation(&self) -> bool {
        match self {
            Node::Manifest(m) => m.is_attestation(),
            Node::Absent { desc } => is_attestation(desc, desc.platform.as_ref()),
            Node::Index { .. } | Node::Blob { .. } => false,
        }
    }

    /// The platform of a manifest or an absent child as the image writes it (containerd's format,
    /// `linux/arm64/v8` keeps its variant); `None` without one, and for indexes and opaque blobs.
    pub fn platform_written(&self) -> Option<String> {
        match self {
            Node::Manifest(m) => m.platform_written(),
            Node::Absent { desc } => desc.platform_text(),
            Node::Index { .. } | Node::Blob { .. } => None,
        }
    }

    /// The platform as shown to users: as written, else `unknown`.
    pub fn platform_shown(&self) -> String {
        shown(self.platform_written())
    }
}

fn is_index_type(mt: &str) -> bool {
    kind(mt) == Kind::Index
}

fn is_manifest_type(mt: &str) -> bool {
    kind(mt) == Kind::Manifest
}

/// Whether a config media type is an image config (one that carries a platform).
pub fn is_image_config(mt: &str) -> bool {
    kind(mt) == Kind::Config
}

/// A descriptor's media type and the document it points at agree: an index type for an image manifest,
/// or a manifest type for an index, is refused (else the walk would quietly find no platform there).
///
/// # Errors
/// A reason naming both.
fn check_document_kind(
    desc: &Descriptor,
    doc_mt: &str,
    json: &Value,
) -> std::result::Result<(), String> {
    let has_manifests = json.get("manifests").is_some();
    let looks_manifest = json.get("config").is_some() || json.get("layers").is_some();
    let doc_is_manifest =
        is_manifest_type(doc_mt) || (doc_mt.is_empty() && !has_manifests && looks_manifest);
    let doc_is_index =
        is_index_type(doc_mt) || (doc_mt.is_empty() && has_manifests && !looks_manifest);
    let found = |what: &str| {
        if doc_mt.is_empty() {
            what.to_string()
        } else {
            format!("{what} ({doc_mt})")
        }
    };
    if is_index_type(&desc.media_type) && doc_is_manifest {
        return Err(format!(
            "the descriptor says {}, but the document is {}",
            desc.media_type,
            found("an image manifest")
        ));
    }
    if is_manifest_type(&desc.media_type) && doc_is_index {
        return Err(format!(
            "the descriptor says {}, but the document is {}",
            desc.media_type,
            found("an index")
        ));
    }
    Ok(())
}

/// Walk the image under `top` in `source`.
///
/// # Errors
/// The source's errors for unreadable or mismatching documents; `source.malformed` for documents that
/// are not indexes or manifests of the right shape, nesting deeper than [`MAX_DEPTH`], and a top-level
/// descriptor whose blob is absent.
pub fn walk(source: &dyn BlobSource, top: &Descriptor) -> Result<Image> {
    let mut seen = HashSet::new();
    let root = visit(source, top, 0, Level::Top, &mut seen)?;
    if let Node::Absent { desc } = &root {
        return Err(source.malformed(
            &desc.digest.to_string(),
            "the top-level image blob is absent".into(),
        ));
    }
    let image = Image {
        top: top.clone(),
        root,
    };
    // One role per digest: content walked as an index or manifest is not also a config or layer.
    let documents: HashSet<&Digest> = image.manifests().iter().map(|m| &m.desc.digest).collect();
    for m in image.manifests() {
        if let Some(b) = m
            .config
            .iter()
            .chain(m.layers.iter())
            .find(|b| documents.contains(&b.digest))
        {
            return Err(source.malformed(
                &b.digest.to_string(),
                format!(
                    "used both as a manifest and as a config or layer (by manifest {})",
                    m.desc.digest
                ),
            ));
        }
    }
    Ok(image)
}

/// Where a node is in the image: the top-level descriptor, or a child of an index.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Child,
}

/// The node for `desc` at `depth`: an opaque blob, an absent child, an index or a manifest.
fn visit(
    source: &dyn BlobSource,
    desc: &Descriptor,
    depth: usize,
    level: Level,
    seen: &mut HashSet<Digest>,
) -> Result<Node> {
    let loc = desc.digest.to_string();
    if depth > MAX_DEPTH {
        return Err(source.malformed(
            &loc,
            format!("indexes nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let known = is_index_type(&desc.media_type) || is_manifest_type(&desc.media_type);
    if !known
        && !desc.media_type.is_empty()
        && !desc.media_type.ends_with("+json")
        && level == Level::Child
    {
        return Ok(Node::Blob { desc: desc.clone() });
    }
    within_limit(source, &loc, "document", desc.size)?;
    let Some(doc) = source.document(desc)? else {
        return Ok(Node::Absent { desc: desc.clone() });
    };
    let json = parse_document(&doc).map_err(|r| source.malformed(&loc, r))?;
    let doc_mt = json.get("mediaType").and_then(Value::as_str).unwrap_or("");
    let is_index = is_index_type(&desc.media_type)
        || (!is_manifest_type(&desc.media_type)
            && (is_index_type(doc_mt) || json.get("manifests").is_some()));
    check_document_kind(desc, doc_mt, &json).map_err(|r| source.malformed(&loc, r))?;
    if is_index {
        let children = visit_children(source, &json, &loc, depth, seen)?;
        return Ok(Node::Index {
            desc: desc.clone(),
            doc,
            json,
            children,
        });
    }
    if !is_manifest_type(&desc.media_type)
        && !is_manifest_type(doc_mt)
        && json.get("layers").is_none()
        && json.get("config").is_none()
    {
        return Ok(Node::Blob { desc: desc.clone() });
    }
    visit_manifest(source, desc, doc, &json).map(Node::Manifest)
}

/// The children of the index `json` (at `loc`, `depth`), each walked once.
fn visit_children(
    source: &dyn BlobSource,
    json: &Value,
    loc: &str,
    depth: usize,
    seen: &mut HashSet<Digest>,
) -> Result<Vec<Node>> {
    let list = match json.get("manifests") {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => return Err(source.malformed(loc, "index \"manifests\" is not an array".into())),
    };
    read_ahead(source, list);
    let mut children = Vec::new();
    let mut listed: HashMap<Digest, Option<String>> = HashMap::new();
    for child in list {
        let child = Descriptor::from_json(child).map_err(|r| source.malformed(loc, r))?;
        let platform = child.platform_text();
        if let (Some(Some(first)), Some(again)) = (listed.get(&child.digest), &platform) {
            if first != again {
                return Err(source.malformed(
                    loc,
                    format!(
                        "manifest {} is listed under two platforms, {first} and {again}: a manifest describes one platform",
                        child.digest
                    ),
                ));
            }
        }
        listed.entry(child.digest.clone()).or_insert(platform);
        // A child listed again (by this index or by another) is walked once, where it is first listed.
        if !seen.insert(child.digest.clone()) {
            continue;
        }
        children.push(visit(source, &child, depth + 1, Level::Child, seen)?);
    }
    Ok(children)
}

/// Let `source` fetch ahead what walking the index's children `list` reads: the child documents, then
/// the image configs those that are manifests name ([`BlobSource::read_ahead`]). Nothing is decided
/// here: the walk reads each of them again (from what the source kept) and judges it there.
fn read_ahead(source: &dyn BlobSource, list: &[Value]) {
    let kids: Vec<Descriptor> = list
        .iter()
        .filter_map(|c| Descriptor::from_json(c).ok())
        .filter(|d| is_manifest_type(&d.media_type))
        .collect();
    let mut configs = Vec::new();
    let reads_ahead = source.read_ahead(&kids, &mut |doc| {
        let config = parse_document(doc).ok().and_then(|json| {
            json.get("config")
                .and_then(|c| Descriptor::from_json(c).ok())
        });
        if let Some(c) = config.filter(|c| is_image_config(&c.media_type)) {
            configs.push(c);
        }
    });
    if reads_ahead && !configs.is_empty() {
        source.read_ahead(&configs, &mut |_| {});
    }
}

/// The manifest `desc` names (its bytes `doc`, parsed as `json`): config, layers, what of them the source
/// lacks, what it describes.
fn visit_manifest(
    source: &dyn BlobSource,
    desc: &Descriptor,
    doc: Vec<u8>,
    json: &Value,
) -> Result<Manifest> {
    let loc = desc.digest.to_string();
    let config = match json.get("config") {
        None | Some(Value::Null) => {
            return Err(source.malformed(&loc, "manifest has no config descriptor".into()))
        }
        Some(c) => {
            Descriptor::from_json(c).map_err(|r| source.malformed(&loc, format!("config: {r}")))?
        }
    };
    let layers = match json.get("layers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|l| {
                Descriptor::from_json(l).map_err(|r| source.malformed(&loc, format!("layer: {r}")))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(source.malformed(&loc, "manifest \"layers\" is not an array".into())),
    };
    // The image spec's reading of the same JSON: what the reading above accepted (which names exactly
    // what is wrong) must also be an image manifest by the spec's types: a schemaVersion, descriptors
    // with a media type, digests of the spec's grammar.
    let _typed: ImageManifest = oci::typed(json)
        .map_err(|r| source.malformed(&loc, format!("not an image manifest: {r}")))?;
    let (mut missing, mut foreign, mut seen) = (HashSet::new(), Vec::new(), HashSet::new());
    for blob in std::iter::once(&config).chain(layers.iter()) {
        if !seen.insert(&blob.digest) || source.has_blob(blob) {
            continue;
        }
        if blob.is_foreign() {
            foreign.push(blob.digest.clone());
        } else {
            missing.insert(blob.digest.clone());
        }
    }
    let attestation_of =
        match desc.attestation_of() {
            Some(d) => Some(d.parse::<Digest>().map_err(|e| {
                source.malformed(&loc, format!("{ANNOTATION_REFERENCE_DIGEST}: {e}"))
            })?),
            None => None,
        };
    // Read whether or not the descriptor gives the platform: the config is checked either way.
    let from_config = config_platform(source, &config)?;
    let platform = desc.platform.clone().or(from_config);
    Ok(Manifest {
        desc: desc.clone(),
        doc,
        platform,
        attestation_of,
        config: Some(config),
        layers,
        missing,
        foreign,
    })
}

/// Refuse `what` (a document, at `loc`) when its descriptor's `size` is over [`MAX_DOCUMENT_BYTES`].
///
/// # Errors
/// `source.malformed` naming the size and the limit.
fn within_limit(source: &dyn BlobSource, loc: &str, what: &str, size: u64) -> Result<()> {
    if size > MAX_DOCUMENT_BYTES {
        return Err(source.malformed(
            loc,
            format!("{what} of {size} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit"),
        ));
    }
    Ok(())
}

/// An image config is a document too: within the limits, a JSON object. Its platform, when it is an
/// image config that is there.
///
/// # Errors
/// [`Error::SizeMismatch`] for a config over the document limit whose blob has another size; the
/// source's errors for a config over the limit, unreadable or not a JSON object.
fn config_platform(source: &dyn BlobSource, c: &Descriptor) -> Result<Option<Platform>> {
    if !is_image_config(&c.media_type) {
        return Ok(None);
    }
    let cloc = c.digest.to_string();
    if c.size > MAX_DOCUMENT_BYTES {
        // A descriptor claiming more than the blob holds is a size mismatch before it is a limit.
        if let Some(found) = source.blob_size(c).filter(|s| *s != c.size) {
            return Err(Error::SizeMismatch {
                digest: cloc,
                location: "image config".into(),
                expected: c.size,
                found: found.to_string(),
            });
        }
        within_limit(source, &cloc, "image config", c.size)?;
    }
    let Some(bytes) = source.document(c)? else {
        return Ok(None);
    };
    let v = parse_document(&bytes)
        .map_err(|r| source.malformed(&cloc, format!("image config: {r}")))?;
    Ok(Platform::from_json(&v))
}

impl Image {
    /// Every manifest of the image, in walk order.
    pub fn manifests(&self) -> Vec<&Manifest> {
        let mut out = Vec::new();
        collect_manifests(&self.root, &mut out);
        out
    }
}

fn collect_manifests<'a>(n: &'a Node, out: &mut Vec<&'a Manifest>) {
    match n {
        Node::Index { children, .. } => children.iter().for_each(|c| collect_manifests(c, out)),
        Node::Manifest(m) => out.push(m),
        Node::Absent { .. } | Node::Blob { .. } => {}
    }
}

/// What [`select`] made of a manifest or an absent child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Selected: it is in the pruned tree.
    Kept,
    /// Wanted, but the manifest or one of its blobs is not there (a sparse archive or store).
    NotThere,
    /// Not wanted: the platform list leaves it out (an attestation: its subject is not kept).
    LeftOut,
}

/// A manifest or an absent child of an image, and what [`select`] made of it.
#[derive(Clone, Copy, Debug)]
pub struct Choice<'a> {
    /// The walked node ([`Node::Manifest`] or [`Node::Absent`]).
    pub node: &'a Node,
    /// What became of it.
    pub fate: Fate,
}

/// A node [`select`] keeps, borrowed from the walked tree. An index lists only the children kept below
/// it, in the order it lists them.
#[derive(Clone, Debug)]
pub enum Kept<'a> {
    /// An index or manifest list with at least one kept child (or the top-level one).
    Index {
        /// The index's descriptor.
        desc: &'a Descriptor,
        /// Its bytes, as read (verified).
        doc: &'a [u8],
        /// Its JSON.
        json: &'a Value,
        /// The children kept, in the order it lists them.
        children: Vec<Kept<'a>>,
    },
    /// A selected platform manifest, a kept attestation, or the top-level manifest.
    Manifest(&'a Manifest),
    /// An opaque blob an index lists (always kept).
    Blob(&'a Descriptor),
}

impl<'a> Kept<'a> {
    /// The node's descriptor.
    pub fn desc(&self) -> &'a Descriptor {
        match self {
            Kept::Index { desc, .. } | Kept::Blob(desc) => desc,
            Kept::Manifest(m) => &m.desc,
        }
    }

    /// Call `f` on this node and every kept node below it, parents first, in the order indexes list
    /// them.
    pub fn each<'s>(&'s self, f: &mut impl FnMut(&'s Kept<'a>)) {
        f(self);
        if let Kept::Index { children, .. } = self {
            children.iter().for_each(|c| c.each(f));
        }
    }
}

/// What [`select`] keeps of an image: the walked tree pruned to the selected nodes (borrowed, not
/// copied), and every platform and attestation the image lists with what became of it. Everything an
/// operation needs of a selection derives from these two: the blobs to copy, the platforms saved or
/// loaded, those absent or left out, the attestations and foreign layers kept.
#[derive(Clone, Debug)]
pub struct Selection<'a> {
    /// The walked image.
    pub image: &'a Image,
    /// The selected nodes, from the top-level one down; `None` only when the top-level blob is absent
    /// (which [`walk`] refuses).
    pub root: Option<Kept<'a>>,
    /// Every manifest and absent child of the image, in walk order, with its fate.
    pub choices: Vec<Choice<'a>>,
}

/// What an operation keeps of a [`Selection`] once the walked tree is dropped (load keeps one per image
/// until it commits): lean descriptors to move and the names reports show.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// [`Selection::blobs`], each lean ([`Descriptor::lean`]: media type, digest and size).
    pub blobs: Vec<Descriptor>,
    /// [`Selection::platforms`].
    pub platforms: Vec<String>,
    /// [`Selection::absent`].
    pub absent: Vec<String>,
    /// [`Selection::left_out`].
    pub left_out: Vec<String>,
    /// [`Selection::attestations`].
    pub attestations: usize,
    /// [`Selection::foreign`].
    pub foreign: Vec<Digest>,
}

impl<'a> Selection<'a> {
    /// Apply `matcher` to `image` without the requirement rule or [`Selection::check`]: what inspect
    /// shows of every image, selectable or not. Platform manifests are kept when the matcher selects
    /// them and they are complete; attestations when they are complete and describe a kept manifest
    /// (or, without a platform list, describe none); an index when anything below it is kept; opaque
    /// blobs and the top-level node always.
    pub fn new(image: &'a Image, matcher: &Matcher) -> Selection<'a> {
        let mut choices = Vec::new();
        choices_under(&image.root, &mut choices);
        for c in choices.iter_mut().filter(|c| !c.node.is_attestation()) {
            c.fate = match c.node {
                _ if !matcher.selects(platform_of(c.node)) => Fate::LeftOut,
                Node::Manifest(m) if m.complete() => Fate::Kept,
                _ => Fate::NotThere,
            };
        }
        // Which manifests are kept decides which attestations are, in walk order (so an attestation of
        // an attestation kept before it is kept too).
        let mut kept: HashSet<&Digest> = choices
            .iter()
            .filter(|c| c.fate == Fate::Kept)
            .map(|c| &c.node.desc().digest)
            .collect();
        for c in choices.iter_mut().filter(|c| c.node.is_attestation()) {
            let node: &'a Node = c.node;
            c.fate = match node {
                Node::Manifest(m) if m.complete() => {
                    let subject_kept = m.attestation_of.as_ref().is_some_and(|d| kept.contains(d));
                    if subject_kept || (matcher.wanted().is_none() && m.attestation_of.is_none()) {
                        kept.insert(&m.desc.digest);
                        Fate::Kept
                    } else {
                        Fate::LeftOut
                    }
                }
                _ => Fate::NotThere,
            };
        }
        let root = prune(&image.root, &kept, Level::Top);
        Selection {
            image,
            root,
            choices,
        }
    }

    /// Every blob to move, each once, in walk order: each kept index and manifest followed by what is
    /// below it (a manifest's config and layers that are there; [`Manifest::blobs_there`]).
    pub fn blobs(&self) -> Vec<&'a Descriptor> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut push = |d: &'a Descriptor| {
            if seen.insert(&d.digest) {
                out.push(d);
            }
        };
        if let Some(root) = &self.root {
            root.each(&mut |n| {
                push(n.desc());
                if let Kept::Manifest(m) = n {
                    m.blobs_there().for_each(&mut push);
                }
            });
        }
        out
    }

    /// The digests of every kept node (indexes, manifests, attestations, opaque blobs).
    pub fn kept(&self) -> HashSet<&'a Digest> {
        let mut out = HashSet::new();
        if let Some(root) = &self.root {
            root.each(&mut |n| {
                out.insert(&n.desc().digest);
            });
        }
        out
    }

    /// The selected platform manifests (not attestations), in walk order.
    pub fn platform_manifests(&self) -> Vec<&'a Manifest> {
        self.kept_manifests(false)
    }

    /// The platforms selected, as shown to users, in walk order.
    pub fn platforms(&self) -> Vec<String> {
        self.platform_manifests()
            .iter()
            .map(|m| m.platform_name())
            .collect()
    }

    /// How many attestation manifests are kept.
    pub fn attestations(&self) -> usize {
        self.kept_manifests(true).len()
    }

    /// Foreign layers of the selected platform manifests that the source lacks, each once: their
    /// descriptors are kept, their blobs are not there to copy (as `docker load` does).
    pub fn foreign(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = Vec::new();
        for f in self
            .platform_manifests()
            .iter()
            .flat_map(|m| m.foreign.iter())
        {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }

    /// Platforms listed by the image but not selected because their content is absent or incomplete:
    /// incomplete manifests, then absent children (named by digest when they give no platform).
    pub fn absent(&self) -> Vec<String> {
        self.platform_names(Fate::NotThere)
    }

    /// Platforms listed by the image that the platform list left out, in the same order as
    /// [`Selection::absent`].
    pub fn left_out(&self) -> Vec<String> {
        self.platform_names(Fate::LeftOut)
    }

    /// The summary an operation keeps of this selection once the tree is dropped.
    pub fn summary(&self) -> Summary {
        Summary {
            blobs: self.blobs().into_iter().map(Descriptor::lean).collect(),
            platforms: self.platforms(),
            absent: self.absent(),
            left_out: self.left_out(),
            attestations: self.attestations(),
            foreign: self.foreign(),
        }
    }

    /// The checks [`select`] makes of the pruned tree: one digest, one size (every descriptor in the
    /// image of a kept blob gives that blob's size), and something selected.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`]; `empty`'s error when nothing can be selected.
    pub fn check(&self, image_name: &str, empty: impl FnOnce(String) -> Error) -> Result<()> {
        let blobs = self.blobs();
        let sizes: HashMap<&Digest, u64> = blobs.iter().map(|d| (&d.digest, d.size)).collect();
        check_sizes(&self.image.root, &sizes, image_name)?;
        let nothing = match &self.image.root {
            Node::Index { .. } => blobs.len() <= 1,
            Node::Manifest(m) => {
                !m.complete() || (self.platform_manifests().is_empty() && !m.is_attestation())
            }
            Node::Blob { .. } | Node::Absent { .. } => false,
        };
        if !nothing {
            return Ok(());
        }
        let absent = self.absent();
        Err(empty(format!(
            "image {image_name} has no complete platform manifest{}",
            if absent.is_empty() {
                String::new()
            } else {
                format!(" (absent: {})", absent.join(", "))
            }
        )))
    }

    /// The kept manifests that are (or are not) attestations, in walk order.
    fn kept_manifests(&self, attestations: bool) -> Vec<&'a Manifest> {
        self.choices
            .iter()
            .filter(|c| c.fate == Fate::Kept && c.node.is_attestation() == attestations)
            .filter_map(|c| match c.node {
                Node::Manifest(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The platforms (not attestations) of this fate: manifests first, then absent children.
    fn platform_names(&self, fate: Fate) -> Vec<String> {
        let of = |c: &&Choice<'a>| c.fate == fate && !c.node.is_attestation();
        let manifests = self
            .choices
            .iter()
            .filter(of)
            .filter(|c| matches!(c.node, Node::Manifest(_)))
            .map(|c| c.node.platform_shown());
        let absent = self.choices.iter().filter(of).filter_map(|c| match c.node {
            Node::Absent { desc } => Some(
                c.node
                    .platform_written()
                    .unwrap_or_else(|| desc.digest.to_string()),
            ),
            _ => None,
        });
        manifests.chain(absent).collect()
    }
}

/// The platform a matcher judges a manifest or absent child by.
fn platform_of(n: &Node) -> Option<&Platform> {
    match n {
        Node::Manifest(m) => m.platform.as_ref(),
        Node::Absent { desc } | Node::Index { desc, .. } | Node::Blob { desc } => {
            desc.platform.as_ref()
        }
    }
}

/// Every manifest and absent child under `n`, in walk order, each left out until [`Selection::new`]
/// decides.
fn choices_under<'a>(n: &'a Node, out: &mut Vec<Choice<'a>>) {
    match n {
        Node::Index { children, .. } => children.iter().for_each(|c| choices_under(c, out)),
        Node::Manifest(_) | Node::Absent { .. } => out.push(Choice {
            node: n,
            fate: Fate::LeftOut,
        }),
        Node::Blob { .. } => {}
    }
}

/// The kept part of `n`: a manifest when `kept` holds it (the top-level one always), an index when
/// anything below it is kept (the top-level one always), an opaque blob always, an absent child never.
fn prune<'a>(n: &'a Node, kept: &HashSet<&Digest>, level: Level) -> Option<Kept<'a>> {
    match n {
        Node::Index {
            desc,
            doc,
            json,
            children,
        } => {
            let children: Vec<Kept<'a>> = children
                .iter()
                .filter_map(|c| prune(c, kept, Level::Child))
                .collect();
            (level == Level::Top || !children.is_empty()).then_some(Kept::Index {
                desc,
                doc,
                json,
                children,
            })
        }
        Node::Manifest(m) => {
            (level == Level::Top || kept.contains(&m.desc.digest)).then_some(Kept::Manifest(m))
        }
        Node::Blob { desc } => Some(Kept::Blob(desc)),
        Node::Absent { .. } => None,
    }
}

/// Apply `matcher` to `image`: with a platform list, every listed platform must be present and complete;
/// without one, absent or incomplete platforms are skipped and reported.
///
/// # Errors
/// [`Error::PlatformNotFound`] naming `image_name`, the missing platforms and the complete ones;
/// [`Error::SizeMismatch`] when two descriptors of a kept blob disagree on its size;
/// `source.malformed`-style error from `empty` when nothing at all can be selected.
pub fn select<'a>(
    image: &'a Image,
    matcher: &Matcher,
    image_name: &str,
    empty: impl FnOnce(String) -> Error,
) -> Result<Selection<'a>> {
    check_required(&image.manifests(), matcher, image_name)?;
    let sel = Selection::new(image, matcher);
    sel.check(image_name, empty)?;
    Ok(sel)
}

/// The requirement rule: with a platform list, every listed platform is present and complete.
///
/// # Errors
/// [`Error::PlatformNotFound`] naming `image_name`, the missing platforms and the complete ones.
fn check_required(manifests: &[&Manifest], matcher: &Matcher, image_name: &str) -> Result<()> {
    let Some(wanted) = matcher.wanted() else {
        return Ok(());
    };
    let complete: Vec<&&Manifest> = manifests
        .iter()
        .filter(|m| !m.is_attestation() && m.complete())
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| {
            !complete
                .iter()
                .any(|m| m.platform.as_ref().is_some_and(|p| w.matches(p)))
        })
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::PlatformNotFound {
        image: image_name.to_string(),
        missing,
        available: complete.iter().map(|m| m.platform_name()).collect(),
    })
}

/// Every descriptor under `n` of a kept blob must give that blob's size.
fn check_sizes(n: &Node, sizes: &HashMap<&Digest, u64>, image_name: &str) -> Result<()> {
    let check = |d: &Descriptor| match sizes.get(&d.digest) {
        Some(&size) if size != d.size => Err(Error::SizeMismatch {
            digest: d.digest.to_string(),
            location: format!("descriptors of image {image_name}"),
            expected: size,
            found: d.size.to_string(),
        }),
        _ => Ok(()),
    };
    match n {
        Node::Index { children, .. } => {
            check(n.desc())?;
            children
                .iter()
                .try_for_each(|c| check_sizes(c, sizes, image_name))
        }
        Node::Manifest(m) => {
            check(&m.desc)?;
            m.config.iter().chain(m.layers.iter()).try_for_each(check)
        }
        Node::Absent { desc } | Node::Blob { desc } => check(desc),
    }
}

/// The familiar names (`alpine:3.20`) that `entries` (one image's `index.json` entries) give their image,
/// in order, each once.
pub fn familiar_names(entries: &[Descriptor]) -> Vec<String> {
    familiar_names_of(entries.iter().map(|d| {
        (
            d.annotation(reference::ANNOTATION_IMAGE_NAME),
            d.annotation(reference::ANNOTATION_REF_NAME),
        )
    }))
}

/// [`familiar_names`] of entries given by their two name annotations (image name, ref name).
pub fn familiar_names_of<'a>(
    entries: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> Vec<String> {
    let mut seen = HashSet::new();
    entries
        .filter_map(|(image, refn)| reference::entry_names(image, refn).into_iter().next())
        .map(|n| reference::familiar(&n))
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desc(v: Value) -> Descriptor {
        Descriptor::from_json(&v).unwrap()
    }

    /// Blobs in memory: what a sparse archive or store holds.
    #[derive(Default)]
    struct Memory(HashMap<Digest, Vec<u8>>);

    impl Memory {
        /// Hold `bytes`; their descriptor (`mediaType`, `digest`, `size`) and `extra` fields.
        fn add(&mut self, media_type: &str, bytes: Vec<u8>, extra: Value) -> Value {
            let d = Digest::sha256_of(&bytes);
            let mut v =
                json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()});
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            self.0.insert(d, bytes);
            v
        }

        /// An image manifest (config and one layer, both held), with `extra` descriptor fields.
        fn manifest(&mut self, config: Value, layer: &[u8], extra: Value) -> Value {
            let c = self.add(
                MT_OCI_CONFIG,
                serde_json::to_vec(&config).unwrap(),
                json!({}),
            );
            let l = self.add(
                "application/vnd.oci.image.layer.v1.tar",
                layer.to_vec(),
                json!({}),
            );
            let m = json!({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": c, "layers": [l]});
            self.add(MT_OCI_MANIFEST, serde_json::to_vec(&m).unwrap(), extra)
        }
    }

    impl BlobSource for Memory {
        fn document(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>> {
            Ok(self.0.get(&desc.digest).cloned())
        }
        fn has_blob(&self, desc: &Descriptor) -> bool {
            self.0.contains_key(&desc.digest)
        }
        fn blob_size(&self, desc: &Descriptor) -> Option<u64> {
            self.0.get(&desc.digest).map(|b| b.len() as u64)
        }
        fn malformed(&self, location: &str, reason: String) -> Error {
            Error::InvalidArgument(format!("{location}: {reason}"))
        }
    }

    /// An index listing amd64, arm64, an attestation of amd64, and an s390x manifest that is absent.
    /// Returns the source, the index's descriptor and JSON, and the four entries in order.
    fn sparse_index() -> (Memory, Descriptor, Value, Vec<Value>) {
        let mut src = Memory::default();
        let platform = |arch: &str| json!({"platform": {"os": "linux", "architecture": arch}});
        let amd64 = src.manifest(
            json!({"os": "linux", "architecture": "amd64"}),
            b"amd64",
            platform("amd64"),
        );
        let arm64 = src.manifest(
            json!({"os": "linux", "architecture": "arm64"}),
            b"arm64",
            platform("arm64"),
        );
        let attestation = src.manifest(
            json!({"os": "unknown", "architecture": "unknown"}),
            b"in-toto",
            json!({
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {
                    ANNOTATION_REFERENCE_TYPE: "attestation-manifest",
                    ANNOTATION_REFERENCE_DIGEST: amd64["digest"],
                },
            }),
        );
        let mut absent = Memory::default();
        let s390x = absent.manifest(
            json!({"os": "linux", "architecture": "s390x"}),
            b"s390x",
            platform("s390x"),
        );
        let entries = vec![amd64, arm64, attestation, s390x];
        let index = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries});
        let top = desc(src.add(MT_OCI_INDEX, serde_json::to_vec(&index).unwrap(), json!({})));
        (src, top, index, entries)
    }

    fn only(p: &str) -> Matcher {
        Matcher::only(Platform::parse_list(&[p]).unwrap())
    }

    fn digest_of(v: &Value) -> Digest {
        v["digest"].as_str().unwrap().parse().unwrap()
    }

    /// A source that reads ahead: records what it was asked for, in order.
    struct Ahead {
        inner: Memory,
        asked: std::cell::RefCell<Vec<Vec<Digest>>>,
    }

    impl BlobSource for Ahead {
        fn document(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>> {
            self.inner.document(desc)
        }
        fn has_blob(&self, desc: &Descriptor) -> bool {
            self.inner.has_blob(desc)
        }
        fn blob_size(&self, desc: &Descriptor) -> Option<u64> {
            self.inner.blob_size(desc)
        }
        fn malformed(&self, location: &str, reason: String) -> Error {
            self.inner.malformed(location, reason)
        }
        fn read_ahead(&self, descs: &[Descriptor], each: &mut dyn FnMut(&[u8])) -> bool {
            let digests = descs.iter().map(|d| d.digest.clone()).collect();
            self.asked.borrow_mut().push(digests);
            descs
                .iter()
                .filter_map(|d| self.inner.0.get(&d.digest))
                .for_each(|doc| each(doc));
            true
        }
    }

    #[test]
    fn a_source_reading_ahead_is_asked_for_the_listed_manifests_then_their_image_configs() {
        let (src, top, _, entries) = sparse_index();
        let config_of = |e: &Value| {
            let doc = src.document(&desc(e.clone())).unwrap().unwrap();
            let m: Value = serde_json::from_slice(&doc).unwrap();
            digest_of(&m["config"])
        };
        // The absent s390x manifest names no config: it cannot be read.
        let configs: Vec<Digest> = entries.iter().take(3).map(config_of).collect();
        let plain = walk(&src, &top).unwrap();
        let ahead = Ahead {
            inner: src,
            asked: std::cell::RefCell::default(),
        };
        let walked = walk(&ahead, &top).unwrap();
        assert_eq!(
            ahead.asked.into_inner(),
            [entries.iter().map(digest_of).collect(), configs]
        );
        // Reading ahead changes nothing the walk finds.
        assert_eq!(format!("{:?}", walked.root), format!("{:?}", plain.root));
    }

    #[test]
    fn selecting_one_platform_keeps_exactly_its_manifest_and_attestation() {
        let (src, top, _, entries) = sparse_index();
        let image = walk(&src, &top).unwrap();
        let sel = select(&image, &only("linux/amd64"), "img", Error::InvalidArgument).unwrap();
        let Some(Kept::Index { desc, children, .. }) = &sel.root else {
            panic!("the root is the index: {:?}", sel.root);
        };
        assert_eq!(desc.digest, top.digest);
        let kept: Vec<Digest> = children.iter().map(|c| c.desc().digest.clone()).collect();
        assert_eq!(kept, [digest_of(&entries[0]), digest_of(&entries[2])]);
        assert!(children.iter().all(|c| matches!(c, Kept::Manifest(_))));
        assert_eq!(sel.platforms(), ["linux/amd64"]);
        assert_eq!(sel.attestations(), 1);
        assert!(sel.absent().is_empty());
        assert_eq!(sel.left_out(), ["linux/arm64", "linux/s390x"]);
        // The index, then each kept manifest followed by its config and layer.
        assert_eq!(sel.blobs().len(), 1 + 3 + 3);
        assert_eq!(sel.blobs().first().map(|d| &d.digest), Some(&top.digest));
        let fates: Vec<Fate> = sel.choices.iter().map(|c| c.fate).collect();
        assert_eq!(
            fates,
            [Fate::Kept, Fate::LeftOut, Fate::Kept, Fate::LeftOut]
        );
        let summary = sel.summary();
        assert_eq!(summary.blobs.len(), 7);
        assert!(summary.blobs.iter().all(|d| d.raw.is_null()));
    }

    #[test]
    fn without_a_platform_list_an_absent_platform_is_reported_not_kept() {
        let (src, top, _, _) = sparse_index();
        let image = walk(&src, &top).unwrap();
        let sel = select(&image, &Matcher::all(), "img", Error::InvalidArgument).unwrap();
        assert_eq!(sel.platforms(), ["linux/amd64", "linux/arm64"]);
        assert_eq!(sel.absent(), ["linux/s390x"]);
        assert!(sel.left_out().is_empty());
        assert_eq!(sel.kept().len(), 1 + 3);
        // Asking for the absent platform is the requirement rule's error, naming the complete ones.
        let err = select(&image, &only("linux/s390x"), "img", Error::InvalidArgument).unwrap_err();
        assert!(
            matches!(&err, Error::PlatformNotFound { missing, available, .. }
                if missing == &["linux/s390x"] && available == &["linux/amd64", "linux/arm64"]),
            "{err:?}"
        );
    }

    #[test]
    fn the_subset_of_a_pruned_tree_lists_the_kept_entries_as_written() {
        let (src, top, index, entries) = sparse_index();
        let image = walk(&src, &top).unwrap();
        let sel = select(&image, &only("linux/amd64"), "img", Error::InvalidArgument).unwrap();
        let (new_top, rewritten) = crate::engine::save::subset(&sel);
        // The index as the store wrote it, with only the kept entries, each byte for byte.
        let mut expected = index.clone();
        expected["manifests"] = json!([entries[0], entries[2]]);
        let bytes = serde_json::to_vec(&expected).unwrap();
        assert_eq!(new_top.digest, Digest::sha256_of(&bytes));
        assert_eq!(new_top.size, bytes.len() as u64);
        let (d, written) = rewritten.get(&top.digest).unwrap();
        assert_eq!(written, &bytes);
        assert_eq!(d.raw["digest"], json!(new_top.digest.to_string()));
        assert_eq!(rewritten.len(), 1);
        // Nothing left out: the image's own index, not rewritten.
        let (src, top, _, _) = {
            let (mut src, _, _, entries) = sparse_index();
            let whole =
                json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries[..3]});
            let top = desc(src.add(MT_OCI_INDEX, serde_json::to_vec(&whole).unwrap(), json!({})));
            (src, top, (), ())
        };
        let image = walk(&src, &top).unwrap();
        let sel = select(&image, &Matcher::all(), "img", Error::InvalidArgument).unwrap();
        let (same, rewritten) = crate::engine::save::subset(&sel);
        assert_eq!(same.digest, top.digest);
        assert!(rewritten.is_empty());
    }

    #[test]
    fn an_index_with_nothing_kept_below_it_is_pruned() {
        let (src, _, _, entries) = sparse_index();
        let mut src = src;
        // A nested index holding only the arm64 manifest, beside amd64.
        let nested =
            json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [entries[1]]});
        let nested = src.add(
            MT_OCI_INDEX,
            serde_json::to_vec(&nested).unwrap(),
            json!({}),
        );
        let outer = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [entries[0], nested]});
        let top = desc(src.add(MT_OCI_INDEX, serde_json::to_vec(&outer).unwrap(), json!({})));
        let image = walk(&src, &top).unwrap();
        let sel = select(&image, &only("linux/amd64"), "img", Error::InvalidArgument).unwrap();
        assert!(!sel.kept().contains(&digest_of(&nested)));
        assert_eq!(sel.left_out(), ["linux/arm64"]);
        let sel = select(&image, &only("linux/arm64"), "img", Error::InvalidArgument).unwrap();
        assert!(sel.kept().contains(&digest_of(&nested)));
        assert_eq!(sel.platforms(), ["linux/arm64"]);
    }

    #[test]
    fn attestations_by_type_or_unknown_platform() {
        let subject = Digest::sha256_of(b"subject").to_string();
        let base = |ty: &str, os: &str| {
            desc(serde_json::json!({
                "mediaType": MT_OCI_MANIFEST,
                "digest": Digest::sha256_of(b"a").to_string(),
                "size": 1,
                "platform": {"os": os, "architecture": os},
                "annotations": {
                    ANNOTATION_REFERENCE_DIGEST: subject,
                    ANNOTATION_REFERENCE_TYPE: ty,
                },
            }))
        };
        assert_eq!(
            base("attestation-manifest", "unknown").attestation_of(),
            Some(subject.as_str())
        );
        // regclient's test data marks them "builder"; the unknown/unknown platform still says what they are.
        assert_eq!(
            base("builder", "unknown").attestation_of(),
            Some(subject.as_str())
        );
        assert_eq!(
            base("attestation-manifest", "linux").attestation_of(),
            Some(subject.as_str())
        );
        assert_eq!(base("builder", "linux").attestation_of(), None);
    }
}
