//! `RegionSet`: regions in file order, stored as columns in the core.
//!
//! The binding is frozen and safe to share between threads: it holds an `Arc` of an
//! immutable core set behind a lock that is held only to clone or replace the `Arc`.
//! Readers (tokenizing, indexing, iterating) work on such a snapshot with no lock held, and
//! `sort()` sorts a copy and then swaps it in, so a reader sees the old order or the new
//! one, never a half-sorted set or a borrow error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use atacformer_core::RegionSet;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice, PyTuple, PyType};

use crate::convert;
use crate::errors::{self, invalid, out_of_range, wrong_type};
use crate::region::PyRegion;

/// An ordered set of regions (0-based, half-open). Keeps file order until `sort()`.
#[pyclass(name = "RegionSet", module = "atacformer._core", frozen)]
pub struct PyRegionSet {
    inner: RwLock<Arc<RegionSet>>,
    path: Option<PathBuf>,
}

impl PyRegionSet {
    pub fn new(inner: RegionSet) -> Self {
        PyRegionSet {
            inner: RwLock::new(Arc::new(inner)),
            path: None,
        }
    }

    /// The regions as they are now; a later `sort()` does not change this snapshot.
    pub fn snapshot(&self) -> Arc<RegionSet> {
        // The lock guards only the swap of an `Arc`, which cannot panic half-way, so a
        // poisoned lock still holds a whole set.
        Arc::clone(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn read(py: Python<'_>, path: PathBuf) -> errors::Result<Self> {
        let inner = py.detach(|| RegionSet::from_bed(&path))?;
        Ok(PyRegionSet {
            inner: RwLock::new(Arc::new(inner)),
            path: Some(path),
        })
    }
}

/// Index `i` (negative counts from the end) of a set of `n` regions, checked.
fn index(i: isize, n: usize) -> PyResult<usize> {
    let n = n as isize;
    let j = if i < 0 { i + n } else { i };
    if (0..n).contains(&j) {
        Ok(j as usize)
    } else {
        Err(out_of_range(format!(
            "region index {i} out of range for a set of {n}"
        )))
    }
}

/// Region `i` of `set` as a Python `Region`.
fn region(set: &RegionSet, i: usize) -> PyResult<PyRegion> {
    set.get(i)
        .map(PyRegion)
        .ok_or_else(|| out_of_range("region index out of range"))
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
            return Ok(PyRegionSet::new((*set.get().snapshot()).clone()));
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
        self.snapshot().len()
    }

    fn __getitem__<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let set = slf.get().snapshot();
        if let Ok(slice) = key.cast::<PySlice>() {
            let step = slice.getattr("step")?;
            if !step.is_none() && step.extract::<i128>().is_ok_and(|s| s == 0) {
                return Err(invalid("slice step cannot be zero"));
            }
            let ind = slice
                .indices(set.len() as isize)
                .map_err(|_| wrong_type("slice indices must be integers or None"))?;
            let picked: Vec<usize> = (0..ind.slicelength)
                .map(|k| (ind.start + k as isize * ind.step) as usize)
                .collect();
            let picked = py.detach(|| set.select(&picked));
            return Ok(Bound::new(py, PyRegionSet::new(picked))?.into_any());
        }
        let i: isize = key.extract().map_err(|_| {
            if key.is_instance_of::<pyo3::types::PyInt>() {
                out_of_range(format!("region index {key} out of range"))
            } else {
                wrong_type("RegionSet indices must be integers or slices")
            }
        })?;
        let i = index(i, set.len())?;
        Ok(Bound::new(py, region(&set, i)?)?.into_any())
    }

    /// Iterates over the regions in the order they had when the iteration began.
    fn __iter__(&self) -> RegionSetIter {
        RegionSetIter {
            set: self.snapshot(),
            next: AtomicUsize::new(0),
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyRegionSet>()
            .is_ok_and(|o| self.snapshot().same_regions(&o.get().snapshot()))
    }

    fn __repr__(&self) -> String {
        let n = self.snapshot().len();
        match &self.path {
            Some(p) => format!("RegionSet({n} regions from {:?})", p.display().to_string()),
            None => format!("RegionSet({n} regions)"),
        }
    }

    /// Chromosome of each region, as a NumPy array of str.
    #[getter]
    fn chroms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let set = self.snapshot();
        let np = py.import("numpy")?;
        let names = np.call_method1("asarray", (set.chrom_names().to_vec(), "str"))?;
        let idx = set.chrom_indices().to_vec().into_pyarray(py);
        names.call_method1("take", (idx,))
    }

    /// Starts (0-based, bp) as an int64 NumPy array.
    #[getter]
    fn starts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        u32s_to_i64(self.snapshot().starts()).into_pyarray(py)
    }

    /// Ends (exclusive, bp) as an int64 NumPy array.
    #[getter]
    fn ends<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        u32s_to_i64(self.snapshot().ends()).into_pyarray(py)
    }

    /// Sorts by chromosome name, then start, then end: a sorted copy replaces the regions,
    /// so other threads reading the set meanwhile see the old order or the new one.
    fn sort(&self, py: Python<'_>) {
        let old = self.snapshot();
        let sorted = py.detach(|| {
            let mut set = (*old).clone();
            set.sort();
            Arc::new(set)
        });
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = sorted;
    }

    /// Mean region width in bp (0.0 for an empty set).
    fn mean_region_width(&self) -> f64 {
        self.snapshot().mean_region_width()
    }

    /// MD5 digest of the chromosomes, starts and ends in the current order.
    #[getter]
    fn identifier(&self, py: Python<'_>) -> String {
        let set = self.snapshot();
        py.detach(|| set.identifier())
    }

    /// Writes BED; gzip when the path ends in `.gz`. Replaces the file atomically.
    fn to_bed(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> errors::Result<()> {
        let path = convert::path_arg(path)?;
        let set = self.snapshot();
        Ok(py.detach(|| set.to_bed(&path))?)
    }

    /// A pandas DataFrame with columns `chr`, `start`, `end` (and `rest` when present);
    /// without pandas, a `MissingDependencyError` (an `ImportError`) naming the extra.
    fn to_pandas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let set = self.snapshot();
        let pd = py.import("atacformer._deps")?.call_method1(
            "require",
            ("pandas", "RegionSet.to_pandas()", "atacformer[pandas]"),
        )?;
        let cols = PyDict::new(py);
        let np = py.import("numpy")?;
        let names = np.call_method1("asarray", (set.chrom_names().to_vec(), "str"))?;
        let idx = set.chrom_indices().to_vec().into_pyarray(py);
        cols.set_item("chr", names.call_method1("take", (idx,))?)?;
        cols.set_item("start", u32s_to_i64(set.starts()).into_pyarray(py))?;
        cols.set_item("end", u32s_to_i64(set.ends()).into_pyarray(py))?;
        if (0..set.len()).any(|i| set.rest(i).is_some()) {
            let rest: Vec<Option<&str>> = (0..set.len()).map(|i| set.rest(i)).collect();
            cols.set_item("rest", rest)?;
        }
        pd.getattr("DataFrame")?.call1((cols,))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let s = self.snapshot();
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
        names: &Bound<'_, PyAny>,
        chroms: PyReadonlyArray1<'_, u32>,
        starts: PyReadonlyArray1<'_, u32>,
        ends: PyReadonlyArray1<'_, u32>,
        rest: Option<&Bound<'_, PyAny>>,
    ) -> errors::Result<Self> {
        let names = convert::strings(names, "chromosome names")?;
        let rest: Option<Vec<Option<String>>> = match rest.filter(|r| !r.is_none()) {
            None => None,
            Some(r) => Some(
                convert::collect::<Option<Bound<'_, PyAny>>>(r, "rest")?
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_ref()
                            .filter(|x| !x.is_none())
                            .map(|x| Ok(convert::text(x, &format!("rest[{i}]"))?.into_owned()))
                            .transpose()
                    })
                    .collect::<PyResult<_>>()?,
            ),
        };
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

/// An independent cursor over a snapshot of a `RegionSet`; each `iter()` gets its own.
/// Frozen, with an atomic position, so even one cursor shared by threads never errors.
#[pyclass(module = "atacformer._core", frozen)]
pub struct RegionSetIter {
    set: Arc<RegionSet>,
    next: AtomicUsize,
}

#[pymethods]
impl RegionSetIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> PyResult<Option<PyRegion>> {
        let n = self.set.len();
        match self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| {
                (i < n).then_some(i + 1)
            }) {
            Ok(i) => Ok(Some(region(&self.set, i)?)),
            Err(_) => Ok(None),
        }
    }
}
