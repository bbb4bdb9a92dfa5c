//! ocitar: move container images between an OCI image-layout store and portable tar archives, choosing
//! which platforms go in or come out.
//!
//! - [`engine`]: the Rust engine (`save`, `load`, the walker, the platform matcher, store and archive
//!   code). It never touches Python.
//! - `py` (feature `python`): the thin PyO3 bindings exported as `ocitar._ocitar`.

pub mod engine;

#[cfg(feature = "python")]
mod py;
