"""A torch Dataset that tokenizes in DataLoader workers (importable by spawned children)."""

from __future__ import annotations

from torch.utils.data import Dataset


class CellDataset(Dataset):
    def __init__(self, tokenizer, cells):
        self.tokenizer = tokenizer
        self.cells = cells

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, i: int):
        return self.tokenizer(self.cells[i], return_tensors="pt")["input_ids"]
