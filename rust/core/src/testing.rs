//! The crate's test kit: temporary files, compressed bytes, a small tokenizer builder and
//! the seeded generator the unit tests draw from. Compiled for tests only.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bgzf;
use crate::config::{SpecialTokens, TokenizerType};
use crate::region_set::RegionSet;
use crate::rng::SplitMix64;
use crate::tokenizer::Tokenizer;
use crate::universe::Universe;

/// A fresh path in the temp folder; the file is removed when the guard drops.
pub(crate) struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `bytes` to a new temporary file whose name ends in `name`.
pub(crate) fn temp_file(name: &str, bytes: &[u8]) -> TempFile {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "atacformer-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, bytes).expect("temp dir is writable");
    TempFile(path)
}

/// A tokenizer over `(chrom, start, end)` regions, ids in the order given, with the
/// default special tokens.
pub(crate) fn tokenizer(regions: &[(&str, u32, u32)]) -> Tokenizer {
    let chroms: Vec<&str> = regions.iter().map(|r| r.0).collect();
    let starts: Vec<u32> = regions.iter().map(|r| r.1).collect();
    let ends: Vec<u32> = regions.iter().map(|r| r.2).collect();
    let rs = RegionSet::from_columns(&chroms, &starts, &ends).expect("valid regions");
    Tokenizer::new(
        Universe::from_regions(rs).expect("valid universe"),
        SpecialTokens::default(),
        TokenizerType::default(),
    )
    .expect("small universe")
}

/// `text` as one gzip member.
pub(crate) fn gzip(text: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(text).expect("in memory");
    e.finish().expect("in memory")
}

/// `text` as BGZF with blocks of at most `block` data bytes.
pub(crate) fn bgzf_bytes(text: &[u8], block: usize) -> Vec<u8> {
    let mut w = bgzf::Writer::with_block_size(Vec::new(), 6, block).expect("valid");
    w.write_all(text).expect("in memory");
    w.finish().expect("in memory")
}

/// The generator the unit tests draw from: [`SplitMix64`] with small results.
pub(crate) struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// Uniform in `0..n`, for `n` up to `2^32`.
    pub fn below(&mut self, n: u64) -> u32 {
        self.0.below(n) as u32
    }
}
