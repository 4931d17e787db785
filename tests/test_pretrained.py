"""from_pretrained through the Hub code path, against a cache folder built by the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atacformer import RegionSet, Tokenizer

from hub_cache import make_hub_cache

CHECK = """
import sys
from atacformer import Tokenizer, RegionSet
tok = Tokenizer.from_pretrained(sys.argv[1])
print(tok.vocab_size, tok.unk_token, tok(RegionSet(sys.argv[2]))["input_ids"].tolist())
"""


def run_offline(cache: Path, repo_id: str, query: Path) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache))
    out = subprocess.run(
        [sys.executable, "-c", CHECK, repo_id, str(query)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


def test_repo_id_with_universe_only(tmp_path: Path, peaks_dir: Path):
    cache = tmp_path / "hub"
    make_hub_cache(cache, "databio/tiny-universe", {"universe.bed.gz": peaks_dir / "peaks.bed.gz"})
    want = Tokenizer(peaks_dir / "peaks.bed")
    ids = want(RegionSet(peaks_dir / "peaks.bed"))["input_ids"].tolist()
    assert run_offline(cache, "databio/tiny-universe", peaks_dir / "peaks.bed") == (
        f"32 <unk> {ids}"
    )


def test_repo_id_with_tokenizer_toml(tmp_path: Path, peaks_dir: Path):
    cache = tmp_path / "hub"
    saved = tmp_path / "saved"
    Tokenizer.from_config(peaks_dir / "tokenizer_custom_specials.toml").save_pretrained(saved)
    make_hub_cache(
        cache,
        "databio/tiny-config",
        {"tokenizer.toml": saved / "tokenizer.toml", "universe.bed.gz": saved / "universe.bed.gz"},
    )
    out = run_offline(cache, "databio/tiny-config", peaks_dir / "peaks.bed")
    assert out.startswith("32 <UNKNOWN> [0, 1, 2")


def test_cache_dir_argument_in_process(tmp_path: Path, peaks_dir: Path):
    cache = tmp_path / "hub"
    make_hub_cache(cache, "someone/tiny", {"universe.bed": peaks_dir / "peaks.bed"})
    tok = Tokenizer.from_pretrained("someone/tiny", cache_dir=cache, local_files_only=True)
    assert tok == Tokenizer(peaks_dir / "peaks.bed")


def test_unknown_repo_offline_is_a_clear_error(tmp_path: Path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    code = "from atacformer import Tokenizer; Tokenizer.from_pretrained('nobody/nothing')"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "MissingFileError" in out.stderr and "nobody/nothing" in out.stderr


# ----------------------------------------------------------- "demo" and the one resolver


def test_demo_name_loads_the_packaged_tokenizer_and_models():
    import torch

    from atacformer import AtacformerForCellClustering, AtacformerModel
    from atacformer.hub import DEMO_MODEL_DIR

    assert Tokenizer.from_pretrained("demo") == Tokenizer.from_pretrained(DEMO_MODEL_DIR)
    assert Tokenizer.from_pretrained("demo").vocab_size == 10_007
    for cls in (AtacformerModel, AtacformerForCellClustering):
        by_name, by_folder = cls.from_pretrained("demo"), cls.from_pretrained(DEMO_MODEL_DIR)
        assert type(by_name) is cls and by_name.name_or_path == "demo"
        a, b = by_name.state_dict(), by_folder.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_by_repo_id_from_a_cache_in_process(tmp_path: Path):
    import torch

    from atacformer import AtacformerModel
    from atacformer.hub import DEMO_MODEL_DIR

    cache = tmp_path / "hub"
    files = ("config.json", "model.safetensors", "universe.bed.gz", "tokenizer.toml")
    make_hub_cache(cache, "someone/demo-copy", {n: DEMO_MODEL_DIR / n for n in files})
    model = AtacformerModel.from_pretrained(
        "someone/demo-copy", cache_dir=cache, local_files_only=True
    )
    assert model.name_or_path == "someone/demo-copy"
    want = AtacformerModel.from_pretrained("demo").state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    tok = Tokenizer.from_pretrained("someone/demo-copy", cache_dir=cache, local_files_only=True)
    assert tok == Tokenizer.from_pretrained("demo")


def test_resolver_errors_are_atacformer_errors(tmp_path: Path, peaks_dir: Path):
    from atacformer import AtacformerModel, InvalidInputError, MissingFileError
    from atacformer.hub import resolve_pretrained

    with pytest.raises(MissingFileError, match="no such file or directory") as info:
        resolve_pretrained("./not_here/model")
    assert info.value.filename.endswith("not_here/model")
    with pytest.raises(InvalidInputError, match="is a file"):
        resolve_pretrained(peaks_dir / "peaks.bed")
    with pytest.raises(MissingFileError, match="offline mode is on") as info:
        resolve_pretrained("nobody/nothing", cache_dir=tmp_path, local_files_only=True)
    assert info.value.filename == "nobody/nothing"
    with pytest.raises(MissingFileError, match="offline mode is on"):
        AtacformerModel.from_pretrained("nobody/nothing", cache_dir=tmp_path, local_files_only=True)
    # A file path still loads as a tokenizer, as before.
    assert Tokenizer.from_pretrained(peaks_dir / "peaks.bed") == Tokenizer(peaks_dir / "peaks.bed")


def test_demo_means_the_packaged_model_even_beside_a_file_named_demo(tmp_path, monkeypatch):
    from atacformer.hub import DEMO_MODEL_DIR

    (tmp_path / "demo").write_text("not a universe\n")
    monkeypatch.chdir(tmp_path)
    assert Tokenizer.from_pretrained("demo") == Tokenizer.from_pretrained(DEMO_MODEL_DIR)


def test_names_that_are_not_names_are_refused():
    from atacformer import AtacformerTypeError, InvalidInputError
    from atacformer.hub import resolve_pretrained

    with pytest.raises(AtacformerTypeError, match="NoneType"):
        resolve_pretrained(None)  # type: ignore[arg-type]
    with pytest.raises(AtacformerTypeError, match="NoneType"):
        Tokenizer.from_pretrained(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty"):
        resolve_pretrained("")


def test_config_from_pretrained_takes_the_demo_name():
    import json

    from atacformer import AtacformerConfig
    from atacformer.hub import DEMO_MODEL_DIR

    written = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    config = AtacformerConfig.from_pretrained("demo")
    assert config.vocab_size == written["vocab_size"] == 10007
    assert config.hidden_size == written["hidden_size"]
