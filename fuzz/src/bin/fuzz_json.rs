//! Fuzz the JSON side: index, manifest, config and `index.json` documents through the walker (parsing,
//! descriptors, nesting, platform selection) over an in-memory source that holds the corpus documents,
//! and the same bytes as platform specifiers and image references.
//!
//! Invariants checked besides "never panics":
//! - a platform that parses formats to a specifier that parses back to the same platform, and matches
//!   itself;
//! - a reference that parses has a full name that parses again.

use std::collections::HashMap;

use _ocitar::engine::digest::Digest;
use _ocitar::engine::document;
use _ocitar::engine::error::Error;
use _ocitar::engine::platform::{Matcher, Platform};
use _ocitar::engine::reference::Reference;
use _ocitar::engine::store::IndexFile;
use _ocitar::engine::walk::{self, BlobSource, Descriptor};
use ocitar_fuzz::{
    archive_corpus, json_documents, mutate_bytes_simple, mutate_json, strings_of, Rng, State,
    Target,
};
use serde_json::Value;

/// Largest input generated (the engine reads documents up to 20 MiB).
const MAX_INPUT: usize = 4 << 20;

const MEDIA_TYPES: &[&str] = &[
    walk::MT_OCI_INDEX,
    walk::MT_OCI_MANIFEST,
    walk::MT_DOCKER_LIST,
    walk::MT_DOCKER_MANIFEST,
    walk::MT_OCI_CONFIG,
    "",
    "application/vnd.in-toto+json",
];

struct JsonState {
    docs: Vec<Vec<u8>>,
    values: Vec<Value>,
    strings: Vec<String>,
    source: MemSource,
}

/// The corpus documents by digest, as a walker source.
struct MemSource(HashMap<Digest, Vec<u8>>);

impl BlobSource for MemSource {
    fn document(&self, desc: &Descriptor) -> _ocitar::engine::Result<Option<Vec<u8>>> {
        let Some(b) = self.0.get(&desc.digest) else {
            return Ok(None);
        };
        if b.len() as u64 != desc.size {
            return Err(Error::SizeMismatch {
                digest: desc.digest.to_string(),
                location: "mem".into(),
                expected: desc.size,
                found: b.len().to_string(),
            });
        }
        Ok(Some(b.clone()))
    }

    fn has_blob(&self, desc: &Descriptor) -> bool {
        self.0.contains_key(&desc.digest)
    }

    fn blob_size(&self, desc: &Descriptor) -> Option<u64> {
        self.0.get(&desc.digest).map(|b| b.len() as u64)
    }

    fn malformed(&self, location: &str, reason: String) -> Error {
        Error::archive(location, reason)
    }
}

fn prepare(seeds: &[std::path::PathBuf]) -> Box<dyn State> {
    let corpus = archive_corpus(&[]);
    let mut docs = json_documents(&corpus);
    for s in seeds {
        if let Ok(b) = std::fs::read(s) {
            docs.push(b);
        }
    }
    let values = docs
        .iter()
        .filter_map(|d| serde_json::from_slice(d).ok())
        .collect();
    let strings = strings_of(&docs);
    let source = MemSource(
        docs.iter()
            .map(|d| (Digest::sha256_of(d), d.clone()))
            .collect(),
    );
    Box::new(JsonState {
        docs,
        values,
        strings,
        source,
    })
}

impl State for JsonState {
    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        match rng.below(8) {
            0..=4 => {
                let mut v = rng.pick(&self.values).cloned().unwrap_or(Value::Null);
                for _ in 0..1 + rng.below(4) {
                    mutate_json(&mut v, rng, &self.strings, &self.values);
                }
                let out = serde_json::to_vec(&v).unwrap_or_default();
                // Repetitions compound; documents past the engine's 20 MiB limit are refused unread.
                if out.len() > MAX_INPUT {
                    out[..MAX_INPUT].to_vec()
                } else {
                    out
                }
            }
            5 => {
                let mut b = rng.pick(&self.docs).cloned().unwrap_or_default();
                mutate_bytes_simple(&mut b, rng);
                b
            }
            6 => {
                // Platform specifier lists.
                let parts = [
                    "linux",
                    "amd64",
                    "arm64",
                    "v8",
                    "arm",
                    "v7",
                    "windows",
                    "(10.0.17763)",
                    "/",
                    ",",
                    "x86_64",
                    "aarch64",
                    "macos",
                    "",
                    " ",
                    "*",
                    "()",
                    "(",
                    ")",
                    "armhf",
                    "i386",
                    "unknown",
                    "\n",
                    "..",
                ];
                let mut s = String::new();
                for _ in 0..rng.len(16) {
                    s.push_str(parts[rng.below(parts.len())]);
                }
                s.into_bytes()
            }
            _ => {
                let mut s = rng
                    .pick(&self.strings)
                    .cloned()
                    .unwrap_or_default()
                    .into_bytes();
                mutate_bytes_simple(&mut s, rng);
                s
            }
        }
    }

    fn run(&mut self, input: &[u8]) {
        platforms_and_references(input);
        if input.len() as u64 > document::MAX_DOCUMENT_BYTES {
            return; // never parsed: every reader refuses it by size first
        }
        let _ = document::parse_document(input);
        let _ = IndexFile::parse(input);
        if let Ok(v) = serde_json::from_slice::<Value>(input) {
            descriptors(&v, &mut 100_000);
        }
        let digest = Digest::sha256_of(input);
        self.source.0.insert(digest.clone(), input.to_vec());
        let matchers = [
            Matcher::all(),
            Matcher::only(vec![Platform::new("linux", "amd64", None, None)]),
            Matcher::only(vec![
                Platform::new("linux", "arm64", None, None),
                Platform::new("windows", "amd64", None, Some("10.0.17763")),
            ]),
        ];
        for mt in MEDIA_TYPES {
            let desc = Descriptor::new(mt, digest.clone(), input.len() as u64);
            if let Ok(image) = walk::walk(&self.source, &desc) {
                for m in image.manifests() {
                    let _ = (m.is_attestation(), m.complete(), m.platform_name());
                }
                for m in &matchers {
                    let sel = walk::Selection::new(&image, m);
                    let _ = (sel.summary(), sel.kept(), sel.platform_manifests());
                    let _ = walk::select(&image, m, "fuzz", Error::InvalidArgument);
                }
            }
        }
        self.source.0.remove(&digest);
    }

    fn corpus_len(&self) -> usize {
        self.docs.len()
    }
}

/// Every node as a descriptor and a platform (at most 100,000 nodes).
fn descriptors(v: &Value, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = Descriptor::from_json(v);
    let _ = Platform::from_json(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| descriptors(x, budget)),
        Value::Object(m) => m.values().for_each(|x| descriptors(x, budget)),
        _ => {}
    }
}

fn platforms_and_references(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let lines: Vec<&str> = text.lines().take(64).collect();
    let _ = Platform::parse_list(&lines);
    for line in &lines {
        if let Ok(p) = Platform::parse(line) {
            let again = Platform::parse(&p.to_string());
            assert!(
                again.as_ref().ok() == Some(&p),
                "invariant: platform {line:?} parses to {p} which parses to {again:?}"
            );
            assert!(
                p.matches(&p),
                "invariant: platform {p} does not match itself"
            );
        }
        if let Ok(r) = Reference::parse(line) {
            if let Some(full) = r.full_name() {
                assert!(
                    Reference::parse(&full).is_ok(),
                    "invariant: reference {line:?} has full name {full:?} that does not parse"
                );
            }
        }
    }
}

fn main() {
    ocitar_fuzz::main(Target {
        kind: "json",
        ext: "json",
        prepare,
    });
}
