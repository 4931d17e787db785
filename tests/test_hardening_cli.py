"""Hardening of the command line (issue 12): a user error is one line and a non-zero exit,
outputs are written atomically (a full disk keeps the old file), and no output replaces an
input."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from atacformer import TokenizedCells, synthetic
from atacformer.cli import main
from atacformer.hub import DEMO_MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = json.loads((DEMO_MODEL_DIR / "config.json").read_text())


def run(capsys, *argv: object) -> tuple[int, str, str]:
    """Runs the CLI in-process; returns (exit status, stdout, stderr). A usage error
    (argparse's SystemExit) counts as its exit status."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """40 demo cells: their fragment file, an .h5ad of their peak counts, a BED file."""
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": 40, "seed": 5})
    cells = synthetic.sample_cells(design, spec)
    folder = tmp_path_factory.mktemp("sample")
    fragments = cells.write_fragments(folder / "cells.tsv.gz")
    h5ad = folder / "cells.h5ad"
    cells.to_anndata().write_h5ad(h5ad)
    bed = folder / "cell.bed"
    rows = zip(design.chroms[:20], design.starts[:20], design.ends[:20], strict=True)
    bed.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return {"fragments": fragments, "h5ad": h5ad, "bed": bed, "folder": folder}


def model_copy(tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    shutil.copytree(DEMO_MODEL_DIR, folder)
    return folder


# ------------------------------------------------------------------- bad invocations


def _setup(kind: str, tmp_path: Path, sample: dict) -> dict:
    """Files some invocations need, made in ``tmp_path``."""
    paths = {"tmp": tmp_path, **sample}
    if kind == "no_tensors":
        folder = model_copy(tmp_path, "no_tensors")
        from safetensors.numpy import save_file

        save_file({}, str(folder / "model.safetensors"), metadata={"format": "pt"})
        paths["model"] = folder
    elif kind.startswith("config_"):
        folder = model_copy(tmp_path, kind)
        config = {
            "config_list": "[1, 2]",
            "config_null": "null",
            "config_no_vocab": json.dumps(
                {k: v for k, v in DEMO_CONFIG.items() if k != "vocab_size"}
            ),
            "config_heads0": json.dumps({**DEMO_CONFIG, "num_attention_heads": 0}),
        }[kind]
        (folder / "config.json").write_text(config)
        paths["model"] = folder
    elif kind == "weights_huge_length":
        folder = model_copy(tmp_path, kind)
        raw = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", 2**63) + raw[8:])
        paths["model"] = folder
    elif kind == "weights_dir":
        folder = model_copy(tmp_path, kind)
        (folder / "model.safetensors").unlink()
        (folder / "model.safetensors").mkdir()
        paths["model"] = folder
    elif kind == "no_synthetic":
        folder = model_copy(tmp_path, kind)
        (folder / "synthetic.json").unlink()
        paths["model"] = folder
    elif kind == "negative_atok":
        path = tmp_path / "neg.atok"
        TokenizedCells(np.array([1, -1, 2], dtype=np.int64), np.array([0, 1, 3])).save(path)
        paths["atok"] = path
    elif kind == "garbage":
        paths["garbage_atok"] = tmp_path / "bad.atok"
        paths["garbage_atok"].write_bytes(b"not an atok file")
        paths["garbage_h5ad"] = tmp_path / "bad.h5ad"
        paths["garbage_h5ad"].write_bytes(b"not an hdf5 file")
        paths["garbage_frag"] = tmp_path / "bad.tsv"
        paths["garbage_frag"].write_text("chr1\tnot-a-number\t5\tAAA\n")
    elif kind == "empty_dir":
        (tmp_path / "empty").mkdir()
    elif kind == "a_file":
        (tmp_path / "file").write_text("x")
    elif kind == "dir_named_like_output":
        (tmp_path / "out.npy").mkdir()
        (tmp_path / "out.atok").mkdir()
    return paths


F = "{fragments}"
BAD_INVOCATIONS = [
    # (id, setup, argv template, words the one error line must contain)
    (
        "tokenize_missing_input",
        None,
        ["tokenize", "{tmp}/nope.tsv.gz", "--tokenizer", "demo", "-o", "{tmp}/x.atok"],
        ["nope.tsv.gz"],
    ),
    (
        "tokenize_dir_without_beds",
        "empty_dir",
        ["tokenize", "{tmp}/empty", "--tokenizer", "demo", "-o", "{tmp}/x.atok"],
        ["no BED files"],
    ),
    (
        "tokenize_missing_tokenizer",
        None,
        ["tokenize", F, "--tokenizer", "{tmp}/nope/", "-o", "{tmp}/x.atok"],
        ["nope"],
    ),
    (
        "tokenize_tokenizer_empty_dir",
        "empty_dir",
        ["tokenize", F, "--tokenizer", "{tmp}/empty", "-o", "{tmp}/x.atok"],
        ["no tokenizer"],
    ),
    (
        "tokenize_wrong_suffix",
        None,
        ["tokenize", F, "--tokenizer", "demo", "-o", "{tmp}/x.txt"],
        [".atok"],
    ),
    (
        "tokenize_output_under_a_file",
        "a_file",
        ["tokenize", F, "--tokenizer", "demo", "-o", "{tmp}/file/x.atok"],
        ["file"],
    ),
    (
        "tokenize_output_is_a_dir",
        "dir_named_like_output",
        ["tokenize", F, "--tokenizer", "demo", "-o", "{tmp}/out.atok"],
        ["out.atok"],
    ),
    (
        "tokenize_garbage_fragments",
        "garbage",
        ["tokenize", "{garbage_frag}", "--tokenizer", "demo", "-o", "{tmp}/x.atok"],
        ["bad.tsv"],
    ),
    (
        "tokenize_missing_barcodes",
        None,
        ["tokenize", F, "--tokenizer", "demo", "--barcodes", "{tmp}/bc.txt", "-o", "{tmp}/x.atok"],
        ["bc.txt"],
    ),
    (
        "tokenize_negative_min_fragments",
        None,
        ["tokenize", F, "--tokenizer", "demo", "--min-fragments", "-1", "-o", "{tmp}/x.atok"],
        ["--min-fragments"],
    ),
    (
        "tokenize_zero_threads",
        None,
        ["tokenize", F, "--tokenizer", "demo", "--threads", "0", "-o", "{tmp}/x.atok"],
        ["--threads"],
    ),
    (
        "tokenize_garbage_h5ad",
        "garbage",
        ["tokenize", "{garbage_h5ad}", "--tokenizer", "demo", "-o", "{tmp}/x.atok"],
        ["bad.h5ad"],
    ),
    (
        "tokenize_unknown_format",
        "a_file",
        ["tokenize", "{tmp}/file", "--tokenizer", "demo", "-o", "{tmp}/x.atok"],
        ["--format"],
    ),
    (
        "embed_missing_model",
        None,
        ["embed", F, "--model", "{tmp}/nope/", "-o", "{tmp}/x.npy"],
        ["nope"],
    ),
    (
        "embed_model_is_a_file",
        "a_file",
        ["embed", F, "--model", "{tmp}/file", "-o", "{tmp}/x.npy"],
        ["is a file"],
    ),
    (
        "embed_device_meta",
        None,
        ["embed", F, "--model", "demo", "--device", "meta", "-o", "{tmp}/x.npy"],
        ["--device meta"],
    ),
    (
        "embed_device_xla",
        None,
        ["embed", F, "--model", "demo", "--device", "xla", "-o", "{tmp}/x.npy"],
        ["--device xla"],
    ),
    (
        "embed_device_nonsense",
        None,
        ["embed", F, "--model", "demo", "--device", "cuda:banana", "-o", "{tmp}/x.npy"],
        ["--device"],
    ),
    (
        "embed_zero_batch",
        None,
        ["embed", F, "--model", "demo", "--batch-size", "0", "-o", "{tmp}/x.npy"],
        ["--batch-size"],
    ),
    (
        "embed_zero_max_tokens",
        None,
        ["embed", F, "--model", "demo", "--max-tokens", "0", "-o", "{tmp}/x.npy"],
        ["--max-tokens"],
    ),
    ("embed_wrong_suffix", None, ["embed", F, "--model", "demo", "-o", "{tmp}/x.csv"], [".npy"]),
    (
        "embed_plot_not_png",
        None,
        ["embed", F, "--model", "demo", "-o", "{tmp}/x.npy", "--plot", "{tmp}/x.jpg"],
        [".png"],
    ),
    (
        "embed_color_by_without_h5ad",
        None,
        ["embed", F, "--model", "demo", "-o", "{tmp}/x.npy", "--color-by", "x"],
        ["--color-by"],
    ),
    (
        "embed_one_cluster",
        None,
        ["embed", F, "--model", "demo", "-o", "{tmp}/x.npy", "--n-clusters", "1"],
        ["--n-clusters"],
    ),
    (
        "embed_missing_weights",
        "no_tensors",
        ["embed", F, "--model", "{model}", "-o", "{tmp}/x.npy"],
        ["token_embeddings", "model.safetensors"],
    ),
    (
        "embed_config_list",
        "config_list",
        ["embed", F, "--model", "{model}", "-o", "{tmp}/x.npy"],
        ["config.json", "JSON object"],
    ),
    (
        "embed_config_heads0",
        "config_heads0",
        ["embed", F, "--model", "{model}", "-o", "{tmp}/x.npy"],
        ["config.json", "num_attention_heads"],
    ),
    (
        "embed_weights_huge_length",
        "weights_huge_length",
        ["embed", F, "--model", "{model}", "-o", "{tmp}/x.npy"],
        ["model.safetensors"],
    ),
    (
        "embed_weights_are_a_dir",
        "weights_dir",
        ["embed", F, "--model", "{model}", "-o", "{tmp}/x.npy"],
        ["model.safetensors"],
    ),
    (
        "embed_negative_token_id",
        "negative_atok",
        ["embed", "{atok}", "--model", "demo", "-o", "{tmp}/x.npy"],
        ["token id -1"],
    ),
    (
        "embed_garbage_atok",
        "garbage",
        ["embed", "{garbage_atok}", "--model", "demo", "-o", "{tmp}/x.npy"],
        ["bad.atok"],
    ),
    (
        "embed_output_is_a_dir",
        "dir_named_like_output",
        ["embed", F, "--model", "demo", "-o", "{tmp}/out.npy"],
        ["out.npy"],
    ),
    ("info_missing_folder", None, ["info", "{tmp}/nope/"], ["nope"]),
    ("info_a_file", "a_file", ["info", "{tmp}/file"], ["is a file"]),
    (
        "info_config_without_vocab_size",
        "config_no_vocab",
        ["info", "{model}"],
        ["config.json", "vocab_size"],
    ),
    ("info_config_null", "config_null", ["info", "{model}"], ["config.json", "JSON object"]),
    ("info_weights_huge_length", "weights_huge_length", ["info", "{model}"], ["model.safetensors"]),
    ("info_weights_are_a_dir", "weights_dir", ["info", "{model}"], ["model.safetensors"]),
    ("demo_too_few_cells", None, ["demo", "--cells", "5", "--out", "{tmp}/d"], ["--cells"]),
    ("demo_out_is_a_file", "a_file", ["demo", "--out", "{tmp}/file", "--cells", "10"], ["file"]),
    (
        "demo_model_without_synthetic",
        "no_synthetic",
        ["demo", "--model", "{model}", "--out", "{tmp}/d"],
        ["synthetic.json"],
    ),
    ("demo_missing_model", None, ["demo", "--model", "{tmp}/nope/", "--out", "{tmp}/d"], ["nope"]),
    (
        "unknown_option",
        None,
        ["embed", F, "--model", "demo", "-o", "{tmp}/x.npy", "--frobnicate"],
        ["--frobnicate"],
    ),
    (
        "not_an_integer",
        None,
        ["embed", F, "--model", "demo", "-o", "{tmp}/x.npy", "--batch-size", "many"],
        ["--batch-size"],
    ),
]


@pytest.mark.parametrize(
    ("setup", "argv", "words"),
    [pytest.param(s, a, w, id=i) for i, s, a, w in BAD_INVOCATIONS],
)
def test_a_bad_invocation_is_one_line_and_a_failure(capsys, tmp_path, sample, setup, argv, words):
    paths = _setup(setup, tmp_path, sample) if setup else {"tmp": tmp_path, **sample}
    code, _, err = run(capsys, *[a.format(**paths) for a in argv])
    assert code != 0
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if "warning:" not in line]
    if code == 2:  # argparse: the usage, then one error line
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, err
    assert "error" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_the_table_is_long_enough():
    assert len(BAD_INVOCATIONS) >= 25
    assert len({i for i, *_ in BAD_INVOCATIONS}) == len(BAD_INVOCATIONS)


# -------------------------------------------------------------- outputs never overwrite inputs


def assert_refused(code: int, err: str, path: Path, before: bytes) -> None:
    assert code == 1, err
    assert "Traceback" not in err
    assert "is the input" in err, err
    assert path.read_bytes() == before


def test_embed_refuses_to_overwrite_its_h5ad_input(capsys, tmp_path, sample):
    source = tmp_path / "in.h5ad"
    shutil.copy(sample["h5ad"], source)
    before = source.read_bytes()
    for out in (source, tmp_path / "sub" / ".." / "in.h5ad", Path(f"{tmp_path}//./in.h5ad")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, _, err = run(capsys, "embed", source, "--model", "demo", "-o", out, "-q")
        assert_refused(code, err, source, before)


def test_embed_refuses_an_output_that_links_to_its_input(capsys, tmp_path, sample):
    source = tmp_path / "in.h5ad"
    shutil.copy(sample["h5ad"], source)
    before = source.read_bytes()
    link = tmp_path / "link.h5ad"
    link.symlink_to(source)
    code, _, err = run(capsys, "embed", source, "--model", "demo", "-o", link, "-q")
    assert_refused(code, err, source, before)
    code, _, err = run(capsys, "embed", link, "--model", "demo", "-o", source, "-q")
    assert_refused(code, err, source, before)


def test_embed_refuses_a_plot_over_its_input(capsys, tmp_path, sample):
    source = tmp_path / "cells.png"  # a BED file, whatever its name
    shutil.copy(sample["bed"], source)
    before = source.read_bytes()
    argv = ["embed", source, "--format", "bed", "--model", "demo", "-o", tmp_path / "x.npy"]
    code, _, err = run(capsys, *argv, "--plot", source, "-q")
    assert_refused(code, err, source, before)


def test_tokenize_refuses_an_output_that_links_to_its_input(capsys, tmp_path, sample):
    source = tmp_path / "cells.tsv.gz"
    shutil.copy(sample["fragments"], source)
    before = source.read_bytes()
    link = tmp_path / "cells.atok"
    link.symlink_to(source)
    code, _, err = run(capsys, "tokenize", source, "--tokenizer", "demo", "-o", link, "-q")
    assert_refused(code, err, source, before)


def test_tokenize_refuses_to_overwrite_its_barcode_list(capsys, tmp_path, sample):
    barcodes = tmp_path / "keep.atok"  # an odd name, but a barcode list all the same
    barcodes.write_text("AAAC-1\n")
    before = barcodes.read_bytes()
    argv = ["tokenize", sample["fragments"], "--tokenizer", "demo", "--barcodes", barcodes]
    code, _, err = run(capsys, *argv, "-o", barcodes, "-q")
    assert_refused(code, err, barcodes, before)


def test_demo_refuses_an_output_that_links_into_the_model(capsys, tmp_path):
    model = model_copy(tmp_path)
    before = (model / "config.json").read_bytes()
    out = tmp_path / "run"
    out.mkdir()
    (out / "demo_embeddings.h5ad").symlink_to(model / "config.json")
    code, _, err = run(capsys, "demo", "--model", model, "--out", out, "--cells", "10", "-q")
    assert_refused(code, err, model / "config.json", before)


def test_pl_embedding_refuses_to_save_over_its_backed_input(tmp_path, sample):
    import anndata as ad

    import atacformer as af
    from atacformer import InvalidInputError

    path = tmp_path / "cells.h5ad"
    adata = ad.read_h5ad(sample["h5ad"])
    adata.obsm["X_atacformer"] = np.random.default_rng(0).normal(size=(adata.n_obs, 4))
    adata.write_h5ad(path)
    before = path.read_bytes()
    backed = ad.read_h5ad(path, backed="r")
    link = tmp_path / "figure.png"
    link.symlink_to(path)
    try:
        with pytest.raises(InvalidInputError, match="is the input"):
            af.pl.embedding(backed, basis="pca", save=link)
    finally:
        backed.file.close()
    assert path.read_bytes() == before


# ----------------------------------------------------------------------------- full disk


@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".h5ad"])
def test_embed_on_a_full_disk_keeps_the_old_file(tmp_path, sample, suffix):
    out = tmp_path / f"emb{suffix}"
    out.write_bytes(b"the old embeddings")
    before = set(os.listdir(tmp_path))
    code = f"""
        import resource, signal, sys
        sys.path.insert(0, {str(ROOT / "python")!r})
        from atacformer.cli import main
        import torch, pyarrow, anndata, h5py  # import before the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        sys.exit(main(["embed", {str(sample["fragments"])!r}, "--model", "demo",
                       "-o", {str(out)!r}, "-q"]))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, (result.returncode, result.stderr)  # not a signal
    assert "Traceback" not in result.stderr, result.stderr
    assert str(out) in result.stderr, result.stderr
    assert out.read_bytes() == b"the old embeddings"
    assert set(os.listdir(tmp_path)) == before  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".h5ad"])
def test_embed_replaces_an_old_output_whole(capsys, tmp_path, sample, suffix):
    out = tmp_path / f"emb{suffix}"
    out.write_bytes(b"the old embeddings")
    code, _, err = run(capsys, "embed", sample["fragments"], "--model", "demo", "-o", out, "-q")
    assert code == 0, err
    if suffix == ".npy":
        assert np.load(out).shape == (40, 64)
    elif suffix == ".parquet":
        import pandas as pd

        assert pd.read_parquet(out).shape == (40, 65)
    else:
        import anndata as ad

        back = ad.read_h5ad(out)
        assert back.obsm["X_atacformer"].shape == (40, 64)
        assert back.uns["atacformer"]["model"] == "demo"
    assert sorted(os.listdir(tmp_path)) == [out.name]
