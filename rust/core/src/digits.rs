//! Parsing the integer columns of BED and fragment lines (coordinates, counts): unsigned
//! decimal numbers of at most `u32::MAX`.
//!
//! [`parse_u32`] is the general parser; it takes a whole field and names what is wrong
//! with it. [`leading_digits`] and [`digits_until_tab`] are the fast paths the one-pass
//! line parsers use: they read the number in place, eight bytes at a time, and only say
//! whether it was well-formed; a line they turn down goes to the general parser, which
//! then names the problem.

use crate::error::LineProblem;

/// Parses a whole integer field (a coordinate or a count): a decimal integer in
/// `0..=2^32-1`. `column` names the field in the error.
#[inline]
pub fn parse_u32(field: &[u8], column: &'static str) -> Result<u32, LineProblem> {
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

/// The decimal number at `s[i..]`: `(value, index of the first byte after its digits)`.
/// `None` unless there are 1 to 10 digits with a value of at most `u32::MAX`.
///
/// Eight bytes are classified and converted at once (SWAR): subtracting `'0'` from every
/// byte leaves digits as 0 to 9, and the lowest byte that is not a digit gets its high bit
/// set by the mask below (borrows and carries only run towards higher bytes, so bytes
/// below the first non-digit are never disturbed).
#[inline(always)]
pub fn leading_digits(s: &[u8], i: usize) -> Option<(u32, usize)> {
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
pub fn digits_until_tab(line: &[u8], i: usize, last: bool) -> Option<(u32, usize)> {
    let (v, j) = leading_digits(line, i)?;
    match line.get(j) {
        Some(b'\t') => Some((v, j)),
        None if last => Some((v, j)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn leading_digits_agree_with_one_byte_at_a_time() {
        let mut rng = Rng::new(3);
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
            let want = parse_u32(&s[i..i + n], "start").ok().map(|v| (v, i + n));
            assert_eq!(leading_digits(&s, i), want, "{text:?} at {i}");
        }
        assert_eq!(leading_digits(b"4294967295\t", 0), Some((u32::MAX, 10)));
        assert_eq!(leading_digits(b"4294967296\t", 0), None);
        assert_eq!(leading_digits(b"12345678901", 0), None);
        assert_eq!(leading_digits(b"00000000007\n", 0), None);
        assert_eq!(leading_digits(b"0000000007\n", 0), Some((7, 10)));
    }

    #[test]
    fn the_general_parser_names_each_problem() {
        assert_eq!(parse_u32(b"0", "start"), Ok(0));
        assert_eq!(parse_u32(b"4294967295", "end"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"0000000007", "end"), Ok(7));
        let problem = |s: &[u8]| parse_u32(s, "count").err();
        assert_eq!(
            problem(b"4294967296"),
            Some(LineProblem::TooLarge {
                column: "count",
                value: "4294967296".into()
            })
        );
        assert_eq!(
            problem(b"00000000007"),
            Some(LineProblem::TooLarge {
                column: "count",
                value: "00000000007".into()
            })
        );
        assert_eq!(
            problem(b"-3"),
            Some(LineProblem::Negative {
                column: "count",
                value: "-3".into()
            })
        );
        for bad in [&b""[..], b"-", b"1.5", b"x", b"+1", b"1e3"] {
            assert!(
                matches!(problem(bad), Some(LineProblem::NotAnInteger { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn digits_until_tab_wants_the_tab() {
        assert_eq!(digits_until_tab(b"12\t", 0, false), Some((12, 2)));
        assert_eq!(digits_until_tab(b"12 ", 0, false), None);
        assert_eq!(digits_until_tab(b"12", 0, false), None);
        assert_eq!(digits_until_tab(b"12", 0, true), Some((12, 2)));
        assert_eq!(digits_until_tab(b"x\t12\t", 2, false), Some((12, 4)));
    }
}
