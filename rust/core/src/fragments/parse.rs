//! The parsers of one fragment line: a one-pass parser for plain tab-separated lines and
//! the general one, which also takes runs of spaces and says what is wrong with a bad
//! line. Both follow one rule: columns are separated by tabs or runs of spaces.

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
/// `s` cuts off; [`parse_fields`] sees to those. A line it takes has no space in its first
/// five columns, so the general parser would read it the same.
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

/// The general parser, for lines [`fast_line`] turns down: columns separated by tabs or
/// runs of spaces, the one rule of every reader (a field never holds a tab or a space, and
/// leading or trailing ones are not part of any field). Says what is wrong otherwise.
pub(super) fn parse_fields(line: &[u8]) -> Result<Fragment<'_>, LineProblem> {
    let mut fields: [&[u8]; 5] = [&[]; 5];
    let mut found = 0;
    for field in line
        .split(|&b| b == b'\t' || b == b' ')
        .filter(|f| !f.is_empty())
        .take(5)
    {
        fields[found] = field;
        found += 1;
    }
    if found < 5 {
        return Err(LineProblem::TooFewColumns { found, needed: 5 });
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
            "chr1\t10\t20\tAAAC-1 \t1",
            "chr1 \t10\t20\tB\t1",
            "chr1\t10\t20\tB\t1 ",
            "chr1\t10\t20\t B\t1",
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

    #[test]
    fn spaces_separate_columns_as_tabs_do() {
        let fields = |l: &str| {
            parse_fields(l.as_bytes()).map(|f| {
                let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (s(f.chrom), f.start, f.end, s(f.barcode))
            })
        };
        let want = Ok(("chr1".to_string(), 10, 20, "AAAC-1".to_string()));
        for line in [
            "chr1\t10\t20\tAAAC-1\t1",
            "chr1\t10\t20\tAAAC-1 \t1",
            "chr1 \t10\t20\tAAAC-1\t1",
            "chr1 10 20 AAAC-1 1",
            "  chr1\t10   20\t AAAC-1\t1\t",
        ] {
            assert_eq!(fields(line), want, "{line:?}");
        }
        // `A B` is two columns whichever separator: the count column is then `B`.
        for line in ["chr1\t10\t20\tA B\t1", "chr1 10 20 A B 1"] {
            assert!(
                matches!(
                    parse_fields(line.as_bytes()),
                    Err(LineProblem::NotAnInteger {
                        column: "count",
                        ..
                    })
                ),
                "{line:?}"
            );
        }
    }
}
