//! The whole run: reading batch i+2, working on batch i+1 and merging batch i at the same
//! time, in [`crate::parallel`]'s pool.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::barcodes::BarcodeMap;
use super::chunks::{BufferPool, Chunk, ChunkReader};
use super::merge::Merger;
use super::worker::{parse_chunk, ChunkOutput, WorkerContext};
use super::{FragmentOptions, FragmentStats};
use crate::coverage::{ChromResolver, Coverage};
use crate::error::{Error, Result};
use crate::parallel;
use crate::ragged::Ragged;
use crate::tokenizer::Tokenizer;
use crate::universe::GenomicOrder;

/// Chunking knobs; tests shrink them to force lines across chunk and block boundaries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    /// Uncompressed bytes per chunk (BGZF chunks hold at least one block).
    pub(super) chunk_bytes: usize,
    /// Chunks per batch and thread.
    pub(super) chunks_per_thread: usize,
    /// Run on the calling thread only.
    pub(super) serial: bool,
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

/// Parses a batch of chunks, in parallel when `par`; results keep the batch order.
fn parse_batch(
    ctx: &WorkerContext<'_>,
    known: &BarcodeMap,
    chunks: Vec<Chunk>,
    par: bool,
) -> Vec<ChunkOutput> {
    if par {
        chunks
            .into_par_iter()
            .map(|c| parse_chunk(ctx, known, c))
            .collect()
    } else {
        chunks
            .into_iter()
            .map(|c| parse_chunk(ctx, known, c))
            .collect()
    }
}

/// Reads batch i+2, processes batch i+1 and merges batch i at the same time.
fn pipeline(
    ctx: &WorkerContext<'_>,
    reader: &mut ChunkReader,
    merger: &mut Merger,
    par: bool,
    batch_len: usize,
) -> Result<()> {
    let mut batch = reader.read_batch(batch_len);
    let mut outs: Vec<ChunkOutput> = Vec::new();
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
                    || parse_batch(ctx, &known, todo, par),
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

/// Tokenizes the fragment file at `path`: [`super::tokenize_fragments`] with `tuning`.
pub(super) fn run(
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
    let mut reader = ChunkReader::open(
        path,
        tuning.chunk_bytes,
        opts.skip_bad_lines,
        Arc::clone(&buffers),
    )?;
    let universe = tok.universe();
    let mut merger = Merger::new(path, opts, Coverage::new(universe))?;
    let threads = if tuning.serial {
        1
    } else {
        parallel::num_threads()
    };
    let run_pipeline = |par: bool| -> Result<(Ragged, FragmentStats)> {
        let order = opts.unique.then(|| universe.genomic_order());
        let ctx = WorkerContext {
            universe,
            resolver: ChromResolver::new(universe, opts.chrom_names),
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
        parallel::install(|| run_pipeline(rayon::current_thread_index().is_some()))
    } else {
        run_pipeline(false)
    }
}
