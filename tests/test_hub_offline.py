"""from_pretrained without a network: a quick, clear AtacformerIOError when the repo is not
cached, no network wait when it is, and "no such file or directory" for paths.

Each load runs in a subprocess whose HF_ENDPOINT points at a local port: closed (the
connection is refused) or silent (it accepts and never answers, like a network that drops
packets). The elapsed-time bounds are behaviour bounds (no retry storm, no hang), measured
around the call alone, not benchmarks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atacformer import AtacformerIOError, MissingFileError, Tokenizer
from atacformer.hub import DEMO_MODEL_DIR, resolve_pretrained

from hub_cache import make_hub_cache

PY_SRC = str(Path(__file__).resolve().parents[1] / "python")
DEMO_FILES = ("config.json", "model.safetensors", "universe.bed.gz", "tokenizer.toml")

# Loads each (what, name) of argv[1] (JSON) and prints one JSON list: per load, the error
# (class, message, whether it is an AtacformerIOError / MissingFileError) or the vocabulary
# size, and the seconds the call took.
LOADER = """
import json, sys, time
import atacformer as af
results = []
for what, name in json.loads(sys.argv[1]):
    cls = {"tokenizer": af.Tokenizer, "model": af.AtacformerModel}[what]
    if what == "model":
        import torch  # imported before the clock starts
    start = time.perf_counter()
    try:
        loaded = cls.from_pretrained(name)
        out = {"ok": True, "vocab": loaded.vocab_size if what == "tokenizer"
               else loaded.config.vocab_size}
    except Exception as e:
        out = {"ok": False, "type": type(e).__name__, "message": str(e),
               "io": isinstance(e, af.AtacformerIOError),
               "missing": isinstance(e, af.MissingFileError)}
    out["seconds"] = time.perf_counter() - start
    results.append(out)
print(json.dumps(results))
"""


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def load(
    tmp_path: Path, loads: list[tuple[str, str]], port: int, **extra_env: str
) -> tuple[list[dict], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_CACHE=str(tmp_path / "hub"),
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HUB_DISABLE_TELEMETRY="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=PY_SRC + os.pathsep + env.get("PYTHONPATH", ""),
        **extra_env,
    )
    out = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(loads)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def assert_unreachable_error(result: dict, stderr: str, repo: str) -> None:
    assert not result["ok"], result
    assert result["io"] and not result["missing"], result
    message = result["message"]
    assert repo in message
    assert "could not be reached" in message and "not in the local cache" in message
    assert "HF_HUB_OFFLINE=1" in message and "connected machine" in message
    assert result["seconds"] < 5, result
    # No retry storm: nothing, or next to nothing, printed while failing.
    assert len(stderr.splitlines()) <= 2, stderr


def test_no_network_no_cache_is_a_quick_io_error(tmp_path):
    # Also a tokenizer-only cache: the tokenizer loads, the model (no weights) fails fast.
    tok_files = ("config.json", "universe.bed.gz", "tokenizer.toml")
    make_hub_cache(tmp_path / "hub", "someone/tok-only", {n: DEMO_MODEL_DIR / n for n in tok_files})
    loads = [
        ("tokenizer", "org/name"),
        ("model", "org/name"),
        ("tokenizer", "someone/tok-only"),
        ("model", "someone/tok-only"),
    ]
    (tok, model, tok_only, model_only), stderr = load(tmp_path, loads, closed_port())
    for result in (tok, model):
        assert_unreachable_error(result, stderr, "org/name")
        assert result["type"] == "AtacformerIOError" and "ConnectError" in result["message"]
    assert tok_only["ok"] and tok_only["vocab"] == Tokenizer.from_pretrained("demo").vocab_size
    assert not model_only["ok"] and model_only["seconds"] < 5, model_only
    assert "model.safetensors" in model_only["message"], model_only


def test_a_hub_that_never_answers_fails_within_the_bound(tmp_path, silent_port):
    (result,), stderr = load(tmp_path, [("tokenizer", "org/name")], silent_port)
    assert_unreachable_error(result, stderr, "org/name")
    assert "no answer" in result["message"]


def test_a_cached_repo_loads_with_no_network_wait(tmp_path, silent_port):
    make_hub_cache(
        tmp_path / "hub", "someone/demo-copy", {n: DEMO_MODEL_DIR / n for n in DEMO_FILES}
    )
    # Any call to the (silent) Hub would now wait 60 s: loading must not make one.
    loads = [("tokenizer", "someone/demo-copy"), ("model", "someone/demo-copy")]
    results, stderr = load(tmp_path, loads, silent_port, ATACFORMER_HUB_TIMEOUT="60")
    for result in results:
        assert result["ok"], (result, stderr)
        assert result["vocab"] == Tokenizer.from_pretrained("demo").vocab_size
        assert result["seconds"] < 5, result


def test_offline_mode_and_no_cache_says_how_to_fix_it(tmp_path):
    with pytest.raises(MissingFileError, match="offline mode is on") as info:
        resolve_pretrained("org/name", cache_dir=tmp_path, local_files_only=True)
    assert "connected machine" in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("name", ["./nope", "nope", "peaks.bedd", "data/peaks.bed", "a/b/c"])
def test_a_path_that_does_not_exist_is_no_such_file(tmp_path, monkeypatch, name):
    # No Hub call is made for these names (HF_ENDPOINT points nowhere, to be sure).
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.chdir(tmp_path)
    for call in (
        lambda: resolve_pretrained(name),
        lambda: Tokenizer.from_pretrained(name),
    ):
        with pytest.raises(MissingFileError, match="no such file or directory") as info:
            call()
        text = str(info.value)
        assert "Repo id" not in text and "repo_id" not in text and "cache" not in text
        assert not isinstance(info.value, AtacformerIOError) or isinstance(
            info.value, FileNotFoundError
        )


def test_an_invalid_repo_id_is_no_such_file_not_the_validator_text(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(MissingFileError, match="no such file or directory") as info:
        resolve_pretrained("org/na me", cache_dir=tmp_path)
    assert "Repo id must" not in str(info.value)


def test_cli_info_without_network_is_one_line_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        PYTHONPATH=PY_SRC + os.pathsep + env.get("PYTHONPATH", ""),
    )
    out = subprocess.run(
        [sys.executable, "-m", "atacformer", "info", "org/name"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "could not be reached" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
