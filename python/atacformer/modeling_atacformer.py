"""The Atacformer encoder and its task heads in PyTorch, checkpoint-compatible with the Hub.

Parameter names follow ``torch.nn.TransformerEncoderLayer`` (post-LayerNorm, ReLU, batch first)
so that published ``model.safetensors`` files load unchanged, but the layer is our own: attention
goes through ``scaled_dot_product_attention`` and can run on padded batches (``[B, L, H]`` with a
key mask, used for training and on GPU) or on packed tokens (``[T, H]``, one attention call per
cell, no padding at all: the fastest layout on CPU).

:meth:`AtacformerPreTrainedModel.encode_tokenized_cells` turns tokenized cells into cell
embeddings ``[n_cells, hidden]``: cells are sorted by length, batched, encoded in inference mode
and returned in input order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    PreTrainedModel,
)
from transformers import __version__ as _transformers_version
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, TokenClassifierOutput
from transformers.utils import ModelOutput

from .configuration_atacformer import AtacformerConfig
from .tokenized_cells import TokenizedCells

try:  # transformers 5: init functions that skip weights already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # pragma: no cover - transformers 4.5x
    from torch.nn import init as _init

__all__ = [
    "AtacformerBatchCorrectionOutput",
    "AtacformerCellClusteringOutput",
    "AtacformerForCellClustering",
    "AtacformerForMaskedLM",
    "AtacformerForReplacedTokenDetection",
    "AtacformerForUnsupervisedBatchCorrection",
    "AtacformerModel",
    "AtacformerPreTrainedModel",
]

_TRANSFORMERS_5 = int(_transformers_version.split(".")[0]) >= 5
_TOKEN_EMBEDDINGS = "atacformer.embeddings.token_embeddings.weight"
# Packed batches are cut at a token budget so that the widest activation, [tokens,
# intermediate] fp32, stays near 24 MiB whatever batch_size is (64 cells of 4,000 tokens would
# otherwise need 0.8 GB per activation at the published shape). Packed cells do not interact, so
# the cut changes no result.
_PACKED_BYTES = 24 << 20
IGNORE_INDEX = -100
"""Label value excluded from every loss (special and pad tokens)."""

# --------------------------------------------------------------------------- attention layouts


@dataclass(frozen=True)
class _Padded:
    """Hidden states ``[B, L, H]``; ``mask`` ``[B, 1, 1, L]`` bool (True = attend) or None."""

    mask: torch.Tensor | None


@dataclass(frozen=True)
class _Packed:
    """Hidden states are ``[T, H]``: cell ``i`` owns rows ``bounds[i]:bounds[i + 1]``."""

    bounds: list[int]


_Layout = _Padded | _Packed


class AtacformerSelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names.

    ``in_proj_weight`` ``[3H, H]`` stacks the Q, K and V projections; ``out_proj`` is ``H -> H``.
    """

    def __init__(self, config: AtacformerConfig, dropout: float = 0.1) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = hidden // self.num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * hidden))
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, layout: _Layout) -> torch.Tensor:
        """``[B, L, H]`` or ``[T, H]`` (same layout in and out)."""
        p = self.dropout if self.training else 0.0
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        if isinstance(layout, _Packed):
            out = self._packed(qkv, layout.bounds, p)
        else:
            b, n, _ = x.shape
            q, k, v = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask, dropout_p=p)
            out = a.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.out_proj(out)

    def _packed(self, qkv: torch.Tensor, bounds: list[int], p: float) -> torch.Tensor:
        """Attention of each cell with itself: ``[T, 3H] -> [T, H]``, no padding, no mask."""
        total = qkv.shape[0]
        qkv = qkv.view(total, 3, self.num_heads, self.head_dim)
        out = qkv.new_empty(total, self.num_heads, self.head_dim)
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            if end == start:
                continue
            q, k, v = qkv[start:end].permute(1, 2, 0, 3)  # each [heads, n, head_dim]
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            out[start:end] = a.transpose(0, 1)
        return out.view(total, self.num_heads * self.head_dim)


class AtacformerEncoderLayer(nn.Module):
    """Post-LayerNorm encoder layer laid out like ``nn.TransformerEncoderLayer`` (ReLU, p=0.1)."""

    def __init__(self, config: AtacformerConfig, dropout: float = 0.1) -> None:
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        # nn.TransformerEncoderLayer's defaults; the published checkpoints were trained with them.
        eps = 1e-5
        self.self_attn = AtacformerSelfAttention(config, dropout)
        self.linear1 = nn.Linear(hidden, inner)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(inner, hidden)
        self.norm1 = nn.LayerNorm(hidden, eps=eps)
        self.norm2 = nn.LayerNorm(hidden, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, layout: _Layout) -> torch.Tensor:
        """``[B, L, H]`` or ``[T, H]`` (same layout in and out)."""
        x = self.norm1(x + self.dropout1(self.self_attn(x, layout)))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class AtacformerEncoder(nn.Module):
    """A stack of ``num_hidden_layers`` encoder layers, without a final norm."""

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [AtacformerEncoderLayer(config) for _ in range(config.num_hidden_layers)]
        )

    def forward(
        self, x: torch.Tensor, layout: _Layout, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Last hidden state (layout of ``x``) and, if asked, the input of every layer plus it."""
        states: list[torch.Tensor] = []
        for layer in self.layers:
            if output_hidden_states:
                states.append(x)
            x = layer(x, layout)
        if output_hidden_states:
            states.append(x)
            return x, tuple(states)
        return x, None


class AtacformerEmbeddings(nn.Module):
    """Token embeddings plus, when ``use_pos_embeddings``, learned absolute positions."""

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__()
        self.use_pos_embeddings = config.use_pos_embeddings
        self.max_positions = config.max_position_embeddings
        self.token_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        # Always a parameter so that every checkpoint has the same keys.
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        """ids ``[B, L]`` or ``[T]`` -> ``[B, L, H]`` or ``[T, H]`` (positions needed if used)."""
        x = self.token_embeddings(input_ids)
        if self.use_pos_embeddings:
            if position_ids is None:
                raise ValueError("position_ids are required when use_pos_embeddings is True")
            x = x + self.position_embeddings(position_ids)
        return self.dropout(x)

    def check_length(self, length: int) -> None:
        """Raises ``ValueError`` if a cell of ``length`` tokens has no position embedding."""
        if self.use_pos_embeddings and length > self.max_positions:
            raise ValueError(
                f"a cell has {length} tokens but this model has position embeddings for "
                f"only {self.max_positions} (max_position_embeddings); truncate the cells, "
                f"e.g. encode_tokenized_cells(..., max_tokens_per_cell={self.max_positions})"
            )


class _GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-alpha`` on the way back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


def gradient_reversal(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Gradient reversal layer (Ganin & Lempitsky, 2015): ``x`` forward, ``-alpha * grad`` back."""
    return _GradientReversal.apply(x, alpha)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: ``[B, L, H]``, ``[B, L]`` -> ``[B, H]`` (zeros for empty cells)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


# --------------------------------------------------------------------------- models


class AtacformerPreTrainedModel(PreTrainedModel):
    """Shared loading, initialisation and :meth:`encode_tokenized_cells` for every class."""

    config_class = AtacformerConfig
    config: AtacformerConfig
    base_model_prefix = "atacformer"
    _no_split_modules = ["AtacformerEmbeddings", "AtacformerEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Truncated normal (``initializer_range``, cut at ``initializer_cutoff_factor`` std)."""
        std = self.config.initializer_range
        cut = self.config.initializer_cutoff_factor * std

        def normal(t: torch.Tensor) -> None:
            _init.trunc_normal_(t, mean=0.0, std=std, a=-cut, b=cut)

        if isinstance(module, nn.Linear):
            normal(module.weight)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            normal(module.weight)
            loaded = getattr(module.weight, "_is_hf_initialized", False)
            if module.padding_idx is not None and not loaded:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            _init.ones_(module.weight)
            _init.zeros_(module.bias)
        elif isinstance(module, AtacformerSelfAttention):
            normal(module.in_proj_weight)
            _init.zeros_(module.in_proj_bias)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: Any,
        *model_args: Any,
        revision: str | None = None,
        cache_dir: Any = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Loads ``"demo"`` (the packaged model), a local folder or a Hub repo id.

        The name goes through :func:`atacformer.hub.resolve_pretrained`, the resolver the
        tokenizer and the command line share; the folder it gives is loaded by
        ``transformers``' own ``from_pretrained`` with the other keyword arguments. As in
        ``transformers``, ``name_or_path`` records the name as given (``"demo"``, the repo id).
        """
        if pretrained_model_name_or_path is None:  # config and state_dict given directly
            return super().from_pretrained(None, *model_args, **kwargs)
        from os import fspath

        from .hub import resolve_pretrained

        name = fspath(pretrained_model_name_or_path)
        folder = resolve_pretrained(
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        loaded = super().from_pretrained(folder, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.config._name_or_path = model.name_or_path = name
        return loaded

    def encode_tokenized_cells(
        self,
        cells: Any,
        batch_size: int = 64,
        pool_tokens: bool = True,
        max_tokens_per_cell: int | None = None,
        truncation_strategy: Literal["random", "first"] = "random",
        seed: int = 0,
        progress: bool = True,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        return_tensors: Literal["np", "pt"] = "np",
        layout: Literal["auto", "packed", "padded"] = "auto",
    ) -> np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]:
        """Cell embeddings ``[n_cells, hidden]`` float32, the mean over each cell's tokens.

        ``cells`` is a ``TokenizedCells`` (anything with flat ``ids`` and ``offsets``), a list of
        1-D id arrays or lists, or a padded mapping with ``input_ids`` and ``attention_mask``.
        Cells longer than ``max_tokens_per_cell`` keep a seeded random subset of their tokens in
        their original order (``"random"``) or their first tokens (``"first"``). An empty cell
        embeds to zeros. With ``pool_tokens=False`` the result is a list of ``[len_i, hidden]``
        arrays, one per (truncated) cell. ``device`` moves the model there; ``dtype`` (e.g.
        ``torch.bfloat16``) runs the encoder under autocast. ``layout="packed"`` encodes
        unpadded tokens with one attention call per cell (the CPU default); ``"padded"`` uses
        length-sorted padded batches (the GPU default).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
        ids, offsets = _as_ragged(cells)
        if max_tokens_per_cell is not None:
            ids, offsets = truncate_ragged(
                ids, offsets, max_tokens_per_cell, truncation_strategy, seed
            )
        lengths = np.diff(offsets)
        base: AtacformerModel = self.base_model
        if len(lengths):
            base.embeddings.check_length(int(lengths.max()))
        if device is not None:
            self.to(device)
        run_device = next(self.parameters()).device
        if layout == "auto":
            layout = "packed" if run_device.type == "cpu" else "padded"
        elif layout not in ("packed", "padded"):
            raise ValueError(f"layout must be 'auto', 'packed' or 'padded', got {layout!r}")
        autocast = _autocast(run_device, dtype, next(self.parameters()).dtype)

        n_cells, hidden = len(lengths), self.config.hidden_size
        widest = max(self.config.intermediate_size, 3 * hidden)
        budget = max(512, _PACKED_BYTES // (4 * widest))
        pooled = np.zeros((n_cells, hidden), dtype=np.float32) if pool_tokens else None
        per_token: list[Any] = [None] * (0 if pool_tokens else n_cells)
        # Longest first: similar lengths share a batch, and memory peaks at the start.
        order = np.argsort(-lengths, kind="stable")
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), autocast, _progress(n_cells, progress) as bar:
                for idx in _batches(order, lengths, batch_size, layout, budget):
                    lens = lengths[idx]
                    batch_ids = ids[_ranges(offsets[idx], lens)]
                    if layout == "packed":
                        tokens = base._forward_packed(batch_ids, lens, run_device)
                    else:
                        tokens = base._forward_padded_flat(batch_ids, lens, run_device)
                    tokens = tokens.float()  # [T_b, H], cells in `idx` order, back to back
                    if pool_tokens:
                        pooled[idx] = _segment_mean(tokens, lens).cpu().numpy()
                    else:
                        parts = tokens.cpu().split(lens.tolist())
                        for i, part in zip(idx.tolist(), parts, strict=True):
                            per_token[i] = part.numpy() if return_tensors == "np" else part
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        if pool_tokens:
            return torch.from_numpy(pooled) if return_tensors == "pt" else pooled
        return per_token


class AtacformerModel(AtacformerPreTrainedModel):
    """The bare encoder: embeddings and post-LayerNorm layers; output ``[B, L, H]``."""

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__(config)
        self.embeddings = AtacformerEmbeddings(config)
        self.encoder = AtacformerEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.token_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.token_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput | tuple[torch.Tensor, ...]:
        """ids ``[B, L]``, mask ``[B, L]`` (bool or int, 1 = token) -> ``last_hidden_state``.

        ``last_hidden_state`` is ``[B, L, H]``; rows at padded positions carry no meaning.
        Extra tokenizer keys (e.g. ``token_type_ids``) are accepted and ignored.
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        input_ids = torch.as_tensor(input_ids, device=self.device)
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
            attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
        length = input_ids.shape[1]
        self.embeddings.check_length(length)
        if position_ids is None and self.config.use_pos_embeddings:
            position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0)
        mask = None
        if attention_mask is not None:
            keep = torch.as_tensor(attention_mask, device=input_ids.device).bool()
            # A cell with no tokens would attend to nothing (NaN); let it see its padding.
            keep = keep | ~keep.any(dim=1, keepdim=True)
            mask = None if bool(keep.all()) else keep[:, None, None, :]
        x = self.embeddings(input_ids, position_ids)
        hidden, states = self.encoder(x, _Padded(mask), bool(output_hidden_states))
        out = BaseModelOutput(last_hidden_state=hidden, hidden_states=states)
        return out if return_dict is not False else out.to_tuple()

    def _forward_packed(
        self, ids: np.ndarray, lengths: np.ndarray, device: torch.device
    ) -> torch.Tensor:
        """Encodes cells laid end to end: flat ids ``[T]`` -> ``[T, H]``, no padding."""
        bounds = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        input_ids = torch.from_numpy(ids).to(device)
        positions = None
        if self.config.use_pos_embeddings:
            pos = np.arange(len(ids), dtype=np.int64) - np.repeat(bounds[:-1], lengths)
            positions = torch.from_numpy(pos).to(device)
        x = self.embeddings(input_ids, positions)
        hidden, _ = self.encoder(x, _Packed(bounds.tolist()))
        return hidden

    def _forward_padded_flat(
        self, ids: np.ndarray, lengths: np.ndarray, device: torch.device
    ) -> torch.Tensor:
        """Encodes cells as one padded batch, returning real tokens only: ``[T, H]``."""
        if len(ids) == 0:
            return torch.zeros(0, self.config.hidden_size, device=device)
        padded, mask = _pad_flat(ids, lengths, self.config.pad_token_id)
        input_ids = torch.from_numpy(padded).to(device, non_blocking=True)
        keep = torch.from_numpy(mask).to(device, non_blocking=True)
        hidden = self(input_ids=input_ids, attention_mask=keep).last_hidden_state
        return hidden[keep]


def _tied_keys(target: str) -> dict[str, str] | list[str]:
    """``_tied_weights_keys`` in the form the installed transformers expects."""
    return {target: _TOKEN_EMBEDDINGS} if _TRANSFORMERS_5 else [target]


class AtacformerForMaskedLM(AtacformerPreTrainedModel):
    """Encoder plus ``lm_head`` ``Linear(H, V)`` without bias, tied to the token embeddings.

    With ``config.sparse_prediction`` and labels, logits are computed only where
    ``labels != -100``: ``[n_labelled, V]`` instead of ``[B, L, V]``.
    """

    _tied_weights_keys = _tied_keys("lm_head.weight")

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__(config)
        self.atacformer = AtacformerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput:
        """Logits ``[B, L, V]`` (or ``[n_labelled, V]``); loss = cross-entropy where labelled."""
        base = self.atacformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=output_hidden_states,
        )
        hidden = base.last_hidden_state
        if labels is not None and self.config.sparse_prediction:
            labels = labels.to(hidden.device)
            chosen = labels != IGNORE_INDEX
            hidden, labels = hidden[chosen], labels[chosen]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1).long().to(logits.device),
                ignore_index=IGNORE_INDEX,
            )
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=base.hidden_states)


class AtacformerDiscriminatorHead(nn.Module):
    """Per-token replaced/original logit: ``dense`` -> GELU -> ``norm`` -> ``classifier``."""

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, L, H]`` -> logits ``[B, L]``."""
        return self.classifier(self.norm(F.gelu(self.dense(hidden)))).squeeze(-1)


def _rtd_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy where ``labels != -100`` (0 if nothing is labelled)."""
    labels = labels.to(logits.device)
    chosen = labels != IGNORE_INDEX
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(
        logits[chosen].float(), labels[chosen].to(torch.float32)
    )


class AtacformerForReplacedTokenDetection(AtacformerPreTrainedModel):
    """ELECTRA-style discriminator: is each token original (0) or replaced (1)?"""

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__(config)
        self.atacformer = AtacformerModel(config)
        self.discriminator = AtacformerDiscriminatorHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput:
        """Logits ``[B, L]``; loss = BCE over ``labels`` (1 replaced, 0 original, -100 skip)."""
        base = self.atacformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=output_hidden_states,
        )
        logits = self.discriminator(base.last_hidden_state)
        loss = None if labels is None else _rtd_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=base.hidden_states)


@dataclass
class AtacformerCellClusteringOutput(ModelOutput):
    """Triplet loss and the mean-pooled embeddings ``[B, H]`` of the three cells."""

    loss: torch.Tensor | None = None
    anchor_embeddings: torch.Tensor | None = None
    positive_embeddings: torch.Tensor | None = None
    negative_embeddings: torch.Tensor | None = None


class AtacformerForCellClustering(AtacformerPreTrainedModel):
    """Contrastive fine-tuning: triplet margin loss (margin 1, p 2) over mean-pooled cells."""

    main_input_name = "anchor_input_ids"

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__(config)
        self.atacformer = AtacformerModel(config)
        self.post_init()

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Mean-pooled cell embeddings: ``[B, L]`` -> ``[B, H]``."""
        hidden = self.atacformer(input_ids, attention_mask=attention_mask).last_hidden_state
        if attention_mask is None:
            return hidden.mean(1)
        return masked_mean(hidden, attention_mask.to(hidden.device))

    def forward(
        self,
        anchor_input_ids: torch.Tensor,
        anchor_attention_mask: torch.Tensor | None = None,
        positive_input_ids: torch.Tensor | None = None,
        positive_attention_mask: torch.Tensor | None = None,
        negative_input_ids: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> AtacformerCellClusteringOutput:
        """Embeds the given cells; the loss needs all three of anchor, positive and negative."""
        anchor = self.embed(anchor_input_ids, anchor_attention_mask)
        positive = negative = loss = None
        if positive_input_ids is not None:
            positive = self.embed(positive_input_ids, positive_attention_mask)
        if negative_input_ids is not None:
            negative = self.embed(negative_input_ids, negative_attention_mask)
        if positive is not None and negative is not None:
            loss = F.triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2)
        return AtacformerCellClusteringOutput(
            loss=loss,
            anchor_embeddings=anchor,
            positive_embeddings=positive,
            negative_embeddings=negative,
        )


@dataclass
class AtacformerBatchCorrectionOutput(ModelOutput):
    """Total loss, its two parts, token logits ``[B, L]``, batch logits, cell embeddings."""

    loss: torch.Tensor | None = None
    rtd_loss: torch.Tensor | None = None
    batch_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    batch_logits: torch.Tensor | None = None
    cell_embeddings: torch.Tensor | None = None


class AtacformerForUnsupervisedBatchCorrection(AtacformerPreTrainedModel):
    """Replaced-token detection plus an adversarial batch classifier behind gradient reversal.

    Only the last ``bc_unfreeze_last_n_layers`` encoder layers, every LayerNorm and the heads
    train; embeddings and earlier layers are frozen. Loss = RTD + ``lambda_adv`` x batch CE.
    """

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__(config)
        if not config.num_batches:
            raise ValueError("AtacformerForUnsupervisedBatchCorrection needs config.num_batches")
        self.atacformer = AtacformerModel(config)
        self.discriminator = AtacformerDiscriminatorHead(config)
        self.batch_prediction_head = nn.Linear(config.hidden_size, config.num_batches)
        self.post_init()
        self.freeze_for_batch_correction()

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """Loads as usual, then freezes again (transformers 5 loads fresh trainable tensors)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.freeze_for_batch_correction()
        return loaded

    def freeze_for_batch_correction(self) -> None:
        """Freezes the encoder except its last ``bc_unfreeze_last_n_layers`` and LayerNorms."""
        self.atacformer.requires_grad_(False)
        layers = self.atacformer.encoder.layers
        n = max(0, min(self.config.bc_unfreeze_last_n_layers, len(layers)))
        for layer in layers[len(layers) - n :]:
            layer.requires_grad_(True)
        for module in self.atacformer.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        batch_labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> AtacformerBatchCorrectionOutput:
        """RTD ``labels`` ``[B, L]`` and ``batch_labels`` ``[B]`` (ints below num_batches)."""
        hidden = self.atacformer(
            input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        logits = self.discriminator(hidden)
        if attention_mask is None:
            cells = hidden.mean(1)
        else:
            cells = masked_mean(hidden, attention_mask.to(hidden.device))
        batch_logits = self.batch_prediction_head(gradient_reversal(cells, self.config.grl_alpha))
        rtd = None if labels is None else _rtd_loss(logits, labels)
        adv = None
        if batch_labels is not None:
            adv = F.cross_entropy(batch_logits.float(), batch_labels.long().to(cells.device))
        loss = rtd
        if adv is not None:
            weighted = self.config.lambda_adv * adv
            loss = weighted if loss is None else loss + weighted
        return AtacformerBatchCorrectionOutput(
            loss=loss,
            rtd_loss=rtd,
            batch_loss=adv,
            logits=logits,
            batch_logits=batch_logits,
            cell_embeddings=cells,
        )


# --------------------------------------------------------------------------- ragged helpers


def _as_ragged(cells: Any) -> tuple[np.ndarray, np.ndarray]:
    """Any accepted cell input -> flat ids ``[T]`` and offsets ``[n_cells + 1]`` int64."""
    if isinstance(cells, Mapping):
        inner = cells["input_ids"]
        if hasattr(inner, "ids") and hasattr(inner, "offsets"):
            return _as_ragged(inner)
        ids = _to_numpy(inner)
        if ids.ndim != 2:
            raise ValueError(f"padded input_ids must be [B, L], got shape {ids.shape}")
        mask = cells.get("attention_mask")
        keep = np.ones(ids.shape, dtype=bool) if mask is None else _to_numpy(mask).astype(bool)
        offsets = np.zeros(ids.shape[0] + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        return ids[keep], offsets  # row-major boolean indexing keeps each cell's order
    if hasattr(cells, "ids") and hasattr(cells, "offsets"):
        offsets = np.asarray(cells.offsets, dtype=np.int64)
        return np.asarray(cells.ids), offsets
    if isinstance(cells, (Sequence, np.ndarray)) and not isinstance(cells, (str, bytes)):
        arrays = [_to_numpy(c).reshape(-1) for c in cells]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return flat.astype(np.int64, copy=False), offsets
    raise TypeError(
        "cells must be a TokenizedCells, a list of id arrays or a mapping with input_ids, "
        f"got {type(cells).__name__}"
    )


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each pair, vectorised: ``[sum(lengths)]`` int64."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) + shift


def truncate_ragged(
    ids: np.ndarray,
    offsets: np.ndarray,
    max_tokens: int,
    strategy: Literal["random", "first"] = "random",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Keeps at most ``max_tokens`` ids per cell, in their original order.

    ``"first"`` keeps the leading ids; ``"random"`` a uniform random subset drawn from
    ``seed`` (the same input and seed always give the same subset). This is the tokenizer's
    own truncation (in Rust), so a cell is cut the same way here and in
    ``tokenizer(cells, truncation=True, ...)``. Returns new flat ids and offsets; the input
    is returned as is when no cell is too long.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens_per_cell must be positive, got {max_tokens}")
    if strategy not in ("random", "first"):
        raise ValueError(f"truncation_strategy must be 'random' or 'first', got {strategy!r}")
    offsets = np.asarray(offsets, dtype=np.int64)
    if not (np.diff(offsets) > max_tokens).any():
        return ids, offsets
    cut = TokenizedCells(ids, offsets).truncate(max_tokens, strategy, seed)
    return cut.ids.astype(np.asarray(ids).dtype, copy=False), cut.offsets


def _batches(
    order: np.ndarray, lengths: np.ndarray, batch_size: int, layout: str, budget: int
) -> Iterator[np.ndarray]:
    """Cell indices per batch: ``batch_size`` cells, packed ones also cut at ``budget`` tokens.

    Packed cells do not interact, so cutting a batch changes nothing but memory use.
    """
    for first in range(0, len(order), batch_size):
        idx = order[first : first + batch_size]
        if layout != "packed":
            yield idx
            continue
        start, total = 0, 0
        for j, n in enumerate(lengths[idx].tolist()):
            if total and total + n > budget:
                yield idx[start:j]
                start, total = j, 0
            total += n
        yield idx[start:]


def _pad_flat(ids: np.ndarray, lengths: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids of consecutive cells -> padded ``[B, L]`` int64 ids and bool mask."""
    width = int(lengths.max()) if len(lengths) else 0
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded = np.full((len(lengths), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=bool)
    padded[rows, cols] = ids
    mask[rows, cols] = True
    return padded, mask


def _segment_mean(tokens: torch.Tensor, lengths: np.ndarray) -> torch.Tensor:
    """Mean of consecutive row segments: ``[T, H]`` -> ``[n_cells, H]`` (zeros when empty)."""
    lens = torch.from_numpy(np.asarray(lengths, dtype=np.int64)).to(tokens.device)
    segment = torch.repeat_interleave(torch.arange(len(lens), device=tokens.device), lens)
    sums = tokens.new_zeros(len(lens), tokens.shape[1]).index_add_(0, segment, tokens)
    return sums / lens.clamp(min=1).unsqueeze(1).to(tokens.dtype)


def _autocast(
    device: torch.device, dtype: torch.dtype | str | None, model_dtype: torch.dtype
) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` when it differs from the model's, else a no-op."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."))
    if dtype is None or dtype == model_dtype:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar counting cells, or a silent stand-in when disabled or tqdm is missing."""
    bar: Any = None
    if enabled:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="cell", desc="Encoding cells")
        except ImportError:
            bar = None
    if bar is None:
        bar = _NoBar()
    try:
        yield bar
    finally:
        bar.close()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- auto classes

AutoModel.register(AtacformerConfig, AtacformerModel, exist_ok=True)
AutoModelForMaskedLM.register(AtacformerConfig, AtacformerForMaskedLM, exist_ok=True)
AutoModelForPreTraining.register(
    AtacformerConfig, AtacformerForReplacedTokenDetection, exist_ok=True
)
