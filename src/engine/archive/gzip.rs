//! gzip on every core: the stream is cut into [`MEMBER`]-byte pieces, each compressed as its own gzip
//! member by a pool of workers and written in order. A gzip file may hold several members one after the
//! other (RFC 1952 §2.2); `gzip -d`, Python's `gzip`, Go's `compress/gzip` (docker, containerd, skopeo)
//! and ocitar's own reader all read them as one stream. The pieces are cut at fixed offsets of the
//! uncompressed stream and every member header is the same (mtime 0, no name), so the output is the same
//! bytes whatever the number of workers.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per gzip member. Each member restarts the deflate window, which costs a few hundred
/// bytes per MiB on compressible data and nothing on compressed layers.
pub const MEMBER: usize = 1 << 20;

type Job = (Vec<u8>, Sender<io::Result<Vec<u8>>>);

/// A `Write` that gzips what it is given on a pool of threads (see the module documentation).
pub struct ParallelGzip<W: Write> {
    /// Taken by [`ParallelGzip::finish`].
    out: Option<W>,
    piece: Vec<u8>,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    members: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// Compress at `level` (0–9) into `out` with `threads` workers.
    pub fn new(out: W, level: u32, threads: usize) -> ParallelGzip<W> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads.max(1))
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok((piece, reply)) = job else { return };
                    // The writer may be gone (an error): then the result is dropped.
                    let _ = reply.send(member(&piece, level));
                })
            })
            .collect();
        ParallelGzip {
            out: Some(out),
            piece: Vec::with_capacity(MEMBER),
            in_flight: VecDeque::new(),
            jobs: Some(tx),
            workers,
            members: 0,
        }
    }

    /// Pieces compressed or being compressed at most: two per worker keeps every worker busy.
    fn max_in_flight(&self) -> usize {
        2 * self.workers.len().max(1)
    }

    fn send_piece(&mut self) -> io::Result<()> {
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(MEMBER));
        let (reply, result) = mpsc::channel();
        match &self.jobs {
            Some(tx) if tx.send((piece, reply)).is_ok() => {}
            _ => return Err(io::Error::other("gzip workers stopped")),
        }
        self.in_flight.push_back(result);
        self.members += 1;
        while self.in_flight.len() >= self.max_in_flight() {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(result) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let bytes = result
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        match self.out.as_mut() {
            Some(out) => out.write_all(&bytes),
            None => Err(io::Error::other("gzip stream already finished")),
        }
    }

    /// Compress what is left, write every member in order, and return the inner writer.
    ///
    /// # Errors
    /// The inner writer's errors.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.piece.is_empty() || self.members == 0 {
            self.send_piece()?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.stop();
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        out.flush()?;
        Ok(out)
    }

    fn stop(&mut self) {
        self.jobs = None;
        self.in_flight.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MEMBER - self.piece.len();
        let n = buf.len().min(room);
        self.piece
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        if self.piece.len() == MEMBER {
            self.send_piece()?;
        }
        Ok(n)
    }

    /// Members are written when complete; a flush does not cut one short (that would make the output
    /// depend on how it was written).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One gzip member holding `piece`: mtime 0, no file name.
fn member(piece: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new().write(
        Vec::with_capacity(piece.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(piece)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize, step: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6, threads);
        for c in data.chunks(step) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn members_decompress_to_the_input_and_do_not_depend_on_threads_or_writes() {
        let data: Vec<u8> = (0..(3 * MEMBER + 12345))
            .map(|i| (i / 7 % 251) as u8)
            .collect();
        let one = gz(&data, 1, 4096);
        assert_eq!(gz(&data, 4, 1 << 20), one);
        assert_eq!(gz(&data, 3, 333), one);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(one.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(&one[4..8], &[0, 0, 0, 0], "mtime 0");
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let out = gz(b"", 2, 1);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert!(out.starts_with(&[0x1f, 0x8b]));
    }
}
