//! BGZF, the blocked gzip of bgzip and htslib: a series of gzip members of at most 64 KiB
//! of data each, whose header carries the member's compressed size in a `BC` extra
//! subfield. Knowing each block's size up front lets a reader hand whole blocks to
//! several threads; this module reads raw blocks, inflates one block, and writes BGZF.
//!
//! Sizes in the input are never trusted (as htslib does not): each block's deflate stream
//! must end exactly where its `BSIZE` says the block ends, and the data must match the
//! block's CRC32 and `ISIZE`. A `BSIZE` that is too large would otherwise swallow the next
//! block, whose lines would vanish without an error whenever the two `ISIZE`s are equal.

use std::io::{self, Read, Write};

use std::ptr::NonNull;

use libdeflater::{CompressionLvl, Compressor};

/// Most data bytes one block may hold.
pub const MAX_BLOCK_DATA: usize = 65536;

/// Data bytes per block written by [`Writer`] (as htslib's `BGZF_BLOCK_SIZE`).
pub const WRITE_BLOCK_DATA: usize = 0xff00;

/// The empty block that ends a BGZF file.
pub const EOF_MARKER: [u8; 28] = [
    0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, b'B', b'C', 0x02, 0, 0x1b, 0, 0x03, 0, 0,
    0, 0, 0, 0, 0, 0, 0,
];

/// Fixed part of a gzip member header: magic, CM, FLG, MTIME, XFL, OS, XLEN.
const FIXED_HEADER: usize = 12;

/// True when `head` (the first bytes of a file) begins a BGZF block: gzip with an extra
/// field holding a `BC` subfield of two bytes.
pub fn is_bgzf(head: &[u8]) -> bool {
    if head.len() < FIXED_HEADER || head[..3] != [0x1f, 0x8b, 0x08] || head[3] & 0x04 == 0 {
        return false;
    }
    let xlen = usize::from(u16::from_le_bytes([head[10], head[11]]));
    head.get(FIXED_HEADER..FIXED_HEADER + xlen)
        .is_some_and(|extra| block_size_field(extra).is_some())
}

/// The `BSIZE` value (block size minus one) in a gzip extra field, if it has a `BC` subfield.
fn block_size_field(mut extra: &[u8]) -> Option<u16> {
    while extra.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        let data = extra.get(4..4 + len)?;
        if extra[..2] == *b"BC" && len == 2 {
            return Some(u16::from_le_bytes([data[0], data[1]]));
        }
        extra = &extra[4 + len..];
    }
    None
}

/// Where one raw block sits in a buffer of raw blocks, and how much data it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    /// Offset of the block's first byte in the raw buffer.
    pub start: usize,
    /// Offset of the block's first byte in the file, for messages.
    pub file_offset: u64,
    /// Compressed size of the whole block (header and trailer included), bytes.
    pub len: usize,
    /// Uncompressed size (the block's `ISIZE`), bytes.
    pub data_len: usize,
}

/// Reads whole raw BGZF blocks from a byte stream without inflating them.
pub struct BlockReader<R> {
    inner: R,
    /// Compressed offset of the next block, for messages.
    offset: u64,
    last_was_empty: bool,
    started: bool,
    missing_eof: bool,
}

impl<R: Read> BlockReader<R> {
    pub fn new(inner: R) -> Self {
        BlockReader {
            inner,
            offset: 0,
            last_was_empty: false,
            started: false,
            missing_eof: false,
        }
    }

    /// True once the stream ended after a block that was not the empty end-of-file block:
    /// the file may be truncated at a block boundary. As htslib does, this is not an error
    /// (the caller may warn).
    pub fn missing_eof(&self) -> bool {
        self.missing_eof
    }

    /// Offset of the next block in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends the next block to `raw` and says where it is; `Ok(None)` at the end of the
    /// stream. Errors are messages about corrupt or truncated input (or I/O failures).
    pub fn read_block(&mut self, raw: &mut Vec<u8>) -> Result<Option<BlockSpan>, String> {
        let start = raw.len();
        let mut header = [0u8; FIXED_HEADER];
        let got = read_full(&mut self.inner, &mut header).map_err(|e| e.to_string())?;
        if got == 0 {
            self.missing_eof = self.started && !self.last_was_empty;
            return Ok(None);
        }
        self.started = true;
        let at = self.offset;
        if got < FIXED_HEADER {
            return Err(format!("truncated BGZF block header at byte {at}"));
        }
        if header[..3] != [0x1f, 0x8b, 0x08] || header[3] & 0x04 == 0 {
            return Err(format!("not a BGZF block at byte {at}"));
        }
        let xlen = usize::from(u16::from_le_bytes([header[10], header[11]]));
        raw.extend_from_slice(&header);
        raw.resize(start + FIXED_HEADER + xlen, 0);
        self.fill(&mut raw[start + FIXED_HEADER..], at)?;
        let Some(bsize) = block_size_field(&raw[start + FIXED_HEADER..]) else {
            return Err(format!("gzip member at byte {at} has no BGZF block size"));
        };
        let len = usize::from(bsize) + 1;
        if len < FIXED_HEADER + xlen + 8 {
            return Err(format!(
                "BGZF block at byte {at} is too small ({len} bytes)"
            ));
        }
        raw.resize(start + len, 0);
        self.fill(&mut raw[start + FIXED_HEADER + xlen..], at)?;
        let t = &raw[start + len - 4..];
        let data_len = u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize;
        if data_len > MAX_BLOCK_DATA {
            return Err(format!(
                "BGZF block at byte {at} claims {data_len} data bytes (at most {MAX_BLOCK_DATA})"
            ));
        }
        self.offset += len as u64;
        self.last_was_empty = data_len == 0;
        Ok(Some(BlockSpan {
            start,
            file_offset: at,
            len,
            data_len,
        }))
    }

    fn fill(&mut self, buf: &mut [u8], at: u64) -> Result<(), String> {
        let got = read_full(&mut self.inner, buf).map_err(|e| e.to_string())?;
        if got < buf.len() {
            return Err(format!("truncated BGZF block at byte {at}"));
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// libdeflate's decompressor, used through the call the `libdeflater` crate does not wrap:
/// raw deflate that reports where the stream ended.
pub struct Inflater(NonNull<libdeflate_sys::libdeflate_decompressor>);

// SAFETY: a libdeflate decompressor holds no thread-local state; `&mut self` on every use
// keeps it to one thread at a time.
unsafe impl Send for Inflater {}

impl Inflater {
    /// A new decompressor; `None` when libdeflate cannot allocate one.
    pub fn new() -> Option<Self> {
        // SAFETY: no arguments; a null result (out of memory) is handled.
        NonNull::new(unsafe { libdeflate_sys::libdeflate_alloc_decompressor() }).map(Inflater)
    }

    /// Inflates the raw deflate stream at the start of `input` into exactly `out.len()`
    /// bytes; returns how many bytes of `input` the stream took.
    fn deflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, &'static str> {
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: the pointers and lengths come from live slices; libdeflate reads at most
        // `input.len()` bytes, writes at most `out.len()` bytes and fills both counters.
        let result = unsafe {
            libdeflate_sys::libdeflate_deflate_decompress_ex(
                self.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut used_in,
                &mut used_out,
            )
        };
        match result {
            libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS if used_out == out.len() => {
                Ok(used_in)
            }
            libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS => {
                Err("its data is shorter than its ISIZE")
            }
            libdeflate_sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => {
                Err("its data is longer than its ISIZE")
            }
            _ => Err("its deflate data is corrupt"),
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once, here.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// How many other BGZF blocks a corrupt raw block seems to hold: the gzip member headers
/// (`1f 8b 08 04`) inside it after its own. A `BSIZE` that is too large swallows the
/// blocks that follow it, and their lines are lost with it; this counts them (random
/// deflate data holds these four bytes rarely, so the count is at worst slightly high).
pub fn members_inside(block: &[u8]) -> u64 {
    block.get(1..).map_or(0, |rest| {
        memchr::memmem::find_iter(rest, &[0x1f, 0x8b, 0x08, 0x04]).count()
    }) as u64
}

/// Inflates one raw block (as [`BlockReader`] read it, `span` saying where it came from)
/// into `out`, which must be exactly its `ISIZE` long, and checks it against itself: the
/// deflate stream must end where the block's `BSIZE` ends it, and the data must match the
/// block's CRC32 and `ISIZE`. Errors name the block's byte offset in the file.
pub fn inflate_block(
    d: &mut Inflater,
    block: &[u8],
    span: &BlockSpan,
    out: &mut [u8],
) -> Result<(), String> {
    let at = span.file_offset;
    let bad = |what: &str| format!("BGZF block at byte {at}: {what}");
    let xlen = block
        .get(10..12)
        .map(|x| usize::from(u16::from_le_bytes([x[0], x[1]])));
    let (payload, trailer) = match xlen {
        Some(x) if block.len() >= FIXED_HEADER + x + 8 => {
            let (head, trailer) = block.split_at(block.len() - 8);
            (&head[FIXED_HEADER + x..], trailer)
        }
        _ => return Err(bad("too short for its header")),
    };
    let used = d.deflate(payload, out).map_err(bad)?;
    if used != payload.len() {
        return Err(bad(&format!(
            "its deflate data ends {} bytes before the end its BSIZE gives \
             (BSIZE too large: it would swallow what follows)",
            payload.len() - used
        )));
    }
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if isize as usize != out.len() {
        return Err(bad("its ISIZE differs from its data"));
    }
    if libdeflater::crc32(out) != crc {
        return Err(bad("its data does not match its CRC32"));
    }
    Ok(())
}

/// Appends one BGZF block holding `data` (at most [`WRITE_BLOCK_DATA`] bytes) to `out`.
pub fn encode_block(c: &mut Compressor, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    if data.len() > WRITE_BLOCK_DATA {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a BGZF block holds at most 65280 bytes",
        ));
    }
    let start = out.len();
    out.resize(start + 18, 0);
    out[start..start + 16].copy_from_slice(&[
        0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, b'B', b'C', 0x02, 0,
    ]);
    let bound = c.deflate_compress_bound(data.len());
    out.resize(start + 18 + bound, 0);
    let n = match c.deflate_compress(data, &mut out[start + 18..]) {
        Ok(n) if n + 26 <= MAX_BLOCK_DATA => n,
        // Incompressible data: store it instead (a stored block adds 5 bytes).
        _ => {
            let mut stored = Compressor::new(
                CompressionLvl::new(0)
                    .map_err(|_| io::Error::other("libdeflate has no level 0"))?,
            );
            stored
                .deflate_compress(data, &mut out[start + 18..])
                .map_err(|e| io::Error::other(format!("{e:?}")))?
        }
    };
    out.truncate(start + 18 + n);
    let bsize =
        u16::try_from(n + 25).map_err(|_| io::Error::other("BGZF block does not fit in 64 KiB"))?;
    out[start + 16..start + 18].copy_from_slice(&bsize.to_le_bytes());
    out.extend_from_slice(&libdeflater::crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(())
}

/// Writes BGZF: blocks of up to `block_data` bytes, then the end-of-file marker on
/// [`Writer::finish`].
pub struct Writer<W: Write> {
    inner: W,
    pending: Vec<u8>,
    block_data: usize,
    compressor: Compressor,
    out: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// A writer with htslib's block size and compression level `level` (0-12).
    pub fn new(inner: W, level: i32) -> io::Result<Self> {
        Self::with_block_size(inner, level, WRITE_BLOCK_DATA)
    }

    /// A writer whose blocks hold at most `block_data` bytes (1 to 65280); small blocks
    /// are useful to test lines that span blocks.
    pub fn with_block_size(inner: W, level: i32, block_data: usize) -> io::Result<Self> {
        let lvl = CompressionLvl::new(level)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "compression level 0-12"))?;
        if !(1..=WRITE_BLOCK_DATA).contains(&block_data) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "BGZF block size must be 1 to 65280 bytes",
            ));
        }
        Ok(Writer {
            inner,
            pending: Vec::with_capacity(block_data),
            block_data,
            compressor: Compressor::new(lvl),
            out: Vec::new(),
        })
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.out.clear();
        encode_block(&mut self.compressor, &self.pending, &mut self.out)?;
        self.inner.write_all(&self.out)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the last block and the end-of-file marker, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_block()?;
        self.inner.write_all(&EOF_MARKER)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.block_data - self.pending.len();
        let n = room.min(buf.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == self.block_data {
            self.flush_block()?;
        }
        Ok(n)
    }

    /// Flushes the inner writer; the partial block stays pending so blocks stay full.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bgzf_bytes as write_bgzf, gzip};

    fn read_all(file: &[u8]) -> Result<Vec<u8>, String> {
        let mut r = BlockReader::new(file);
        let mut raw = Vec::new();
        let mut out = Vec::new();
        let mut d = Inflater::new().expect("memory");
        while let Some(span) = r.read_block(&mut raw)? {
            let at = out.len();
            out.resize(at + span.data_len, 0);
            inflate_block(
                &mut d,
                &raw[span.start..span.start + span.len],
                &span,
                &mut out[at..],
            )?;
        }
        Ok(out)
    }

    #[test]
    fn round_trips_and_is_readable_as_multi_member_gzip() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let file = write_bgzf(&data, WRITE_BLOCK_DATA);
        assert!(is_bgzf(&file));
        assert!(file.ends_with(&EOF_MARKER));
        assert_eq!(read_all(&file).expect("valid"), data);
        let mut via_flate = Vec::new();
        flate2::read::MultiGzDecoder::new(&file[..])
            .read_to_end(&mut via_flate)
            .expect("valid gzip");
        assert_eq!(via_flate, data);
        // Tiny blocks too.
        assert_eq!(
            read_all(&write_bgzf(&data[..5000], 7)).expect("valid"),
            &data[..5000]
        );
    }

    #[test]
    fn incompressible_data_is_stored() {
        let mut x = 0x1234_5678_u32;
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert_eq!(
            read_all(&write_bgzf(&data, WRITE_BLOCK_DATA)).expect("valid"),
            data
        );
    }

    #[test]
    fn plain_gzip_is_not_bgzf() {
        assert!(!is_bgzf(&gzip(b"hello")));
        assert!(!is_bgzf(b"chr1\t1\t2\n"));
        assert!(is_bgzf(&EOF_MARKER));
    }

    #[test]
    fn truncation_and_corruption_are_errors() {
        let data = b"chr1\t10\t20\tAAAC-1\t1\n".repeat(5000);
        let file = write_bgzf(&data, 1000);
        // A file cut at a block boundary (no EOF marker) is read whole, and says so.
        let cut = &file[..file.len() - EOF_MARKER.len()];
        assert_eq!(read_all(cut).as_deref(), Ok(&data[..]));
        let mut r = BlockReader::new(cut);
        let mut raw = Vec::new();
        while r.read_block(&mut raw).expect("whole blocks").is_some() {}
        assert!(r.missing_eof());
        let mut r = BlockReader::new(&file[..]);
        while r.read_block(&mut raw).expect("whole blocks").is_some() {}
        assert!(!r.missing_eof());
        // Cut inside a block, and in the header.
        for cut in [file.len() / 2, 5] {
            assert!(read_all(&file[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = file.clone();
        bad[20] ^= 0x55; // inside the first block's deflate data
        assert!(read_all(&bad).is_err());
        assert_eq!(read_all(&[]).expect("empty input"), b"");
    }

    /// The byte offsets of the blocks of a BGZF file.
    fn block_starts(file: &[u8]) -> Vec<usize> {
        let mut r = BlockReader::new(file);
        let mut raw = Vec::new();
        let mut starts = Vec::new();
        let mut at = 0;
        while let Some(span) = r.read_block(&mut raw).expect("valid") {
            starts.push(at);
            at += span.len;
        }
        starts
    }

    #[test]
    fn each_block_is_checked_against_its_own_stream_end_crc_and_isize() {
        // Two full blocks of equal ISIZE, then a last one.
        let data = b"chr1\t10\t20\tAAAC-1\t1\n".repeat(3000);
        let file = write_bgzf(&data, 1000);
        let starts = block_starts(&file);
        assert!(starts.len() > 3);
        let (b0, b1, b2) = (starts[0], starts[1], starts[2]);
        // BSIZE of block 0 grown to swallow block 1 (same ISIZE): its lines would vanish.
        let mut swallow = file.clone();
        let bsize = u16::try_from(b2 - b0 - 1).expect("small blocks");
        swallow[b0 + 16..b0 + 18].copy_from_slice(&bsize.to_le_bytes());
        let err = read_all(&swallow).expect_err("BSIZE too large");
        assert!(
            err.contains("byte 0") && err.contains("BSIZE too large"),
            "{err}"
        );
        // A wrong CRC32 in block 1, and a wrong ISIZE in block 1.
        let mut crc = file.clone();
        crc[b2 - 8] ^= 1;
        let err = read_all(&crc).expect_err("bad CRC");
        assert!(
            err.contains(&format!("byte {b1}")) && err.contains("CRC32"),
            "{err}"
        );
        let mut isize = file.clone();
        isize[b2 - 4] ^= 1;
        let err = read_all(&isize).expect_err("bad ISIZE");
        assert!(
            err.contains(&format!("byte {b1}")) && err.contains("ISIZE"),
            "{err}"
        );
        assert_eq!(read_all(&file).expect("valid"), data);
    }
}
