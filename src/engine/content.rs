//! The seam between the operations and the kinds of store: a [`Source`] resolves references to
//! top-level descriptors, gives the walker its documents and opens blobs; save, the walker, the platform
//! matcher and the archive writer see nothing else, so they read a store directory and a registry alike.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::copy;
use super::digest::Digest;
use super::error::{Error, Result};
use super::reference::Reference;
use super::store::{Entries, Store};
use super::walk::{BlobSource, Descriptor};
use super::Progress;

/// Which part of a source an image was read from (a registry's repository); `0` for a store directory.
pub type Origin = usize;

/// Where images are read from: a store directory or a registry.
pub trait Source: Sync {
    /// The reference `typed` names, as resolved (its full name), its top-level descriptor, and the origin
    /// its content is read from.
    ///
    /// # Errors
    /// [`Error::InvalidReference`], [`Error::ImageNotFound`], [`Error::AmbiguousReference`]; a
    /// registry's errors.
    fn resolve(&self, typed: &str) -> Result<(Reference, Descriptor, Origin)>;

    /// The walker's view of `origin`.
    fn blobs(&self, origin: Origin) -> &dyn BlobSource;

    /// A reader of the blob `desc` names (not verified: the caller hashes what it copies).
    ///
    /// # Errors
    /// A missing blob, a size that differs from `desc`'s, a registry error.
    fn open(&self, origin: Origin, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;

    /// Where a blob is read from, in messages.
    fn location(&self, origin: Origin, digest: &Digest) -> String;

    /// Copy every `(origin, blob, offset)` into `file` at its offset, each verified (digest and size).
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] / [`Error::SizeMismatch`], read and write errors ([`Error::Io`] naming
    /// `dest`), a registry's errors.
    fn copy_into(
        &self,
        blobs: &[(Origin, &Descriptor, u64)],
        file: &File,
        dest: &Path,
        progress: &mut Progress,
    ) -> Result<()>;

    /// The error for an image that lacks what a selection requires (`reason` says what).
    fn invalid(&self, reason: String) -> Error;

    /// The directory this source reads, when it is a local store (an output must not land inside it).
    fn directory(&self) -> Option<&Path> {
        None
    }
}

/// Store blobs opened at once by [`StoreSource::copy_into`] (each is an open file until its batch is
/// copied).
const OPEN_BLOBS: usize = 128;

/// A store directory as a [`Source`]: its `index.json` read once, entry by entry ([`Entries`]).
pub struct StoreSource {
    /// The store directory.
    pub store: Store,
    index: Entries,
}

impl StoreSource {
    /// Open the store at `path` and read its `index.json`.
    ///
    /// # Errors
    /// As [`Store::open`] and [`Store::read_entries`].
    pub fn open(path: &Path) -> Result<StoreSource> {
        let store = Store::open(path)?;
        let index = store.read_entries()?;
        Ok(StoreSource { store, index })
    }
}

impl Source for StoreSource {
    fn resolve(&self, typed: &str) -> Result<(Reference, Descriptor, Origin)> {
        let (r, d) = self.store.resolve(&self.index, typed)?;
        Ok((r, d, 0))
    }

    fn blobs(&self, _origin: Origin) -> &dyn BlobSource {
        &self.store
    }

    fn open(&self, _origin: Origin, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.store.open_blob(desc)?))
    }

    fn location(&self, _origin: Origin, digest: &Digest) -> String {
        self.store.blob_path(digest).display().to_string()
    }

    fn directory(&self) -> Option<&Path> {
        Some(self.store.root())
    }

    /// Kernel copies on every core, hashed as written ([`copy::copy_verified_all`]).
    fn copy_into(
        &self,
        blobs: &[(Origin, &Descriptor, u64)],
        file: &File,
        dest: &Path,
        progress: &mut Progress,
    ) -> Result<()> {
        for batch in blobs.chunks(OPEN_BLOBS) {
            let mut opened = Vec::with_capacity(batch.len());
            for (_, desc, offset) in batch {
                let f = self.store.open_blob(desc)?;
                let loc = self.location(0, &desc.digest);
                opened.push((f, loc, *desc, *offset));
            }
            let jobs: Vec<copy::Job<'_>> = opened
                .iter()
                .map(|(f, loc, desc, offset)| copy::Job {
                    src: f,
                    src_offset: 0,
                    dst: file,
                    dst_offset: *offset,
                    size: desc.size,
                    digest: &desc.digest,
                    location: loc,
                    dest,
                })
                .collect();
            copy::copy_verified_all(&jobs, false, progress)?;
        }
        Ok(())
    }

    fn invalid(&self, reason: String) -> Error {
        Error::store(self.store.root(), reason)
    }
}
