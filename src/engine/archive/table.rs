//! An archive's table of entries: blobs (`blobs/<alg>/<hex>`, nearly every entry of an image archive)
//! as a vector sorted by digest, found by binary search, with no name kept; every other entry (layout
//! files, directories, links, Docker paths) in a map keyed by its normalized name.

use std::collections::{BTreeMap, HashSet};

use super::read::{blob_digest, Entry, Kind};
use crate::engine::digest::{Algorithm, Digest};

/// The first `bits` (1 to 16) bits of a sha256 digest; `None` for another algorithm.
fn prefix(d: &Digest, bits: u32) -> Option<usize> {
    if d.algorithm() != Algorithm::Sha256 || !(1..=16).contains(&bits) {
        return None;
    }
    let b = d.as_bytes();
    let top = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    Some(usize::from(top >> (16 - bits)))
}

/// The entries of one archive, built as the archive is read ([`Table::insert`]), then frozen
/// ([`Table::finish`]) and looked up.
#[derive(Default)]
pub struct Table {
    /// Blob entries; sorted by digest once finished (while reading: sorted as long as the archive lists
    /// them in order, which ocitar's own archives do).
    blobs: Vec<(Digest, Entry)>,
    /// Whether `blobs` is in ascending order so far.
    sorted: bool,
    /// The digests of `blobs`, while reading an archive that lists blobs out of order (to find a name
    /// listed twice); dropped by [`Table::finish`].
    seen: Option<HashSet<Digest>>,
    /// Every other entry, by normalized name.
    others: BTreeMap<String, Entry>,
    /// Built by [`Table::finish`]: for each value `p` of a sha256 digest's first `bits` bits, where its
    /// blobs begin in `blobs` (they are `starts[p]..starts[p + 1]`). A look-up binary-searches that
    /// range only: for digests as hashes make them, a handful of entries in one or two cache lines, where
    /// a search of the whole vector misses the cache at nearly every step (at 100,000 blobs that was a
    /// tenth of a load's CPU); digests chosen to share a prefix make one range hold them all, a binary
    /// search as without the index.
    starts: Vec<u32>,
    /// How many leading bits of a sha256 digest index `starts` (0: no index).
    bits: u32,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table {
            sorted: true,
            ..Table::default()
        }
    }

    /// How many entries the table holds.
    pub fn len(&self) -> usize {
        self.blobs.len() + self.others.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry of a blob, by digest.
    pub fn blob(&self, d: &Digest) -> Option<&Entry> {
        if self.sorted {
            let (from, to) = self.range(d);
            let part = self.blobs.get(from..to)?;
            let i = part.binary_search_by(|(k, _)| k.cmp(d)).ok()?;
            return part.get(i).map(|(_, e)| e);
        }
        // Only while an out-of-order archive is being read (a name listed twice is looked up).
        self.blobs.iter().find(|(k, _)| k == d).map(|(_, e)| e)
    }

    /// The entry named `name` exactly (links not followed).
    pub fn get(&self, name: &str) -> Option<&Entry> {
        match blob_digest(name) {
            Some(d) => self.blob(&d),
            None => self.others.get(name),
        }
    }

    /// The range of `blobs` that holds `d` if any entry does: its prefix's range once the index is built,
    /// else all of it.
    fn range(&self, d: &Digest) -> (usize, usize) {
        let all = (0, self.blobs.len());
        match (self.bits, prefix(d, self.bits)) {
            (1.., Some(p)) => {
                let at = |i: usize| self.starts.get(i).map(|&s| s as usize);
                at(p).zip(at(p + 1)).unwrap_or(all)
            }
            _ => all,
        }
    }

    /// Whether blob `d` is listed already; for the duplicate check while reading, in logarithmic or
    /// constant time whatever the order of the archive.
    fn has_blob(&self, d: &Digest) -> bool {
        match (&self.seen, self.blobs.last()) {
            (Some(seen), _) => seen.contains(d),
            // In order so far: a digest after the last one is new (ocitar's archives, every blob).
            (None, Some((last, _))) if d > last => false,
            (None, _) => self.blob(d).is_some(),
        }
    }

    /// The entry already listed under `name`, while reading.
    pub fn listed(&self, name: &str) -> Option<&Entry> {
        match blob_digest(name) {
            Some(d) if self.has_blob(&d) => self.blob(&d),
            Some(_) => None,
            None => self.others.get(name),
        }
    }

    /// Add an entry (the caller checked first with [`Table::listed`] that the name is new).
    pub fn insert(&mut self, name: String, entry: Entry) {
        let Some(d) = blob_digest(&name) else {
            self.others.insert(name, entry);
            return;
        };
        // The prefix index describes a finished table only.
        self.bits = 0;
        if let Some(seen) = &mut self.seen {
            seen.insert(d.clone());
        } else if self.blobs.last().is_some_and(|(last, _)| *last > d) {
            // Out of order: from now on a set answers "listed already?".
            let mut seen: HashSet<Digest> = self.blobs.iter().map(|(k, _)| k.clone()).collect();
            seen.insert(d.clone());
            self.seen = Some(seen);
            self.sorted = false;
        }
        self.blobs.push((d, entry));
    }

    /// Sort the blobs by digest (when the archive did not list them in order) and release what reading
    /// needed.
    pub fn finish(&mut self) {
        if !self.sorted {
            self.blobs.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
            self.sorted = true;
        }
        self.seen = None;
        self.blobs.shrink_to_fit();
        self.index_prefixes();
    }

    /// Build `starts`: about one prefix per sha256 blob, at most 2^16 (256 KiB of index); none under 64
    /// blobs.
    fn index_prefixes(&mut self) {
        let sha256 = self
            .blobs
            .partition_point(|(d, _)| d.algorithm() == Algorithm::Sha256);
        let Ok(n) = u32::try_from(sha256) else { return };
        if n < 64 {
            return;
        }
        let bits = n.ilog2().min(16);
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for (d, _) in self.blobs.iter().take(sha256) {
            if let Some(c) = prefix(d, bits).and_then(|p| starts.get_mut(p + 1)) {
                *c += 1;
            }
        }
        // Counts per prefix (shifted by one) summed in order: where each prefix's range begins.
        let mut sum = 0;
        for c in &mut starts {
            sum += *c;
            *c = sum;
        }
        self.starts = starts;
        self.bits = bits;
    }

    /// Every blob entry, by digest.
    pub fn blobs(&self) -> impl Iterator<Item = (&Digest, &Entry)> {
        self.blobs.iter().map(|(d, e)| (d, e))
    }

    /// Every other entry, by name.
    pub fn others(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.others.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// The entry named `name`, links followed (at most 16 hops), with the name it was found under: `name`
    /// itself or a link's target. `Err` carries the name where a link chain was given up.
    pub fn resolve<'s: 'r, 'n: 'r, 'r>(
        &'s self,
        name: &'n str,
    ) -> Result<Option<(&'r str, &'s Entry)>, &'r str> {
        let mut at = name;
        for _ in 0..16 {
            let Some(e) = self.get(at) else {
                return Ok(None);
            };
            match &e.kind {
                Kind::Link(target) => at = target,
                _ => return Ok(Some((at, e))),
            }
        }
        Err(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::archive::read::Loc;

    fn file(size: u64) -> Entry {
        Entry {
            kind: Kind::File,
            size,
            loc: Loc::Offset(size * 512),
        }
    }

    fn build(names: &[String]) -> Table {
        let mut t = Table::new();
        for (i, n) in names.iter().enumerate() {
            assert!(t.listed(n).is_none(), "{n} listed twice");
            t.insert(n.clone(), file(i as u64));
        }
        t.finish();
        t
    }

    #[test]
    fn blobs_are_found_by_digest_and_by_name_in_any_archive_order() {
        let digests: Vec<Digest> = (0..300u32)
            .map(|i| Digest::sha256_of(&i.to_le_bytes()))
            .collect();
        let names: Vec<String> = digests.iter().map(Digest::blob_name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        let mut reversed = sorted.clone();
        reversed.reverse();
        for order in [names.clone(), sorted, reversed] {
            let mut all = order.clone();
            all.insert(7, "index.json".into());
            all.push("blobs/sha256".into());
            let t = build(&all);
            assert_eq!(t.len(), 302);
            for (d, n) in digests.iter().zip(&names) {
                let i = all.iter().position(|x| x == n).unwrap() as u64;
                assert_eq!(t.blob(d).unwrap().size, i);
                assert_eq!(t.get(n).unwrap().size, i);
                assert_eq!(t.resolve(n).unwrap().unwrap().0, n.as_str());
            }
            assert_eq!(t.get("index.json").unwrap().size, 7);
            assert!(t.blob(&Digest::sha256_of(b"absent")).is_none());
            assert!(t.get(&Digest::sha256_of(b"absent").blob_name()).is_none());
            assert!(t.get("blobs/sha256/x").is_none());
            let listed: Vec<&Digest> = t.blobs().map(|(d, _)| d).collect();
            let mut expect: Vec<&Digest> = digests.iter().collect();
            expect.sort();
            assert_eq!(listed, expect, "blobs are listed by digest");
        }
    }

    #[test]
    fn digests_sharing_a_prefix_and_other_algorithms_are_found() {
        // Chosen names: 200 sha256 digests with the same first 16 bits, 100 spread ones, 70 sha512.
        let hex = |i: u32, head: &str, len: usize| {
            let tail = Digest::sha256_of(&i.to_le_bytes()).hex().to_string();
            format!("{head}{}", &tail[..len - head.len()])
        };
        let mut digests: Vec<Digest> = (0..200)
            .map(|i| Digest::from_parts("sha256", &hex(i, "abcd", 64)))
            .chain((200..300).map(|i| Digest::from_parts("sha256", &hex(i, "", 64))))
            .chain((300..370).map(|i| {
                let h = hex(i, "", 64);
                Digest::from_parts("sha512", &format!("{h}{h}"))
            }))
            .collect::<Result<_, _>>()
            .unwrap();
        digests.reverse();
        let names: Vec<String> = digests.iter().map(Digest::blob_name).collect();
        let t = build(&names);
        assert!(t.bits > 0, "an index is built above 64 sha256 blobs");
        for (i, d) in digests.iter().enumerate() {
            assert_eq!(t.blob(d).map(|e| e.size), Some(i as u64), "{d}");
        }
        let near = Digest::from_parts("sha256", &hex(999, "abcd", 64)).unwrap();
        assert!(t.blob(&near).is_none());
        assert!(t.blob(&Digest::sha256_of(b"absent")).is_none());
    }

    #[test]
    fn a_blob_listed_twice_is_found_in_order_and_out_of_order() {
        let a = Digest::sha256_of(b"a").blob_name();
        let b = Digest::sha256_of(b"b").blob_name();
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        for (first, then) in [
            (vec![lo.clone()], &lo),
            (vec![lo.clone(), hi.clone()], &lo),
            (vec![hi.clone(), lo.clone()], &hi),
        ] {
            let mut t = Table::new();
            for n in &first {
                t.insert(n.clone(), file(1));
            }
            assert!(t.listed(then).is_some(), "{then} after {first:?}");
        }
        let mut t = Table::new();
        t.insert(hi.clone(), file(1));
        assert!(t.listed(&lo).is_none());
    }

    #[test]
    fn links_resolve_to_their_target_and_loops_are_given_up() {
        let blob = Digest::sha256_of(b"layer").blob_name();
        let link = |to: &str| Entry {
            kind: Kind::Link(to.to_string()),
            size: 0,
            loc: Loc::None,
        };
        let mut t = Table::new();
        t.insert(blob.clone(), file(3));
        t.insert("abc/layer.tar".into(), link(&blob));
        t.insert("loop/a".into(), link("loop/b"));
        t.insert("loop/b".into(), link("loop/a"));
        t.finish();
        let (name, e) = t.resolve("abc/layer.tar").unwrap().unwrap();
        assert_eq!((name, e.size), (blob.as_str(), 3));
        assert!(t.resolve("loop/a").is_err());
        assert!(t.resolve("missing").unwrap().is_none());
    }
}
