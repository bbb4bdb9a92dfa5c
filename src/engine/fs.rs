//! Filesystem calls whose every error names its path ([`Error::Io`]), and whose "absent" answers are
//! told apart from errors: `…_if_exists` is `None` only for `NotFound`, so a permission error or a file
//! where a directory should be is never read as "not there". `clippy.toml` forbids the `std::fs` and
//! `Path` calls wrapped here everywhere else.
#![allow(clippy::disallowed_methods)]

use std::fs::{File, Metadata, ReadDir};
use std::io::ErrorKind;
use std::path::Path;

use super::error::{Error, IoContext, Result};

/// Open `path` for reading.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn open(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    File::open(path).at(path)
}

/// Open `path` for reading; `None` when nothing is there.
///
/// # Errors
/// [`Error::Io`] naming `path` for anything but `NotFound`.
pub fn open_if_exists(path: impl AsRef<Path>) -> Result<Option<File>> {
    let path = path.as_ref();
    absent_is_none(File::open(path), path)
}

/// `path`'s metadata, links not followed.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn symlink_metadata(path: impl AsRef<Path>) -> Result<Metadata> {
    let path = path.as_ref();
    std::fs::symlink_metadata(path).at(path)
}

/// `path`'s metadata, links not followed; `None` when nothing is there.
///
/// # Errors
/// [`Error::Io`] naming `path` for anything but `NotFound`.
pub fn symlink_metadata_if_exists(path: impl AsRef<Path>) -> Result<Option<Metadata>> {
    let path = path.as_ref();
    absent_is_none(std::fs::symlink_metadata(path), path)
}

/// `path`'s metadata, links followed.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn metadata(path: impl AsRef<Path>) -> Result<Metadata> {
    let path = path.as_ref();
    std::fs::metadata(path).at(path)
}

/// `path`'s metadata, links followed; `None` when nothing is there.
///
/// # Errors
/// [`Error::Io`] naming `path` for anything but `NotFound`.
pub fn metadata_if_exists(path: impl AsRef<Path>) -> Result<Option<Metadata>> {
    let path = path.as_ref();
    absent_is_none(std::fs::metadata(path), path)
}

/// Whether something is at `path` (links followed).
///
/// # Errors
/// [`Error::Io`] naming `path` when it cannot be told (a permission error, a file where a directory
/// should be on the way).
pub fn exists(path: impl AsRef<Path>) -> Result<bool> {
    Ok(metadata_if_exists(path)?.is_some())
}

/// The entries of directory `path`.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn read_dir(path: impl AsRef<Path>) -> Result<ReadDir> {
    let path = path.as_ref();
    std::fs::read_dir(path).at(path)
}

/// The entries of directory `path`; `None` when it does not exist.
///
/// # Errors
/// [`Error::Io`] naming `path` for anything but `NotFound`.
pub fn read_dir_if_exists(path: impl AsRef<Path>) -> Result<Option<ReadDir>> {
    let path = path.as_ref();
    absent_is_none(std::fs::read_dir(path), path)
}

/// The whole content of `path`.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn read(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    std::fs::read(path).at(path)
}

/// The whole content of `path`; `None` when it does not exist.
///
/// # Errors
/// [`Error::Io`] naming `path` for anything but `NotFound`.
pub fn read_if_exists(path: impl AsRef<Path>) -> Result<Option<Vec<u8>>> {
    let path = path.as_ref();
    absent_is_none(std::fs::read(path), path)
}

/// Create directory `path`: `true` when made, `false` when something was there already.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn create_dir(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Create directory `path` and its missing parents.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn create_dir_all(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::create_dir_all(path).at(path)
}

/// Rename `from` to `to` (replacing a file there).
///
/// # Errors
/// [`Error::Io`] naming `to`.
pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
    let to = to.as_ref();
    std::fs::rename(from, to).at(to)
}

/// Remove file `path`.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn remove_file(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::remove_file(path).at(path)
}

/// Remove empty directory `path`.
///
/// # Errors
/// [`Error::Io`] naming `path` (a directory that is not empty too).
pub fn remove_dir(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::remove_dir(path).at(path)
}

/// Remove directory `path` and everything in it.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn remove_dir_all(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::remove_dir_all(path).at(path)
}

/// `path` made absolute with links resolved.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn canonicalize(path: impl AsRef<Path>) -> Result<std::path::PathBuf> {
    let path = path.as_ref();
    std::fs::canonicalize(path).at(path)
}

fn absent_is_none<T>(r: std::io::Result<T>, path: &Path) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_none_but_a_file_in_the_way_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            symlink_metadata_if_exists(dir.path().join("none")),
            Ok(None)
        ));
        let under = file.join("blob");
        match symlink_metadata_if_exists(&under) {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, under);
                assert_eq!(source.kind(), ErrorKind::NotADirectory);
            }
            other => panic!("{other:?}"),
        }
        assert!(exists(&under).is_err());
        assert!(matches!(read_dir_if_exists(&file), Err(Error::Io { .. })));
    }
}
