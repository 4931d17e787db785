//! Many-cell inputs: fragment files and cells x peaks matrices (AnnData), as ragged ids.

use std::path::PathBuf;

use atacformer_core::fragments::{read_barcodes, tokenize_fragments as core_fragments};
use atacformer_core::gather::{Csr, CsrIndex, PeakTable, Stored};
use atacformer_core::FragmentOptions;
use numpy::{Element, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{self, flag, non_negative, path_arg, strings};
use crate::errors::{self, invalid};
use crate::ragged::PyRagged;
use crate::region_set::PyRegionSet;
use crate::tokenizer::PyTokenizer;

/// `(cells, barcodes, stats)` of a fragment file.
type Fragments<'py> = (PyRagged, Vec<String>, Bound<'py, PyDict>);

/// Tokenizes a 10x fragment file: `(cells, barcodes, stats)`.
#[pyfunction]
#[pyo3(signature = (tokenizer, path, barcodes = None, barcodes_path = None, min_fragments = None, max_fragments = None, unique = None, skip_bad_lines = None, chrom_names = None))]
#[allow(clippy::too_many_arguments)]
pub fn tokenize_fragments<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    path: &Bound<'py, PyAny>,
    barcodes: Option<&Bound<'py, PyAny>>,
    barcodes_path: Option<&Bound<'py, PyAny>>,
    min_fragments: Option<&Bound<'py, PyAny>>,
    max_fragments: Option<&Bound<'py, PyAny>>,
    unique: Option<&Bound<'py, PyAny>>,
    skip_bad_lines: Option<&Bound<'py, PyAny>>,
    chrom_names: Option<&Bound<'py, PyAny>>,
) -> errors::Result<Fragments<'py>> {
    let chrom_names = convert::chrom_names_arg(chrom_names)?;
    let path: PathBuf = path_arg(path)?;
    let barcodes = barcodes
        .filter(|b| !b.is_none())
        .map(|b| strings(b, "barcodes"))
        .transpose()?;
    let barcodes_path = barcodes_path
        .filter(|b| !b.is_none())
        .map(path_arg)
        .transpose()?;
    let unique = flag(unique, "unique", true)?;
    let skip_bad_lines = flag(skip_bad_lines, "skip_bad_lines", false)?;
    let min_fragments = min_fragments
        .map(|m| non_negative(m, "min_fragments"))
        .transpose()?
        .unwrap_or(0);
    let max_fragments = max_fragments
        .map(|m| non_negative(m, "max_fragments"))
        .transpose()?;
    let tok = &*tokenizer.0;
    let (mut ragged, stats) = py.detach(|| {
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
            chrom_names,
        };
        core_fragments(tok, &path, &opts)
    })?;
    let d = PyDict::new(py);
    d.set_item("lines", stats.lines)?;
    d.set_item("fragments", stats.fragments)?;
    d.set_item("skipped_lines", stats.skipped_lines)?;
    if let Some((line, problem)) = stats.first_skipped {
        d.set_item("first_skipped_line", line)?;
        d.set_item("first_skipped_problem", problem.to_string())?;
    }
    d.set_item("lost_blocks", stats.lost_blocks)?;
    if let Some(problem) = stats.first_lost_block {
        d.set_item("first_lost_block", problem)?;
    }
    if let Some(at) = stats.missing_eof {
        d.set_item("missing_eof_at", at)?;
    }
    let names = std::mem::take(&mut ragged.names);
    Ok((PyRagged::from_core(py, ragged)?, names, d))
}

/// The peaks of a cells x peaks matrix mapped to universe ids, built once (overlaps and
/// genomic ranks computed here) and used to gather any number of row chunks.
#[pyclass(frozen, module = "atacformer._core", name = "PeakTable")]
pub struct PyPeakTable(PeakTable);

fn gather_typed<'py, I: CsrIndex + Element, D: Stored + Element>(
    py: Python<'py>,
    table: &PeakTable,
    indptr: &[i64],
    indices: PyReadonlyArray1<'py, I>,
    data: Option<PyReadonlyArray1<'py, D>>,
) -> errors::Result<PyRagged> {
    let indices = indices.as_slice()?;
    let data = data.as_ref().map(|d| d.as_slice()).transpose()?;
    let matrix = Csr {
        indptr,
        indices,
        data,
    };
    let r = py.detach(|| table.gather(&matrix, None))?;
    Ok(PyRagged::from_core(py, r)?)
}

#[pymethods]
impl PyPeakTable {
    /// The table of `peaks` (one per matrix column) against `tokenizer`'s universe.
    #[new]
    fn new(
        py: Python<'_>,
        tokenizer: &PyTokenizer,
        peaks: PyRef<'_, PyRegionSet>,
    ) -> errors::Result<Self> {
        let tok = &*tokenizer.0;
        let set = peaks.snapshot();
        Ok(PyPeakTable(py.detach(|| PeakTable::new(tok, &set))?))
    }

    /// Number of peaks (matrix columns).
    #[getter]
    fn n_peaks(&self) -> usize {
        self.0.n_peaks()
    }

    /// True when the peaks are the universe itself (no overlaps were computed).
    #[getter]
    fn is_identity(&self) -> bool {
        self.0.is_identity()
    }

    /// Per CSR row, the unique universe ids of its accessible peaks in genomic order (`[unk]`
    /// for none). `indices` may be int32 or int64; `data` may be None (every stored entry is
    /// accessible) or a bool, integer or float array.
    #[pyo3(signature = (indptr, indices, data = None))]
    fn gather<'py>(
        &self,
        py: Python<'py>,
        indptr: PyReadonlyArray1<'py, i64>,
        indices: Bound<'py, PyAny>,
        data: Option<Bound<'py, PyAny>>,
    ) -> errors::Result<PyRagged> {
        let table = &self.0;
        let indptr = indptr.as_slice()?;
        macro_rules! with_data {
            ($i:ty, $ix:ident, $data:ident, $($d:ty),*) => {$(
                if let Ok(d) = $data.extract::<PyReadonlyArray1<'py, $d>>() {
                    return gather_typed::<$i, $d>(py, table, indptr, $ix, Some(d));
                }
            )*};
        }
        macro_rules! with_indices {
            ($($i:ty),*) => {$(
                if let Ok(ix) = indices.extract::<PyReadonlyArray1<'py, $i>>() {
                    let Some(data) = &data else {
                        return gather_typed::<$i, bool>(py, table, indptr, ix, None);
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
        ))
        .into())
    }

    fn __repr__(&self) -> String {
        format!(
            "PeakTable({} peaks{})",
            self.0.n_peaks(),
            if self.0.is_identity() {
                ", identity"
            } else {
                ""
            }
        )
    }
}
