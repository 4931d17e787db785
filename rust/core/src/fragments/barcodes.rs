//! The barcode-to-cell table the workers look barcodes up in, and reading barcode lists.
//!
//! Most barcodes (10x's are 18 bytes) fit in three machine words and live inline in an
//! open-addressing table; longer ones go to a general map.

use std::hash::Hasher;
use std::path::Path;

use crate::bed;
use crate::error::{LineProblem, Result};
use crate::hash::{FastHasher, FastMap};

/// Lines parsed before their barcodes are looked up: a batch of independent lookups
/// lets the CPU overlap their cache misses, which otherwise dominate.
pub(super) const BATCH: usize = 32;

/// Reads a barcode list (plain or gzip; a byte-order mark at the very start is dropped):
///
/// - one barcode per line, or cellranger's `barcodes.tsv(.gz)`: the first tab-separated
///   column of each line, skipping blank and `#` lines;
/// - a CSV table whose first line is a header naming a `barcode` column (cellranger-atac's
///   `singlecell.csv`, cellranger-arc's `per_barcode_metrics.csv`): its barcodes, keeping
///   only the rows whose `is__cell_barcode` (or `is_cell`) column is `1` when the table has
///   one, and skipping cellranger's `NO_BARCODE` row.
pub fn read_barcodes(path: &Path) -> Result<Vec<String>> {
    read_barcodes_up_to(path, usize::MAX)
}

/// The first `limit` barcodes of a barcode list (see [`read_barcodes`]), read without the
/// rest of the file: enough to judge how its barcodes are written.
pub fn read_barcodes_up_to(path: &Path, limit: usize) -> Result<Vec<String>> {
    let mut reader = bed::Reader::from_path(path)?;
    let mut out = Vec::new();
    let mut table: Option<CsvColumns> = None;
    let mut first_content = true;
    while let Some((line_no, mut line)) = reader.next_line()? {
        if line_no == 1 {
            // A UTF-8 byte-order mark at the very start of the file is not a barcode's.
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        if std::mem::take(&mut first_content) {
            table = CsvColumns::from_header(trimmed);
            if table.is_some() {
                continue;
            }
        }
        let barcode = match &table {
            Some(columns) => columns.cell_barcode(trimmed),
            None => Ok(line.split(|&b| b == b'\t').next().map(<[u8]>::trim_ascii)),
        };
        let barcode = match barcode {
            Ok(Some(b)) if !b.is_empty() => std::str::from_utf8(b).map(str::to_owned),
            Ok(_) => continue,
            Err(problem) => return Err(reader.parse_error(problem)),
        };
        match barcode {
            Ok(s) => out.push(s),
            Err(_) => return Err(reader.parse_error(LineProblem::NotUtf8)),
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The columns of a barcode CSV table, found in its header line.
#[derive(Debug, Clone, Copy)]
struct CsvColumns {
    barcode: usize,
    /// `is__cell_barcode` (cellranger-atac) or `is_cell` (cellranger-arc), when present.
    is_cell: Option<usize>,
}

/// A CSV field without surrounding blanks and double quotes.
fn csv_field(field: &[u8]) -> &[u8] {
    let field = field.trim_ascii();
    field
        .strip_prefix(b"\"")
        .and_then(|f| f.strip_suffix(b"\""))
        .unwrap_or(field)
}

impl CsvColumns {
    /// The columns of a header line such as `barcode,total,...,is__cell_barcode,...`;
    /// None for a line that is not a CSV header naming a `barcode` column.
    fn from_header(line: &[u8]) -> Option<Self> {
        if !line.contains(&b',') || line.contains(&b'\t') {
            return None;
        }
        let names: Vec<&[u8]> = line.split(|&b| b == b',').map(csv_field).collect();
        let find = |name: &[u8]| names.iter().position(|n| n.eq_ignore_ascii_case(name));
        Some(CsvColumns {
            barcode: find(b"barcode")?,
            is_cell: find(b"is__cell_barcode").or_else(|| find(b"is_cell")),
        })
    }

    /// The barcode of a row when it names a cell (None for a non-cell row and for
    /// `NO_BARCODE`).
    fn cell_barcode<'a>(
        &self,
        line: &'a [u8],
    ) -> std::result::Result<Option<&'a [u8]>, LineProblem> {
        let fields: Vec<&[u8]> = line.split(|&b| b == b',').map(csv_field).collect();
        let needed = 1 + self.barcode.max(self.is_cell.unwrap_or(0));
        if fields.len() < needed {
            return Err(LineProblem::TooFewColumns {
                found: fields.len(),
                needed,
            });
        }
        let barcode = fields[self.barcode];
        if barcode == b"NO_BARCODE" {
            return Ok(None);
        }
        match self.is_cell.map(|i| fields[i]) {
            None | Some([b'1']) => Ok(Some(barcode)),
            Some([b'0']) => Ok(None),
            Some(other) => Err(LineProblem::Other(format!(
                "the cell column is {:?}, not 0 or 1",
                String::from_utf8_lossy(other)
            ))),
        }
    }
}

/// A barcode of at most 23 bytes held inline (little-endian bytes, zero padding, length in
/// the last byte), so a lookup compares three words in the table instead of chasing a
/// pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortKey([u64; 3]);

impl ShortKey {
    const MAX: usize = 23;

    #[inline]
    fn new(bytes: &[u8]) -> Option<Self> {
        let n = bytes.len();
        if n > Self::MAX {
            return None;
        }
        // Whole words by fixed-size copies and the tail byte by byte: no memcpy call.
        let mut w = [0u64; 3];
        let full = n / 8;
        for (i, word) in w.iter_mut().enumerate().take(full) {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            *word = u64::from_le_bytes(b);
        }
        let mut tail = 0u64;
        for (j, &c) in bytes[8 * full..].iter().enumerate() {
            tail |= u64::from(c) << (8 * j);
        }
        w[full] |= tail;
        w[2] |= (n as u64) << 56;
        Some(ShortKey(w))
    }
}

impl ShortKey {
    #[inline]
    fn hash(&self) -> u64 {
        let mut h = FastHasher::default();
        h.add(self.0[0]);
        h.add(self.0[1]);
        h.add(self.0[2]);
        h.finish()
    }
}

/// One slot of [`ShortTable`]: half a cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    key: [u64; 3],
    cell: u32,
}

const EMPTY: Slot = Slot {
    key: [0; 3],
    cell: u32::MAX,
};

/// Open-addressing table (linear probing, at most half full) of short barcodes. Unlike a
/// general map it can touch a key's slot ahead of the lookup, so the cache misses of a
/// batch of lookups overlap.
#[derive(Debug, Clone)]
struct ShortTable {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for ShortTable {
    fn default() -> Self {
        ShortTable {
            slots: vec![EMPTY; 16],
            len: 0,
        }
    }
}

impl ShortTable {
    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Loads the slot where the search for `hash` starts, to bring it into cache.
    #[inline]
    fn touch(&self, hash: u64) -> u32 {
        self.slots[hash as usize & self.mask()].cell
    }

    #[inline]
    fn get(&self, key: &ShortKey, hash: u64) -> Option<u32> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.cell == u32::MAX {
                return None;
            }
            if s.key == key.0 {
                return Some(s.cell);
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, key: ShortKey, cell: u32) -> Option<u32> {
        if 2 * (self.len + 1) > self.slots.len() {
            let bigger = vec![EMPTY; 2 * self.slots.len()];
            let old = std::mem::replace(&mut self.slots, bigger);
            self.len = 0;
            for s in old.into_iter().filter(|s| s.cell != u32::MAX) {
                self.insert(ShortKey(s.key), s.cell);
            }
        }
        let mask = self.mask();
        let mut i = key.hash() as usize & mask;
        loop {
            let s = &mut self.slots[i];
            if s.cell == u32::MAX {
                *s = Slot { key: key.0, cell };
                self.len += 1;
                return None;
            }
            if s.key == key.0 {
                return Some(std::mem::replace(&mut s.cell, cell));
            }
            i = (i + 1) & mask;
        }
    }
}

/// Barcode -> cell number.
#[derive(Debug, Clone, Default)]
pub(super) struct BarcodeMap {
    short: ShortTable,
    long: FastMap<Box<[u8]>, u32>,
}

impl BarcodeMap {
    /// One lookup; the workers look up batches with [`BarcodeMap::get_batch`].
    #[cfg(test)]
    pub(super) fn get(&self, barcode: &[u8]) -> Option<u32> {
        match ShortKey::new(barcode) {
            Some(k) => self.short.get(&k, k.hash()),
            None => self.long.get(barcode).copied(),
        }
    }

    /// Looks up a batch of barcodes, touching all their slots first.
    #[inline]
    pub(super) fn get_batch<'a>(
        &self,
        barcodes: impl Iterator<Item = &'a [u8]> + Clone,
        out: &mut [Option<u32>],
    ) {
        let mut keys = [(ShortKey([0; 3]), 0u64); BATCH];
        let mut touched = 0u32;
        for ((k, bc), _) in keys.iter_mut().zip(barcodes.clone()).zip(out.iter()) {
            if let Some(key) = ShortKey::new(bc) {
                *k = (key, key.hash());
                touched ^= self.short.touch(k.1);
            }
        }
        std::hint::black_box(touched);
        for ((slot, bc), (key, hash)) in out.iter_mut().zip(barcodes).zip(&keys) {
            *slot = if bc.len() <= ShortKey::MAX {
                self.short.get(key, *hash)
            } else {
                self.long.get(bc).copied()
            };
        }
    }

    /// Inserts, returning the previous value if the barcode was there.
    pub(super) fn insert(&mut self, barcode: &[u8], cell: u32) -> Option<u32> {
        match ShortKey::new(barcode) {
            Some(k) => self.short.insert(k, cell),
            None => self.long.insert(barcode.into(), cell),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.short.len + self.long.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::temp_file;

    #[test]
    fn barcode_keys_are_exact_at_every_length() {
        // Keys of every length around the inline limit, including zero bytes that must not
        // be confused with padding.
        let mut all: Vec<Vec<u8>> = Vec::new();
        for n in 0..=30usize {
            for k in [vec![b'A'; n], vec![0u8; n], (1..=n as u8).collect()] {
                if !all.contains(&k) {
                    all.push(k);
                }
            }
        }
        let mut map = BarcodeMap::default();
        for (i, k) in all.iter().enumerate() {
            assert_eq!(map.insert(k, i as u32), None, "{k:?}");
        }
        for (i, k) in all.iter().enumerate() {
            assert_eq!(map.get(k), Some(i as u32), "{k:?}");
        }
        assert_eq!(map.len(), all.len());
        assert_eq!(map.get(b"AAAC"), None);
        let mut out = [None; BATCH];
        let keys: Vec<&[u8]> = all.iter().take(BATCH).map(Vec::as_slice).collect();
        map.get_batch(keys.iter().copied(), &mut out);
        for (k, got) in keys.iter().zip(out) {
            assert_eq!(got, map.get(k));
        }
    }

    #[test]
    fn reads_barcode_lists() {
        let f = temp_file(
            "barcodes.tsv",
            b"# cells\nAAAC-1\n\n  CCCG-1  \nTTTA-1\textra\n",
        );
        assert_eq!(
            read_barcodes(&f.0).expect("valid"),
            vec!["AAAC-1", "CCCG-1", "TTTA-1"]
        );
    }

    #[test]
    fn reads_cellranger_atac_singlecell_csv() {
        let f = temp_file(
            "singlecell.csv",
            b"barcode,total,duplicate,is__cell_barcode,excluded_reason\n\
              NO_BARCODE,9,1,0,0\n\
              AAAC-1,40,3,1,0\n\
              CCCG-1,2,0,0,1\n\
              \"TTTA-1\",55,5,1,0\n",
        );
        assert_eq!(
            read_barcodes(&f.0).expect("valid"),
            vec!["AAAC-1", "TTTA-1"]
        );
        // Without a cell column every row is a barcode (NO_BARCODE aside).
        let f = temp_file(
            "bcs.csv",
            b"\xEF\xBB\xBFgex,barcode\nx,AAAC-1\ny,NO_BARCODE\nz,CCCG-1\n",
        );
        assert_eq!(
            read_barcodes(&f.0).expect("valid"),
            vec!["AAAC-1", "CCCG-1"]
        );
        // cellranger-arc names the column is_cell.
        let f = temp_file(
            "per_barcode_metrics.csv",
            b"barcode,is_cell\nAAAC-1,0\nCCCG-1,1\n",
        );
        assert_eq!(read_barcodes(&f.0).expect("valid"), vec!["CCCG-1"]);
    }

    #[test]
    fn bad_singlecell_rows_name_the_line() {
        let f = temp_file(
            "short.csv",
            b"barcode,total,is__cell_barcode\nAAAC-1,4,1\nCCCG-1\n",
        );
        let e = read_barcodes(&f.0).expect_err("a short row");
        assert!(matches!(e, crate::Error::Parse { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("too few columns"), "{e}");
        let f = temp_file("yes.csv", b"barcode,is__cell_barcode\nAAAC-1,yes\n");
        let e = read_barcodes(&f.0).expect_err("not 0 or 1");
        assert!(
            e.to_string().contains(":2:") && e.to_string().contains("\"yes\""),
            "{e}"
        );
    }
}
