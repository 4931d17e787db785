"""The seed's published example, with a local folder in place of the Hub, and the imports
that must work with and without PyTorch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from _model_helpers import tiny_config

from conftest import DATA


def test_seed_example_runs_against_a_local_folder(tmp_path: Path):
    from atacformer import AtacformerForCellClustering as Model
    from atacformer import Tokenizer as Tok

    repo = tmp_path / "atacformer-tiny"
    tok = Tok(DATA / "tokenizers" / "peaks.bed")
    tok.save_pretrained(repo)
    Model(tiny_config(n_regions=25)).save_pretrained(repo)

    # The published example, verbatim but for the names of the package and the repo.
    from atacformer import AtacformerForCellClustering, RegionSet, Tokenizer

    rs = RegionSet.from_bed(DATA / "tokenizers" / "peaks.bed")
    tokenizer = Tokenizer.from_pretrained(repo)
    model = AtacformerForCellClustering.from_pretrained(repo)
    tokens = tokenizer(rs)
    input_ids = tokens["input_ids"]
    decoded = tokenizer.decode(input_ids)
    assert input_ids.tolist() == list(range(25))  # each universe region overlaps itself
    assert decoded[0] == "chr17:7915738-7915777"
    assert tokenizer.vocab_size == 32 == model.config.vocab_size
    assert tokenizer.special_tokens_map["pad_token"] == "<pad>"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    emb = model.encode_tokenized_cells([input_ids], progress=False)
    assert emb.shape == (1, 32) and np.isfinite(emb).all()


def test_seed_module_paths():
    import atacformer
    import atacformer.models
    import atacformer.tokenizers

    assert atacformer.tokenizers.Tokenizer is atacformer.Tokenizer
    assert atacformer.models.Region is atacformer.Region
    assert atacformer.models.RegionSet is atacformer.RegionSet
    # Model and training classes are imported on first use, so dir() lists them only then.
    lazy = set(atacformer._MODEL_NAMES) | set(atacformer._SUBMODULES)
    assert set(atacformer.__all__) <= set(dir(atacformer)) | lazy
    assert all(getattr(atacformer, n).__name__ == n for n in sorted(atacformer._MODEL_NAMES))
    assert all(getattr(atacformer, n).__name__ == f"atacformer.{n}" for n in atacformer._SUBMODULES)


BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"blocked {name}")
    sys.meta_path.insert(0, Block())
    import atacformer
    tok = atacformer.Tokenizer(sys.argv[1])
    print(tok([("chr17", 7915738, 7915777)])["input_ids"].tolist())
    try:
        atacformer.AtacformerForCellClustering
    except ImportError as e:
        print("ImportError:", e)
    """
)


def test_import_without_torch_and_the_model_error_names_the_extra():
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, str(DATA / "tokenizers" / "peaks.bed")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "[0]"
    assert lines[1].startswith("ImportError:") and "atacformer[model]" in lines[1]
