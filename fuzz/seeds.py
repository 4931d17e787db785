"""Writes the seed corpus fuzz/corpus/<target>/ from tests/data and small hand-written inputs.

Run from the repository root: `python3 fuzz/seeds.py`. Seeds are tiny on purpose; fuzz/run.sh
grows a working corpus (fuzz/work/, not committed) from them. Inputs that fuzzing finds and
that are worth keeping are added by hand (minimised with `cargo fuzz tmin`).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OUT = ROOT / "fuzz" / "corpus"

EOF_MARKER = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def bgzf(text: bytes, block: int = 64) -> bytes:
    """`text` as BGZF with blocks of `block` bytes, then the end-of-file marker."""
    out = b""
    for i in range(0, len(text), block):
        data = text[i : i + block]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = c.compress(data) + c.flush()
        bsize = 18 + len(body) + 8 - 1
        head = bytes.fromhex("1f8b08040000000000ff0600") + b"BC\x02\x00" + struct.pack("<H", bsize)
        out += head + body + struct.pack("<II", zlib.crc32(data), len(data))
    return out + EOF_MARKER


def gz(text: bytes) -> bytes:
    return gzip.compress(text, mtime=0)


def head(path: Path, n: int) -> bytes:
    raw = path.read_bytes()
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return b"".join(text.splitlines(keepends=True)[:n])


def state(specials: list[str], names: list[str], regions: list[tuple[int, int, int]], kind=0):
    """The tokenizer state bytes of rust/core/src/state.rs."""

    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<I", len(b)) + b

    out = b"ATKS\x01" + bytes([kind]) + b"".join(s(x) for x in specials)
    out += struct.pack("<I", len(names)) + b"".join(s(x) for x in names)
    out += struct.pack("<Q", len(regions))
    for col in range(3):
        out += b"".join(struct.pack("<I", r[col]) for r in regions)
    return out


def atok(cells: list[list[int]], names: list[str], pad: int = -1, offsets=None) -> bytes:
    """An .atok file as TokenizedCells.save writes it (offsets may be forced)."""
    ids = [i for c in cells for i in c]
    if offsets is None:
        offsets = [0]
        for c in cells:
            offsets.append(offsets[-1] + len(c))
    text = "\n".join(names).encode()
    out = b"ATOK" + struct.pack("<IQQqQ", 1, len(offsets) - 1, len(ids), pad, len(text))
    out += struct.pack(f"<{len(offsets)}q", *offsets)
    out += struct.pack(f"<{len(ids)}i", *ids) + b"\0" * (-4 * len(ids) % 8)
    return out + text


def main() -> None:
    peaks = head(DATA / "tokenizers" / "peaks.bed", 6)
    scored = head(DATA / "tokenizers" / "peaks.scored.bed", 6)
    frags = [head(p, 8) for p in sorted((DATA / "fragments").glob("*.bed.gz"))]
    bed_texts = [
        peaks,
        scored,
        head(DATA / "hg38.chrom.sizes", 3),
        b"\xef\xbb\xbfchrom\tstart\tend\n# c\nchr1\t10\t20\ntrack x\nchr2  5 9\tn\t0.5\r\n\nchr10\t0\t4294967295",
        b"chr1\t1\t2\nchrom\tstart\tend\n",
        b"chr1\t9\t5\n",
        b"chr1\t-1\t5\nchr1\t1\t4294967296\n",
        b"browser x\nc 1 2 a b\nc\t3\t4\t\tx\n",
        b"chr1\t10\t20\tname\t0.5\r\nchr1\t10\t20 \n",
    ]
    targets: dict[str, list[bytes]] = {
        # First byte: buffer size (low 6 bits), gzip the file (0x80), gzip the copy (0x40).
        "bed": [bytes([f]) + t for t, f in zip(bed_texts, [0, 3, 0x85, 0x41, 1, 0xC7, 2, 9, 0x3F])],
        # Options byte, BGZF block-size byte, then the text.
        "fragments": [bytes([f, b]) + t for t, f, b in zip(
            frags
            + [
                b"chr1\t10\t20\tA\t1\nchr1\t15\t16\tB\t2\nchr2\t55\t56\tA\t1\n",
                b"# comment\nchr1 12 14 AAAC-1 1\nchr1\t0\t300\tC\t1\textra\n\n",
                b"chr1\t10\t20\tA\nchr1\t20\t10\tA\t1\nchr1\t1\t2\tA\tx\n",
                b"chrX\t5\t6\tB\t3\r\nc 0 9 C 1\n",
            ],
            [0x01, 0x00, 0x83, 0x93, 0x8F, 0x02, 0x03],
            [0, 1, 2, 0, 3, 1, 0],
        )],
        "gzip": [
            gz(frags[0]),
            bgzf(frags[1], 40),
            bgzf(frags[2], 4000),
            bgzf(b"chr1\t10\t20\tA\t1\n" * 4, 16)[:-28],  # no end-of-file marker
            gz(b"chr1\t1\t2\tA\t1\n") + gz(b"chr1\t11\t12\tB\t1\n"),
            EOF_MARKER,
            b"chr1\t10\t20\tA\t1\n",
            (DATA / "tokenizers" / "peaks.bed.gz").read_bytes(),
        ],
        "toml": [p.read_bytes() for p in sorted((DATA / "tokenizers").glob("*.toml"))]
        + [
            b'universe = "u.bed"\ntokenizer_type = "ailist"\nspecial_tokens = [\n'
            b'  { name = "pad", token = "<PAD>" },\n  { name = "cls", token = "\\u0001" },\n]\n',
            b'universe = "u.bed"\nspecial_tokens = [{ name = "unk", token = "" }]\n',
            b'universe = "u.bed"\nspecial_tokens = [{ name = "x", token = "y" }]\n',
            b'universe = "a"\nspecial_tokens = [{ name = "unk", token = "a" },'
            b' { name = "unk", token = "b" }]\n',
            b"universe = 5\n",
            gz(b'universe = "../u.bed.gz"\n'),
        ],
        "atok": [
            atok([[1, 2, 3], [], [4]], ["a", "b", "c"]),
            atok([], []),
            atok([[5, 6, 7, 8, 9, 1]], ["cell"], pad=3),
            atok([[1, 2], [3, 4]], ["x", "y"], offsets=[0, 2**63 - 1, -2, 4]),
            atok([[1, 2, 3, 4]], ["x"], offsets=[0, 5]),
            atok([[0] * 9, [1] * 3, [2]], ["\xff".encode("latin-1").decode("latin-1")] * 3),
        ],
        "state": [
            state(
                ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "<sep>"],
                ["chr1", "chr2"],
                [(0, 1, 3), (1, 5, 9)],
            ),
            state(
                ["<UNKNOWN>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "<sep>"],
                ["chr1", "chrX", "unused"],
                [(0, 10, 20), (0, 15, 30), (1, 0, 4294967295), (0, 7, 7)],
                kind=1,
            ),
            state(["a", "b", "c", "d", "e", "f", "g"], ["chr1"], [(0, 1, 2), (0, 1, 2)]),
            state(["a", "a", "c", "d", "e", "f", "g"], ["chr1"], [(0, 1, 2)]),
            state(["chr1:1-2", "b", "c", "d", "e", "f", "g"], ["chr1"], [(0, 1, 2)]),
            b"ATKS\x01\x00garbage",
        ],
    }
    for target, seeds in targets.items():
        folder = OUT / target
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds):
            (folder / f"seed-{i:02d}").write_bytes(seed)


if __name__ == "__main__":
    main()
