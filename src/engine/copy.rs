//! Verified copies between files, on every core.
//!
//! Save (store blobs into an archive file) and load (archive ranges into staging files) move blobs from
//! one regular file to another. Here each blob is copied by the kernel (`copy_file_range`: no user-space
//! copy, a reflink where the filesystem shares extents) in 8 MiB segments, and the bytes that landed in
//! the destination are read back and hashed: the digest is checked on exactly what was written. Copying
//! and hashing are tasks for a pool of worker threads, so while one worker hashes, another copies ahead
//! (at most [`LOOKAHEAD`] bytes copied and not yet hashed) or hashes other blobs, largest first. Hashing a
//! blob is sequential, so one blob costs at least its SHA-256 time; many blobs spread over every core
//! (measured in benches/README.md).
//!
//! Errors are deterministic: when blob `i` fails, blobs after it are abandoned and blobs before it are
//! finished, so the error reported is always that of the first failing blob in job order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::digest::{Digest, Hasher, Verified, COPY_BUFFER};
use super::error::{Error, Result};
use super::Progress;

/// One blob to copy: `size` bytes from `src` at `src_offset` to `dst` at `dst_offset`, which must then
/// hash to `digest`. `location` names the source and `dest` the destination in errors.
pub struct Job<'a> {
    /// The file the blob is read from.
    pub src: &'a File,
    /// Where the blob starts in `src`.
    pub src_offset: u64,
    /// The file the blob is written to (opened for reading too: what landed is read back and hashed).
    pub dst: &'a File,
    /// Where the blob goes in `dst`.
    pub dst_offset: u64,
    /// Bytes to copy.
    pub size: u64,
    /// What the copied bytes must hash to.
    pub digest: &'a Digest,
    /// The source as errors name it (`archive.tar:blobs/sha256/…`, a store blob path).
    pub location: &'a str,
    /// The destination path as errors name it.
    pub dest: &'a Path,
}

/// Bytes copied per task.
const SEGMENT: u64 = 8 << 20;
/// At most this many bytes copied ahead of the hashing (they are still in the page cache when hashed).
const LOOKAHEAD: u64 = 128 << 20;
/// Below this many bytes in all, the copies run on the calling thread.
const INLINE_MAX: u64 = 8 << 20;
/// Writeback is started early (`sync_file_range`) only for files larger than this. A large blob's
/// segments then reach the disk while later ones are copied, instead of in one burst at the sync; a
/// small file's early writeback costs its own I/O and block allocation (ext4 allocates a file's blocks
/// when writeback starts), where one `syncfs` at the end writes thousands of small files together.
/// Measured on a fresh ext4 (benches/README.md, "Load of many small blobs"): 21,000 blobs of ~7 KiB
/// loaded in 2.27–2.49 s with writeback per file against 2.09–2.21 s without.
pub const WRITEBACK_MIN: u64 = SEGMENT;

/// Worker threads: `OCITAR_THREADS` when set to a positive number, else one per CPU (at most 16).
pub fn threads() -> usize {
    std::env::var("OCITAR_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(1)
        })
        .min(16)
}

/// Copy and verify every job, calling `progress.advance` with the bytes verified (from the calling
/// thread). With `writeback`, writeback of each copied segment of a blob larger than
/// [`WRITEBACK_MIN`] starts at once (`sync_file_range`), for destinations that are synced later.
/// Returns, in job order, what each destination was proven to hold: the [`Verified`] its bytes, read
/// back, hashed to.
///
/// # Errors
/// The first failing job's [`Error::DigestMismatch`], [`Error::SizeMismatch`] (a source shorter than
/// `size`) or [`Error::Io`]; [`Error::Cancelled`] (or the callback's error) when `progress` fails.
pub fn copy_verified_all(
    jobs: &[Job<'_>],
    writeback: bool,
    progress: &mut Progress,
) -> Result<Vec<Verified>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let total = jobs.iter().fold(0u64, |t, j| t.saturating_add(j.size));
    let pool = Pool::new(jobs, writeback);
    if total <= INLINE_MAX {
        pool.lock().running = 1;
        pool.work();
        progress
            .advance(total)
            .map_err(|e| Error::io("<progress>", e))?;
        return pool.result();
    }
    // Even one large blob gets two workers: one hashes while the other copies ahead.
    let segs = jobs
        .iter()
        .fold(0u64, |t, j| t.saturating_add(segments(j.size)));
    let workers = threads()
        .min(usize::try_from(segs).unwrap_or(usize::MAX))
        .max(1);
    let mut cancel: Option<Error> = None;
    pool.lock().running = workers;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| pool.work());
        }
        let mut reported = 0u64;
        loop {
            let (verified, running) = {
                let st = pool.lock();
                let st = if st.running == 0 {
                    st
                } else {
                    pool.changed
                        .wait_timeout(st, Duration::from_millis(50))
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g)
                };
                (st.verified, st.running)
            };
            let step = verified.saturating_sub(reported);
            reported = verified;
            if cancel.is_none() {
                if let Err(e) = progress.advance(step) {
                    cancel = Some(Error::io("<progress>", e));
                    pool.cancel();
                }
            }
            if running == 0 {
                break;
            }
        }
    });
    match cancel {
        Some(e) => Err(e),
        None => pool.result(),
    }
}

struct Blob {
    segments: u64,
    copied: Vec<bool>,
    /// Segments copied without a gap from the start.
    copied_prefix: u64,
    hashed: u64,
    /// Taken by the worker hashing the blob.
    hasher: Option<Box<Hasher>>,
    done: bool,
}

struct State {
    blobs: Vec<Blob>,
    /// Blobs in the order they are copied and hashed: largest first.
    order: Vec<usize>,
    /// The next copy: position in `order`, and segment.
    next: (usize, u64),
    /// Bytes copied and not yet hashed.
    ahead: u64,
    /// Jobs from this index on are abandoned (the first failure).
    limit: usize,
    error: Option<Error>,
    verified: u64,
    /// What each blob's bytes proved, once hashed and checked.
    proofs: Vec<Option<Verified>>,
    /// Workers still running.
    running: usize,
}

/// Segments `[from, to)` of blob `blob` to hash, with the blob's hasher.
struct Part {
    blob: usize,
    from: u64,
    to: u64,
    hasher: Box<Hasher>,
}

/// A part being hashed: its byte range in the destination, how far it got, and its read error.
struct Reading<'j, 'a> {
    job: Option<&'j Job<'a>>,
    part: Part,
    start: u64,
    end: u64,
    pos: u64,
    error: Option<Error>,
}

impl<'j, 'a> Reading<'j, 'a> {
    fn new(jobs: &'j [Job<'a>], part: Part) -> Reading<'j, 'a> {
        let job = jobs.get(part.blob);
        let size = job.map_or(0, |j| j.size);
        let (start, end) = (range(size, part.from).0, range(size, part.to).0);
        Reading {
            job,
            part,
            start,
            end,
            pos: start,
            error: None,
        }
    }

    /// Read the next chunk into `buf`: its length, or `None` once the range is done or a read failed.
    fn next(&mut self, buf: &mut [u8], cancelled: &AtomicBool) -> Option<usize> {
        if self.error.is_some() || self.pos >= self.end {
            return None;
        }
        match read_chunk(self.job?, self.pos, self.end, buf, cancelled) {
            Ok(n) => {
                self.pos = self.pos.saturating_add(n as u64);
                Some(n)
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

enum Task {
    Copy(usize, u64),
    Hash(Part),
}

struct Pool<'a> {
    jobs: &'a [Job<'a>],
    writeback: bool,
    state: Mutex<State>,
    changed: Condvar,
    cancelled: AtomicBool,
}

/// Jobs largest first: the longest hashes start first.
fn order(jobs: &[Job<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs.get(i).map_or(0, |j| j.size)));
    order
}

fn segments(size: u64) -> u64 {
    size.div_ceil(SEGMENT)
}

/// The byte range `[start, end)` of segment `seg` of a blob of `size` bytes.
fn range(size: u64, seg: u64) -> (u64, u64) {
    let start = seg.saturating_mul(SEGMENT).min(size);
    (start, start.saturating_add(SEGMENT).min(size))
}

impl<'a> Pool<'a> {
    fn new(jobs: &'a [Job<'a>], writeback: bool) -> Pool<'a> {
        let blobs = jobs
            .iter()
            .map(|j| {
                let n = segments(j.size);
                Blob {
                    segments: n,
                    copied: vec![false; usize::try_from(n).unwrap_or(0)],
                    copied_prefix: 0,
                    hashed: 0,
                    hasher: Some(Box::new(j.digest.algorithm().hasher())),
                    done: false,
                }
            })
            .collect();
        Pool {
            jobs,
            writeback,
            state: Mutex::new(State {
                blobs,
                order: order(jobs),
                next: (0, 0),
                ahead: 0,
                limit: jobs.len(),
                error: None,
                verified: 0,
                proofs: vec![None; jobs.len()],
                running: 0,
            }),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked left consistent state (every update is made under one lock).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    fn result(&self) -> Result<Vec<Verified>> {
        let mut st = self.lock();
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        std::mem::take(&mut st.proofs)
            .into_iter()
            .zip(self.jobs)
            .map(|(v, j)| {
                v.ok_or_else(|| {
                    Error::io(
                        j.dest,
                        io::Error::other("copy ended before the blob was hashed"),
                    )
                })
            })
            .collect()
    }

    /// A worker: take tasks until every job before the first failure is done, or the pool is cancelled.
    /// The caller counts the worker in (`State::running`) before starting it.
    fn work(&self) {
        // Counted out even if a task panics, so the calling thread never waits for a dead worker.
        let _out = Leave(self);
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let task = {
                let mut st = self.lock();
                loop {
                    if self.cancelled.load(Ordering::SeqCst) || finished(&st) {
                        return;
                    }
                    if let Some(t) = next_task(&mut st) {
                        break t;
                    }
                    st = self
                        .changed
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            match task {
                Task::Copy(i, seg) => self.copy(i, seg, &mut buf),
                Task::Hash(part) => self.hash(part, &mut buf),
            }
            self.changed.notify_all();
        }
    }

    fn fail(&self, st: &mut State, i: usize, e: Error) {
        if i < st.limit {
            st.limit = i;
            st.error = Some(e);
        }
        if let Some(b) = st.blobs.get_mut(i) {
            b.done = true;
        }
    }

    fn copy(&self, i: usize, seg: u64, buf: &mut [u8]) {
        let Some(job) = self.jobs.get(i) else { return };
        let (start, end) = range(job.size, seg);
        let result = copy_range(job, start, end, buf);
        if result.is_ok() && self.writeback && job.size > WRITEBACK_MIN {
            // SAFETY: sync_file_range on a descriptor borrowed for the call; it only starts writeback.
            unsafe {
                libc::sync_file_range(
                    job.dst.as_raw_fd(),
                    i64::try_from(job.dst_offset.saturating_add(start)).unwrap_or(0),
                    i64::try_from(end - start).unwrap_or(0),
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
        }
        let mut st = self.lock();
        match result {
            Ok(()) => {
                st.ahead = st.ahead.saturating_add(end - start);
                if let Some(b) = st.blobs.get_mut(i) {
                    if let Some(c) = b.copied.get_mut(usize::try_from(seg).unwrap_or(usize::MAX)) {
                        *c = true;
                    }
                    while b
                        .copied
                        .get(usize::try_from(b.copied_prefix).unwrap_or(usize::MAX))
                        .copied()
                        .unwrap_or(false)
                    {
                        b.copied_prefix += 1;
                    }
                }
            }
            Err(e) => self.fail(&mut st, i, e),
        }
    }

    /// Hash one part.
    fn hash(&self, part: Part, buf: &mut [u8]) {
        let mut r = Reading::new(self.jobs, part);
        while let Some(n) = r.next(buf, &self.cancelled) {
            r.part.hasher.update(buf.get(..n).unwrap_or_default());
        }
        let mut st = self.lock();
        st.ahead = st.ahead.saturating_sub(r.end - r.start);
        match r.error {
            None => self.hashed(&mut st, r.part, r.end - r.start),
            Some(e) => self.fail(&mut st, r.part.blob, e),
        }
    }

    /// Record that `part` was hashed (`bytes` of it); check the digest when it was the blob's last.
    fn hashed(&self, st: &mut State, part: Part, bytes: u64) {
        let Some(job) = self.jobs.get(part.blob) else {
            return;
        };
        st.verified = st.verified.saturating_add(bytes);
        let Some(b) = st.blobs.get_mut(part.blob) else {
            return;
        };
        b.hashed = part.to;
        if part.to < b.segments {
            b.hasher = Some(part.hasher);
            return;
        }
        b.done = true;
        match part.hasher.verify(job.digest, job.size, job.location) {
            Ok(v) => {
                if let Some(p) = st.proofs.get_mut(part.blob) {
                    *p = Some(v);
                }
            }
            Err(e) => self.fail(st, part.blob, e),
        }
    }
}

struct Leave<'p, 'a>(&'p Pool<'a>);

impl Drop for Leave<'_, '_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.changed.notify_all();
    }
}

/// Every job before the first failure is done.
fn finished(st: &State) -> bool {
    st.blobs.iter().take(st.limit).all(|b| b.done)
}

/// Hashing first (it is the slower half), then copying ahead within [`LOOKAHEAD`].
fn next_task(st: &mut State) -> Option<Task> {
    if let Some(t) = hash_task(st) {
        return Some(t);
    }
    if st.ahead < LOOKAHEAD {
        return copy_task(st);
    }
    None
}

/// Whether blob `i` has bytes to hash now (its hasher is free).
fn hashable(st: &State, i: usize) -> bool {
    st.blobs.get(i).is_some_and(|b| {
        i < st.limit
            && !b.done
            && b.hasher.is_some()
            && (b.segments == 0 || b.hashed < b.copied_prefix)
    })
}

/// The first blob, in order, with bytes to hash.
fn hash_task(st: &mut State) -> Option<Task> {
    let i = st.order.iter().copied().find(|&i| hashable(st, i))?;
    let b = st.blobs.get_mut(i)?;
    Some(Task::Hash(Part {
        blob: i,
        from: b.hashed,
        to: b.copied_prefix,
        hasher: b.hasher.take()?,
    }))
}

/// The next segment to copy: blob after blob, in order.
fn copy_task(st: &mut State) -> Option<Task> {
    loop {
        let (k, seg) = st.next;
        let &i = st.order.get(k)?;
        if i >= st.limit || seg >= st.blobs.get(i).map_or(0, |b| b.segments) {
            st.next = (k + 1, 0);
            continue;
        }
        st.next = (k, seg + 1);
        return Some(Task::Copy(i, seg));
    }
}

/// Copy `[start, end)` of the job's blob by `copy_file_range`, or by `pread`/`pwrite` where the kernel
/// cannot (across filesystems, special files).
fn copy_range(job: &Job<'_>, start: u64, end: u64, buf: &mut [u8]) -> Result<()> {
    let io_err = |e: io::Error| Error::io(job.dest, e);
    let short = |at: u64| Error::SizeMismatch {
        digest: job.digest.to_string(),
        location: job.location.to_string(),
        expected: job.size,
        found: at.to_string(),
    };
    let mut pos = start;
    let mut kernel = true;
    while pos < end {
        let left = end - pos;
        if kernel {
            let mut off_in =
                i64::try_from(job.src_offset.saturating_add(pos)).map_err(|_| short(pos))?;
            let mut off_out =
                i64::try_from(job.dst_offset.saturating_add(pos)).map_err(|_| short(pos))?;
            let want = usize::try_from(left).unwrap_or(usize::MAX);
            // SAFETY: both descriptors are open for the call; the offsets are plain integers the kernel
            // updates; no user memory is passed.
            let n = unsafe {
                libc::copy_file_range(
                    job.src.as_raw_fd(),
                    &mut off_in,
                    job.dst.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n > 0 {
                pos = pos.saturating_add(u64::try_from(n).unwrap_or(0));
                continue;
            }
            if n == 0 {
                return Err(short(pos));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(
                    libc::EXDEV
                    | libc::EINVAL
                    | libc::ENOSYS
                    | libc::EOPNOTSUPP
                    | libc::EBADF
                    | libc::EPERM
                    | libc::ETXTBSY,
                ) => kernel = false,
                _ => return Err(io_err(e)),
            }
            continue;
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = match job.src.read_at(chunk, job.src_offset.saturating_add(pos)) {
            Ok(0) => return Err(short(pos)),
            Ok(n) => n.min(want),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(job.location, e)),
        };
        job.dst
            .write_all_at(
                chunk.get(..n).unwrap_or_default(),
                job.dst_offset.saturating_add(pos),
            )
            .map_err(io_err)?;
        pos = pos.saturating_add(n as u64);
    }
    Ok(())
}

/// Read the next chunk of `[pos, end)` of the job's blob as written in the destination: at most
/// `buf.len()` bytes, at least one.
fn read_chunk(
    job: &Job<'_>,
    pos: u64,
    end: u64,
    buf: &mut [u8],
    cancelled: &AtomicBool,
) -> Result<usize> {
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let want = usize::try_from(end.saturating_sub(pos))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        return match job.dst.read_at(chunk, job.dst_offset.saturating_add(pos)) {
            Ok(0) => Err(Error::io(
                job.dest,
                io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than written"),
            )),
            Ok(n) => Ok(n.min(want)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(Error::io(job.dest, e)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn temp(name: &str, bytes: &[u8]) -> (std::path::PathBuf, File) {
        let p = std::env::temp_dir().join(format!("ocitar-copy-{}-{name}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.write_all(bytes).unwrap();
        (p, f)
    }

    #[test]
    fn segments_cover_the_blob() {
        assert_eq!(segments(0), 0);
        assert_eq!(segments(1), 1);
        assert_eq!(segments(SEGMENT), 1);
        assert_eq!(segments(SEGMENT + 1), 2);
        assert_eq!(range(SEGMENT + 5, 1), (SEGMENT, SEGMENT + 5));
        assert_eq!(range(10, 3), (10, 10));
    }

    #[test]
    fn blobs_are_copied_largest_first_hashed_as_copied_and_copying_stays_within_the_lookahead() {
        let mut st = State {
            blobs: (0..3)
                .map(|_| Blob {
                    segments: 20,
                    copied: vec![false; 20],
                    copied_prefix: 0,
                    hashed: 0,
                    hasher: Some(Box::new(crate::engine::digest::Algorithm::Sha256.hasher())),
                    done: false,
                })
                .collect(),
            order: vec![1, 0, 2],
            next: (0, 0),
            ahead: 0,
            limit: 3,
            error: None,
            verified: 0,
            proofs: vec![None; 3],
            running: 0,
        };
        assert!(matches!(next_task(&mut st), Some(Task::Copy(1, 0))));
        assert!(matches!(next_task(&mut st), Some(Task::Copy(1, 1))));
        st.blobs[1].copied_prefix = 2;
        assert!(matches!(
            next_task(&mut st),
            Some(Task::Hash(Part {
                blob: 1,
                from: 0,
                to: 2,
                ..
            }))
        ));
        // The blob is being hashed (its hasher is out); nothing else to hash: copy on.
        assert!(matches!(next_task(&mut st), Some(Task::Copy(1, 2))));
        st.next = (0, 20);
        assert!(matches!(next_task(&mut st), Some(Task::Copy(0, 0))));
        st.ahead = LOOKAHEAD;
        assert!(next_task(&mut st).is_none());
        st.ahead = 0;
        st.limit = 0;
        assert!(
            next_task(&mut st).is_none(),
            "nothing after the first failure"
        );
    }

    #[test]
    fn largest_blobs_first() {
        let f = crate::engine::fs::open("/dev/null").unwrap();
        let d = Digest::sha256_of(b"");
        let p = std::path::Path::new("x");
        let job = |size| Job {
            src: &f,
            src_offset: 0,
            dst: &f,
            dst_offset: 0,
            size,
            digest: &d,
            location: "x",
            dest: p,
        };
        let jobs = [job(5), job(100), job(7), job(90), job(1)];
        assert_eq!(order(&jobs), [1, 3, 2, 0, 4]);
    }

    #[test]
    fn copies_and_reports_the_first_bad_blob() {
        let data: Vec<u8> = (0..2 * SEGMENT + 77).map(|i| (i % 251) as u8).collect();
        let (sp, src) = temp("src", &data);
        let (dp, dst) = temp("dst", b"");
        let good = Digest::sha256_of(&data);
        let bad = Digest::sha256_of(b"other");
        let job = |digest: &'static Digest, dst_offset: u64| Job {
            src: &src,
            src_offset: 0,
            dst: &dst,
            dst_offset,
            size: data.len() as u64,
            digest,
            location: "src",
            dest: &dp,
        };
        let good: &'static Digest = Box::leak(Box::new(good));
        let bad: &'static Digest = Box::leak(Box::new(bad));
        let n = data.len() as u64;
        let jobs = [job(good, 0), job(bad, n), job(good, 2 * n), job(bad, 3 * n)];
        let e = copy_verified_all(&jobs, false, &mut Progress::none()).unwrap_err();
        assert!(e.to_string().contains(&bad.to_string()), "{e}");
        dst.set_len(0).unwrap();
        let jobs = [job(good, 0), job(good, n)];
        let proofs = copy_verified_all(&jobs, true, &mut Progress::none()).unwrap();
        let proven: Vec<(&Digest, u64)> = proofs.iter().map(|v| (v.digest(), v.size())).collect();
        assert_eq!(proven, [(good, n), (good, n)]);
        assert_eq!(
            crate::engine::fs::read(&dp).unwrap(),
            [data.as_slice(), data.as_slice()].concat()
        );
        // A source shorter than the job says.
        let short = Job {
            size: n + 1,
            ..job(good, 0)
        };
        let e = copy_verified_all(&[short], false, &mut Progress::none()).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
        crate::engine::fs::remove_file(sp).unwrap();
        crate::engine::fs::remove_file(dp).unwrap();
    }
}
