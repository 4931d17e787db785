//! How well input intervals fit the universe, and the one resolver of chromosome names.
//!
//! # Names
//! [`ChromResolver`] maps an input chromosome name to a universe chromosome. With
//! [`ChromNames::Exact`] only the same name matches. With [`ChromNames::Auto`] (the
//! default) a name the universe lacks is tried under its aliases, in this order, and the
//! first the universe has is used:
//! - `chr` removed or added (`chr1` <-> `1`, `chrX` <-> `X`);
//! - for the mitochondrion, the other spellings of `chrM`, `M`, `MT` and `chrMT` (so
//!   Ensembl's `MT` finds UCSC's `chrM`, and the reverse).
//!
//! Every tokenizing path (fragments, BED files, region sets, AnnData peaks) resolves
//! names here, so they agree.
//!
//! # Coverage
//! [`Coverage`] counts, per input chromosome in first-seen order, the intervals read, those
//! overlapping at least one universe region, and those starting past the end of the
//! universe's last region on that chromosome plus [`PAST_END_MARGIN`] (a sign of data from
//! another genome build, whose chromosomes are longer). It also records the universe name
//! each input name resolved to (or none), the input's total length (bp) and the
//! universe's own extent, from which the Python layer judges the coverage.

use std::collections::HashMap;

use crate::hash::FastMap;
use crate::universe::Universe;

/// How input chromosome names are matched to the universe's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChromNames {
    /// The same name, else an alias (see the module docs).
    #[default]
    Auto,
    /// The same name only.
    Exact,
}

impl ChromNames {
    /// `"auto"` or `"exact"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(ChromNames::Auto),
            "exact" => Some(ChromNames::Exact),
            _ => None,
        }
    }
}

/// Distance (bp) past the universe's last region end on a chromosome beyond which an
/// interval counts as past its end. A comprehensive universe (hundreds of thousands of
/// peaks) has its last peak on each chromosome within the last few hundred kb of mappable
/// sequence, so data of the same build puts almost nothing a whole Mb further; data of
/// another build does on every chromosome that is longer there (mm10's chrX runs 15 Mb past
/// hg38's, its chr14 to chr19 several Mb; hg19's chr2 about 1 Mb past hg38's).
pub const PAST_END_MARGIN: u32 = 1_000_000;

/// The mitochondrion's spellings, in the order they are tried.
const MITO: [&[u8]; 4] = [b"chrM", b"MT", b"M", b"chrMT"];

/// The aliases of `name` under [`ChromNames::Auto`], in the order they are tried.
pub fn aliases(name: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(4);
    match name.strip_prefix(b"chr") {
        Some(rest) if !rest.is_empty() => out.push(rest.to_vec()),
        Some(_) => {}
        None => {
            let mut with = b"chr".to_vec();
            with.extend_from_slice(name);
            out.push(with);
        }
    }
    if MITO.contains(&name) {
        for m in MITO {
            if m != name && !out.iter().any(|a| a == m) {
                out.push(m.to_vec());
            }
        }
    }
    out
}

/// What an input chromosome name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The universe chromosome, if any.
    pub chrom: Option<u32>,
    /// It was found under an alias.
    pub aliased: bool,
    /// Where an interval starts past the universe's end on it ([`PAST_END_MARGIN`]
    /// included); `u32::MAX` when the universe lacks the chromosome.
    pub past_end_from: u32,
}

/// Resolves input chromosome names against one universe (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ChromResolver<'a> {
    universe: &'a Universe,
    mode: ChromNames,
}

impl<'a> ChromResolver<'a> {
    pub fn new(universe: &'a Universe, mode: ChromNames) -> Self {
        ChromResolver { universe, mode }
    }

    /// The universe chromosome of input name `name`.
    pub fn resolve(&self, name: &[u8]) -> Resolved {
        let found = self
            .universe
            .chrom_id(name)
            .map(|c| (c, false))
            .or_else(|| {
                if self.mode == ChromNames::Exact {
                    return None;
                }
                aliases(name)
                    .iter()
                    .find_map(|a| self.universe.chrom_id(a))
                    .map(|c| (c, true))
            });
        match found {
            Some((c, aliased)) => Resolved {
                chrom: Some(c),
                aliased,
                past_end_from: self.universe.chrom_end(c).saturating_add(PAST_END_MARGIN),
            },
            None => Resolved {
                chrom: None,
                aliased: false,
                past_end_from: u32::MAX,
            },
        }
    }

    /// The universe's name of chromosome `c`.
    pub fn universe_name(&self, c: u32) -> &'a str {
        &self.universe.regions().chrom_names()[c as usize]
    }
}

/// Intervals a cell's input held and those overlapping at least one universe region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellCount {
    pub intervals: u64,
    pub in_universe: u64,
}

/// Counts of one input chromosome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChromCoverage {
    /// The input's name.
    pub name: String,
    /// The universe chromosome it resolved to (its own name, or an alias), if any.
    pub universe_name: Option<String>,
    /// Intervals read on it.
    pub intervals: u64,
    /// Those overlapping at least one universe region.
    pub overlapping: u64,
    /// Those starting past the universe's end on it (see [`PAST_END_MARGIN`]).
    pub past_end: u64,
}

/// Coverage of the universe by one tokenization's input (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// One entry per input chromosome, in first-seen order.
    pub chroms: Vec<ChromCoverage>,
    /// Total length of the intervals read (bp).
    pub input_bp: u64,
    /// Sum over the universe's chromosomes of their last region's end (bp): the genome
    /// the universe spans.
    pub universe_span: u64,
    /// Total length of the universe's regions (bp).
    pub universe_bp: u64,
    /// Number of universe regions.
    pub universe_regions: u64,
}

impl Coverage {
    /// An empty count for `universe`.
    pub fn new(universe: &Universe) -> Self {
        let (span, bp) = universe.extent();
        Coverage {
            chroms: Vec::new(),
            input_bp: 0,
            universe_span: span,
            universe_bp: bp,
            universe_regions: universe.len() as u64,
        }
    }

    /// Intervals read in all.
    pub fn intervals(&self) -> u64 {
        self.chroms.iter().map(|c| c.intervals).sum()
    }

    /// Intervals overlapping the universe in all.
    pub fn overlapping(&self) -> u64 {
        self.chroms.iter().map(|c| c.overlapping).sum()
    }

    /// Adds `other`'s counts (chromosomes new to `self` go at the end, in their order).
    pub fn merge(&mut self, other: &Coverage) {
        let mut at: HashMap<String, usize> = self
            .chroms
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        for c in &other.chroms {
            match at.get(&c.name) {
                Some(&i) => {
                    let mine = &mut self.chroms[i];
                    mine.intervals += c.intervals;
                    mine.overlapping += c.overlapping;
                    mine.past_end += c.past_end;
                }
                None => {
                    at.insert(c.name.clone(), self.chroms.len());
                    self.chroms.push(c.clone());
                }
            }
        }
        self.input_bp += other.input_bp;
    }
}

/// Per-chromosome counters of a region set whose chromosome names are known up front
/// (index = the set's chromosome number): what [`Coverage`] holds, before it is named.
#[derive(Debug)]
pub struct SetTally<'a> {
    resolver: ChromResolver<'a>,
    names: &'a [String],
    pub(crate) resolved: Vec<Resolved>,
    /// `[intervals, overlapping, past_end]` per chromosome of the set.
    pub(crate) counts: Vec<[u64; 3]>,
    pub(crate) input_bp: u64,
}

impl<'a> SetTally<'a> {
    /// Resolves every chromosome name of a set (in its chromosome-number order).
    pub fn new(resolver: ChromResolver<'a>, names: &'a [String]) -> Self {
        SetTally {
            resolver,
            names,
            resolved: names
                .iter()
                .map(|n| resolver.resolve(n.as_bytes()))
                .collect(),
            counts: vec![[0; 3]; names.len()],
            input_bp: 0,
        }
    }

    /// The universe chromosome of each of the set's chromosomes (`u32::MAX`: none).
    pub fn chrom_map(&self) -> Vec<u32> {
        self.resolved
            .iter()
            .map(|r| r.chrom.unwrap_or(u32::MAX))
            .collect()
    }

    /// Counts every interval of a set: its chromosome numbers, starts and ends.
    pub fn count_intervals(&mut self, chroms: &[u32], starts: &[u32], ends: &[u32]) {
        for ((&c, &s), &e) in chroms.iter().zip(starts).zip(ends) {
            let row = &mut self.counts[c as usize];
            row[0] += 1;
            row[2] += u64::from(s >= self.resolved[c as usize].past_end_from);
            self.input_bp += u64::from(e.saturating_sub(s));
        }
    }

    /// Counts one interval on chromosome `c` of the set as overlapping the universe.
    #[inline]
    pub fn count_overlapping(&mut self, c: u32) {
        self.counts[c as usize][1] += 1;
    }

    /// Total length of the intervals counted (bp).
    pub fn input_bp(&self) -> u64 {
        self.input_bp
    }

    /// The counts, the chromosomes with intervals only, in the set's order.
    pub fn finish(self) -> Coverage {
        let mut out = Coverage::new(self.resolver.universe);
        out.input_bp = self.input_bp;
        for ((name, r), c) in self.names.iter().zip(&self.resolved).zip(&self.counts) {
            if c[0] == 0 {
                continue;
            }
            out.chroms.push(ChromCoverage {
                name: name.clone(),
                universe_name: r.chrom.map(|u| self.resolver.universe_name(u).to_owned()),
                intervals: c[0],
                overlapping: c[1],
                past_end: c[2],
            });
        }
        out
    }
}

/// Counts intervals as they are read, for inputs in which the chromosome changes rarely
/// (position-sorted files): O(1) per interval, a name lookup only when it changes.
#[derive(Debug)]
pub struct Tally<'a> {
    resolver: ChromResolver<'a>,
    /// Counts of every input chromosome met, in first-seen order, with their names:
    /// `[intervals, overlapping, past_end]`.
    chroms: Vec<(Vec<u8>, Resolved, [u64; 3])>,
    index: FastMap<Vec<u8>, usize>,
    /// Index in `chroms` of the current chromosome.
    current: usize,
    input_bp: u64,
}

impl<'a> Tally<'a> {
    pub fn new(resolver: ChromResolver<'a>) -> Self {
        Tally {
            resolver,
            chroms: Vec::new(),
            index: FastMap::default(),
            current: usize::MAX,
            input_bp: 0,
        }
    }

    /// The index of input chromosome `name`, resolving it on first sight.
    pub fn intern(&mut self, name: &[u8]) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.chroms.len();
        self.chroms
            .push((name.to_vec(), self.resolver.resolve(name), [0; 3]));
        self.index.insert(name.to_vec(), i);
        i
    }

    /// The universe chromosome of input chromosome `i` (an [`Tally::intern`] index).
    #[inline]
    pub fn chrom_of(&self, i: usize) -> Option<u32> {
        self.chroms.get(i).and_then(|c| c.1.chrom)
    }

    /// Makes `name` the current chromosome and returns what it resolved to.
    #[inline]
    pub fn enter(&mut self, name: &[u8]) -> Resolved {
        if let Some((n, r, _)) = self.chroms.get(self.current) {
            if n.as_slice() == name {
                return *r;
            }
        }
        self.current = self.intern(name);
        self.chroms[self.current].1
    }

    /// Counts one interval of input chromosome `i`.
    #[inline]
    pub fn count_at(&mut self, i: usize, start: u32, end: u32) {
        if let Some((_, r, c)) = self.chroms.get_mut(i) {
            c[0] += 1;
            c[2] += u64::from(start >= r.past_end_from);
            self.input_bp += u64::from(end.saturating_sub(start));
        }
    }

    /// Counts one more interval of input chromosome `i` as overlapping the universe.
    #[inline]
    pub fn count_overlapping_at(&mut self, i: usize) {
        if let Some((_, _, c)) = self.chroms.get_mut(i) {
            c[1] += 1;
        }
    }

    /// Counts one interval on the current chromosome (entered with [`Tally::enter`]).
    #[inline]
    pub fn count(&mut self, start: u32, end: u32, overlapping: bool) {
        let i = self.current;
        self.count_at(i, start, end);
        if overlapping {
            self.count_overlapping_at(i);
        }
    }

    /// The counts, ready to merge.
    pub fn finish(self) -> Coverage {
        let mut out = Coverage::new(self.resolver.universe);
        out.input_bp = self.input_bp;
        out.chroms = self
            .chroms
            .into_iter()
            .map(|(name, r, c)| ChromCoverage {
                name: String::from_utf8_lossy(&name).into_owned(),
                universe_name: r.chrom.map(|u| self.resolver.universe_name(u).to_owned()),
                intervals: c[0],
                overlapping: c[1],
                past_end: c[2],
            })
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tokenizer;

    fn names(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter()
            .map(|a| String::from_utf8(a).expect("ascii"))
            .collect()
    }

    #[test]
    fn alias_order() {
        assert_eq!(names(aliases(b"chr1")), ["1"]);
        assert_eq!(names(aliases(b"1")), ["chr1"]);
        assert_eq!(names(aliases(b"MT")), ["chrMT", "chrM", "M"]);
        assert_eq!(names(aliases(b"M")), ["chrM", "MT", "chrMT"]);
        assert_eq!(names(aliases(b"chrM")), ["M", "MT", "chrMT"]);
        assert_eq!(names(aliases(b"chrMT")), ["MT", "chrM", "M"]);
        assert!(aliases(b"chr").is_empty());
    }

    #[test]
    fn resolves_both_directions_and_counts() {
        let ucsc = tokenizer(&[("chr1", 0, 100), ("chrM", 0, 50)]);
        let r = ChromResolver::new(ucsc.universe(), ChromNames::Auto);
        assert_eq!(r.resolve(b"1").chrom, Some(0));
        assert!(r.resolve(b"1").aliased && !r.resolve(b"chr1").aliased);
        assert_eq!(r.resolve(b"MT").chrom, Some(1));
        assert_eq!(r.resolve(b"chrMT").chrom, Some(1));
        assert_eq!(r.resolve(b"2").chrom, None);
        let exact = ChromResolver::new(ucsc.universe(), ChromNames::Exact);
        assert_eq!(exact.resolve(b"1").chrom, None);
        let ensembl = tokenizer(&[("1", 0, 100), ("MT", 0, 50)]);
        let r = ChromResolver::new(ensembl.universe(), ChromNames::Auto);
        assert_eq!(r.resolve(b"chr1").chrom, Some(0));
        assert_eq!(r.resolve(b"chrM").chrom, Some(1));

        let r = ChromResolver::new(ucsc.universe(), ChromNames::Auto);
        let mut t = Tally::new(r);
        t.enter(b"1");
        t.count(10, 20, true);
        t.count(1_000_100, 1_000_200, false); // past chr1's end (100) + the margin
        t.enter(b"chrUn");
        t.count(0, 5, false);
        t.enter(b"1");
        t.count(0, 1, true);
        let c = t.finish();
        assert_eq!(c.intervals(), 4);
        assert_eq!(c.overlapping(), 2);
        assert_eq!(c.input_bp, 10 + 100 + 5 + 1);
        assert_eq!((c.universe_span, c.universe_bp), (150, 150));
        assert_eq!(c.chroms[0].universe_name.as_deref(), Some("chr1"));
        assert_eq!(c.chroms[0].past_end, 1);
        assert_eq!(c.chroms[1].universe_name, None);
        let mut sum = c.clone();
        sum.merge(&c);
        assert_eq!(sum.intervals(), 8);
        assert_eq!(sum.chroms.len(), 2);
        assert_eq!(sum.input_bp, 2 * c.input_bp);
    }
}
