//! The ocitar engine: plain Rust, no Python. `save` and `load` are the operations; `walk` and `platform`
//! are the one walker and the one platform matcher they share; `store` and `archive` hold the bytes.

// Every public item of the engine says what it is.
#![deny(missing_docs)]
// Input-derived data never panics the engine: no unwrap, expect, panicking index or panic outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod archive;
pub mod content;
pub mod copy;
pub mod digest;
pub mod document;
pub mod error;
pub mod fs;
pub mod inspect;
pub mod load;
pub mod oci;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod save;
pub mod sink;
pub mod store;
pub mod walk;

pub use error::{Error, Result};

use std::io;
use std::time::{Duration, Instant};

/// A progress callback: `(done_bytes, total_bytes)`; an `Err` cancels the operation.
pub type ProgressFn<'a> = dyn FnMut(u64, u64) -> io::Result<()> + 'a;

/// Reports bytes done to an optional callback, at most ten times a second and once at the end.
pub struct Progress<'a> {
    callback: Option<&'a mut ProgressFn<'a>>,
    total: u64,
    done: u64,
    last: Option<Instant>,
}

impl<'a> Progress<'a> {
    /// Progress reported to `callback`.
    pub fn new(callback: &'a mut ProgressFn<'a>) -> Progress<'a> {
        Progress {
            callback: Some(callback),
            total: 0,
            done: 0,
            last: None,
        }
    }

    /// No reporting.
    pub fn none() -> Progress<'a> {
        Progress {
            callback: None,
            total: 0,
            done: 0,
            last: None,
        }
    }

    /// Set the total and count from zero. Nothing is reported here (so nothing can fail): the first
    /// [`Progress::advance`] calls the callback.
    pub fn start(&mut self, total: u64) {
        self.total = total;
        self.done = 0;
    }

    /// Count `n` more bytes; call the callback if 0.1 s passed since the last call.
    ///
    /// # Errors
    /// The callback's error (a cancellation).
    pub fn advance(&mut self, n: u64) -> io::Result<()> {
        self.done = self.done.saturating_add(n);
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return Ok(());
        }
        self.last = Some(now);
        match self.callback.as_mut() {
            Some(cb) => cb(self.done.min(self.total), self.total),
            None => Ok(()),
        }
    }

    /// Report `done == total` once.
    ///
    /// # Errors
    /// [`Error::Cancelled`] (or the callback's error) when the callback fails.
    pub fn finish(&mut self) -> Result<()> {
        self.done = self.total;
        match self.callback.as_mut() {
            Some(cb) => cb(self.total, self.total).map_err(|e| Error::io("<progress>", e)),
            None => Ok(()),
        }
    }
}
