//! Reading a fragment file as a series of chunks for the workers: about a megabyte of
//! text each (plain or gzip, inflated here), or runs of whole raw BGZF blocks that the
//! workers inflate themselves. Buffers are recycled through a [`BufferPool`].

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use flate2::read::MultiGzDecoder;

use crate::bgzf::{BlockReader, BlockSpan};
use crate::error::Result;
use crate::io::{self as input, Compression};

/// A unit of work for one worker.
pub(super) enum Chunk {
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
    /// With `skip_bad`, a BGZF block could not be read (the message says why and where):
    /// where the next block starts is unknown, so the rest of the file is lost.
    Lost(String),
    /// The BGZF file ended without its end-of-file block, after this many bytes.
    MissingEof(u64),
}

/// Why reading stopped.
#[derive(Debug)]
pub(super) enum ReadFailure {
    Io(io::Error),
    Compression(String),
}

/// The file, as the chunks are taken from it.
enum Input {
    Plain(BufReader<File>),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
    Bgzf(BlockReader<BufReader<File>>),
}

/// Produces chunks from a file in order.
pub(super) struct ChunkReader {
    input: Input,
    /// A failure or note found after some good blocks, returned by the next call.
    deferred: Option<Chunk>,
    /// Turn BGZF read errors into [`Chunk::Lost`].
    skip_bad: bool,
    done: bool,
    chunk_bytes: usize,
    buffers: Arc<BufferPool>,
}

impl ChunkReader {
    /// Opens `path` (see [`crate::io::open`]); chunks hold about `chunk_bytes` of text.
    pub(super) fn open(
        path: &Path,
        chunk_bytes: usize,
        skip_bad: bool,
        buffers: Arc<BufferPool>,
    ) -> Result<Self> {
        // Plain and gzip chunks are read in large requests that bypass this buffer; BGZF
        // blocks are read from it, at most 64 KiB each.
        let opened = input::open_with_capacity(path, 1 << 16)?;
        let raw = opened.raw;
        let input = match opened.compression {
            Compression::Bgzf => Input::Bgzf(BlockReader::new(raw)),
            Compression::Gzip => Input::Gzip(Box::new(MultiGzDecoder::new(raw))),
            Compression::None => Input::Plain(raw),
        };
        Ok(ChunkReader {
            input,
            deferred: None,
            skip_bad,
            done: false,
            chunk_bytes: chunk_bytes.max(1),
            buffers,
        })
    }

    /// Up to `n` chunks; fewer at the end of input, which also sets `done`.
    pub(super) fn read_batch(&mut self, n: usize) -> Vec<Chunk> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && !self.done {
            match self.next_chunk() {
                Some(c) => {
                    if matches!(c, Chunk::Failed(_) | Chunk::Lost(_) | Chunk::MissingEof(_)) {
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
        if let Some(c) = self.deferred.take() {
            return Some(c);
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
                        Ok(None) => {
                            if r.missing_eof() {
                                self.deferred = Some(Chunk::MissingEof(r.offset()));
                            }
                            break;
                        }
                        Err(msg) => {
                            let c = if self.skip_bad {
                                Chunk::Lost(msg)
                            } else {
                                Chunk::Failed(ReadFailure::Compression(msg))
                            };
                            if spans.is_empty() {
                                return Some(c);
                            }
                            // Hand over the good blocks first, so the error's line number
                            // counts their lines; the failure comes with the next call.
                            self.deferred = Some(c);
                            break;
                        }
                    }
                }
                if spans.is_empty() {
                    self.buffers.give(raw);
                    return self.deferred.take();
                }
                Some(Chunk::Blocks {
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
                self.deferred = f.map(Chunk::Failed);
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
pub(super) struct BufferPool(Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    pub(super) fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    pub(super) fn give(&self, mut v: Vec<u8>) {
        v.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 64 {
            pool.push(v);
        }
    }
}
