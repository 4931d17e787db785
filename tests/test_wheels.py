"""Wheels that install everywhere: the release workflow, the tag check CI runs on the
manylinux2014 wheel it builds (.ci/run), and the package metadata."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport the package depends on
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"
CHECK = ROOT / ".ci" / "check_wheel.py"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def maturin_steps(job: dict) -> list[dict]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith("PyO3/maturin-action@")]


def test_the_workflow_parses_and_builds_every_platform():
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers and "workflow_dispatch" in triggers
    jobs = flow["jobs"]
    linux = jobs["linux"]["strategy"]["matrix"]
    assert sorted(linux["target"]) == ["aarch64", "x86_64"]
    assert sorted(linux["manylinux"]) == ["manylinux2014", "musllinux_1_2"]
    macos = {m["target"] for m in jobs["macos"]["strategy"]["matrix"]["include"]}
    assert macos == {"x86_64", "aarch64"}
    (windows,) = maturin_steps(jobs["windows"])
    assert windows["with"]["target"] == "x64"
    for name in ("linux", "macos", "windows"):
        (step,) = maturin_steps(jobs[name])
        assert "--release" in step["with"]["args"]
    (sdist,) = maturin_steps(jobs["sdist"])
    assert sdist["with"]["command"] == "sdist"
    assert set(jobs["publish"]["needs"]) == {"linux", "macos", "windows", "sdist"}


def test_wheels_are_abi3_for_every_python_from_310():
    cargo = (ROOT / "Cargo.toml").read_text()
    assert 'features = ["abi3-py310"]' in cargo
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.10"


def fake_wheel(folder: Path, name: str, tags: list[str], glibc: list[str]) -> Path:
    """A wheel file holding a WHEEL record with ``tags`` and a library whose dynamic
    strings name the glibc versions ``glibc``."""
    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "atacformer-0.1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\n" + "".join(f"Tag: {t}\n" for t in tags),
        )
        library = b"\x7fELF" + b"\x00".join(f"GLIBC_{v}".encode() for v in glibc) + b"\x00"
        z.writestr("atacformer/_core.abi3.so", library)
    return path


def check(*wheels: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *map(str, wheels)],
        capture_output=True,
        text=True,
        timeout=60,
    )


GOOD = "atacformer-0.1.0-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"


def test_the_tag_check_passes_a_manylinux2014_abi3_wheel(tmp_path):
    wheel = fake_wheel(
        tmp_path, GOOD, ["cp310-abi3-manylinux2014_x86_64"], ["2.2.5", "2.14", "2.17"]
    )
    out = check(wheel)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok")


@pytest.mark.parametrize(
    ("name", "tags", "glibc", "says"),
    [
        (  # today's tag: glibc 2.34 (Ubuntu 22.04 and later only)
            "atacformer-0.1.0-cp310-abi3-manylinux_2_34_x86_64.whl",
            ["cp310-abi3-manylinux_2_34_x86_64"],
            ["2.17"],
            "not manylinux2014",
        ),
        (  # the right tag on a library that needs a newer glibc
            GOOD,
            ["cp310-abi3-manylinux2014_x86_64"],
            ["2.17", "2.34"],
            "GLIBC_2.34",
        ),
        (  # one wheel per Python version instead of abi3
            "atacformer-0.1.0-cp311-cp311-manylinux2014_x86_64.whl",
            ["cp311-cp311-manylinux2014_x86_64"],
            ["2.17"],
            "not an abi3 wheel",
        ),
    ],
)
def test_the_tag_check_fails_wheels_that_do_not_install_everywhere(
    tmp_path, name, tags, glibc, says
):
    out = check(fake_wheel(tmp_path, name, tags, glibc))
    assert out.returncode == 1
    assert "FAIL" in out.stdout and says in out.stdout, out.stdout


def test_ci_builds_the_manylinux2014_wheel_with_zig_and_checks_it():
    run = (ROOT / ".ci" / "run").read_text()
    build = next(line for line in run.splitlines() if "maturin build" in line)
    assert "--zig" in build and "--compatibility manylinux2014" in build
    assert ".ci/check_wheel.py" in run
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    assert any(d.startswith("ziglang") for d in dev) and any(d.startswith("maturin") for d in dev)


def test_pyproject_has_urls_keywords_and_classifiers():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"Homepage", "Repository", "Issues"} <= set(meta["urls"])
    assert all(u.startswith("https://") for u in meta["urls"].values())
    assert "single-cell" in meta["keywords"] and "ATAC-seq" in meta["keywords"]
    classifiers = set(meta["classifiers"])
    for os_name in ("POSIX :: Linux", "MacOS", "Microsoft :: Windows"):
        assert f"Operating System :: {os_name}" in classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers


def test_readme_says_how_to_install_cpu_only_torch():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
