"""Every ```python block of the README runs (in a scratch folder that links the data)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
# Shell blocks, except the two set-up commands (they install from PyPI; CI runs them).
SHELL = [b for b in re.findall(r"```bash\n(.*?)```", README, re.S) if "pip install" not in b]


def test_readme_has_examples():
    assert len(BLOCKS) >= 4


def _scratch(tmp_path: Path) -> dict[str, str]:
    for name in ("tests", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))


@pytest.mark.parametrize("index", range(len(SHELL)))
def test_readme_shell_block_runs(index: int, tmp_path: Path):
    code = SHELL[index]
    if "# needs network" in code:
        pytest.skip("marked as needing the network")
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=tmp_path,
        env=_scratch(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path):
    code = BLOCKS[index]
    if "# needs network" in code:
        pytest.skip("marked as needing the network")
    env = _scratch(tmp_path)
    # A block whose input misses its universe (a CoverageWarning) fails: examples must
    # show data that tokenizes into cells.
    strict = (
        "import warnings, atacformer\nwarnings.simplefilter('error', atacformer.CoverageWarning)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", strict + code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    # Printed values are checked against the `# -> expected` comments.
    for line in code.splitlines():
        if "  # -> " in line:
            expected = line.split("  # -> ", 1)[1].strip()
            assert expected in out.stdout, (expected, out.stdout)
