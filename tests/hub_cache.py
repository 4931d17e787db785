"""Builds a Hugging Face Hub cache folder by hand, so tests can load by repo id offline."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """Lays out ``models--{org}--{name}`` with ``refs/main`` and a snapshot holding
    ``files`` (name in the repo -> source path), the layout huggingface_hub reads."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for name, src in files.items():
        shutil.copyfile(src, snapshot / name)
    return snapshot
