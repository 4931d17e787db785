//! What a worker does with one chunk: inflate it if it holds BGZF blocks, set aside the
//! partial lines at both ends (the merger stitches them to their neighbours), parse the
//! complete lines, look their barcodes up and query the universe.

use std::sync::Arc;

use memchr::memchr;

use super::barcodes::{BarcodeMap, BATCH};
use super::chunks::{BufferPool, Chunk, ReadFailure};
use super::parse::{fast_line, parse_fields, Fragment};
use crate::bed::{is_comment, too_long};
use crate::bgzf;
use crate::error::LineProblem;
use crate::hash::FastMap;
use crate::index::Scratch;
use crate::io::MAX_LINE_BYTES;
use crate::universe::Universe;

/// What the workers share.
pub(super) struct WorkerContext<'a> {
    pub(super) universe: &'a Universe,
    /// Genomic rank of each id, when cells keep unique ids (workers emit ranks then).
    pub(super) ranks: Option<&'a [u32]>,
    /// A barcode list was given: barcodes missing from it are not cells.
    pub(super) listed: bool,
    /// Skip and count malformed lines instead of stopping at the first.
    pub(super) skip_bad: bool,
    /// Where chunk buffers go back to once parsed.
    pub(super) buffers: Arc<BufferPool>,
}

/// Cell reference of a line whose barcode is not wanted.
pub(super) const IGNORE: u32 = u32::MAX;
/// Marks a cell reference as an index into the chunk's own table of new barcodes.
pub(super) const LOCAL: u32 = 1 << 31;

/// One kept fragment line: its cell and how many ids (ranks) it produced.
#[derive(Debug, Clone, Copy)]
pub(super) struct FragmentRecord {
    pub(super) cell: u32,
    pub(super) n_ids: u32,
}

/// Results for a run of complete lines; line numbers are relative to the run (1-based).
#[derive(Debug, Default)]
pub(super) struct ParsedLines {
    pub(super) lines: u64,
    pub(super) fragments: u64,
    pub(super) records: Vec<FragmentRecord>,
    pub(super) ids: Vec<u32>,
    /// Barcodes missing from the shared table, in first-seen order, concatenated.
    pub(super) new_bytes: Vec<u8>,
    pub(super) new_ends: Vec<usize>,
    pub(super) skipped: u64,
    pub(super) first_skipped: Option<(u64, LineProblem)>,
    pub(super) error: Option<(u64, LineProblem)>,
}

impl ParsedLines {
    /// Records a malformed line; true when parsing must stop.
    pub(super) fn bad(&mut self, skip: bool, line: u64, problem: LineProblem) -> bool {
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

/// What stands in for the data of a BGZF block lost with `skip_bad`: a newline and the
/// start of a comment.
const LOST_BLOCK: &[u8] = b"\n#";

/// BGZF blocks that failed their checks and were skipped (with `skip_bad`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct LostBlocks {
    pub(super) count: u64,
    /// What was wrong with the first, with its byte offset.
    pub(super) first: Option<String>,
}

impl LostBlocks {
    fn add(&mut self, problem: String) {
        self.count += 1;
        self.first.get_or_insert(problem);
    }
}

/// A worker's result for one chunk.
#[derive(Debug, Default)]
pub(super) struct ChunkOutput {
    pub(super) failure: Option<ReadFailure>,
    /// BGZF blocks skipped in this chunk.
    pub(super) lost: LostBlocks,
    /// Text before the first newline (the end of a line begun in earlier chunks), or the
    /// whole chunk when it has no newline.
    pub(super) head: Vec<u8>,
    /// Text after the last newline.
    pub(super) tail: Vec<u8>,
    pub(super) has_newline: bool,
    /// The complete lines between `head` and `tail`.
    pub(super) parsed: ParsedLines,
}

/// Inflates (for BGZF) and parses one chunk, looking barcodes up in `known`; a chunk
/// that failed to read or inflate comes back as its failure.
pub(super) fn parse_chunk(
    ctx: &WorkerContext<'_>,
    known: &BarcodeMap,
    chunk: Chunk,
) -> ChunkOutput {
    match chunk {
        Chunk::Failed(f) => ChunkOutput {
            failure: Some(f),
            ..ChunkOutput::default()
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
            // Room for what stands in for lost blocks too (see `LOST_BLOCK`).
            text.resize(data_len + LOST_BLOCK.len() * spans.len(), 0);
            let mut at = 0;
            let mut failure = None;
            let mut lost = LostBlocks::default();
            match bgzf::Inflater::new() {
                None => failure = Some(ReadFailure::Compression("out of memory".into())),
                Some(mut d) => {
                    for s in &spans {
                        let block = &raw[s.start..s.start + s.len];
                        let out = &mut text[at..at + s.data_len];
                        match bgzf::inflate_block(&mut d, block, s, out) {
                            Ok(()) => at += s.data_len,
                            Err(m) if ctx.skip_bad => {
                                // The block's data is lost; what stands in for it ends the
                                // line before it and makes the rest of the line after it a
                                // comment, so no line is glued across the gap.
                                text[at..at + LOST_BLOCK.len()].copy_from_slice(LOST_BLOCK);
                                at += LOST_BLOCK.len();
                                lost.add(m);
                            }
                            Err(m) => {
                                failure = Some(ReadFailure::Compression(m));
                                break;
                            }
                        }
                    }
                }
            }
            text.truncate(at);
            ctx.buffers.give(raw);
            let mut out = match failure {
                Some(f) => ChunkOutput {
                    failure: Some(f),
                    ..ChunkOutput::default()
                },
                None => split_and_parse(ctx, known, &text),
            };
            out.lost = lost;
            ctx.buffers.give(text);
            out
        }
    }
}

pub(super) fn split_and_parse(
    ctx: &WorkerContext<'_>,
    known: &BarcodeMap,
    text: &[u8],
) -> ChunkOutput {
    match (memchr(b'\n', text), memchr::memrchr(b'\n', text)) {
        (Some(first), Some(last)) => ChunkOutput {
            failure: None,
            lost: LostBlocks::default(),
            head: text[..first].to_vec(),
            tail: text[last + 1..].to_vec(),
            has_newline: true,
            parsed: parse_lines(ctx, known, &text[first + 1..=last]),
        },
        _ => ChunkOutput {
            head: text.to_vec(),
            ..ChunkOutput::default()
        },
    }
}

/// Parses and queries complete lines (`text` is empty or ends with a newline).
pub(super) fn parse_lines(ctx: &WorkerContext<'_>, known: &BarcodeMap, text: &[u8]) -> ParsedLines {
    let mut b = ParsedLines::default();
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
            if let Some((f, used)) =
                fast_line(&text[pos..]).filter(|&(_, used)| used <= MAX_LINE_BYTES)
            {
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
            if line.len() > MAX_LINE_BYTES {
                if is_comment(line, false) {
                    continue;
                }
                if ctx.skip_bad {
                    b.bad(true, line_no, too_long());
                    continue;
                }
                stop = Some((line_no, too_long()));
                break;
            }
            match parse_fields(line) {
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
            b.records.push(FragmentRecord {
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
