//! sha-x2: one SHA-256 stream at a time against two side by side (`ocitar::engine::sha256`, whose SHA-NI
//! rounds of the two messages interleave, as Linux's `sha256_ni_finup2x` does for dm-verity), on two
//! 64 MiB buffers in 256 KiB chunks (the copy pool's read size). Not part of ocitar; see
//! benches/README.md. `cargo run --release --bin sha-x2`

use _ocitar::engine::sha256::Sha256;
use std::time::Instant;

fn main() {
    let n = 64 << 20;
    let chunk = 256 << 10;
    let a: Vec<u8> = (0..n)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let b: Vec<u8> = (0..n)
        .map(|i: usize| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let rate = |t: std::time::Duration| 2.0 * n as f64 / t.as_secs_f64() / 1e9;
    for _ in 0..3 {
        let t = Instant::now();
        let (mut x, mut y) = (Sha256::new(), Sha256::new());
        a.chunks(chunk).for_each(|c| x.update(c));
        b.chunks(chunk).for_each(|c| y.update(c));
        let one = t.elapsed();
        let t = Instant::now();
        let (mut p, mut q) = (Sha256::new(), Sha256::new());
        for (c, d) in a.chunks(chunk).zip(b.chunks(chunk)) {
            Sha256::update_pair(&mut p, c, &mut q, d);
        }
        let two = t.elapsed();
        assert!(x.finish() == p.finish() && y.finish() == q.finish());
        println!(
            "2 x 64 MiB: one after the other {one:?} ({:.2} GB/s), side by side {two:?} ({:.2} GB/s)",
            rate(one),
            rate(two)
        );
    }
}
