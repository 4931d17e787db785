//! Token ids of many cells in one flat buffer.
//!
//! Cell `i` owns `ids[offsets[i]..offsets[i + 1]]`. Ids are `i32` (vocabularies are checked
//! to fit), offsets are `i64` with `offsets[0] == 0` and `offsets.len() == n_cells + 1`.

/// Ragged token ids with one name (barcode, file or cell id) per cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ragged {
    pub ids: Vec<i32>,
    pub offsets: Vec<i64>,
    pub names: Vec<String>,
}

impl Default for Ragged {
    fn default() -> Self {
        Ragged {
            ids: Vec::new(),
            offsets: vec![0],
            names: Vec::new(),
        }
    }
}

impl Ragged {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Appends one cell.
    pub fn push(&mut self, name: String, ids: &[i32]) {
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len() as i64);
        self.names.push(name);
    }

    /// Ids of cell `i`.
    pub fn cell(&self, i: usize) -> &[i32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Joins per-cell id vectors into one buffer.
    pub fn from_cells(names: Vec<String>, cells: Vec<Vec<i32>>) -> Self {
        let total = cells.iter().map(Vec::len).sum();
        let mut out = Ragged {
            ids: Vec::with_capacity(total),
            offsets: Vec::with_capacity(cells.len() + 1),
            names: Vec::new(),
        };
        out.offsets.push(0);
        for c in &cells {
            out.ids.extend_from_slice(c);
            out.offsets.push(out.ids.len() as i64);
        }
        out.names = names;
        out
    }
}
