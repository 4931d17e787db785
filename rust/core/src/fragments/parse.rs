//! The parsers of one fragment line: a one-pass parser for plain tab-separated lines, a
//! quick one for a line already cut out, and the general one, which also takes runs of
//! spaces and says what is wrong with a bad line.

use memchr::memchr;

use crate::bed::tab_after_field;
use crate::digits::{digits_until_tab, parse_u32};
use crate::error::LineProblem;

/// The fields of a fragment line that tokenization needs.
pub(super) struct Fragment<'a> {
    pub(super) chrom: &'a [u8],
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) barcode: &'a [u8],
}

/// Parses a plain tab-separated line at the start of `s` in one pass: the fragment and the
/// length of the line with its newline. `None` for anything else, and for a line that
/// `s` cuts off; [`fast_parse`] and [`parse_fields`] see to those.
#[inline(always)]
pub(super) fn fast_line(s: &[u8]) -> Option<(Fragment<'_>, usize)> {
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
pub(super) fn fast_parse(line: &[u8]) -> Option<Fragment<'_>> {
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
pub(super) fn parse_fields(line: &[u8]) -> Result<Fragment<'_>, LineProblem> {
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
    let start = parse_u32(fields[1], "start")?;
    let end = parse_u32(fields[2], "end")?;
    if start > end {
        return Err(LineProblem::StartAfterEnd { start, end });
    }
    let count = fields[4];
    if !count.iter().all(u8::is_ascii_digit) {
        return Err(match parse_u32(count, "count") {
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

#[cfg(test)]
mod tests {
    use super::*;

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
