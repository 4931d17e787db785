"""``atacformer info``: the tokenizer and model summary of ``demo``, a folder or a Hub repo."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
from pathlib import Path
from typing import Any

from .. import _core
from .._config_checks import check_shape
from ..hub import read_config, resolve_pretrained
from ..tokenizers import Tokenizer
from ._common import add_hub_options, hub_options

EXAMPLES = """\
examples:
  atacformer info demo
  atacformer info databio/atacformer-base-hg38"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="summarise a model or tokenizer",
        description="Print a tokenizer and model summary: universe size, vocabulary, special\n"
        "tokens, hidden size, layers, heads and parameter count. NAME_OR_PATH is 'demo', a\n"
        "local folder or a Hub repo id.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME_OR_PATH")
    add_hub_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = resolve_pretrained(args.name, weights=False, **hub_options(args))
    lines = [("source", str(folder))]
    tokenizer = None
    try:
        tokenizer = Tokenizer.from_pretrained(folder)
    except _core.MissingFileError:
        lines.append(("tokenizer", "none (no tokenizer.toml or universe.bed.gz)"))
    if tokenizer is not None:
        universe = tokenizer.universe
        chroms = len(set(universe.chroms.tolist())) if len(universe) else 0
        n_special = len(tokenizer.all_special_ids)
        lines += [
            ("universe", f"{len(universe):,} regions on {chroms} chromosomes"),
            (
                "vocabulary",
                f"{tokenizer.vocab_size:,} ids (regions, then {n_special} special tokens)",
            ),
            ("tokenizer type", tokenizer.tokenizer_type),
            (
                "special tokens",
                " ".join(
                    f"{t}={i}"
                    for t, i in zip(
                        tokenizer.all_special_tokens, tokenizer.all_special_ids, strict=True
                    )
                ),
            ),
        ]
    config_path = folder / "config.json"
    if tokenizer is None and not config_path.is_file():
        raise _core.MissingFileError(
            errno.ENOENT,
            "holds neither a tokenizer (tokenizer.toml, universe.bed.gz, universe.bed) "
            "nor a model (config.json)",
            str(folder),
        )
    if not config_path.is_file():
        lines.append(("model", "none (no config.json)"))
    else:
        config = read_config(config_path)
        check_shape(config, str(config_path), required=True)
        lines += model_lines(config, folder, tokenizer)
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


def model_lines(
    config: dict[str, Any], folder: Path, tokenizer: Tokenizer | None
) -> list[tuple[str, str]]:
    arch = ", ".join(config.get("architectures") or []) or "unknown"
    positions = (
        f"learned, up to {config.get('max_position_embeddings')} tokens"
        if config.get("use_pos_embeddings", True)
        else "none (tokens are a set; no length limit from positions)"
    )
    lines = [
        ("model", f"{arch} (model_type {config.get('model_type')})"),
        ("hidden size", str(config.get("hidden_size"))),
        ("layers", str(config.get("num_hidden_layers"))),
        ("attention heads", str(config.get("num_attention_heads"))),
        ("intermediate size", str(config.get("intermediate_size"))),
        ("positions", positions),
    ]
    vocab = config.get("vocab_size")
    if tokenizer is not None:
        match = "matches" if vocab == tokenizer.vocab_size else "DOES NOT match"
        lines.append(("model vocabulary", f"{vocab:,} ids ({match} the tokenizer)"))
    else:
        lines.append(("model vocabulary", f"{vocab:,} ids"))
    weights = folder / "model.safetensors"
    if weights.exists() and not weights.is_file():
        raise _core.AtacformerIOError(f"{weights}: not a file, so not model weights")
    if weights.is_file():
        n, size = safetensors_parameters(weights)
        lines.append(("parameters", f"{n:,} ({size / 1e6:.1f} MB in model.safetensors)"))
    else:
        n = encoder_parameters(config)
        lines.append(("parameters", f"{n:,} in the encoder (from config.json; weights not here)"))
    return lines


def encoder_parameters(config: dict[str, Any]) -> int:
    """Parameters of ``AtacformerModel`` for a ``config.json``: token and position
    embeddings, then per layer the attention, the two feed-forward linears and two norms."""
    v, h = config["vocab_size"], config["hidden_size"]
    i, p = config["intermediate_size"], config["max_position_embeddings"]
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (i * h + i) + (h * i + h) + 4 * h
    return v * h + p * h + config["num_hidden_layers"] * per_layer


def safetensors_parameters(path: Path) -> tuple[int, int]:
    """Number of parameters stored in a safetensors file (read from its header) and its size."""
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            size = os.fstat(f.fileno()).st_size
            if header_len <= 0 or header_len > min(100_000_000, size - 8):
                raise _core.AtacformerIOError(f"{path}: not a safetensors file (header length)")
            header = json.loads(f.read(header_len))
    except OSError as e:
        if isinstance(e, _core.AtacformerError):
            raise
        raise _core.AtacformerIOError(e.errno, f"cannot read: {e.strerror}", str(path)) from e
    except (ValueError, RecursionError) as e:
        raise _core.AtacformerIOError(f"{path}: not a safetensors file (header not JSON)") from e
    total = 0
    try:
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            shape = entry["shape"]
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
                raise ValueError(f"tensor {key} has shape {shape!r}")
            total += math.prod(shape)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise _core.AtacformerIOError(f"{path}: not a safetensors file (bad header: {e})") from e
    return total, size
