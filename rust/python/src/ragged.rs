//! Ragged id buffers: truncation and padding, moved out as NumPy arrays.

use atacformer_core::pad::{self, Truncation};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::errors::{invalid, to_py};

/// `"first"` or `"random"` (seeded) as a core truncation rule.
pub fn truncation(strategy: &str, seed: u64) -> PyResult<Truncation> {
    match strategy {
        "first" => Ok(Truncation::First),
        "random" => Ok(Truncation::Random { seed }),
        other => Err(invalid(format!(
            "truncation_strategy must be 'random' or 'first', got {other:?}"
        ))),
    }
}

type Padded<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>);

/// `(input_ids, attention_mask)`, both `[n_cells, width]` int64, cells cut to `width`.
#[pyfunction]
#[pyo3(signature = (ids, offsets, width, pad_id, strategy = "random", seed = 0))]
pub fn pad_ragged<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, i32>,
    offsets: PyReadonlyArray1<'py, i64>,
    width: usize,
    pad_id: i64,
    strategy: &str,
    seed: u64,
) -> PyResult<Padded<'py>> {
    let how = truncation(strategy, seed)?;
    let (ids, offsets) = (ids.as_slice()?, offsets.as_slice()?);
    let n = offsets.len().saturating_sub(1);
    let (out, mask) = py
        .detach(|| pad::pad(ids, offsets, width, how, pad_id))
        .map_err(to_py)?;
    let shape = (n, width);
    let out = Array2::from_shape_vec(shape, out).map_err(|e| invalid(e.to_string()))?;
    let mask = Array2::from_shape_vec(shape, mask).map_err(|e| invalid(e.to_string()))?;
    Ok((out.into_pyarray(py), mask.into_pyarray(py)))
}

type Flat<'py> = (Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<i64>>);

/// New `(ids, offsets)` with every cell cut to at most `max_length` ids.
#[pyfunction]
#[pyo3(signature = (ids, offsets, max_length, strategy = "random", seed = 0))]
pub fn truncate_ragged<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, i32>,
    offsets: PyReadonlyArray1<'py, i64>,
    max_length: usize,
    strategy: &str,
    seed: u64,
) -> PyResult<Flat<'py>> {
    let how = truncation(strategy, seed)?;
    let (ids, offsets) = (ids.as_slice()?, offsets.as_slice()?);
    let (ids, offsets) = py
        .detach(|| pad::truncate(ids, offsets, max_length, how))
        .map_err(to_py)?;
    Ok((ids.into_pyarray(py), offsets.into_pyarray(py)))
}
