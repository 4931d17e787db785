"""Checks that Linux wheels install on glibc 2.17 (manylinux2014) and are abi3.

Usage: python3 .ci/check_wheel.py WHEEL [WHEEL ...]

For each wheel: its file name and its WHEEL metadata must carry a manylinux2014 /
manylinux_2_17 tag (or musllinux) and the abi3 tag, and no shared library inside may ask
for a glibc symbol version above 2.17. Prints one line per wheel; exits 1 on a failure.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

GLIBC_FLOOR = (2, 17)
LINUX_TAGS = re.compile(r"(manylinux2014|manylinux_2_17|musllinux_\d+_\d+)_(x86_64|aarch64)")
GLIBC_VERSION = re.compile(rb"GLIBC_(\d+)\.(\d+)")


def problems(wheel: Path) -> list[str]:
    """What is wrong with ``wheel`` (empty when it is fine)."""
    found: list[str] = []
    name = wheel.name
    if not name.endswith(".whl"):
        return [f"{name}: not a wheel file name"]
    tags = name[:-4].split("-")[-3:]  # python tag, abi tag, platform tag
    if len(tags) != 3 or tags[1] != "abi3":
        found.append(f"{name}: not an abi3 wheel (tags {'-'.join(tags)})")
    if not LINUX_TAGS.search(tags[-1] if tags else ""):
        found.append(f"{name}: platform tag {tags[-1] if tags else '?'} is not manylinux2014")
    try:
        with zipfile.ZipFile(wheel) as z:
            metadata = [n for n in z.namelist() if n.endswith(".dist-info/WHEEL")]
            if not metadata:
                found.append(f"{name}: no .dist-info/WHEEL file")
            else:
                text = z.read(metadata[0]).decode("utf-8", "replace")
                tag_lines = [t for t in text.splitlines() if t.startswith("Tag:")]
                if not any(LINUX_TAGS.search(t) for t in tag_lines):
                    found.append(f"{name}: WHEEL says {tag_lines}, not manylinux2014")
            for member in z.namelist():
                if not member.endswith(".so"):
                    continue
                versions = {
                    (int(a), int(b)) for a, b in GLIBC_VERSION.findall(z.read(member))
                }
                newest = max(versions, default=None)
                if newest is not None and newest > GLIBC_FLOOR:
                    found.append(
                        f"{name}: {member} needs GLIBC_{newest[0]}.{newest[1]}, "
                        f"above {GLIBC_FLOOR[0]}.{GLIBC_FLOOR[1]}"
                    )
    except (OSError, zipfile.BadZipFile) as e:
        found.append(f"{name}: cannot read the wheel ({e})")
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check_wheel.py WHEEL [WHEEL ...]", file=sys.stderr)
        return 2
    failed = False
    for arg in argv:
        wrong = problems(Path(arg))
        failed = failed or bool(wrong)
        for line in wrong:
            print(f"FAIL {line}")
        if not wrong:
            print(f"ok   {Path(arg).name}: abi3, manylinux2014 (glibc <= 2.17)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
