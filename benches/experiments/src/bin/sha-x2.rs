//! sha-x2: does hashing two independent SHA-256 streams in lockstep on one core (the two dependency
//! chains of SHA-NI rounds interleaved, as Linux's `sha256_ni_finup2x` does for dm-verity) beat one stream
//! at a time? On the benchmark machine it does not (benches/README.md): its SHA-NI unit is busy, not
//! waiting. Not part of ocitar. `cargo run --release --bin sha-x2`
use std::arch::x86_64::*;
use std::time::Instant;

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Two independent SHA-256 streams, block by block in lockstep: the two dependency chains interleave.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn compress_x2(sa: &mut [u32; 8], a: &[[u8; 64]], sb: &mut [u32; 8], b: &[[u8; 64]]) {
    let bswap = _mm_set_epi64x(0x0c0d0e0f08090a0b, 0x0405060700010203);
    let to_lanes = |s: &[u32; 8]| -> (__m128i, __m128i) {
        let lo = _mm_loadu_si128(s.as_ptr() as *const __m128i); // d c b a
        let hi = _mm_loadu_si128(s.as_ptr().add(4) as *const __m128i); // h g f e
        let t = _mm_shuffle_epi32(lo, 0xB1); // c d a b
        let u = _mm_shuffle_epi32(hi, 0x1B); // e f g h
        (_mm_alignr_epi8(t, u, 8), _mm_blend_epi16(u, t, 0xF0)) // abef, cdgh
    };
    let from_lanes = |s: &mut [u32; 8], abef: __m128i, cdgh: __m128i| {
        let t = _mm_shuffle_epi32(abef, 0x1B);
        let u = _mm_shuffle_epi32(cdgh, 0xB1);
        _mm_storeu_si128(s.as_mut_ptr() as *mut __m128i, _mm_blend_epi16(t, u, 0xF0));
        _mm_storeu_si128(
            s.as_mut_ptr().add(4) as *mut __m128i,
            _mm_alignr_epi8(u, t, 8),
        );
    };
    let (mut a0, mut a1) = to_lanes(sa);
    let (mut b0, mut b1) = to_lanes(sb);
    for (ba, bb) in a.iter().zip(b) {
        let (sa0, sa1, sb0, sb1) = (a0, a1, b0, b1);
        let ld = |p: &[u8; 64], i: usize| {
            _mm_shuffle_epi8(
                _mm_loadu_si128(p.as_ptr().add(16 * i) as *const __m128i),
                bswap,
            )
        };
        let mut wa = [ld(ba, 0), ld(ba, 1), ld(ba, 2), ld(ba, 3)];
        let mut wb = [ld(bb, 0), ld(bb, 1), ld(bb, 2), ld(bb, 3)];
        // Four rounds per step, both streams side by side; every index is a constant after expansion, so
        // the message words stay in registers.
        macro_rules! steps {
            ($($r:literal)*) => {$(
                let k = _mm_loadu_si128(K.as_ptr().add(4 * $r) as *const __m128i);
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
    from_lanes(sa, a0, a1);
    from_lanes(sb, b0, b1);
}

fn main() {
    assert!(is_x86_feature_detected!("sha") && is_x86_feature_detected!("sse4.1"));
    let n = 64 << 20;
    let a: Vec<u8> = (0..n)
        .map(|i: usize| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let b: Vec<u8> = (0..n)
        .map(|i: usize| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    let ba: &[[u8; 64]] =
        unsafe { std::slice::from_raw_parts(a.as_ptr() as *const [u8; 64], n / 64) };
    let bb: &[[u8; 64]] =
        unsafe { std::slice::from_raw_parts(b.as_ptr() as *const [u8; 64], n / 64) };
    let init = [
        0x6a09e667u32,
        0xbb67ae85,
        0x3c6ef372,
        0xa54ff53a,
        0x510e527f,
        0x9b05688c,
        0x1f83d9ab,
        0x5be0cd19,
    ];
    for _ in 0..3 {
        let t = Instant::now();
        let (mut s1, mut s2) = (init, init);
        sha2::block_api::compress256(&mut s1, ba);
        sha2::block_api::compress256(&mut s2, bb);
        let single = t.elapsed();
        let t = Instant::now();
        let (mut x1, mut x2) = (init, init);
        unsafe { compress_x2(&mut x1, ba, &mut x2, bb) };
        let double = t.elapsed();
        assert_eq!(s1, x1);
        assert_eq!(s2, x2);
        println!("2 x 64 MiB: sha2 one after the other {:?} ({:.2} GB/s), interleaved x2 {:?} ({:.2} GB/s)", single, 2.0 * n as f64 / single.as_secs_f64() / 1e9, double, 2.0 * n as f64 / double.as_secs_f64() / 1e9);
    }
}
