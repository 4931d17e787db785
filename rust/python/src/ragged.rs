//! `Ragged`: the one binding of the core's many-cells type.
//!
//! It holds the two NumPy arrays themselves: arrays that come from Python (a memory-mapped
//! `.atok`, a SciPy CSR matrix) are kept without a copy, and results made in Rust are moved
//! into NumPy (`into_pyarray`) without one. The offsets are checked when it is built and
//! checked again (one pass over `n_cells + 1` values) before each operation reads through
//! them, because the arrays may still be written through another reference.
//!
//! Beside them it may hold `counts` (uint32, one per id), which `take`, `concat` and
//! `truncate` carry along, and `qc`, the per-cell numbers a tokenization measured (a dict
//! of int64 arrays), which only the tokenizing functions set: the Python layer selects it
//! with the cells.

use atacformer_core::ragged::{concat, CellQc, Ragged, RaggedRef};
use atacformer_core::Coverage;
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::convert::{collect, length, signed, truncation};
use crate::errors::{self, invalid};

/// Token ids of many cells: int32 `ids`, int64 `offsets` (`n_cells + 1`, from 0), and
/// optionally uint32 `counts` (one per id) and the per-cell `qc`.
#[pyclass(frozen, module = "atacformer._core", name = "Ragged")]
pub struct PyRagged {
    ids: Py<PyArray1<i32>>,
    offsets: Py<PyArray1<i64>>,
    counts: Option<Py<PyArray1<u32>>>,
    qc: Option<Py<PyDict>>,
    coverage: Option<Py<PyDict>>,
}

/// The core's coverage as a dict: `chroms` (a list of `(name, universe name or None,
/// intervals, overlapping, past_end)` in first-seen order), `input_bp`, `universe_span`,
/// `universe_bp` and `universe_regions`.
fn coverage_dict(py: Python<'_>, c: Coverage) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    let chroms: Vec<_> = c
        .chroms
        .into_iter()
        .map(|c| {
            (
                c.name,
                c.universe_name,
                c.intervals,
                c.overlapping,
                c.past_end,
            )
        })
        .collect();
    d.set_item("chroms", chroms)?;
    d.set_item("input_bp", c.input_bp)?;
    d.set_item("universe_span", c.universe_span)?;
    d.set_item("universe_bp", c.universe_bp)?;
    d.set_item("universe_regions", c.universe_regions)?;
    Ok(d.unbind())
}

/// The core's per-cell numbers as a dict of int64 arrays, named as in the atlas's `obs`.
fn qc_dict(py: Python<'_>, qc: CellQc) -> PyResult<Py<PyDict>> {
    let as_i64 = |v: Vec<u64>| -> Vec<i64> {
        v.into_iter()
            .map(|x| i64::try_from(x).unwrap_or(i64::MAX))
            .collect()
    };
    let d = PyDict::new(py);
    d.set_item("n_fragments", as_i64(qc.n_fragments).into_pyarray(py))?;
    d.set_item(
        "n_fragments_in_universe",
        as_i64(qc.n_in_universe).into_pyarray(py),
    )?;
    d.set_item("n_tokens", as_i64(qc.n_tokens).into_pyarray(py))?;
    Ok(d.unbind())
}

type Padded<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>);

impl PyRagged {
    /// Moves a core result into NumPy arrays (no copy of the ids or counts).
    pub fn from_core(py: Python<'_>, r: Ragged) -> PyResult<Self> {
        Ok(PyRagged {
            ids: r.ids.into_pyarray(py).unbind(),
            offsets: r.offsets.into_pyarray(py).unbind(),
            counts: r.counts.map(|c| c.into_pyarray(py).unbind()),
            qc: r.qc.map(|q| qc_dict(py, q)).transpose()?,
            coverage: r.coverage.map(|c| coverage_dict(py, c)).transpose()?,
        })
    }

    /// Runs `f` on the checked, borrowed view of the buffers (with the counts).
    fn with_view<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(RaggedRef<'_>) -> errors::Result<R>,
    ) -> errors::Result<R> {
        let ids = self.ids.bind(py).readonly();
        let offsets = self.offsets.bind(py).readonly();
        let counts = self.counts.as_ref().map(|c| c.bind(py).readonly());
        let view = RaggedRef::new(ids.as_slice()?, offsets.as_slice()?)?;
        match &counts {
            Some(c) => f(view.with_counts(c.as_slice()?)?),
            None => f(view),
        }
    }
}

#[pymethods]
impl PyRagged {
    /// Wraps `ids` (int32), `offsets` (int64) and `counts` (uint32, one per id, or None),
    /// all 1-D and contiguous, without a copy.
    #[new]
    #[pyo3(signature = (ids, offsets, counts = None))]
    fn new(
        py: Python<'_>,
        ids: Bound<'_, PyArray1<i32>>,
        offsets: Bound<'_, PyArray1<i64>>,
        counts: Option<Bound<'_, PyArray1<u32>>>,
    ) -> errors::Result<Self> {
        if !ids.is_contiguous()
            || !offsets.is_contiguous()
            || counts.as_ref().is_some_and(|c| !c.is_contiguous())
        {
            return Err(invalid("ids, offsets and counts must be contiguous arrays").into());
        }
        let this = PyRagged {
            ids: ids.unbind(),
            offsets: offsets.unbind(),
            counts: counts.map(Bound::unbind),
            qc: None,
            coverage: None,
        };
        this.with_view(py, |_| Ok(()))?;
        Ok(this)
    }

    /// The ids of every cell, one after another (int32).
    #[getter]
    fn ids(&self, py: Python<'_>) -> Py<PyArray1<i32>> {
        self.ids.clone_ref(py)
    }

    /// Where each cell starts in `ids`, then `len(ids)` (int64, `n_cells + 1`).
    #[getter]
    fn offsets(&self, py: Python<'_>) -> Py<PyArray1<i64>> {
        self.offsets.clone_ref(py)
    }

    /// One count per id (uint32), or None.
    #[getter]
    fn counts(&self, py: Python<'_>) -> Option<Py<PyArray1<u32>>> {
        self.counts.as_ref().map(|c| c.clone_ref(py))
    }

    /// The per-cell numbers the tokenization measured (`n_fragments`,
    /// `n_fragments_in_universe`, `n_tokens`: int64 arrays), or None.
    #[getter]
    fn qc(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.qc.as_ref().map(|q| q.clone_ref(py))
    }

    /// How well the tokenization's input covered the universe (see `atacformer.Coverage`),
    /// or None.
    #[getter]
    fn coverage(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.coverage.as_ref().map(|c| c.clone_ref(py))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        PyUntypedArrayMethods::len(self.offsets.bind(py)).saturating_sub(1)
    }

    /// Number of ids per cell (int64).
    fn lengths<'py>(&self, py: Python<'py>) -> errors::Result<Bound<'py, PyArray1<i64>>> {
        Ok(self.with_view(py, |r| Ok(r.lengths()))?.into_pyarray(py))
    }

    /// The cells at `indices` (int64; negative counts from the end), in that order.
    fn take(&self, py: Python<'_>, indices: PyReadonlyArray1<'_, i64>) -> errors::Result<Self> {
        let indices = indices.as_slice()?;
        let out = self.with_view(py, |r| Ok(py.detach(|| r.take(indices))?))?;
        Ok(Self::from_core(py, out)?)
    }

    /// The cells of `parts`, one part after another.
    #[staticmethod]
    fn concat(py: Python<'_>, parts: &Bound<'_, PyAny>) -> errors::Result<Self> {
        let parts: Vec<Bound<'_, PyRagged>> = collect(parts, "parts")?;
        let guards = parts
            .iter()
            .map(|p| {
                let p = p.get();
                Ok((
                    p.ids.bind(py).readonly(),
                    p.offsets.bind(py).readonly(),
                    p.counts.as_ref().map(|c| c.bind(py).readonly()),
                ))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let views = guards
            .iter()
            .map(|(i, o, c)| {
                let view = RaggedRef::new(i.as_slice()?, o.as_slice()?)?;
                Ok(match c {
                    Some(c) => view.with_counts(c.as_slice()?)?,
                    None => view,
                })
            })
            .collect::<errors::Result<Vec<_>>>()?;
        let out = py.detach(|| concat(&views))?;
        Ok(Self::from_core(py, out)?)
    }

    /// One cell per int32 array of `cells`, joined into one buffer.
    #[staticmethod]
    fn from_cells(py: Python<'_>, cells: &Bound<'_, PyAny>) -> errors::Result<Self> {
        let cells: Vec<PyReadonlyArray1<'_, i32>> = collect(cells, "cells")?;
        let slices = cells
            .iter()
            .map(|c| c.as_slice())
            .collect::<Result<Vec<_>, _>>()?;
        let bounds: Vec<[i64; 2]> = slices.iter().map(|s| [0, s.len() as i64]).collect();
        let views = slices
            .iter()
            .zip(&bounds)
            .map(|(s, b)| RaggedRef::new(s, b))
            .collect::<Result<Vec<_>, _>>()?;
        let out = py.detach(|| concat(&views))?;
        Ok(Self::from_core(py, out)?)
    }

    /// Every cell cut to at most `max_length` ids: the first ones, or a seeded random
    /// subset in their original order.
    #[pyo3(signature = (max_length, strategy = None, seed = None))]
    fn truncate(
        &self,
        py: Python<'_>,
        max_length: &Bound<'_, PyAny>,
        strategy: Option<&Bound<'_, PyAny>>,
        seed: Option<&Bound<'_, PyAny>>,
    ) -> errors::Result<Self> {
        let max_length = length(max_length, "max_length")?;
        let how = truncation(strategy, seed)?;
        let out = self.with_view(py, |r| Ok(py.detach(|| r.truncate(max_length, how))))?;
        Ok(Self::from_core(py, out)?)
    }

    /// `(input_ids, attention_mask)`, both `[n_cells, width]` int64, cells cut to `width`.
    #[pyo3(signature = (width, pad_id, strategy = None, seed = None))]
    fn pad<'py>(
        &self,
        py: Python<'py>,
        width: &Bound<'py, PyAny>,
        pad_id: &Bound<'py, PyAny>,
        strategy: Option<&Bound<'py, PyAny>>,
        seed: Option<&Bound<'py, PyAny>>,
    ) -> errors::Result<Padded<'py>> {
        let width = length(width, "max_length")?;
        let pad_id = signed(pad_id, "pad_token_id")?;
        let how = truncation(strategy, seed)?;
        let (n, (out, mask)) = self.with_view(py, |r| {
            Ok((r.len(), py.detach(|| r.pad(width, pad_id, how))?))
        })?;
        let shape = (n, width);
        let out = Array2::from_shape_vec(shape, out).map_err(|e| invalid(e.to_string()))?;
        let mask = Array2::from_shape_vec(shape, mask).map_err(|e| invalid(e.to_string()))?;
        Ok((out.into_pyarray(py), mask.into_pyarray(py)))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let ctor = py.get_type::<PyRagged>();
        let counts = self.counts.as_ref().map(|c| c.clone_ref(py));
        (
            ctor,
            (self.ids.clone_ref(py), self.offsets.clone_ref(py), counts),
        )
            .into_pyobject(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Ragged({} cells, {} ids)",
            self.__len__(py),
            PyUntypedArrayMethods::len(self.ids.bind(py))
        )
    }
}
