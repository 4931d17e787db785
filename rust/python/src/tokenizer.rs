//! The core tokenizer behind `atacformer.Tokenizer`: immutable, shared through an `Arc`,
//! and pickled through its compact state.

use std::sync::Arc;

use atacformer_core::batch::{tokenize_batch_with, Cell};
use atacformer_core::pad::Truncation;
use atacformer_core::ragged::RaggedRef;
use atacformer_core::{state, ChromNames, Coverage, Special, TokenId, Tokenizer, SPECIAL_NAMES};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::convert::{self, extract_query, Query};
use crate::errors;
use crate::ragged::{coverage_dict, PyRagged};
use crate::region_set::PyRegionSet;

/// `(input_ids, attention_mask, (intervals, overlapping, input_bp), coverage)`, the
/// arrays 1-D int64, the coverage a dict or None.
type IdsAndMaskAndCounts<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    (u64, u64, u64),
    Option<Py<PyDict>>,
);

/// Token ids, `(intervals, overlapping, input_bp)` and the coverage when asked for.
type CountedIds<T> = (Vec<T>, (u64, u64, u64), Option<Coverage>);

/// An immutable interval tokenizer over one universe.
#[pyclass(name = "Tokenizer", module = "atacformer._core", frozen)]
pub struct PyTokenizer(pub Arc<Tokenizer>);

impl PyTokenizer {
    fn load(
        py: Python<'_>,
        f: impl FnOnce() -> atacformer_core::Result<Tokenizer> + Send,
    ) -> errors::Result<Self> {
        Ok(PyTokenizer(Arc::new(py.detach(f)?)))
    }

    /// Token ids of any accepted region input, with the GIL released.
    pub fn ids_of<T: TokenId>(&self, regions: &Bound<'_, PyAny>) -> errors::Result<Vec<T>> {
        Ok(self.counted_ids_of(regions, ChromNames::Auto, None)?.0)
    }

    /// Token ids of any accepted region input, what it held (intervals, overlapping, total
    /// bp) and, when nothing overlapped or it held at least `coverage_from` intervals, its
    /// coverage, all gathered in the same pass, with the GIL released.
    fn counted_ids_of<T: TokenId>(
        &self,
        regions: &Bound<'_, PyAny>,
        names: ChromNames,
        coverage_from: Option<u64>,
    ) -> errors::Result<CountedIds<T>> {
        let py = regions.py();
        let tok = &*self.0;
        let wanted = |n: u64, hit: u64| coverage_from.is_some_and(|from| hit == 0 || n >= from);
        let run = |set: &atacformer_core::RegionSet| {
            let mut out = Vec::with_capacity(set.len() + 1);
            let (n, tally) = tok.tokenize_set_tallied(set, names, &mut out);
            let counts = (n.intervals, n.in_universe, tally.input_bp());
            // Naming the counts allocates: only when the caller will look at them.
            let cov = wanted(n.intervals, n.in_universe).then(|| tally.finish());
            (out, counts, cov)
        };
        match extract_query(regions)? {
            Query::Set(set) => Ok(py.detach(|| run(&set))),
            Query::Owned(set) => Ok(py.detach(|| run(&set))),
            Query::Path(path) => Ok(py.detach(|| {
                let mut out = Vec::new();
                let (n, cov) = tok.tokenize_bed_counted(&path, names, &mut out)?;
                let counts = (n.intervals, n.in_universe, cov.input_bp);
                let cov = wanted(n.intervals, n.in_universe).then_some(cov);
                Ok::<_, atacformer_core::Error>((out, counts, cov))
            })?),
        }
    }

    /// Tokenizes cells in parallel, with the GIL released, into one unnamed ragged buffer.
    fn batch(
        &self,
        py: Python<'_>,
        queries: &[Query],
        names: ChromNames,
    ) -> errors::Result<PyRagged> {
        let batch: Vec<Cell<'_>> = queries
            .iter()
            .map(|q| match q {
                Query::Set(s) => Cell::Set(s),
                Query::Owned(s) => Cell::Set(s),
                Query::Path(p) => Cell::Bed(p),
            })
            .collect();
        let tok = &*self.0;
        let cells = py.detach(|| tokenize_batch_with(tok, &batch, names))?;
        Ok(PyRagged::from_core(py, cells)?)
    }

    fn id_of(&self, token: &str) -> u32 {
        self.0
            .token_to_id(token)
            .unwrap_or_else(|| self.0.special_id(Special::Unk))
    }

    fn token_or_unk(&self, id: i64) -> String {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.0.id_to_token(id))
            .unwrap_or_else(|| self.0.special_token(Special::Unk).to_owned())
    }
}

#[pymethods]
impl PyTokenizer {
    /// Loads from a `.bed`/`.bed.gz` universe, a `.toml` config or a saved directory.
    #[new]
    fn new(py: Python<'_>, path: &Bound<'_, PyAny>) -> errors::Result<Self> {
        let path = convert::path_arg(path)?;
        Self::load(py, move || Tokenizer::from_auto(&path))
    }

    #[staticmethod]
    fn from_bed(py: Python<'_>, path: &Bound<'_, PyAny>) -> errors::Result<Self> {
        let path = convert::path_arg(path)?;
        Self::load(py, move || Tokenizer::from_bed(&path))
    }

    #[staticmethod]
    fn from_config(py: Python<'_>, path: &Bound<'_, PyAny>) -> errors::Result<Self> {
        let path = convert::path_arg(path)?;
        Self::load(py, move || Tokenizer::from_config(&path))
    }

    #[staticmethod]
    fn from_dir(py: Python<'_>, path: &Bound<'_, PyAny>) -> errors::Result<Self> {
        let path = convert::path_arg(path)?;
        Self::load(py, move || Tokenizer::from_dir(&path))
    }

    #[staticmethod]
    fn _from_state(py: Python<'_>, state: &[u8]) -> errors::Result<Self> {
        Self::load(py, move || state::from_bytes(state))
    }

    /// Writes `universe.bed.gz` and `tokenizer.toml` into `directory`.
    fn save_pretrained(&self, py: Python<'_>, directory: &Bound<'_, PyAny>) -> errors::Result<()> {
        let directory = convert::path_arg(directory)?;
        let tok = &*self.0;
        Ok(py.detach(|| tok.save_pretrained(&directory))?)
    }

    /// The token ids of one region input, as a one-cell `Ragged` (with its qc and
    /// coverage).
    #[pyo3(signature = (regions, chrom_names = None))]
    fn encode(
        &self,
        regions: &Bound<'_, PyAny>,
        chrom_names: Option<&Bound<'_, PyAny>>,
    ) -> errors::Result<PyRagged> {
        let names = convert::chrom_names_arg(chrom_names)?;
        let query = extract_query(regions)?;
        self.batch(regions.py(), std::slice::from_ref(&query), names)
    }

    /// `(input_ids, attention_mask, (intervals, overlapping, input_bp), coverage)` of one
    /// region input: the one row of its one-cell ragged ids padded to their own length
    /// (int64, moved from Rust), what the input held, and its coverage (the dict of
    /// `Ragged.coverage`, counted in the same pass) when nothing overlapped or it held at
    /// least `coverage_from` intervals (None otherwise, and always None without
    /// `coverage_from`), so that a warning needs no second pass.
    #[pyo3(signature = (regions, chrom_names = None, coverage_from = None))]
    fn encode_row<'py>(
        &self,
        regions: &Bound<'py, PyAny>,
        chrom_names: Option<&Bound<'py, PyAny>>,
        coverage_from: Option<u64>,
    ) -> errors::Result<IdsAndMaskAndCounts<'py>> {
        let names = convert::chrom_names_arg(chrom_names)?;
        let (ids, counts, cov) = self.counted_ids_of::<i32>(regions, names, coverage_from)?;
        let offsets = [0, ids.len() as i64];
        let (row, mask) = RaggedRef::new(&ids, &offsets)?.pad(ids.len(), 0, Truncation::First)?;
        let py = regions.py();
        let cov = cov.map(|c| coverage_dict(py, c)).transpose()?;
        Ok((row.into_pyarray(py), mask.into_pyarray(py), counts, cov))
    }

    /// `(span, bp, regions)` of the universe: the sum of its chromosomes' last region
    /// ends, its regions' total length (bp) and its number of regions.
    #[getter]
    fn universe_extent(&self) -> (u64, u64, u64) {
        let u = self.0.universe();
        let (span, bp) = u.extent();
        (span, bp, u.len() as u64)
    }

    /// Token ids of many cells, tokenized in parallel, as a `Ragged`.
    #[pyo3(signature = (cells, chrom_names = None))]
    fn encode_batch(
        &self,
        cells: &Bound<'_, PyAny>,
        chrom_names: Option<&Bound<'_, PyAny>>,
    ) -> errors::Result<PyRagged> {
        let names = convert::chrom_names_arg(chrom_names)?;
        let py = cells.py();
        let queries = cells
            .try_iter()
            .map_err(|_| {
                errors::wrong_type(format!(
                    "cells must be an iterable of region inputs, got {}",
                    convert::type_name(cells)
                ))
            })?
            .enumerate()
            .map(|(i, c)| {
                extract_query(&c?).map_err(|e| {
                    let msg = format!("cell {i}: {}", e.value(py));
                    PyErr::from_type(e.get_type(py), msg)
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.batch(py, &queries, names)
    }

    /// Token strings of the regions.
    fn tokenize(&self, regions: &Bound<'_, PyAny>) -> errors::Result<Vec<String>> {
        Ok(self
            .ids_of::<i64>(regions)?
            .into_iter()
            .map(|id| self.token_or_unk(id))
            .collect())
    }

    /// Id of a token string, or the unk id.
    fn token_to_id(&self, token: &Bound<'_, PyAny>) -> PyResult<u32> {
        Ok(self.id_of(&convert::text(token, "a token")?))
    }

    /// Ids of token strings (unk for unknown ones).
    fn tokens_to_ids(&self, tokens: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        Ok(convert::strings(tokens, "tokens")?
            .iter()
            .map(|t| self.id_of(t))
            .collect())
    }

    /// Token strings of ids (unk for unknown ones).
    fn ids_to_tokens(&self, ids: PyReadonlyArray1<'_, i64>) -> Vec<String> {
        ids.as_array()
            .iter()
            .map(|&id| self.token_or_unk(id))
            .collect()
    }

    /// The universe regions of `ids`, skipping special tokens.
    fn decode_regions(&self, ids: PyReadonlyArray1<'_, i64>) -> PyRegionSet {
        let ids = ids.as_array();
        let set = match ids.as_slice() {
            Some(s) => self.0.decode_regions(s),
            None => self.0.decode_regions(&ids.to_vec()),
        };
        PyRegionSet::new(set)
    }

    /// The universe as a RegionSet (ids are positions).
    fn universe(&self) -> PyRegionSet {
        PyRegionSet::new(self.0.universe().regions().clone())
    }

    /// Number of universe regions plus the seven special tokens.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    /// Number of universe regions (the first special id).
    #[getter]
    fn universe_size(&self) -> usize {
        self.0.universe().len()
    }

    /// The special token strings in id order: unk, pad, mask, cls, eos, bos, sep.
    #[getter]
    fn special_tokens(&self) -> Vec<String> {
        self.0.special_tokens().0.to_vec()
    }

    /// Names of the special tokens in id order.
    #[getter]
    fn special_names(&self) -> Vec<&'static str> {
        SPECIAL_NAMES.to_vec()
    }

    /// `"bits"` or `"ailist"`, as read from the config.
    #[getter]
    fn tokenizer_type(&self) -> &'static str {
        self.0.tokenizer_type().as_str()
    }

    /// Bytes held by the universe columns, overlap index and (once made) genomic order.
    #[getter]
    fn heap_bytes(&self) -> usize {
        self.0.universe().heap_bytes()
    }

    /// Every token string mapped to its id.
    fn get_vocab<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for id in 0..self.0.vocab_size() as u32 {
            if let Some(t) = self.0.id_to_token(id) {
                d.set_item(t, id)?;
            }
        }
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyTokenizer>()
            .is_ok_and(|o| Arc::ptr_eq(&self.0, &o.get().0) || *self.0 == *o.get().0)
    }

    fn __repr__(&self) -> String {
        format!(
            "Tokenizer({} universe regions, vocab_size={})",
            self.0.universe().len(),
            self.0.vocab_size()
        )
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let tok = &*self.0;
        let bytes = py.detach(|| state::to_bytes(tok));
        let ctor = py.get_type::<PyTokenizer>().getattr("_from_state")?;
        (ctor, (PyBytes::new(py, &bytes),)).into_pyobject(py)
    }
}
