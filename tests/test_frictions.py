"""Frictions a new user hit: missing extras, stdin, empty folders, damaged gzip, decode."""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atacformer as af
from atacformer import InvalidInputError, MissingDependencyError, ParseError, Tokenizer
from atacformer._deps import require_all
from atacformer.cli import main
from atacformer.hub import DEMO_MODEL_DIR

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport the package depends on
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PY_SRC = str(ROOT / "python")
UNIVERSE = "chr1\t100\t200\nchr1\t300\t400\nchr2\t50\t150\n"
FRAGMENTS = (
    "chr1\t150\t160\tAAA-1\t1\n"  # region 0
    "chr1\t190\t310\tTTT-1\t1\n"  # regions 0 and 1
    "chr1\t350\t360\tAAA-1\t2\n"  # region 1
    "chr2\t10\t60\tCCC-1\t1\n"  # region 2
)
# Hand-checked cells of FRAGMENTS over UNIVERSE (first-seen order, ids once each).
EXPECTED = {"AAA-1": [0, 1], "TTT-1": [0, 1], "CCC-1": [2]}


def child(code: str, stdin: bytes | None = None, cwd: Path | None = None, **env: str):
    full_env = dict(os.environ, PYTHONPATH=PY_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=300,
        env=full_env,
        cwd=cwd,
    )


@pytest.fixture
def universe(tmp_path: Path) -> Path:
    path = tmp_path / "universe.bed"
    path.write_text(UNIVERSE)
    return path


# ------------------------------------------------------------------ optional packages


def test_to_pandas_without_pandas_names_the_extra():
    code = (
        "import sys; sys.modules['pandas'] = None\n"  # makes `import pandas` fail
        "import atacformer as af\n"
        "rs = af.RegionSet.from_arrays(['chr1'], [1], [5])\n"
        "try:\n"
        "    rs.to_pandas()\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, isinstance(e, af.AtacformerError), e)\n"
    )
    out = child(code)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert text.startswith("MissingDependencyError True"), text
    assert "pip install 'atacformer[pandas]'" in text and "to_pandas" in text


def test_the_all_extra_holds_pandas():

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(p.startswith("pandas") for p in extras["pandas"])
    assert "pandas" in extras["all"][0].split("[", 1)[1]


def test_missing_packages_are_named_at_once_with_one_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now fails
    with pytest.raises(MissingDependencyError) as info:
        require_all(["json", "sklearn", "no_such_module_xyz"], "the demo", "atacformer[cli]")
    assert str(info.value) == (
        "the demo needs scikit-learn and no_such_module_xyz: pip install 'atacformer[cli]'"
    )
    assert isinstance(info.value, ImportError)
    json_module, os_module = require_all(["json", "os"], "x", "y")
    assert json_module is json and os_module is os


def test_demo_without_torch_and_sklearn_says_both(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['sklearn'] = None\n"
        "from atacformer.cli import main\n"
        "sys.exit(main(['demo', '--out', 'x']))\n"
    )
    out = child(code, cwd=tmp_path)
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert "the demo needs torch and scikit-learn: pip install 'atacformer[cli]'" in err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------ the demo


def test_demo_writes_into_a_new_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--cells", "40", "--no-plot", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atacformer-demo"]
    written = {p.name for p in (tmp_path / "atacformer-demo").iterdir()}
    assert {"demo_fragments.tsv.gz", "demo_embeddings.h5ad"} <= written


# ------------------------------------------------------------------- atacformer info


def test_info_on_a_folder_without_tokenizer_or_model_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    assert main(["info", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "neither a tokenizer" in err and "nor a model" in err and str(empty) in err
    with_universe = tmp_path / "tok"
    with_universe.mkdir()
    (with_universe / "universe.bed").write_text(UNIVERSE)
    assert main(["info", str(with_universe)]) == 0
    assert "3 regions" in capsys.readouterr().out


# ------------------------------------------------------ damaged gzip at the very start


@pytest.mark.parametrize("what", ["bed", "fragments"])
def test_corrupt_gzip_at_the_start_says_so(tmp_path, universe, what):
    bad = tmp_path / ("bad.bed.gz" if what == "bed" else "bad.tsv.gz")
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 64)
    tok = Tokenizer(universe)
    with pytest.raises(ParseError) as info:
        af.RegionSet(bad) if what == "bed" else tok.tokenize_fragments(bad)
    message = str(info.value)
    assert "at the start of the file" in message, message
    assert "after line 0" not in message and ":0:" not in message
    # Damage after some lines still names the last good line.
    good = gzip.compress(FRAGMENTS.encode())
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(good[: len(good) - 12])
    with pytest.raises(ParseError, match="after line"):
        tok.tokenize_fragments(cut)


# -------------------------------------------------------------- "-" is standard input


def cells_of(cells) -> dict[str, list[int]]:
    return {n: c.tolist() for n, c in zip(cells.names, cells, strict=True)}


@pytest.mark.parametrize("compressed", [False, True])
def test_cli_reads_fragments_from_stdin(tmp_path, universe, compressed):
    data = FRAGMENTS.encode()
    out = tmp_path / "cells.atok"
    code = (
        "import sys\nfrom atacformer.cli import main\n"
        f"sys.exit(main(['tokenize', '-', '--tokenizer', {str(universe)!r}, "
        f"'-o', {str(out)!r}]))"
    )
    run = child(code, stdin=gzip.compress(data) if compressed else data)
    assert run.returncode == 0, run.stderr.decode()
    assert cells_of(af.TokenizedCells.load(out)) == EXPECTED


def test_pp_reads_a_bed_file_from_stdin(tmp_path, universe):
    bed = "track name=peaks\nchr1\t120\t130\tp1\t0\t+\nchr2\t60\t70\tp2\t0\t-\n"
    code = (
        "import atacformer as af\n"
        f"cells = af.pp.tokenize('-', {str(universe)!r})\n"
        "print(cells.names, [c.tolist() for c in cells])\n"
    )
    run = child(code, stdin=bed.encode())
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().strip() == "['stdin'] [[0, 2]]"


def test_stdin_with_an_explicit_format_and_barcodes(tmp_path, universe):
    listing = tmp_path / "barcodes.tsv"
    listing.write_text("CCC\nAAA\n")  # no suffix: matched to the file's -1
    code = (
        "import atacformer as af\n"
        f"cells = af.pp.tokenize('-', {str(universe)!r}, format='fragments', "
        f"barcodes={str(listing)!r})\n"
        "print(cells.names, [c.tolist() for c in cells])\n"
    )
    run = child(code, stdin=FRAGMENTS.encode())
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().strip() == "['CCC', 'AAA'] [[2], [0, 1]]"


def test_stdin_from_a_terminal_is_refused_not_waited_on(monkeypatch, universe):
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(InvalidInputError, match="standard input"):
        af.pp.tokenize("-", str(universe))


# ------------------------------------------------------------ embed --tokenizer .atok


def test_embed_atok_checks_the_given_tokenizer(tmp_path, universe, capsys):
    demo = Tokenizer.from_pretrained("demo")
    cells = af.TokenizedCells.from_lists([[0, 5], [7]], names=["a", "b"])
    atok = tmp_path / "cells.atok"
    cells.save(atok)
    out = tmp_path / "emb.npy"
    args = ["embed", str(atok), "--model", "demo", "-o", str(out), "-q"]
    assert main([*args, "--tokenizer", str(universe)]) == 1
    err = capsys.readouterr().err
    assert "vocabulary" in err and str(demo.vocab_size) in err
    assert not out.exists()
    assert main([*args, "--tokenizer", str(DEMO_MODEL_DIR)]) == 0
    assert np.load(out).shape[0] == 2


# ------------------------------------------------------------------------ decode


def test_decode_unknown_ids_gives_unk_and_strict_raises():
    tok = Tokenizer.from_pretrained("demo")
    assert tok.decode([99999]) == ["<unk>"]
    assert tok.decode([0, 99999])[1] == tok.unk_token
    with pytest.raises(InvalidInputError, match=r"id 99999 \(at position 1\)"):
        tok.decode([0, 99999], strict=True)
    with pytest.raises(InvalidInputError, match=r"id -3 \(at position 0\)"):
        tok.decode(np.array([-3, 1]), strict=True)
    last = tok.vocab_size - 1
    assert tok.decode([0, last], strict=True) == tok.decode([0, last])


# ---------------------------------------------------------------------- .gitignore


def test_gitignore_lists_no_tracked_data_file():
    patterns = [
        line.strip().lstrip("/")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    data = [p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "data").rglob("*")]
    assert "tests/data/hg38.chrom.sizes" in data
    for path in data:
        for pattern in patterns:
            name = path.rsplit("/", 1)[-1]
            hit = fnmatch.fnmatch(path, pattern.rstrip("/")) or fnmatch.fnmatch(name, pattern)
            assert not hit, f".gitignore pattern {pattern!r} ignores the tracked file {path}"
