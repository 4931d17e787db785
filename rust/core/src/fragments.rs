//! Tokenization of 10x Genomics fragment files: one token list per cell (barcode).
//!
//! # Format
//! Lines `chrom, start, end, barcode, count[, extra columns...]` separated by tabs (or runs
//! of spaces, which some tools write), with
//! 0-based half-open coordinates (bp). Lines starting with `#` and blank lines are skipped.
//! The file may be plain text, gzip, or BGZF (gzip whose members carry a `BC` extra
//! subfield); the kind is detected from the first bytes, not the file name.
//!
//! # Tokens
//! Each fragment is queried against the tokenizer's universe with the tokenizer's overlap
//! rule (`start < fragment_end && fragment_start < end`). A fragment that overlaps nothing
//! contributes nothing (the peer emits `[unk]` per such fragment instead).
//! - `unique = true`: each universe id at most once per cell, in ascending genomic order,
//!   that is the universe sorted by (chromosome name as bytes, start, end), the order of
//!   [`crate::RegionSet::sort`].
//! - `unique = false`: every overlap of every fragment, fragments in file order and the
//!   overlaps of one fragment in (start, end) order, duplicates kept.
//!
//! # Cells
//! - Without `barcodes`, cells come in the order their barcode first appears in the file,
//!   and cells left with no tokens are dropped.
//! - With `barcodes`, the output has exactly those cells in that order; a listed cell with
//!   no tokens (including one absent from the file) gets `[unk]`. Lines of other barcodes
//!   are parsed and checked but not queried. A listed barcode may not appear twice.
//! - `min_fragments` / `max_fragments` count the fragment lines of a barcode (all its
//!   well-formed lines, whether or not they overlap the universe; the `count` column is not
//!   summed). A cell outside the bounds is dropped, whether it was listed or not.
//!
//! # Errors
//! A malformed line (fewer than five non-empty columns, a coordinate or count that is not a
//! non-negative integer, `start > end`, a barcode that is not UTF-8) is an [`Error::Parse`] naming the file and 1-based line; with `skip_bad_lines` it
//! is skipped and counted in [`FragmentStats`]. With a barcode list, a barcode that is not
//! UTF-8 simply matches no listed barcode. Corrupt or truncated gzip or BGZF (including a
//! BGZF file without its end-of-file marker) is an [`Error::Compression`].
//!
//! # How it runs
//! The file is read in chunks of about 1 MiB (for BGZF, runs of whole raw blocks, inflated
//! by the worker with libdeflate). Workers split their chunk into lines, parse them and
//! query the universe; the line that straddles two chunks is stitched and parsed when the
//! chunks are merged. Merging is serial and in file order, so the first-seen order of cells
//! is exact, and it overlaps with the reading of the next batch and the parsing of the one
//! after. Parallel work runs in [`crate::parallel`]'s pool (serially after a fork). Memory
//! is the output plus a few chunks per thread; with `unique`, a cell's ids are sorted and
//! deduplicated whenever they reach four times their last deduplicated size, so duplicates
//! never hold more than about four times the output.

use std::fs::File;
use std::hash::Hasher;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::read::MultiGzDecoder;
use libdeflater::Decompressor;
use memchr::memchr;
use rayon::prelude::*;

use crate::bed::{self, digits_until_tab, parse_coord, tab_after_field};
use crate::bgzf::{self, BlockReader, BlockSpan};
use crate::error::{Error, LineProblem, Result};
use crate::hash::{FastHasher, FastMap};
use crate::index::Scratch;
use crate::parallel;
use crate::prefetch::prefetch;
use crate::ragged::Ragged;
use crate::tokenizer::{Special, Tokenizer};
use crate::universe::GenomicOrder;
use crate::universe::Universe;

/// What to read from a fragment file and how to shape the cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentOptions {
    /// Barcodes to keep, in output order; `None` keeps every barcode in first-seen order.
    pub barcodes: Option<Vec<String>>,
    /// Drop cells with fewer fragment lines than this.
    pub min_fragments: u64,
    /// Drop cells with more fragment lines than this.
    pub max_fragments: Option<u64>,
    /// Each id at most once per cell, in genomic order (else all overlaps in file order).
    pub unique: bool,
    /// Skip and count malformed lines instead of failing on the first one.
    pub skip_bad_lines: bool,
}

impl Default for FragmentOptions {
    fn default() -> Self {
        FragmentOptions {
            barcodes: None,
            min_fragments: 0,
            max_fragments: None,
            unique: true,
            skip_bad_lines: false,
        }
    }
}

/// Counts from one pass over a fragment file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Lines read, including comments, blank and malformed lines.
    pub lines: u64,
    /// Well-formed fragment lines, of any barcode.
    pub fragments: u64,
    /// Malformed lines skipped (only with `skip_bad_lines`).
    pub skipped_lines: u64,
    /// The first skipped line: its 1-based number and what was wrong with it.
    pub first_skipped: Option<(u64, LineProblem)>,
}

/// Tokenizes a fragment file into one cell per barcode; see the module docs for the rules.
pub fn tokenize_fragments(
    tok: &Tokenizer,
    path: &Path,
    opts: &FragmentOptions,
) -> Result<(Ragged, FragmentStats)> {
    run(tok, path, opts, &Tuning::default())
}

/// Reads a barcode list: the first tab-separated column of each line, skipping blank and
/// `#` lines (plain or gzip).
pub fn read_barcodes(path: &Path) -> Result<Vec<String>> {
    let mut reader = bed::LineReader::open(path)?;
    let mut out = Vec::new();
    while let Some((_, line)) = reader.next_line()? {
        let first = line.split(|&b| b == b'\t').next().unwrap_or_default();
        let first = first.trim_ascii();
        if first.is_empty() || first[0] == b'#' {
            continue;
        }
        match std::str::from_utf8(first) {
            Ok(s) => out.push(s.to_owned()),
            Err(_) => return Err(reader.parse_error(LineProblem::NotUtf8)),
        }
    }
    Ok(out)
}

/// Chunking knobs; tests shrink them to force lines across chunk and block boundaries.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Uncompressed bytes per chunk (BGZF chunks hold at least one block).
    chunk_bytes: usize,
    /// Chunks per batch and thread.
    chunks_per_thread: usize,
    /// Run on the calling thread only.
    serial: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            chunk_bytes: 1 << 20,
            chunks_per_thread: 4,
            serial: false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hashing of barcodes

/// A barcode of at most 23 bytes held inline (little-endian bytes, zero padding, length in
/// the last byte), so a lookup compares three words in the table instead of chasing a
/// pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortKey([u64; 3]);

impl ShortKey {
    const MAX: usize = 23;

    #[inline]
    fn new(bytes: &[u8]) -> Option<Self> {
        let n = bytes.len();
        if n > Self::MAX {
            return None;
        }
        // Whole words by fixed-size copies and the tail byte by byte: no memcpy call.
        let mut w = [0u64; 3];
        let full = n / 8;
        for (i, word) in w.iter_mut().enumerate().take(full) {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            *word = u64::from_le_bytes(b);
        }
        let mut tail = 0u64;
        for (j, &c) in bytes[8 * full..].iter().enumerate() {
            tail |= u64::from(c) << (8 * j);
        }
        w[full] |= tail;
        w[2] |= (n as u64) << 56;
        Some(ShortKey(w))
    }
}

impl ShortKey {
    #[inline]
    fn hash(&self) -> u64 {
        let mut h = FastHasher::default();
        h.add(self.0[0]);
        h.add(self.0[1]);
        h.add(self.0[2]);
        h.finish()
    }
}

/// One slot of [`ShortTable`]: half a cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    key: [u64; 3],
    cell: u32,
}

const EMPTY: Slot = Slot {
    key: [0; 3],
    cell: u32::MAX,
};

/// Open-addressing table (linear probing, at most half full) of short barcodes. Unlike a
/// general map it can touch a key's slot ahead of the lookup, so the cache misses of a
/// batch of lookups overlap.
#[derive(Debug, Clone)]
struct ShortTable {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for ShortTable {
    fn default() -> Self {
        ShortTable {
            slots: vec![EMPTY; 16],
            len: 0,
        }
    }
}

impl ShortTable {
    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Loads the slot where the search for `hash` starts, to bring it into cache.
    #[inline]
    fn touch(&self, hash: u64) -> u32 {
        self.slots[hash as usize & self.mask()].cell
    }

    #[inline]
    fn get(&self, key: &ShortKey, hash: u64) -> Option<u32> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.cell == u32::MAX {
                return None;
            }
            if s.key == key.0 {
                return Some(s.cell);
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, key: ShortKey, cell: u32) -> Option<u32> {
        if 2 * (self.len + 1) > self.slots.len() {
            let bigger = vec![EMPTY; 2 * self.slots.len()];
            let old = std::mem::replace(&mut self.slots, bigger);
            self.len = 0;
            for s in old.into_iter().filter(|s| s.cell != u32::MAX) {
                self.insert(ShortKey(s.key), s.cell);
            }
        }
        let mask = self.mask();
        let mut i = key.hash() as usize & mask;
        loop {
            let s = &mut self.slots[i];
            if s.cell == u32::MAX {
                *s = Slot { key: key.0, cell };
                self.len += 1;
                return None;
            }
            if s.key == key.0 {
                return Some(std::mem::replace(&mut s.cell, cell));
            }
            i = (i + 1) & mask;
        }
    }
}

/// Barcode -> cell number.
#[derive(Debug, Clone, Default)]
struct BarcodeMap {
    short: ShortTable,
    long: FastMap<Box<[u8]>, u32>,
}

impl BarcodeMap {
    #[inline]
    fn get(&self, barcode: &[u8]) -> Option<u32> {
        match ShortKey::new(barcode) {
            Some(k) => self.short.get(&k, k.hash()),
            None => self.long.get(barcode).copied(),
        }
    }

    /// Looks up a batch of barcodes, touching all their slots first.
    #[inline]
    fn get_batch<'a>(
        &self,
        barcodes: impl Iterator<Item = &'a [u8]> + Clone,
        out: &mut [Option<u32>],
    ) {
        let mut keys = [(ShortKey([0; 3]), 0u64); BATCH];
        let mut touched = 0u32;
        for ((k, bc), _) in keys.iter_mut().zip(barcodes.clone()).zip(out.iter()) {
            if let Some(key) = ShortKey::new(bc) {
                *k = (key, key.hash());
                touched ^= self.short.touch(k.1);
            }
        }
        std::hint::black_box(touched);
        for ((slot, bc), (key, hash)) in out.iter_mut().zip(barcodes).zip(&keys) {
            *slot = if bc.len() <= ShortKey::MAX {
                self.short.get(key, *hash)
            } else {
                self.long.get(bc).copied()
            };
        }
    }

    /// Inserts, returning the previous value if the barcode was there.
    fn insert(&mut self, barcode: &[u8], cell: u32) -> Option<u32> {
        match ShortKey::new(barcode) {
            Some(k) => self.short.insert(k, cell),
            None => self.long.insert(barcode.into(), cell),
        }
    }

    fn len(&self) -> usize {
        self.short.len + self.long.len()
    }
}

// ---------------------------------------------------------------------------------------
// Reading chunks

/// A unit of work for one worker.
enum Chunk {
    /// Text, possibly ending inside a line.
    Text(Vec<u8>),
    /// Whole raw BGZF blocks; `data_len` is the sum of their `ISIZE`s.
    Blocks {
        raw: Vec<u8>,
        spans: Vec<BlockSpan>,
        data_len: usize,
    },
    /// Reading stopped here.
    Failed(ReadFailure),
}

#[derive(Debug)]
enum ReadFailure {
    Io(io::Error),
    Compression(String),
}

enum Input {
    Plain(BufReader<File>),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
    Bgzf(BlockReader<BufReader<File>>),
}

/// Produces chunks from a file in order.
struct ChunkReader {
    input: Input,
    /// A failure found after some good blocks, returned by the next call.
    deferred: Option<ReadFailure>,
    done: bool,
    chunk_bytes: usize,
    buffers: Arc<BufferPool>,
}

impl ChunkReader {
    fn open(path: &Path, chunk_bytes: usize, buffers: Arc<BufferPool>) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::InvalidInput(format!(
                "{}: is a directory, not a file",
                path.display()
            )));
        }
        let mut raw = BufReader::with_capacity(1 << 16, file);
        let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
        let input = if bgzf::is_bgzf(head) {
            Input::Bgzf(BlockReader::new(raw))
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Input::Gzip(Box::new(MultiGzDecoder::new(raw)))
        } else {
            Input::Plain(raw)
        };
        Ok(ChunkReader {
            input,
            deferred: None,
            done: false,
            chunk_bytes: chunk_bytes.max(1),
            buffers,
        })
    }

    /// Up to `n` chunks; fewer at the end of input, which also sets `done`.
    fn read_batch(&mut self, n: usize) -> Vec<Chunk> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && !self.done {
            match self.next_chunk() {
                Some(c) => {
                    if matches!(c, Chunk::Failed(_)) {
                        self.done = true;
                    }
                    out.push(c);
                }
                None => self.done = true,
            }
        }
        out
    }

    fn next_chunk(&mut self) -> Option<Chunk> {
        if let Some(f) = self.deferred.take() {
            return Some(Chunk::Failed(f));
        }
        let want = self.chunk_bytes;
        match &mut self.input {
            Input::Plain(r) => {
                let (text, failure) = read_text(r, want, &self.buffers, ReadFailure::Io);
                self.text_chunk(text, failure)
            }
            Input::Gzip(r) => {
                let (text, failure) = read_text(r.as_mut(), want, &self.buffers, |e| {
                    ReadFailure::Compression(e.to_string())
                });
                self.text_chunk(text, failure)
            }
            Input::Bgzf(r) => {
                let mut raw = self.buffers.take();
                let mut spans = Vec::new();
                let mut data_len = 0;
                while data_len < want {
                    match r.read_block(&mut raw) {
                        Ok(Some(span)) => {
                            data_len += span.data_len;
                            spans.push(span);
                        }
                        Ok(None) => break,
                        Err(msg) if spans.is_empty() => {
                            return Some(Chunk::Failed(ReadFailure::Compression(msg)))
                        }
                        Err(msg) => {
                            // Hand over the good blocks first, so the error's line number
                            // counts their lines; the failure comes with the next call.
                            self.deferred = Some(ReadFailure::Compression(msg));
                            break;
                        }
                    }
                }
                (!spans.is_empty()).then_some(Chunk::Blocks {
                    raw,
                    spans,
                    data_len,
                })
            }
        }
    }
}

impl ChunkReader {
    /// A text chunk, with a failure after it deferred to the next call.
    fn text_chunk(&mut self, text: Option<Vec<u8>>, failure: Option<ReadFailure>) -> Option<Chunk> {
        match (text, failure) {
            (Some(t), f) => {
                self.deferred = f;
                Some(Chunk::Text(t))
            }
            (None, Some(f)) => Some(Chunk::Failed(f)),
            (None, None) => None,
        }
    }
}

/// Fills a recycled buffer with up to `want` bytes; a failure after some bytes is returned
/// beside them so that their lines are counted first.
fn read_text<R: Read + ?Sized>(
    r: &mut R,
    want: usize,
    buffers: &BufferPool,
    fail: impl FnOnce(io::Error) -> ReadFailure,
) -> (Option<Vec<u8>>, Option<ReadFailure>) {
    let mut buf = buffers.take();
    buf.resize(want, 0);
    let mut n = 0;
    let mut failure = None;
    while n < want {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failure = Some(fail(e));
                break;
            }
        }
    }
    buf.truncate(n);
    if n == 0 {
        buffers.give(buf);
        (None, failure)
    } else {
        (Some(buf), failure)
    }
}

/// Recycled chunk buffers, so that steady-state reading allocates nothing.
#[derive(Default)]
struct BufferPool(Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn give(&self, mut v: Vec<u8>) {
        v.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 64 {
            pool.push(v);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parsing and querying (in the workers)

/// What the workers share.
struct Ctx<'a> {
    universe: &'a Universe,
    /// Genomic rank of each id, when cells keep unique ids (workers emit ranks then).
    ranks: Option<&'a [u32]>,
    listed: bool,
    skip_bad: bool,
    buffers: Arc<BufferPool>,
}

/// Cell reference of a line whose barcode is not wanted.
const IGNORE: u32 = u32::MAX;
/// Marks a cell reference as an index into the chunk's own table of new barcodes.
const LOCAL: u32 = 1 << 31;

/// One kept fragment line: its cell and how many ids (ranks) it produced.
#[derive(Debug, Clone, Copy)]
struct Rec {
    cell: u32,
    n_ids: u32,
}

/// Results for a run of complete lines; line numbers are relative to the run (1-based).
#[derive(Debug, Default)]
struct Body {
    lines: u64,
    fragments: u64,
    recs: Vec<Rec>,
    ids: Vec<u32>,
    /// Barcodes missing from the shared table, in first-seen order, concatenated.
    new_bytes: Vec<u8>,
    new_ends: Vec<usize>,
    skipped: u64,
    first_skipped: Option<(u64, LineProblem)>,
    error: Option<(u64, LineProblem)>,
}

impl Body {
    /// Records a malformed line; true when parsing must stop.
    fn bad(&mut self, skip: bool, line: u64, problem: LineProblem) -> bool {
        if skip {
            self.skipped += 1;
            // Barcode problems are found a few lines after parse problems.
            if self.first_skipped.as_ref().is_none_or(|(l, _)| line < *l) {
                self.first_skipped = Some((line, problem));
            }
            false
        } else {
            self.error = Some((line, problem));
            true
        }
    }
}

/// A worker's result for one chunk.
#[derive(Debug, Default)]
struct TaskOut {
    failure: Option<ReadFailure>,
    /// Text before the first newline (the end of a line begun in earlier chunks), or the
    /// whole chunk when it has no newline.
    head: Vec<u8>,
    /// Text after the last newline.
    tail: Vec<u8>,
    has_newline: bool,
    body: Body,
}

fn work(ctx: &Ctx<'_>, known: &BarcodeMap, chunk: Chunk) -> TaskOut {
    match chunk {
        Chunk::Failed(f) => TaskOut {
            failure: Some(f),
            ..TaskOut::default()
        },
        Chunk::Text(text) => {
            let out = split_and_parse(ctx, known, &text);
            ctx.buffers.give(text);
            out
        }
        Chunk::Blocks {
            raw,
            spans,
            data_len,
        } => {
            let mut text = ctx.buffers.take();
            text.resize(data_len, 0);
            let mut d = Decompressor::new();
            let mut at = 0;
            let mut failure = None;
            for s in &spans {
                let block = &raw[s.start..s.start + s.len];
                if let Err(m) = bgzf::inflate_block(&mut d, block, &mut text[at..at + s.data_len]) {
                    failure = Some(ReadFailure::Compression(m));
                    break;
                }
                at += s.data_len;
            }
            ctx.buffers.give(raw);
            let out = match failure {
                Some(f) => TaskOut {
                    failure: Some(f),
                    ..TaskOut::default()
                },
                None => split_and_parse(ctx, known, &text),
            };
            ctx.buffers.give(text);
            out
        }
    }
}

fn split_and_parse(ctx: &Ctx<'_>, known: &BarcodeMap, text: &[u8]) -> TaskOut {
    match (memchr(b'\n', text), memchr::memrchr(b'\n', text)) {
        (Some(first), Some(last)) => TaskOut {
            failure: None,
            head: text[..first].to_vec(),
            tail: text[last + 1..].to_vec(),
            has_newline: true,
            body: parse_lines(ctx, known, &text[first + 1..=last]),
        },
        _ => TaskOut {
            head: text.to_vec(),
            ..TaskOut::default()
        },
    }
}

/// The fields of a fragment line that tokenization needs.
struct Fragment<'a> {
    chrom: &'a [u8],
    start: u32,
    end: u32,
    barcode: &'a [u8],
}

/// Parses a plain tab-separated line at the start of `s` in one pass: the fragment and the
/// length of the line with its newline. `None` for anything else, and for a line that
/// `s` cuts off; [`fast_parse`] and [`parse_fields`] see to those.
#[inline(always)]
fn fast_line(s: &[u8]) -> Option<(Fragment<'_>, usize)> {
    let t1 = tab_after_field(s, 0)?;
    if t1 == 0 || s[0] == b'#' {
        return None;
    }
    let (start, t2) = digits_until_tab(s, t1 + 1, false)?;
    let (end, t3) = digits_until_tab(s, t2 + 1, false)?;
    if start > end {
        return None;
    }
    let t4 = tab_after_field(s, t3 + 1)?;
    if t4 == t3 + 1 {
        return None;
    }
    // The count: digits, then the end of the line or more columns.
    let mut k = t4 + 1;
    while s.get(k).is_some_and(u8::is_ascii_digit) {
        k += 1;
    }
    if k == t4 + 1 {
        return None;
    }
    let used = match *s.get(k)? {
        b'\n' => k + 1,
        b'\r' if s.get(k + 1) == Some(&b'\n') => k + 2,
        b'\t' => k + 1 + memchr(b'\n', &s[k + 1..])? + 1,
        _ => return None,
    };
    let fragment = Fragment {
        chrom: &s[..t1],
        start,
        end,
        barcode: &s[t3 + 1..t4],
    };
    Some((fragment, used))
}

/// Parses a tab-separated line quickly; `None` for anything else (see [`parse_fields`]).
#[inline]
fn fast_parse(line: &[u8]) -> Option<Fragment<'_>> {
    let t1 = memchr(b'\t', line)?;
    if t1 == 0 {
        return None;
    }
    let (start, t2) = digits_until_tab(line, t1 + 1, false)?;
    let (end, t3) = digits_until_tab(line, t2 + 1, false)?;
    if start > end {
        return None;
    }
    let rest = &line[t3 + 1..];
    let t4 = memchr(b'\t', rest)?;
    if t4 == 0 {
        return None;
    }
    let count = &rest[t4 + 1..];
    let count_len = count
        .iter()
        .position(|&b| b == b'\t')
        .unwrap_or(count.len());
    if count_len == 0 || !count[..count_len].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(Fragment {
        chrom: &line[..t1],
        start,
        end,
        barcode: &rest[..t4],
    })
}

/// The general parser, for lines [`fast_parse`] rejects: columns separated by tabs or
/// runs of spaces (some tools write fragments that way). Says what is wrong otherwise.
fn parse_fields(line: &[u8]) -> Result<Fragment<'_>, LineProblem> {
    let fields: Vec<&[u8]> = line
        .split(|&b| b == b'\t' || b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    if fields.len() < 5 {
        return Err(LineProblem::TooFewColumns {
            found: fields.len(),
            needed: 5,
        });
    }
    let start = parse_coord(fields[1], "start")?;
    let end = parse_coord(fields[2], "end")?;
    if start > end {
        return Err(LineProblem::StartAfterEnd { start, end });
    }
    let count = fields[4];
    if !count.iter().all(u8::is_ascii_digit) {
        return Err(match parse_coord(count, "count") {
            Err(p) => p,
            Ok(_) => LineProblem::NotAnInteger {
                column: "count",
                value: String::from_utf8_lossy(count).into_owned(),
            },
        });
    }
    Ok(Fragment {
        chrom: fields[0],
        start,
        end,
        barcode: fields[3],
    })
}

/// Lines parsed before their barcodes are looked up: a batch of independent lookups
/// lets the CPU overlap their cache misses, which otherwise dominate.
const BATCH: usize = 32;

/// Parses and queries complete lines (`text` is empty or ends with a newline).
fn parse_lines(ctx: &Ctx<'_>, known: &BarcodeMap, text: &[u8]) -> Body {
    let mut b = Body::default();
    let mut local: FastMap<&[u8], u32> = FastMap::default();
    let mut scratch = Scratch::default();
    // Fragment files are sorted by position, so the chromosome rarely changes.
    let mut last_chrom: (&[u8], Option<u32>) = (&[], None);
    let mut batch: Vec<(Fragment<'_>, u64)> = Vec::with_capacity(BATCH);
    let mut found = [None::<u32>; BATCH];
    let mut pos = 0;
    let mut line_no = 0u64;
    let mut stop: Option<(u64, LineProblem)> = None;
    while pos < text.len() && stop.is_none() {
        batch.clear();
        while batch.len() < BATCH && pos < text.len() {
            if let Some((f, used)) = fast_line(&text[pos..]) {
                line_no += 1;
                pos += used;
                batch.push((f, line_no));
                continue;
            }
            let end = memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i);
            let mut line = &text[pos..end];
            pos = end + 1;
            line_no += 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            match fast_parse(line).map_or_else(|| parse_fields(line), Ok) {
                Ok(f) => batch.push((f, line_no)),
                Err(_) if line.trim_ascii().is_empty() => {}
                Err(problem) if ctx.skip_bad => {
                    b.bad(true, line_no, problem);
                }
                // Lines before this one in the batch may still fail first.
                Err(problem) => {
                    stop = Some((line_no, problem));
                    break;
                }
            }
        }
        known.get_batch(batch.iter().map(|(f, _)| f.barcode), &mut found);
        for (&(ref f, line), &hit) in batch.iter().zip(&found) {
            let cell = if let Some(g) = hit {
                g
            } else if ctx.listed {
                IGNORE
            } else if let Some(&l) = local.get(f.barcode) {
                l | LOCAL
            } else if std::str::from_utf8(f.barcode).is_err() {
                if b.bad(ctx.skip_bad, line, LineProblem::NotUtf8) {
                    return b;
                }
                continue;
            } else {
                let l = b.new_ends.len() as u32;
                b.new_bytes.extend_from_slice(f.barcode);
                b.new_ends.push(b.new_bytes.len());
                local.insert(f.barcode, l);
                l | LOCAL
            };
            b.fragments += 1;
            if cell == IGNORE {
                continue;
            }
            if f.chrom != last_chrom.0 {
                last_chrom = (f.chrom, ctx.universe.chrom_id(f.chrom));
            }
            let before = b.ids.len();
            if let Some(c) = last_chrom.1 {
                let ids = &mut b.ids;
                match ctx.ranks {
                    Some(ranks) => ctx
                        .universe
                        .overlaps(c, f.start, f.end, &mut scratch, |id| {
                            ids.push(ranks[id as usize])
                        }),
                    None => ctx
                        .universe
                        .overlaps(c, f.start, f.end, &mut scratch, |id| ids.push(id)),
                }
            }
            b.recs.push(Rec {
                cell,
                n_ids: (b.ids.len() - before) as u32,
            });
        }
    }
    if let Some((line, problem)) = stop {
        b.bad(false, line, problem);
    }
    b.lines = line_no;
    b
}

// ---------------------------------------------------------------------------------------
// Merging (serial, in file order)

/// Ids (or ranks) gathered for one cell so far.
#[derive(Debug)]
struct Cell {
    ids: Vec<u32>,
    lines: u64,
    /// With unique ids, sort and deduplicate when `ids` grows this long.
    compact_at: usize,
}

impl Cell {
    const FIRST_COMPACTION: usize = 4096;

    fn new() -> Self {
        Cell {
            ids: Vec::new(),
            lines: 0,
            compact_at: Self::FIRST_COMPACTION,
        }
    }

    /// Sorted unique ranks; keeps memory near the output size when duplicates abound.
    fn compact(&mut self) {
        if !self.ids.is_sorted() {
            self.ids.sort_unstable();
        }
        self.ids.dedup();
        self.compact_at = (4 * self.ids.len()).max(Self::FIRST_COMPACTION);
    }
}

/// How many records ahead [`Merger::apply`] prefetches the cell it will append to.
const MERGE_AHEAD: usize = 8;

struct Merger {
    path: PathBuf,
    unique: bool,
    listed: bool,
    /// The barcode table the workers see: the list, or a snapshot of `master`.
    known: Arc<BarcodeMap>,
    /// Without a list: every barcode seen so far.
    master: BarcodeMap,
    /// Barcodes added to `master` since `known` was taken.
    fresh: usize,
    names: Vec<String>,
    cells: Vec<Cell>,
    stats: FragmentStats,
    /// The start of a line whose end is in a later chunk.
    pending: Vec<u8>,
    local_to_global: Vec<u32>,
}

impl Merger {
    fn new(path: &Path, opts: &FragmentOptions) -> Result<Self> {
        let mut known = BarcodeMap::default();
        let mut names = Vec::new();
        if let Some(list) = &opts.barcodes {
            if list.len() >= LOCAL as usize {
                return Err(Error::InvalidInput(
                    "too many barcodes (at most 2^31-1)".into(),
                ));
            }
            for (i, bc) in list.iter().enumerate() {
                if known.insert(bc.as_bytes(), i as u32).is_some() {
                    return Err(Error::InvalidInput(format!(
                        "barcode {bc:?} is listed more than once"
                    )));
                }
            }
            names.clone_from(list);
        }
        Ok(Merger {
            path: path.to_path_buf(),
            unique: opts.unique,
            listed: opts.barcodes.is_some(),
            known: Arc::new(known),
            master: BarcodeMap::default(),
            fresh: 0,
            cells: names.iter().map(|_| Cell::new()).collect(),
            names,
            stats: FragmentStats::default(),
            pending: Vec::new(),
            local_to_global: Vec::new(),
        })
    }

    /// Lets the workers see the barcodes found so far; copies the table only when it has
    /// grown enough for the copy to pay off.
    fn refresh(&mut self) {
        if self.fresh > 0 && (self.master.len() < 1 << 16 || 8 * self.fresh >= self.known.len()) {
            self.known = Arc::new(self.master.clone());
            self.fresh = 0;
        }
    }

    fn merge_all(&mut self, ctx: &Ctx<'_>, outs: Vec<TaskOut>) -> Result<()> {
        outs.into_iter().try_for_each(|t| self.merge_task(ctx, t))
    }

    fn merge_task(&mut self, ctx: &Ctx<'_>, t: TaskOut) -> Result<()> {
        if let Some(f) = t.failure {
            return Err(match f {
                ReadFailure::Io(e) => Error::io(&self.path, e),
                ReadFailure::Compression(message) => Error::Compression {
                    path: self.path.clone(),
                    line: self.stats.lines,
                    message,
                },
            });
        }
        self.pending.extend_from_slice(&t.head);
        if !t.has_newline {
            return Ok(());
        }
        self.pending.push(b'\n');
        let straddling = parse_lines(ctx, &self.known, &self.pending);
        self.pending.clear();
        self.apply(straddling)?;
        self.apply(t.body)?;
        self.pending.extend_from_slice(&t.tail);
        Ok(())
    }

    /// Parses the last line when the file does not end with a newline.
    fn finish_input(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.push(b'\n');
        let last = parse_lines(ctx, &self.known, &self.pending);
        self.pending.clear();
        self.apply(last)
    }

    fn apply(&mut self, body: Body) -> Result<()> {
        let base = self.stats.lines;
        if let Some((line, problem)) = body.error {
            return Err(Error::Parse {
                path: self.path.clone(),
                line: base + line,
                problem,
            });
        }
        self.local_to_global.clear();
        self.local_to_global.resize(body.new_ends.len(), IGNORE);
        let mut at = 0;
        for (k, rec) in body.recs.iter().enumerate() {
            // Appending to a cell touches the end of its id list, a cache miss with
            // thousands of cells; start the load for the cell a few records ahead.
            if let Some(ahead) = body.recs.get(k + MERGE_AHEAD) {
                if let Some(c) = self.cells.get(ahead.cell as usize) {
                    prefetch(c.ids.as_ptr().wrapping_add(c.ids.len().saturating_sub(1)));
                }
            }
            let g = if rec.cell & LOCAL != 0 {
                self.resolve(&body, (rec.cell & !LOCAL) as usize)?
            } else {
                rec.cell
            };
            let n = rec.n_ids as usize;
            let ids = &body.ids[at..at + n];
            at += n;
            let cell = &mut self.cells[g as usize];
            cell.lines += 1;
            if self.unique {
                for &r in ids {
                    if cell.ids.last() != Some(&r) {
                        cell.ids.push(r);
                    }
                }
                if cell.ids.len() >= cell.compact_at {
                    cell.compact();
                }
            } else {
                cell.ids.extend_from_slice(ids);
            }
        }
        self.stats.lines += body.lines;
        self.stats.fragments += body.fragments;
        self.stats.skipped_lines += body.skipped;
        if self.stats.first_skipped.is_none() {
            self.stats.first_skipped = body.first_skipped.map(|(l, p)| (base + l, p));
        }
        Ok(())
    }

    /// The cell of the `l`-th new barcode of `body`, creating it on first sight.
    fn resolve(&mut self, body: &Body, l: usize) -> Result<u32> {
        let g = self.local_to_global[l];
        if g != IGNORE {
            return Ok(g);
        }
        let start = if l == 0 { 0 } else { body.new_ends[l - 1] };
        let bytes = &body.new_bytes[start..body.new_ends[l]];
        let g = match self.master.get(bytes) {
            Some(g) => g,
            None => {
                let g = self.cells.len() as u32;
                if g >= LOCAL {
                    return Err(Error::InvalidInput(format!(
                        "{}: more than 2^31-1 barcodes",
                        self.path.display()
                    )));
                }
                // Workers only hand over barcodes they checked to be UTF-8.
                self.names.push(String::from_utf8_lossy(bytes).into_owned());
                self.master.insert(bytes, g);
                self.cells.push(Cell::new());
                self.fresh += 1;
                g
            }
        };
        self.local_to_global[l] = g;
        Ok(g)
    }

    /// Filters, sorts and joins the cells.
    fn into_ragged(
        self,
        tok: &Tokenizer,
        order: Option<&GenomicOrder>,
        opts: &FragmentOptions,
        par: bool,
    ) -> (Ragged, FragmentStats) {
        let Merger {
            mut cells,
            names,
            stats,
            listed,
            ..
        } = self;
        let keep = |c: &Cell| {
            c.lines >= opts.min_fragments && opts.max_fragments.is_none_or(|m| c.lines <= m)
        };
        let finish = |c: &mut Cell| {
            if !keep(c) {
                c.ids = Vec::new();
            } else if let Some(order) = order {
                if !c.ids.is_sorted() {
                    c.ids.sort_unstable();
                }
                c.ids.dedup();
                for r in &mut c.ids {
                    *r = order.ids()[*r as usize];
                }
            }
        };
        if par {
            cells.par_iter_mut().for_each(finish);
        } else {
            cells.iter_mut().for_each(finish);
        }
        let unk = tok.special_id(Special::Unk) as i32;
        let total: usize = cells.iter().map(|c| c.ids.len().max(1)).sum();
        let mut out = Ragged {
            ids: Vec::with_capacity(total),
            offsets: Vec::with_capacity(cells.len() + 1),
            names: Vec::new(),
        };
        out.offsets.push(0);
        for (cell, name) in cells.into_iter().zip(names) {
            if !keep(&cell) || (cell.ids.is_empty() && !listed) {
                continue;
            }
            if cell.ids.is_empty() {
                out.ids.push(unk);
            } else {
                out.ids.extend(cell.ids.iter().map(|&id| id as i32));
            }
            out.offsets.push(out.ids.len() as i64);
            out.names.push(name);
        }
        (out, stats)
    }
}

// ---------------------------------------------------------------------------------------
// The pipeline

/// Runs `a` and `b`, side by side in the pool when `par`.
fn join<RA: Send, RB: Send>(
    par: bool,
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    if par {
        rayon::join(a, b)
    } else {
        (a(), b())
    }
}

fn process(ctx: &Ctx<'_>, known: &BarcodeMap, chunks: Vec<Chunk>, par: bool) -> Vec<TaskOut> {
    if par {
        chunks
            .into_par_iter()
            .map(|c| work(ctx, known, c))
            .collect()
    } else {
        chunks.into_iter().map(|c| work(ctx, known, c)).collect()
    }
}

/// Reads batch i+2, processes batch i+1 and merges batch i at the same time.
fn pipeline(
    ctx: &Ctx<'_>,
    reader: &mut ChunkReader,
    merger: &mut Merger,
    par: bool,
    batch_len: usize,
) -> Result<()> {
    let mut batch = reader.read_batch(batch_len);
    let mut outs: Vec<TaskOut> = Vec::new();
    while !(batch.is_empty() && outs.is_empty()) {
        let known = Arc::clone(&merger.known);
        let todo = std::mem::take(&mut batch);
        let done = std::mem::take(&mut outs);
        let (next, (processed, merged)) = join(
            par,
            || reader.read_batch(batch_len),
            || {
                join(
                    par,
                    || process(ctx, &known, todo, par),
                    || merger.merge_all(ctx, done),
                )
            },
        );
        merged?;
        batch = next;
        outs = processed;
        merger.refresh();
    }
    merger.finish_input(ctx)
}

fn run(
    tok: &Tokenizer,
    path: &Path,
    opts: &FragmentOptions,
    tuning: &Tuning,
) -> Result<(Ragged, FragmentStats)> {
    if let Some(max) = opts.max_fragments {
        if max < opts.min_fragments {
            return Err(Error::InvalidInput(format!(
                "max_fragments ({max}) is below min_fragments ({})",
                opts.min_fragments
            )));
        }
    }
    let buffers = Arc::new(BufferPool::default());
    let mut reader = ChunkReader::open(path, tuning.chunk_bytes, Arc::clone(&buffers))?;
    let mut merger = Merger::new(path, opts)?;
    let universe = tok.universe();
    let threads = if tuning.serial {
        1
    } else {
        parallel::num_threads()
    };
    let go = |par: bool| -> Result<(Ragged, FragmentStats)> {
        let order = opts.unique.then(|| universe.genomic_order());
        let ctx = Ctx {
            universe,
            ranks: order.map(GenomicOrder::ranks),
            listed: opts.barcodes.is_some(),
            skip_bad: opts.skip_bad_lines,
            buffers,
        };
        let batch_len = if par {
            threads * tuning.chunks_per_thread.max(1)
        } else {
            1
        };
        pipeline(&ctx, &mut reader, &mut merger, par, batch_len)?;
        Ok(merger.into_ragged(tok, order, opts, par))
    };
    if threads > 1 {
        // Parallel only inside our pool, never in rayon's global one.
        parallel::install(|| go(rayon::current_thread_index().is_some()))
    } else {
        go(false)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{SpecialTokens, TokenizerType};
    use crate::region_set::RegionSet;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) use crate::rng::TestRng as Rng;

    /// A fresh path in the temp folder; the file is removed when the guard drops.
    pub(crate) struct TempFile(pub PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
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

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(text).expect("in memory");
        e.finish().expect("in memory")
    }

    fn bgzf_bytes(text: &[u8], block: usize) -> Vec<u8> {
        let mut w = bgzf::Writer::with_block_size(Vec::new(), 6, block).expect("valid");
        w.write_all(text).expect("in memory");
        w.finish().expect("in memory")
    }

    /// The file as plain text, gzip, BGZF, and BGZF with tiny blocks.
    fn encodings(text: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("plain", text.to_vec()),
            ("gzip", gzip(text)),
            ("bgzf", bgzf_bytes(text, bgzf::WRITE_BLOCK_DATA)),
            ("bgzf-tiny", bgzf_bytes(text, 23)),
        ]
    }

    const TUNINGS: [Tuning; 4] = [
        Tuning {
            chunk_bytes: 1 << 20,
            chunks_per_thread: 4,
            serial: false,
        },
        Tuning {
            chunk_bytes: 1 << 20,
            chunks_per_thread: 4,
            serial: true,
        },
        Tuning {
            chunk_bytes: 7,
            chunks_per_thread: 3,
            serial: false,
        },
        Tuning {
            chunk_bytes: 5,
            chunks_per_thread: 1,
            serial: true,
        },
    ];

    /// Runs every encoding under every tuning, checks they agree, and returns the result.
    fn run_everywhere(
        tok: &Tokenizer,
        text: &[u8],
        opts: &FragmentOptions,
    ) -> Result<(Ragged, FragmentStats)> {
        let mut first: Option<Result<(Ragged, FragmentStats)>> = None;
        for (kind, bytes) in encodings(text) {
            let file = temp_file(&format!("{kind}.tsv.gz"), &bytes);
            for t in &TUNINGS {
                let got = run(tok, &file.0, opts, t).map_err(|e| match e {
                    // The path differs per encoding; compare the rest.
                    Error::Parse { line, problem, .. } => Error::Parse {
                        path: PathBuf::new(),
                        line,
                        problem,
                    },
                    other => other,
                });
                match &first {
                    None => first = Some(got),
                    Some(Ok(want)) => {
                        assert_eq!(got.as_ref().ok(), Some(want), "{kind} {t:?}")
                    }
                    Some(Err(want)) => assert_eq!(
                        got.as_ref().err().map(ToString::to_string),
                        Some(want.to_string()),
                        "{kind} {t:?}"
                    ),
                }
            }
        }
        first.expect("at least one run")
    }

    fn cells(r: &Ragged) -> Vec<(String, Vec<i32>)> {
        (0..r.len())
            .map(|i| (r.names[i].clone(), r.cell(i).to_vec()))
            .collect()
    }

    fn small() -> (Tokenizer, &'static str) {
        // Genomic order: chr1:100-200 (id 0), chr1:150-250 (id 1), chr10:0-100 (id 3),
        // chr2:0-50 (id 2), since "chr10" < "chr2" as bytes.
        let tok = tokenizer(&[
            ("chr1", 100, 200),
            ("chr1", 150, 250),
            ("chr2", 0, 50),
            ("chr10", 0, 100),
        ]);
        let text = "# a 10x header\n\
                    chr2\t10\t20\tB\t1\n\
                    chr1\t160\t170\tA\t1\n\
                    chr10\t5\t6\tA\t2\n\
                    chr1\t0\t10\tC\t1\n\
                    chr2\t0\t1\tA\t1\textra\tcolumns\n\
                    chr1\t190\t210\tB\t1\n\
                    chrX\t0\t100\tA\t1\n\
                    chr1\t160\t170\tA\t1\n";
        (tok, text)
    }

    fn owned(v: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
        v.iter()
            .map(|(n, ids)| (n.to_string(), ids.to_vec()))
            .collect()
    }

    #[test]
    fn hand_checked_unique_and_all() {
        let (tok, text) = small();
        let (r, stats) =
            run_everywhere(&tok, text.as_bytes(), &FragmentOptions::default()).expect("valid");
        // Cells in first-seen order; C overlaps nothing and is dropped.
        assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
        assert_eq!(
            stats,
            FragmentStats {
                lines: 9,
                fragments: 8,
                skipped_lines: 0,
                first_skipped: None
            }
        );
        let all = FragmentOptions {
            unique: false,
            ..FragmentOptions::default()
        };
        let (r, _) = run_everywhere(&tok, text.as_bytes(), &all).expect("valid");
        assert_eq!(
            cells(&r),
            owned(&[("B", &[2, 0, 1]), ("A", &[0, 1, 3, 2, 0, 1])])
        );
    }

    #[test]
    fn barcode_list_selects_orders_and_fills_unk() {
        let (tok, text) = small();
        let unk = tok.special_id(Special::Unk) as i32;
        let listed = FragmentOptions {
            barcodes: Some(vec!["C".into(), "A".into(), "Z".into()]),
            ..FragmentOptions::default()
        };
        let (r, stats) = run_everywhere(&tok, text.as_bytes(), &listed).expect("valid");
        assert_eq!(
            cells(&r),
            owned(&[("C", &[unk]), ("A", &[0, 1, 3, 2]), ("Z", &[unk])])
        );
        assert_eq!(
            stats.fragments, 8,
            "lines of unlisted barcodes are still counted"
        );
        let dup = FragmentOptions {
            barcodes: Some(vec!["A".into(), "A".into()]),
            ..FragmentOptions::default()
        };
        assert!(matches!(
            run_everywhere(&tok, text.as_bytes(), &dup),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn min_and_max_fragments_count_lines_per_barcode() {
        // Lines per barcode: A 5, B 2, C 1.
        let (tok, text) = small();
        let unk = tok.special_id(Special::Unk) as i32;
        let opts = |min, max, barcodes: Option<Vec<String>>| FragmentOptions {
            barcodes,
            min_fragments: min,
            max_fragments: max,
            ..FragmentOptions::default()
        };
        let run = |o: FragmentOptions| {
            cells(&run_everywhere(&tok, text.as_bytes(), &o).expect("valid").0)
        };
        assert_eq!(run(opts(3, None, None)), owned(&[("A", &[0, 1, 3, 2])]));
        assert_eq!(run(opts(2, Some(2), None)), owned(&[("B", &[0, 1, 2])]));
        assert_eq!(run(opts(5, Some(5), None)), owned(&[("A", &[0, 1, 3, 2])]));
        let listed = Some(vec!["C".to_string(), "A".to_string(), "B".to_string()]);
        // Listed cells outside the bounds are dropped; C is inside and gets unk.
        assert_eq!(
            run(opts(0, Some(2), listed.clone())),
            owned(&[("C", &[unk]), ("B", &[0, 1, 2])])
        );
        assert_eq!(run(opts(1, Some(1), listed)), owned(&[("C", &[unk])]));
        assert!(matches!(
            run_everywhere(&tok, text.as_bytes(), &opts(3, Some(2), None)),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn runs_of_spaces_separate_columns_like_tabs() {
        let (tok, good) = small();
        let spaced: String = good
            .lines()
            .map(|l| l.replace('\t', "    ") + "\n")
            .collect();
        let opts = FragmentOptions::default();
        let want = run_everywhere(&tok, good.as_bytes(), &opts).expect("tabs");
        let got = run_everywhere(&tok, spaced.as_bytes(), &opts).expect("spaces");
        assert_eq!(cells(&got.0), cells(&want.0));
        assert!(!want.0.ids.is_empty());
    }

    #[test]
    fn bad_lines_raise_with_line_numbers_or_are_skipped() {
        let (tok, good) = small();
        let cases: [(&[u8], LineProblem); 7] = [
            (
                b"chr1\t5\t9\tA",
                LineProblem::TooFewColumns {
                    found: 4,
                    needed: 5,
                },
            ),
            (
                b"chr1  5 9 \tA",
                LineProblem::TooFewColumns {
                    found: 4,
                    needed: 5,
                },
            ),
            (
                b"chr1\tx5\t9\tA\t1",
                LineProblem::NotAnInteger {
                    column: "start",
                    value: "x5".into(),
                },
            ),
            (
                b"chr1\t9\t5\tA\t1",
                LineProblem::StartAfterEnd { start: 9, end: 5 },
            ),
            (b"chr1\t5\t9\t\xff\xfe\t1", LineProblem::NotUtf8),
            (
                b"chr1\t5\t9\tA\t1.5",
                LineProblem::NotAnInteger {
                    column: "count",
                    value: "1.5".into(),
                },
            ),
            (
                b"chr1\t5\t99999999999\tA\t1",
                LineProblem::TooLarge {
                    column: "end",
                    value: "99999999999".into(),
                },
            ),
        ];
        for (bad, problem) in cases {
            // Bad line 5 and line 10 (with the header, good has 9 lines).
            let mut text = Vec::new();
            for (i, line) in good.lines().enumerate() {
                if i == 4 || i == 8 {
                    text.extend_from_slice(bad);
                    text.push(b'\n');
                }
                text.extend_from_slice(line.as_bytes());
                text.push(b'\n');
            }
            let err = run_everywhere(&tok, &text, &FragmentOptions::default());
            match err {
                Err(Error::Parse {
                    line, problem: p, ..
                }) => {
                    assert_eq!((line, &p), (5, &problem))
                }
                other => panic!("expected a parse error, got {other:?}"),
            }
            let skip = FragmentOptions {
                skip_bad_lines: true,
                ..FragmentOptions::default()
            };
            let (r, stats) = run_everywhere(&tok, &text, &skip).expect("skipping");
            assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
            assert_eq!(stats.lines, 11);
            assert_eq!(stats.skipped_lines, 2);
            assert_eq!(stats.first_skipped, Some((5, problem)));
        }
    }

    #[test]
    fn crlf_blank_lines_and_missing_final_newline() {
        let (tok, text) = small();
        let mut crlf = text
            .replace('\n', "\r\n")
            .replacen("\r\n", "\r\n\n   \n", 1);
        crlf.truncate(crlf.len() - 2);
        let (r, stats) =
            run_everywhere(&tok, crlf.as_bytes(), &FragmentOptions::default()).expect("valid");
        assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
        assert_eq!((stats.lines, stats.fragments), (11, 8));
        let (r, stats) =
            run_everywhere(&tok, b"", &FragmentOptions::default()).expect("empty file");
        assert!(r.is_empty() && r.offsets == vec![0] && stats.lines == 0);
        let (r, _) = run_everywhere(&tok, b"# only\n# comments", &FragmentOptions::default())
            .expect("comments");
        assert!(r.is_empty());
    }

    #[test]
    fn truncated_or_corrupt_compression_is_an_error() {
        let (tok, text) = small();
        let text = text.repeat(2000);
        let opts = FragmentOptions::default();
        let check = |bytes: &[u8], what: &str| {
            let f = temp_file("broken.gz", bytes);
            for t in &TUNINGS[..3] {
                match run(&tok, &f.0, &opts, t) {
                    Err(Error::Compression { line, .. }) => {
                        assert!(line <= 18_000, "{what}: line {line}")
                    }
                    other => panic!("{what} {t:?}: expected a compression error, got {other:?}"),
                }
            }
        };
        let gz = gzip(text.as_bytes());
        check(&gz[..gz.len() / 2], "gzip cut in half");
        check(&gz[..gz.len() - 3], "gzip without its trailer");
        // A corrupt gzip stream inflates to garbage before its CRC is checked at the end,
        // so it fails either on a garbled line or on the CRC; it must not succeed.
        let mut bad = gz.clone();
        bad[gz.len() / 2] ^= 0xff;
        let f = temp_file("corrupt.gz", &bad);
        assert!(matches!(
            tokenize_fragments(&tok, &f.0, &opts),
            Err(Error::Compression { .. } | Error::Parse { .. })
        ));
        let bg = bgzf_bytes(text.as_bytes(), 4000);
        check(&bg[..bg.len() / 2], "BGZF cut in half");
        check(
            &bg[..bg.len() - bgzf::EOF_MARKER.len()],
            "BGZF without EOF marker",
        );
        // Corrupt the deflate data of the second block (header bytes such as MTIME are
        // not checked by anyone).
        let second = usize::from(u16::from_le_bytes([bg[16], bg[17]])) + 1;
        let mut bad = bg.clone();
        bad[second + 20] ^= 0xff;
        check(&bad, "corrupt BGZF");
        // Not found is its own error.
        let missing = std::env::temp_dir().join("atacformer-test-no-such-file.tsv.gz");
        assert!(matches!(
            tokenize_fragments(&tok, &missing, &opts),
            Err(Error::NotFound { .. })
        ));
    }

    /// Brute force: each fragment against every universe region.
    fn oracle(
        regions: &[(String, u32, u32)],
        lines: &[(String, u32, u32, String)],
        opts: &FragmentOptions,
        unk: i32,
    ) -> Vec<(String, Vec<i32>)> {
        let mut order: Vec<usize> = (0..regions.len()).collect();
        order.sort_by(|&a, &b| regions[a].cmp(&regions[b]));
        let mut rank = vec![0; regions.len()];
        for (r, &id) in order.iter().enumerate() {
            rank[id] = r;
        }
        let mut seen: Vec<String> = Vec::new();
        let mut acc: std::collections::HashMap<String, (u64, Vec<i32>)> = Default::default();
        for (c, s, e, bc) in lines {
            if !acc.contains_key(bc) {
                seen.push(bc.clone());
            }
            let cell = acc.entry(bc.clone()).or_default();
            cell.0 += 1;
            let mut hits: Vec<usize> = (0..regions.len())
                .filter(|&i| regions[i].0 == *c && regions[i].1 < *e && *s < regions[i].2)
                .collect();
            hits.sort_by_key(|&i| (regions[i].1, regions[i].2));
            cell.1.extend(hits.iter().map(|&i| i as i32));
        }
        let names = opts.barcodes.clone().unwrap_or(seen);
        let mut out = Vec::new();
        for name in names {
            let (n, mut ids) = acc.get(&name).cloned().unwrap_or_default();
            if n < opts.min_fragments || opts.max_fragments.is_some_and(|m| n > m) {
                continue;
            }
            if opts.unique {
                ids.sort_by_key(|&i| rank[i as usize]);
                ids.dedup();
            }
            if ids.is_empty() {
                if opts.barcodes.is_none() {
                    continue;
                }
                ids.push(unk);
            }
            out.push((name, ids));
        }
        out
    }

    #[test]
    fn matches_brute_force_on_random_files() {
        let chroms = ["chr1", "chr2", "chr10", "chrX"];
        for seed in 0..6u64 {
            let mut rng = Rng::new(seed);
            let mut regions: Vec<(String, u32, u32)> = Vec::new();
            while regions.len() < 300 {
                let c = chroms[rng.below(3) as usize].to_string(); // chrX has no regions
                let s = rng.below(20_000);
                let w = match rng.below(8) {
                    0 => rng.below(5000),
                    1 => 0,
                    _ => 50 + rng.below(400),
                };
                if !regions.contains(&(c.clone(), s, s + w)) {
                    regions.push((c, s, s + w));
                }
            }
            let refs: Vec<(&str, u32, u32)> = regions
                .iter()
                .map(|(c, s, e)| (c.as_str(), *s, *e))
                .collect();
            let tok = tokenizer(&refs);
            let n_barcodes = 1 + rng.below(40) as usize;
            // Short, 10x-like (18 bytes, inline keys) and long (heap keys) barcodes.
            let barcodes: Vec<String> = (0..n_barcodes)
                .map(|i| match i % 3 {
                    0 => format!("BC{i:03}-1"),
                    1 => format!("AACG{i:012}-1"),
                    _ => format!("sample-with-a-long-name#{i:04}"),
                })
                .collect();
            let mut lines: Vec<(String, u32, u32, String)> = (0..1500)
                .map(|_| {
                    let c = chroms[rng.below(4) as usize].to_string();
                    let s = rng.below(21_000);
                    let e = s + rng.below(600);
                    (
                        c,
                        s,
                        e,
                        barcodes[rng.below(n_barcodes as u64) as usize].clone(),
                    )
                })
                .collect();
            if seed % 2 == 0 {
                // 10x files are sorted by position; half the runs use that order.
                lines.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            }
            let mut text = String::from("#id=synthetic\n");
            for (c, s, e, bc) in &lines {
                text.push_str(&format!("{c}\t{s}\t{e}\t{bc}\t{}\n", 1 + rng.below(3)));
            }
            let mut listed: Vec<String> = barcodes.iter().step_by(2).cloned().collect();
            listed.push("ABSENT-1".into());
            listed.reverse();
            let unk = tok.special_id(Special::Unk) as i32;
            for opts in [
                FragmentOptions::default(),
                FragmentOptions {
                    unique: false,
                    ..FragmentOptions::default()
                },
                FragmentOptions {
                    barcodes: Some(listed.clone()),
                    min_fragments: 20,
                    ..FragmentOptions::default()
                },
                FragmentOptions {
                    barcodes: Some(listed.clone()),
                    unique: false,
                    max_fragments: Some(60),
                    ..FragmentOptions::default()
                },
            ] {
                let (got, stats) = run_everywhere(&tok, text.as_bytes(), &opts).expect("valid");
                assert_eq!(
                    cells(&got),
                    oracle(&regions, &lines, &opts, unk),
                    "seed {seed} {opts:?}"
                );
                assert_eq!((stats.lines, stats.fragments), (1501, 1500));
            }
        }
    }

    #[test]
    fn many_duplicates_are_compacted_without_changing_the_result() {
        // One cell hitting the same two regions over and over, alternating, so consecutive
        // deduplication cannot remove them and compaction must.
        let tok = tokenizer(&[("chr1", 0, 10), ("chr1", 100, 110)]);
        let mut text = String::new();
        for i in 0..20_000 {
            let s = if i % 2 == 0 { 0 } else { 100 };
            text.push_str(&format!("chr1\t{s}\t{}\tA\t1\n", s + 5));
        }
        let f = temp_file("dups.tsv", text.as_bytes());
        let (r, _) = tokenize_fragments(&tok, &f.0, &FragmentOptions::default()).expect("valid");
        assert_eq!(cells(&r), owned(&[("A", &[0, 1])]));
    }

    #[test]
    fn barcode_keys_are_exact_at_every_length() {
        // Keys of every length around the inline limit, including zero bytes that must not
        // be confused with padding.
        let mut all: Vec<Vec<u8>> = Vec::new();
        for n in 0..=30usize {
            for k in [vec![b'A'; n], vec![0u8; n], (1..=n as u8).collect()] {
                if !all.contains(&k) {
                    all.push(k);
                }
            }
        }
        let mut map = BarcodeMap::default();
        for (i, k) in all.iter().enumerate() {
            assert_eq!(map.insert(k, i as u32), None, "{k:?}");
        }
        for (i, k) in all.iter().enumerate() {
            assert_eq!(map.get(k), Some(i as u32), "{k:?}");
        }
        assert_eq!(map.len(), all.len());
        assert_eq!(map.get(b"AAAC"), None);
        let mut out = [None; BATCH];
        let keys: Vec<&[u8]> = all.iter().take(BATCH).map(Vec::as_slice).collect();
        map.get_batch(keys.iter().copied(), &mut out);
        for (k, got) in keys.iter().zip(out) {
            assert_eq!(got, map.get(k));
        }
    }

    #[test]
    fn reads_barcode_lists() {
        let f = temp_file(
            "barcodes.tsv",
            b"# cells\nAAAC-1\n\n  CCCG-1  \nTTTA-1\textra\n",
        );
        assert_eq!(
            read_barcodes(&f.0).expect("valid"),
            vec!["AAAC-1", "CCCG-1", "TTTA-1"]
        );
    }

    #[test]
    fn genomic_order_matches_region_set_sort() {
        for seed in 0..4u64 {
            let mut rng = Rng::new(seed);
            let names = ["chr1", "chr10", "chr2", "chrX", "HLA-A"];
            let mut regions: Vec<(&str, u32, u32)> = Vec::new();
            while regions.len() < 500 {
                let r = (names[rng.below(5) as usize], rng.below(5000), 0);
                let r = (r.0, r.1, r.1 + rng.below(300));
                if !regions.contains(&r) {
                    regions.push(r);
                }
            }
            if seed % 2 == 0 {
                // Sorted within each chromosome, chromosomes interleaved: the fast path.
                regions.sort_by_key(|r| (r.1, r.2));
            }
            let tok = tokenizer(&regions);
            let order = GenomicOrder::new(tok.universe());
            let mut sorted = tok.universe().regions().clone();
            sorted.sort();
            for (rank, &id) in order.ids().iter().enumerate() {
                let r = &regions[id as usize];
                let s = sorted.get(rank).expect("same length");
                assert_eq!((r.0, r.1, r.2), (s.chr.as_str(), s.start, s.end));
                assert_eq!(order.ranks()[id as usize] as usize, rank);
            }
        }
    }

    #[test]
    fn one_pass_lines_agree_with_the_general_parser() {
        let lines = [
            "chr1\t10\t20\tAAAC-1\t2",
            "chr1\t10\t20\tAAAC-1\t2\textra\tcols",
            "chr1\t0\t4294967295\tB\t1",
            "chr1\t0\t4294967296\tB\t1",
            "chr1\t20\t10\tB\t1",
            "chr1\t10\t20\t\t1",
            "chr1\t10\t20\tB\t",
            "chr1\t10\t20\tB\tx",
            "chr1\t10\t20\tB",
            "chr1 10 20 B 1",
            "chr1\t10\t20\tB C\t1",
            "#chr1\t10\t20\tB\t1",
            "\t10\t20\tB\t1",
            "chr1\t-1\t20\tB\t1",
        ];
        for line in lines {
            for eol in ["\n", "\r\n"] {
                let text = format!("{line}{eol}chr2\t1\t2\tC\t1\n");
                if let Some((fast, used)) = fast_line(text.as_bytes()) {
                    assert_eq!(used, line.len() + eol.len(), "{line:?}");
                    let general = parse_fields(line.as_bytes()).expect("the general parser agrees");
                    assert_eq!(
                        (fast.chrom, fast.start, fast.end, fast.barcode),
                        (general.chrom, general.start, general.end, general.barcode),
                        "{line:?}"
                    );
                }
            }
            assert!(fast_line(line.as_bytes()).is_none(), "cut off: {line:?}");
        }
        assert!(fast_line(b"chr1\t10\t20\tAAAC-1\t2\n").is_some());
        assert!(fast_line(b"chr1\t10\t20\tB\t2\textra\n").is_some());
    }
}
