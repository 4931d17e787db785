//! atacformer-core: BED parsing, region sets, the universe overlap index and the interval
//! tokenizer. Pure Rust, with no Python in it; the `atacformer-python` crate adapts it.
//!
//! Input flows one way: [`io`] opens and decompresses a file, [`bed`] and [`fragments`]
//! parse it (their integer columns through [`digits`]), [`universe`] answers the overlap
//! queries, and the cells come out as one [`Ragged`] buffer.
//!
//! All coordinates are 0-based and half-open (`[start, end)`, bp), as in BED.

pub mod batch;
pub mod bed;
pub mod bgzf;
pub mod config;
pub mod coverage;
pub mod digits;
pub mod error;
pub mod fragments;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod gather;
mod hash;
pub mod index;
pub mod io;
pub mod pad;
pub mod parallel;
mod prefetch;
pub mod ragged;
pub mod region;
pub mod region_set;
pub mod rng;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;
pub mod tokenizer;
pub mod universe;
pub mod write;

pub use config::{SpecialTokens, TokenizerType, SPECIAL_NAMES};
pub use coverage::{ChromNames, Coverage};
pub use error::{Error, LineProblem, Result};
pub use fragments::{tokenize_fragments, FragmentOptions, FragmentStats};
pub use ragged::Ragged;
pub use region::Region;
pub use region_set::RegionSet;
pub use tokenizer::{Special, TokenId, Tokenizer};
pub use universe::{GenomicOrder, Universe};
