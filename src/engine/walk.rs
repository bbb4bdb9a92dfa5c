//! The one walker: from a top-level descriptor through OCI indexes, Docker manifest lists, nested
//! indexes, single manifests and attestation manifests, over any [`BlobSource`] (a store or an archive);
//! then [`select`] applies a platform [`Matcher`] and the requirement rule. Save, load, inspect and verify
//! all go through here.

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
        if let Some(obj) = self.raw.as_object_mut() {
            obj.insert("digest".into(), Value::String(digest.to_string()));
            obj.insert("size".into(), Value::from(size));
        }
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
}

/// A walked image: its top-level descriptor and the tree below it.
#[derive(Clone, Debug)]
pub struct Image {
    /// The top-level descriptor the walk started from.
    pub top: Descriptor,
    /// The tree below it.
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
        /// Its children, in the order it lists them.
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

    /// Whether this is an attestation (never counted as a platform).
    pub fn is_attestation(&self) -> bool {
        self.attestation_of.is_some() || self.platform.as_ref().is_some_and(Platform::is_unknown)
    }

    /// The platform as shown to users.
    pub fn platform_name(&self) -> String {
        self.desc
            .platform_text()
            .or_else(|| self.platform.as_ref().map(ToString::to_string))
            .unwrap_or_else(|| "unknown".to_string())
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
    if desc.size > MAX_DOCUMENT_BYTES {
        return Err(source.malformed(
            &loc,
            format!(
                "document of {} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit",
                desc.size
            ),
        ));
    }
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
        // An index that lists one child many times is walked once per child.
        if !seen.insert(child.digest.clone()) {
            continue;
        }
        children.push(visit(source, &child, depth + 1, Level::Child, seen)?);
    }
    Ok(children)
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
        return Err(source.malformed(
            &cloc,
            format!(
                "image config of {} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit",
                c.size
            ),
        ));
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

    /// Platforms listed by the image's indexes whose manifests are absent, as shown to users.
    pub fn absent(&self) -> Vec<&Descriptor> {
        let mut out = Vec::new();
        collect_absent(&self.root, &mut out);
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

fn collect_absent<'a>(n: &'a Node, out: &mut Vec<&'a Descriptor>) {
    match n {
        Node::Index { children, .. } => children.iter().for_each(|c| collect_absent(c, out)),
        Node::Absent { desc } => out.push(desc),
        Node::Manifest(_) | Node::Blob { .. } => {}
    }
}

/// What [`select`] keeps of an image.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Every blob to move, each once, documents first in walk order, then configs and layers: lean
    /// descriptors (media type, digest and size; [`Descriptor::lean`]), kept for every image of an
    /// operation at once.
    pub blobs: Vec<Descriptor>,
    /// Digests of every selected node (indexes, manifests, attestations, opaque blobs).
    pub kept: HashSet<Digest>,
    /// Selected platform manifests (not attestations), in index order.
    pub manifests: Vec<Digest>,
    /// Their platforms, as shown to users.
    pub platforms: Vec<String>,
    /// Platforms listed by the image but not selected because their content is absent or incomplete.
    pub absent: Vec<String>,
    /// Platforms listed by the image that the platform list left out.
    pub left_out: Vec<String>,
    /// Selected attestation manifests.
    pub attestations: usize,
    /// Foreign layers of the selected manifests that are absent: their descriptors are kept, their
    /// blobs are not there to copy (as `docker load` does).
    pub foreign: Vec<Digest>,
}

/// Apply `matcher` to `image`: with a platform list, every listed platform must be present and complete;
/// without one, absent or incomplete platforms are skipped and reported.
///
/// # Errors
/// [`Error::PlatformNotFound`] naming `image_name`, the missing platforms and the complete ones;
/// `source.malformed`-style error from `empty` when nothing at all can be selected.
pub fn select(
    image: &Image,
    matcher: &Matcher,
    image_name: &str,
    empty: impl FnOnce(String) -> Error,
) -> Result<Selection> {
    let manifests = image.manifests();
    check_required(&manifests, matcher, image_name)?;
    let mut sel = Selection::default();
    select_platforms(image, &manifests, matcher, &mut sel);
    select_attestations(&manifests, matcher, &mut sel);
    let mut seen = HashSet::new();
    gather(&image.root, &mut sel, &mut seen, Level::Top);
    // One digest, one size: descriptors that disagree cannot both be right.
    let sizes: HashMap<&Digest, u64> = sel.blobs.iter().map(|d| (&d.digest, d.size)).collect();
    check_sizes(&image.root, &sizes, image_name)?;
    let nothing = match &image.root {
        Node::Index { .. } => sel.blobs.len() <= 1,
        Node::Manifest(m) => !m.complete() || (sel.manifests.is_empty() && !m.is_attestation()),
        Node::Blob { .. } | Node::Absent { .. } => false,
    };
    if nothing {
        return Err(empty(format!(
            "image {image_name} has no complete platform manifest{}",
            if sel.absent.is_empty() {
                String::new()
            } else {
                format!(" (absent: {})", sel.absent.join(", "))
            }
        )));
    }
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

/// Sort the image's platforms (manifests, then absent children) into selected, absent and left out.
fn select_platforms(
    image: &Image,
    manifests: &[&Manifest],
    matcher: &Matcher,
    sel: &mut Selection,
) {
    for m in manifests.iter().filter(|m| !m.is_attestation()) {
        if !matcher.selects(m.platform.as_ref()) {
            sel.left_out.push(m.platform_name());
            continue;
        }
        if m.complete() {
            sel.manifests.push(m.desc.digest.clone());
            sel.platforms.push(m.platform_name());
            sel.kept.insert(m.desc.digest.clone());
            for f in &m.foreign {
                if !sel.foreign.contains(f) {
                    sel.foreign.push(f.clone());
                }
            }
        } else {
            sel.absent.push(m.platform_name());
        }
    }
    for d in image.absent() {
        let p = d.platform.as_ref();
        if d.attestation_of().is_some() || p.is_some_and(Platform::is_unknown) {
            continue;
        }
        let name = d.platform_text().unwrap_or_else(|| d.digest.to_string());
        if matcher.selects(p) {
            sel.absent.push(name);
        } else {
            sel.left_out.push(name);
        }
    }
}

/// Keep the complete attestations of kept manifests (and, without a platform list, those that name no
/// subject).
fn select_attestations(manifests: &[&Manifest], matcher: &Matcher, sel: &mut Selection) {
    for m in manifests
        .iter()
        .filter(|m| m.is_attestation() && m.complete())
    {
        let subject_kept = m
            .attestation_of
            .as_ref()
            .is_some_and(|d| sel.kept.contains(d));
        if subject_kept || (matcher.wanted().is_none() && m.attestation_of.is_none()) {
            sel.kept.insert(m.desc.digest.clone());
            sel.attestations += 1;
        }
    }
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
        Node::Index { desc, children, .. } => {
            check(desc)?;
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

fn push(sel: &mut Selection, seen: &mut HashSet<Digest>, d: &Descriptor) {
    if seen.insert(d.digest.clone()) {
        sel.blobs.push(d.lean());
    }
}

/// Add the selected nodes' blobs; returns whether anything under `n` was kept.
fn gather(n: &Node, sel: &mut Selection, seen: &mut HashSet<Digest>, level: Level) -> bool {
    match n {
        Node::Index { desc, children, .. } => {
            let mark = sel.blobs.len();
            push(sel, seen, desc);
            let mut any = false;
            for c in children {
                any |= gather(c, sel, seen, Level::Child);
            }
            if !any && level == Level::Child {
                // Nothing below was kept: drop this index again.
                if sel.blobs.len() == mark + 1 {
                    sel.blobs.pop();
                    seen.remove(&desc.digest);
                }
                return false;
            }
            sel.kept.insert(desc.digest.clone());
            true
        }
        Node::Manifest(m) => {
            if level == Level::Child && !sel.kept.contains(&m.desc.digest) {
                return false;
            }
            sel.kept.insert(m.desc.digest.clone());
            push(sel, seen, &m.desc);
            for b in m.config.iter().chain(m.layers.iter()) {
                if !m.missing.contains(&b.digest) && !m.foreign.contains(&b.digest) {
                    push(sel, seen, b);
                }
            }
            true
        }
        Node::Blob { desc } => {
            sel.kept.insert(desc.digest.clone());
            push(sel, seen, desc);
            true
        }
        Node::Absent { .. } => false,
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

    fn desc(v: Value) -> Descriptor {
        Descriptor::from_json(&v).unwrap()
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
