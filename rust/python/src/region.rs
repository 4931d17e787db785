//! `Region`: one interval, 0-based and half-open like BED.

use atacformer_core::region::{check_chrom, check_rest};
use atacformer_core::Region;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::convert::{coord_of, text};
use crate::errors::invalid;

/// A genomic interval `[start, end)` on `chr` (0-based, half-open, bp).
#[pyclass(
    name = "Region",
    module = "atacformer._core",
    frozen,
    eq,
    ord,
    hash,
    from_py_object
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyRegion(pub Region);

/// Checks a Python integer coordinate against `0..=2^32-1`.
pub fn coord(value: i128, what: &str) -> PyResult<u32> {
    u32::try_from(value)
        .map_err(|_| invalid(format!("{what} must be in 0..=4294967295, got {value}")))
}

#[pymethods]
impl PyRegion {
    /// Coordinates are integers or whole floats in `0..=2^32-1`; the name must survive a
    /// round trip through a BED file (see `check_chrom`).
    #[new]
    #[pyo3(signature = (chr, start, end, rest = None))]
    fn new(
        chr: &Bound<'_, PyAny>,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        rest: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let chr = text(chr, "chr")?.into_owned();
        check_chrom(&chr).map_err(|p| invalid(p.to_string()))?;
        let (start, end) = (coord_of(start, "start")?, coord_of(end, "end")?);
        if start > end {
            return Err(invalid(format!("start > end ({start} > {end})")));
        }
        let rest = match rest.filter(|r| !r.is_none()) {
            None => None,
            Some(r) => {
                let r = text(r, "rest")?.into_owned();
                check_rest(&r).map_err(|p| invalid(p.to_string()))?;
                Some(r)
            }
        };
        Ok(PyRegion(Region {
            chr,
            start,
            end,
            rest,
        }))
    }

    /// Chromosome name.
    #[getter]
    fn chr(&self) -> &str {
        &self.0.chr
    }

    /// 0-based start (bp).
    #[getter]
    fn start(&self) -> u32 {
        self.0.start
    }

    /// Exclusive end (bp).
    #[getter]
    fn end(&self) -> u32 {
        self.0.end
    }

    /// Columns after the third, tab-joined, or None.
    #[getter]
    fn rest(&self) -> Option<&str> {
        self.0.rest.as_deref()
    }

    /// Width in bp.
    fn __len__(&self) -> usize {
        self.0.width() as usize
    }

    fn __repr__(&self) -> String {
        match &self.0.rest {
            None => format!("Region({:?}, {}, {})", self.0.chr, self.0.start, self.0.end),
            Some(r) => format!(
                "Region({:?}, {}, {}, rest={:?})",
                self.0.chr, self.0.start, self.0.end, r
            ),
        }
    }

    /// The token string `chr:start-end`.
    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __getnewargs__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (
            self.0.chr.clone(),
            self.0.start,
            self.0.end,
            self.0.rest.clone(),
        )
            .into_pyobject(py)
    }
}
