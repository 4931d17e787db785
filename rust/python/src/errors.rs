//! The one place where core errors become Python exceptions.
//!
//! Every exception derives from `AtacformerError`. Parse, config and compression problems
//! are `ParseError` (a `ValueError`) and carry `path` and `line`; a missing file is
//! `MissingFileError` (a `FileNotFoundError`); other I/O is `AtacformerIOError` (an
//! `OSError`); bad argument values are `InvalidInputError` (a `ValueError`), arguments of
//! the wrong type `AtacformerTypeError` (a `TypeError`) and indices out of range
//! `AtacformerIndexError` (an `IndexError`).

use atacformer_core::Error;
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyIndexError, PyOSError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

pyo3::create_exception!(
    atacformer,
    AtacformerError,
    PyException,
    "Base class of every error raised by atacformer."
);

static PARSE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MISSING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IO: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INDEX: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Creates `class name(AtacformerError, other)` in module `atacformer`.
fn subclass(
    py: Python<'_>,
    name: &str,
    other: Bound<'_, PyType>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let bases = PyTuple::new(py, [py.get_type::<AtacformerError>(), other])?;
    let ns = PyDict::new(py);
    ns.set_item("__module__", "atacformer")?;
    ns.set_item("__doc__", doc)?;
    let ty = py
        .get_type::<PyType>()
        .call1((name, bases, ns))?
        .cast_into::<PyType>()?;
    Ok(ty.unbind())
}

fn get<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyType>>) -> Bound<'py, PyType> {
    cell.get(py)
        .map(|t| t.bind(py).clone())
        .unwrap_or_else(|| py.get_type::<AtacformerError>())
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("AtacformerError", py.get_type::<AtacformerError>())?;
    let table = [
        (
            "ParseError",
            &PARSE,
            py.get_type::<PyValueError>(),
            "A malformed BED, TOML or compressed file; `path` and `line` say where.",
        ),
        (
            "MissingFileError",
            &MISSING,
            py.get_type::<PyFileNotFoundError>(),
            "A file that does not exist.",
        ),
        (
            "AtacformerIOError",
            &IO,
            py.get_type::<PyOSError>(),
            "A file that could not be read or written.",
        ),
        (
            "InvalidInputError",
            &INVALID,
            py.get_type::<PyValueError>(),
            "An argument with a bad value.",
        ),
        (
            "AtacformerTypeError",
            &TYPE,
            py.get_type::<PyTypeError>(),
            "An argument of the wrong type.",
        ),
        (
            "AtacformerIndexError",
            &INDEX,
            py.get_type::<PyIndexError>(),
            "An index out of range.",
        ),
    ];
    for (name, cell, base, doc) in table {
        let ty = subclass(py, name, base, doc)?;
        m.add(name, ty.bind(py))?;
        let _ = cell.set(py, ty);
    }
    Ok(())
}

/// Raises `InvalidInputError(msg)`.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    Python::attach(|py| PyErr::from_type(get(py, &INVALID), msg.into()))
}

/// Raises `AtacformerTypeError(msg)`.
pub fn wrong_type(msg: impl Into<String>) -> PyErr {
    Python::attach(|py| PyErr::from_type(get(py, &TYPE), msg.into()))
}

/// Raises `AtacformerIndexError(msg)`.
pub fn out_of_range(msg: impl Into<String>) -> PyErr {
    Python::attach(|py| PyErr::from_type(get(py, &INDEX), msg.into()))
}

/// The name of `obj`'s type, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// A Python integer argument that must not be negative (any size, so a huge value is
/// reported rather than overflowing).
pub fn non_negative(value: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let v: i128 = value.extract().map_err(|_| {
        if value.is_instance_of::<pyo3::types::PyInt>() {
            invalid(format!("{what} is too large: {value}"))
        } else {
            wrong_type(format!(
                "{what} must be an integer, got {}",
                type_name(value)
            ))
        }
    })?;
    u64::try_from(v).map_err(|_| invalid(format!("{what} must be 0 or more, got {v}")))
}

/// A seed: any integer (Python's or NumPy's), taken modulo 2^64 (so negative seeds work).
pub fn seed(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let index = value
        .py()
        .import("operator")?
        .call_method1("index", (value,))
        .map_err(|_| wrong_type(format!("seed must be an integer, got {}", type_name(value))))?;
    index.call_method1("__and__", (u64::MAX,))?.extract()
}

fn with_location(
    py: Python<'_>,
    ty: Bound<'_, PyType>,
    msg: String,
    path: String,
    line: u64,
) -> PyErr {
    match ty.call1((msg.clone(),)) {
        Ok(exc) => {
            let _ = exc.setattr("path", path);
            let _ = exc.setattr("line", line);
            PyErr::from_value(exc)
        }
        Err(_) => PyErr::from_type(get(py, &PARSE), msg),
    }
}

/// Maps a core error to its Python exception.
pub fn to_py(err: Error) -> PyErr {
    Python::attach(|py| {
        let msg = err.to_string();
        match err {
            Error::NotFound { path } => {
                let args = (2, "No such file or directory", path.display().to_string());
                match get(py, &MISSING).call1(args) {
                    Ok(exc) => PyErr::from_value(exc),
                    Err(e) => e,
                }
            }
            Error::Io { source, .. } => {
                let args = (source.raw_os_error().unwrap_or(0), msg);
                match get(py, &IO).call1(args) {
                    Ok(exc) => PyErr::from_value(exc),
                    Err(e) => e,
                }
            }
            Error::Parse { path, line, .. }
            | Error::Compression { path, line, .. }
            | Error::Config { path, line, .. }
            | Error::DuplicateRegion {
                path,
                second_line: line,
                ..
            } => with_location(py, get(py, &PARSE), msg, path.display().to_string(), line),
            Error::EmptyUniverse { path } => {
                with_location(py, get(py, &PARSE), msg, path.display().to_string(), 0)
            }
            Error::InvalidInput(_) => PyErr::from_type(get(py, &INVALID), msg),
            #[allow(unreachable_patterns)]
            _ => PyErr::from_type(get(py, &PARSE), msg),
        }
    })
}
