//! The other side of [`Source`](super::content::Source): where `load` writes. Load reads an archive,
//! finds its images, walks and selects each one, and checks one size per digest across them the same way
//! for every destination ([`super::load::run`]); a [`Sink`] only takes the selections, writes the blobs
//! they need, each as a [`Verified`](super::digest::Verified) value proves it, and makes names visible
//! last. Two implementations: a store directory ([`super::load::StoreSink`]: staged, then committed under
//! the store lock with `index.json` last) and a registry ([`super::registry::push::RegistrySink`]: blobs,
//! manifests and indexes by digest, tags last).

use super::archive::read::Spool;
use super::error::Result;
use super::load::{ArchiveSource, LoadReport, Selected};
use super::Progress;

/// A destination of `load`. Calls come in this order: [`Sink::spool`] while the archive is read,
/// [`Sink::add`] once per image (before any blob is written), [`Sink::write`], [`Sink::publish`]. A sink
/// that fails at any step leaves nothing visible that names what it wrote.
pub trait Sink {
    /// Where a stream's files are spooled while the archive is read (a store's staging directory, so
    /// that a verified blob is staged as it is; a temporary directory for a registry).
    fn spool(&mut self) -> &mut dyn Spool;

    /// Whether Docker layers, hashed to learn their digest, are copied into [`Sink::spool`] on the way
    /// (then they are staged from that copy, not read and hashed again).
    fn keeps_hashed_layers(&self) -> bool;

    /// Take one image's selection (its pruned tree, borrowed from the walk: a sink keeps what it needs,
    /// such as [`Selection::summary`](super::walk::Selection::summary), not the tree). Every image is
    /// added before anything is written, so a sink refuses here what it could not publish (a registry:
    /// an index that would list content it does not hold).
    ///
    /// # Errors
    /// What the sink refuses, naming the image.
    fn add(&mut self, image: Selected<'_>) -> Result<()>;

    /// Write every blob the added images need that the destination lacks, each only once its bytes are
    /// proven to be the blob their descriptor names.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`](super::error::Error::DigestMismatch) /
    /// [`Error::SizeMismatch`](super::error::Error::SizeMismatch), the destination's errors; the
    /// progress callback's error.
    fn write(&mut self, source: &ArchiveSource<'_>, progress: &mut Progress) -> Result<()>;

    /// Make the images visible (a store's `index.json`, a registry's tags), names last, and report.
    ///
    /// # Errors
    /// The destination's errors; what was added and can be taken back is removed again.
    fn publish(self) -> Result<LoadReport>
    where
        Self: Sized;
}
