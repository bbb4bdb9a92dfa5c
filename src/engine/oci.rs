//! The OCI vocabulary, taken from the `oci-spec` crate: media types, annotation keys, the `oci-layout`
//! file, and typed views of documents. ocitar keeps every document's original bytes (they are what it
//! writes back and what digests name); the typed views are read from the parsed JSON beside them.
//!
//! What stays local, and why: Docker's media types (the OCI vocabulary lacks them); containerd's and
//! buildkit's annotation keys; platform strings (`oci_spec::image::Arch::from("armbe")` is `arm64be`
//! in oci-spec 0.10, so platforms are read and written as the strings the image holds, see
//! [`super::platform`]).

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use oci_spec::image::{
    ImageIndex, ImageManifest, MediaType, OciLayout, ANNOTATION_REF_NAME, ANNOTATION_TITLE,
};

/// An OCI image index.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config.
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A Docker manifest list (schema 2).
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker image manifest (schema 2).
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker image config.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A Docker layer, uncompressed tar.
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A Docker layer, gzip-compressed tar.
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Annotation naming an image in containerd's archives and stores (`io.containerd.image.name`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation naming the manifest an attestation manifest describes (buildkit).
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Annotation marking an attestation manifest (buildkit).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// What a media type names, in the terms the walker needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// An OCI or Docker image manifest.
    Manifest,
    /// An OCI or Docker image config (one that carries a platform).
    Config,
    /// Anything else: a layer, an artifact's blob, an unknown type.
    Other,
}

/// Classify a media type string.
pub fn kind(media_type: &str) -> Kind {
    match MediaType::from(media_type) {
        MediaType::ImageIndex => Kind::Index,
        MediaType::ImageManifest => Kind::Manifest,
        MediaType::ImageConfig => Kind::Config,
        MediaType::Other(s) => match s.as_str() {
            MT_DOCKER_LIST => Kind::Index,
            MT_DOCKER_MANIFEST => Kind::Manifest,
            MT_DOCKER_CONFIG => Kind::Config,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// A typed view of a document already parsed (within the limits of [`super::document`]). Peers write
/// `"manifests": null` and `"layers": null` for empty lists; they are read as `[]`.
///
/// # Errors
/// The deserializer's reason when the JSON does not have the type's shape.
pub fn typed<T: DeserializeOwned>(json: &Value) -> std::result::Result<T, String> {
    const LISTS: [&str; 2] = ["manifests", "layers"];
    let has_null_list = LISTS
        .iter()
        .any(|k| json.get(k).is_some_and(Value::is_null));
    if !has_null_list {
        // Read from the parsed JSON in place: no copy of the document for the common case.
        return T::deserialize(json).map_err(|e| e.to_string());
    }
    let mut json = json.clone();
    if let Value::Object(map) = &mut json {
        for key in LISTS {
            if let Some(v @ Value::Null) = map.get_mut(key) {
                *v = Value::Array(Vec::new());
            }
        }
    }
    serde_json::from_value(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_constants_are_the_spec_s_names() {
        assert_eq!(MediaType::ImageIndex.to_string(), MT_OCI_INDEX);
        assert_eq!(MediaType::ImageManifest.to_string(), MT_OCI_MANIFEST);
        assert_eq!(MediaType::ImageConfig.to_string(), MT_OCI_CONFIG);
        assert_eq!(
            ANNOTATION_REF_NAME, "org.opencontainers.image.ref.name",
            "the name annotation ocitar reads and writes"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(MT_OCI_INDEX), Kind::Index);
        assert_eq!(kind(MT_DOCKER_LIST), Kind::Index);
        assert_eq!(kind(MT_OCI_MANIFEST), Kind::Manifest);
        assert_eq!(kind(MT_DOCKER_MANIFEST), Kind::Manifest);
        assert_eq!(kind(MT_OCI_CONFIG), Kind::Config);
        assert_eq!(kind(MT_DOCKER_CONFIG), Kind::Config);
        assert_eq!(
            kind("application/vnd.oci.image.layer.v1.tar+gzip"),
            Kind::Other
        );
        assert_eq!(kind(MT_DOCKER_LAYER), Kind::Other);
        assert_eq!(kind(""), Kind::Other);
    }

    #[test]
    fn null_lists_read_as_empty() {
        let index: ImageIndex =
            typed(&serde_json::json!({"schemaVersion": 2, "manifests": null})).unwrap();
        assert!(index.manifests().is_empty());
        let manifest: ImageManifest = typed(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": MT_OCI_CONFIG, "size": 2,
                       "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
            "layers": null,
        }))
        .unwrap();
        assert!(manifest.layers().is_empty());
        assert_eq!(manifest.config().size(), 2);
    }

    /// Docker's reference grammar is ocitar's own (`super::reference`: it names what is wrong, and adds
    /// bare `sha256:` references); oci-spec's `distribution::Reference` is the same grammar and
    /// normalisation, so the two must agree on every reference both read.
    #[test]
    fn reference_grammar_agrees_with_oci_spec() {
        let cases = [
            "alpine",
            "alpine:3.20",
            "library/alpine:3.20",
            "docker.io/alpine",
            "index.docker.io/library/alpine:1",
            "user/app:1.0",
            "ghcr.io/org/app:1.2",
            "localhost/app",
            "localhost:5000/app:v1",
            "registry.example.com:5000/a/b/c:tag_1",
            "127.0.0.1:5000/mirror/org/app:1.2",
            "test.com:tag",
            "test.com:5000",
            "foo_bar.com:8080",
            "a__b/c-d.e:x",
            "app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "app:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "app:",
            ":tag",
            "app:-x",
            "a//b",
            "a/B",
            "-app",
            "app_",
            "",
        ];
        for text in cases {
            let ours = super::super::reference::Reference::parse(text);
            let theirs = oci_spec::distribution::Reference::try_from(text);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    let digest = ours.digest.as_ref().map(|d| format!("@{d}"));
                    let whole = format!(
                        "{}{}{}",
                        ours.repository.unwrap_or_default(),
                        ours.tag.map(|t| format!(":{t}")).unwrap_or_default(),
                        digest.unwrap_or_default()
                    );
                    assert_eq!(whole, theirs.whole(), "{text:?}");
                }
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{text:?}: ocitar {ours:?}, oci-spec {theirs:?}"),
            }
        }
        // Where ocitar keeps Docker's rule and oci-spec does not: a first component with an uppercase
        // letter is a registry (Docker's `splitDockerDomain`), never a Docker Hub namespace.
        let upper = super::super::reference::Reference::parse("UPPER/app").unwrap();
        assert_eq!(upper.repository.as_deref(), Some("UPPER/app"));
    }

    /// Platforms stay the strings the image holds: oci-spec 0.10 reads architecture `armbe` as
    /// `arm64be`, which would rewrite a platform on its way through.
    #[test]
    fn platform_strings_stay_local() {
        assert_eq!(oci_spec::image::Arch::from("armbe").to_string(), "arm64be");
    }

    /// Documents ocitar writes are serialised through `serde_json::Value`, whose maps are ordered by key
    /// (a `BTreeMap`) so that equal content gives equal bytes and equal digests. serde_json's
    /// `preserve_order` feature (which any crate in the build could switch on) would make the order the
    /// insertion order, and typed structs built from `HashMap`s would then serialise in a random order.
    #[test]
    fn json_maps_are_ordered_by_key() {
        let mut m = serde_json::Map::new();
        m.insert("zeta".into(), Value::from(1));
        m.insert("alpha".into(), Value::from(2));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"alpha":2,"zeta":1}"#,
            "serde_json's preserve_order feature is on somewhere in the build"
        );
        let mut annotations = std::collections::HashMap::new();
        for i in 0..32 {
            annotations.insert(format!("k{i:02}"), "v".to_string());
        }
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(Vec::new())
            .annotations(annotations)
            .build()
            .unwrap();
        let text = serde_json::to_string(&serde_json::to_value(&index).unwrap()).unwrap();
        let keys: Vec<usize> = (0..32)
            .map(|i| text.find(&format!("\"k{i:02}\"")).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
