//! Many-cell inputs: fragment files and cells x peaks matrices (AnnData), as ragged ids.

use std::path::PathBuf;

use atacformer_core::fragments::{read_barcodes, tokenize_fragments as core_fragments};
use atacformer_core::gather::{gather_csr as core_gather, peak_table as core_peak_table};
use atacformer_core::gather::{Csr, CsrIndex, PeakTable, Stored};
use atacformer_core::FragmentOptions;
use numpy::{Element, IntoPyArray, PyArray1, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{invalid, non_negative, to_py};
use crate::region_set::PyRegionSet;
use crate::tokenizer::PyTokenizer;

type Flat<'py> = (Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<i64>>);
type Named<'py> = (
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i64>>,
    Vec<String>,
);
/// `(ids, offsets, cell names, stats)` of a fragment file.
type Fragments<'py> = (
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i64>>,
    Vec<String>,
    Bound<'py, PyDict>,
);

/// Tokenizes a 10x fragment file: `(ids, offsets, barcodes, stats)`.
#[pyfunction]
#[pyo3(signature = (tokenizer, path, barcodes = None, barcodes_path = None, min_fragments = None, max_fragments = None, unique = true, skip_bad_lines = false))]
#[allow(clippy::too_many_arguments)]
pub fn tokenize_fragments<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    path: PathBuf,
    barcodes: Option<Vec<String>>,
    barcodes_path: Option<PathBuf>,
    min_fragments: Option<&Bound<'py, PyAny>>,
    max_fragments: Option<&Bound<'py, PyAny>>,
    unique: bool,
    skip_bad_lines: bool,
) -> PyResult<Fragments<'py>> {
    let min_fragments = min_fragments
        .map(|m| non_negative(m, "min_fragments"))
        .transpose()?
        .unwrap_or(0);
    let max_fragments = max_fragments
        .map(|m| non_negative(m, "max_fragments"))
        .transpose()?;
    let tok = &*tokenizer.0;
    let (ragged, stats) = py
        .detach(|| {
            let barcodes = match barcodes_path {
                Some(p) => Some(read_barcodes(&p)?),
                None => barcodes,
            };
            let opts = FragmentOptions {
                barcodes,
                min_fragments,
                max_fragments,
                unique,
                skip_bad_lines,
            };
            core_fragments(tok, &path, &opts)
        })
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("lines", stats.lines)?;
    d.set_item("fragments", stats.fragments)?;
    d.set_item("skipped_lines", stats.skipped_lines)?;
    if let Some((line, problem)) = stats.first_skipped {
        d.set_item("first_skipped_line", line)?;
        d.set_item("first_skipped_problem", problem.to_string())?;
    }
    Ok((
        ragged.ids.into_pyarray(py),
        ragged.offsets.into_pyarray(py),
        ragged.names,
        d,
    ))
}

/// The universe ids overlapping each peak: `(ids, offsets)` with `n_peaks + 1` offsets.
#[pyfunction]
pub fn peak_table<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    peaks: PyRef<'py, PyRegionSet>,
) -> Flat<'py> {
    let tok = &*tokenizer.0;
    let set = &peaks.inner;
    let (ids, offsets) = py.detach(|| core_peak_table(tok, set));
    (ids.into_pyarray(py), offsets.into_pyarray(py))
}

fn gather_typed<'py, I: CsrIndex + Element, D: Stored + Element>(
    py: Python<'py>,
    tok: &PyTokenizer,
    indptr: &[i64],
    indices: PyReadonlyArray1<'py, I>,
    data: Option<PyReadonlyArray1<'py, D>>,
    peaks: PeakTable<'_>,
    names: Vec<String>,
) -> PyResult<Named<'py>> {
    let indices = indices.as_slice()?;
    let data = data.as_ref().map(|d| d.as_slice()).transpose()?;
    let matrix = Csr {
        indptr,
        indices,
        data,
    };
    let tok = &*tok.0;
    let r = py
        .detach(|| core_gather(tok, &matrix, &peaks, Some(names)))
        .map_err(to_py)?;
    Ok((r.ids.into_pyarray(py), r.offsets.into_pyarray(py), r.names))
}

/// Per CSR row, the unique universe ids of its accessible peaks in genomic order, with the
/// rows named by `names`. `indices` may be int32 or int64; `data` may be None (every stored
/// entry is accessible) or a bool, integer or float array.
#[pyfunction]
#[pyo3(signature = (tokenizer, indptr, indices, data, peak_ids, peak_offsets, names))]
#[allow(clippy::too_many_arguments)]
pub fn gather_csr<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: Bound<'py, PyAny>,
    data: Option<Bound<'py, PyAny>>,
    peak_ids: PyReadonlyArray1<'py, i32>,
    peak_offsets: PyReadonlyArray1<'py, i64>,
    names: Vec<String>,
) -> PyResult<Named<'py>> {
    let peaks = PeakTable {
        ids: peak_ids.as_slice()?,
        offsets: peak_offsets.as_slice()?,
    };
    let indptr = indptr.as_slice()?;
    macro_rules! with_data {
        ($i:ty, $ix:ident, $data:ident, $($d:ty),*) => {$(
            if let Ok(d) = $data.extract::<PyReadonlyArray1<'py, $d>>() {
                return gather_typed::<$i, $d>(py, tokenizer, indptr, $ix, Some(d), peaks, names);
            }
        )*};
    }
    macro_rules! with_indices {
        ($($i:ty),*) => {$(
            if let Ok(ix) = indices.extract::<PyReadonlyArray1<'py, $i>>() {
                let Some(data) = &data else {
                    return gather_typed::<$i, bool>(py, tokenizer, indptr, ix, None, peaks, names);
                };
                with_data!($i, ix, data, f32, f64, i64, i32, i16, i8, u8, u16, u32, u64, bool);
            }
        )*};
    }
    with_indices!(i32, i64);
    let dtype = |x: Option<&Bound<'py, PyAny>>| {
        x.and_then(|a| a.cast::<numpy::PyUntypedArray>().ok())
            .map_or_else(|| "a non-array".to_string(), |a| a.dtype().to_string())
    };
    Err(invalid(format!(
        "unsupported matrix arrays: indices of dtype {}, data of dtype {}",
        dtype(Some(&indices)),
        dtype(data.as_ref())
    )))
}
