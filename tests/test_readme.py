"""Every ```python block of the README runs (in a scratch folder that links the data)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path):
    code = BLOCKS[index]
    if "# needs network" in code:
        pytest.skip("marked as needing the network")
    for name in ("tests", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    out = subprocess.run(
        [sys.executable, "-c", code],
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
