//! Pulling region inputs out of Python objects into owned core values.
//!
//! Accepted forms: a `RegionSet`, a BED path (`str` or `os.PathLike`), a pandas DataFrame
//! with `chr`/`chrom`, `start`, `end` columns, or an iterable of `Region`s, of objects with
//! `chr`/`start`/`end` attributes, or of `(chr, start, end)` tuples.

use std::path::PathBuf;

use atacformer_core::RegionSet;
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::errors::{invalid, to_py};
use crate::region::{coord, PyRegion};
use crate::region_set::PyRegionSet;

/// Region input after conversion: borrowed set, a file to stream, or an owned set.
pub enum Query<'py> {
    Set(PyRef<'py, PyRegionSet>),
    Path(PathBuf),
    Owned(RegionSet),
}

/// True for strings and `os.PathLike` objects.
pub fn is_path_like(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__").unwrap_or(false)
}

/// True for a pandas DataFrame (checked by duck typing, so pandas is never imported here).
pub fn is_dataframe(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr("columns").unwrap_or(false) && obj.hasattr("iloc").unwrap_or(false)
}

pub fn extract_query<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Query<'py>> {
    if let Ok(set) = obj.cast::<PyRegionSet>() {
        return Ok(Query::Set(set.borrow()));
    }
    // Lists and tuples first: the common small-input case skips the attribute probes.
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(Query::Owned(from_iterable(obj)?));
    }
    if is_path_like(obj) {
        return Ok(Query::Path(obj.extract::<PathBuf>()?));
    }
    if is_dataframe(obj) {
        return Ok(Query::Owned(from_pandas(obj)?));
    }
    Ok(Query::Owned(from_iterable(obj)?))
}

/// Reads `o.chr`, `o.start`, `o.end` (or a `(chr, start, end)` sequence).
fn push_object(set: &mut RegionSet, item: &Bound<'_, PyAny>, i: usize) -> PyResult<()> {
    if let Ok(r) = item.cast::<PyRegion>() {
        let r = &r.get().0;
        return set
            .push(&r.chr, r.start, r.end, r.rest.clone())
            .map_err(|p| invalid(format!("region {i}: {p}")));
    }
    let (chr, start, end): (String, i128, i128) = if item.is_instance_of::<PyTuple>()
        || item.is_instance_of::<PyList>()
    {
        (
            item.get_item(0)?.extract()?,
            item.get_item(1)?.extract()?,
            item.get_item(2)?.extract()?,
        )
    } else {
        let attr = |name: &str| {
            item.getattr(name).map_err(|_| {
                invalid(format!(
                    "region {i}: expected a Region, an object with chr/start/end, or a (chr, start, end) tuple; got {}",
                    item.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ))
            })
        };
        (
            attr("chr")?.extract()?,
            attr("start")?.extract()?,
            attr("end")?.extract()?,
        )
    };
    let (start, end) = (coord(start, "start")?, coord(end, "end")?);
    set.push(&chr, start, end, None)
        .map_err(|p| invalid(format!("region {i}: {p}")))
}

/// Builds a set from any iterable of region-like objects.
pub fn from_iterable(obj: &Bound<'_, PyAny>) -> PyResult<RegionSet> {
    let iter = obj.try_iter().map_err(|_| {
        invalid(format!(
            "expected regions (a RegionSet, a BED path, a DataFrame or an iterable of regions), got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let mut set = RegionSet::new();
    if let Ok(n) = obj.len() {
        set.reserve(n);
    }
    for (i, item) in iter.enumerate() {
        push_object(&mut set, &item?, i)?;
    }
    Ok(set)
}

/// Converts an array-like of integers to coordinates, naming the first bad element.
fn coords(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj,))?
        .call_method1("astype", ("int64",))
        .map_err(|e| invalid(format!("{what} must be integers: {e}")))?;
    let arr: PyReadonlyArray1<'_, i64> = arr.extract()?;
    let values = arr.as_array();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u32::try_from(v)
                .map_err(|_| invalid(format!("{what}[{i}] must be in 0..=4294967295, got {v}")))
        })
        .collect()
}

/// Builds a set from columns (lists or NumPy arrays).
pub fn from_arrays(
    chroms: &Bound<'_, PyAny>,
    starts: &Bound<'_, PyAny>,
    ends: &Bound<'_, PyAny>,
) -> PyResult<RegionSet> {
    let py = chroms.py();
    let names: Vec<String> = py
        .import("numpy")?
        .call_method1("asarray", (chroms,))?
        .call_method1("astype", ("str",))?
        .call_method0("tolist")?
        .extract()?;
    let starts = coords(py, starts, "starts")?;
    let ends = coords(py, ends, "ends")?;
    RegionSet::from_columns(&names, &starts, &ends).map_err(to_py)
}

/// Builds a set from a DataFrame's `chr` (or `chrom`), `start` and `end` columns.
pub fn from_pandas(df: &Bound<'_, PyAny>) -> PyResult<RegionSet> {
    let has = |c: &str| {
        df.getattr("columns")?
            .call_method1("__contains__", (c,))?
            .extract::<bool>()
    };
    let chrom_col = if has("chr")? {
        "chr"
    } else if has("chrom")? {
        "chrom"
    } else {
        return Err(invalid("the DataFrame needs a 'chr' or 'chrom' column"));
    };
    for c in ["start", "end"] {
        if !has(c)? {
            return Err(invalid(format!("the DataFrame needs a {c:?} column")));
        }
    }
    let col = |c: &str| df.get_item(c)?.call_method0("to_numpy");
    from_arrays(&col(chrom_col)?, &col("start")?, &col("end")?)
}
