"""Tests of the PyTorch model: config, parameter names, loading, equal outputs, cell embeddings.

Expected values come from independent oracles: ``torch.nn.TransformerEncoder`` run on one cell at
a time, losses written out by hand, and key lists typed out from the checkpoint format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _model_helpers import oracle_pooled, oracle_tokens, stock_encoder, tiny_config
from safetensors.numpy import save_file
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForPreTraining

from atacformer.configuration_atacformer import AtacformerConfig
from atacformer.modeling_atacformer import (
    AtacformerForCellClustering,
    AtacformerForMaskedLM,
    AtacformerForReplacedTokenDetection,
    AtacformerForUnsupervisedBatchCorrection,
    AtacformerModel,
    gradient_reversal,
    pad_output,
    unpad_input,
)
from atacformer.tokenized_cells import TokenizedCells

ALL_CLASSES = [
    AtacformerModel,
    AtacformerForMaskedLM,
    AtacformerForReplacedTokenDetection,
    AtacformerForCellClustering,
    AtacformerForUnsupervisedBatchCorrection,
]
N_REGIONS = 50  # tiny vocabulary: 50 regions + 7 specials, pad = 51


# Tiny tensors: a second torch thread only adds contention on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(cls=AtacformerModel, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    overrides.setdefault("num_batches", 3)
    return cls(tiny_config(N_REGIONS, **overrides)).eval()


def random_cells(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, N_REGIONS, n) for n in lengths]


# ------------------------------------------------------------------------------ configuration


def test_config_defaults_match_the_published_model():
    c = AtacformerConfig()
    assert c.model_type == "atacformer"
    assert (c.use_pos_embeddings, c.vocab_size, c.max_position_embeddings) == (True, 890711, 8192)
    assert (c.hidden_size, c.intermediate_size) == (384, 1536)
    assert (c.num_hidden_layers, c.num_attention_heads) == (6, 8)
    assert (c.pad_token_id, c.eos_token_id, c.bos_token_id) == (890705, 890708, 890709)
    assert (c.cls_token_id, c.sep_token_id) == (890707, 890710)
    assert (c.sparse_prediction, c.norm_eps, c.embedding_dropout) == (True, 1e-5, 0.0)
    assert (c.initializer_range, c.initializer_cutoff_factor) == (0.02, 2.0)
    assert c.tie_word_embeddings is True
    assert (c.num_batches, c.lambda_adv, c.grl_alpha, c.bc_unfreeze_last_n_layers) == (
        None,
        1.0,
        1.0,
        2,
    )


def test_config_json_with_architectures_dtype_and_version_loads(tmp_path: Path):
    # Shape of the published databio/atacformer-base-hg38 config, typed out by hand.
    raw = {
        "architectures": ["AtacformerForReplacedTokenDetection"],
        "bc_unfreeze_last_n_layers": 2,
        "bos_token_id": 890709,
        "cls_token_id": 890707,
        "dtype": "float32",
        "embedding_dropout": 0.0,
        "eos_token_id": 890708,
        "hidden_size": 192,
        "initializer_cutoff_factor": 2.0,
        "initializer_range": 0.02,
        "intermediate_size": 768,
        "max_position_embeddings": 8192,
        "model_type": "atacformer",
        "norm_eps": 1e-05,
        "num_attention_heads": 8,
        "num_hidden_layers": 6,
        "pad_token_id": 890705,
        "sep_token_id": 890710,
        "sparse_prediction": True,
        "tie_word_embeddings": True,
        "transformers_version": "4.51.3",
        "use_pos_embeddings": False,
        "vocab_size": 890711,
    }
    (tmp_path / "config.json").write_text(json.dumps(raw))
    for loader in (AtacformerConfig.from_pretrained, AutoConfig.from_pretrained):
        c = loader(tmp_path)
        assert isinstance(c, AtacformerConfig)
        assert (c.hidden_size, c.intermediate_size, c.use_pos_embeddings) == (192, 768, False)
        assert c.architectures == ["AtacformerForReplacedTokenDetection"]
        assert c.cls_token_id == 890707 and c.sep_token_id == 890710


def test_config_rejects_heads_that_do_not_divide_hidden():
    with pytest.raises(ValueError, match="multiple"):
        AtacformerConfig(hidden_size=30, num_attention_heads=4)


# ------------------------------------------------------------------------------ parameter names


def base_keys(n_layers: int) -> list[str]:
    """The checkpoint's base-model keys, written out from the published format."""
    keys = [
        "atacformer.embeddings.token_embeddings.weight",
        "atacformer.embeddings.position_embeddings.weight",
    ]
    for i in range(n_layers):
        p = f"atacformer.encoder.layers.{i}."
        keys += [
            p + "self_attn.in_proj_weight",
            p + "self_attn.in_proj_bias",
            p + "self_attn.out_proj.weight",
            p + "self_attn.out_proj.bias",
            p + "linear1.weight",
            p + "linear1.bias",
            p + "linear2.weight",
            p + "linear2.bias",
            p + "norm1.weight",
            p + "norm1.bias",
            p + "norm2.weight",
            p + "norm2.bias",
        ]
    return keys


DISCRIMINATOR_KEYS = [
    "discriminator.dense.weight",
    "discriminator.dense.bias",
    "discriminator.norm.weight",
    "discriminator.norm.bias",
    "discriminator.classifier.weight",
    "discriminator.classifier.bias",
]


def shapes(key: str, v: int, h: int, inner: int, positions: int, n_batches: int) -> tuple:
    """Hand-written parameter shapes (nn.TransformerEncoderLayer layout)."""
    table = {
        "token_embeddings.weight": (v, h),
        "position_embeddings.weight": (positions, h),
        "in_proj_weight": (3 * h, h),
        "in_proj_bias": (3 * h,),
        "out_proj.weight": (h, h),
        "out_proj.bias": (h,),
        "linear1.weight": (inner, h),
        "linear1.bias": (inner,),
        "linear2.weight": (h, inner),
        "linear2.bias": (h,),
        "dense.weight": (h, h),
        "classifier.weight": (1, h),
        "classifier.bias": (1,),
        "batch_prediction_head.weight": (n_batches, h),
        "batch_prediction_head.bias": (n_batches,),
        "lm_head.weight": (v, h),
    }
    for suffix, shape in table.items():
        if key.endswith(suffix):
            return shape
    return (h,)  # norms and the remaining biases


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (AtacformerModel, []),
        (AtacformerForMaskedLM, ["lm_head.weight"]),
        (AtacformerForReplacedTokenDetection, DISCRIMINATOR_KEYS),
        (AtacformerForCellClustering, []),
        (
            AtacformerForUnsupervisedBatchCorrection,
            DISCRIMINATOR_KEYS + ["batch_prediction_head.weight", "batch_prediction_head.bias"],
        ),
    ],
)
def test_parameter_names_and_shapes(cls, extra):
    model = make(cls, num_hidden_layers=3)
    expected = base_keys(3) + extra
    if cls is AtacformerModel:
        expected = [k.removeprefix("atacformer.") for k in expected]
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in state.items():
        assert tuple(value.shape) == shapes(key, 57, 32, 64, 64, 3), key


def write_published_style_checkpoint(path: Path, n_layers: int = 2, seed: int = 0) -> dict:
    """An RTD checkpoint made without our classes: hand-named random tensors + config.json."""
    rng = np.random.default_rng(seed)
    tensors = {
        k: rng.normal(0, 0.1, shapes(k, 57, 32, 64, 64, 3)).astype(np.float32)
        for k in base_keys(n_layers) + DISCRIMINATOR_KEYS
    }
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    config = tiny_config(N_REGIONS, num_hidden_layers=n_layers).to_dict()
    config.update(
        architectures=["AtacformerForReplacedTokenDetection"],
        dtype="float32",
        transformers_version="4.51.3",
    )
    (path / "config.json").write_text(json.dumps(config))
    return tensors


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_published_style_checkpoint_loads_into_every_class(tmp_path: Path, cls):
    tensors = write_published_style_checkpoint(tmp_path)
    kwargs = {"num_batches": 3} if cls is AtacformerForUnsupervisedBatchCorrection else {}
    model, info = cls.from_pretrained(tmp_path, output_loading_info=True, **kwargs)
    missing, unexpected = set(info["missing_keys"]), set(info["unexpected_keys"])
    has_disc = cls in (
        AtacformerForReplacedTokenDetection,
        AtacformerForUnsupervisedBatchCorrection,
    )
    head = {"batch_prediction_head.weight", "batch_prediction_head.bias"}
    assert missing == (head if cls is AtacformerForUnsupervisedBatchCorrection else set())
    assert unexpected == (set() if has_disc else set(DISCRIMINATOR_KEYS))
    state = model.state_dict()
    prefix = "" if cls is AtacformerModel else "atacformer."
    for key, value in tensors.items():
        if key.startswith("atacformer."):
            key = prefix + key.removeprefix("atacformer.")
        elif not has_disc:
            continue
        assert np.array_equal(state[key].numpy(), value), key
    if cls is AtacformerForMaskedLM:  # tied: the head is the loaded embedding matrix
        assert np.array_equal(
            state["lm_head.weight"].numpy(),
            tensors["atacformer.embeddings.token_embeddings.weight"],
        )


def test_loads_from_a_hub_cache_offline(tmp_path: Path):
    """``from_pretrained("org/name")`` resolves from a Hub cache with HF_HUB_OFFLINE=1."""
    snapshot = tmp_path / "hub" / "models--databio--atacformer-tiny" / "snapshots" / ("a" * 40)
    tensors = write_published_style_checkpoint(snapshot)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    np.save(tmp_path / "expected.npy", tensors["atacformer.encoder.layers.1.linear2.weight"])
    script = textwrap.dedent(
        f"""
        import numpy as np
        from transformers import AutoModel
        import atacformer.modeling_atacformer as m
        model = AutoModel.from_pretrained("databio/atacformer-tiny")
        assert type(model) is m.AtacformerModel, type(model)
        got = model.encoder.layers[1].linear2.weight.detach().numpy()
        assert np.array_equal(got, np.load({str(tmp_path / "expected.npy")!r}))
        print("loaded")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), OMP_NUM_THREADS="1")
    env.pop("HF_HUB_CACHE", None)
    package_root = Path(sys.modules["atacformer"].__file__).parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded" in done.stdout


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_save_and_load_round_trip_is_exact_and_uses_safetensors(tmp_path: Path, cls):
    model = make(cls, seed=3)
    with torch.no_grad():  # make every parameter distinctive, norms included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "pytorch_model.bin").exists()
    loaded, info = cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) <= set(a)


HEAD_KEYS = {  # saved head keys per class (the tied lm_head is not written)
    AtacformerModel: set(),
    AtacformerForMaskedLM: set(),
    AtacformerForReplacedTokenDetection: set(DISCRIMINATOR_KEYS),
    AtacformerForCellClustering: set(),
    AtacformerForUnsupervisedBatchCorrection: set(DISCRIMINATOR_KEYS)
    | {"batch_prediction_head.weight", "batch_prediction_head.bias"},
}


@pytest.mark.parametrize("source", ALL_CLASSES)
def test_every_task_checkpoint_loads_into_every_class(tmp_path: Path, source):
    saved = make(source, seed=4)
    saved.save_pretrained(tmp_path)
    encoder_weight = saved.base_model.encoder.layers[1].linear1.weight
    for target in ALL_CLASSES:
        model, info = target.from_pretrained(tmp_path, output_loading_info=True, num_batches=3)
        assert set(info["missing_keys"]) == HEAD_KEYS[target] - HEAD_KEYS[source]
        assert set(info["unexpected_keys"]) == HEAD_KEYS[source] - HEAD_KEYS[target]
        assert torch.equal(model.base_model.encoder.layers[1].linear1.weight, encoder_weight)


def test_lm_head_is_tied_to_the_token_embeddings():
    model = make(AtacformerForMaskedLM)
    assert model.lm_head.weight is model.atacformer.embeddings.token_embeddings.weight
    assert model.lm_head.bias is None
    assert torch.all(model.atacformer.embeddings.token_embeddings.weight[51] == 0)  # padding_idx


def test_auto_classes_are_registered(tmp_path: Path):
    config = tiny_config(N_REGIONS)
    assert type(AutoModel.from_config(config)) is AtacformerModel
    assert type(AutoModelForMaskedLM.from_config(config)) is AtacformerForMaskedLM
    assert type(AutoModelForPreTraining.from_config(config)) is AtacformerForReplacedTokenDetection
    make(AtacformerForReplacedTokenDetection).save_pretrained(tmp_path)
    assert type(AutoModel.from_pretrained(tmp_path)) is AtacformerModel


# ------------------------------------------------------------------------------ equal outputs


def padded_batch(lengths, width, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.full((len(lengths), width), 51, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(0, N_REGIONS, n)
        mask[i, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@pytest.mark.parametrize("use_pos", [True, False])
def test_forward_equals_stock_transformer_encoder(use_pos):
    model = make(use_pos_embeddings=use_pos)
    ids, mask = padded_batch([9, 4, 13, 1], 13)
    stock = stock_encoder(model)
    with torch.no_grad():
        x = model.embeddings.token_embeddings(ids)
        if use_pos:
            x = x + model.embeddings.position_embeddings(torch.arange(13))[None]
        expected = stock(x, src_key_padding_mask=mask == 0)  # the nested-tensor fast path
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got_bool = model(input_ids=ids, attention_mask=mask.bool()).last_hidden_state
    real = mask.bool()
    assert got.shape == (4, 13, 32)
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)
    assert torch.equal(got[real], got_bool[real])


def test_training_mode_uses_dropout_and_backpropagates():
    model = make(AtacformerForReplacedTokenDetection).train()
    ids, mask = padded_batch([6, 3], 6)
    a = model(input_ids=ids, attention_mask=mask).logits
    b = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.equal(a, b)  # dropout p=0.1 is active in training
    labels = torch.where(mask.bool(), torch.randint(0, 2, mask.shape), torch.tensor(-100))
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def packed_batch(cells):
    """Flat ids ``[T]`` int64 and ``cu_seqlens`` ``[n + 1]`` written out from the cells."""
    ids = torch.from_numpy(np.concatenate(cells).astype(np.int64))
    cu = torch.tensor([0, *np.cumsum([len(c) for c in cells]).tolist()])
    return ids, cu


@pytest.mark.parametrize("use_pos", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_public_forward_equals_the_padded_forward_and_the_oracle(use_pos, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 20, 7).tolist() + [1]
    cells = random_cells(lengths, seed=seed)
    model = make(use_pos_embeddings=use_pos)
    ids, cu = packed_batch(cells)
    padded_ids, mask = padded_batch(lengths, max(lengths), seed=seed)
    for i, c in enumerate(cells):
        padded_ids[i, : len(c)] = torch.from_numpy(c)
    with torch.no_grad():
        packed = model(input_ids=ids, cu_seqlens=cu, max_seqlen=max(lengths)).last_hidden_state
        packed_int32 = model(input_ids=ids, cu_seqlens=cu.int()).last_hidden_state
        padded = model(input_ids=padded_ids, attention_mask=mask).last_hidden_state
    assert packed.shape == (sum(lengths), 32)
    torch.testing.assert_close(packed, padded[mask.bool()], atol=1e-5, rtol=0)
    assert torch.equal(packed, packed_int32)
    expected = np.concatenate(oracle_tokens(model, cells))
    np.testing.assert_allclose(packed.numpy(), expected, atol=1e-5, rtol=0)


def test_packed_forward_takes_explicit_positions():
    model = make()
    cells = random_cells([4, 6])
    ids, cu = packed_batch(cells)
    shifted = torch.tensor([3, 4, 5, 6, 0, 1, 2, 3, 4, 5])  # cell 0 as if it started at 3
    with torch.no_grad():
        got = model(input_ids=ids, cu_seqlens=cu, position_ids=shifted).last_hidden_state
        x = model.embeddings.token_embeddings(torch.from_numpy(cells[0]))
        x = x + model.embeddings.position_embeddings(torch.arange(3, 7))
        first = stock_encoder(model)(x[None])[0]
        default = model(input_ids=ids, cu_seqlens=cu).last_hidden_state
    torch.testing.assert_close(got[:4], first, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[4:], default[4:], atol=0, rtol=0)  # cell 1: same positions
    assert not torch.allclose(got[:4], default[:4], atol=1e-3)


def test_packed_forward_rejects_bad_boundaries():
    model = make()
    ids = torch.arange(6)
    for cu in ([0, 2, 5], [1, 3, 6], [0, 4, 2, 6]):
        with pytest.raises(ValueError, match="cu_seqlens"):
            model(input_ids=ids, cu_seqlens=torch.tensor(cu))
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=ids, attention_mask=torch.ones(6), cu_seqlens=torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="flat"):
        model(input_ids=ids.reshape(2, 3), cu_seqlens=torch.tensor([0, 3, 6]))
    with pytest.raises(ValueError, match="max_position_embeddings"):  # 65 > 64 positions
        model(input_ids=torch.zeros(66, dtype=torch.long), cu_seqlens=torch.tensor([0, 1, 66]))
    with pytest.raises(ValueError, match="max_seqlen is 2; the longest cell has 6"):
        model(input_ids=ids, cu_seqlens=torch.tensor([0, 6]), max_seqlen=2)
    with pytest.raises(ValueError, match="integers"):
        model(input_ids=ids, cu_seqlens=torch.tensor([0.0, 2.5, 6.0]))


def test_unpad_and_pad_output_round_trip():
    lengths = [3, 0, 5, 1]
    ids, mask = padded_batch(lengths, 5, seed=4)
    flat, indices, cu, max_seqlen = unpad_input(ids, mask)
    assert cu.tolist() == [0, 3, 3, 8, 9] and max_seqlen == 5
    assert flat.tolist() == ids[mask.bool()].tolist()
    assert indices.tolist() == [0, 1, 2, 10, 11, 12, 13, 14, 15]  # row * 5 + column
    model = make()
    with torch.no_grad():
        packed = model(input_ids=flat, cu_seqlens=cu, max_seqlen=max_seqlen).last_hidden_state
        padded = model(input_ids=ids, attention_mask=mask).last_hidden_state
    back = pad_output(packed, indices, 4, 5)
    assert back.shape == (4, 5, 32)
    torch.testing.assert_close(back[mask.bool()], padded[mask.bool()], atol=1e-5, rtol=0)
    assert torch.all(back[~mask.bool()] == 0)


def test_packed_and_padded_layouts_have_equal_gradients():
    cells = random_cells([5, 11, 2])
    lengths = [len(c) for c in cells]
    grads = []
    for layout in ("packed", "padded"):
        model = make(seed=1)
        if layout == "packed":
            ids, cu = packed_batch(cells)
            out = model(input_ids=ids, cu_seqlens=cu).last_hidden_state
        else:
            ids, mask = padded_batch(lengths, max(lengths))
            for i, c in enumerate(cells):
                ids[i, : len(c)] = torch.from_numpy(c)
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()]
        (out**2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g1, g2 in zip(*grads, strict=True):
        torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)


def test_positions_are_added_only_when_enabled():
    ids, mask = padded_batch([7], 7)
    for use_pos in (True, False):
        model = make(use_pos_embeddings=use_pos)
        with torch.no_grad():
            before = model(input_ids=ids, attention_mask=mask).last_hidden_state
            model.embeddings.position_embeddings.weight.normal_()
            after = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.equal(before, after) is (not use_pos)


def test_too_long_inputs_raise_only_when_positions_are_used():
    long_ids = torch.randint(0, N_REGIONS, (1, 65))  # max_position_embeddings is 64
    with pytest.raises(ValueError, match="max_position_embeddings"):
        make()(input_ids=long_ids)
    with pytest.raises(ValueError, match="max_tokens_per_cell"):
        make().encode_tokenized_cells([long_ids[0].numpy()], progress=False)
    out = make(use_pos_embeddings=False)(input_ids=long_ids).last_hidden_state
    assert out.shape == (1, 65, 32)
    fits = make().encode_tokenized_cells([long_ids[0].numpy()], max_tokens_per_cell=64)
    assert fits.shape == (1, 32)


def test_a_cell_without_tokens_gives_finite_outputs():
    ids, mask = padded_batch([3, 0], 3)
    with torch.no_grad():
        out = make()(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------ cell embeddings

LENGTHS = [5, 17, 1, 30, 8, 8, 23, 2, 12]


class FakeTokenizedCells:
    """Duck-typed ragged cells: flat int32 ids and int64 offsets."""

    def __init__(self, cells):
        self.ids = np.concatenate(cells).astype(np.int32)
        self.offsets = np.concatenate([[0], np.cumsum([len(c) for c in cells])]).astype(np.int64)
        self.names = [str(i) for i in range(len(cells))]

    def __len__(self):
        return len(self.names)


def as_padded(cells, tensors: bool):
    ids, mask = padded_batch([len(c) for c in cells], max(len(c) for c in cells))
    for i, c in enumerate(cells):
        ids[i, : len(c)] = torch.as_tensor(c)
    if tensors:
        return {"input_ids": ids, "attention_mask": mask}
    return {"input_ids": ids.numpy().astype(np.int32), "attention_mask": mask.numpy()}


@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_cell_embeddings_equal_the_per_cell_oracle(layout, batch_size):
    model = make()
    cells = random_cells(LENGTHS)
    expected = oracle_pooled(model, cells)
    inputs = [
        cells,
        [c.tolist() for c in cells],
        FakeTokenizedCells(cells),
        as_padded(cells, tensors=True),
        as_padded(cells, tensors=False),
    ]
    for cells_in in inputs:
        got = model.encode_tokenized_cells(
            cells_in, batch_size=batch_size, layout=layout, progress=False
        )
        assert got.dtype == np.float32 and got.shape == (len(cells), 32)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_packed_batches_cut_at_a_token_budget_give_the_same_embeddings(monkeypatch):
    import atacformer.inference as inference

    model = make(max_position_embeddings=256)
    cells = random_cells(LENGTHS, seed=6)
    # The budget becomes max(512, bytes // (4 * 96)) tokens: 512, smaller than the batch.
    monkeypatch.setattr(inference, "_PACKED_BYTES", 1)
    calls = []
    original = AtacformerModel.forward

    def counting(self, input_ids=None, **kwargs):
        assert kwargs["cu_seqlens"] is not None  # the public packed path
        calls.append(len(input_ids))
        return original(self, input_ids, **kwargs)

    monkeypatch.setattr(AtacformerModel, "forward", counting)
    many = [np.resize(c, 200) for c in cells]  # 9 cells x 200 tokens in one batch of 64
    got = model.encode_tokenized_cells(many, progress=False)
    assert calls == [400, 400, 400, 400, 200]
    np.testing.assert_allclose(got, oracle_pooled(model, many), atol=1e-5)


def test_cell_embeddings_from_the_real_tokenized_cells_class():
    from atacformer.tokenized_cells import TokenizedCells

    model = make()
    cells = random_cells(LENGTHS, seed=5)
    got = model.encode_tokenized_cells(
        TokenizedCells.from_lists(cells), return_tensors="pt", progress=False
    )
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), oracle_pooled(model, cells), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_per_token_embeddings_equal_the_oracle(layout):
    model = make()
    cells = random_cells(LENGTHS, seed=2)
    got = model.encode_tokenized_cells(cells, pool_tokens=False, batch_size=3, layout=layout)
    expected = oracle_tokens(model, cells)
    assert [g.shape for g in got] == [(n, 32) for n in LENGTHS]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=0)


def test_first_truncation_equals_encoding_the_first_tokens():
    model = make()
    cells = random_cells(LENGTHS, seed=3)
    got = model.encode_tokenized_cells(
        cells, max_tokens_per_cell=6, truncation_strategy="first", progress=False
    )
    np.testing.assert_allclose(got, oracle_pooled(model, [c[:6] for c in cells]), atol=1e-5)


def is_subsequence(sub: np.ndarray, positions_in: int) -> bool:
    return bool(np.all(np.diff(sub) > 0)) and sub.min() >= 0 and sub.max() < positions_in


def test_random_truncation_keeps_an_ordered_seeded_subset():
    lengths = [3, 10, 7, 25]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cells = TokenizedCells(np.arange(offsets[-1]), offsets)  # ids equal global positions
    cut = cells.truncate(5, "random", seed=7)
    out, new_offsets = cut.ids, cut.offsets
    assert new_offsets.tolist() == [0, 3, 8, 13, 18]
    for i, n in enumerate(lengths):
        kept = out[new_offsets[i] : new_offsets[i + 1]] - offsets[i]
        assert len(kept) == min(n, 5) and is_subsequence(kept, n)
    again = cells.truncate(5, "random", seed=7).ids
    other = cells.truncate(5, "random", seed=8).ids
    assert np.array_equal(out, again) and not np.array_equal(out, other)


def test_random_truncation_is_uniform_over_positions():
    n, k, trials = 10, 3, 3000
    offsets = np.array([0, n])
    counts = np.zeros(n)
    cells = TokenizedCells(np.arange(n), offsets)
    for seed in range(trials):
        counts[cells.truncate(k, "random", seed).ids] += 1
    p = k / n  # each position is kept with probability k/n; 5 sigma bound
    assert np.all(np.abs(counts / trials - p) < 5 * np.sqrt(p * (1 - p) / trials))


def test_random_truncation_in_encode_uses_the_seeded_subset():
    model = make()
    cells = random_cells(LENGTHS, seed=4)
    subsets = list(TokenizedCells.from_lists(cells).truncate(6, "random", seed=11))
    got = model.encode_tokenized_cells(cells, max_tokens_per_cell=6, seed=11, progress=False)
    np.testing.assert_allclose(got, oracle_pooled(model, subsets), atol=1e-5)
    repeat = model.encode_tokenized_cells(cells, max_tokens_per_cell=6, seed=11, progress=False)
    assert np.array_equal(got, repeat)


def test_empty_cells_embed_to_zeros_in_place():
    model = make()
    cells = [np.array([1, 2, 3]), np.array([], dtype=np.int64), np.array([4])]
    for layout in ("packed", "padded"):
        with pytest.warns(UserWarning, match="1 of 3 cells have no tokens"):
            got = model.encode_tokenized_cells(cells, layout=layout, progress=False)
        assert np.all(got[1] == 0)
        np.testing.assert_allclose(
            got[[0, 2]], oracle_pooled(model, [cells[0], cells[2]]), atol=1e-5
        )


def test_progress_bar_is_shown_by_default_and_can_be_turned_off(capsys):
    model = make()
    cells = random_cells([4, 5])
    model.encode_tokenized_cells(cells)
    assert "Encoding cells" in capsys.readouterr().err
    model.encode_tokenized_cells(cells, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_encode_runs_in_eval_mode_and_restores_training(monkeypatch):
    def forbidden() -> None:
        raise AssertionError("encode_tokenized_cells must not empty the device cache")

    monkeypatch.setattr(torch.cuda, "empty_cache", forbidden)
    model = make().train()
    cells = random_cells(LENGTHS)
    a = model.encode_tokenized_cells(cells, batch_size=2, progress=False)
    b = model.encode_tokenized_cells(cells, batch_size=2, progress=False)
    assert np.array_equal(a, b)  # no dropout inside
    assert model.training


def test_bfloat16_autocast_is_close_to_float32():
    model = make()
    cells = random_cells(LENGTHS)
    full = model.encode_tokenized_cells(cells, progress=False)
    half = model.encode_tokenized_cells(cells, dtype=torch.bfloat16, progress=False)
    assert half.dtype == np.float32
    assert np.abs(half - full).max() < 0.1 and not np.array_equal(half, full)


def test_encode_works_on_every_task_class():
    cells = random_cells([3, 6])
    for cls in ALL_CLASSES:
        model = make(cls)
        np.testing.assert_allclose(
            model.encode_tokenized_cells(cells, progress=False),
            oracle_pooled(model, cells),
            atol=1e-5,
        )


# ------------------------------------------------------------------------------ heads and losses


def test_masked_lm_loss_is_cross_entropy_over_labelled_tokens():
    ids, mask = padded_batch([6, 4], 6)
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[0, 4], labels[1, 2] = 7, 3, 40
    for sparse in (True, False):
        model = make(AtacformerForMaskedLM, sparse_prediction=sparse)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            hidden = model.atacformer(ids, attention_mask=mask).last_hidden_state
        w = model.atacformer.embeddings.token_embeddings.weight
        picks = [(0, 1, 7), (0, 4, 3), (1, 2, 40)]
        manual = 0.0
        for b, t, y in picks:
            logits = hidden[b, t] @ w.T
            manual += (torch.logsumexp(logits, 0) - logits[y]).item()
        assert out.loss.item() == pytest.approx(manual / 3, abs=1e-5)
        assert out.logits.shape == ((3, 57) if sparse else (2, 6, 57))


def test_replaced_token_detection_loss_is_bce_over_labelled_tokens():
    model = make(AtacformerForReplacedTokenDetection)
    ids, mask = padded_batch([5, 3], 5)
    labels = torch.tensor([[1, 0, 0, 1, -100], [0, -100, 1, -100, -100]])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (2, 5)
    terms = []
    for b, t in zip(*torch.nonzero(labels != -100, as_tuple=True), strict=True):
        z, y = out.logits[b, t].item(), labels[b, t].item()
        prob = 1 / (1 + np.exp(-z))
        terms.append(-(y * np.log(prob) + (1 - y) * np.log(1 - prob)))
    assert out.loss.item() == pytest.approx(np.mean(terms), abs=1e-5)


def test_discriminator_head_is_dense_gelu_norm_classifier():
    model = make(AtacformerForReplacedTokenDetection)
    head = model.discriminator
    assert head.norm.eps == model.config.norm_eps
    x = torch.randn(2, 3, 32)
    with torch.no_grad():
        d = head.dense(x)
        g = 0.5 * d * (1 + torch.erf(d / np.sqrt(2)))  # exact GELU, written out
        n = (g - g.mean(-1, keepdim=True)) / torch.sqrt(
            g.var(-1, unbiased=False, keepdim=True) + 1e-5
        )
        manual = (n * head.norm.weight + head.norm.bias) @ head.classifier.weight[0]
        manual = manual + head.classifier.bias
        torch.testing.assert_close(head(x), manual, atol=1e-5, rtol=0)


def test_triplet_loss_over_mean_pooled_cells():
    model = make(AtacformerForCellClustering)
    a_ids, a_mask = padded_batch([4, 6], 6, seed=1)
    p_ids, p_mask = padded_batch([5, 2], 5, seed=2)
    n_ids, n_mask = padded_batch([3, 3], 3, seed=3)
    with torch.no_grad():
        out = model(a_ids, a_mask, p_ids, p_mask, n_ids, n_mask)
    a, p, n = (
        torch.from_numpy(
            oracle_pooled(model, [ids[m.bool()].numpy() for ids, m in zip(i, k, strict=True)])
        )
        for i, k in ((a_ids, a_mask), (p_ids, p_mask), (n_ids, n_mask))
    )
    manual = torch.clamp((a - p).norm(dim=1) - (a - n).norm(dim=1) + 1.0, min=0).mean()
    assert out.loss.item() == pytest.approx(manual.item(), abs=1e-4)
    torch.testing.assert_close(out.anchor_embeddings, a.float(), atol=1e-5, rtol=0)


def test_gradient_reversal_negates_and_scales_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (gradient_reversal(x, 0.5) * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * w)


def test_batch_correction_loss_and_reversed_gradient():
    model = make(AtacformerForUnsupervisedBatchCorrection, lambda_adv=0.7, grl_alpha=2.0).train()
    model.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, torch.nn.Dropout) else None)
    for layer in model.atacformer.encoder.layers:
        layer.self_attn.dropout = 0.0
    ids, mask = padded_batch([5, 3, 4], 5)
    rtd_labels = torch.where(mask.bool(), torch.randint(0, 2, mask.shape), torch.tensor(-100))
    batch_labels = torch.tensor([0, 2, 1])
    out = model(input_ids=ids, attention_mask=mask, labels=rtd_labels, batch_labels=batch_labels)
    cells = out.cell_embeddings
    cells.retain_grad()
    w, b = model.batch_prediction_head.weight, model.batch_prediction_head.bias
    logits = cells.detach() @ w.detach().T + b.detach()
    ce = (torch.logsumexp(logits, 1) - logits[torch.arange(3), batch_labels]).mean()
    assert out.batch_loss.item() == pytest.approx(ce.item(), abs=1e-5)
    assert out.loss.item() == pytest.approx(out.rtd_loss.item() + 0.7 * ce.item(), abs=1e-5)
    assert out.logits.shape == (3, 5) and out.batch_logits.shape == (3, 3)
    # Backward through the batch loss alone: d(0.7 CE)/d cells, reversed and scaled by alpha.
    (0.7 * out.batch_loss).backward()
    soft = torch.softmax(logits, 1)
    soft[torch.arange(3), batch_labels] -= 1
    expected = -2.0 * 0.7 * (soft / 3) @ w.detach()
    torch.testing.assert_close(cells.grad, expected, atol=1e-6, rtol=1e-4)


def expected_trainable(n_layers: int, unfrozen: int) -> set[str]:
    names = set(DISCRIMINATOR_KEYS) | {"batch_prediction_head.weight", "batch_prediction_head.bias"}
    for key in base_keys(n_layers):
        layer = key.split(".")[3] if ".layers." in key else None
        if ".norm" in key or (layer is not None and int(layer) >= n_layers - unfrozen):
            names.add(key)
    return names


def test_batch_correction_freezes_all_but_the_last_layers_and_norms(tmp_path: Path):
    model = make(
        AtacformerForUnsupervisedBatchCorrection, num_hidden_layers=3, bc_unfreeze_last_n_layers=1
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable(3, 1)
    model.save_pretrained(tmp_path)
    loaded = AtacformerForUnsupervisedBatchCorrection.from_pretrained(tmp_path)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == expected_trainable(3, 1)


def test_batch_correction_needs_num_batches():
    with pytest.raises(ValueError, match="num_batches"):
        make(AtacformerForUnsupervisedBatchCorrection, num_batches=None)


# ------------------------------------------------------------------------------ tokenizer interop


def test_model_accepts_the_tokenizer_output_directly(tmp_path: Path):
    from atacformer import Tokenizer

    universe = tmp_path / "universe.bed"
    universe.write_text("".join(f"chr1\t{i * 1000}\t{i * 1000 + 500}\n" for i in range(N_REGIONS)))
    tokenizer = Tokenizer(universe)
    config = tiny_config(N_REGIONS)
    assert tokenizer.pad_token_id == config.pad_token_id
    assert tokenizer.vocab_size == config.vocab_size
    model = AtacformerModel(config).eval()
    cells = [
        [("chr1", 100, 200), ("chr1", 5100, 5200), ("chr1", 9100, 9300)],
        [("chr1", 2100, 2200)],
    ]
    enc = tokenizer(cells, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    assert out.shape == (2, 3, 32)
    ids = [[0, 5, 9], [2]]  # region i spans [1000 i, 1000 i + 500)
    assert enc["input_ids"][0].tolist() == ids[0]
    pooled = model.encode_tokenized_cells(enc, progress=False)
    np.testing.assert_allclose(pooled, oracle_pooled(model, ids), atol=1e-5)


# ------------------------------------------------------------------------------ return_dict


def head_inputs(cls):
    """Inputs with every label, and the output fields (in order) they produce, typed out."""
    ids, mask = padded_batch([5, 3, 4], 5)
    labels = torch.where(mask.bool(), torch.randint(0, 2, mask.shape), torch.tensor(-100))
    if cls is AtacformerModel:
        return dict(input_ids=ids, attention_mask=mask), ["last_hidden_state"]
    if cls is AtacformerForMaskedLM:
        return dict(input_ids=ids, attention_mask=mask, labels=labels), ["loss", "logits"]
    if cls is AtacformerForReplacedTokenDetection:
        return dict(input_ids=ids, attention_mask=mask, labels=labels), ["loss", "logits"]
    if cls is AtacformerForCellClustering:
        inputs = dict(input_ids_anchor=ids, attention_mask_anchor=mask)
        inputs.update(input_ids_positive=ids.flip(0), attention_mask_positive=mask.flip(0))
        inputs.update(input_ids_negative=ids[:, :3], attention_mask_negative=mask[:, :3])
        return inputs, [
            "loss",
            "anchor_embeddings",
            "positive_embeddings",
            "negative_embeddings",
        ]
    inputs = dict(input_ids=ids, attention_mask=mask, labels=labels)
    inputs["batch_labels"] = torch.tensor([0, 2, 1])
    fields = ["loss", "rtd_loss", "batch_loss", "logits", "batch_logits", "cell_embeddings"]
    return inputs, fields


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_class_honours_return_dict(cls):
    model = make(cls)
    inputs, fields = head_inputs(cls)
    with torch.no_grad():
        as_dict = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
        explicit = model(**inputs, return_dict=True)
    assert not isinstance(as_dict, tuple) and list(as_dict.keys()) == fields
    assert type(explicit) is type(as_dict)
    assert type(as_tuple) is tuple and len(as_tuple) == len(fields)
    for name, value in zip(fields, as_tuple, strict=True):
        assert torch.equal(value, as_dict[name]), name
    # The config's return_dict is the default, as in every transformers model.
    quiet = make(cls, return_dict=False)
    with torch.no_grad():
        default = quiet(**inputs)
    assert type(default) is tuple and len(default) == len(fields)
    assert not isinstance(quiet(**inputs, return_dict=True), tuple)


# ------------------------------------------------------------------------------ pooling


def test_mean_pool_padded_and_packed_equal_a_hand_mean():
    from atacformer.inference import mean_pool

    rng = np.random.default_rng(0)
    hidden = torch.from_numpy(rng.normal(size=(3, 4, 2)))
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    expected = torch.stack(
        [hidden[0, :2].mean(0), torch.zeros(2, dtype=hidden.dtype), hidden[2].mean(0)]
    )
    torch.testing.assert_close(mean_pool(hidden, mask), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(mean_pool(hidden, mask.bool()), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1), atol=1e-12, rtol=0)
    flat = torch.cat([hidden[0, :2], hidden[2]])
    cu = torch.tensor([0, 2, 2, 6], dtype=torch.int32)
    torch.testing.assert_close(mean_pool(flat, cu_seqlens=cu), expected, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="cu_seqlens"):
        mean_pool(flat, mask, cu_seqlens=cu)


def test_heads_pool_like_the_oracle_with_and_without_a_mask():
    model = make(AtacformerForUnsupervisedBatchCorrection)
    cells = random_cells([4, 4])
    ids = torch.from_numpy(np.stack(cells).astype(np.int64))
    with torch.no_grad():
        no_mask = model(input_ids=ids).cell_embeddings
        ones = model(input_ids=ids, attention_mask=torch.ones_like(ids)).cell_embeddings
    np.testing.assert_allclose(no_mask.numpy(), oracle_pooled(model, cells), atol=1e-5)
    torch.testing.assert_close(no_mask, ones, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ reference names


def test_cell_clustering_takes_the_reference_keyword_names():
    model = make(AtacformerForCellClustering)
    a_ids, a_mask = padded_batch([4, 6], 6, seed=1)
    p_ids, p_mask = padded_batch([5, 2], 5, seed=2)
    n_ids, n_mask = padded_batch([3, 3], 3, seed=3)
    reference = dict(
        input_ids_anchor=a_ids,
        attention_mask_anchor=a_mask,
        input_ids_positive=p_ids,
        attention_mask_positive=p_mask,
        input_ids_negative=n_ids,
        attention_mask_negative=n_mask.bool(),  # geniml's collator writes bool masks
    )
    first_release = dict(
        anchor_input_ids=a_ids,
        anchor_attention_mask=a_mask,
        positive_input_ids=p_ids,
        positive_attention_mask=p_mask,
        negative_input_ids=n_ids,
        negative_attention_mask=n_mask,
    )
    with torch.no_grad():
        new = model(**reference)
        old = model(**first_release)
        loss, anchor, positive, negative = model(**reference, return_dict=False)
    expected = [
        oracle_pooled(model, [ids[m.bool()].numpy() for ids, m in zip(i, k, strict=True)])
        for i, k in ((a_ids, a_mask), (p_ids, p_mask), (n_ids, n_mask))
    ]
    for got, want in zip((anchor, positive, negative), expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)
    a, p, n = (torch.from_numpy(e) for e in expected)
    manual = torch.clamp((a - p).norm(dim=1) - (a - n).norm(dim=1) + 1.0, min=0).mean()
    assert loss.item() == pytest.approx(manual.item(), abs=1e-4)
    assert torch.equal(new.loss, old.loss) and torch.equal(new.loss, loss)
    assert AtacformerForCellClustering.main_input_name == "input_ids_anchor"
    with pytest.raises(TypeError, match="input_ids_anchor"):
        model(input_ids_anchor=a_ids, anchor_input_ids=a_ids)
    only_anchor = model(input_ids_anchor=a_ids, attention_mask_anchor=a_mask)
    assert only_anchor.loss is None and only_anchor.positive_embeddings is None
    with pytest.raises(TypeError, match="attention_mask_anchr"):
        model(input_ids_anchor=a_ids, attention_mask_anchr=a_mask)  # a typo is not ignored
    assert model(input_ids_anchor=a_ids, num_items_in_batch=2).loss is None  # Trainer's key


# ------------------------------------------------------------------------------ config


def test_config_from_tokenizer_takes_the_vocabulary_and_special_ids():
    from atacformer import Tokenizer

    from conftest import DATA

    tok = Tokenizer(DATA / "tokenizers" / "peaks.bed")  # 25 regions: ids 0..24, then specials
    config = AtacformerConfig.from_tokenizer(tok, hidden_size=32, num_attention_heads=4)
    assert config.vocab_size == 32  # 25 regions + unk, pad, mask, cls, eos, bos, sep
    assert (config.pad_token_id, config.cls_token_id, config.eos_token_id) == (26, 28, 29)
    assert (config.bos_token_id, config.sep_token_id) == (30, 31)
    assert (config.hidden_size, config.num_attention_heads) == (32, 4)
    assert config.num_hidden_layers == AtacformerConfig().num_hidden_layers  # the rest: defaults
    with pytest.raises(TypeError, match="vocab_size"):
        AtacformerConfig.from_tokenizer(tok, vocab_size=10)


# ------------------------------------------------------------------------------ inference module


def test_every_cell_input_becomes_the_same_tokenized_cells():
    from atacformer.inference import as_tokenized_cells

    cells = [np.array([4, 1, 7]), np.array([], dtype=np.int64), np.array([2])]
    real = TokenizedCells.from_lists(cells)
    assert as_tokenized_cells(real) is real
    padded = {
        "input_ids": torch.tensor([[4, 1, 7], [51, 51, 51], [2, 51, 51]]),
        "attention_mask": torch.tensor([[1, 1, 1], [0, 0, 0], [1, 0, 0]]),
    }
    forms = [
        cells,
        [c.tolist() for c in cells],
        [torch.from_numpy(c) for c in cells],
        padded,
        {"input_ids": real},
        FakeTokenizedCells([c.astype(np.int32) for c in cells]),
    ]
    for form in forms:
        got = as_tokenized_cells(form)
        assert got.offsets.tolist() == [0, 3, 3, 4]
        assert got.ids.tolist() == [4, 1, 7, 2]
    with pytest.raises(TypeError, match="TokenizedCells"):
        as_tokenized_cells(42)
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        as_tokenized_cells({"input_ids": np.zeros(3, dtype=np.int64)})


def test_length_sorted_batches_go_longest_first_and_cut_at_the_budget():
    from atacformer.inference import length_sorted_batches

    lengths = np.array([3, 9, 1, 9, 5, 0, 7])
    batches = [b.tolist() for b in length_sorted_batches(lengths, 3)]
    assert batches == [[1, 3, 6], [4, 0, 2], [5]]  # ties keep input order
    cut = [b.tolist() for b in length_sorted_batches(lengths, 3, budget=12)]
    assert cut == [[1], [3], [6], [4, 0, 2], [5]]  # 9 + 9 > 12; 5 + 3 + 1 fits
    assert [b.tolist() for b in length_sorted_batches(np.array([], dtype=int), 4)] == []


def test_encode_rejects_bad_arguments():
    model = make()
    cells = random_cells([3, 4])
    for kwargs, match in (
        ({"batch_size": 0}, "batch_size"),
        ({"return_tensors": "tf"}, "return_tensors"),
        ({"layout": "ragged"}, "layout"),
        ({"max_tokens_per_cell": 0}, "max_tokens_per_cell"),
        ({"max_tokens_per_cell": 2, "truncation_strategy": "last"}, "truncation_strategy"),
    ):
        with pytest.raises(ValueError, match=match):
            model.encode_tokenized_cells(cells, progress=False, **kwargs)


@pytest.mark.parametrize(
    "cls",
    [
        AtacformerForMaskedLM,
        AtacformerForReplacedTokenDetection,
        AtacformerForUnsupervisedBatchCorrection,
    ],
)
def test_token_heads_take_packed_input_with_the_padded_results(cls):
    model = make(cls)
    lengths = [5, 2, 4]
    ids, mask = padded_batch(lengths, 5, seed=7)
    labels = torch.where(mask.bool(), torch.randint(0, 2, mask.shape), torch.tensor(-100))
    labels[0, 0] = -100
    flat, indices, cu, max_seqlen = unpad_input(ids, mask)
    extra = {"batch_labels": torch.tensor([0, 2, 1])} if cls is not AtacformerForMaskedLM else {}
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, labels=labels, **extra)
        packed = model(
            input_ids=flat,
            cu_seqlens=cu,
            max_seqlen=max_seqlen,
            labels=labels[mask.bool()],
            **extra,
        )
    assert packed.loss.item() == pytest.approx(padded.loss.item(), abs=1e-5)
    if cls is AtacformerForMaskedLM:  # sparse prediction: logits of the labelled tokens only
        torch.testing.assert_close(packed.logits, padded.logits, atol=1e-5, rtol=0)
    else:
        assert packed.logits.shape == (sum(lengths),)
        torch.testing.assert_close(packed.logits, padded.logits[mask.bool()], atol=1e-5, rtol=0)
    if cls is AtacformerForUnsupervisedBatchCorrection:
        torch.testing.assert_close(
            packed.cell_embeddings, padded.cell_embeddings, atol=1e-5, rtol=0
        )


def test_encoding_warns_about_nothing():
    import warnings

    from atacformer import TokenizedCells

    model = make()
    cells = TokenizedCells.from_lists(random_cells([3, 5, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning about read-only NumPy arrays
        for layout in ("packed", "padded"):
            out = model.encode_tokenized_cells(cells, progress=False, layout=layout)
            assert out.shape == (3, model.config.hidden_size) and np.isfinite(out).all()
