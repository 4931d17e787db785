//! Ragged id buffers: truncation and padding, moved out as NumPy arrays.

use atacformer_core::pad::{self, Truncation};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::errors::{invalid, non_negative, seed as seed_of, to_py};

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

/// The seed of random truncation when none is given (the tokenizer's default too).
const DEFAULT_SEED: u64 = 42;

type Padded<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>);

/// `(input_ids, attention_mask)`, both `[n_cells, width]` int64, cells cut to `width`.
#[pyfunction]
#[pyo3(signature = (ids, offsets, width, pad_id, strategy = "random", seed = None))]
pub fn pad_ragged<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, i32>,
    offsets: PyReadonlyArray1<'py, i64>,
    width: &Bound<'py, PyAny>,
    pad_id: i64,
    strategy: &str,
    seed: Option<&Bound<'py, PyAny>>,
) -> PyResult<Padded<'py>> {
    let width = usize::try_from(non_negative(width, "max_length")?)
        .map_err(|_| invalid("max_length is too large"))?;
    let how = truncation(
        strategy,
        seed.map(seed_of).transpose()?.unwrap_or(DEFAULT_SEED),
    )?;
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
#[pyo3(signature = (ids, offsets, max_length, strategy = "random", seed = None))]
pub fn truncate_ragged<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, i32>,
    offsets: PyReadonlyArray1<'py, i64>,
    max_length: &Bound<'py, PyAny>,
    strategy: &str,
    seed: Option<&Bound<'py, PyAny>>,
) -> PyResult<Flat<'py>> {
    let max_length = usize::try_from(non_negative(max_length, "max_length")?).unwrap_or(usize::MAX);
    let how = truncation(
        strategy,
        seed.map(seed_of).transpose()?.unwrap_or(DEFAULT_SEED),
    )?;
    let (ids, offsets) = (ids.as_slice()?, offsets.as_slice()?);
    let (ids, offsets) = py
        .detach(|| pad::truncate(ids, offsets, max_length, how))
        .map_err(to_py)?;
    Ok((ids.into_pyarray(py), offsets.into_pyarray(py)))
}
