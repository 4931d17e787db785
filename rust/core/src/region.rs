//! One genomic interval.
//!
//! Coordinates are 0-based and half-open, as in BED: `[start, end)` covers the bases
//! `start..end`, so the width is `end - start` bp and a zero-width region marks a point.

use std::fmt;

/// A genomic interval `[start, end)` on `chr` (0-based, half-open, bp), with any
/// columns after the third kept verbatim in `rest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region {
    pub chr: String,
    pub start: u32,
    pub end: u32,
    pub rest: Option<String>,
}

impl Region {
    /// Width in bp (`end - start`); zero when `end <= start`.
    pub fn width(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }
}

impl fmt::Display for Region {
    /// The token string `chr:start-end`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}-{}", self.chr, self.start, self.end)
    }
}

/// Checks that `chr` can be written to a BED line and read back by [`crate::bed`]: not
/// empty; without the whitespace that separates columns or any control character (NUL,
/// escapes, line breaks); not a name the reader takes for a header line (`track`,
/// `browser`, or anything starting with `#`); and not starting with a byte-order mark,
/// which the reader strips from the first line.
pub fn check_chrom(chr: &str) -> std::result::Result<(), crate::LineProblem> {
    let bad = |why: &str| {
        Err(crate::LineProblem::Other(format!(
            "the chromosome name {chr:?} {why}"
        )))
    };
    if chr.is_empty() {
        return Err(crate::LineProblem::Other(
            "the chromosome name is empty".into(),
        ));
    }
    if chr.bytes().any(|b| b.is_ascii_whitespace()) {
        return bad("contains whitespace");
    }
    if chr.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if chr.starts_with('#') || chr == "track" || chr == "browser" {
        return bad("would be read back as a BED header line (#, track or browser)");
    }
    if chr.starts_with('\u{feff}') {
        return bad("starts with a byte-order mark");
    }
    Ok(())
}

/// Checks that `rest` (the columns after the third) fits on one BED line.
pub fn check_rest(rest: &str) -> std::result::Result<(), crate::LineProblem> {
    if rest.contains(['\n', '\r']) {
        return Err(crate::LineProblem::Other(
            "rest contains a line break".into(),
        ));
    }
    Ok(())
}

/// Parses a token string `chr:start-end` (the last `:` splits chromosome from range).
/// Coordinates are written the way tokens are formatted: no sign, no leading zeros.
pub fn parse_token(token: &str) -> Option<(&str, u32, u32)> {
    let (chr, range) = token.rsplit_once(':')?;
    let (start, end) = range.split_once('-')?;
    if chr.is_empty() || !is_digits(start) || !is_digits(end) {
        return None;
    }
    Some((chr, start.parse().ok()?, end.parse().ok()?))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_chrom_then_start_then_end() {
        let r = |c: &str, s, e| Region {
            chr: c.into(),
            start: s,
            end: e,
            rest: None,
        };
        let mut v = vec![
            r("chr2", 5, 9),
            r("chr1", 7, 8),
            r("chr1", 7, 7),
            r("chr1", 2, 100),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                r("chr1", 2, 100),
                r("chr1", 7, 7),
                r("chr1", 7, 8),
                r("chr2", 5, 9)
            ]
        );
        assert_eq!(r("chr1", 10, 25).width(), 15);
        assert_eq!(r("chr1", 10, 25).to_string(), "chr1:10-25");
    }

    #[test]
    fn token_strings_parse_back() {
        assert_eq!(parse_token("chr1:10-25"), Some(("chr1", 10, 25)));
        assert_eq!(parse_token("HLA-A*01:01:5-9"), Some(("HLA-A*01:01", 5, 9)));
        assert_eq!(parse_token("chr1:10"), None);
        assert_eq!(parse_token("chr1:-5-9"), None);
        assert_eq!(parse_token(":1-2"), None);
        assert_eq!(parse_token("<unk>"), None);
        // Only the way tokens are written: no leading zeros, no signs.
        assert_eq!(parse_token("chr1:0-0"), Some(("chr1", 0, 0)));
        assert_eq!(parse_token("chr1:05-9"), None);
        assert_eq!(parse_token("chr1:5-09"), None);
        assert_eq!(parse_token("chr1:+5-9"), None);
    }

    #[test]
    fn names_and_rest_that_a_bed_line_can_hold() {
        assert!(check_chrom("chr1").is_ok() && check_chrom("HLA-A*01:01").is_ok());
        assert!(check_chrom("tracks").is_ok() && check_chrom("chr#1").is_ok());
        assert!(check_chrom("browser2").is_ok() && check_chrom("Track").is_ok());
        for bad in [
            "",
            "chr 1",
            "chr1\t",
            "\nchr1",
            "#contig",
            "#",
            "track",
            "browser",
            "chr\0x",
            "chr\x1b",
            "chr\u{7f}",
            "chr\u{85}",
            "\u{feff}chr1",
        ] {
            assert!(check_chrom(bad).is_err(), "{bad:?}");
        }
        assert!(check_rest("name\t0.5").is_ok());
        assert!(check_rest("a\nb").is_err() && check_rest("a\r").is_err());
    }
}
