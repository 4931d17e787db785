//! Reading BED-like text: [`Reader`] over any [`BufRead`], opened from a path (plain,
//! gzip or BGZF, sniffed by [`crate::io`]) or built over bytes already in memory.
//!
//! Columns are separated by tabs or runs of spaces. `track`, `browser` and `#` lines are
//! skipped, as is a first data line whose start column is not an integer (a header).
//! Everything after the third column is handed on verbatim as `rest`. Errors name the
//! file (or the name given to [`Reader::from_reader`]) and the 1-based line.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use crate::digits::{digits_until_tab, leading_digits, parse_u32};
use crate::error::{Error, LineProblem, Result};
use crate::io::MAX_LINE_BYTES;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

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

/// What a line holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank, `#`, `track` or `browser`.
    Skip,
    Data(Record<'a>),
}

/// Removes the line terminator (`\n`, `\r\n`, or `\n` after several `\r`): a `\r` at
/// the end of a line is never data, so what is written back reads back the same.
#[inline]
pub fn trim_eol(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    while let Some(rest) = line.strip_suffix(b"\r") {
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
    if chrom.starts_with(UTF8_BOM) {
        // Only the file's first bytes may be a byte-order mark; a name starting with one
        // could not be written back (the reader would strip it from a first line).
        return Err(LineProblem::Other(
            "the chromosome name starts with a byte-order mark".into(),
        ));
    }
    let (start, after) = next_field(after);
    let (end, after) = next_field(after);
    if end.is_empty() {
        let found = if start.is_empty() { 1 } else { 2 };
        return Err(LineProblem::TooFewColumns { found, needed: 3 });
    }
    let start = parse_u32(start, "start")?;
    let end = parse_u32(end, "end")?;
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
    // `track` and `browser` lines are rare: test the first byte before the whole word.
    match chrom.first() {
        None | Some(b'#') => return None,
        Some(b't' | b'b') if chrom == b"track" || chrom == b"browser" => return None,
        Some(0xEF) if chrom.starts_with(UTF8_BOM) => return None,
        _ => {}
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

/// The problem of a line longer than [`MAX_LINE_BYTES`].
pub(crate) fn too_long() -> LineProblem {
    LineProblem::TooLong {
        limit: MAX_LINE_BYTES,
        what: "line",
    }
}

/// Whether a line (or the start of one) is a `#` comment: its first byte that is not a
/// tab or space (after a byte-order mark on the first line) is `#`.
pub(crate) fn is_comment(line: &[u8], first_line: bool) -> bool {
    let line = match line.strip_prefix(UTF8_BOM) {
        Some(rest) if first_line => rest,
        _ => line,
    };
    line.iter().find(|&&b| b != b'\t' && b != b' ') == Some(&b'#')
}

/// Checks the start of a line held across buffer fills, `carry` (the line after
/// `line_no`): past [`MAX_LINE_BYTES`] it is an error, or for a comment, the point where
/// the rest is skipped (true; `carry` is then emptied).
fn check_carry(path: &Path, line_no: u64, carry: &mut Vec<u8>) -> Result<bool> {
    if carry.len() <= MAX_LINE_BYTES {
        return Ok(false);
    }
    if is_comment(carry, line_no == 0) {
        carry.clear();
        return Ok(true);
    }
    Err(Error::Parse {
        path: path.to_path_buf(),
        line: line_no + 1,
        problem: too_long(),
    })
}

/// Parses a line the fast path turned down: `Ok(None)` for a line to skip. `seen_data`
/// tracks the header rule: a first data line whose start is not a number is a header.
fn parse_other_line<'a>(
    path: &Path,
    line_no: u64,
    line: &'a [u8],
    seen_data: &mut bool,
    bom_pending: bool,
) -> Result<Option<Record<'a>>> {
    // A first line whose first read was shorter than the mark keeps it until here.
    let line = match line.strip_prefix(UTF8_BOM) {
        Some(rest) if line_no == 1 && bom_pending => rest,
        _ => line,
    };
    let line = trim_eol(line);
    if line.len() > MAX_LINE_BYTES && !is_comment(line, false) {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: line_no,
            problem: too_long(),
        });
    }
    match parse_line(line) {
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

/// Reads BED-like text from any [`BufRead`]: data records with the header rule applied
/// ([`Reader::for_each_record`]) or raw lines ([`Reader::next_line`]).
///
/// ```
/// use atacformer_core::bed::Reader;
///
/// let mut reader = Reader::from_reader(&b"track name=x\nchr1\t10\t20\n"[..], "in memory");
/// let mut seen = Vec::new();
/// reader
///     .for_each_record(|line, rec| {
///         seen.push((line, rec.chrom.to_vec(), rec.start, rec.end));
///         Ok(())
///     })
///     .expect("valid BED");
/// assert_eq!(seen, [(2, b"chr1".to_vec(), 10, 20)]);
/// ```
pub struct Reader<R> {
    inner: R,
    /// What errors name: the file, or the name given to [`Reader::from_reader`].
    path: PathBuf,
    /// Read errors come from a decoder (corrupt data), not from the disk.
    compressed: bool,
    /// 1-based number of the last line read.
    line_no: u64,
    /// Whether a data line has been seen (the header rule applies before that).
    seen_data: bool,
    /// The line [`Reader::next_line`] returns, and the start of a line that straddles two
    /// buffer fills in [`Reader::for_each_record`].
    line: Vec<u8>,
}

impl Reader<Box<dyn BufRead + Send>> {
    /// Opens a file, plain or compressed (see [`crate::io::open`]).
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = crate::io::open_text(path)?;
        let mut reader = Reader::from_reader(text.reader, text.path);
        reader.compressed = text.compressed;
        Ok(reader)
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads already decompressed text from `inner`; `name` stands for the file in errors.
    pub fn from_reader(inner: R, name: impl Into<PathBuf>) -> Self {
        Reader {
            inner,
            path: name.into(),
            compressed: false,
            line_no: 0,
            seen_data: false,
            line: Vec::with_capacity(256),
        }
    }

    /// The file (or name) errors refer to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the line last read.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next line's 1-based number and text without its terminator, or `None` at the
    /// end of input. A line longer than [`MAX_LINE_BYTES`] is an [`Error::Parse`], except a
    /// `#` line, which comes back cut to its first [`MAX_LINE_BYTES`] bytes (the rest is
    /// read past, never held).
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>> {
        self.line.clear();
        let mut skipping = false;
        let mut any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) => return Err(self.read_error(e)),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !skipping {
                self.line.extend_from_slice(&chunk[..take]);
            }
            self.inner.consume(take);
            if done {
                break;
            }
            if !skipping && self.line.len() > MAX_LINE_BYTES {
                if !is_comment(&self.line, self.line_no == 0) {
                    self.line_no += 1;
                    return Err(self.parse_error(too_long()));
                }
                self.line.truncate(MAX_LINE_BYTES);
                skipping = true;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        if trim_eol(&self.line).len() > MAX_LINE_BYTES {
            if !is_comment(&self.line, self.line_no == 1) {
                return Err(self.parse_error(too_long()));
            }
            self.line.truncate(MAX_LINE_BYTES);
        }
        Ok(Some((self.line_no, trim_eol(&self.line))))
    }

    /// The error for the line last read, which failed to parse.
    pub fn parse_error(&self, problem: LineProblem) -> Error {
        Error::Parse {
            path: self.path.clone(),
            line: self.line_no,
            problem,
        }
    }

    fn read_error(&self, e: io::Error) -> Error {
        crate::io::read_error(&self.path, self.compressed, self.line_no, e)
    }

    /// Calls `f(line_no, record)` for every data line to the end of the input, applying
    /// the header rule; stops at the first error, its own or one `f` returns.
    ///
    /// Lines are parsed straight out of the reader's buffer, in one pass for plain
    /// tab-separated lines; only a line that straddles two buffer fills is copied.
    pub fn for_each_record(
        &mut self,
        mut f: impl FnMut(u64, Record<'_>) -> Result<()>,
    ) -> Result<()> {
        let Reader {
            inner,
            path,
            compressed,
            line_no,
            seen_data,
            line: carry,
        } = self;
        carry.clear();
        // Inside a `#` line too long to hold: its bytes are read past up to its newline.
        let mut skipping = false;
        // A byte-order mark is looked for once, at the very start of the input.
        let mut bom_pending = *line_no == 0;
        loop {
            let chunk = match inner.fill_buf() {
                Ok(c) => c,
                Err(e) => return Err(crate::io::read_error(path, *compressed, *line_no, e)),
            };
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            // A UTF-8 byte-order mark, written by some editors, is not part of the first
            // name.
            let mut pos = 0;
            if bom_pending && carry.is_empty() {
                if chunk.starts_with(UTF8_BOM) {
                    pos = UTF8_BOM.len();
                    bom_pending = false;
                } else {
                    // A first read shorter than the mark leaves it to `parse_other_line`.
                    bom_pending = chunk.len() < UTF8_BOM.len() && UTF8_BOM.starts_with(chunk);
                }
            }
            if skipping || !carry.is_empty() {
                let Some(i) = memchr::memchr(b'\n', chunk) else {
                    if !skipping {
                        carry.extend_from_slice(chunk);
                        skipping = check_carry(path, *line_no, carry)?;
                    }
                    inner.consume(len);
                    continue;
                };
                *line_no += 1;
                // A skipped comment ends here; `skipping` is set again below.
                if !skipping {
                    carry.extend_from_slice(&chunk[..=i]);
                    if let Some(rec) =
                        parse_other_line(path, *line_no, carry, seen_data, bom_pending)?
                    {
                        f(*line_no, rec)?;
                    }
                }
                carry.clear();
                pos = i + 1;
            }
            while pos < len {
                if let Some((rec, used)) =
                    fast_line(&chunk[pos..]).filter(|&(_, used)| used <= MAX_LINE_BYTES)
                {
                    *line_no += 1;
                    *seen_data = true;
                    f(*line_no, rec)?;
                    pos += used;
                    continue;
                }
                let Some(i) = memchr::memchr(b'\n', &chunk[pos..]) else {
                    break;
                };
                *line_no += 1;
                let line = &chunk[pos..pos + i + 1];
                if let Some(rec) = parse_other_line(path, *line_no, line, seen_data, bom_pending)? {
                    f(*line_no, rec)?;
                }
                pos += i + 1;
            }
            carry.extend_from_slice(&chunk[pos..]);
            skipping = check_carry(path, *line_no, carry)?;
            inner.consume(len);
        }
        if skipping {
            *line_no += 1;
        } else if !carry.is_empty() {
            *line_no += 1;
            if let Some(rec) = parse_other_line(path, *line_no, carry, seen_data, bom_pending)? {
                f(*line_no, rec)?;
            }
            carry.clear();
        }
        Ok(())
    }
}

/// Calls `f(line_no, record)` for every data line of the BED file at `path`; see
/// [`Reader::for_each_record`].
pub fn for_each_record(path: &Path, f: impl FnMut(u64, Record<'_>) -> Result<()>) -> Result<()> {
    Reader::from_path(path)?.for_each_record(f)
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
    fn strips_crlf() {
        assert_eq!(trim_eol(b"chr1\t1\t2\r\n"), b"chr1\t1\t2");
        assert_eq!(trim_eol(b"chr1\t1\t2\n"), b"chr1\t1\t2");
        assert_eq!(trim_eol(b"chr1\t1\t2"), b"chr1\t1\t2");
    }

    /// A record as owned values: line, chrom, start, end, rest.
    type Owned = (u64, String, u32, u32, String);

    /// Every record of `text`, read through a buffer of `capacity` bytes.
    fn read_all(text: &[u8], capacity: usize) -> Result<Vec<Owned>> {
        let mut reader = Reader::from_reader(
            std::io::BufReader::with_capacity(capacity, text),
            "memory.bed",
        );
        let mut out = Vec::new();
        reader.for_each_record(|line, r| {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            out.push((line, s(r.chrom), r.start, r.end, s(r.rest)));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_records_from_memory_with_their_line_numbers() {
        let text = b"\xEF\xBB\xBFchrom\tstart\tend\n\
                     # comment\n\
                     chr1\t10\t20\n\
                     track name=x\n\
                     chr2  5 9\tname\t0.5\r\n\
                     \n\
                     chr10\t0\t4294967295";
        let want = vec![
            (3, "chr1".to_string(), 10, 20, String::new()),
            (5, "chr2".to_string(), 5, 9, "name\t0.5".to_string()),
            (7, "chr10".to_string(), 0, u32::MAX, String::new()),
        ];
        // Buffers of every small size cut lines (and the byte-order mark) everywhere.
        for capacity in (1..=40).chain([1 << 16]) {
            assert_eq!(read_all(text, capacity).expect("valid"), want, "{capacity}");
        }
        assert_eq!(read_all(b"", 8).expect("empty"), vec![]);
    }

    #[test]
    fn the_header_rule_applies_to_the_first_data_line_only() {
        let text = b"chr1\t1\t2\nchrom\tstart\tend\n";
        for capacity in [1, 5, 1 << 16] {
            match read_all(text, capacity) {
                Err(Error::Parse {
                    path,
                    line: 2,
                    problem:
                        LineProblem::NotAnInteger {
                            column: "start", ..
                        },
                }) => assert_eq!(path, Path::new("memory.bed")),
                other => panic!("expected a parse error on line 2, got {other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_source_and_the_line() {
        for capacity in [1, 7, 1 << 16] {
            let err = read_all(b"chr1\t1\t2\n\nchr1\t9\t5\n", capacity).expect_err("start > end");
            assert_eq!(err.to_string(), "memory.bed:3: start > end (9 > 5)");
            // The error the callback returns comes back as it is.
            let mut reader = Reader::from_reader(&b"chr1\t1\t2\nchr1\t3\t4\n"[..], "m");
            let mut n = 0;
            let err = reader
                .for_each_record(|line, _| {
                    n += 1;
                    Err(Error::InvalidInput(format!("stop at {line}")))
                })
                .expect_err("the callback fails");
            assert_eq!((n, err.to_string()), (1, "stop at 1".to_string()));
        }
    }

    #[test]
    fn reads_raw_lines() {
        let mut reader = Reader::from_reader(&b"a\tb\r\n\nlast"[..], "lines.txt");
        let mut got = Vec::new();
        while let Some((n, line)) = reader.next_line().expect("in memory") {
            got.push((n, line.to_vec()));
        }
        assert_eq!(
            got,
            vec![(1, b"a\tb".to_vec()), (2, vec![]), (3, b"last".to_vec())]
        );
        assert_eq!(reader.line_no(), 3);
        assert_eq!(
            reader.parse_error(LineProblem::NotUtf8).to_string(),
            "lines.txt:3: text is not valid UTF-8"
        );
    }

    #[test]
    fn files_are_read_whatever_their_compression() {
        use crate::testing::{bgzf_bytes, gzip, temp_file};
        let text = b"chr1\t10\t20\tx\n".repeat(3000);
        let want = read_all(&text, 1 << 16).expect("valid");
        for bytes in [text.clone(), gzip(&text), bgzf_bytes(&text, 500)] {
            let f = temp_file("regions.bed.gz", &bytes);
            let mut got = Vec::new();
            for_each_record(&f.0, |line, r| {
                got.push((line, r.start, r.end, r.rest.to_vec()));
                Ok(())
            })
            .expect("valid");
            assert_eq!(got.len(), want.len());
            assert!(got
                .iter()
                .zip(&want)
                .all(|(g, w)| (g.0, g.1, g.2, &g.3[..]) == (w.0, w.2, w.3, w.4.as_bytes())));
        }
        let gz = gzip(&text);
        let cut = temp_file("cut.bed.gz", &gz[..gz.len() / 2]);
        assert!(matches!(
            for_each_record(&cut.0, |_, _| Ok(())),
            Err(Error::Compression { .. })
        ));
    }

    #[test]
    fn lines_longer_than_the_limit_are_errors_and_long_comments_are_skipped() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut data = b"chr1\t1\t2\n".to_vec();
        data.extend_from_slice(&long);
        for tail in [&b""[..], b"\t1\t2\n"] {
            let mut text = data.clone();
            text.extend_from_slice(tail);
            for capacity in [4096, 1 << 16, 4 << 20] {
                match read_all(&text, capacity) {
                    Err(Error::Parse {
                        line: 2,
                        problem: LineProblem::TooLong { .. },
                        ..
                    }) => {}
                    other => panic!("expected a too-long line 2 ({capacity}), got {other:?}"),
                }
            }
        }
        let mut comment = b"chr1\t1\t2\n  #".to_vec();
        comment.extend_from_slice(&long);
        for tail in [&b""[..], b"\nchr1\t3\t4\n"] {
            let mut text = comment.clone();
            text.extend_from_slice(tail);
            for capacity in [4096, 1 << 16, 4 << 20] {
                let got = read_all(&text, capacity).expect("a long comment is skipped");
                let lines: Vec<u64> = got.iter().map(|r| r.0).collect();
                let want: &[u64] = if tail.is_empty() { &[1] } else { &[1, 3] };
                assert_eq!(lines, want, "{capacity}");
            }
        }
        // Raw lines: the same limit; a long comment comes back cut.
        let mut text = comment.clone();
        text.extend_from_slice(b"\nnext\n");
        text.extend_from_slice(&long);
        let mut reader =
            Reader::from_reader(std::io::BufReader::with_capacity(4096, &text[..]), "l");
        assert_eq!(reader.next_line().expect("short").map(|l| l.0), Some(1));
        let (n, line) = reader.next_line().expect("a comment").expect("a line");
        assert_eq!(
            (n, line.len(), &line[..3]),
            (2, MAX_LINE_BYTES, &b"  #"[..])
        );
        assert_eq!(reader.next_line().expect("short").map(|l| l.0), Some(3));
        assert!(matches!(
            reader.next_line(),
            Err(Error::Parse {
                line: 4,
                problem: LineProblem::TooLong { .. },
                ..
            })
        ));
    }
}
