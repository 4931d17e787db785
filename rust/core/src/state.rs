//! A compact binary form of a tokenizer, used to pickle it.
//!
//! Layout (little-endian): magic `ATKS`, version byte, tokenizer type byte, the seven
//! special tokens and the chromosome names as length-prefixed UTF-8, the region count, then
//! the chromosome-index, start and end columns as `u32` arrays. Loading rebuilds the index.

use crate::config::{SpecialTokens, TokenizerType};
use crate::error::{Error, Result};
use crate::region_set::RegionSet;
use crate::tokenizer::Tokenizer;
use crate::universe::Universe;

const MAGIC: &[u8; 4] = b"ATKS";
const VERSION: u8 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_u32s(out: &mut Vec<u8>, v: &[u32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Serialises a tokenizer.
pub fn to_bytes(tok: &Tokenizer) -> Vec<u8> {
    let rs = tok.universe().regions();
    let mut out = Vec::with_capacity(16 + rs.len() * 12);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(match tok.tokenizer_type() {
        TokenizerType::Bits => 0,
        TokenizerType::Ailist => 1,
    });
    for s in &tok.special_tokens().0 {
        put_str(&mut out, s);
    }
    out.extend_from_slice(&(rs.chrom_names().len() as u32).to_le_bytes());
    for name in rs.chrom_names() {
        put_str(&mut out, name);
    }
    out.extend_from_slice(&(rs.len() as u64).to_le_bytes());
    put_u32s(&mut out, rs.chrom_indices());
    put_u32s(&mut out, rs.starts());
    put_u32s(&mut out, rs.ends());
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::InvalidInput("tokenizer state is truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Ok(lo | (hi << 32))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| Error::InvalidInput("tokenizer state holds invalid UTF-8".into()))
    }
    fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        let bytes = self.take(
            n.checked_mul(4)
                .ok_or_else(|| Error::InvalidInput("tokenizer state is corrupt".into()))?,
        )?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Rebuilds a tokenizer from [`to_bytes`] output.
pub fn from_bytes(bytes: &[u8]) -> Result<Tokenizer> {
    let mut c = Cursor(bytes);
    if c.take(4)? != MAGIC || c.take(1)? != [VERSION] {
        return Err(Error::InvalidInput(
            "not an atacformer tokenizer state".into(),
        ));
    }
    let kind = match c.take(1)? {
        [0] => TokenizerType::Bits,
        [1] => TokenizerType::Ailist,
        _ => {
            return Err(Error::InvalidInput(
                "unknown tokenizer type in state".into(),
            ))
        }
    };
    let mut specials = SpecialTokens::default();
    for s in specials.0.iter_mut() {
        *s = c.string()?;
    }
    let n_names = c.u32()? as usize;
    let names = (0..n_names)
        .map(|_| c.string())
        .collect::<Result<Vec<_>>>()?;
    let n = usize::try_from(c.u64()?)
        .map_err(|_| Error::InvalidInput("tokenizer state is corrupt".into()))?;
    let chroms = c.u32s(n)?;
    let starts = c.u32s(n)?;
    let ends = c.u32s(n)?;
    let regions = RegionSet::from_interned(names, chroms, starts, ends)?;
    Tokenizer::new(Universe::from_regions(regions)?, specials, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let rs = RegionSet::from_columns(&["chr1", "chr2"], &[1, 5], &[3, 9]).expect("valid");
        let mut sp = SpecialTokens::default();
        sp.0[0] = "<UNKNOWN>".into();
        let tok = Tokenizer::new(
            Universe::from_regions(rs).expect("valid"),
            sp,
            TokenizerType::Ailist,
        )
        .expect("small");
        let bytes = to_bytes(&tok);
        assert_eq!(from_bytes(&bytes).expect("round trip"), tok);
        for cut in [0, 3, 5, bytes.len() - 1] {
            assert!(from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(from_bytes(b"garbage bytes here").is_err());
    }
}
