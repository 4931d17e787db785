"""Tokenizer: constructors, overlap semantics against an oracle, conversions, vocabulary."""

from __future__ import annotations

import gzip
import pickle
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import atacformer
from atacformer import Region, RegionSet, Tokenizer

from conftest import oracle_ids, write_bed


def test_hand_checked_overlaps(small_universe):
    rows, path = small_universe
    tok = Tokenizer(path)
    assert tok.vocab_size == len(tok) == 5 + 7
    q = RegionSet.from_regions(
        [
            Region("chr1", 125, 126),  # in 4, 1, 0, 3 -> sorted by (start, end): 4, 1, 0, 3
            Region("chrUn", 0, 10),  # unknown chromosome: nothing
            Region("chr2", 20, 30),  # touches the end of chr2:10-20 only: nothing
            Region("chr1", 150, 150),  # zero width, strictly inside 4 and 0: 4, 0
            Region("chr2", 15, 16),  # 2
        ]
    )
    assert tok(q)["input_ids"].tolist() == [4, 1, 0, 3, 4, 0, 2]
    assert tok.tokenize(q) == [
        "chr1:0-1000",
        "chr1:50-150",
        "chr1:100-200",
        "chr1:120-130",
        "chr1:0-1000",
        "chr1:100-200",
        "chr2:10-20",
    ]
    none = RegionSet.from_regions([Region("chr3", 1, 2)])
    assert tok(none)["input_ids"].tolist() == [tok.unk_token_id] == [5]
    assert tok(RegionSet.from_regions([]))["input_ids"].tolist() == [5]
    assert tok(q)["input_ids"].tolist() == oracle_ids(rows, [(r.chr, r.start, r.end) for r in q])


def _random_case(rng: random.Random, n_universe: int, n_queries: int):
    chroms = [f"chr{i}" for i in range(1, 12)]
    universe, seen = [], set()
    while len(universe) < n_universe:
        c = rng.choice(chroms[:-1])  # the last chromosome has no universe regions
        s = rng.randrange(0, 200_000)
        kind = rng.random()
        w = rng.randrange(0, 80_000) if kind < 0.05 else 0 if kind < 0.1 else rng.randrange(1, 2000)
        if (c, s, s + w) not in seen:
            seen.add((c, s, s + w))
            universe.append((c, s, s + w))
    queries = []
    for _ in range(n_queries):
        c = rng.choice(chroms)
        s = rng.randrange(0, 210_000)
        w = 0 if rng.random() < 0.15 else rng.randrange(1, 5000)
        queries.append((c, s, s + w))
    return universe, queries


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_universes_match_brute_force_oracle(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    universe, queries = _random_case(rng, 3000, 2000)
    tok = Tokenizer(write_bed(tmp_path / "u.bed.gz", universe, gz=True))
    want = oracle_ids(universe, queries)
    qpath = write_bed(tmp_path / "q.bed", queries)
    rs = RegionSet(qpath)
    forms = {
        "RegionSet": rs,
        "path": qpath,
        "str path": str(qpath),
        "regions": [Region(*q) for q in queries],
        "tuples": queries,
        "dataframe": pd.DataFrame(queries, columns=["chr", "start", "end"]),
    }
    for name, form in forms.items():
        assert tok(form)["input_ids"].tolist() == want, name
    # Queries one at a time agree with the whole set (no cross-query state).
    for q in queries[:200]:
        assert tok([q])["input_ids"].tolist() == oracle_ids(universe, [q])


def test_call_returns_owned_int64_arrays_and_tensors(small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    enc = tok([("chr1", 125, 126)])
    assert set(enc) == {"input_ids", "attention_mask"}
    ids = enc["input_ids"]
    assert ids.dtype == np.int64 and ids.ndim == 1 and ids.flags.owndata is False
    assert ids.base is not None  # memory owned by the Rust buffer, not a converted list
    assert enc.attention_mask.tolist() == [1, 1, 1, 1]
    with pytest.raises(KeyError):
        enc["token_type_ids"]
    import torch

    pt = tok([("chr1", 125, 126)], return_tensors="pt")
    assert isinstance(pt["input_ids"], torch.Tensor) and pt["input_ids"].dtype == torch.int64
    assert pt["input_ids"].tolist() == [4, 1, 0, 3]


def test_encode_decode_and_conversions(small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    assert tok.encode("chr1:120-130") == [3]
    assert tok.encode(["chr2:10-20", "chr9:1-2", "<pad>", "garbage"]) == [2, 5, 6, 5]
    assert tok.decode(3) == ["chr1:120-130"]
    assert tok.decode([0, 11, 99, -1]) == ["chr1:100-200", "<sep>", "<unk>", "<unk>"]
    assert tok.decode(np.array([2, 4], dtype=np.int32)) == ["chr2:10-20", "chr1:0-1000"]
    assert tok.convert_tokens_to_ids("chr1:50-150") == 1
    assert tok.convert_tokens_to_ids(["chr1:50-150"]) == [1]
    assert tok.convert_ids_to_tokens(1) == "chr1:50-150"
    assert tok.convert_ids_to_tokens(np.int64(1)) == "chr1:50-150"
    assert tok.convert_ids_to_tokens([1, 7]) == ["chr1:50-150", "<mask>"]
    import torch

    assert tok.decode(torch.tensor([4, 8])) == ["chr1:0-1000", "<cls>"]
    regions = tok.decode_regions([3, 5, 0, 11])
    assert [str(r) for r in regions] == ["chr1:120-130", "chr1:100-200"]


def test_vocabulary_and_special_tokens(small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    vocab = tok.get_vocab()
    assert len(vocab) == 12
    assert vocab["chr1:100-200"] == 0 and vocab["chr1:0-1000"] == 4 and vocab["<sep>"] == 11
    names = ["unk", "pad", "mask", "cls", "eos", "bos", "sep"]
    for i, n in enumerate(names):
        assert getattr(tok, f"{n}_token") == f"<{n}>"
        assert getattr(tok, f"{n}_token_id") == 5 + i
    assert tok.special_tokens_map == {f"{n}_token": f"<{n}>" for n in names}
    assert tok.all_special_ids == list(range(5, 12))
    assert tok.get_special_tokens_mask([0, 5, 11, 4]) == [0, 1, 1, 0]
    assert tok.get_special_tokens_mask(["<pad>", "chr2:10-20"]) == [1, 0]
    # Generators are read once; NumPy strings work; an unknown string is not special.
    assert tok.get_special_tokens_mask(t for t in ["<unk>", "chr1:50-150"]) == [1, 0]
    assert tok.get_special_tokens_mask(i for i in [6, 0]) == [1, 0]
    assert tok.get_special_tokens_mask(np.array(["<sep>", "chr1:50-150"])) == [1, 0]
    assert tok.get_special_tokens_mask(["bogus", "<mask>"]) == [0, 1]
    assert "vocab_size=12" in repr(tok)


def test_tokenizer_is_immutable(small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    for name in ["pad_token_id", "unk_token", "sep_token"]:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(tok, name, 0)
    assert tok.pad_token_id == 6 and tok.unk_token == "<unk>"
    assert tok([("chr9", 1, 2)])["input_ids"].tolist() == [5]


def test_only_exact_token_strings_have_ids(small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    unk = tok.unk_token_id
    # Tokens are written without leading zeros or signs, so these name no region.
    assert tok.encode(["chr1:0100-200", "chr1:100-0200", "chr1:+100-200"]) == [unk] * 3
    assert tok.encode(["chr1:100-200", "chr1:0-1000"]) == [0, 4]
    assert tok.decode(2**70) == ["<unk>"]
    assert tok.decode([2**70, 0]) == ["<unk>", "chr1:100-200"]
    for call in [lambda: tok.decode(1.0), lambda: tok.encode(5), lambda: tok.encode([1])]:
        with pytest.raises(atacformer.AtacformerTypeError):
            call()


def test_constructors_choose_by_path(peaks_dir: Path, tmp_path: Path):
    plain = Tokenizer(peaks_dir / "peaks.bed")
    for t in (
        Tokenizer(peaks_dir / "peaks.bed.gz"),
        Tokenizer(str(peaks_dir / "tokenizer.toml")),
        Tokenizer.from_config(peaks_dir / "tokenizer_ordered.toml"),
    ):
        assert t == plain
    assert plain.vocab_size == 25 + 7
    # The shared scored universe has a broken last line (end 4915618 < start 49155935).
    with pytest.raises(atacformer.ParseError, match=r"peaks.scored.bed:25: start > end"):
        Tokenizer.from_bed(peaks_dir / "peaks.scored.bed")
    lines = (peaks_dir / "peaks.scored.bed").read_text().splitlines()[:24]
    scored = tmp_path / "scored.bed"
    scored.write_text("\n".join(lines) + "\n")
    assert Tokenizer.from_bed(scored).vocab_size == 24 + 7
    custom = Tokenizer.from_config(peaks_dir / "tokenizer_custom_specials.toml")
    assert custom.unk_token == "<UNKNOWN>" and custom.pad_token == "<pad>"
    assert custom != plain
    ail = tmp_path / "ail.toml"
    ail.write_text(f'universe = "{peaks_dir / "peaks.bed"}"\ntokenizer_type = "ailist"\n')
    assert Tokenizer(ail).tokenizer_type == "ailist"
    with pytest.raises(atacformer.ParseError, match="tokenizer_bad_ttype.toml:2"):
        Tokenizer(peaks_dir / "tokenizer_bad_ttype.toml")


def test_universe_ids_follow_file_order(peaks_dir: Path):
    tok = Tokenizer(peaks_dir / "peaks.bed")
    lines = (peaks_dir / "peaks.bed").read_text().split("\n")
    for i, line in enumerate(filter(None, lines)):
        c, s, e = line.split("\t")[:3]
        assert tok.convert_tokens_to_ids(f"{c}:{s}-{e}") == i


def test_save_pretrained_round_trip(peaks_dir: Path, tmp_path: Path):
    tok = Tokenizer.from_config(peaks_dir / "tokenizer_custom_specials.toml")
    tok.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "tokenizer.toml",
        "universe.bed.gz",
    ]
    back = Tokenizer.from_pretrained(tmp_path / "saved")
    assert back == tok and back.unk_token == "<UNKNOWN>"
    assert back.get_vocab() == tok.get_vocab()
    written = gzip.decompress((tmp_path / "saved" / "universe.bed.gz").read_bytes()).decode()
    assert written.splitlines() == (peaks_dir / "peaks.bed").read_text().splitlines()


def test_from_pretrained_directory_fallbacks(peaks_dir: Path, tmp_path: Path):
    only_gz = tmp_path / "gz"
    only_gz.mkdir()
    (only_gz / "universe.bed.gz").write_bytes((peaks_dir / "peaks.bed.gz").read_bytes())
    only_bed = tmp_path / "bed"
    only_bed.mkdir()
    (only_bed / "universe.bed").write_text((peaks_dir / "peaks.bed").read_text())
    want = Tokenizer(peaks_dir / "peaks.bed")
    assert Tokenizer.from_pretrained(only_gz) == want == Tokenizer.from_pretrained(str(only_bed))
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_pretrained(tmp_path)  # a folder with none of the files


def test_pickle_round_trip(peaks_dir: Path):
    tok = Tokenizer.from_config(peaks_dir / "tokenizer_custom_specials.toml")
    back = pickle.loads(pickle.dumps(tok))
    assert back == tok and back.unk_token == "<UNKNOWN>"
    rs = RegionSet(peaks_dir / "peaks.bed")
    assert back(rs)["input_ids"].tolist() == tok(rs)["input_ids"].tolist()


def test_memory_per_region_within_budget(tmp_path: Path):
    rng = np.random.default_rng(0)
    n = 200_000
    starts = np.sort(rng.choice(2**31, n, replace=False))
    rs = RegionSet.from_arrays(np.full(n, "chr1"), starts, starts + 500)
    rs.to_bed(tmp_path / "big.bed")
    tok = Tokenizer(tmp_path / "big.bed")
    assert tok._tok.heap_bytes / n <= 48


def test_universe_id_names_the_regions_in_id_order(tmp_path: Path):
    import hashlib

    a = write_bed(tmp_path / "a.bed", [("chr1", 10, 20), ("chr2", 5, 9)])
    b = write_bed(tmp_path / "b.bed", [("chr2", 5, 9), ("chr1", 10, 20)])
    tok_a, tok_b = Tokenizer.from_bed(a), Tokenizer.from_bed(b)
    # RegionSet.identifier: md5 of the md5s of the comma-joined chroms, starts and ends.
    parts = [b"chr1,chr2", b"10,5", b"20,9"]
    expected = hashlib.md5(",".join(hashlib.md5(p).hexdigest() for p in parts).encode()).hexdigest()
    assert tok_a.universe_id == expected
    assert Tokenizer.from_bed(a).universe_id == expected
    assert tok_b.universe_id != expected
