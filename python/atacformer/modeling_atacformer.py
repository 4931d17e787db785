"""The Atacformer encoder and its task heads in PyTorch, checkpoint-compatible with the Hub.

Parameter names follow ``torch.nn.TransformerEncoderLayer`` (post-LayerNorm, ReLU, batch first)
so that published ``model.safetensors`` files load unchanged, but the layer is our own: attention
goes through ``scaled_dot_product_attention`` and runs on padded batches (``[B, L, H]`` with a
key mask, used for training and on GPU) or on packed tokens (``[T, H]`` with ``cu_seqlens``
boundaries, one attention call per cell and no padding at all: the fastest layout on CPU). Both
layouts go through the public :meth:`AtacformerModel.forward`.

Batching, truncation and pooling live in :mod:`atacformer.inference`;
:meth:`AtacformerPreTrainedModel.encode_tokenized_cells` is a thin entry point to it.
"""

from __future__ import annotations

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

from . import inference
from .configuration_atacformer import AtacformerConfig
from .inference import mean_pool

try:  # transformers 5: init functions that skip weights already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # pragma: no cover - transformers 4.5x
    from torch.nn import init as _init

__all__ = [
    "IGNORE_INDEX",
    "AtacformerBatchCorrectionOutput",
    "AtacformerCellClusteringOutput",
    "AtacformerForCellClustering",
    "AtacformerForMaskedLM",
    "AtacformerForReplacedTokenDetection",
    "AtacformerForUnsupervisedBatchCorrection",
    "AtacformerModel",
    "AtacformerPreTrainedModel",
    "gradient_reversal",
    "pad_output",
    "unpad_input",
]

_TRANSFORMERS_5 = int(_transformers_version.split(".")[0]) >= 5
_TOKEN_EMBEDDINGS = "atacformer.embeddings.token_embeddings.weight"
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


# --------------------------------------------------------------------------- models

_MISSING = "_atacformer_missing_weights"
"""Attribute recording the encoder weights ``from_pretrained`` initialised: name -> the
parameter's version counter then (a later in-place change, such as training, bumps it)."""


def _record_missing(model: Any, info: dict[str, Any]) -> None:
    """Keeps the encoder's missing keys from transformers' loading info on the model."""
    prefix = "" if isinstance(model, AtacformerModel) else f"{model.base_model_prefix}."
    params = dict(model.named_parameters(remove_duplicate=False))
    missing = {
        key: getattr(params[key], "_version", 0)
        for key in info.get("missing_keys", ())
        if key.startswith(prefix) and key in params
    }
    object.__setattr__(model, _MISSING, missing)


class AtacformerPreTrainedModel(PreTrainedModel):
    """Shared loading, initialisation and :meth:`encode_tokenized_cells` for every class."""

    config_class = AtacformerConfig
    config: AtacformerConfig
    base_model_prefix = "atacformer"
    _no_split_modules = ["AtacformerEmbeddings", "AtacformerEncoderLayer"]

    def __init__(self, config: AtacformerConfig, *inputs: Any, **kwargs: Any) -> None:
        if isinstance(config, AtacformerConfig):
            config.check_shape()  # sizes changed after construction fail before allocating
        super().__init__(config, *inputs, **kwargs)

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
        wants_info = bool(kwargs.pop("output_loading_info", False))
        if pretrained_model_name_or_path is None:  # config and state_dict given directly
            model, info = super().from_pretrained(
                None, *model_args, output_loading_info=True, **kwargs
            )
            _record_missing(model, info)
            return (model, info) if wants_info else model
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
        model, info = super().from_pretrained(
            folder, *model_args, output_loading_info=True, **kwargs
        )
        _record_missing(model, info)
        model.config._name_or_path = model.name_or_path = name
        return (model, info) if wants_info else model

    def missing_encoder_weights(self) -> list[str]:
        """Names of the encoder's parameters (token and position embeddings, layers) that
        ``from_pretrained`` did not find in the checkpoint and had to initialise at random,
        and that nothing has changed since (training or ``load_state_dict`` clears a name).

        Embedding cells refuses a model for which this is not empty: its embeddings would be
        random. Head weights missing from a checkpoint are expected and not listed. A model
        built from a config in Python (never loaded) has nothing missing: its weights are
        random on purpose, and using it is the caller's choice.
        """
        fresh: dict[str, int] = getattr(self, _MISSING, {})
        params = dict(self.named_parameters(remove_duplicate=False))
        return sorted(
            name
            for name, version in fresh.items()
            if name in params and getattr(params[name], "_version", version) == version
        )

    def check_encoder_loaded(self, source: str | None = None) -> None:
        """Raises :class:`~atacformer.InvalidInputError` naming the encoder weights that the
        checkpoint lacked (see :meth:`missing_encoder_weights`) and ``source``, the file
        (default: the name the model was loaded by)."""
        missing = self.missing_encoder_weights()
        if missing:
            from .exceptions import InvalidInputError

            shown = ", ".join(missing[:8]) + (
                f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            )
            source = source or self.name_or_path or type(self).__name__
            raise InvalidInputError(
                f"{source}: the checkpoint lacks {len(missing)} encoder weights ({shown}); "
                "they were initialised at random, so the embeddings would be noise. Is the "
                "model.safetensors complete, with the parameter names of an Atacformer "
                "checkpoint?"
            )

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
        embeds to zeros, with a ``UserWarning`` counting such cells. With
        ``pool_tokens=False`` the result is a list of ``[len_i, hidden]`` arrays, one per
        (truncated) cell. ``device`` moves the model there; ``dtype`` (e.g.
        ``torch.bfloat16``) runs the encoder under autocast. ``layout="packed"`` encodes
        unpadded tokens with one attention call per cell (the CPU default); ``"padded"`` uses
        length-sorted padded batches (the GPU default). A model whose checkpoint lacked
        encoder weights (:meth:`missing_encoder_weights`) and one that produces NaN or
        infinite values are refused with an :class:`~atacformer.InvalidInputError`. The
        work is :func:`atacformer.inference.encode`.
        """
        return inference.encode(
            self,
            cells,
            batch_size=batch_size,
            pool_tokens=pool_tokens,
            max_tokens_per_cell=max_tokens_per_cell,
            truncation_strategy=truncation_strategy,
            seed=seed,
            progress=progress,
            device=device,
            dtype=dtype,
            return_tensors=return_tensors,
            layout=layout,
        )

    def _return_dict(self, return_dict: bool | None) -> bool:
        """``return_dict`` as given, else the config's (``True`` unless set otherwise)."""
        return bool(self.config.return_dict if return_dict is None else return_dict)


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
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput | tuple[torch.Tensor, ...]:
        """Padded ``[B, L]`` or packed ``[T]`` ids -> ``last_hidden_state``, same layout.

        Padded: ``input_ids`` ``[B, L]`` and ``attention_mask`` ``[B, L]`` (bool or int,
        1 = token) give ``[B, L, H]``; rows at padded positions carry no meaning. Packed (no
        padding at all): flat ``input_ids`` ``[T]`` with ``cu_seqlens`` ``[n_cells + 1]``
        (cell ``i`` owns ``input_ids[cu_seqlens[i]:cu_seqlens[i + 1]]``) give ``[T, H]``;
        ``max_seqlen`` is the longest cell (computed when not given) and ``position_ids``
        ``[T]`` default to each token's position in its own cell. :func:`unpad_input` and
        :func:`pad_output` convert between the two. 1-D ids without ``cu_seqlens`` are one
        cell. Extra tokenizer keys (e.g. ``token_type_ids``) are accepted and ignored.
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        input_ids = torch.as_tensor(input_ids, device=self.device)
        if cu_seqlens is not None:
            x, layout = self._embed_packed(
                input_ids, attention_mask, position_ids, cu_seqlens, max_seqlen
            )
        else:
            x, layout = self._embed_padded(input_ids, attention_mask, position_ids)
        hidden, states = self.encoder(x, layout, bool(output_hidden_states))
        out = BaseModelOutput(last_hidden_state=hidden, hidden_states=states)
        return out if self._return_dict(return_dict) else out.to_tuple()

    def _embed_padded(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, _Layout]:
        """Embeddings ``[B, L, H]`` and the key mask of a padded batch."""
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
        return self.embeddings(input_ids, position_ids), _Padded(mask)

    def _embed_packed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        cu_seqlens: torch.Tensor,
        max_seqlen: int | None,
    ) -> tuple[torch.Tensor, _Layout]:
        """Embeddings ``[T, H]`` of cells laid end to end, and their boundaries."""
        if attention_mask is not None:
            raise ValueError("packed input (cu_seqlens) has no padding: pass no attention_mask")
        if input_ids.dim() != 1:
            raise ValueError(
                f"packed input_ids must be flat [T], got shape {tuple(input_ids.shape)}"
            )
        cu = torch.as_tensor(cu_seqlens, device=input_ids.device)
        if cu.is_floating_point() or cu.is_complex() or cu.dtype == torch.bool:
            raise ValueError(f"cu_seqlens must hold integers, got {cu.dtype}")
        cu = cu.long()
        bounds = cu.tolist()
        if (
            cu.dim() != 1
            or not bounds
            or bounds[0] != 0
            or bounds[-1] != input_ids.shape[0]
            or any(b < a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        ):
            raise ValueError(
                "cu_seqlens must be 1-D, start at 0, never decrease and end at len(input_ids)"
            )
        lengths = torch.diff(cu)
        longest = int(lengths.max()) if len(lengths) else 0
        if max_seqlen is not None and max_seqlen < longest:
            raise ValueError(f"max_seqlen is {max_seqlen}; the longest cell has {longest} tokens")
        self.embeddings.check_length(longest)
        if position_ids is None and self.config.use_pos_embeddings:
            starts = torch.repeat_interleave(cu[:-1], lengths)
            position_ids = torch.arange(len(input_ids), device=input_ids.device) - starts
        return self.embeddings(input_ids, position_ids), _Packed(bounds)


def unpad_input(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """A padded batch as packed input: flat ids ``[T]``, ``indices`` ``[T]`` into the
    flattened ``[B * L]`` positions, ``cu_seqlens`` ``[B + 1]`` int64 and ``max_seqlen``.

    Packed positions count from each cell's first token, as the padded forward's do when
    the padding is on the right (as the tokenizer and the collators write it).
    """
    keep = attention_mask.bool()
    lengths = keep.sum(1)
    cu_seqlens = torch.zeros(len(lengths) + 1, dtype=torch.int64, device=keep.device)
    torch.cumsum(lengths, 0, out=cu_seqlens[1:])
    indices = torch.nonzero(keep.reshape(-1), as_tuple=True)[0]
    max_seqlen = int(lengths.max()) if len(lengths) else 0
    return input_ids.reshape(-1)[indices], indices, cu_seqlens, max_seqlen


def pad_output(hidden: torch.Tensor, indices: torch.Tensor, batch: int, width: int) -> torch.Tensor:
    """Packed hidden states ``[T, H]`` back to ``[batch, width, H]``, zeros at padding."""
    out = hidden.new_zeros(batch * width, *hidden.shape[1:])
    out[indices] = hidden
    return out.view(batch, width, *hidden.shape[1:])


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
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | tuple[torch.Tensor, ...]:
        """Logits ``[B, L, V]`` (or ``[n_labelled, V]``); loss = cross-entropy where labelled.

        Packed input (``cu_seqlens``, see :meth:`AtacformerModel.forward`) takes ``labels``
        ``[T]`` and gives logits ``[T, V]``.
        """
        base = self.atacformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
            output_hidden_states=output_hidden_states,
            return_dict=True,
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
        out = MaskedLMOutput(loss=loss, logits=logits, hidden_states=base.hidden_states)
        return out if self._return_dict(return_dict) else out.to_tuple()


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
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput | tuple[torch.Tensor, ...]:
        """Logits ``[B, L]``; loss = BCE over ``labels`` (1 replaced, 0 original, -100 skip).

        Packed input (``cu_seqlens``) takes ``labels`` ``[T]`` and gives logits ``[T]``.
        """
        base = self.atacformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.discriminator(base.last_hidden_state)
        loss = None if labels is None else _rtd_loss(logits, labels)
        out = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=base.hidden_states)
        return out if self._return_dict(return_dict) else out.to_tuple()


@dataclass
class AtacformerCellClusteringOutput(ModelOutput):
    """Triplet loss and the mean-pooled embeddings ``[B, H]`` of the three cells."""

    loss: torch.Tensor | None = None
    anchor_embeddings: torch.Tensor | None = None
    positive_embeddings: torch.Tensor | None = None
    negative_embeddings: torch.Tensor | None = None


class AtacformerForCellClustering(AtacformerPreTrainedModel):
    """Contrastive fine-tuning: triplet margin loss (margin 1, p 2) over mean-pooled cells.

    ``forward`` takes the reference implementation's (geniml's) keyword names,
    ``input_ids_anchor``, ``attention_mask_anchor`` and likewise for ``positive`` and
    ``negative``, which :class:`~atacformer.training.DataCollatorForTriplets` writes. The
    first release's names (``anchor_input_ids``, ``anchor_attention_mask``, ...) still work.
    """

    main_input_name = "input_ids_anchor"

    def __init__(self, config: AtacformerConfig) -> None:
        super().__init__(config)
        self.atacformer = AtacformerModel(config)
        self.post_init()

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Mean-pooled cell embeddings: ``[B, L]`` -> ``[B, H]``."""
        out = self.atacformer(input_ids, attention_mask=attention_mask, return_dict=True)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(
        self,
        input_ids_anchor: torch.Tensor | None = None,
        attention_mask_anchor: torch.Tensor | None = None,
        input_ids_positive: torch.Tensor | None = None,
        attention_mask_positive: torch.Tensor | None = None,
        input_ids_negative: torch.Tensor | None = None,
        attention_mask_negative: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> AtacformerCellClusteringOutput | tuple[torch.Tensor, ...]:
        """Embeds the given cells; the loss needs all three of anchor, positive and negative.

        ``return_dict=False`` gives ``(loss, anchor, positive, negative)`` as the reference
        does (``None`` entries left out, as in every Hugging Face tuple).
        """
        given = {
            "input_ids_anchor": input_ids_anchor,
            "attention_mask_anchor": attention_mask_anchor,
            "input_ids_positive": input_ids_positive,
            "attention_mask_positive": attention_mask_positive,
            "input_ids_negative": input_ids_negative,
            "attention_mask_negative": attention_mask_negative,
        }
        for old, name in _FIRST_RELEASE_NAMES.items():
            if old in kwargs:
                if given[name] is not None:
                    raise TypeError(f"got both {name} and its older name {old}")
                given[name] = kwargs.pop(old)
        # Other keys (e.g. the Trainer's num_items_in_batch) are ignored, but a misspelt cell
        # input would silently drop a cell or its padding mask.
        typo = next((k for k in kwargs if "input_id" in k or "attention_mask" in k), None)
        if typo is not None:
            raise TypeError(f"unexpected cell input {typo!r}; the inputs are {', '.join(given)}")
        if given["input_ids_anchor"] is None:
            raise ValueError("input_ids_anchor is required")
        cells = {}
        for role in ("anchor", "positive", "negative"):
            ids = given[f"input_ids_{role}"]
            if ids is not None:
                cells[role] = self.embed(ids, given[f"attention_mask_{role}"])
        anchor, positive, negative = (cells.get(r) for r in ("anchor", "positive", "negative"))
        loss = None
        if positive is not None and negative is not None:
            loss = F.triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2)
        out = AtacformerCellClusteringOutput(
            loss=loss,
            anchor_embeddings=anchor,
            positive_embeddings=positive,
            negative_embeddings=negative,
        )
        return out if self._return_dict(return_dict) else out.to_tuple()


_FIRST_RELEASE_NAMES = {
    f"{role}_{part}": f"{part}_{role}"
    for role in ("anchor", "positive", "negative")
    for part in ("input_ids", "attention_mask")
}
"""The first release's triplet keyword names, mapped to the reference's."""


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
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> AtacformerBatchCorrectionOutput | tuple[torch.Tensor, ...]:
        """RTD ``labels`` ``[B, L]`` and ``batch_labels`` ``[B]`` (ints below num_batches).

        Packed input (``cu_seqlens``) takes ``labels`` ``[T]`` and gives logits ``[T]``.
        """
        hidden = self.atacformer(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
            return_dict=True,
        ).last_hidden_state
        logits = self.discriminator(hidden)
        cells = mean_pool(hidden, attention_mask, cu_seqlens)
        batch_logits = self.batch_prediction_head(gradient_reversal(cells, self.config.grl_alpha))
        rtd = None if labels is None else _rtd_loss(logits, labels)
        adv = None
        if batch_labels is not None:
            adv = F.cross_entropy(batch_logits.float(), batch_labels.long().to(cells.device))
        loss = rtd
        if adv is not None:
            weighted = self.config.lambda_adv * adv
            loss = weighted if loss is None else loss + weighted
        out = AtacformerBatchCorrectionOutput(
            loss=loss,
            rtd_loss=rtd,
            batch_loss=adv,
            logits=logits,
            batch_logits=batch_logits,
            cell_embeddings=cells,
        )
        return out if self._return_dict(return_dict) else out.to_tuple()


# --------------------------------------------------------------------------- auto classes

AutoModel.register(AtacformerConfig, AtacformerModel, exist_ok=True)
AutoModelForMaskedLM.register(AtacformerConfig, AtacformerForMaskedLM, exist_ok=True)
AutoModelForPreTraining.register(
    AtacformerConfig, AtacformerForReplacedTokenDetection, exist_ok=True
)
