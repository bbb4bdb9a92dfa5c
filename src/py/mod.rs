//! The Python bindings (`ocitar._ocitar`): turn arguments into owned Rust values, run the engine with the
//! GIL released, and turn results and errors back. No logic lives here.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};
use serde_json::Value;

use crate::engine::archive::read::{Input, SharedBytes};
use crate::engine::archive::Compression;
use crate::engine::content::{Source, StoreSource};
use crate::engine::error::Cancelled;
use crate::engine::registry::{self, auth::Credential, Registry, RegistrySource};
use crate::engine::save::{IndexShape, SaveOptions};
use crate::engine::{self, Error, Progress};

pyo3::import_exception!(ocitar.errors, InvalidPlatformError);
pyo3::import_exception!(ocitar.errors, ImageNotFoundError);
pyo3::import_exception!(ocitar.errors, PlatformNotFoundError);
pyo3::import_exception!(ocitar.errors, DigestMismatchError);
pyo3::import_exception!(ocitar.errors, InvalidArchiveError);
pyo3::import_exception!(ocitar.errors, StoreError);
pyo3::import_exception!(ocitar.errors, RegistryError);
pyo3::import_exception!(ocitar.errors, AuthenticationError);

/// A Python exception raised inside a callback, kept until the engine has unwound.
type Pending = Arc<Mutex<Option<PyErr>>>;

/// Map an engine error to its Python exception, explicitly per variant, with the variant's values as the
/// exception's attributes (see `ocitar/errors.py` for their names).
fn to_pyerr(e: Error, pending: &Pending) -> PyErr {
    // A caller's file object or callback raised: that exception comes out, whatever the engine made of it.
    if let Some(err) = pending.lock().ok().and_then(|mut p| p.take()) {
        return err;
    }
    let msg = e.message();
    match e {
        Error::InvalidPlatform { spec, .. } => InvalidPlatformError::new_err((msg, spec)),
        Error::InvalidReference { reference, .. } => {
            ImageNotFoundError::new_err((msg, reference, Vec::<String>::new()))
        }
        Error::ImageNotFound {
            reference,
            candidates,
            ..
        } => ImageNotFoundError::new_err((msg, reference, candidates)),
        Error::AmbiguousReference { reference, matches } => {
            ImageNotFoundError::new_err((msg, reference, matches))
        }
        Error::PlatformNotFound {
            image,
            missing,
            available,
        } => PlatformNotFoundError::new_err((msg, image, missing, available)),
        Error::DigestMismatch {
            digest,
            location,
            found,
        } => DigestMismatchError::new_err((msg, digest, location, None::<u64>, None::<u64>, found)),
        Error::SizeMismatch {
            digest,
            location,
            expected,
            found,
        } => DigestMismatchError::new_err((
            msg,
            digest,
            location,
            expected,
            found.parse::<u64>().ok(),
            None::<String>,
        )),
        Error::InvalidArchive { entry, .. } => InvalidArchiveError::new_err((msg, entry)),
        Error::Store { path, .. } => StoreError::new_err((msg, path.display().to_string())),
        Error::Registry {
            status,
            code,
            url,
            moved,
            ..
        } => RegistryError::new_err((msg, status, code, url, moved)),
        Error::Authentication {
            status, code, url, ..
        } => AuthenticationError::new_err((msg, status, code, url, Vec::<String>::new())),
        Error::InvalidArgument(_) => PyValueError::new_err(msg),
        Error::Cancelled => match pending.lock().ok().and_then(|mut p| p.take()) {
            Some(err) => err,
            None => pyo3::exceptions::PyKeyboardInterrupt::new_err("cancelled"),
        },
        // An exception raised by the caller's file object comes out as itself (a BrokenPipeError stays one).
        Error::Io { source, .. } if source.get_ref().is_some_and(|e| e.is::<PyErr>()) => {
            match source.into_inner().map(|e| e.downcast::<PyErr>()) {
                Some(Ok(err)) => *err,
                _ => PyOSError::new_err("file object error"),
            }
        }
        Error::Io { path, source } => os_error(&path, &source),
    }
}

/// An `OSError` subclass by kind, as Python raises it: `[Errno N] text: 'path'`, the errno said once (the
/// `(os error N)` Rust appends is left out).
fn os_error(path: &std::path::Path, source: &io::Error) -> PyErr {
    let errno = source.raw_os_error().unwrap_or(0);
    let text = source.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text)
        .to_string();
    let args = (errno, text, path.display().to_string());
    match source.kind() {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(args),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err(args),
        _ => PyOSError::new_err(args),
    }
}

/// The progress callback the engine calls: checks for signals (Ctrl-C), then calls the user's callable;
/// any Python exception cancels the operation and is re-raised afterwards.
fn ticker(
    callback: Option<Py<PyAny>>,
    pending: Pending,
) -> impl FnMut(u64, u64) -> io::Result<()> + Send {
    move |done, total| {
        Python::attach(|py| {
            let r = py.check_signals().and_then(|()| match &callback {
                Some(cb) => cb.call1(py, (done, total)).map(|_| ()),
                None => Ok(()),
            });
            r.map_err(|err| {
                if let Ok(mut p) = pending.lock() {
                    *p = Some(err);
                }
                io::Error::new(io::ErrorKind::Interrupted, Cancelled)
            })
        })
    }
}

fn to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        Value::Number(n) => match n.as_u64() {
            Some(u) => u.into_pyobject(py)?.into_any().unbind(),
            None => n
                .as_f64()
                .unwrap_or(0.0)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(to_py(py, x)?)?;
            }
            l.into_any().unbind()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

fn report<T: serde::Serialize>(py: Python<'_>, r: &T) -> PyResult<Py<PyAny>> {
    let v = serde_json::to_value(r).map_err(|e| PyValueError::new_err(e.to_string()))?;
    to_py(py, &v)
}

/// Marker error carried inside an `io::Error` when a caller's `read()` or `write()` failed; the Python
/// exception itself waits in the operation's [`Pending`] and is raised in place of the engine's error.
#[derive(Debug)]
struct CallerFailed(&'static str);

impl std::fmt::Display for CallerFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the file object's {}() failed", self.0)
    }
}

impl std::error::Error for CallerFailed {}

/// Keep `err` (the first one wins) to be raised when the engine has unwound, and stop the engine.
fn fail(pending: &Pending, method: &'static str, err: PyErr) -> io::Error {
    if let Ok(mut p) = pending.lock() {
        p.get_or_insert(err);
    }
    io::Error::other(CallerFailed(method))
}

/// A Python binary file object as a `Write`r (the GIL is taken for each chunk). `write()` must return
/// the number of bytes it took, between 1 and the length given, or None (all of them).
struct PyWriter(Py<PyAny>, Pending);

impl Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let n = self.0.call_method1(py, "write", (PyBytes::new(py, buf),))?;
            let n = n.bind(py);
            if n.is_none() {
                return Ok(buf.len());
            }
            match n.extract::<usize>() {
                Ok(k) if (1..=buf.len()).contains(&k) || buf.is_empty() && k == 0 => Ok(k),
                _ => Err(PyValueError::new_err(format!(
                    "write() of {} bytes returned {}, not a count from 1 to {}",
                    buf.len(),
                    n.repr().map_or_else(|_| "?".into(), |r| r.to_string()),
                    buf.len()
                ))),
            }
        })
        .map_err(|e| fail(&self.1, "write", e))
    }

    fn flush(&mut self) -> io::Result<()> {
        Python::attach(|py| self.0.call_method0(py, "flush").map(|_| ()))
            .map_err(|e| fail(&self.1, "flush", e))
    }
}

/// A Python binary file object as a `Read`er (the GIL is taken for each chunk). `read(n)` must return
/// `bytes` (or a `bytearray`) of at most `n` bytes; empty at the end.
struct PyReader(Py<PyAny>, Pending);

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let chunk = self.0.call_method1(py, "read", (buf.len(),))?;
            let chunk = chunk.bind(py);
            let want = buf.len();
            let mut copy = |bytes: &[u8]| match buf.get_mut(..bytes.len()) {
                Some(dst) => {
                    dst.copy_from_slice(bytes);
                    Ok(bytes.len())
                }
                None => Err(PyValueError::new_err(format!(
                    "read({want}) returned {} bytes, more than asked",
                    bytes.len()
                ))),
            };
            if let Ok(b) = chunk.cast::<PyBytes>() {
                copy(b.as_bytes())
            } else if let Ok(b) = chunk.cast::<PyByteArray>() {
                copy(&b.to_vec())
            } else {
                Err(PyValueError::new_err(format!(
                    "read() returned {}, not bytes",
                    chunk
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                )))
            }
        })
        .map_err(|e| fail(&self.1, "read", e))
    }
}

/// `index=`: `"keep"`, `"subset"` or `"manifest"`, converted in the signature.
impl<'a, 'py> FromPyObject<'a, 'py> for IndexShape {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name: String = obj.extract()?;
        name.parse().map_err(|e| to_pyerr(e, &Pending::default()))
    }
}

/// `compression=`: a name save writes (`None` is no compression), converted in the signature.
impl<'a, 'py> FromPyObject<'a, 'py> for Compression {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name: String = obj.extract()?;
        Compression::for_writing(&name).map_err(|e| to_pyerr(e, &Pending::default()))
    }
}

/// A registry as Python describes it: `(base, user, password, token, ca_file, insecure, jobs)`.
type RegistryArgs = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<PathBuf>,
    bool,
    usize,
);

fn open_registry(args: RegistryArgs) -> engine::Result<Registry> {
    let (base, user, password, token, ca_file, insecure, jobs) = args;
    let auth = match (user, password, token) {
        (_, _, Some(t)) => Some(Credential::Token(t)),
        (Some(user), Some(password), None) => Some(Credential::Basic { user, password }),
        _ => None,
    };
    Registry::open(
        &base,
        registry::Options {
            auth,
            ca_file,
            insecure,
        },
        jobs,
    )
}

/// Where save writes: a path, a Python file object, or bytes returned.
enum Out {
    Path(PathBuf),
    Writer(Py<PyAny>),
    Bytes,
}

fn save_to(
    source: &dyn Source,
    opts: &SaveOptions,
    out: Out,
    pending: &Pending,
    progress: &mut Progress,
) -> engine::Result<(engine::save::SaveReport, Option<Vec<u8>>)> {
    match out {
        Out::Path(p) => {
            engine::save::save_from_to_path(source, opts, &p, progress).map(|r| (r, None))
        }
        Out::Writer(w) => {
            let dest = PathBuf::from("<file object>");
            engine::save::save_from(source, opts, PyWriter(w, pending.clone()), &dest, progress)
                .map(|(r, _)| (r, None))
        }
        Out::Bytes => {
            let dest = PathBuf::from("<bytes>");
            engine::save::save_from(source, opts, Vec::new(), &dest, progress)
                .map(|(r, v)| (r, Some(v)))
        }
    }
}

/// Save images from a store. `output` is a path, a writable binary file object, or None (return bytes).
/// Returns `(report, bytes or None)`.
#[pyfunction]
#[pyo3(signature = (
    store, refs, *, platforms=Vec::new(), output=None, index=IndexShape::Keep, prefer=None,
    compression=None, progress=None, registry=None
))]
#[allow(clippy::too_many_arguments)]
fn save(
    py: Python<'_>,
    store: PathBuf,
    refs: Vec<String>,
    platforms: Vec<String>,
    output: Option<Bound<'_, PyAny>>,
    index: IndexShape,
    prefer: Option<String>,
    compression: Option<Compression>,
    progress: Option<Py<PyAny>>,
    registry: Option<RegistryArgs>,
) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
    let pending: Pending = Arc::default();
    let opts = SaveOptions {
        refs,
        platforms,
        index,
        prefer,
        compression,
    };
    let mut tick = ticker(progress, pending.clone());
    let out = match output {
        None => Out::Bytes,
        Some(o) if o.hasattr("write")? => Out::Writer(o.unbind()),
        Some(o) => Out::Path(o.extract::<PathBuf>()?),
    };
    let result = py.detach(|| {
        let mut progress = Progress::new(&mut tick);
        match registry {
            Some(args) => {
                let reg = open_registry(args)?;
                let source = RegistrySource::open(&reg, &opts.refs)?;
                save_to(&source, &opts, out, &pending, &mut progress)
            }
            None => save_to(
                &StoreSource::open(&store)?,
                &opts,
                out,
                &pending,
                &mut progress,
            ),
        }
    });
    let (r, bytes) = result.map_err(|e| to_pyerr(e, &pending))?;
    Ok((
        report(py, &r)?,
        bytes.map(|b| PyBytes::new(py, &b).into_any().unbind()),
    ))
}

/// Load an archive (a path, `bytes` or `bytearray`, or a readable binary file object) into a store.
/// `bytes` are read where they are, without a copy (they are immutable; the engine only reads them).
#[pyfunction]
#[pyo3(signature = (
    archive, *, platforms=Vec::new(), store=None, progress=None, registry=None, index=IndexShape::Keep
))]
fn load(
    py: Python<'_>,
    archive: Bound<'_, PyAny>,
    platforms: Vec<String>,
    store: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
    registry: Option<RegistryArgs>,
    index: IndexShape,
) -> PyResult<Py<PyAny>> {
    let pending: Pending = Arc::default();
    // `held` keeps a borrowed `bytes` alive until the GIL is back, so its last reference goes there.
    let (input, _held) =
        if archive.is_instance_of::<PyBytes>() || archive.is_instance_of::<PyByteArray>() {
            // A bytearray is copied once (it could change while the engine reads without the GIL).
            let bytes: SharedBytes = Arc::new(archive.extract::<PyBackedBytes>()?);
            (Input::Bytes(Arc::clone(&bytes)), Some(bytes))
        } else if archive.hasattr("read")? {
            let reader = PyReader(archive.unbind(), pending.clone());
            (Input::Reader(Box::new(reader)), None)
        } else {
            (Input::Path(archive.extract::<PathBuf>()?), None)
        };
    let mut tick = ticker(progress, pending.clone());
    if let Some(args) = registry {
        let result = py.detach(|| {
            let mut progress = Progress::new(&mut tick);
            let reg = open_registry(args)?;
            registry::push::load(input, &reg, &platforms, index, &mut progress)
        });
        return report(py, &result.map_err(|e| to_pyerr(e, &pending))?);
    }
    let store = match store {
        Some(s) => s,
        None => engine::store::default_store().map_err(|e| to_pyerr(e, &pending))?,
    };
    let result = py.detach(|| {
        let mut progress = Progress::new(&mut tick);
        engine::load::load(input, &store, &platforms, &mut progress)
    });
    let r = result.map_err(|e| to_pyerr(e, &pending))?;
    report(py, &r)
}

/// What a store directory or archive file holds; with `reference`, the one image of a store it names;
/// with `names`, the images of a store they list.
#[pyfunction]
#[pyo3(signature = (path, reference=None, *, names=None))]
fn inspect(
    py: Python<'_>,
    path: PathBuf,
    reference: Option<String>,
    names: Option<Vec<String>>,
) -> PyResult<Py<PyAny>> {
    let r = py
        .detach(|| match (&reference, &names) {
            (Some(typed), _) => engine::inspect::inspect_image(&path, typed),
            (None, Some(names)) => engine::inspect::list_store(&path, names),
            (None, None) => engine::inspect::inspect(&path),
        })
        .map_err(|e| to_pyerr(e, &Pending::default()))?;
    report(py, &r)
}

/// What a registry holds under a reference (manifests only).
#[pyfunction]
fn inspect_registry(
    py: Python<'_>,
    registry: RegistryArgs,
    reference: String,
) -> PyResult<Py<PyAny>> {
    let r = py
        .detach(|| {
            let reg = open_registry(registry)?;
            engine::inspect::inspect_registry(&reg, &reference)
        })
        .map_err(|e| to_pyerr(e, &Pending::default()))?;
    report(py, &r)
}

/// Re-hash and check everything a store or archive holds.
#[pyfunction]
#[pyo3(signature = (path, *, progress=None))]
fn verify(py: Python<'_>, path: PathBuf, progress: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let pending: Pending = Arc::default();
    let mut tick = ticker(progress, pending.clone());
    let r = py
        .detach(|| {
            let mut progress = Progress::new(&mut tick);
            engine::inspect::verify(&path, &mut progress)
        })
        .map_err(|e| to_pyerr(e, &pending))?;
    report(py, &r)
}

/// The default store path.
#[pyfunction]
fn default_store() -> PyResult<PathBuf> {
    engine::store::default_store().map_err(|e| to_pyerr(e, &Pending::default()))
}

/// Normalize a platform specifier (containerd's format).
#[pyfunction]
fn normalize_platform(spec: &str) -> PyResult<String> {
    engine::platform::Platform::parse(spec)
        .map(|p| p.to_string())
        .map_err(|e| to_pyerr(e, &Pending::default()))
}

/// The index of the image `reference` names among `images` (each its familiar names and digest), by
/// the rules `save` applies to refs, short digests included.
#[pyfunction]
fn pick(reference: &str, path: PathBuf, images: Vec<(Vec<String>, String)>) -> PyResult<usize> {
    engine::store::pick_listed(reference, &path, &images)
        .map_err(|e| to_pyerr(e, &Pending::default()))
}

#[pymodule]
fn _ocitar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(save, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(inspect_registry, m)?)?;
    m.add_function(wrap_pyfunction!(default_store, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_platform, m)?)?;
    m.add_function(wrap_pyfunction!(pick, m)?)?;
    Ok(())
}
