//! Stable-Rust fuzzing for ocitar: a seeded mutation engine, a corpus, and a supervisor that runs a target
//! in a worker process, catches panics, aborts and hangs, and writes every input that caused one to
//! `tests/regressions/` (where `tests/test_hostile.py` replays it through the Python API).
//!
//! Input `i` of a run is a pure function of the seed, `i` and the corpus, so the supervisor can rebuild the
//! input a worker died on from the index the worker last reported, and any finding replays from
//! `--seed S --start i`. See `fuzz/README.md`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::Digest as _;

// --------------------------------------------------------------------------
// randomness
// --------------------------------------------------------------------------

/// SplitMix64: small, fast, and deterministic for a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        r.next_u64();
        r
    }

    /// The generator of input `iter` of the run with `seed`.
    pub fn for_input(seed: u64, iter: u64) -> Rng {
        Rng::new(seed.rotate_left(17) ^ iter.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: u64) -> bool {
        n <= 1 || self.next_u64().is_multiple_of(n)
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        if xs.is_empty() {
            None
        } else {
            xs.get(self.below(xs.len()))
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A length skewed to small values, at most `max`.
    pub fn len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(4.min(max + 1)),
            1 => self.below(64.min(max + 1)),
            2 => self.below(4096.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// --------------------------------------------------------------------------
// tar members: read loosely, write exactly as told
// --------------------------------------------------------------------------

/// A tar member as the mutators see it.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: Vec<u8>,
    pub kind: u8,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
}

impl Member {
    pub fn file(name: &str, data: Vec<u8>) -> Member {
        Member {
            name: name.as_bytes().to_vec(),
            kind: b'0',
            link: Vec::new(),
            data,
        }
    }
}

/// The members of a tar (plain, or gzip-compressed) as far as they parse; `None` when nothing does.
pub fn read_members(data: &[u8]) -> Option<Vec<Member>> {
    let plain;
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .take(64 << 20)
            .read_to_end(&mut out)
            .ok()?;
        plain = out;
        &plain[..]
    } else {
        data
    };
    let mut ar = tar::Archive::new(data);
    let mut out = Vec::new();
    for e in ar.entries().ok()? {
        let Ok(mut e) = e else { break };
        let kind = e.header().entry_type().as_byte();
        let name = e.path_bytes().to_vec();
        let link = e.link_name_bytes().map(|l| l.to_vec()).unwrap_or_default();
        let mut body = Vec::new();
        if e.by_ref().take(16 << 20).read_to_end(&mut body).is_err() {
            break;
        }
        out.push(Member {
            name,
            kind,
            link,
            data: body,
        });
    }
    (!out.is_empty()).then_some(out)
}

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    if s.len() <= width {
        field[..width].copy_from_slice(s.as_bytes());
        field[width] = 0;
    } else {
        // GNU base-256 for values that do not fit.
        field.fill(0);
        field[0] = 0x80;
        let bytes = v.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
    }
}

fn ustar_header(name: &[u8], kind: u8, link: &[u8], size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], if kind == b'5' { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    fix_checksum(&mut h);
    h
}

/// Recompute a header block's checksum.
pub fn fix_checksum(h: &mut [u8]) {
    if h.len() < 512 {
        return;
    }
    h[148..156].fill(b' ');
    let sum: u64 = h[..512].iter().map(|&b| u64::from(b)).sum();
    let s = format!("{:06o}\0 ", sum & 0o777_777);
    h[148..156].copy_from_slice(s.as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// A tar of `members`; names or link targets over 100 bytes go into a PAX record.
pub fn write_members(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        if m.name.len() > 100 || m.link.len() > 100 {
            let mut records = Vec::new();
            for (key, value) in [("path", &m.name), ("linkpath", &m.link)] {
                if value.is_empty() {
                    continue;
                }
                let body_len = key.len() + value.len() + 3;
                let mut total = body_len + 1;
                while total != body_len + total.to_string().len() {
                    total = body_len + total.to_string().len();
                }
                records.extend_from_slice(format!("{total} {key}=").as_bytes());
                records.extend_from_slice(value);
                records.push(b'\n');
            }
            out.extend_from_slice(&ustar_header(
                b"././@PaxHeader",
                b'x',
                b"",
                records.len() as u64,
            ));
            out.extend_from_slice(&records);
            pad(&mut out);
        }
        let size = if matches!(m.kind, b'0' | 0 | b'7') {
            m.data.len() as u64
        } else {
            0
        };
        out.extend_from_slice(&ustar_header(&m.name, m.kind, &m.link, size));
        if size > 0 {
            out.extend_from_slice(&m.data);
            pad(&mut out);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

// --------------------------------------------------------------------------
// mutations
// --------------------------------------------------------------------------

const INTERESTING_NAMES: &[&str] = &[
    "../x",
    "/etc/passwd",
    "blobs/sha256/../../x",
    "index.json",
    "./index.json",
    "index.json/",
    "manifest.json",
    "oci-layout",
    "repositories",
    "blobs",
    "blobs/",
    "blobs/sha256",
    "blobs/sha512/",
    "blobs/md5/00",
    "blobs/sha256/x/y",
    "a/../../b",
    "",
    ".",
    "./",
    "//",
    "blobs//sha256//",
];

const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "511",
    "512",
    "513",
    "20971520",
    "20971521",
    "4294967296",
    "1099511627776",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "1e308",
    "0.5",
    "77777777777",
];

fn interesting_string(rng: &mut Rng, strings: &[String]) -> String {
    match rng.below(10) {
        0 => format!("sha256:{}", sha256_hex(&rng.bytes(4))),
        1 => format!("sha256:{}", sha256_hex(&rng.bytes(4)).to_uppercase()),
        2 => format!("sha512:{}", "a".repeat(rng.below(130))),
        3 => (*rng.pick(INTERESTING_NAMES).unwrap_or(&"")).to_string(),
        4 => (*rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0")).to_string(),
        5 => "x".repeat(rng.len(70_000)),
        6 => [
            "linux/amd64",
            "linux/arm64/v8",
            "windows(10.0.17763)/amd64",
            "unknown/unknown",
            "*",
            "linux/",
            "//",
        ][rng.below(7)]
        .to_string(),
        7 => {
            let n = rng.len(40);
            String::from_utf8_lossy(&rng.bytes(n)).into_owned()
        }
        _ => rng.pick(strings).cloned().unwrap_or_default(),
    }
}

fn random_value(rng: &mut Rng, strings: &[String], depth: usize) -> Value {
    match rng.below(if depth > 20 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => serde_json::from_str(rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0"))
            .unwrap_or(Value::Null),
        3 => Value::from(rng.next_u64() >> rng.below(64)),
        4 | 5 => Value::String(interesting_string(rng, strings)),
        6 => Value::Array(
            (0..rng.len(8))
                .map(|_| random_value(rng, strings, depth + 1))
                .collect(),
        ),
        7 => {
            let keys = [
                "mediaType",
                "digest",
                "size",
                "manifests",
                "layers",
                "config",
                "platform",
                "annotations",
                "urls",
                "os",
                "architecture",
                "variant",
                "os.version",
                "schemaVersion",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.len(6) {
                let k = (*rng.pick(&keys).unwrap_or(&"x")).to_string();
                m.insert(k, random_value(rng, strings, depth + 1));
            }
            Value::Object(m)
        }
        _ => Value::Array(vec![]),
    }
}

/// Change one node of `v` (and sometimes more).
pub fn mutate_json(v: &mut Value, rng: &mut Rng, strings: &[String], donors: &[Value]) {
    // Choose a random node (as a path of child indexes), then change it.
    let mut path = Vec::new();
    let mut cur: &Value = v;
    loop {
        let children = match cur {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            _ => 0,
        };
        if children == 0 || rng.below(3) == 0 {
            break;
        }
        let i = rng.below(children);
        path.push(i);
        cur = match cur {
            Value::Array(a) => &a[i],
            Value::Object(m) => m.values().nth(i).unwrap_or(&Value::Null),
            _ => break,
        };
    }
    let depth = path.len();
    let node = node_at(v, &path);
    match rng.below(12) {
        0 | 1 => *node = random_value(rng, strings, depth),
        2 => {
            // Deepen.
            let inner = node.take();
            *node = if rng.one_in(2) {
                Value::Array(vec![inner])
            } else {
                serde_json::json!({ "manifests": [inner] })
            };
        }
        3 => {
            if let Value::Array(a) = node {
                if let Some(x) = a.first().cloned() {
                    // Many copies of something small; a few of something big (sizes compound).
                    let small = serde_json::to_vec(&x).is_ok_and(|b| b.len() < 512);
                    let n = if small && rng.one_in(8) {
                        10_000
                    } else {
                        rng.len(16)
                    };
                    if a.len() < 100_000 {
                        a.extend(std::iter::repeat_n(x, n));
                    }
                }
            }
        }
        4 => {
            if let Value::Object(m) = node {
                let keys: Vec<String> = m.keys().cloned().collect();
                if let Some(k) = rng.pick(&keys) {
                    m.remove(k);
                }
            }
        }
        5 => {
            if let Some(d) = rng.pick(donors) {
                *node = d.clone();
            }
        }
        6 => {
            if let Value::Object(m) = node {
                let k = [
                    "size",
                    "digest",
                    "mediaType",
                    "platform",
                    "urls",
                    "annotations",
                ][rng.below(6)];
                m.insert(k.to_string(), random_value(rng, strings, depth + 1));
            }
        }
        7 => {
            if let Value::Number(_) = node {
                *node = serde_json::from_str(rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0"))
                    .unwrap_or(Value::Null);
            }
        }
        8 => {
            if let Value::String(s) = node {
                let mut b = s.clone().into_bytes();
                mutate_bytes_simple(&mut b, rng);
                *s = String::from_utf8_lossy(&b).into_owned();
            }
        }
        9 => {
            if let Value::Array(a) = node {
                if !a.is_empty() {
                    let i = rng.below(a.len());
                    a.remove(i);
                }
            }
        }
        _ => *node = Value::String(interesting_string(rng, strings)),
    }
}

fn node_at<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((&i, rest)) = path.split_first() else {
        return v;
    };
    let inner_is_some = match &*v {
        Value::Array(a) => i < a.len(),
        Value::Object(m) => i < m.len(),
        _ => false,
    };
    if !inner_is_some {
        return v;
    }
    match v {
        Value::Array(a) => node_at(&mut a[i], rest),
        Value::Object(m) => match m.values_mut().nth(i) {
            Some(x) => node_at(x, rest),
            None => unreachable!("checked above"),
        },
        _ => unreachable!("checked above"),
    }
}

/// Small byte-level changes.
pub fn mutate_bytes_simple(b: &mut Vec<u8>, rng: &mut Rng) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let n = b.len();
        match rng.below(8) {
            0 if n > 0 => {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                b[i] = *rng
                    .pick(&[
                        0u8, 0xff, 0x7f, 0x80, b'0', b'7', b'/', b'.', b' ', b'"', b'{', b'[',
                        b'\\',
                    ])
                    .unwrap_or(&0);
            }
            2 => {
                let i = rng.below(n + 1);
                let k = rng.len(64);
                let ins = rng.bytes(k);
                b.splice(i..i, ins);
            }
            3 if n > 0 => {
                let i = rng.below(n);
                let k = rng.len(n - i);
                b.drain(i..i + k);
            }
            4 if n > 0 => {
                let i = rng.below(n);
                let k = rng.len(n - i).min(4096);
                let chunk = b[i..i + k].to_vec();
                let j = rng.below(n + 1);
                b.splice(j..j, chunk);
            }
            5 if n > 0 => {
                let i = rng.below(n);
                let s = rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0").as_bytes();
                let end = (i + s.len()).min(n);
                b[i..end].copy_from_slice(&s[..end - i]);
            }
            6 if n > 0 => b.truncate(rng.below(n)),
            _ => {
                let i = rng.below(n + 1);
                b.splice(i..i, interesting_string(rng, &[]).into_bytes());
            }
        }
    }
}

/// Header-level changes to a raw tar: pick a header block and bend one field, then (usually) fix its
/// checksum so the change gets past the reader's first check.
pub fn mutate_tar_headers(b: &mut [u8], rng: &mut Rng) {
    let headers: Vec<usize> = (0..b.len() / 512)
        .map(|i| i * 512)
        .filter(|&o| b.get(o + 257..o + 262) == Some(b"ustar"))
        .collect();
    let Some(&o) = rng.pick(&headers) else { return };
    let h = &mut b[o..o + 512];
    match rng.below(6) {
        0 => {
            // size: random octal, huge, base-256, garbage
            let v = match rng.below(4) {
                0 => rng.next_u64() >> rng.below(64),
                1 => u64::from(rng.next_u64() as u16),
                2 => 1 << (30 + rng.below(34)),
                _ => 0,
            };
            octal(&mut h[124..136], v);
            if rng.one_in(8) {
                h[124..136].copy_from_slice(&rng.bytes(12));
            }
        }
        1 => h[156] = *rng.pick(b"0125367xgLKSVZ\0").unwrap_or(&b'0'),
        2 => {
            let name = interesting_string(rng, &[]).into_bytes();
            h[..100].fill(0);
            let n = name.len().min(100);
            h[..n].copy_from_slice(&name[..n]);
        }
        3 => {
            let link = interesting_string(rng, &[]).into_bytes();
            h[157..257].fill(0);
            let n = link.len().min(100);
            h[157..157 + n].copy_from_slice(&link[..n]);
        }
        4 => h[345..500].copy_from_slice(&rng.bytes(155)), // prefix / GNU sparse map
        _ => {
            let i = rng.below(512);
            h[i] = rng.next_u64() as u8;
        }
    }
    if !rng.one_in(6) {
        fix_checksum(h);
    }
}

/// Point every descriptor of `members`' JSON documents at content that hashes to its name again, after
/// some content changed: blobs whose bytes no longer hash to their name are renamed, and the documents
/// that describe them updated (which renames those in turn), up to a few rounds.
pub fn rehash(members: &mut [Member]) {
    for _ in 0..8 {
        let mut renames: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for m in members.iter_mut() {
            let Some(hex) = m.name.strip_prefix(b"blobs/sha256/") else {
                continue;
            };
            let hex = String::from_utf8_lossy(hex).into_owned();
            let real = sha256_hex(&m.data);
            if hex != real && hex.len() == 64 {
                renames.insert(
                    format!("sha256:{hex}"),
                    (format!("sha256:{real}"), m.data.len() as u64),
                );
                m.name = format!("blobs/sha256/{real}").into_bytes();
            }
        }
        if renames.is_empty() {
            return;
        }
        for m in members.iter_mut() {
            let Ok(mut v) = serde_json::from_slice::<Value>(&m.data) else {
                continue;
            };
            if retarget(&mut v, &renames) {
                if let Ok(b) = serde_json::to_vec(&v) {
                    m.data = b;
                }
            }
        }
    }
}

fn retarget(v: &mut Value, renames: &BTreeMap<String, (String, u64)>) -> bool {
    let mut changed = false;
    match v {
        Value::Object(m) => {
            let hit = m
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| renames.get(d))
                .cloned();
            if let Some((d, size)) = hit {
                m.insert("digest".into(), Value::String(d));
                m.insert("size".into(), Value::from(size));
                changed = true;
            }
            for x in m.values_mut() {
                changed |= retarget(x, renames);
            }
        }
        Value::Array(a) => {
            for x in a {
                changed |= retarget(x, renames);
            }
        }
        _ => {}
    }
    changed
}

// --------------------------------------------------------------------------
// corpus
// --------------------------------------------------------------------------

/// The repository root (the fuzz crate's parent).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// `tests/regressions/`.
pub fn regressions_dir() -> PathBuf {
    repo().join("tests").join("regressions")
}

fn fixtures_dir() -> PathBuf {
    std::env::var_os("OCITAR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("..").join("shared").join("fixtures"))
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut items: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    items.sort();
    for p in items {
        if p.is_dir() {
            walk_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Archives to start from: the shared fixtures' tar files, ocitar's own archives of the demo store (every
/// index shape, plain and gzip), and the checked-in regression inputs of `kind` named by `extra`.
pub fn archive_corpus(extra: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    walk_files(&fixtures_dir(), &mut files);
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "tar"))
    {
        if let Ok(b) = std::fs::read(f) {
            if b.len() <= 4 << 20 {
                out.push(b);
            }
        }
    }
    out.extend(own_archives());
    for f in extra {
        if let Ok(b) = std::fs::read(f) {
            out.push(b);
        }
    }
    out
}

fn own_archives() -> Vec<Vec<u8>> {
    use _ocitar::engine::archive::Compression;
    use _ocitar::engine::save::{save, IndexShape, SaveOptions};
    use _ocitar::engine::Progress;
    let store = repo().join("examples").join("demo-store");
    let mut out = Vec::new();
    let variants: &[(&[&str], &[&str], IndexShape)] = &[
        (&["demo:1.0"], &[], IndexShape::Keep),
        (&["demo:1.0", "tools:0.3"], &[], IndexShape::Keep),
        (&["demo:1.0"], &["linux/arm64"], IndexShape::Keep),
        (&["demo:1.0"], &["linux/amd64"], IndexShape::Subset),
        (&["demo:1.0"], &["linux/amd64"], IndexShape::Manifest),
        (&["tools:0.3"], &[], IndexShape::Subset),
    ];
    for (refs, platforms, shape) in variants {
        for compression in [None, Some(Compression::Gzip)] {
            let opts = SaveOptions {
                refs: refs.iter().map(|s| s.to_string()).collect(),
                platforms: platforms.iter().map(|s| s.to_string()).collect(),
                index: *shape,
                prefer: Some("linux/amd64".into()),
                compression,
            };
            if let Ok((_, bytes)) = save(
                &store,
                &opts,
                Vec::new(),
                Path::new("<corpus>"),
                &mut Progress::none(),
            ) {
                out.push(bytes);
            }
        }
    }
    out
}

/// JSON documents found in `archives` (every member that parses as JSON), deduplicated.
pub fn json_documents(archives: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for a in archives {
        for m in read_members(a).unwrap_or_default() {
            if m.data.len() <= 1 << 20
                && serde_json::from_slice::<Value>(&m.data).is_ok()
                && seen.insert(m.data.clone())
            {
                out.push(m.data);
            }
        }
    }
    out
}

/// Strings worth planting: every string value of the documents.
pub fn strings_of(docs: &[Vec<u8>]) -> Vec<String> {
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() < 300 => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            Value::Object(m) => m.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for d in docs {
        if let Ok(v) = serde_json::from_slice::<Value>(d) {
            collect(&v, &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

// --------------------------------------------------------------------------
// the driver
// --------------------------------------------------------------------------

/// A fuzz target.
pub struct Target {
    /// Prefix of regression files (`archive`, `json`).
    pub kind: &'static str,
    /// Extension of regression files.
    pub ext: &'static str,
    /// The state inputs are generated from (corpus and friends), built from the regression seeds given.
    pub prepare: fn(&[PathBuf]) -> Box<dyn State>,
}

/// What a target keeps between inputs.
pub trait State {
    /// Input `iter` of the run: a pure function of `rng` and the corpus.
    fn generate(&self, rng: &mut Rng) -> Vec<u8>;
    /// Run the code under test on `input`; a panic is a finding (invariant checks panic too).
    fn run(&mut self, input: &[u8]);
    /// Corpus size, for the log.
    fn corpus_len(&self) -> usize;
}

struct Args {
    seconds: f64,
    seed: u64,
    start: u64,
    hang: f64,
    out: PathBuf,
    worker: bool,
    deadline_ms: u64,
    seeds: Vec<PathBuf>,
    replay: Vec<PathBuf>,
    max_inputs: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 30.0,
        seed: 1,
        start: 0,
        hang: 10.0,
        out: regressions_dir(),
        worker: false,
        deadline_ms: 0,
        seeds: Vec::new(),
        replay: Vec::new(),
        max_inputs: u64::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--seconds" => a.seconds = val().parse().unwrap_or_else(|_| usage("--seconds N")),
            "--seed" => {
                let v = val();
                a.seed = if v == "random" {
                    now_ms()
                } else {
                    v.parse().unwrap_or_else(|_| usage("--seed N"))
                };
            }
            "--start" => a.start = val().parse().unwrap_or_else(|_| usage("--start N")),
            "--inputs" => a.max_inputs = val().parse().unwrap_or_else(|_| usage("--inputs N")),
            "--hang-seconds" => {
                a.hang = val().parse().unwrap_or_else(|_| usage("--hang-seconds N"))
            }
            "--out" => a.out = PathBuf::from(val()),
            "--worker" => a.worker = true,
            "--deadline-ms" => a.deadline_ms = val().parse().unwrap_or(0),
            "--seed-file" => a.seeds.push(PathBuf::from(val())),
            "--replay" => a.replay.push(PathBuf::from(val())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    a
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("error: {msg}");
    }
    eprintln!(
        "usage: fuzz_<target> [--seconds N] [--seed N|random] [--start I] [--inputs N] [--hang-seconds N] [--out DIR]\n       fuzz_<target> --replay FILE..."
    );
    std::process::exit(2)
}

/// Run a target: supervise a worker for `--seconds`, or replay files with `--replay`.
pub fn main(target: Target) {
    let args = parse_args();
    if !args.replay.is_empty() {
        replay(&target, &args);
    } else if args.worker {
        worker(&target, &args);
    } else {
        supervise(&target, &args);
    }
}

/// Whether panics are printed as they happen (`--replay`).
static REPLAYING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The message of the last panic (set by the hook), for the finding's signature.
static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// A panic message with digests, numbers and scratch paths folded, so that one bug is one signature.
pub fn signature(msg: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 && run.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push('H');
        } else if !run.is_empty() && run.chars().all(|c| c.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in msg.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out.split_whitespace()
        .map(|w| {
            if w.starts_with("/dev/shm/") || w.starts_with("/tmp/") {
                "PATH"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // The engine function the panic came from (the location may be inside the standard library).
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        let engine_fn = bt
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.split_once(": _ocitar::")
                    .map(|(_, f)| format!(" in _ocitar::{f}"))
            })
            .unwrap_or_default();
        if std::env::var_os("OCITAR_FUZZ_BACKTRACE").is_some() {
            eprintln!("{bt}");
        }
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = format!("{loc}: {msg}{engine_fn}");
        }
        if REPLAYING.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("panic at {loc}: {msg}{engine_fn}");
        }
    }));
}

fn replay(target: &Target, args: &Args) {
    quiet_panics();
    REPLAYING.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut state = (target.prepare)(&[]);
    let mut failed = false;
    for f in &args.replay {
        let data = std::fs::read(f).unwrap_or_else(|e| usage(&format!("{}: {e}", f.display())));
        let start = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.run(&data)));
        println!(
            "{}: {} in {:.2} s",
            f.display(),
            if r.is_ok() { "ok" } else { "PANIC" },
            start.elapsed().as_secs_f64()
        );
        failed |= r.is_err();
    }
    drop(state);
    std::process::exit(i32::from(failed));
}

fn worker(target: &Target, args: &Args) {
    quiet_panics();
    let mut state = (target.prepare)(&args.seeds);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut iter = args.start;
    let mut seen = std::collections::BTreeSet::new();
    while now_ms() < args.deadline_ms && iter < args.max_inputs {
        let input = state.generate(&mut Rng::for_input(args.seed, iter));
        let _ = writeln!(out, "I {iter}");
        let _ = out.flush();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.run(&input)));
        if r.is_err() {
            let msg = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
            let sig = signature(&msg).replace('\n', " ");
            if seen.insert(sig.clone()) {
                eprintln!("panic on input {iter}: {msg}");
            }
            let _ = writeln!(out, "P {iter} {sig}");
            let _ = out.flush();
        }
        iter += 1;
    }
    let _ = writeln!(out, "D {iter}");
    let _ = out.flush();
}

/// A finding: what happened on which input, and its signature (one per bug, roughly).
struct Finding {
    what: &'static str,
    iter: u64,
    signature: String,
}

fn supervise(target: &Target, args: &Args) {
    let exe = std::env::current_exe().unwrap_or_else(|e| usage(&format!("current_exe: {e}")));
    let kind_prefix = format!("{}-", target.kind);
    let mut seeds: Vec<PathBuf> = Vec::new();
    walk_files(&regressions_dir(), &mut seeds);
    seeds.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&kind_prefix))
    });
    // The supervisor's own copy of the state, to rebuild any input from its index.
    let state = (target.prepare)(&seeds);
    let started = Instant::now();
    let deadline_ms = now_ms() + (args.seconds * 1000.0) as u64;
    eprintln!(
        "fuzz_{}: seed {} from input {}, {:.0} s, corpus of {} ({} regression seeds), hang limit {:.0} s",
        target.kind,
        args.seed,
        args.start,
        args.seconds,
        state.corpus_len(),
        seeds.len(),
        args.hang
    );
    let mut next = args.start;
    let mut findings: Vec<Finding> = Vec::new();
    let mut done = args.start;
    while now_ms() < deadline_ms && next < args.max_inputs {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--worker",
            "--seed",
            &args.seed.to_string(),
            "--start",
            &next.to_string(),
        ])
        .args([
            "--deadline-ms",
            &deadline_ms.to_string(),
            "--inputs",
            &args.max_inputs.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for s in &seeds {
            cmd.arg("--seed-file").arg(s);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| usage(&format!("spawn worker: {e}")));
        let Some(stdout) = child.stdout.take() else {
            usage("worker stdout")
        };
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut current: Option<u64> = None;
        let mut finished = false;
        loop {
            match rx.recv_timeout(Duration::from_secs_f64(args.hang)) {
                Ok(line) => {
                    let mut parts = line.splitn(3, ' ');
                    let tag = parts.next().unwrap_or("");
                    let n: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    let sig = parts.next().unwrap_or("").to_string();
                    match tag {
                        "I" => {
                            current = Some(n);
                            done = n;
                        }
                        "P" => findings.push(Finding {
                            what: "crash",
                            iter: n,
                            signature: sig,
                        }),
                        "D" => {
                            done = n;
                            finished = true;
                        }
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(i) = current {
                        eprintln!("input {i} runs for more than {:.0} s: a hang", args.hang);
                        findings.push(Finding {
                            what: "hang",
                            iter: i,
                            signature: "hang".into(),
                        });
                        let _ = child.kill();
                        let _ = child.wait();
                        next = i + 1;
                    }
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait();
        remove_scratch(child.id());
        if finished {
            break;
        }
        if let (Ok(st), Some(i)) = (&status, current) {
            if !st.success() && findings.last().is_none_or(|f| f.iter != i) {
                eprintln!("worker died on input {i} ({st}): an abort");
                findings.push(Finding {
                    what: "abort",
                    iter: i,
                    signature: format!("abort ({st})"),
                });
                next = i + 1;
            }
        }
    }
    let inputs = done.saturating_sub(args.start);
    let secs = started.elapsed().as_secs_f64();
    // One input per signature is written; the others are counted. Known findings (fuzz/known.txt: bugs
    // reported and not fixed yet) are counted only, and do not fail the run.
    let known = known_findings();
    let mut by_signature: BTreeMap<&str, (usize, &Finding)> = BTreeMap::new();
    let mut known_count = 0usize;
    for f in &findings {
        if known.iter().any(|k| f.signature.contains(k.as_str())) {
            known_count += 1;
            continue;
        }
        by_signature.entry(&f.signature).or_insert((0, f)).0 += 1;
    }
    let mut known_sigs: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &findings {
        if known.iter().any(|k| f.signature.contains(k.as_str())) {
            *known_sigs.entry(&f.signature).or_default() += 1;
        }
    }
    for (sig, count) in &known_sigs {
        eprintln!("known: {count} x {sig}");
    }
    for (sig, (count, f)) in &by_signature {
        eprintln!("{count} x {sig}");
        let input = state.generate(&mut Rng::for_input(args.seed, f.iter));
        let hash = sha256_hex(&input);
        let name = format!("{}-{}-{}.{}", target.kind, f.what, &hash[..16], target.ext);
        let path = args.out.join(&name);
        let _ = std::fs::create_dir_all(&args.out);
        match std::fs::write(&path, &input) {
            Ok(()) => eprintln!(
                "{}: input {} (replay: --seed {} --start {} --inputs {}) written to {}",
                f.what,
                f.iter,
                args.seed,
                f.iter,
                f.iter + 1,
                path.display()
            ),
            Err(e) => eprintln!(
                "{}: input {}: cannot write {}: {e}",
                f.what,
                f.iter,
                path.display()
            ),
        }
    }
    println!(
        "fuzz_{}: {} inputs in {:.1} s ({:.0}/s), seed {}, {} new finding(s) of {} kind(s), {} known",
        target.kind,
        inputs,
        secs,
        inputs as f64 / secs.max(1e-9),
        args.seed,
        findings.len() - known_count,
        by_signature.len(),
        known_count
    );
    let failed = !by_signature.is_empty();
    drop(state);
    std::process::exit(i32::from(failed));
}

/// Signature substrings of known findings: `fuzz/known.txt`, one per line, `#` comments.
fn known_findings() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("known.txt");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A private scratch directory for a worker (on tmpfs when there is one: stores fsync a lot).
pub fn scratch(name: &str) -> PathBuf {
    let dir = scratch_base().join(format!("ocitar-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn scratch_base() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

/// Remove the scratch directories of a worker that was killed or died.
fn remove_scratch(pid: u32) {
    let Ok(rd) = std::fs::read_dir(scratch_base()) else {
        return;
    };
    let suffix = format!("-{pid}");
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("ocitar-fuzz-") && name.ends_with(&suffix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes the scratch directory when the worker ends.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
