"""`BatchEncoding`: the mapping that tokenizer calls return.

A plain ``dict`` of arrays with attribute access (``enc.input_ids``), following the
Hugging Face convention, without importing ``transformers``.
"""

from __future__ import annotations

from typing import Any


class BatchEncoding(dict):
    """Tokenizer output: ``input_ids`` and ``attention_mask`` (NumPy arrays or tensors)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self) -> dict:
        return dict(self)

    def __setstate__(self, state: dict) -> None:
        self.update(state)

    def to(self, device: Any) -> BatchEncoding:
        """Moves torch tensors to ``device`` (other values are left as they are)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})

    def convert_to_tensors(self, tensor_type: str | None) -> BatchEncoding:
        """Converts NumPy values to ``"pt"`` tensors (without a copy) in place."""
        if tensor_type == "pt":
            try:
                import torch
            except ImportError as e:
                raise ImportError(
                    "return_tensors='pt' needs PyTorch: pip install torch (or atacformer[model])"
                ) from e

            for k, v in self.items():
                if hasattr(v, "__array__") and not isinstance(v, torch.Tensor):
                    self[k] = torch.from_numpy(v)
        elif tensor_type not in (None, "np"):
            from . import _core

            raise _core.InvalidInputError(
                f"return_tensors must be None, 'np' or 'pt', got {tensor_type!r}"
            )
        return self
