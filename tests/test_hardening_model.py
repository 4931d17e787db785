"""Hardening of the model half (issue 12): configs with impossible shapes, checkpoints with
missing or damaged weights, devices that hold no data, and pooling that hid problems."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _model_helpers import tiny_config

import atacformer as af
from atacformer import AtacformerError, ConfigError, InvalidInputError, ParseError, TokenizedCells
from atacformer.configuration_atacformer import AtacformerConfig
from atacformer.hub import DEMO_MODEL_DIR, load_model
from atacformer.modeling_atacformer import (
    AtacformerForMaskedLM,
    AtacformerForReplacedTokenDetection,
    AtacformerModel,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
CELLS = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]


def demo_copy(tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    shutil.copytree(DEMO_MODEL_DIR, folder)
    return folder


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter (with this tree's package first on the path)."""
    env_path = str(ROOT / "python")
    prelude = f"import sys; sys.path.insert(0, {env_path!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------------- §1 config shapes


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"num_hidden_layers": 10**6}, ["num_hidden_layers", "1,024", "1,000,000"]),
        ({"num_hidden_layers": 2**31}, ["num_hidden_layers"]),
        ({"num_hidden_layers": 0}, ["num_hidden_layers"]),
        ({"num_attention_heads": 0}, ["num_attention_heads"]),
        ({"num_attention_heads": -4}, ["num_attention_heads"]),
        ({"hidden_size": -32}, ["hidden_size"]),
        ({"hidden_size": 0}, ["hidden_size"]),
        ({"hidden_size": 30}, ["multiple of num_attention_heads"]),
        ({"intermediate_size": -1}, ["intermediate_size"]),
        ({"intermediate_size": 10**9}, ["intermediate_size"]),
        ({"vocab_size": 0}, ["vocab_size"]),
        ({"vocab_size": 2**31}, ["vocab_size"]),
        ({"max_position_embeddings": -5}, ["max_position_embeddings"]),
        ({"max_position_embeddings": 2**40}, ["max_position_embeddings"]),
        ({"num_hidden_layers": True}, ["num_hidden_layers", "integer", "bool"]),
        ({"hidden_size": 32.0}, ["hidden_size", "integer"]),
        ({"num_attention_heads": "4"}, ["num_attention_heads", "integer"]),
        ({"num_batches": 0}, ["num_batches"]),
        ({"pad_token_id": 10**6}, ["pad_token_id", "below vocab_size"]),
        ({"pad_token_id": -1}, ["pad_token_id"]),
        ({"norm_eps": float("nan")}, ["norm_eps"]),
        ({"embedding_dropout": 1.5}, ["embedding_dropout"]),
    ],
)
def test_a_config_with_an_impossible_shape_fails_on_construction(overrides, words):
    with pytest.raises(ConfigError) as info:
        tiny_config(**overrides)
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_numpy_integers_are_sizes():
    config = tiny_config(hidden_size=np.int64(32), num_hidden_layers=np.int32(2))
    assert config.hidden_size == 32 and config.num_hidden_layers == 2


def test_config_error_is_exported_and_pickles():
    import pickle

    assert af.ConfigError is ConfigError
    error = pickle.loads(pickle.dumps(ConfigError("x: bad", path="x")))
    assert str(error) == "x: bad" and error.path == "x"


def test_a_size_changed_after_construction_fails_before_the_model_allocates():
    # In a subprocess: before the check, building 2**31 layers never returned.
    result = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from _model_helpers import tiny_config
        from atacformer import ConfigError
        from atacformer.modeling_atacformer import AtacformerModel
        config = tiny_config()
        config.num_hidden_layers = 2**31
        try:
            AtacformerModel(config)
        except ConfigError as e:
            print("ConfigError:", e)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ConfigError:" in result.stdout and "num_hidden_layers" in result.stdout


@pytest.mark.parametrize("layers", [10**6, 2**31])
def test_a_config_json_with_absurd_layers_fails_at_once_naming_the_file(tmp_path, layers):
    folder = demo_copy(tmp_path)
    (folder / "config.json").write_text(json.dumps({**DEMO_CONFIG, "num_hidden_layers": layers}))
    # Before the check, 10**6 layers ran past 45 s and 2**31 never returned.
    result = run_python(
        f"""
        from atacformer import ConfigError
        from atacformer.modeling_atacformer import AtacformerModel
        try:
            AtacformerModel.from_pretrained({str(folder)!r})
        except ConfigError as e:
            print("ConfigError:", e)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ConfigError:" in result.stdout
    assert str(folder / "config.json") in result.stdout and "num_hidden_layers" in result.stdout


@pytest.mark.parametrize(
    "load",
    [
        lambda folder: AtacformerConfig.from_pretrained(folder),
        lambda folder: AtacformerConfig.from_pretrained(folder / "config.json"),
        lambda folder: AtacformerConfig.from_json_file(folder / "config.json"),
        lambda folder: AtacformerModel.from_pretrained(folder),
        lambda folder: load_model(folder),
    ],
    ids=["from_pretrained", "config_file", "from_json_file", "model", "load_model"],
)
def test_every_way_of_loading_a_config_names_the_file(tmp_path, load):
    folder = demo_copy(tmp_path)
    (folder / "config.json").write_text(json.dumps({**DEMO_CONFIG, "num_attention_heads": 0}))
    with pytest.raises(ConfigError) as info:
        load(folder)
    assert str(folder / "config.json") in str(info.value)
    assert info.value.path == str(folder / "config.json")


def test_a_from_pretrained_keyword_is_checked_too():
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        AtacformerConfig.from_pretrained("demo", num_hidden_layers=10**6)


# --------------------------------------------------------------------- §2 missing weights


def write_weights(folder: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def demo_tensors() -> dict:
    from safetensors.torch import load_file

    return load_file(str(DEMO_MODEL_DIR / "model.safetensors"))


def broken_weights(tmp_path: Path, how: str) -> Path:
    folder = demo_copy(tmp_path, how)
    tensors = demo_tensors()
    if how == "no_tensors":
        write_weights(folder, {})
    elif how == "renamed":
        write_weights(folder, {k.replace("atacformer.", "encoder_"): v for k, v in tensors.items()})
    elif how == "no_embeddings":
        write_weights(folder, {k: v for k, v in tensors.items() if "token_embeddings" not in k})
    return folder


@pytest.mark.parametrize("how", ["no_tensors", "renamed", "no_embeddings"])
def test_load_model_refuses_missing_encoder_weights_naming_them(tmp_path, how):
    folder = broken_weights(tmp_path, how)
    with pytest.raises(InvalidInputError) as info:
        load_model(folder)
    message = str(info.value)
    assert "embeddings.token_embeddings.weight" in message
    assert str(folder / "model.safetensors") in message


@pytest.mark.parametrize("how", ["no_tensors", "renamed"])
def test_embedding_refuses_a_model_loaded_with_missing_weights(tmp_path, how):
    folder = broken_weights(tmp_path, how)
    model = AtacformerModel.from_pretrained(folder)
    assert "embeddings.token_embeddings.weight" in model.missing_encoder_weights()
    with pytest.raises(InvalidInputError, match="token_embeddings"):
        model.encode_tokenized_cells(CELLS, progress=False)
    with pytest.raises(InvalidInputError, match="token_embeddings"):
        af.tl.embed(TokenizedCells.from_lists(CELLS), model, progress=False)


def test_tl_embed_by_name_refuses_missing_weights(tmp_path):
    folder = broken_weights(tmp_path, "no_tensors")
    with pytest.raises(InvalidInputError, match="encoder weights"):
        af.tl.embed(TokenizedCells.from_lists(CELLS), folder, progress=False)


@pytest.mark.parametrize("cls", [AtacformerForMaskedLM, AtacformerForReplacedTokenDetection])
def test_missing_head_weights_are_allowed(cls):
    # The demo checkpoint is a cell-clustering model: it has no discriminator head.
    model = cls.from_pretrained("demo")
    assert model.missing_encoder_weights() == []
    embeddings = model.encode_tokenized_cells(CELLS, progress=False)
    reference = AtacformerModel.from_pretrained("demo").encode_tokenized_cells(
        CELLS, progress=False
    )
    np.testing.assert_allclose(embeddings, reference, rtol=1e-5, atol=1e-6)


def test_weights_filled_in_after_loading_are_no_longer_missing(tmp_path):
    folder = broken_weights(tmp_path, "no_embeddings")
    model = AtacformerModel.from_pretrained(folder)
    assert model.missing_encoder_weights() == ["embeddings.token_embeddings.weight"]
    state = {k.removeprefix("atacformer."): v for k, v in demo_tensors().items()}
    model.load_state_dict(state)
    assert model.missing_encoder_weights() == []
    assert model.encode_tokenized_cells(CELLS, progress=False).shape == (3, 64)


def test_output_loading_info_still_works():
    model, info = AtacformerModel.from_pretrained("demo", output_loading_info=True)
    assert isinstance(model, AtacformerModel) and set(info["missing_keys"]) == set()


def test_a_model_built_from_a_config_is_the_callers_choice():
    model = AtacformerModel(tiny_config()).eval()
    assert model.missing_encoder_weights() == []
    assert model.encode_tokenized_cells(CELLS, progress=False).shape == (3, 32)


# ---------------------------------------------------------------------- §4 model loading


def _safetensors_parts() -> tuple[bytes, int, dict, bytes]:
    raw = (DEMO_MODEL_DIR / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return raw, n, json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _pack(header: object, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _edited(edit) -> bytes:
    _, _, header, data = _safetensors_parts()
    key = "atacformer.embeddings.token_embeddings.weight"
    edit(header[key], len(data))
    return _pack(header, data)


def _set(field, value):
    def edit(entry, _):
        entry[field] = value(entry) if callable(value) else value

    return edit


CORRUPT_WEIGHTS = {
    "empty": lambda: b"",
    "shorter_than_its_length_field": lambda: _safetensors_parts()[0][:4],
    "header_cut": lambda: _safetensors_parts()[0][: 8 + _safetensors_parts()[1] // 2],
    "length_past_the_end": lambda: struct.pack("<Q", 10**8) + _safetensors_parts()[0][8:],
    "length_huge": lambda: struct.pack("<Q", 2**63) + _safetensors_parts()[0][8:],
    "header_not_json": lambda: struct.pack("<Q", 64) + b"x" * 64 + b"\0" * 64,
    "header_not_utf8": lambda: struct.pack("<Q", 64) + b"\xff" * 64 + b"\0" * 64,
    "header_a_list": lambda: _pack([1, 2, 3], b""),
    "unknown_dtype": lambda: _edited(_set("dtype", "Q8")),
    "integer_dtype": lambda: _edited(_set("dtype", "I32")),
    "shape_mismatch": lambda: _edited(_set("shape", lambda e: [e["shape"][0] // 7, 64 * 7])),
    "offsets_do_not_fit_shape": lambda: _edited(
        _set("data_offsets", lambda e: [e["data_offsets"][0], e["data_offsets"][1] + 4])
    ),
    "offsets_past_the_end": lambda: _edited(
        lambda e, n: e.update(data_offsets=[n, n + e["data_offsets"][1] - e["data_offsets"][0]])
    ),
    "data_cut": lambda: _safetensors_parts()[0][:-1000],
    "negative_shape": lambda: _edited(_set("shape", [-1, 64])),
    "no_offsets": lambda: _edited(lambda e, _: e.pop("data_offsets")),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_WEIGHTS))
def test_damaged_safetensors_is_one_error_naming_the_file(tmp_path, kind):
    folder = demo_copy(tmp_path, kind)
    (folder / "model.safetensors").write_bytes(CORRUPT_WEIGHTS[kind]())
    with pytest.raises(AtacformerError) as info:
        load_model(folder)
    assert isinstance(info.value, ParseError), repr(info.value)
    assert str(folder / "model.safetensors") in str(info.value)


CORRUPT_CONFIGS = {
    "a_list": "[1, 2, 3]",
    "null": "null",
    "a_string": '"atacformer"',
    "deeply_nested": "[" * 100_000 + "]" * 100_000,
    "nested_object": '{"model_type": "atacformer", "x": ' + "[" * 50_000 + "]" * 50_000 + "}",
    "not_utf8": b"\xff\xfe{}",
    "empty": "",
    "bad_sizes": json.dumps({**DEMO_CONFIG, "hidden_size": -64}),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_CONFIGS))
def test_a_damaged_config_json_is_one_error_naming_the_file(tmp_path, kind):
    folder = demo_copy(tmp_path, kind)
    text = CORRUPT_CONFIGS[kind]
    path = folder / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for load in (load_model, AtacformerModel.from_pretrained, AtacformerConfig.from_pretrained):
        with pytest.raises(AtacformerError) as info:
            load(folder)
        assert str(path) in str(info.value), (load, info.value)


@pytest.mark.parametrize("device", ["meta", "xla", "cuda:99", "nonsense"])
def test_a_device_without_data_is_refused_naming_the_argument(device):
    model = AtacformerModel(tiny_config()).eval()
    with pytest.raises(InvalidInputError, match="device"):
        model.encode_tokenized_cells(CELLS, progress=False, device=device)
    with pytest.raises(InvalidInputError, match="device"):
        af.tl.embed(TokenizedCells.from_lists(CELLS), model, device=device, progress=False)
    assert next(model.parameters()).device.type == "cpu"  # never moved


@pytest.mark.parametrize("bad", [-1, -(2**31), 57, 10**6])
def test_token_ids_outside_the_vocabulary_are_refused(tmp_path, bad):
    model = AtacformerModel(tiny_config()).eval()  # 57 ids
    cells = TokenizedCells(np.array([1, bad, 2], dtype=np.int64), np.array([0, 3]))
    with pytest.raises(InvalidInputError, match=f"token id {bad} is outside"):
        af.tl.embed(cells, model, progress=False)
    path = tmp_path / "cells.atok"
    cells.save(path)
    with pytest.raises(InvalidInputError, match=f"token id {bad} is outside"):
        af.tl.embed(path, model, progress=False)


# ---------------------------------------------------------------------------- §4 pooling


def test_empty_cells_get_zeros_with_a_warning():
    model = AtacformerModel.from_pretrained("demo")
    with pytest.warns(UserWarning, match="2 of 4 cells have no tokens"):
        out = model.encode_tokenized_cells([[1, 2], [], [3], []], progress=False)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_array_equal(out[3], 0)
    assert np.abs(out[0]).sum() > 0


def test_no_warning_when_every_cell_has_tokens(recwarn):
    AtacformerModel.from_pretrained("demo").encode_tokenized_cells(CELLS, progress=False)
    assert not [w for w in recwarn if "no tokens" in str(w.message)]


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_nan_weights_are_refused_not_embedded(layout):
    model = AtacformerModel.from_pretrained("demo")
    with torch.no_grad():
        model.encoder.layers[1].linear2.weight[0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="non-finite") as info:
        model.encode_tokenized_cells(CELLS, progress=False, layout=layout)
    assert "encoder.layers.1.linear2.weight" in str(info.value)
    with pytest.raises(InvalidInputError, match="non-finite"):
        af.tl.embed(TokenizedCells.from_lists(CELLS), model, progress=False)


def test_a_dtype_change_keeps_the_refusal_and_training_lifts_it(tmp_path):
    model = AtacformerModel.from_pretrained(broken_weights(tmp_path, "no_embeddings"))
    model.to(torch.float64).float()
    assert model.missing_encoder_weights() == ["embeddings.token_embeddings.weight"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(torch.tensor([1, 2, 3]), cu_seqlens=torch.tensor([0, 3])).last_hidden_state
    out.sum().backward()
    optimizer.step()  # the weights are trained now: the caller's choice
    assert model.missing_encoder_weights() == []


@pytest.mark.parametrize("cls", [AtacformerForMaskedLM, AtacformerForReplacedTokenDetection])
def test_a_base_checkpoint_fills_every_heads_encoder(tmp_path, cls):
    AtacformerModel.from_pretrained("demo").save_pretrained(tmp_path / "base")
    model = cls.from_pretrained(tmp_path / "base")
    assert model.missing_encoder_weights() == []
    assert model.encode_tokenized_cells(CELLS, progress=False).shape == (3, 64)
