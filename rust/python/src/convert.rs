//! Pulling Python arguments into owned core values: checked integers, seeds and
//! truncation rules, and region inputs.
//!
//! Accepted region forms: a `RegionSet`, a BED path (`str` or `os.PathLike`), a pandas DataFrame
//! with `chr`/`chrom`, `start`, `end` columns, or an iterable of `Region`s, of objects with
//! `chr`/`start`/`end` attributes, or of `(chr, start, end)` tuples.

use std::path::PathBuf;

use atacformer_core::gather::parse_peak_name;
use atacformer_core::pad::Truncation;
use atacformer_core::{ChromNames, RegionSet};
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{invalid, wrong_type};
use crate::region::{coord, PyRegion};
use crate::region_set::PyRegionSet;

/// The seed of random truncation when none is given (the tokenizer's default too).
pub const DEFAULT_SEED: u64 = 42;

/// The name of `obj`'s type, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// A Python integer as an `i128`: an int too wide for that is `{what} {too_large} {value}`
/// (an InvalidInputError), anything else a type error.
fn wide_int(value: &Bound<'_, PyAny>, what: &str, too_large: &str) -> PyResult<i128> {
    value.extract().map_err(|_| {
        if value.is_instance_of::<PyInt>() {
            invalid(format!("{what} {too_large} {value}"))
        } else {
            wrong_type(format!(
                "{what} must be an integer, got {}",
                type_name(value)
            ))
        }
    })
}

/// A Python integer argument that must not be negative (any size, so a huge value is
/// reported rather than overflowing).
pub fn non_negative(value: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    let v = wide_int(value, what, "is too large:")?;
    u64::try_from(v).map_err(|_| invalid(format!("{what} must be 0 or more, got {v}")))
}

/// A non-negative length, saturating at `usize::MAX` (a limit beyond memory is no limit).
pub fn length(value: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    Ok(usize::try_from(non_negative(value, what)?).unwrap_or(usize::MAX))
}

/// A flag argument: `True` or `False` (or a NumPy bool); `None` or absent gives `default`.
/// A string such as `'no'` is a type error rather than a truthy value.
pub fn flag(value: Option<&Bound<'_, PyAny>>, what: &str, default: bool) -> PyResult<bool> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(default);
    };
    if value.is_instance_of::<PyBool>() {
        return value.extract();
    }
    let numpy_bool = value.get_type().fully_qualified_name().is_ok_and(|n| {
        n.to_cow()
            .is_ok_and(|n| n == "numpy.bool" || n == "numpy.bool_")
    });
    if numpy_bool {
        return value.is_truthy();
    }
    Err(wrong_type(format!(
        "{what} must be True or False, got {}",
        type_name(value)
    )))
}

/// A seed: any integer (Python's or NumPy's), taken modulo 2^64 (so negative seeds work).
pub fn seed(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    let index = value
        .py()
        .import("operator")?
        .call_method1("index", (value,))
        .map_err(|_| wrong_type(format!("seed must be an integer, got {}", type_name(value))))?;
    index.call_method1("__and__", (u64::MAX,))?.extract()
}

/// A Python integer argument that must fit in int64 (a NumPy id or a pad id).
pub fn signed(value: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() {
        return Err(wrong_type(format!("{what} must be an integer, got a bool")));
    }
    let v = wide_int(value, what, "must fit in int64, got")?;
    i64::try_from(v).map_err(|_| invalid(format!("{what} must fit in int64, got {v}")))
}

/// `"first"` or `"random"` (the default; with `seed`, else [`DEFAULT_SEED`]) as a core
/// truncation rule.
pub fn truncation(
    strategy: Option<&Bound<'_, PyAny>>,
    seed_arg: Option<&Bound<'_, PyAny>>,
) -> PyResult<Truncation> {
    let seed = seed_arg
        .filter(|s| !s.is_none())
        .map(seed)
        .transpose()?
        .unwrap_or(DEFAULT_SEED);
    let strategy = match strategy.filter(|s| !s.is_none()) {
        None => std::borrow::Cow::Borrowed("random"),
        Some(s) => text(s, "truncation_strategy")?,
    };
    match strategy.as_ref() {
        "first" => Ok(Truncation::First),
        "random" => Ok(Truncation::Random { seed }),
        other => Err(invalid(format!(
            "truncation_strategy must be 'random' or 'first', got {other:?}"
        ))),
    }
}

/// How many items to reserve room for before reading `obj`: its length only when that
/// is the true length (an exact `list` or `tuple`), otherwise nothing. A `__len__` is
/// the object's own claim, and a claim of 10^11 must not become an allocation.
pub fn size_hint(obj: &Bound<'_, PyAny>) -> usize {
    if obj.is_exact_instance_of::<PyList>() || obj.is_exact_instance_of::<PyTuple>() {
        obj.len().unwrap_or(0)
    } else {
        0
    }
}

/// The items of any iterable as a `Vec`, grown as they come (never reserved from a
/// `__len__`, unlike pyo3's `Vec<T>` arguments); `what` names the argument in errors.
pub fn collect<'py, T>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<T>>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    if obj.is_instance_of::<PyString>() {
        return Err(wrong_type(format!(
            "{what} must be a sequence, not a single string"
        )));
    }
    let iter = obj
        .try_iter()
        .map_err(|_| wrong_type(format!("{what} must be a sequence, got {}", type_name(obj))))?;
    let mut out = Vec::with_capacity(size_hint(obj));
    for (i, item) in iter.enumerate() {
        let item = item?;
        out.push(item.extract::<T>().map_err(|_| {
            wrong_type(format!(
                "{what}[{i}] has the wrong type ({})",
                type_name(&item)
            ))
        })?);
    }
    Ok(out)
}

/// The strings of any iterable, grown as they come; a non-string or a string that is not
/// valid Unicode (a lone surrogate) is an error naming its position.
pub fn strings(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(wrong_type(format!(
            "{what} must be a sequence of strings, not a single string"
        )));
    }
    let iter = obj.try_iter().map_err(|_| {
        wrong_type(format!(
            "{what} must be a sequence of strings, got {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::with_capacity(size_hint(obj));
    for (i, item) in iter.enumerate() {
        out.push(text(&item?, &format!("{what}[{i}]"))?.into_owned());
    }
    Ok(out)
}

/// A `str` argument as Rust text: another type is an `AtacformerTypeError`, a string that
/// is not valid Unicode (a lone surrogate such as `'\ud800'`) an `InvalidInputError`.
/// `chrom_names`: `"auto"` (the default, also for None) or `"exact"`.
pub fn chrom_names_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<ChromNames> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(ChromNames::Auto);
    };
    let s = text(value, "chrom_names")?;
    ChromNames::parse(&s)
        .ok_or_else(|| invalid(format!("chrom_names must be 'auto' or 'exact', got {s:?}")))
}

pub fn text<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<std::borrow::Cow<'a, str>> {
    let s = obj
        .cast::<PyString>()
        .map_err(|_| wrong_type(format!("{what} must be a string, got {}", type_name(obj))))?;
    s.to_cow().map_err(|_| {
        invalid(format!(
            "{what} is not valid Unicode (it holds a lone surrogate): {}",
            obj.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })
}

/// Region input after conversion: a snapshot of a set, a file to stream, or an owned set.
pub enum Query {
    Set(std::sync::Arc<RegionSet>),
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

pub fn extract_query(obj: &Bound<'_, PyAny>) -> PyResult<Query> {
    if let Ok(set) = obj.cast::<PyRegionSet>() {
        return Ok(Query::Set(set.get().snapshot()));
    }
    // Lists and tuples first: the common small-input case skips the attribute probes.
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return Ok(Query::Owned(from_iterable(obj)?));
    }
    if is_path_like(obj) {
        return Ok(Query::Path(path_arg(obj)?));
    }
    if is_dataframe(obj) {
        return Ok(Query::Owned(from_pandas(obj).map_err(PyErr::from)?));
    }
    Ok(Query::Owned(from_iterable(obj)?))
}

/// A path argument (`str` or `os.PathLike`); `os.fspath` errors (a `__fspath__` that
/// returns bytes or raises) and paths with NUL are `InvalidInputError`s.
pub fn path_arg(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if is_path_like(obj) {
        let path: PathBuf = obj.extract().map_err(|e: PyErr| {
            invalid(format!(
                "not a usable path ({}): {}",
                type_name(obj),
                e.value(obj.py())
            ))
        })?;
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(invalid(format!(
                "a path cannot contain NUL: {:?}",
                path.display().to_string()
            )));
        }
        Ok(path)
    } else {
        Err(wrong_type(format!(
            "expected a path (str or os.PathLike), got {}",
            type_name(obj)
        )))
    }
}

/// One coordinate from a Python object: an integer, or a float with an integral value.
pub fn coord_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u32> {
    if obj.is_instance_of::<PyBool>() {
        return Err(wrong_type(format!("{what} must be an integer, got a bool")));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i128>() {
            Ok(v) => coord(v, what),
            Err(_) => Err(invalid(format!(
                "{what} must be in 0..=4294967295, got {obj}"
            ))),
        };
    }
    // Floats and NumPy scalars: whole values only.
    if let Ok(v) = obj.extract::<f64>() {
        return float_coord(v).ok_or_else(|| {
            invalid(format!(
                "{what} must be a whole number in 0..=4294967295, got {v}"
            ))
        });
    }
    Err(wrong_type(format!(
        "{what} must be an integer, got {}",
        type_name(obj)
    )))
}

/// A float coordinate with no fractional part, in range.
fn float_coord(v: f64) -> Option<u32> {
    (v.is_finite() && v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v))
        .then_some(v as u32)
}

/// Reads `o.chr`, `o.start`, `o.end` (or a `(chr, start, end)` sequence).
fn push_object(set: &mut RegionSet, item: &Bound<'_, PyAny>, i: usize) -> PyResult<()> {
    if let Ok(r) = item.cast::<PyRegion>() {
        let r = &r.get().0;
        return set
            .push(&r.chr, r.start, r.end, r.rest.clone())
            .map_err(|p| invalid(format!("region {i}: {p}")));
    }
    // The common `(str, int, int)` tuple without the general path's checks; anything
    // unusual (bools, floats, values out of range) takes the general path and its messages.
    if let Ok(t) = item.cast::<PyTuple>() {
        if let (3, Ok(c), Ok(s), Ok(e)) = (t.len(), t.get_item(0), t.get_item(1), t.get_item(2)) {
            if s.is_exact_instance_of::<PyInt>() && e.is_exact_instance_of::<PyInt>() {
                let start = s.extract::<u32>();
                let end = e.extract::<u32>();
                if let (Ok(c), Ok(start), Ok(end)) = (c.cast::<PyString>(), start, end) {
                    if let Ok(c) = c.to_cow() {
                        return set
                            .push(&c, start, end, None)
                            .map_err(|p| invalid(format!("region {i}: {p}")));
                    }
                }
            }
        }
    }
    let (chr, start, end) = if item.is_instance_of::<PyTuple>() || item.is_instance_of::<PyList>() {
        let n = item.len()?;
        if n < 3 {
            return Err(invalid(format!(
                "region {i}: expected (chr, start, end), got {n} item(s)"
            )));
        }
        (item.get_item(0)?, item.get_item(1)?, item.get_item(2)?)
    } else {
        let attr = |name: &str| {
            item.getattr(name).map_err(|_| {
                    wrong_type(format!(
                        "region {i}: expected a Region, an object with chr/start/end, or a (chr, start, end) tuple; got {}",
                        type_name(item)
                    ))
                })
        };
        (attr("chr")?, attr("start")?, attr("end")?)
    };
    let chr = text(&chr, &format!("region {i}: chr"))?;
    let start = coord_of(&start, &format!("region {i}: start"))?;
    let end = coord_of(&end, &format!("region {i}: end"))?;
    set.push(&chr, start, end, None)
        .map_err(|p| invalid(format!("region {i}: {p}")))
}

/// Builds a set from any iterable of region-like objects.
pub fn from_iterable(obj: &Bound<'_, PyAny>) -> PyResult<RegionSet> {
    let iter = obj.try_iter().map_err(|_| {
        wrong_type(format!(
            "expected regions (a RegionSet, a BED path, a DataFrame or an iterable of regions), got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let mut set = RegionSet::new();
    set.reserve(size_hint(obj));
    for (i, item) in iter.enumerate() {
        push_object(&mut set, &item?, i)?;
    }
    Ok(set)
}

/// `obj` as a one-dimensional NumPy array and its dtype kind (`"i"`, `"f"`, `"O"`, ...).
fn array_1d<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<(Bound<'py, PyAny>, String)> {
    let arr = obj
        .py()
        .import("numpy")?
        .call_method1("asarray", (obj,))
        .map_err(|e| {
            invalid(format!(
                "{what} must be a flat array: {}",
                e.value(obj.py())
            ))
        })?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if ndim != 1 {
        return Err(invalid(format!(
            "{what} must be one-dimensional, got {ndim} dimension(s)"
        )));
    }
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    Ok((arr, kind))
}

/// `arr` cast to `dtype`, each value turned into a coordinate by `convert`; the first
/// value it refuses is reported by `bad(index, value)`.
fn each_value<T: numpy::Element + Copy + std::fmt::Display>(
    arr: &Bound<'_, PyAny>,
    dtype: &str,
    convert: impl Fn(T) -> Option<u32>,
    bad: impl Fn(usize, &dyn std::fmt::Display) -> PyErr,
) -> PyResult<Vec<u32>> {
    let a: PyReadonlyArray1<'_, T> = arr.call_method1("astype", (dtype,))?.extract()?;
    let values = a.as_array();
    values
        .iter()
        .enumerate()
        .map(|(i, &x)| convert(x).ok_or_else(|| bad(i, &x)))
        .collect()
}

/// Converts an array-like of integers (or of whole floats) to coordinates, naming the
/// first bad element.
fn coords(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    let (arr, kind) = array_1d(obj, what)?;
    let bad = |i: usize, v: &dyn std::fmt::Display| {
        invalid(format!(
            "{what}[{i}] must be a whole number in 0..=4294967295, got {v}"
        ))
    };
    match kind.as_str() {
        // Signed and unsigned separately, so no value wraps on the way.
        "i" => each_value::<i64>(&arr, "int64", |x| u32::try_from(x).ok(), bad),
        "u" => each_value::<u64>(&arr, "uint64", |x| u32::try_from(x).ok(), bad),
        "f" => each_value::<f64>(&arr, "float64", float_coord, bad),
        "O" => arr
            .call_method0("tolist")?
            .try_iter()?
            .enumerate()
            .map(|(i, x)| coord_of(&x?, &format!("{what}[{i}]")))
            .collect(),
        _ => Err(wrong_type(format!(
            "{what} must be integers, got an array of {}",
            arr.getattr("dtype")?
        ))),
    }
}

/// Chromosome names from an array-like: strings (or integers, written in decimal). A
/// missing value (`None`, NaN) is an error rather than the name "None" or "nan".
fn chrom_names(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let (arr, kind) = array_1d(obj, "chroms")?;
    if arr.len()? == 0 {
        return Ok(Vec::new()); // `np.asarray([])` is a float array
    }
    match kind.as_str() {
        "U" => strings(&arr.call_method0("tolist")?, "chroms"),
        "i" | "u" => strings(
            &arr.call_method1("astype", ("str",))?
                .call_method0("tolist")?,
            "chroms",
        ),
        "S" => arr
            .call_method0("tolist")?
            .try_iter()?
            .enumerate()
            .map(|(i, x)| {
                let x = x?;
                let bytes: &[u8] = x.cast::<pyo3::types::PyBytes>()?.as_bytes();
                std::str::from_utf8(bytes)
                    .map(str::to_owned)
                    .map_err(|_| invalid(format!("chroms[{i}] is not UTF-8: {bytes:?}")))
            })
            .collect(),
        "O" => arr
            .call_method0("tolist")?
            .try_iter()?
            .enumerate()
            .map(|(i, x)| {
                let x = x?;
                if x.is_instance_of::<PyString>() {
                    return Ok(text(&x, &format!("chroms[{i}]"))?.into_owned());
                }
                if x.is_instance_of::<PyInt>() && !x.is_instance_of::<PyBool>() {
                    return Ok(x.str()?.to_cow()?.into_owned());
                }
                if x.is_none() || x.is_instance_of::<PyFloat>() {
                    return Err(invalid(format!("chroms[{i}] is missing ({x})")));
                }
                Err(wrong_type(format!(
                    "chroms[{i}] must be a string, got {}",
                    type_name(&x)
                )))
            })
            .collect(),
        _ => Err(wrong_type(format!(
            "chromosome names must be strings, got an array of {}",
            arr.getattr("dtype")?
        ))),
    }
}

/// Builds a set from columns (lists or NumPy arrays).
pub fn from_arrays(
    chroms: &Bound<'_, PyAny>,
    starts: &Bound<'_, PyAny>,
    ends: &Bound<'_, PyAny>,
) -> crate::errors::Result<RegionSet> {
    let names = chrom_names(chroms)?;
    let starts = coords(starts, "starts")?;
    let ends = coords(ends, "ends")?;
    Ok(RegionSet::from_columns(&names, &starts, &ends)?)
}

/// Builds a set from a DataFrame's `chr` (or `chrom`), `start` and `end` columns.
pub fn from_pandas(df: &Bound<'_, PyAny>) -> crate::errors::Result<RegionSet> {
    if !is_dataframe(df) {
        return Err(wrong_type(format!(
            "expected a pandas DataFrame, got {}",
            type_name(df)
        ))
        .into());
    }
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
        return Err(invalid("the DataFrame needs a 'chr' or 'chrom' column").into());
    };
    for c in ["start", "end"] {
        if !has(c)? {
            return Err(invalid(format!("the DataFrame needs a {c:?} column")).into());
        }
    }
    let col = |c: &str| df.get_item(c)?.call_method0("to_numpy");
    from_arrays(&col(chrom_col)?, &col("start")?, &col("end")?)
}

/// Peaks from AnnData `var_names` (`chr1:100-600` or `chr1-100-600`, see
/// [`parse_peak_name`]); `Err(i)` names the first name that is not one.
pub fn from_peak_names(names: &Bound<'_, PyList>) -> PyResult<Result<RegionSet, usize>> {
    let mut set = RegionSet::new();
    set.reserve(size_hint(names.as_any()));
    for (i, item) in names.iter().enumerate() {
        let text = match item.cast::<PyString>() {
            Ok(s) => s.to_cow(),
            Err(_) => item
                .str()
                .and_then(|s| s.to_cow().map(|c| std::borrow::Cow::Owned(c.into_owned()))),
        };
        let Ok(text) = text else {
            return Ok(Err(i));
        };
        let Some((chr, start, end)) = parse_peak_name(&text) else {
            return Ok(Err(i));
        };
        if set.push(chr, start, end, None).is_err() {
            return Ok(Err(i));
        }
    }
    Ok(Ok(set))
}

/// Chromosome names (interned) and the chromosome of each entry of a list of strings, as
/// a DataFrame column gives them; consecutive equal strings are usually one object, so
/// most entries cost a pointer comparison.
pub fn intern_chroms(chroms: &Bound<'_, PyList>) -> PyResult<(Vec<String>, Vec<u32>)> {
    let mut names: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut codes = Vec::with_capacity(size_hint(chroms.as_any()));
    let mut last: Option<(*mut pyo3::ffi::PyObject, u32)> = None;
    for item in chroms.iter() {
        let ptr = item.as_ptr();
        if let Some((p, c)) = last {
            if p == ptr {
                codes.push(c);
                continue;
            }
        }
        if !item.is_instance_of::<PyString>() {
            return Err(invalid("var has peaks without a chromosome"));
        }
        let s = text(&item, "a chromosome name in var")?;
        let c = match index.get(s.as_ref()) {
            Some(&c) => c,
            None => {
                let c = names.len() as u32;
                names.push(s.to_string());
                index.insert(s.into_owned(), c);
                c
            }
        };
        codes.push(c);
        last = Some((ptr, c));
    }
    Ok((names, codes))
}
