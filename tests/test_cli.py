"""The ``atacformer`` command line: every command, its outputs read back, and its errors."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from atacformer import TokenizedCells, synthetic
from atacformer.cli import main
from atacformer.hub import DEMO_MODEL_DIR

from hub_cache import make_hub_cache

ROOT = Path(__file__).resolve().parent.parent
PBMC = ROOT / "examples" / "pbmc_hg38.h5ad"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Runs the CLI in-process; returns (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, *words: str) -> None:
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"atacformer {command}: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


# ----------------------------------------------------------------------------- fixtures


def write_text(path: Path, text: str, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


@pytest.fixture
def hand_made(tmp_path):
    """Three universe regions and a fragment file whose tokens are known by hand."""
    universe = write_text(
        tmp_path / "universe.bed", "chr1\t100\t200\nchr1\t300\t400\nchr2\t50\t150\n"
    )
    fragments = [
        ("chr1", 10, 20, "GGG-1"),  # overlaps nothing: GGG has no tokens
        ("chr1", 150, 160, "AAA-1"),  # region 0
        ("chr1", 190, 310, "TTT-1"),  # regions 0 and 1
        ("chr1", 350, 360, "AAA-1"),  # region 1
        ("chr1", 350, 370, "AAA-1"),  # region 1 again (kept once)
        ("chr1", 500, 600, "CCC-1"),  # nothing
        ("chr2", 10, 60, "CCC-1"),  # region 2
    ]
    text = "".join(f"{c}\t{s}\t{e}\t{b}\t1\n" for c, s, e, b in fragments)
    return universe, write_text(tmp_path / "fragments.tsv.gz", text, gz=True)


@pytest.fixture(scope="module")
def demo_sample(tmp_path_factory):
    """60 cells from the demo model's synthetic design and their fragment file."""
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": 60, "seed": 77})
    sample = synthetic.sample_cells(design, spec)
    path = sample.write_fragments(tmp_path_factory.mktemp("demo") / "cells.tsv.gz")
    return sample, path


@pytest.fixture(scope="module")
def demo_npy(demo_sample, tmp_path_factory):
    """Embeddings of the demo cells written by `embed -o x.npy` (shared by several tests)."""
    out = tmp_path_factory.mktemp("npy") / "emb.npy"
    assert main(["embed", str(demo_sample[1]), "--model", "demo", "-o", str(out), "-q"]) == 0
    return np.load(out)


@pytest.fixture(scope="module")
def pbmc_tokenizer_dir(tmp_path_factory):
    """A tokenizer whose universe is the PBMC matrix's own 1,000 peaks, in var order."""
    folder = tmp_path_factory.mktemp("pbmc_tok")
    var = ad.read_h5ad(PBMC).var
    rows = zip(var["chr"].astype(str), var["start"], var["end"], strict=True)
    write_text(folder / "universe.bed", "".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return folder


# ---------------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (None, ["tokenize", "embed", "info", "demo"]),
        ("tokenize", [".atok", "--barcodes", "--min-fragments", "--threads", "--tokenizer"]),
        (
            "embed",
            ["X_atacformer", ".npy", ".parquet", "--batch-size", "--device", "--dtype", "--plot"],
        ),
        ("info", ["parameter", "special"]),
        ("demo", ["adjusted Rand", "--out", "demo_cells.png"]),
    ],
)
def test_help_explains_every_command(capsys, command, words):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out, word


# ------------------------------------------------------------------------------ tokenize


def test_tokenize_fragments(capsys, hand_made, tmp_path):
    universe, fragments = hand_made
    out = tmp_path / "cells.atok"
    code, stdout, _ = run(capsys, "tokenize", fragments, "--tokenizer", universe, "-o", out)
    assert code == 0 and "3 cells" in stdout
    cells = TokenizedCells.load(out)
    assert cells.names == ["AAA-1", "TTT-1", "CCC-1"]  # first seen; GGG has no tokens
    assert [sorted(c.tolist()) for c in cells] == [[0, 1], [0, 1], [2]]


def test_tokenize_barcodes_and_min_fragments(capsys, hand_made, tmp_path):
    universe, fragments = hand_made
    listed = write_text(tmp_path / "keep.txt", "CCC-1\nGGG-1\n")
    out = tmp_path / "listed.atok"
    args = ["tokenize", fragments, "--tokenizer", universe, "-o", out, "--threads", "1"]
    assert run(capsys, *args, "--barcodes", listed)[0] == 0
    cells = TokenizedCells.load(out)
    assert cells.names == ["CCC-1", "GGG-1"]
    assert [c.tolist() for c in cells] == [[2], [3]]  # a listed cell without tokens: [unk]
    assert run(capsys, *args, "--min-fragments", "2")[0] == 0
    assert TokenizedCells.load(out).names == ["AAA-1", "CCC-1"]  # 3 and 2 fragment lines


def test_tokenize_bed_directory_and_list(capsys, hand_made, tmp_path):
    universe, _ = hand_made
    beds = tmp_path / "beds"
    beds.mkdir()
    write_text(beds / "b.bed", "chr2\t0\t100\n")
    write_text(beds / "a.bed.gz", "chr1\t150\t350\nchr9\t1\t2\n", gz=True)
    write_text(beds / "notes.txt", "not a bed file")
    expected = {"a.bed.gz": [0, 1], "b.bed": [2]}
    for inputs in ([beds], [beds / "a.bed.gz", beds / "b.bed"]):
        out = tmp_path / "beds.atok"
        assert run(capsys, "tokenize", *inputs, "--tokenizer", universe, "-o", out)[0] == 0
        cells = TokenizedCells.load(out)
        assert {n: sorted(c.tolist()) for n, c in zip(cells.names, cells, strict=True)} == expected


def test_tokenize_real_pbmc_h5ad(capsys, pbmc_tokenizer_dir, tmp_path):
    out = tmp_path / "pbmc.atok"
    code, stdout, _ = run(capsys, "tokenize", PBMC, "--tokenizer", pbmc_tokenizer_dir, "-o", out)
    assert code == 0 and "20 cells" in stdout
    cells = TokenizedCells.load(out)
    adata = ad.read_h5ad(PBMC)
    assert cells.names == list(adata.obs_names)
    x = adata.X.toarray()
    for row, ids in enumerate(cells):  # universe id i is var row i
        assert sorted(ids.tolist()) == np.flatnonzero(x[row]).tolist()


# --------------------------------------------------------------------------------- embed


def test_embed_npy_is_a_float32_matrix(demo_npy):
    assert demo_npy.dtype == np.float32 and demo_npy.shape == (60, 64)
    assert np.isfinite(demo_npy).all() and demo_npy.std(axis=0).min() > 0


def test_embed_h5ad_and_parquet_read_back(capsys, demo_sample, demo_npy, tmp_path):
    sample, fragments = demo_sample
    h5ad, parquet = tmp_path / "emb.h5ad", tmp_path / "emb.parquet"
    assert run(capsys, "embed", fragments, "--model", "demo", "-o", h5ad, "-q")[0] == 0
    assert run(capsys, "embed", fragments, "--model", "demo", "-o", parquet, "-q")[0] == 0
    back = ad.read_h5ad(h5ad)
    np.testing.assert_allclose(back.obsm["X_atacformer"], demo_npy, rtol=1e-5, atol=1e-6)
    assert set(back.obs_names) == set(sample.barcodes)
    frame = pd.read_parquet(parquet)
    assert list(frame["cell"]) == list(back.obs_names)
    np.testing.assert_allclose(frame.drop(columns="cell").to_numpy(), demo_npy, rtol=1e-5)
    # Rows carry their own cell's name: cells of one type lie closer together than cells of
    # different types (a row/name mix-up would erase this).
    types = dict(zip(sample.barcodes, sample.type_labels, strict=True))
    labels = np.array([types[n] for n in back.obs_names])
    emb = back.obsm["X_atacformer"]
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    assert dist[same & off_diagonal].mean() < dist[~same].mean()
    n_tokens = back.obs["atacformer_n_tokens"].to_numpy()
    counts = dict(zip(sample.barcodes, np.diff(sample.count_matrix().indptr), strict=True))
    assert n_tokens.tolist() == [counts[n] for n in back.obs_names]


def test_embed_atok_input_equals_fragment_input(capsys, demo_sample, demo_npy, tmp_path):
    _, fragments = demo_sample
    atok, npy = tmp_path / "cells.atok", tmp_path / "emb.npy"
    assert run(capsys, "tokenize", fragments, "--tokenizer", "demo", "-o", atok)[0] == 0
    code, stdout, _ = run(capsys, "embed", atok, "--model", DEMO_MODEL_DIR, "-o", npy)
    assert code == 0 and "60 cells x 64 dims" in stdout
    np.testing.assert_allclose(np.load(npy), demo_npy, rtol=1e-5, atol=1e-6)


def test_embed_plot_with_clusters(capsys, demo_sample, tmp_path):
    _, fragments = demo_sample
    out, png = tmp_path / "emb.h5ad", tmp_path / "map.png"
    args = ["embed", fragments, "--model", "demo", "-o", out, "--plot", png, "--n-clusters", "3"]
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and "KMeans cluster" in stdout
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
    clusters = ad.read_h5ad(out).obs["atacformer_cluster"]
    assert clusters.nunique() == 3


def make_pbmc_model(folder: Path, tokenizer_dir: Path) -> Path:
    """A tiny, untrained model over the PBMC peaks (to exercise the plumbing on real cells)."""
    from atacformer import Tokenizer
    from atacformer.configuration_atacformer import AtacformerConfig
    from atacformer.modeling_atacformer import AtacformerModel

    tok = Tokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(folder)
    config = AtacformerConfig.from_tokenizer(
        tok,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    AtacformerModel(config).save_pretrained(folder)
    return folder


def test_embed_real_pbmc_keeps_obs_and_colours_by_column(capsys, pbmc_tokenizer_dir, tmp_path):
    model = make_pbmc_model(tmp_path / "pbmc_model", pbmc_tokenizer_dir)
    out, png = tmp_path / "pbmc.h5ad", tmp_path / "pbmc.png"
    args = ["embed", PBMC, "--model", model, "-o", out, "--plot", png, "--color-by", "cell_type"]
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and "coloured by cell_type" in stdout
    back, source = ad.read_h5ad(out), ad.read_h5ad(PBMC)
    assert back.obsm["X_atacformer"].shape == (20, 16)
    assert list(back.obs_names) == list(source.obs_names)
    assert list(back.obs["cell_type"]) == list(source.obs["cell_type"])
    np.testing.assert_array_equal(back.obs["atacformer_n_tokens"], (source.X > 0).sum(axis=1).A1)
    assert png.read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------- info


def test_info_demo(capsys):
    from safetensors.numpy import load_file

    code, stdout, _ = run(capsys, "info", "demo")
    assert code == 0
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    with gzip.open(DEMO_MODEL_DIR / "universe.bed.gz", "rt") as f:
        n_regions = sum(1 for line in f if line.strip())
    n_params = sum(a.size for a in load_file(DEMO_MODEL_DIR / "model.safetensors").values())
    text = " ".join(stdout.split())
    assert f"universe {n_regions:,} regions" in text
    assert f"vocabulary {n_regions + 7:,} ids" in text
    assert f"hidden size {config['hidden_size']}" in text
    assert f"layers {config['num_hidden_layers']}" in text
    assert f"attention heads {config['num_attention_heads']}" in text
    assert f"parameters {n_params:,}" in text
    assert f"<unk>={n_regions} <pad>={n_regions + 1}" in text
    assert "matches the tokenizer" in text


def test_encoder_parameter_formula_matches_the_model():
    from atacformer.cli.info import encoder_parameters
    from atacformer.configuration_atacformer import AtacformerConfig
    from atacformer.modeling_atacformer import AtacformerModel

    shape = dict(vocab_size=57, hidden_size=24, intermediate_size=40, num_hidden_layers=3)
    shape.update(num_attention_heads=4, max_position_embeddings=33, pad_token_id=51)
    model = AtacformerModel(AtacformerConfig(**shape))
    assert encoder_parameters(shape) == sum(p.numel() for p in model.parameters())


def test_info_tokenizer_only_folder(capsys, pbmc_tokenizer_dir):
    code, stdout, _ = run(capsys, "info", pbmc_tokenizer_dir)
    assert code == 0
    text = " ".join(stdout.split())
    assert "universe 1,000 regions" in text and "model none (no config.json)" in text


# -------------------------------------------------------------------------------- errors


def test_missing_input_file(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "tokenize",
        tmp_path / "nope.tsv.gz",
        "--tokenizer",
        "demo",
        "-o",
        tmp_path / "x.atok",
    )
    assert_one_line_error(code, err, "tokenize", "no such file", "nope.tsv.gz")


def test_malformed_fragment_file(capsys, hand_made, tmp_path):
    universe, _ = hand_made
    bad = write_text(
        tmp_path / "bad_fragments.tsv", "chr1\t100\t200\tAAA-1\t1\nchr1\tten\t20\tB\t1\n"
    )
    code, _, err = run(capsys, "tokenize", bad, "--tokenizer", universe, "-o", tmp_path / "x.atok")
    assert_one_line_error(code, err, "tokenize", "bad_fragments.tsv:2", "not an integer")


def test_unknown_model_offline(capsys, demo_sample, tmp_path):
    _, fragments = demo_sample
    args = ["embed", fragments, "--model", "no-such-org/no-such-model", "-o", tmp_path / "x.npy"]
    code, _, err = run(capsys, *args, "--local-files-only", "--cache-dir", tmp_path / "hub")
    assert_one_line_error(code, err, "embed", "no-such-org/no-such-model", "cache")
    assert not (tmp_path / "x.npy").exists()


def test_missing_local_model_folder(capsys, demo_sample, tmp_path):
    code, _, err = run(capsys, "info", "./not_here/model")
    assert_one_line_error(code, err, "info", "no such file or directory")


def test_model_needs_its_own_vocabulary(capsys, pbmc_tokenizer_dir, tmp_path):
    args = ["embed", PBMC, "--model", "demo", "--tokenizer", pbmc_tokenizer_dir]
    code, _, err = run(capsys, *args, "-o", tmp_path / "x.h5ad")
    assert_one_line_error(code, err, "embed", "vocabulary has 1007 ids", "10007")


def test_demo_model_on_real_pbmc_cells_warns_about_unk(capsys, tmp_path):
    # The demo universe is synthetic, so real PBMC peaks rarely overlap it: the cells that
    # overlap nothing are reported (counted here by brute force over both peak sets).
    with gzip.open(DEMO_MODEL_DIR / "universe.bed.gz", "rt") as f:
        universe = pd.read_csv(f, sep="\t", header=None, names=["chr", "start", "end"])
    source = ad.read_h5ad(PBMC)
    var = source.var
    hits = np.array(
        [
            bool(((universe.chr == c) & (universe.start < e) & (s < universe.end)).any())
            for c, s, e in zip(var["chr"].astype(str), var["start"], var["end"], strict=True)
        ]
    )
    x = source.X.toarray() > 0
    expected = int(np.sum(~(x & hits).any(axis=1)))
    assert expected == 20  # none overlaps: embed stops, unless told --allow-empty
    code, _, err = run(capsys, "embed", PBMC, "--model", "demo", "-o", tmp_path / "x.npy", "-q")
    assert_one_line_error(code, err.splitlines()[-1] + "\n", "embed", "no cell has a token")
    assert not (tmp_path / "x.npy").exists()
    out = tmp_path / "x.npy"
    code, _, err = run(capsys, "embed", PBMC, "--model", "demo", "-o", out, "-q", "--allow-empty")
    assert code == 0 and np.load(tmp_path / "x.npy").shape == (20, 64)
    assert f"warning: {expected} of 20 cells overlap no region" in err


def test_atok_from_another_vocabulary(capsys, hand_made, tmp_path):
    universe, fragments = hand_made
    atok = tmp_path / "small.atok"
    assert run(capsys, "tokenize", fragments, "--tokenizer", universe, "-o", atok)[0] == 0
    code, _, err = run(capsys, "embed", atok, "--model", "demo", "-o", tmp_path / "x.npy")
    assert_one_line_error(code, err, "embed", "another vocabulary")


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("cells.txt", "x", ["--format"]),
        ("broken.h5ad", "not hdf5", ["not a readable .h5ad"]),
        ("broken.atok", "ATOK", ["atok"]),
    ],
)
def test_unreadable_inputs(capsys, tmp_path, name, content, words):
    path = write_text(tmp_path / name, content)
    code, _, err = run(capsys, "embed", path, "--model", "demo", "-o", tmp_path / "x.npy")
    assert_one_line_error(code, err, "embed", *words)


def test_bad_options(capsys, demo_sample, tmp_path):
    _, fragments = demo_sample
    base = ["embed", fragments, "--model", "demo"]
    code, _, err = run(capsys, *base, "-o", tmp_path / "x.csv")
    assert_one_line_error(code, err, "embed", ".h5ad, .npy, .parquet")
    code, _, err = run(capsys, *base, "-o", tmp_path / "x.npy", "--color-by", "cell_type")
    assert_one_line_error(code, err, "embed", "--color-by")
    code, _, err = run(capsys, *base, "-o", tmp_path / "x.npy", "--device", "no-such-device")
    assert_one_line_error(code, err, "embed", "--device")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "tokenize", empty, "--tokenizer", "demo", "-o", tmp_path / "e.atok")
    assert_one_line_error(code, err, "tokenize", "no BED files")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["embed", "x.tsv.gz", "--model", "demo"])  # no -o
    assert exit_info.value.code == 2
    assert "-o/--output" in capsys.readouterr().err


def test_python_m_atacformer_and_offline_hub_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    version = subprocess.run(
        [sys.executable, "-m", "atacformer", "--version"], capture_output=True, text=True, env=env
    )
    assert version.returncode == 0 and version.stdout.startswith("atacformer ")
    missing = subprocess.run(
        [sys.executable, "-m", "atacformer", "info", "example-org/missing-model"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert_one_line_error(missing.returncode, missing.stderr, "info", "offline mode is on")


# ----------------------------------------------------------- the examples in every --help

HELP_COMMANDS = ("tokenize", "embed", "info", "demo")
STAND_IN_REPO = "databio/atacformer-base-hg38"


def help_examples(capsys, command: str) -> list[str]:
    """The example command lines of ``atacformer COMMAND --help``."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    lines = text.split("examples:\n", 1)[1].splitlines()
    return [line.strip() for line in lines if line.startswith("  atacformer ")]


def test_every_help_example_runs(capsys, tmp_path, demo_sample, pbmc_tokenizer_dir):
    examples = [(c, line) for c in HELP_COMMANDS for line in help_examples(capsys, c)]
    assert {c for c, _ in examples} == set(HELP_COMMANDS)
    # The files the examples name, made here. The Hub repo they name is stood in for by the
    # demo model in a local Hub cache, read offline (the real repo needs the network).
    work = tmp_path / "work"
    work.mkdir()
    (work / "fragments.tsv.gz").write_bytes(demo_sample[1].read_bytes())
    (work / "pbmc.h5ad").write_bytes(PBMC.read_bytes())
    peaks = ROOT / "tests" / "data" / "tokenizers"
    (work / "universe.bed.gz").write_bytes((peaks / "peaks.bed.gz").read_bytes())
    (work / "peaks").mkdir()
    (work / "peaks" / "a.bed").write_bytes((peaks / "peaks.bed").read_bytes())
    write_text(work / "peaks" / "b.bed", "chr17\t7915700\t7915750\n")
    write_text(work / "samples.tsv", "sample\tfragments\na\tfragments.tsv.gz\n")  # --manifest
    make_pbmc_model(work / "my_model", pbmc_tokenizer_dir)
    cache = tmp_path / "hub"
    demo_files = ("config.json", "model.safetensors", "universe.bed.gz", "tokenizer.toml")
    make_hub_cache(cache, STAND_IN_REPO, {n: DEMO_MODEL_DIR / n for n in demo_files})
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    for command, line in examples:  # in order: `tokenize` makes the cells.atok `embed` reads
        argv = shlex.split(line)
        assert argv[:2] == ["atacformer", command], line
        result = subprocess.run(
            [sys.executable, "-m", "atacformer", *argv[1:]],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (line, result.stderr)
        for flag in ("-o", "--plot", "--out"):
            if flag in argv:
                assert (work / argv[argv.index(flag) + 1]).exists(), (line, flag)
    assert (work / "out.png").read_bytes()[:8] == PNG_MAGIC
    assert (
        TokenizedCells.load(work / "cells.atok").names
        == ad.read_h5ad(work / "cells.h5ad").obs_names.tolist()
    )


# -------------------------------------------------- options checked before importing torch


CHECK_BEFORE_TORCH = """
import contextlib, io, json, sys
from atacformer.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, err.getvalue().strip()])
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def test_numeric_options_fail_at_once_by_their_own_name():
    cases = [
        (
            ["embed", "x.tsv.gz", "--model", "demo", "-o", "x.npy", "--batch-size", "0"],
            "--batch-size must be at least 1, got 0",
        ),
        (
            ["embed", "x.tsv.gz", "--model", "demo", "-o", "x.npy", "--max-tokens", "0"],
            "--max-tokens must be at least 1",
        ),
        (
            ["embed", "x.tsv.gz", "--model", "demo", "-o", "x.npy", "--n-clusters", "1"],
            "--n-clusters must be at least 2",
        ),
        (
            ["embed", "x.tsv.gz", "--model", "demo", "-o", "x.npy", "--threads", "0"],
            "--threads must be at least 1",
        ),
        (
            [
                "tokenize",
                "x.tsv.gz",
                "--tokenizer",
                "demo",
                "-o",
                "x.atok",
                "--min-fragments",
                "-1",
            ],
            "--min-fragments must be at least 0",
        ),
        (
            ["tokenize", "x.tsv.gz", "--tokenizer", "demo", "-o", "x.atok", "--max-fragments", "0"],
            "--max-fragments must be at least 1",
        ),
        (["demo", "--cells", "5"], "--cells must be at least 10, got 5"),
        (["demo", "--seed", "-1"], "--seed must be at least 0, got -1"),
        (
            ["embed", "x.tsv.gz", "--model", "demo", "-o", "x.npy", "--threads", "100000"],
            "--threads must be at most 4096, got 100000",
        ),
    ]
    out = subprocess.run(
        [sys.executable, "-c", CHECK_BEFORE_TORCH, json.dumps([argv for argv, _ in cases])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["torch"] is False  # each failed before torch was imported
    for (argv, words), (code, err) in zip(cases, report["results"], strict=True):
        assert_one_line_error(code, err, argv[0], words)


# ------------------------------------------------------ which errors become one line


def test_a_bug_keeps_its_traceback(capsys, monkeypatch, hand_made, tmp_path):
    import atacformer.pp

    universe, fragments = hand_made

    def broken(*args, **kwargs):
        raise ValueError("a bug in our code")

    monkeypatch.setattr(atacformer.pp, "tokenize", broken)
    with pytest.raises(ValueError, match="a bug in our code"):
        main(
            [
                "tokenize",
                str(fragments),
                "--tokenizer",
                str(universe),
                "-o",
                str(tmp_path / "x.atok"),
            ]
        )


def test_a_missing_optional_dependency_is_one_line(capsys, monkeypatch, demo_sample, tmp_path):
    import atacformer._deps

    real = atacformer._deps.import_module

    def without_pyarrow(name, *args):
        if name == "pyarrow":
            raise ImportError("No module named 'pyarrow'")
        return real(name, *args)

    monkeypatch.setattr(atacformer._deps, "import_module", without_pyarrow)
    code, _, err = run(
        capsys, "embed", demo_sample[1], "--model", "demo", "-o", tmp_path / "x.parquet"
    )
    assert_one_line_error(code, err, "embed", "needs pyarrow", "pip install 'pyarrow'")


def test_warnings_are_one_line(capsys, hand_made, tmp_path):
    universe, _ = hand_made
    bad = write_text(
        tmp_path / "bad_fragments.tsv", "chr1\t150\t160\tAAA-1\t1\nchr1\tten\t20\tB\t1\n"
    )
    args = [
        "tokenize",
        bad,
        "--tokenizer",
        universe,
        "-o",
        tmp_path / "x.atok",
        "--on-error",
        "skip",
    ]
    code, _, err = run(capsys, *args)
    assert code == 0
    assert err.strip().splitlines() == [
        f"atacformer tokenize: warning: {bad}: skipped 1 malformed line(s); the first, line 2: "
        + err.split("line 2: ", 1)[1].strip()
    ]
    assert TokenizedCells.load(tmp_path / "x.atok").names == ["AAA-1"]


# ------------------------------------------------------------- several fragment files


def test_tokenize_several_fragment_files(capsys, hand_made, tmp_path):
    universe, fragments = hand_made
    other = write_text(tmp_path / "donor2.tsv.gz", "chr2\t60\t70\tAAA-1\t1\n", gz=True)
    out = tmp_path / "both.atok"
    assert run(capsys, "tokenize", fragments, other, "--tokenizer", universe, "-o", out)[0] == 0
    cells = TokenizedCells.load(out)
    assert cells.names == ["fragments#AAA-1", "fragments#TTT-1", "fragments#CCC-1", "donor2#AAA-1"]
    assert [sorted(c.tolist()) for c in cells] == [[0, 1], [0, 1], [2], [2]]


def test_options_that_do_not_apply_to_the_input(capsys, hand_made, tmp_path):
    universe, fragments = hand_made
    beds = tmp_path / "beds"
    beds.mkdir()
    write_text(beds / "a.bed", "chr1\t150\t350\n")
    args = ["tokenize", beds, "--tokenizer", universe, "-o", tmp_path / "x.atok"]
    code, _, err = run(capsys, *args, "--min-fragments", "2")
    assert_one_line_error(code, err, "tokenize", "--min-fragments apply to fragment files")
    code, _, err = run(capsys, *args, "--layer", "counts")
    assert_one_line_error(code, err, "tokenize", "--layer applies to .h5ad")


def test_max_tokens_beyond_the_model_context(capsys, hand_made, pbmc_tokenizer_dir, tmp_path):
    model = make_pbmc_model(tmp_path / "model", pbmc_tokenizer_dir)  # 64 positions
    capsys.readouterr()  # the progress bar of saving it
    args = ["embed", PBMC, "--model", model, "-o", tmp_path / "x.npy", "--max-tokens", "65"]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, "embed", "--max-tokens 65 is more than", "64 positions")


def test_more_clusters_than_cells(capsys, demo_sample, tmp_path):
    args = ["embed", demo_sample[1], "--model", "demo", "-o", tmp_path / "x.h5ad"]
    code, _, err = run(capsys, *args, "--n-clusters", "61")
    assert_one_line_error(code, err, "embed", "--n-clusters 61 is more than the 60 cells")
    assert not (tmp_path / "x.h5ad").exists()


def broken_model(tmp_path: Path, what: str) -> Path:
    """A copy of the demo model folder with one thing wrong with it."""
    import shutil

    folder = tmp_path / what
    shutil.copytree(DEMO_MODEL_DIR, folder)
    if what == "no_weights":
        (folder / "model.safetensors").unlink()
    elif what == "bad_weights":
        (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    elif what == "bad_json":
        (folder / "config.json").write_text('{\n  "model_type": "atacformer",\n  oops\n}\n')
    return folder


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("no_weights", ["cannot load the model"]),
        ("bad_weights", ["not a readable safetensors file"]),
        ("bad_json", ["config.json:3", "not JSON"]),
    ],
)
def test_embed_with_a_broken_model_folder_is_one_line(capsys, demo_sample, tmp_path, what, words):
    _, fragments = demo_sample
    folder = broken_model(tmp_path, what)
    code, _, err = run(capsys, "embed", fragments, "--model", folder, "-o", tmp_path / "e.npy")
    assert_one_line_error(code, err, "embed", str(folder), *words)
    assert not (tmp_path / "e.npy").exists()


def test_info_with_malformed_config_json_is_one_line(capsys, tmp_path):
    folder = broken_model(tmp_path, "bad_json")
    code, _, err = run(capsys, "info", folder)
    assert_one_line_error(code, err, "info", "config.json:3", "not JSON")
