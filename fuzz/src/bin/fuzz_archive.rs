//! Fuzz the archive reader and load on archive bytes: mutated fixture archives and ocitar's own, at the
//! byte level, the header level and the document level (with digests recomputed so that bent documents
//! reach the walker).
//!
//! Invariants checked on every input, besides "never panics":
//! - a load that fails leaves no store behind (the store path did not exist before);
//! - a load that succeeds leaves a store that `verify` passes;
//! - the same bytes from a non-seekable stream (and gzip-compressed) load exactly when they load from
//!   bytes, or fail where the stream is stricter (an unneeded blob that does not hash to its name), and
//!   when both load, the stores are identical.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use _ocitar::engine::archive::read::{Archive, Input, Spool};
use _ocitar::engine::archive::Compression;
use _ocitar::engine::error::IoContext;
use _ocitar::engine::{inspect, load, Progress};
use ocitar_fuzz::{
    archive_corpus, json_documents, mutate_bytes_simple, mutate_json, mutate_tar_headers,
    read_members, rehash, scratch, strings_of, write_members, Member, Rng, Scratch, State, Target,
};
use serde_json::Value;

struct ArchiveState {
    corpus: Vec<Vec<u8>>,
    members: Vec<Vec<Member>>,
    donors: Vec<Value>,
    strings: Vec<String>,
    dir: Scratch,
}

fn prepare(seeds: &[PathBuf]) -> Box<dyn State> {
    let corpus = archive_corpus(seeds);
    let members: Vec<Vec<Member>> = corpus.iter().filter_map(|a| read_members(a)).collect();
    let docs = json_documents(&corpus);
    let donors = docs
        .iter()
        .filter_map(|d| serde_json::from_slice(d).ok())
        .collect();
    let strings = strings_of(&docs);
    Box::new(ArchiveState {
        corpus,
        members,
        donors,
        strings,
        dir: Scratch(scratch("archive")),
    })
}

impl ArchiveState {
    fn structured(&self, rng: &mut Rng) -> Vec<u8> {
        let Some(base) = rng.pick(&self.members) else {
            return Vec::new();
        };
        let mut ms = base.clone();
        let rounds = 1 + rng.below(3);
        for _ in 0..rounds {
            let n = ms.len();
            match rng.below(10) {
                0..=3 => {
                    // Bend a JSON document.
                    let json: Vec<usize> = (0..n)
                        .filter(|&i| serde_json::from_slice::<Value>(&ms[i].data).is_ok())
                        .collect();
                    if let Some(&i) = rng.pick(&json) {
                        if let Ok(mut v) = serde_json::from_slice::<Value>(&ms[i].data) {
                            mutate_json(&mut v, rng, &self.strings, &self.donors);
                            ms[i].data = serde_json::to_vec(&v).unwrap_or_default();
                        }
                    }
                }
                4 if n > 0 => {
                    let i = rng.below(n);
                    ms.remove(i);
                }
                5 if n > 0 => {
                    let i = rng.below(n);
                    let mut m = ms[i].clone();
                    if rng.one_in(2) {
                        mutate_bytes_simple(&mut m.data, rng);
                    }
                    let j = rng.below(n + 1);
                    ms.insert(j, m);
                }
                6 if n > 0 => {
                    // Rename (dangerous, dot-slashed, or another member's name).
                    let i = rng.below(n);
                    ms[i].name = match rng.below(3) {
                        0 => format!("./{}", String::from_utf8_lossy(&ms[i].name)).into_bytes(),
                        1 => ms[rng.below(n)].name.clone(),
                        _ => [
                            "../x",
                            "/abs",
                            "index.json",
                            "manifest.json",
                            "blobs/sha256/x",
                            "a/../b",
                            "repositories",
                        ][rng.below(7)]
                        .as_bytes()
                        .to_vec(),
                    };
                }
                7 if n > 0 => {
                    // Turn a member into a link, a device, a directory.
                    let i = rng.below(n);
                    ms[i].kind = *rng.pick(b"1234567").unwrap_or(&b'2');
                    ms[i].link = ms[rng.below(n)].name.clone();
                    if rng.one_in(3) {
                        ms[i].link = b"../../etc/passwd".to_vec();
                    }
                }
                8 if n > 0 => {
                    let i = rng.below(n);
                    mutate_bytes_simple(&mut ms[i].data, rng);
                }
                _ if n > 0 => {
                    let (i, j) = (rng.below(n), rng.below(n));
                    ms.swap(i, j);
                }
                _ => {}
            }
        }
        if !rng.one_in(4) {
            rehash(&mut ms);
        }
        write_members(&ms)
    }
}

impl State for ArchiveState {
    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        match rng.below(10) {
            0..=4 => self.structured(rng),
            5 | 6 => {
                let mut b = rng.pick(&self.corpus).cloned().unwrap_or_default();
                mutate_tar_headers(&mut b, rng);
                if rng.one_in(2) {
                    mutate_tar_headers(&mut b, rng);
                }
                b
            }
            7 | 8 => {
                let mut b = rng.pick(&self.corpus).cloned().unwrap_or_default();
                mutate_bytes_simple(&mut b, rng);
                b
            }
            _ => {
                // Splice two archives.
                let a = rng.pick(&self.corpus).cloned().unwrap_or_default();
                let b = rng.pick(&self.corpus).cloned().unwrap_or_default();
                let i = rng.below(a.len() / 512 + 1) * 512;
                let j = rng.below(b.len() / 512 + 1) * 512;
                let mut out = a[..i.min(a.len())].to_vec();
                out.extend_from_slice(&b[j.min(b.len())..]);
                out
            }
        }
    }

    fn run(&mut self, input: &[u8]) {
        // What to exercise is a function of the input, so that a replay does the same.
        let n = choice(input);
        let dir = self.dir.0.clone();
        read_everything(input, &dir.join("spool"));
        let platforms: Vec<String> = match n % 5 {
            0 => vec!["linux/amd64".into()],
            1 => vec!["linux/arm64,linux/arm/v7".into()],
            _ => vec![],
        };
        let a = dir.join("a");
        let from_bytes = load_checked(Input::Bytes(Arc::new(input.to_vec())), &a, &platforms);
        if n.is_multiple_of(3) {
            let b = dir.join("b");
            let stream = Input::Reader(Box::new(Cursor::new(input.to_vec())));
            let from_stream = load_checked(stream, &b, &platforms);
            compare(&a, from_bytes.as_ref(), &b, from_stream.as_ref());
            // (gzip of an input that is compressed already is not an image archive.)
            if n.is_multiple_of(6) && Compression::sniff(input).is_none() {
                let c = dir.join("c");
                let gz = gzip(input);
                let from_gzip = load_checked(Input::Bytes(Arc::new(gz)), &c, &platforms);
                assert_eq!(
                    from_stream.is_ok(),
                    from_gzip.is_ok(),
                    "invariant: the same stream loads plain but not gzip-compressed, or back: {:?} / {:?}",
                    from_stream.as_ref().err(),
                    from_gzip.as_ref().err()
                );
                let _ = std::fs::remove_dir_all(&c);
            }
            let _ = std::fs::remove_dir_all(&b);
        }
        let _ = std::fs::remove_dir_all(&a);
        if n.is_multiple_of(4) {
            let path = dir.join("archive");
            if std::fs::write(&path, input).is_ok() {
                let _ = inspect::inspect(&path);
                let _ = inspect::verify(&path, &mut Progress::none());
            }
        }
    }

    fn corpus_len(&self) -> usize {
        self.corpus.len()
    }
}

/// A number derived from the input (FNV-1a of its length and first bytes).
fn choice(input: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ input.len() as u64;
    for &b in input.iter().take(64).chain(input.iter().rev().take(64)) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct DirSpool(PathBuf, u64);

impl Spool for DirSpool {
    fn temp_file(&mut self) -> _ocitar::engine::Result<(PathBuf, std::fs::File)> {
        self.1 += 1;
        std::fs::create_dir_all(&self.0).at(&self.0)?;
        let p = self.0.join(self.1.to_string());
        let f = std::fs::File::create(&p).at(&p)?;
        Ok((p, f))
    }
}

/// The reader's own API: every entry, followed, opened, read (up to 4 MiB) and read as a document.
fn read_everything(input: &[u8], spool_dir: &Path) {
    let mut spool = DirSpool(spool_dir.to_path_buf(), 0);
    if let Ok(ar) = Archive::read(Input::Bytes(Arc::new(input.to_vec())), &mut spool) {
        let names: Vec<String> = ar.names().collect();
        for n in names {
            if let Ok(Some((name, e))) = ar.get(&n) {
                let _ = ar.read_small(name, e);
                if let Ok(r) = ar.open(e) {
                    let _ = std::io::copy(&mut r.take(4 << 20), &mut std::io::sink());
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(spool_dir);
}

/// Load into `store` (which does not exist), checking the all-or-nothing and verify invariants.
fn load_checked(input: Input, store: &Path, platforms: &[String]) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(store);
    match load::load(input, store, platforms, &mut Progress::none()) {
        Ok(_) => {
            if let Err(e) = inspect::verify(store, &mut Progress::none()) {
                panic!("invariant: a successful load left a store that does not verify: {e}");
            }
            Ok(())
        }
        Err(e) => {
            assert!(
                !store.exists(),
                "invariant: a failed load ({e}) left {} behind",
                store.display()
            );
            Err(e.to_string())
        }
    }
}

fn tree(store: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(store)
                    .map(|r| r.display().to_string())
                    .unwrap_or_default();
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fn compare(a: &Path, ra: Result<&(), &String>, b: &Path, rb: Result<&(), &String>) {
    match (ra, rb) {
        (Ok(()), Ok(())) => assert!(
            tree(a) == tree(b),
            "invariant: the same archive loads into different stores from bytes and from a stream"
        ),
        (Err(e), Ok(())) => {
            panic!("invariant: an archive loads from a stream but not from bytes: {e}")
        }
        _ => {}
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

fn main() {
    ocitar_fuzz::main(Target {
        kind: "archive",
        ext: "bin",
        prepare,
    });
}
