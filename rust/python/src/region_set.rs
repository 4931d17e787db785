//! `RegionSet`: regions in file order, stored as columns in the core.

use std::path::PathBuf;

use atacformer_core::RegionSet;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice, PyTuple, PyType};

use crate::convert;
use crate::errors::{self, invalid, out_of_range, wrong_type};
use crate::region::PyRegion;

/// An ordered set of regions (0-based, half-open). Keeps file order until `sort()`.
#[pyclass(name = "RegionSet", module = "atacformer._core")]
pub struct PyRegionSet {
    pub inner: RegionSet,
    pub path: Option<PathBuf>,
}

impl PyRegionSet {
    pub fn new(inner: RegionSet) -> Self {
        PyRegionSet { inner, path: None }
    }

    fn read(py: Python<'_>, path: PathBuf) -> errors::Result<Self> {
        let inner = py.detach(|| RegionSet::from_bed(&path))?;
        Ok(PyRegionSet {
            inner,
            path: Some(path),
        })
    }

    fn index(&self, i: isize) -> PyResult<usize> {
        let n = self.inner.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if (0..n).contains(&j) {
            Ok(j as usize)
        } else {
            Err(out_of_range(format!(
                "region index {i} out of range for a set of {n}"
            )))
        }
    }

    fn region(&self, i: usize) -> PyResult<PyRegion> {
        self.inner
            .get(i)
            .map(PyRegion)
            .ok_or_else(|| out_of_range("region index out of range"))
    }
}

fn u32s_to_i64(v: &[u32]) -> Vec<i64> {
    v.iter().map(|&x| i64::from(x)).collect()
}

#[pymethods]
impl PyRegionSet {
    /// Reads a BED file (plain or gzip).
    #[new]
    fn py_new(py: Python<'_>, path: &Bound<'_, PyAny>) -> errors::Result<Self> {
        Self::read(py, convert::path_arg(path)?)
    }

    /// Reads a BED file (plain or gzip, detected from its first bytes).
    #[classmethod]
    fn from_bed(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
    ) -> errors::Result<Self> {
        Self::read(py, convert::path_arg(path)?)
    }

    /// Builds a set from an iterable of `Region`s or objects with `chr`/`start`/`end`.
    #[classmethod]
    fn from_regions(_cls: &Bound<'_, PyType>, regions: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(set) = regions.cast::<PyRegionSet>() {
            return Ok(PyRegionSet::new(set.borrow().inner.clone()));
        }
        Ok(PyRegionSet::new(convert::from_iterable(regions)?))
    }

    /// Builds a set from columns: chromosome names, starts and ends (lists or arrays).
    #[classmethod]
    fn from_arrays(
        _cls: &Bound<'_, PyType>,
        chroms: &Bound<'_, PyAny>,
        starts: &Bound<'_, PyAny>,
        ends: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(PyRegionSet::new(convert::from_arrays(
            chroms, starts, ends,
        )?))
    }

    /// Peaks from AnnData `var_names` (`chr1:100-600` or `chr1-100-600`), or the index of
    /// the first name that is not one.
    #[staticmethod]
    fn _from_peak_names(py: Python<'_>, names: &Bound<'_, PyList>) -> PyResult<Py<PyAny>> {
        Ok(match convert::from_peak_names(names)? {
            Ok(set) => PyRegionSet::new(set).into_pyobject(py)?.into_any().unbind(),
            Err(i) => i.into_pyobject(py)?.into_any().unbind(),
        })
    }

    /// Peaks from a list of chromosome names (a DataFrame column) and coordinate arrays.
    #[staticmethod]
    fn _from_chrom_list(
        chroms: &Bound<'_, PyList>,
        starts: PyReadonlyArray1<'_, u32>,
        ends: PyReadonlyArray1<'_, u32>,
    ) -> errors::Result<Self> {
        let (names, codes) = convert::intern_chroms(chroms)?;
        let set = RegionSet::from_interned(
            names,
            codes,
            starts.as_array().to_vec(),
            ends.as_array().to_vec(),
        )?;
        Ok(PyRegionSet::new(set))
    }

    /// Builds a set from a DataFrame with `chr` (or `chrom`), `start` and `end` columns.
    #[classmethod]
    fn from_pandas(_cls: &Bound<'_, PyType>, df: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PyRegionSet::new(convert::from_pandas(df)?))
    }

    /// The file this set was read from, if any.
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __getitem__<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.borrow();
        if let Ok(slice) = key.cast::<PySlice>() {
            let ind = slice.indices(this.inner.len() as isize)?;
            let picked: Vec<usize> = (0..ind.slicelength)
                .map(|k| (ind.start + k as isize * ind.step) as usize)
                .collect();
            return Ok(Bound::new(py, PyRegionSet::new(this.inner.select(&picked)))?.into_any());
        }
        let i: isize = key.extract().map_err(|_| {
            if key.is_instance_of::<pyo3::types::PyInt>() {
                out_of_range(format!("region index {key} out of range"))
            } else {
                wrong_type("RegionSet indices must be integers or slices")
            }
        })?;
        let i = this.index(i)?;
        Ok(Bound::new(py, this.region(i)?)?.into_any())
    }

    fn __iter__(slf: Bound<'_, Self>) -> RegionSetIter {
        RegionSetIter {
            set: slf.unbind(),
            next: 0,
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyRegionSet>()
            .is_ok_and(|o| self.inner.same_regions(&o.borrow().inner))
    }

    fn __repr__(&self) -> String {
        match &self.path {
            Some(p) => format!(
                "RegionSet({} regions from {:?})",
                self.inner.len(),
                p.display().to_string()
            ),
            None => format!("RegionSet({} regions)", self.inner.len()),
        }
    }

    /// Chromosome of each region, as a NumPy array of str.
    #[getter]
    fn chroms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let np = py.import("numpy")?;
        let names = np.call_method1("asarray", (self.inner.chrom_names().to_vec(), "str"))?;
        let idx = self.inner.chrom_indices().to_vec().into_pyarray(py);
        names.call_method1("take", (idx,))
    }

    /// Starts (0-based, bp) as an int64 NumPy array.
    #[getter]
    fn starts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        u32s_to_i64(self.inner.starts()).into_pyarray(py)
    }

    /// Ends (exclusive, bp) as an int64 NumPy array.
    #[getter]
    fn ends<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        u32s_to_i64(self.inner.ends()).into_pyarray(py)
    }

    /// Sorts in place by chromosome name, then start, then end.
    fn sort(&mut self, py: Python<'_>) {
        let inner = &mut self.inner;
        py.detach(|| inner.sort());
    }

    /// Mean region width in bp (0.0 for an empty set).
    fn mean_region_width(&self) -> f64 {
        self.inner.mean_region_width()
    }

    /// MD5 digest of the chromosomes, starts and ends in the current order.
    #[getter]
    fn identifier(&self, py: Python<'_>) -> String {
        let inner = &self.inner;
        py.detach(|| inner.identifier())
    }

    /// Writes BED; gzip when the path ends in `.gz`. Replaces the file atomically.
    fn to_bed(&self, py: Python<'_>, path: PathBuf) -> errors::Result<()> {
        let inner = &self.inner;
        Ok(py.detach(|| inner.to_bed(&path))?)
    }

    /// A pandas DataFrame with columns `chr`, `start`, `end` (and `rest` when present).
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let pd = py.import("pandas")?;
        let cols = PyDict::new(py);
        cols.set_item("chr", slf.getattr("chroms")?)?;
        cols.set_item("start", slf.getattr("starts")?)?;
        cols.set_item("end", slf.getattr("ends")?)?;
        let this = slf.borrow();
        if (0..this.inner.len()).any(|i| this.inner.rest(i).is_some()) {
            let rest: Vec<Option<&str>> =
                (0..this.inner.len()).map(|i| this.inner.rest(i)).collect();
            cols.set_item("rest", rest)?;
        }
        pd.getattr("DataFrame")?.call1((cols,))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.borrow();
        let s = &this.inner;
        let rest: Option<Vec<Option<&str>>> = (0..s.len())
            .any(|i| s.rest(i).is_some())
            .then(|| (0..s.len()).map(|i| s.rest(i)).collect());
        let state = (
            s.chrom_names().to_vec(),
            s.chrom_indices().to_vec().into_pyarray(py),
            s.starts().to_vec().into_pyarray(py),
            s.ends().to_vec().into_pyarray(py),
            rest,
        );
        let ctor = py.get_type::<PyRegionSet>().getattr("_from_state")?;
        (ctor, state).into_pyobject(py)
    }

    #[staticmethod]
    fn _from_state(
        names: Vec<String>,
        chroms: PyReadonlyArray1<'_, u32>,
        starts: PyReadonlyArray1<'_, u32>,
        ends: PyReadonlyArray1<'_, u32>,
        rest: Option<Vec<Option<String>>>,
    ) -> errors::Result<Self> {
        let set = RegionSet::from_interned(
            names,
            chroms.as_array().to_vec(),
            starts.as_array().to_vec(),
            ends.as_array().to_vec(),
        )?;
        let set = match rest {
            None => set,
            Some(rest) => {
                if rest.len() != set.len() {
                    return Err(invalid("RegionSet state: rest has the wrong length").into());
                }
                let mut out = RegionSet::new();
                for (i, r) in rest.into_iter().enumerate() {
                    out.push(set.chrom(i), set.starts()[i], set.ends()[i], r)
                        .map_err(|p| invalid(p.to_string()))?;
                }
                out
            }
        };
        Ok(PyRegionSet::new(set))
    }
}

/// An independent cursor over a `RegionSet`; each `iter()` gets its own.
#[pyclass(module = "atacformer._core")]
pub struct RegionSetIter {
    set: Py<PyRegionSet>,
    next: usize,
}

#[pymethods]
impl RegionSetIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyRegion>> {
        let set = self.set.borrow(py);
        if self.next >= set.inner.len() {
            return Ok(None);
        }
        let r = set.region(self.next)?;
        self.next += 1;
        Ok(Some(r))
    }
}
