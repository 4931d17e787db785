//! The one place where core errors become Python exceptions.
//!
//! The classes are declared once, in `python/atacformer/exceptions.py` (multiple
//! inheritance, e.g. `ParseError(AtacformerError, ValueError)`, rules out
//! `create_exception!`), and imported here. Parse, config and compression problems are
//! `ParseError` with `path` and `line`; a missing file is `MissingFileError`; other I/O is
//! `AtacformerIOError`; bad values are `InvalidInputError`.
//!
//! [`Error`] lets `?` carry both core errors and Python errors out of a binding; its
//! conversion into `PyErr` matches every core variant with no catch-all, so a new variant
//! does not compile until it is mapped.

use pyo3::prelude::*;

pyo3::import_exception!(atacformer.exceptions, AtacformerError);
pyo3::import_exception!(atacformer.exceptions, ParseError);
pyo3::import_exception!(atacformer.exceptions, MissingFileError);
pyo3::import_exception!(atacformer.exceptions, AtacformerIOError);
pyo3::import_exception!(atacformer.exceptions, InvalidInputError);
pyo3::import_exception!(atacformer.exceptions, AtacformerTypeError);
pyo3::import_exception!(atacformer.exceptions, AtacformerIndexError);

/// An error of a binding: from the core or from Python.
#[derive(Debug)]
pub enum Error {
    Core(atacformer_core::Error),
    Py(PyErr),
}

/// Result of a binding that calls the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<atacformer_core::Error> for Error {
    fn from(e: atacformer_core::Error) -> Self {
        Error::Core(e)
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Py(e)
    }
}

impl From<numpy::AsSliceError> for Error {
    fn from(e: numpy::AsSliceError) -> Self {
        Error::Py(e.into())
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => core_to_py(e),
            Error::Py(e) => e,
        }
    }
}

/// Maps a core error to its Python exception.
fn core_to_py(err: atacformer_core::Error) -> PyErr {
    use atacformer_core::Error as E;
    let msg = err.to_string();
    let located = |path: &std::path::Path, line: u64| {
        ParseError::new_err((msg.clone(), path.display().to_string(), line))
    };
    match &err {
        E::NotFound { path } => {
            MissingFileError::new_err((2, "No such file or directory", path.display().to_string()))
        }
        E::Io { source, .. } => {
            AtacformerIOError::new_err((source.raw_os_error().unwrap_or(0), msg))
        }
        E::Parse { path, line, .. }
        | E::Compression { path, line, .. }
        | E::Config { path, line, .. }
        | E::DuplicateRegion {
            path,
            second_line: line,
            ..
        } => located(path, *line),
        E::EmptyUniverse { path } => located(path, 0),
        E::InvalidInput(_) => InvalidInputError::new_err(msg),
    }
}

/// `InvalidInputError(msg)`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidInputError::new_err(msg.into())
}

/// `AtacformerTypeError(msg)`.
pub fn wrong_type(msg: impl Into<String>) -> PyErr {
    AtacformerTypeError::new_err(msg.into())
}

/// `AtacformerIndexError(msg)`.
pub fn out_of_range(msg: impl Into<String>) -> PyErr {
    AtacformerIndexError::new_err(msg.into())
}

/// Puts the classes on the extension module too, so `atacformer._core.ParseError` is
/// `atacformer.ParseError`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("AtacformerError", py.get_type::<AtacformerError>())?;
    m.add("ParseError", py.get_type::<ParseError>())?;
    m.add("MissingFileError", py.get_type::<MissingFileError>())?;
    m.add("AtacformerIOError", py.get_type::<AtacformerIOError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("AtacformerTypeError", py.get_type::<AtacformerTypeError>())?;
    m.add(
        "AtacformerIndexError",
        py.get_type::<AtacformerIndexError>(),
    )?;
    Ok(())
}
