//! SHA-256, one message or two at once.
//!
//! One message is hashed by `sha2`'s block function (SHA-NI where the CPU has it). Two independent
//! messages can also be hashed side by side ([`Sha256::update_pair`]): their SHA-NI rounds interleave, so
//! the CPU works on one message while the other's previous round is still in flight (the technique of
//! Linux's `sha256_ni_finup2x`). On the benchmark machine this hashes 1.65 GB/s on one core against
//! 1.23 GB/s for one message at a time when the host is quiet, 1.15 against 1.05 GB/s when it is busy
//! (benches/README.md, `experiments/src/bin/sha-x2.rs`). The copy pool uses it to hash two blobs per
//! worker.

use sha2::block_api::compress256;

const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// An incremental SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// A partial block: its first `filled` bytes.
    block: [u8; 64],
    filled: usize,
    /// Bytes hashed in all.
    length: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    /// A hasher of the empty message.
    pub fn new() -> Sha256 {
        Sha256 {
            state: IV,
            block: [0; 64],
            filled: 0,
            length: 0,
        }
    }

    /// Take bytes into the partial block; returns the bytes left once the partial block is complete
    /// and hashed (all of `data` when there was no partial block, none when it is still incomplete).
    fn top_up<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.filled == 0 {
            return data;
        }
        let take = (64 - self.filled).min(data.len());
        let (head, rest) = data.split_at(take);
        if let Some(dst) = self.block.get_mut(self.filled..self.filled + take) {
            dst.copy_from_slice(head);
        }
        self.filled += take;
        if self.filled == 64 {
            compress256(&mut self.state, &[self.block]);
            self.filled = 0;
        }
        rest
    }

    /// Keep `tail` (under 64 bytes) as the partial block. With a partial block still pending, `tail`
    /// is empty (everything went into that block) and nothing changes.
    fn keep(&mut self, tail: &[u8]) {
        if self.filled != 0 {
            return;
        }
        if let Some(dst) = self.block.get_mut(..tail.len()) {
            dst.copy_from_slice(tail);
        }
        self.filled = tail.len();
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        let rest = self.top_up(data);
        let (blocks, tail) = rest.as_chunks::<64>();
        compress256(&mut self.state, blocks);
        self.keep(tail);
    }

    /// Feed `da` to `a` and `db` to `b`, hashing the two side by side where both have whole blocks.
    pub fn update_pair(a: &mut Sha256, da: &[u8], b: &mut Sha256, db: &[u8]) {
        let (ra, rb) = (a.top_up(da), b.top_up(db));
        let (ba, ta) = ra.as_chunks::<64>();
        let (bb, tb) = rb.as_chunks::<64>();
        let n = ba.len().min(bb.len());
        let (pa, sa) = ba.split_at(n);
        let (pb, sb) = bb.split_at(n);
        if !compress_pair(&mut a.state, pa, &mut b.state, pb) {
            compress256(&mut a.state, pa);
            compress256(&mut b.state, pb);
        }
        compress256(&mut a.state, sa);
        compress256(&mut b.state, sb);
        a.keep(ta);
        b.keep(tb);
    }

    /// The digest: padding, then the state as big-endian bytes.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        // Pad to 56 bytes modulo 64, then the length in bits.
        let zeros = (119 - self.filled) % 64;
        let end = 1 + zeros;
        if let Some(len) = pad.get_mut(end..end + 8) {
            len.copy_from_slice(&bits.to_be_bytes());
        }
        self.update(pad.get(..end + 8).unwrap_or_default());
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// Hash equal numbers of blocks of two messages side by side. `false` when this CPU cannot (no SHA-NI):
/// nothing was hashed.
fn compress_pair(sa: &mut [u32; 8], a: &[[u8; 64]], sb: &mut [u32; 8], b: &[[u8; 64]]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if a.is_empty() {
            return true;
        }
        if shani::available() {
            // SAFETY: the CPU has the features `shani::compress2` is compiled for (checked above).
            unsafe { shani::compress2(sa, a, sb, b) };
            return true;
        }
    }
    let _ = (sa, a, sb, b);
    false
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
        _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
        _mm_shuffle_epi8, _mm_storeu_si128,
    };
    use std::sync::atomic::{AtomicU8, Ordering};

    /// The round constants, four per step.
    const K: [[u32; 4]; 16] = [
        [0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5],
        [0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5],
        [0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3],
        [0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174],
        [0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc],
        [0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da],
        [0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7],
        [0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967],
        [0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13],
        [0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85],
        [0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3],
        [0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070],
        [0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5],
        [0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3],
        [0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208],
        [0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2],
    ];

    /// Whether the CPU has SHA-NI with SSSE3 and SSE4.1 (0 unknown, 1 no, 2 yes).
    pub fn available() -> bool {
        static FOUND: AtomicU8 = AtomicU8::new(0);
        match FOUND.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let yes = std::arch::is_x86_feature_detected!("sha")
                    && std::arch::is_x86_feature_detected!("ssse3")
                    && std::arch::is_x86_feature_detected!("sse4.1");
                FOUND.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
        }
    }

    /// The state as the two lanes SHA-NI works on: (ABEF, CDGH).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn lanes(s: &[u32; 8]) -> (__m128i, __m128i) {
        // SAFETY: two unaligned 16-byte loads within the 32-byte state.
        let (dcba, hgfe) = unsafe {
            (
                _mm_loadu_si128(s.as_ptr().cast()),
                _mm_loadu_si128(s.as_ptr().add(4).cast()),
            )
        };
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xF0),
        )
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn unlanes(s: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        // SAFETY: two unaligned 16-byte stores within the 32-byte state.
        unsafe {
            _mm_storeu_si128(s.as_mut_ptr().cast(), _mm_blend_epi16(feba, dchg, 0xF0));
            _mm_storeu_si128(s.as_mut_ptr().add(4).cast(), _mm_alignr_epi8(dchg, feba, 8));
        }
    }

    /// The block's sixteen message words, big-endian, four per vector. (No closures here: a closure
    /// does not inherit `target_feature`, and its intrinsics would become calls.)
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn words(block: &[u8; 64]) -> [__m128i; 4] {
        let swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let p: *const __m128i = block.as_ptr().cast();
        // SAFETY: four unaligned 16-byte loads within the 64-byte block.
        unsafe {
            [
                _mm_shuffle_epi8(_mm_loadu_si128(p), swap),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), swap),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), swap),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), swap),
            ]
        }
    }

    /// Hash `a.len()` blocks of each message (`a` and `b` have the same length), side by side.
    ///
    /// # Safety
    /// The CPU must have SHA-NI, SSSE3 and SSE4.1 ([`available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress2(sa: &mut [u32; 8], a: &[[u8; 64]], sb: &mut [u32; 8], b: &[[u8; 64]]) {
        let (mut a0, mut a1) = lanes(sa);
        let (mut b0, mut b1) = lanes(sb);
        for (ba, bb) in a.iter().zip(b) {
            let (sa0, sa1, sb0, sb1) = (a0, a1, b0, b1);
            let mut wa = words(ba);
            let mut wb = words(bb);
            // Four rounds per step, both messages side by side. Every index is a constant after the
            // expansion, so the words stay in registers.
            macro_rules! steps {
                ($($r:literal)*) => {$(
                    // SAFETY: an unaligned 16-byte load of one row of K.
                    let k = unsafe { _mm_loadu_si128(K[$r].as_ptr().cast()) };
                    if $r >= 4 {
                        for w in [&mut wa, &mut wb] {
                            let t = _mm_add_epi32(
                                _mm_sha256msg1_epu32(w[$r % 4], w[($r + 1) % 4]),
                                _mm_alignr_epi8(w[($r + 3) % 4], w[($r + 2) % 4], 4),
                            );
                            w[$r % 4] = _mm_sha256msg2_epu32(t, w[($r + 3) % 4]);
                        }
                    }
                    let ta = _mm_add_epi32(wa[$r % 4], k);
                    let tb = _mm_add_epi32(wb[$r % 4], k);
                    a1 = _mm_sha256rnds2_epu32(a1, a0, ta);
                    b1 = _mm_sha256rnds2_epu32(b1, b0, tb);
                    a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ta, 0x0E));
                    b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(tb, 0x0E));
                )*};
            }
            steps!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            a0 = _mm_add_epi32(a0, sa0);
            a1 = _mm_add_epi32(a1, sa1);
            b0 = _mm_add_epi32(b0, sb0);
            b1 = _mm_add_epi32(b1, sb1);
        }
        unlanes(sa, a0, a1);
        unlanes(sb, b0, b1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn one_message_matches_sha2_for_every_length_and_split() {
        for n in (0..300).chain([4095, 4096, 4097, 65536 + 5]) {
            let data = bytes(n, n as u64);
            let mut whole = Sha256::new();
            whole.update(&data);
            assert_eq!(whole.finish(), reference(&data), "length {n}");
            for split in [1, 7, 63, 64, 65, 130] {
                let mut h = Sha256::new();
                for c in data.chunks(split) {
                    h.update(c);
                }
                assert_eq!(
                    h.finish(),
                    reference(&data),
                    "length {n} in pieces of {split}"
                );
            }
        }
    }

    #[test]
    fn two_messages_side_by_side_match_sha2() {
        for (na, nb) in [
            (0, 0),
            (0, 200),
            (64, 64),
            (1000, 999),
            (100_000, 64),
            (3, 70_000),
        ] {
            let (da, db) = (bytes(na, 1), bytes(nb, 2));
            for (sa, sb) in [(64, 64), (13, 4096), (4096, 4096), (100, 1 << 20)] {
                let (mut ha, mut hb) = (Sha256::new(), Sha256::new());
                let (mut ca, mut cb) = (da.chunks(sa), db.chunks(sb));
                loop {
                    let (x, y) = (ca.next(), cb.next());
                    if x.is_none() && y.is_none() {
                        break;
                    }
                    Sha256::update_pair(&mut ha, x.unwrap_or(&[]), &mut hb, y.unwrap_or(&[]));
                }
                assert_eq!(ha.finish(), reference(&da), "{na} in {sa}");
                assert_eq!(hb.finish(), reference(&db), "{nb} in {sb}");
            }
        }
    }
}
