//! gzip on every core, one gzip member. The stream is cut into [`PIECE`]-byte pieces at fixed offsets;
//! workers deflate each piece as raw deflate primed with the 32 KiB before it (as pigz does), ending it with
//! a sync flush (byte-aligned) and the last one with the final block; the writer puts them after one gzip
//! header, in order, followed by the CRC-32 and length of the whole. The result is an ordinary
//! single-member gzip stream (Python's `tarfile` in stream mode `r|gz`, for one, does not read
//! concatenated members), the same bytes whatever the number of workers, and within a fraction of a
//! percent of one deflate stream's size.
//!
//! The `gzp` crate's `ParCompress<Gzip>` does the same (the same bytes, at the same speed) and was tried in
//! its place; it stays out because it needs C zlib to build with flate2's zlib-rs, a `Send + 'static`
//! output, and panics on error paths (benches/README.md).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per piece.
pub const PIECE: usize = 1 << 20;
/// The deflate window: each piece is primed with this much of the stream before it.
const WINDOW: usize = 32 << 10;

/// A piece to deflate: the dictionary (the end of the previous piece), the piece, whether it is the
/// last, and where the result goes.
type Job = (Vec<u8>, Vec<u8>, bool, Sender<io::Result<Vec<u8>>>);

/// A `Write` that gzips what it is given on a pool of threads (see the module documentation).
pub struct ParallelGzip<W: Write> {
    /// Taken by [`ParallelGzip::finish`].
    out: Option<W>,
    piece: Vec<u8>,
    /// The last [`WINDOW`] bytes of the previous piece.
    window: Vec<u8>,
    crc: flate2::Crc,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    header_written: bool,
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
                    let Ok((dictionary, piece, last, reply)) = job else {
                        return;
                    };
                    // The writer may be gone (an error): then the result is dropped.
                    let _ = reply.send(deflate(&dictionary, &piece, last, level));
                })
            })
            .collect();
        ParallelGzip {
            out: Some(out),
            piece: Vec::with_capacity(PIECE),
            window: Vec::new(),
            crc: flate2::Crc::new(),
            in_flight: VecDeque::new(),
            jobs: Some(tx),
            workers,
            header_written: false,
        }
    }

    /// Pieces compressed or being compressed at most: two per worker keeps every worker busy.
    fn max_in_flight(&self) -> usize {
        2 * self.workers.len().max(1)
    }

    fn send_piece(&mut self, last: bool) -> io::Result<()> {
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
        let keep = piece.len().min(WINDOW);
        let next_window = piece
            .get(piece.len() - keep..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let dictionary = std::mem::replace(&mut self.window, next_window);
        let (reply, result) = mpsc::channel();
        match &self.jobs {
            Some(tx) if tx.send((dictionary, piece, last, reply)).is_ok() => {}
            _ => return Err(io::Error::other("gzip workers stopped")),
        }
        self.in_flight.push_back(result);
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
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        if !self.header_written {
            // mtime 0, no name, XFL 0, OS 255 (unknown). flate2's GzBuilder writes the same at levels 2-8;
            // at 9 or 0-1 it sets XFL to 2 or 4, a hint readers ignore.
            out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            self.header_written = true;
        }
        out.write_all(&bytes)
    }

    /// Compress what is left, write every compressed piece in order and the member's CRC-32 and length,
    /// and return the inner writer.
    ///
    /// # Errors
    /// The inner writer's errors.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_piece(true)?;
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.stop();
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        out.write_all(&self.crc.sum().to_le_bytes())?;
        out.write_all(&self.crc.amount().to_le_bytes())?;
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
        let room = PIECE - self.piece.len();
        let taken = buf.get(..buf.len().min(room)).unwrap_or_default();
        self.piece.extend_from_slice(taken);
        self.crc.update(taken);
        if self.piece.len() == PIECE {
            self.send_piece(false)?;
        }
        Ok(taken.len())
    }

    /// Pieces are written when complete; a flush does not cut one short (that would make the output
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

/// Raw deflate of `piece`, primed with `dictionary`: ending with a sync flush (an empty stored block, so
/// the next piece starts on a byte boundary), or, for the last piece, with the final block.
fn deflate(dictionary: &[u8], piece: &[u8], last: bool, level: u32) -> io::Result<Vec<u8>> {
    let mut z = flate2::Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() {
        z.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let flush = if last {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(piece.len() + piece.len() / 64 + 64);
    loop {
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
        let status = z
            .compress_vec(piece.get(consumed..).unwrap_or_default(), &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(z.total_in()).unwrap_or(usize::MAX) >= piece.len();
        let done = if last {
            status == flate2::Status::StreamEnd
        } else {
            // A sync flush is complete when it returned with room left in the output.
            all_in && out.len() < out.capacity()
        };
        if done {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
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
    fn one_member_that_does_not_depend_on_threads_or_writes() {
        let data: Vec<u8> = (0..(3 * PIECE + 12345))
            .map(|i| (i / 7 % 251) as u8)
            .collect();
        let one = gz(&data, 1, 4096);
        assert_eq!(gz(&data, 4, 1 << 20), one);
        assert_eq!(gz(&data, 2, PIECE), one);
        assert_eq!(gz(&data, 3, 333), one);
        // A single-member decoder reads it all.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(one.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(&one[4..8], &[0, 0, 0, 0], "mtime 0");
        // Close to one deflate stream of the whole (this data compresses 100:1, so the few bytes each
        // piece adds weigh more than on real archives).
        let mut whole = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        whole.write_all(&data).unwrap();
        let whole = whole.finish().unwrap();
        assert!(
            one.len() * 50 <= whole.len() * 51,
            "{} vs {}",
            one.len(),
            whole.len()
        );
    }

    #[test]
    fn empty_input_is_an_empty_gzip_stream() {
        let out = gz(b"", 2, 1);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert!(out.starts_with(&[0x1f, 0x8b]));
    }
}
