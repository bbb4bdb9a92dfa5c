//! copy-bound: time the ways of copying blobs while hashing them with sha2 (the crate and backend ocitar
//! uses), to see what bounds ocitar's save and load on a machine. Not part of ocitar; see
//! benches/README.md.
//!
//! copy-bound --method M [--threads N] [--buf KiB] [--depth N] [--one-out] [--fsync none|each|batch|end]
//!            [--sfr] --dst DIR FILE...
//!
//! Methods (every one reads FILEs in order and writes them to DIR, one file per input, or one file with
//! --one-out, as save does):
//!   hash   read + SHA-256, no write
//!   copy   copy_file_range only, no hash
//!   rw     read into a buffer, hash, write (ocitar's way); --threads 2 hashes on a second thread while
//!          the first reads and writes (as ocitar's copy_verified), --depth chunks in flight
//!   par    N worker threads hash whole blobs from a mapping of the source (no copy into user space)
//!          while the main thread copies them with copy_file_range (a kernel-side copy)
//! --sfr starts writeback of each output when it is complete (sync_file_range, as ocitar's ingest);
//! --fsync each: fsync every output when written; batch: all at the end; end: the one output (--one-out).
//! Prints wall time, CPU time (all threads) and throughput.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// A read-only mapping of a whole file.
struct Map(*mut libc::c_void, usize);

impl Map {
    fn new(f: &File, len: usize) -> Map {
        // SAFETY: a private read-only mapping of a file we keep open while the mapping lives.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap failed");
        Map(p, len)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is len bytes long and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.0 as *const u8, self.1) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping what new() mapped.
        unsafe { libc::munmap(self.0, self.1.max(1)) };
    }
}

fn copy_range(src: &File, dst: &File, len: u64) {
    let mut left = len;
    while left > 0 {
        // SAFETY: plain syscall on descriptors we own; null offsets use and advance the file positions.
        let k = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                left as usize,
                0,
            )
        };
        assert!(
            k > 0,
            "copy_file_range: {}",
            std::io::Error::last_os_error()
        );
        left -= k as u64;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mut method, mut threads, mut buf, mut depth) =
        ("rw".to_string(), 1usize, 1usize << 20, 8usize);
    let (mut one_out, mut fsync, mut sfr, mut dst) =
        (false, "none".to_string(), false, String::new());
    let mut files = vec![];
    let mut i = 1;
    while i < args.len() {
        let next = || args.get(i + 1).cloned().expect("a value");
        match args[i].as_str() {
            "--method" => {
                method = next();
                i += 1
            }
            "--threads" => {
                threads = next().parse().expect("threads");
                i += 1
            }
            "--buf" => {
                buf = next().parse::<usize>().expect("KiB") << 10;
                i += 1
            }
            "--depth" => {
                depth = next().parse().expect("depth");
                i += 1
            }
            "--fsync" => {
                fsync = next();
                i += 1
            }
            "--dst" => {
                dst = next();
                i += 1
            }
            "--one-out" => one_out = true,
            "--sfr" => sfr = true,
            f => files.push(f.to_string()),
        }
        i += 1;
    }
    assert!(
        !dst.is_empty() && !files.is_empty(),
        "usage: see the top of src/main.rs"
    );
    let create = |name: String| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(format!("{dst}/{name}"))
            .expect("create output")
    };
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let mut single = one_out.then(|| create("out.tar".into()));
    let mut outs: Vec<File> = vec![];
    let mut total = 0u64;

    // par: hashing workers over mappings, copies on this thread.
    let (jobs, workers) = if method == "par" {
        let (tx, rx) = mpsc::channel::<String>();
        let rx = Arc::new(Mutex::new(rx));
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    let Ok(f) = rx.lock().expect("lock").recv() else {
                        break;
                    };
                    let file = File::open(&f).expect("open");
                    let len = file.metadata().expect("stat").len() as usize;
                    let m = Map::new(&file, len);
                    let mut h = Sha256::new();
                    for c in m.bytes().chunks(buf) {
                        h.update(c);
                    }
                    std::hint::black_box(h.finalize());
                })
            })
            .collect();
        for f in &files {
            tx.send(f.clone()).expect("send");
        }
        (Some(tx), hs)
    } else {
        (None, vec![])
    };
    drop(jobs);

    for (n, f) in files.iter().enumerate() {
        let src = File::open(f).expect("open input");
        let len = src.metadata().expect("stat").len();
        let mut out = single.take().unwrap_or_else(|| create(format!("b{n}")));
        match (method.as_str(), threads) {
            ("hash", _) => {
                let mut b = vec![0u8; buf];
                let (mut h, mut off) = (Sha256::new(), 0u64);
                while off < len {
                    let k = src.read_at(&mut b, off).expect("read");
                    h.update(&b[..k]);
                    off += k as u64;
                }
                std::hint::black_box(h.finalize());
            }
            ("copy", _) | ("par", _) => copy_range(&src, &out, len),
            ("rw", 1) => {
                let mut b = vec![0u8; buf];
                let (mut h, mut off) = (Sha256::new(), 0u64);
                while off < len {
                    let k = src.read_at(&mut b, off).expect("read");
                    h.update(&b[..k]);
                    out.write_all(&b[..k]).expect("write");
                    off += k as u64;
                }
                std::hint::black_box(h.finalize());
            }
            ("rw", _) => {
                let (to_hasher, chunks) = mpsc::sync_channel::<(Vec<u8>, usize)>(depth);
                let (to_reader, spare) = mpsc::channel::<Vec<u8>>();
                std::thread::scope(|s| {
                    let hasher = s.spawn(move || {
                        let mut h = Sha256::new();
                        for (b, k) in chunks {
                            h.update(&b[..k]);
                            let _ = to_reader.send(b);
                        }
                        h.finalize()
                    });
                    let mut off = 0u64;
                    while off < len {
                        let mut b = spare.try_recv().unwrap_or_else(|_| vec![0u8; buf]);
                        let k = src.read_at(&mut b, off).expect("read");
                        out.write_all(&b[..k]).expect("write");
                        off += k as u64;
                        to_hasher.send((b, k)).expect("send");
                    }
                    drop(to_hasher);
                    std::hint::black_box(hasher.join().expect("hasher"));
                });
            }
            (m, _) => panic!("unknown method {m}"),
        }
        total += len;
        if sfr {
            // SAFETY: starts asynchronous writeback of a file we own.
            unsafe { libc::sync_file_range(out.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
        if fsync == "each" {
            out.sync_all().expect("fsync");
        }
        if one_out {
            single = Some(out);
        } else {
            outs.push(out);
        }
    }
    for w in workers {
        w.join().expect("worker");
    }
    let copied = t0.elapsed().as_secs_f64();
    match fsync.as_str() {
        "batch" => outs.iter().for_each(|f| f.sync_all().expect("fsync")),
        "end" => single.iter().for_each(|f| f.sync_all().expect("fsync")),
        _ => {}
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{wall:.3} s wall ({copied:.3} s before the final fsyncs), cpu {:.3} s, {:.0} MiB/s",
        cpu_seconds() - c0,
        total as f64 / f64::from(1 << 20) / wall
    );
}
