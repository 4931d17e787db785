//! `atacformer._core`: the PyO3 adapter over `atacformer-core`. It converts Python inputs
//! into owned core values, releases the GIL for the work, moves results out as NumPy
//! arrays, and maps core errors to the `AtacformerError` hierarchy.

use atacformer_core::tokenizer::{CONFIG_FILE, UNIVERSE_FILES};
use atacformer_core::SPECIAL_NAMES;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod cells;
mod convert;
mod errors;
mod ragged;
mod region;
mod region_set;
mod tokenizer;

/// Sets the number of threads used by batch calls (0 restores the default).
#[pyfunction]
fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    const MOST: u64 = 4096;
    let n = convert::non_negative(n, "the number of threads")?;
    if n > MOST {
        return Err(errors::invalid(format!(
            "the number of threads must be at most {MOST}, got {n}"
        )));
    }
    atacformer_core::parallel::set_num_threads(n as usize);
    Ok(())
}

/// Number of threads batch calls will use (1 in a forked child).
#[pyfunction]
fn get_num_threads() -> usize {
    atacformer_core::parallel::num_threads()
}

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    atacformer_core::parallel::disable_after_fork();
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // A forked child (e.g. a DataLoader worker) cannot use the parent's thread pool.
    #[cfg(unix)]
    // SAFETY: registering a plain function that only stores to an atomic.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    }
    errors::register(m)?;
    m.add_class::<region::PyRegion>()?;
    m.add_class::<region_set::PyRegionSet>()?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<ragged::PyRagged>()?;
    m.add_class::<cells::PyPeakTable>()?;
    m.add_function(wrap_pyfunction!(cells::tokenize_fragments, m)?)?;
    m.add_function(wrap_pyfunction!(cells::read_barcode_file, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Facts stated once, in the core, for the Python layer to read.
    m.add("SPECIAL_TOKEN_NAMES", PyTuple::new(m.py(), SPECIAL_NAMES)?)?;
    m.add("DEFAULT_SEED", convert::DEFAULT_SEED)?;
    m.add("CONFIG_FILE", CONFIG_FILE)?;
    m.add("UNIVERSE_FILES", PyTuple::new(m.py(), UNIVERSE_FILES)?)?;
    Ok(())
}
