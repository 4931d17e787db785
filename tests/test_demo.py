"""The offline demo: the bundled model, `atacformer demo`, and loading it from a Hub cache."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np

from atacformer import synthetic
from atacformer.hub import DEMO_MODEL_DIR

from hub_cache import make_hub_cache

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEMO_FILES = ("config.json", "model.safetensors", "universe.bed.gz", "tokenizer.toml")


def offline_env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))


def test_demo_model_is_small_complete_and_rebuilt_by_its_design():
    sizes = {name: (DEMO_MODEL_DIR / name).stat().st_size for name in DEMO_FILES}
    assert sum(sizes.values()) < 5_000_000, sizes
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    with gzip.open(DEMO_MODEL_DIR / "universe.bed.gz", "rt") as f:
        regions = [line.split("\t") for line in f.read().splitlines()]
    assert config["model_type"] == "atacformer"
    assert config["vocab_size"] == len(regions) + 7
    assert config["pad_token_id"] == len(regions) + 1  # unk, pad, mask, cls, eos, bos, sep
    # The universe is a function of the design seed alone.
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    assert [r[0] for r in regions] == list(design.chroms)
    assert [int(r[1]) for r in regions] == design.starts.tolist()
    assert [int(r[2]) for r in regions] == design.ends.tolist()
    assert record["train_cells"]["seed"] != record["eval_cells"]["seed"]


def test_demo_runs_offline_in_the_current_directory(tmp_path):
    # What CI runs: `atacformer demo` with no network, writing into ./atacformer-demo/.
    cwd = tmp_path / "work"
    cwd.mkdir()
    work = cwd / "atacformer-demo"  # the default --out: a new folder, not the cwd itself
    result = subprocess.run(
        [sys.executable, "-m", "atacformer", "demo", "--cells", "300"],
        cwd=cwd,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in cwd.iterdir()] == ["atacformer-demo"]
    out = result.stdout
    for n, step in enumerate(["generate", "write", "tokenize", "embed", "cluster", "save", "plot"]):
        assert re.search(rf"^  {n + 1}\. {step} +\d+\.\d\d s ", out, re.M), (step, out)
    match = re.search(r"adjusted Rand index .*: (-?\d\.\d{3})$", out, re.M)
    assert match, out
    # The demo model separates the 6 held-out types: the ARI is 0.984 for these 300 cells
    # (0.98-0.995 for other seeds of 300 cells; a shuffled row/name pairing scores about 0).
    assert float(match.group(1)) >= 0.95, out
    assert (work / "demo_fragments.tsv.gz").read_bytes()[:4] == b"\x1f\x8b\x08\x04"  # BGZF
    assert (work / "demo_cells.png").read_bytes()[:8] == PNG_MAGIC
    emb = ad.read_h5ad(work / "demo_embeddings.h5ad")
    assert emb.obsm["X_atacformer"].shape == (300, 64)
    assert set(emb.obs["cell_type"].astype(str)) <= {f"type_{c}" for c in "ABCDEF"}
    assert abs(emb.uns["atacformer"]["ari"] - float(match.group(1))) <= 5e-4  # printed rounded


def test_demo_model_loads_by_repo_id_from_a_hub_cache(tmp_path):
    repo = "example-org/atacformer-demo"
    cache = tmp_path / "hub"
    make_hub_cache(cache, repo, {name: DEMO_MODEL_DIR / name for name in DEMO_FILES})
    cells = synthetic.sample_cells(
        synthetic.make_design(
            synthetic.DesignSpec(
                **json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())["design"]
            )
        ),
        synthetic.CellSpec(n_cells=20, seed=5),
    )
    fragments = cells.write_fragments(tmp_path / "cells.tsv.gz")
    script = textwrap.dedent(
        f"""
        import numpy as np
        from atacformer import Tokenizer
        from atacformer.cli import main
        from atacformer.hub import DEMO_MODEL_DIR
        from atacformer.modeling_atacformer import AtacformerModel

        hub = AtacformerModel.from_pretrained({repo!r})
        tok = Tokenizer.from_pretrained({repo!r})
        local = AtacformerModel.from_pretrained(DEMO_MODEL_DIR)
        assert tok == Tokenizer.from_pretrained(DEMO_MODEL_DIR)
        for (name, a), b in zip(hub.state_dict().items(), local.state_dict().values()):
            assert np.array_equal(a.numpy(), b.numpy()), name
        assert main(["info", {repo!r}]) == 0
        args = ["embed", {str(fragments)!r}, "--model", {repo!r}, "-q", "-o"]
        assert main(args + [{str(tmp_path / "hub.npy")!r}]) == 0
        assert main(["embed", {str(fragments)!r}, "--model", "demo", "-q", "-o",
                     {str(tmp_path / "demo.npy")!r}]) == 0
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "models--example-org--atacformer-demo" in result.stdout  # info names the snapshot
    np.testing.assert_array_equal(np.load(tmp_path / "hub.npy"), np.load(tmp_path / "demo.npy"))


def test_demo_without_matplotlib_skips_the_plot(capsys, monkeypatch, tmp_path):
    from atacformer import cli
    from atacformer.cli import demo

    monkeypatch.setattr(demo, "importable", lambda module: module != "matplotlib")
    assert cli.main(["demo", "--out", str(tmp_path), "--cells", "100", "-q"]) == 0
    out = capsys.readouterr().out
    assert "no plot: matplotlib is not installed" in out
    match = re.search(r"^adjusted Rand index .*: (-?\d\.\d{3})$", out, re.M)
    assert match and float(match.group(1)) >= 0.9, out  # 1.000 for these 100 cells
    assert not (tmp_path / "demo_cells.png").exists()
    assert (tmp_path / "demo_embeddings.h5ad").is_file()


def test_demo_needs_a_model_trained_on_synthetic_data(capsys, tmp_path):
    from atacformer import cli

    model = tmp_path / "model"
    model.mkdir()
    for name in DEMO_FILES:  # the demo model without its synthetic.json
        (model / name).write_bytes((DEMO_MODEL_DIR / name).read_bytes())
    assert cli.main(["demo", "--out", str(tmp_path), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("atacformer demo: error: ") and "synthetic.json" in err
    assert len(err.strip().splitlines()) == 1
