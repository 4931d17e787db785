//! Streaming reader of BED-like text, plain or gzip (detected from the magic bytes).
//!
//! Columns are separated by tabs or runs of spaces. `track`, `browser` and `#` lines are
//! skipped, as is a first data line whose start column is not an integer (a header).
//! Everything after the third column is handed on verbatim as `rest`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{Error, LineProblem, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BUF_CAPACITY: usize = 1 << 18;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A byte source that decompresses gzip (and BGZF, which is multi-member gzip) when the
/// file starts with the gzip magic bytes.
pub struct Source {
    pub path: PathBuf,
    pub compressed: bool,
    pub reader: Box<dyn BufRead + Send>,
}

/// Opens `path`, sniffing the first two bytes for gzip.
pub fn open(path: &Path) -> Result<Source> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(Error::InvalidInput(format!(
            "{}: is a directory, not a file",
            path.display()
        )));
    }
    let mut raw = BufReader::with_capacity(BUF_CAPACITY, file);
    let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
    let compressed = head.starts_with(&GZIP_MAGIC);
    let reader: Box<dyn BufRead + Send> = if compressed {
        Box::new(BufReader::with_capacity(
            BUF_CAPACITY,
            MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    };
    Ok(Source {
        path: path.to_path_buf(),
        compressed,
        reader,
    })
}

/// One parsed data line; the slices borrow the reader's line buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub chrom: &'a [u8],
    pub start: u32,
    pub end: u32,
    /// Columns after the third, verbatim, without the separator before them; may be empty.
    pub rest: &'a [u8],
}

/// Splits off the next field, skipping leading separators; returns (field, remainder).
#[inline]
fn next_field(s: &[u8]) -> (&[u8], &[u8]) {
    let begin = s
        .iter()
        .position(|&b| b != b'\t' && b != b' ')
        .unwrap_or(s.len());
    let s = &s[begin..];
    let end = s
        .iter()
        .position(|&b| b == b'\t' || b == b' ')
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// Parses a coordinate column: a decimal integer in `0..=2^32-1`.
#[inline]
pub fn parse_coord(field: &[u8], column: &'static str) -> std::result::Result<u32, LineProblem> {
    if !field.is_empty() && field.len() <= 10 && field.iter().all(u8::is_ascii_digit) {
        let v = field
            .iter()
            .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
        return u32::try_from(v).map_err(|_| LineProblem::TooLarge {
            column,
            value: String::from_utf8_lossy(field).into_owned(),
        });
    }
    let value = String::from_utf8_lossy(field).into_owned();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if field.first() == Some(&b'-') && digits(&field[1..]) {
        Err(LineProblem::Negative { column, value })
    } else if digits(field) {
        Err(LineProblem::TooLarge { column, value })
    } else {
        Err(LineProblem::NotAnInteger { column, value })
    }
}

/// What a line holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank, `#`, `track` or `browser`.
    Skip,
    Data(Record<'a>),
}

/// Removes the line terminator (`\n` or `\r\n`).
#[inline]
pub fn trim_eol(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    if let Some(rest) = line.strip_suffix(b"\r") {
        line = rest;
    }
    line
}

/// Parses one line (without its terminator).
pub fn parse_line(line: &[u8]) -> std::result::Result<Line<'_>, LineProblem> {
    let (chrom, after) = next_field(line);
    if chrom.is_empty() || chrom[0] == b'#' || chrom == b"track" || chrom == b"browser" {
        return Ok(Line::Skip);
    }
    let (start, after) = next_field(after);
    let (end, after) = next_field(after);
    if end.is_empty() {
        let found = if start.is_empty() { 1 } else { 2 };
        return Err(LineProblem::TooFewColumns { found, needed: 3 });
    }
    let start = parse_coord(start, "start")?;
    let end = parse_coord(end, "end")?;
    if start > end {
        return Err(LineProblem::StartAfterEnd { start, end });
    }
    let skip = after
        .iter()
        .position(|&b| b != b'\t' && b != b' ')
        .unwrap_or(after.len());
    Ok(Line::Data(Record {
        chrom,
        start,
        end,
        rest: &after[skip..],
    }))
}

/// Reads lines from an opened source one by one, reusing one buffer.
pub struct LineReader {
    source: Source,
    buf: Vec<u8>,
    line_no: u64,
}

impl LineReader {
    pub fn new(source: Source) -> Self {
        LineReader {
            source,
            buf: Vec::with_capacity(256),
            line_no: 0,
        }
    }

    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::new(open(path)?))
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// 1-based number of the line last returned.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next line's 1-based number and text without its terminator, or `None` at the
    /// end of input.
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>> {
        self.buf.clear();
        match self.source.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => Ok(None),
            Ok(_) => {
                self.line_no += 1;
                Ok(Some((self.line_no, trim_eol(&self.buf))))
            }
            Err(e) => Err(self.read_error(e)),
        }
    }

    /// Builds the error for a line that failed to parse.
    pub fn parse_error(&self, problem: LineProblem) -> Error {
        Error::Parse {
            path: self.source.path.clone(),
            line: self.line_no,
            problem,
        }
    }

    fn read_error(&self, e: io::Error) -> Error {
        read_error(&self.source, self.line_no, e)
    }
}

/// The decimal number at `s[i..]`: `(value, index of the first byte after its digits)`.
/// `None` unless there are 1 to 10 digits with a value of at most `u32::MAX`.
///
/// Eight bytes are classified and converted at once (SWAR): subtracting `'0'` from every
/// byte leaves digits as 0 to 9, and the lowest byte that is not a digit gets its high bit
/// set by the mask below (borrows and carries only run towards higher bytes, so bytes
/// below the first non-digit are never disturbed).
#[inline(always)]
pub(crate) fn leading_digits(s: &[u8], i: usize) -> Option<(u32, usize)> {
    let Some(&word) = s.get(i..).and_then(|t| t.first_chunk::<8>()) else {
        return leading_digits_slow(s, i);
    };
    let x = u64::from_le_bytes(word).wrapping_sub(0x3030_3030_3030_3030);
    let not_digit = (x | x.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080;
    let n = (not_digit.trailing_zeros() / 8) as usize; // 8 when all are digits
    if n == 0 {
        return None;
    }
    // Move the n digits to the top bytes (zeros below them are leading zeros), then
    // combine neighbours: pairs, then quads, then the whole word.
    let v = x << (8 * (8 - n));
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    let mut v = (v & 0xFFFF) * 10_000 + (v >> 32);
    let mut j = i + n;
    if n == 8 {
        // Up to two more digits; an eleventh is too many.
        for _ in 0..3 {
            match s.get(j).map(|b| b.wrapping_sub(b'0')) {
                Some(d @ 0..=9) if j - i < 10 => {
                    v = v * 10 + u64::from(d);
                    j += 1;
                }
                Some(0..=9) => return None,
                _ => break,
            }
        }
    }
    Some((u32::try_from(v).ok()?, j))
}

/// [`leading_digits`] one byte at a time, for the last few bytes of a buffer.
#[inline(never)]
fn leading_digits_slow(s: &[u8], i: usize) -> Option<(u32, usize)> {
    let mut v: u64 = 0;
    let mut j = i;
    while let Some(d @ 0..=9) = s.get(j).map(|b| b.wrapping_sub(b'0')) {
        if j - i == 10 {
            return None;
        }
        v = v * 10 + u64::from(d);
        j += 1;
    }
    if j == i {
        return None;
    }
    Some((u32::try_from(v).ok()?, j))
}

/// Digits of `line` from `i` up to a tab (or the end when `last`): `(value, index of the
/// tab)`. At most 10 digits and at most `u32::MAX`.
#[inline(always)]
pub(crate) fn digits_until_tab(line: &[u8], i: usize, last: bool) -> Option<(u32, usize)> {
    let (v, j) = leading_digits(line, i)?;
    match line.get(j) {
        Some(b'\t') => Some((v, j)),
        None if last => Some((v, j)),
        _ => None,
    }
}

/// The index of the tab that ends the text field starting at `s[i]`; `None` when the line
/// (or `s`) ends first or a space comes first. Fields such as chromosome names and
/// barcodes are short, so a plain loop beats a vectorised search here.
#[inline(always)]
pub(crate) fn tab_after_field(s: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match *s.get(i)? {
            b'\t' => return Some(i),
            b'\n' | b'\r' | b' ' => return None,
            _ => i += 1,
        }
    }
}

/// Parses a plain tab-separated data line at the start of `s` in one pass: the record and
/// the length of the line with its terminator. `None` when the line is anything else, or
/// when `s` ends before the line does; such lines go to [`parse_line`], which handles the
/// rest (spaces, comments, headers) and names the problems.
#[inline(always)]
fn fast_line(s: &[u8]) -> Option<(Record<'_>, usize)> {
    let t1 = tab_after_field(s, 0)?;
    let chrom = &s[..t1];
    if matches!(chrom.first(), None | Some(b'#')) || chrom == b"track" || chrom == b"browser" {
        return None;
    }
    let (start, t2) = digits_until_tab(s, t1 + 1, false)?;
    let (end, t3) = leading_digits(s, t2 + 1)?;
    if start > end {
        return None;
    }
    let record = |rest| Record {
        chrom,
        start,
        end,
        rest,
    };
    match *s.get(t3)? {
        b'\n' => Some((record(&[]), t3 + 1)),
        b'\r' if s.get(t3 + 1) == Some(&b'\n') => Some((record(&[]), t3 + 2)),
        b'\t' => {
            let tail = &s[t3 + 1..];
            let len = memchr::memchr(b'\n', tail)? + 1;
            let rest = trim_eol(&tail[..len]);
            if rest.first().is_some_and(|&b| b == b'\t' || b == b' ') {
                return None;
            }
            Some((record(rest), t3 + 1 + len))
        }
        _ => None,
    }
}

/// Parses a line the fast path turned down: `Ok(None)` for a line to skip. `seen_data`
/// tracks the header rule: a first data line whose start is not a number is a header.
fn parse_other_line<'a>(
    path: &Path,
    line_no: u64,
    line: &'a [u8],
    seen_data: &mut bool,
) -> Result<Option<Record<'a>>> {
    // A first line cut across reads keeps its byte-order mark until here.
    let line = match line.strip_prefix(UTF8_BOM) {
        Some(rest) if line_no == 1 => rest,
        _ => line,
    };
    match parse_line(trim_eol(line)) {
        Ok(Line::Skip) => Ok(None),
        Ok(Line::Data(rec)) => {
            *seen_data = true;
            Ok(Some(rec))
        }
        Err(LineProblem::NotAnInteger {
            column: "start", ..
        }) if !*seen_data => {
            *seen_data = true;
            Ok(None)
        }
        Err(problem) => Err(Error::Parse {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        }),
    }
}

/// Calls `f(line_no, record)` for every data line of a BED file, applying the header rule.
///
/// Lines are parsed straight out of the reader's buffer, in one pass for plain
/// tab-separated lines; only a line that straddles two buffer fills is copied.
pub fn for_each_record(
    path: &Path,
    mut f: impl FnMut(u64, Record<'_>) -> Result<()>,
) -> Result<()> {
    let mut src = open(path)?;
    let mut line_no = 0u64;
    let mut seen_data = false;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = match src.reader.fill_buf() {
            Ok(c) => c,
            Err(e) => return Err(read_error(&src, line_no, e)),
        };
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        // A UTF-8 byte-order mark, written by some editors, is not part of the first name.
        let mut pos = if line_no == 0 && carry.is_empty() && chunk.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        if !carry.is_empty() {
            let Some(i) = memchr::memchr(b'\n', chunk) else {
                carry.extend_from_slice(chunk);
                src.reader.consume(len);
                continue;
            };
            carry.extend_from_slice(&chunk[..=i]);
            line_no += 1;
            if let Some(rec) = parse_other_line(path, line_no, &carry, &mut seen_data)? {
                f(line_no, rec)?;
            }
            carry.clear();
            pos = i + 1;
        }
        while pos < len {
            if let Some((rec, used)) = fast_line(&chunk[pos..]) {
                line_no += 1;
                seen_data = true;
                f(line_no, rec)?;
                pos += used;
                continue;
            }
            let Some(i) = memchr::memchr(b'\n', &chunk[pos..]) else {
                break;
            };
            line_no += 1;
            let line = &chunk[pos..pos + i + 1];
            if let Some(rec) = parse_other_line(path, line_no, line, &mut seen_data)? {
                f(line_no, rec)?;
            }
            pos += i + 1;
        }
        carry.extend_from_slice(&chunk[pos..]);
        src.reader.consume(len);
    }
    if !carry.is_empty() {
        line_no += 1;
        if let Some(rec) = parse_other_line(path, line_no, &carry, &mut seen_data)? {
            f(line_no, rec)?;
        }
    }
    Ok(())
}

fn read_error(src: &Source, line: u64, e: io::Error) -> Error {
    if src.compressed {
        Error::Compression {
            path: src.path.clone(),
            line,
            message: e.to_string(),
        }
    } else {
        Error::io(&src.path, e)
    }
}

/// Reads everything from `r` (used for small text files such as configs).
pub fn read_to_string(path: &Path) -> Result<String> {
    let mut src = open(path)?;
    let mut s = String::new();
    src.reader.read_to_string(&mut s).map_err(|e| {
        if src.compressed {
            Error::Compression {
                path: path.to_path_buf(),
                line: 0,
                message: e.to_string(),
            }
        } else if e.kind() == io::ErrorKind::InvalidData {
            Error::Parse {
                path: path.to_path_buf(),
                line: 0,
                problem: LineProblem::NotUtf8,
            }
        } else {
            Error::io(path, e)
        }
    })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(line: &str) -> Record<'_> {
        match parse_line(line.as_bytes()) {
            Ok(Line::Data(r)) => r,
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn splits_on_tabs_and_runs_of_spaces() {
        let r = data("chr1\t10\t20");
        assert_eq!(
            (r.chrom, r.start, r.end, r.rest),
            (&b"chr1"[..], 10, 20, &b""[..])
        );
        let r = data("chr2   5  \t 9   name\t0.5");
        assert_eq!((r.chrom, r.start, r.end), (&b"chr2"[..], 5, 9));
        assert_eq!(r.rest, b"name\t0.5");
    }

    #[test]
    fn skips_comments_tracks_and_blank_lines() {
        for line in [
            "",
            "   ",
            "# hi",
            "track name=x",
            "browser position chr1",
            "#chrom\tstart",
        ] {
            assert_eq!(parse_line(line.as_bytes()), Ok(Line::Skip), "{line:?}");
        }
    }

    #[test]
    fn reports_each_problem() {
        let err = |s: &str| parse_line(s.as_bytes()).err();
        assert_eq!(
            err("chr1\t5"),
            Some(LineProblem::TooFewColumns {
                found: 2,
                needed: 3
            })
        );
        assert_eq!(
            err("chr1"),
            Some(LineProblem::TooFewColumns {
                found: 1,
                needed: 3
            })
        );
        assert!(matches!(
            err("chr1\tx\t5"),
            Some(LineProblem::NotAnInteger {
                column: "start",
                ..
            })
        ));
        assert!(matches!(
            err("chr1\t1\t5.5"),
            Some(LineProblem::NotAnInteger { column: "end", .. })
        ));
        assert!(matches!(
            err("chr1\t-1\t5"),
            Some(LineProblem::Negative {
                column: "start",
                ..
            })
        ));
        assert!(matches!(
            err("chr1\t1\t4294967296"),
            Some(LineProblem::TooLarge { column: "end", .. })
        ));
        assert!(matches!(
            err("chr1\t1\t99999999999999999999"),
            Some(LineProblem::TooLarge { .. })
        ));
        assert_eq!(
            err("chr1\t9\t5"),
            Some(LineProblem::StartAfterEnd { start: 9, end: 5 })
        );
        assert_eq!(data("chr1\t0\t4294967295").end, u32::MAX);
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let lines = [
            "chr1\t10\t20",
            "chr1\t10\t20\tname\t0.5",
            "chr1\t0\t4294967295",
            "chr1\t0\t4294967296",
            "chr1\t20\t10",
            "chr1\t10\t20 ",
            "chr1\t10\t20\t\tx",
            "chr1\t10 \t20",
            "chr1 10 20",
            "track\t1\t2",
            "browser\t1\t2",
            "#c\t1\t2",
            "\t1\t2",
            "chr1\t\t2",
            "chr1\t-1\t2",
            "chr1\t01\t2",
            "chr1\t1\t2\t",
        ];
        for line in lines {
            for eol in ["\n", "\r\n"] {
                let text = format!("{line}{eol}next\t1\t2\n");
                if let Some((fast, used)) = fast_line(text.as_bytes()) {
                    assert_eq!(used, line.len() + eol.len(), "{line:?}");
                    assert_eq!(
                        parse_line(line.as_bytes()),
                        Ok(Line::Data(fast)),
                        "{line:?}"
                    );
                }
            }
            // A line cut off by the end of the buffer is left to the caller.
            assert_eq!(fast_line(line.as_bytes()), None, "{line:?}");
        }
        assert!(fast_line(b"chr1\t10\t20\n").is_some());
        assert!(fast_line(b"chr1\t10\t20\tname\t0.5\r\n").is_some());
        assert!(fast_line(b"track\t1\t2\n").is_none());
    }

    #[test]
    fn leading_digits_agree_with_one_byte_at_a_time() {
        let mut rng = crate::rng::SplitMix64::new(3);
        let alphabet = b"0123456789\t\n \r/:-x";
        for _ in 0..200_000 {
            let len = rng.below(16) as usize;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    // Mostly digits, so long numbers and overflows come up often.
                    let k = if rng.below(4) == 0 {
                        alphabet.len()
                    } else {
                        10
                    };
                    alphabet[rng.below(k as u64) as usize]
                })
                .collect();
            let i = if len > 0 {
                rng.below(len as u64) as usize
            } else {
                0
            };
            let text = String::from_utf8_lossy(&s);
            assert_eq!(
                leading_digits(&s, i),
                leading_digits_slow(&s, i),
                "{text:?} at {i}"
            );
            // The reference: the parser every other path goes through.
            let n = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let want = parse_coord(&s[i..i + n], "start").ok().map(|v| (v, i + n));
            assert_eq!(leading_digits(&s, i), want, "{text:?} at {i}");
        }
        assert_eq!(leading_digits(b"4294967295\t", 0), Some((u32::MAX, 10)));
        assert_eq!(leading_digits(b"4294967296\t", 0), None);
        assert_eq!(leading_digits(b"12345678901", 0), None);
        assert_eq!(leading_digits(b"00000000007\n", 0), None);
        assert_eq!(leading_digits(b"0000000007\n", 0), Some((7, 10)));
    }

    #[test]
    fn strips_crlf() {
        assert_eq!(trim_eol(b"chr1\t1\t2\r\n"), b"chr1\t1\t2");
        assert_eq!(trim_eol(b"chr1\t1\t2\n"), b"chr1\t1\t2");
        assert_eq!(trim_eol(b"chr1\t1\t2"), b"chr1\t1\t2");
    }
}
