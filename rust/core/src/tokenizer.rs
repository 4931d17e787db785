//! The interval tokenizer: maps query regions onto the ids of the universe regions they
//! overlap.
//!
//! Ids `0..N` are the universe regions in file order; ids `N..N+7` are the special tokens
//! unk, pad, mask, cls, eos, bos, sep. For each query, in input order, the tokenizer emits
//! every universe region that overlaps it, in (start, end) order, without deduplication. A
//! query set that overlaps nothing at all gives `[unk]`.

use std::fs;
use std::path::Path;

use crate::bed;
use crate::config::{Config, SpecialTokens, TokenizerType, SPECIAL_NAMES};
use crate::coverage::{CellCount, ChromNames, ChromResolver, Coverage, SetTally, Tally};
use crate::error::{Error, Result};
use crate::index::Scratch;
use crate::region::parse_token;
use crate::region_set::RegionSet;
use crate::universe::Universe;
use crate::write::write_atomically;

/// Position of each special token after the universe ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Unk = 0,
    Pad = 1,
    Mask = 2,
    Cls = 3,
    Eos = 4,
    Bos = 5,
    Sep = 6,
}

/// Integer types token ids can be written as.
pub trait TokenId: Copy + Send + Sync + 'static {
    fn from_id(id: u32) -> Self;
}

impl TokenId for u32 {
    #[inline]
    fn from_id(id: u32) -> Self {
        id
    }
}

impl TokenId for i64 {
    #[inline]
    fn from_id(id: u32) -> Self {
        i64::from(id)
    }
}

impl TokenId for i32 {
    /// Vocabularies are checked at build time to fit in `i32`.
    #[inline]
    fn from_id(id: u32) -> Self {
        id as i32
    }
}

/// Queries parsed from a BED file before they are answered together.
const BED_BATCH: usize = 1024;

/// Chromosome numbers of names of up to 8 bytes, in a small open-addressing table: lines
/// in random chromosome order would otherwise hash every name. Probing (rather than
/// overwriting a slot) keeps names such as `chr7` and `chr17` from evicting each other;
/// once the table is half full, further names go straight to the lookup.
struct ChromCache {
    /// `(name as a little-endian u64, name length + 1, chromosome)`; length 0 is empty.
    slots: [(u64, u8, Option<u32>); ChromCache::SLOTS],
    len: usize,
}

impl Default for ChromCache {
    fn default() -> Self {
        ChromCache {
            slots: [(0, 0, None); ChromCache::SLOTS],
            len: 0,
        }
    }
}

impl ChromCache {
    const SLOTS: usize = 128;

    /// The bytes of a name of at most 8 bytes as one little-endian word, zero-padded,
    /// read with two overlapping loads instead of a copy of variable length.
    #[inline]
    fn key(name: &[u8]) -> u64 {
        let n = name.len();
        if n >= 4 {
            let lo = u32::from_le_bytes([name[0], name[1], name[2], name[3]]);
            let hi = u32::from_le_bytes([name[n - 4], name[n - 3], name[n - 2], name[n - 1]]);
            u64::from(lo) | u64::from(hi) << (8 * (n - 4))
        } else {
            name.iter()
                .rev()
                .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
        }
    }

    #[inline]
    fn get(&mut self, name: &[u8], mut lookup: impl FnMut(&[u8]) -> Option<u32>) -> Option<u32> {
        if name.len() > 8 {
            return lookup(name);
        }
        let key = Self::key(name);
        let tag = name.len() as u8 + 1;
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut i = ((h ^ (h >> 29)) >> 57) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.1 == tag && slot.0 == key {
                return slot.2;
            }
            if slot.1 == 0 {
                let chrom = lookup(name);
                if 2 * self.len < Self::SLOTS {
                    *slot = (key, tag, chrom);
                    self.len += 1;
                }
                return chrom;
            }
            i = (i + 1) % Self::SLOTS;
        }
    }
}

/// Why these special tokens cannot name ids unambiguously: two are the same string, or
/// one is the token string of a universe region.
/// Returns the positions (in [`SPECIAL_NAMES`]) of the tokens at fault (the same one twice
/// for a clash with a region) and the problem.
fn special_token_clash(
    universe: &Universe,
    specials: &SpecialTokens,
) -> Option<((usize, usize), String)> {
    let tokens = &specials.0;
    for (i, a) in tokens.iter().enumerate() {
        if let Some(j) = tokens[i + 1..].iter().position(|b| b == a) {
            return Some((
                (i, i + 1 + j),
                format!(
                    "special tokens {} and {} are both {a:?}",
                    SPECIAL_NAMES[i],
                    SPECIAL_NAMES[i + 1 + j]
                ),
            ));
        }
        if let Some((chr, start, end)) = parse_token(a) {
            if universe.find(chr, start, end).is_some() {
                return Some((
                    (i, i),
                    format!(
                        "special token {} is {a:?}, the token of a universe region",
                        SPECIAL_NAMES[i]
                    ),
                ));
            }
        }
    }
    None
}

/// File names used by `save_pretrained` and looked for by `from_dir`.
pub const CONFIG_FILE: &str = "tokenizer.toml";
pub const UNIVERSE_FILES: [&str; 2] = ["universe.bed.gz", "universe.bed"];

/// The steps of [`Tokenizer::save_pretrained`], after each of which the folder is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaveStep {
    /// The new universe is written under a fresh name; nothing names it yet.
    UniverseWritten,
    /// `tokenizer.toml` names the new universe by its fresh name.
    Committed,
    /// `universe.bed.gz` holds the new universe too.
    Published,
    /// `tokenizer.toml` names `universe.bed.gz`.
    Renamed,
}

/// How many times [`Tokenizer::from_config`] reads a config again when the universe it
/// names is missing (a save in progress replaced the config in between).
pub const CONFIG_REREADS: usize = 5;

/// How old (by modification time) a fresh-named universe left by another save must be
/// before a save removes it: a save in progress is never that slow between writing its
/// universe and publishing it, while a save that died leaves its file behind for good.
const STALE_FRESH_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether `path` is a fresh-named universe of an earlier save that died: older than
/// [`STALE_FRESH_AGE`] and not the universe `config` names now.
fn is_stale_fresh_universe(path: &Path, config: &Path) -> bool {
    if !is_fresh_universe_name(path) {
        return false;
    }
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= STALE_FRESH_AGE);
    // A config that cannot be read counts as naming the file: it is then kept.
    old && Config::from_file(config).is_ok_and(|c| c.universe.file_name() != path.file_name())
}

/// The start of the fresh names [`Tokenizer::save_pretrained`] writes a universe under
/// (`universe.saving-XXXXXX.bed.gz`).
const FRESH_UNIVERSE_PREFIX: &str = "universe.saving-";

/// Whether `path` is a universe [`Tokenizer::save_pretrained`] wrote under a fresh name.
fn is_fresh_universe_name(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.starts_with(FRESH_UNIVERSE_PREFIX) && n.ends_with(".bed.gz"))
}

/// Replaces `to` with the contents of `from` in one rename: a hard link to `from` when the
/// file system allows it, else a copy, made beside `to` first.
fn publish_copy(from: &Path, to: &Path) -> Result<()> {
    let tmp = crate::write::temp_sibling(to)
        .map_err(|e| Error::io(to, e))?
        .into_temp_path();
    let linked = fs::remove_file(&tmp).is_ok() && fs::hard_link(from, &tmp).is_ok();
    if !linked {
        fs::copy(from, &tmp).map_err(|e| Error::io(to, e))?;
    }
    tmp.persist(to).map_err(|e| Error::io(to, e.error))
}

/// An immutable tokenizer over one universe.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenizer {
    universe: Universe,
    specials: SpecialTokens,
    kind: TokenizerType,
}

impl Tokenizer {
    pub fn new(universe: Universe, specials: SpecialTokens, kind: TokenizerType) -> Result<Self> {
        if universe.len() + SPECIAL_NAMES.len() > i32::MAX as usize {
            return Err(Error::InvalidInput(format!(
                "a universe of {} regions is too large: ids must fit in a signed 32-bit integer",
                universe.len()
            )));
        }
        if let Some((_, problem)) = special_token_clash(&universe, &specials) {
            return Err(Error::InvalidInput(problem));
        }
        Ok(Tokenizer {
            universe,
            specials,
            kind,
        })
    }

    /// A tokenizer over a BED universe with the default special tokens.
    pub fn from_bed(path: &Path) -> Result<Self> {
        Self::new(
            Universe::from_bed(path)?,
            SpecialTokens::default(),
            TokenizerType::default(),
        )
    }

    /// A tokenizer described by a TOML config.
    ///
    /// A universe the config names that is missing is taken for a concurrent
    /// [`Tokenizer::save_pretrained`] having moved on: the config is read again, up to
    /// [`CONFIG_REREADS`] times, for as long as it names another universe.
    pub fn from_config(path: &Path) -> Result<Self> {
        let mut config = Config::from_file(path)?;
        let mut rereads = 0;
        let universe = loop {
            match Universe::from_bed(&config.universe) {
                Err(Error::NotFound { path: missing })
                    if rereads < CONFIG_REREADS && missing == config.universe =>
                {
                    rereads += 1;
                    let again = Config::from_file(path)?;
                    if again.universe == config.universe {
                        return Err(Error::NotFound { path: missing });
                    }
                    config = again;
                }
                other => break other?,
            }
        };
        if let Some(((a, b), message)) = special_token_clash(&universe, &config.special_tokens) {
            // The later of the lines that set the two tokens (a default one has none).
            let line = config.special_lines[a].max(config.special_lines[b]).max(1);
            return Err(Error::Config {
                path: path.to_path_buf(),
                line,
                message,
            });
        }
        Self::new(universe, config.special_tokens, config.tokenizer_type)
    }

    /// A saved tokenizer folder: `tokenizer.toml`, else `universe.bed.gz`, else `universe.bed`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config = dir.join(CONFIG_FILE);
        if config.is_file() {
            return Self::from_config(&config);
        }
        for name in UNIVERSE_FILES {
            let p = dir.join(name);
            if p.is_file() {
                return Self::from_bed(&p);
            }
        }
        Err(Error::NotFound {
            path: dir.join(format!(
                "{CONFIG_FILE} (or {})",
                UNIVERSE_FILES.join(" or ")
            )),
        })
    }

    /// Chooses by what `path` is: a directory, a `.toml` config, or a BED file.
    pub fn from_auto(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::from_dir(path)
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Self::from_config(path)
        } else {
            Self::from_bed(path)
        }
    }

    /// Writes `universe.bed.gz` and `tokenizer.toml` into `dir`, creating it if needed.
    ///
    /// All or nothing: after any failure, `dir` loads as the tokenizer it held before or as
    /// this one, never a mix. `tokenizer.toml` is the commit point and the universe file a
    /// config names is never overwritten: the new universe goes to a fresh name first, a
    /// config naming it replaces the old config, and only then does it become
    /// `universe.bed.gz`, named by the final config.
    ///
    /// Saves may run at once on one folder (threads or processes): each removes only the
    /// fresh name it wrote itself, plus fresh names of earlier saves that died (older than
    /// an hour and named by no config). Errors name `universe.bed.gz` or `tokenizer.toml`,
    /// never a temporary name. Saves of *different* tokenizers racing on one folder are not
    /// ordered: the folder then holds one of them, or, if they interleave exactly, one's
    /// universe with the other's special tokens; serialise such saves yourself.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        self.save_pretrained_with(dir, &mut |_| Ok(()))
    }

    /// [`Tokenizer::save_pretrained`], calling `checkpoint(step)` after each of its four
    /// steps (tests make it fail there).
    fn save_pretrained_with(
        &self,
        dir: &Path,
        checkpoint: &mut dyn FnMut(SaveStep) -> Result<()>,
    ) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let final_universe = dir.join(UNIVERSE_FILES[0]);
        // An error on the fresh name (a full disk, say) names the file the save makes.
        let on_final = |e: Error| match e {
            Error::Io { source, .. } => Error::Io {
                path: final_universe.clone(),
                source,
            },
            Error::NotFound { .. } => Error::NotFound {
                path: final_universe.clone(),
            },
            other => other,
        };
        // 1. The new universe under a fresh name, removed again on any failure until a
        //    config names it.
        let fresh = tempfile::Builder::new()
            .prefix(FRESH_UNIVERSE_PREFIX)
            .suffix(".bed.gz")
            .tempfile_in(dir)
            .map_err(|e| Error::io(&final_universe, e))?
            .into_temp_path();
        self.universe.regions().to_bed(&fresh).map_err(on_final)?;
        checkpoint(SaveStep::UniverseWritten)?;
        let fresh_name = fresh
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // 2. The commit point: a config naming the new universe replaces the old config.
        self.write_config(dir, &fresh_name)?;
        let fresh = fresh
            .keep()
            .map_err(|e| Error::io(&final_universe, e.error))?;
        checkpoint(SaveStep::Committed)?;
        // 3. The published name: no config names `universe.bed.gz` now, so it may be
        //    replaced (by a link to the new universe, or a copy where links fail).
        publish_copy(&fresh, &final_universe).map_err(on_final)?;
        checkpoint(SaveStep::Published)?;
        // 4. The final config names `universe.bed.gz`; the fresh name is then unused (a
        //    later config names `universe.bed.gz` or another save's own fresh name).
        self.write_config(dir, UNIVERSE_FILES[0])?;
        checkpoint(SaveStep::Renamed)?;
        // Only this save's fresh name, and those of saves that died long ago: another
        // save's fresh name may be what the config names right now.
        let config = dir.join(CONFIG_FILE);
        if let Ok(entries) = fs::read_dir(dir) {
            for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                if p != fresh && is_stale_fresh_universe(&p, &config) {
                    let _ = fs::remove_file(p);
                }
            }
        }
        fs::remove_file(&fresh).map_err(|e| on_final(Error::io(&fresh, e)))
    }

    /// Writes `tokenizer.toml` naming `universe_name`, atomically.
    fn write_config(&self, dir: &Path, universe_name: &str) -> Result<()> {
        let config = Config {
            universe: universe_name.into(),
            special_tokens: self.specials.clone(),
            special_lines: [0; SPECIAL_NAMES.len()],
            tokenizer_type: self.kind,
        };
        let text = config.to_toml(universe_name);
        write_atomically(&dir.join(CONFIG_FILE), |w| w.write_all(text.as_bytes()))
    }

    pub fn universe(&self) -> &Universe {
        &self.universe
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.specials
    }

    pub fn tokenizer_type(&self) -> TokenizerType {
        self.kind
    }

    /// Universe regions plus the seven special tokens.
    pub fn vocab_size(&self) -> usize {
        self.universe.len() + SPECIAL_NAMES.len()
    }

    /// Id of a special token.
    #[inline]
    pub fn special_id(&self, which: Special) -> u32 {
        self.universe.len() as u32 + which as u32
    }

    /// String of a special token.
    pub fn special_token(&self, which: Special) -> &str {
        &self.specials.0[which as usize]
    }

    /// The token string of `id`: `chr:start-end`, a special token, or `None` if out of range.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        let n = self.universe.len() as u32;
        if id < n {
            self.universe.token(id)
        } else {
            self.specials.0.get((id - n) as usize).cloned()
        }
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(k) = self.specials.0.iter().position(|s| s == token) {
            return Some(self.universe.len() as u32 + k as u32);
        }
        let (chr, start, end) = parse_token(token)?;
        self.universe.find(chr, start, end)
    }

    fn unk_if_empty<T: TokenId>(&self, out: &mut Vec<T>, before: usize) {
        if out.len() == before {
            out.push(T::from_id(self.special_id(Special::Unk)));
        }
    }

    /// Appends the tokens of a region set to `out`; `[unk]` when nothing overlaps.
    /// Chromosome names are matched with [`ChromNames::Auto`].
    pub fn tokenize_set_into<T: TokenId>(&self, set: &RegionSet, out: &mut Vec<T>) {
        self.tokenize_set_counted(set, ChromNames::Auto, out);
    }

    /// [`Tokenizer::tokenize_set_into`] with the names matched by `names`, returning what
    /// the set held: its intervals and those overlapping the universe, and its coverage.
    pub fn tokenize_set_counted<T: TokenId>(
        &self,
        set: &RegionSet,
        names: ChromNames,
        out: &mut Vec<T>,
    ) -> (CellCount, Coverage) {
        let (count, tally) = self.tokenize_set_tallied(set, names, out);
        (count, tally.finish())
    }

    /// [`Tokenizer::tokenize_set_counted`] with the coverage left as counters
    /// ([`SetTally::finish`] names them), for a caller that needs it only sometimes.
    pub fn tokenize_set_tallied<'s, T: TokenId>(
        &'s self,
        set: &'s RegionSet,
        names: ChromNames,
        out: &mut Vec<T>,
    ) -> (CellCount, SetTally<'s>) {
        let before = out.len();
        let resolver = ChromResolver::new(&self.universe, names);
        let mut tally = SetTally::new(resolver, set.chrom_names());
        let chrom_map = tally.chrom_map();
        let chroms = set.chrom_indices();
        tally.count_intervals(chroms, set.starts(), set.ends());
        let mut scratch = Scratch::default();
        let queries = chroms
            .iter()
            .zip(set.starts())
            .zip(set.ends())
            .map(|((&c, &s), &e)| (chrom_map[c as usize], s, e));
        let mut last = usize::MAX;
        let mut hit = 0u64;
        self.universe.overlaps_many(queries, &mut scratch, |q, id| {
            out.push(T::from_id(id));
            if q != last {
                last = q;
                hit += 1;
                tally.count_overlapping(chroms[q]);
            }
        });
        self.unk_if_empty(out, before);
        let count = CellCount {
            intervals: set.len() as u64,
            in_universe: hit,
        };
        (count, tally)
    }

    /// The tokens of a region set.
    pub fn tokenize_set<T: TokenId>(&self, set: &RegionSet) -> Vec<T> {
        let mut out = Vec::with_capacity(set.len() + 1);
        self.tokenize_set_into(set, &mut out);
        out
    }

    /// Appends the tokens of a BED file, streamed line by line, to `out`; chromosome
    /// names are matched with [`ChromNames::Auto`].
    pub fn tokenize_bed_into<T: TokenId>(&self, path: &Path, out: &mut Vec<T>) -> Result<()> {
        self.tokenize_bed_counted(path, ChromNames::Auto, out)
            .map(|_| ())
    }

    /// [`Tokenizer::tokenize_bed_into`] with the names matched by `names`, returning what
    /// the file held (see [`Tokenizer::tokenize_set_counted`]).
    ///
    /// Lines are parsed into a batch of queries, and each full batch is answered at once
    /// (the lookups of a batch overlap their cache misses, see [`QueryStream`]); keeping
    /// the two loops apart is faster than interleaving a lookup with every parsed line.
    ///
    /// [`QueryStream`]: crate::index::QueryStream
    pub fn tokenize_bed_counted<T: TokenId>(
        &self,
        path: &Path,
        names: ChromNames,
        out: &mut Vec<T>,
    ) -> Result<(CellCount, Coverage)> {
        let before = out.len();
        let mut scratch = Scratch::default();
        let mut chroms = ChromCache::default();
        let mut tally = Tally::new(ChromResolver::new(&self.universe, names));
        let mut batch: Vec<(u32, u32, u32)> = Vec::with_capacity(BED_BATCH);
        // The input chromosome (a tally index) of each query of the batch.
        let mut batch_chroms: Vec<u32> = Vec::with_capacity(BED_BATCH);
        let mut intervals = 0u64;
        let mut hit = 0u64;
        let answer = |batch: &mut Vec<(u32, u32, u32)>,
                      batch_chroms: &mut Vec<u32>,
                      tally: &mut Tally<'_>,
                      hit: &mut u64,
                      out: &mut Vec<T>| {
            let mut last = usize::MAX;
            self.universe
                .overlaps_many(batch.drain(..), &mut scratch, |q, id| {
                    out.push(T::from_id(id));
                    if q != last {
                        last = q;
                        *hit += 1;
                        tally.count_overlapping_at(batch_chroms[q] as usize);
                    }
                });
            batch_chroms.clear();
        };
        let mut answer = answer;
        bed::for_each_record(path, |_, rec| {
            let at = chroms
                .get(rec.chrom, |name| Some(tally.intern(name) as u32))
                .unwrap_or(u32::MAX);
            tally.count_at(at as usize, rec.start, rec.end);
            intervals += 1;
            let chrom = tally.chrom_of(at as usize);
            batch.push((chrom.unwrap_or(u32::MAX), rec.start, rec.end));
            batch_chroms.push(at);
            if batch.len() == BED_BATCH {
                answer(&mut batch, &mut batch_chroms, &mut tally, &mut hit, out);
            }
            Ok(())
        })?;
        answer(&mut batch, &mut batch_chroms, &mut tally, &mut hit, out);
        self.unk_if_empty(out, before);
        let count = CellCount {
            intervals,
            in_universe: hit,
        };
        Ok((count, tally.finish()))
    }

    /// The tokens of a BED file.
    pub fn tokenize_bed<T: TokenId>(&self, path: &Path) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.tokenize_bed_into(path, &mut out)?;
        Ok(out)
    }

    /// The universe regions of `ids`, skipping special and out-of-range ids.
    pub fn decode_regions(&self, ids: &[i64]) -> RegionSet {
        let n = self.universe.len() as i64;
        let picked: Vec<usize> = ids
            .iter()
            .filter(|&&id| (0..n).contains(&id))
            .map(|&id| id as usize)
            .collect();
        self.universe.regions().select(&picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        let rs = RegionSet::from_columns(
            &["chr1", "chr1", "chr2", "chr1"],
            &[100, 50, 10, 120],
            &[200, 150, 20, 130],
        )
        .expect("valid");
        Tokenizer::new(
            Universe::from_regions(rs).expect("valid"),
            SpecialTokens::default(),
            TokenizerType::Bits,
        )
        .expect("small")
    }

    #[test]
    fn ids_follow_file_order_then_specials() {
        let t = tok();
        assert_eq!(t.vocab_size(), 11);
        assert_eq!(t.id_to_token(0).as_deref(), Some("chr1:100-200"));
        assert_eq!(t.id_to_token(3).as_deref(), Some("chr1:120-130"));
        assert_eq!(t.id_to_token(4).as_deref(), Some("<unk>"));
        assert_eq!(t.id_to_token(10).as_deref(), Some("<sep>"));
        assert_eq!(t.id_to_token(11), None);
        assert_eq!(t.token_to_id("chr2:10-20"), Some(2));
        assert_eq!(t.token_to_id("<pad>"), Some(5));
        assert_eq!(t.token_to_id("chr2:10-21"), None);
    }

    #[test]
    fn emits_overlaps_per_query_sorted_without_dedup() {
        let t = tok();
        let q = RegionSet::from_columns(
            &["chr1", "chrX", "chr2", "chr1"],
            &[125, 0, 15, 140],
            &[126, 100, 16, 141],
        )
        .expect("valid");
        // chr1:125-126 hits chr1:50-150 (id 1), chr1:100-200 (id 0), chr1:120-130 (id 3)
        // sorted by (start, end); chrX is unknown; chr1:140-141 hits ids 1 and 0 again.
        assert_eq!(t.tokenize_set::<i64>(&q), vec![1, 0, 3, 2, 1, 0]);
        let miss = RegionSet::from_columns(&["chr1"], &[0], &[50]).expect("valid");
        assert_eq!(t.tokenize_set::<u32>(&miss), vec![4]);
        assert_eq!(t.tokenize_set::<u32>(&RegionSet::new()), vec![4]);
    }

    #[test]
    fn chrom_cache_agrees_with_the_lookup_for_every_name() {
        // Names of every length up to 8 and beyond, more short ones than the cache takes,
        // and names that differ only in a late byte or in length (zero bytes included).
        let mut names: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0, 0], b"chr1\0".to_vec()];
        for i in 0..100 {
            names.push(format!("chr{i}").into_bytes());
            names.push(format!("c{i}").into_bytes());
            names.push(format!("chrUn_{i:04}").into_bytes());
        }
        let lookup = |n: &[u8]| names.iter().position(|m| m == n).map(|i| i as u32 % 7);
        let mut keys = std::collections::HashSet::new();
        for n in names.iter().filter(|n| n.len() <= 8) {
            assert!(keys.insert((ChromCache::key(n), n.len())), "{n:?}");
        }
        let mut cache = ChromCache::default();
        let mut rng = crate::testing::Rng::new(5);
        for _ in 0..20_000 {
            let n = &names[rng.below(names.len() as u64) as usize];
            assert_eq!(cache.get(n, lookup), lookup(n), "{n:?}");
        }
        assert_eq!(cache.get(b"absent", lookup), None);
    }

    #[test]
    fn bed_files_tokenize_like_their_region_sets() {
        let t = tok();
        let mut rng = crate::testing::Rng::new(11);
        let chroms = ["chr1", "chr2", "chrX", "chr1_alt_contig"];
        let mut text = String::from("track name=q\n");
        // More lines than one batch, so batch boundaries fall everywhere.
        for _ in 0..3 * BED_BATCH + 17 {
            let c = chroms[rng.below(4) as usize];
            let s = rng.below(260);
            text.push_str(&format!("{c}\t{s}\t{}\n", s + rng.below(40)));
        }
        let f = crate::testing::temp_file("queries.bed", text.as_bytes());
        let want = t.tokenize_set::<i64>(&RegionSet::from_bed(&f.0).expect("valid"));
        assert_eq!(t.tokenize_bed::<i64>(&f.0).expect("valid"), want);
        assert!(want.iter().any(|&id| id < 4));
        let miss = crate::testing::temp_file("miss.bed", b"chrX\t0\t10\n");
        assert_eq!(t.tokenize_bed::<u32>(&miss.0).expect("valid"), vec![4]);
    }

    #[test]
    fn save_pretrained_is_all_or_nothing() {
        use crate::testing::tokenizer;
        let old = tokenizer(&[("chr1", 0, 10), ("chr2", 5, 9)]);
        let mut specials = SpecialTokens::default();
        specials.0[0] = "[UNK]".into();
        let new_universe = tokenizer(&[("chr3", 1, 2), ("chr1", 4, 8), ("chr9", 0, 1)])
            .universe()
            .clone();
        let new = Tokenizer::new(new_universe, specials, TokenizerType::Ailist).expect("valid");
        let steps = [
            SaveStep::UniverseWritten,
            SaveStep::Committed,
            SaveStep::Published,
            SaveStep::Renamed,
        ];
        // The saved layout, and the published one without a config.
        for published in [false, true] {
            for (k, &fail_at) in steps.iter().enumerate() {
                let dir = tempfile::tempdir().expect("temp dir");
                if published {
                    old.universe()
                        .regions()
                        .to_bed(&dir.path().join(UNIVERSE_FILES[0]))
                        .expect("writable");
                } else {
                    old.save_pretrained(dir.path()).expect("writable");
                }
                assert_eq!(Tokenizer::from_dir(dir.path()).expect("old"), old);
                let err = new
                    .save_pretrained_with(dir.path(), &mut |step| {
                        if step == fail_at {
                            Err(Error::InvalidInput("injected".into()))
                        } else {
                            Ok(())
                        }
                    })
                    .expect_err("injected failure");
                assert_eq!(err.to_string(), "injected");
                let loaded = Tokenizer::from_dir(dir.path()).expect("loads");
                let want = if k == 0 { &old } else { &new };
                assert_eq!(&loaded, want, "failure after {fail_at:?}");
                // A later save completes and, once the failed save's leftovers are old
                // enough to be its for good, leaves the published layout only.
                let young: Vec<_> = fs::read_dir(dir.path())
                    .expect("readable")
                    .map(|e| e.expect("entry").path())
                    .filter(|p| is_fresh_universe_name(p))
                    .collect();
                new.save_pretrained(dir.path()).expect("writable");
                for p in &young {
                    assert!(p.is_file(), "a young fresh name stays: {p:?} ({fail_at:?})");
                    let old_time = std::time::SystemTime::now() - 2 * STALE_FRESH_AGE;
                    fs::File::options()
                        .write(true)
                        .open(p)
                        .and_then(|f| f.set_modified(old_time))
                        .expect("settable");
                }
                new.save_pretrained(dir.path()).expect("writable");
                assert_eq!(Tokenizer::from_dir(dir.path()).expect("new"), new);
                let mut names: Vec<String> = fs::read_dir(dir.path())
                    .expect("readable")
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                assert_eq!(names, [CONFIG_FILE, UNIVERSE_FILES[0]], "{fail_at:?}");
                let toml = fs::read_to_string(dir.path().join(CONFIG_FILE)).expect("written");
                assert!(toml.starts_with("universe = \"universe.bed.gz\""), "{toml}");
            }
        }
    }

    #[test]
    fn save_pretrained_leaves_other_saves_fresh_names() {
        use crate::testing::tokenizer;
        let t = tokenizer(&[("chr1", 0, 10), ("chr2", 5, 9)]);
        let dir = tempfile::tempdir().expect("temp dir");
        t.save_pretrained(dir.path()).expect("writable");
        // Another save's file, just committed: the config names it.
        let theirs = dir.path().join("universe.saving-other1.bed.gz");
        fs::copy(dir.path().join(UNIVERSE_FILES[0]), &theirs).expect("copied");
        t.write_config(dir.path(), "universe.saving-other1.bed.gz")
            .expect("writable");
        // One of a save that died long ago, named by no config.
        let dead = dir.path().join("universe.saving-dead01.bed.gz");
        fs::copy(&theirs, &dead).expect("copied");
        let two_hours_ago = std::time::SystemTime::now() - 2 * STALE_FRESH_AGE;
        fs::File::options()
            .write(true)
            .open(&dead)
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("settable");
        // A reader between the other save's commit and ours still loads.
        assert_eq!(Tokenizer::from_dir(dir.path()).expect("loads"), t);
        t.save_pretrained(dir.path()).expect("writable");
        assert!(theirs.is_file(), "another save's fresh name is kept");
        assert!(!dead.exists(), "a dead save's fresh name goes");
        assert_eq!(Tokenizer::from_dir(dir.path()).expect("loads"), t);
    }

    #[test]
    fn from_config_names_a_missing_universe_that_stays_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join(CONFIG_FILE);
        fs::write(&config, "universe = \"gone.bed.gz\"\n").expect("writable");
        let err = Tokenizer::from_config(&config).expect_err("missing universe");
        assert!(
            matches!(&err, Error::NotFound { path } if path.ends_with("gone.bed.gz")),
            "{err}"
        );
    }
}
