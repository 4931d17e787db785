"""``save_pretrained`` under concurrency and on a full disk (issue 12, §2).

Saves racing on one folder must each succeed, a reader racing a writer must always load
the tokenizer, and a failed write names the folder's real file, never a temporary name.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from atacformer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
CUSTOM = REPO / "tests" / "data" / "tokenizers" / "tokenizer_custom_specials.toml"
RACE_SECONDS = 2.0


def same_tokenizer(loaded: Tokenizer, want: Tokenizer) -> bool:
    """Equal by vocabulary size, special tokens and a few decoded ids (not by ``==`` alone)."""
    ids = [0, 1, want.vocab_size - 8, want.vocab_size - 1]
    return (
        loaded.vocab_size == want.vocab_size
        and loaded.special_tokens_map == want.special_tokens_map
        and loaded.convert_ids_to_tokens(ids) == want.convert_ids_to_tokens(ids)
        and loaded == want
    )


def test_custom_tokenizer_is_not_the_default() -> None:
    # The race tests below would pass trivially on a folder that loads as defaults.
    tok = Tokenizer(CUSTOM)
    default = Tokenizer(REPO / "tests" / "data" / "tokenizers" / "peaks.bed")
    assert tok.special_tokens_map != default.special_tokens_map


def test_two_savers_on_one_folder(tmp_path: Path) -> None:
    tok = Tokenizer(CUSTOM)
    folder = tmp_path / "tok"
    tok.save_pretrained(folder)
    errors: list[BaseException] = []
    saves = [0, 0]

    def save(k: int) -> None:
        end = time.monotonic() + RACE_SECONDS
        while time.monotonic() < end:
            try:
                tok.save_pretrained(folder)
                saves[k] += 1
            except Exception as e:  # noqa: BLE001 - every failure is the defect
                errors.append(e)

    threads = [threading.Thread(target=save, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], f"{len(errors)} failed saves, first: {errors[0]}"
    assert min(saves) > 10, saves
    assert same_tokenizer(Tokenizer.from_pretrained(folder), tok)
    # Each save removed its own fresh name: only the published layout is left.
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.toml", "universe.bed.gz"]


def test_a_reader_racing_a_saver_always_loads(tmp_path: Path) -> None:
    tok = Tokenizer(CUSTOM)
    folder = tmp_path / "tok"
    tok.save_pretrained(folder)
    stop = threading.Event()
    errors: list[BaseException] = []
    wrong: list[Tokenizer] = []
    loads = 0

    def save() -> None:
        while not stop.is_set():
            tok.save_pretrained(folder)

    saver = threading.Thread(target=save)
    saver.start()
    try:
        end = time.monotonic() + RACE_SECONDS
        while time.monotonic() < end:
            try:
                loaded = Tokenizer.from_pretrained(folder)
            except Exception as e:  # noqa: BLE001 - every failure is the defect
                errors.append(e)
                continue
            loads += 1
            if not same_tokenizer(loaded, tok):
                wrong.append(loaded)
    finally:
        stop.set()
        saver.join()
    assert errors == [], f"{len(errors)} of {loads + len(errors)} loads failed: {errors[0]}"
    assert wrong == []
    assert loads > 100, loads


def test_full_disk_error_names_the_real_file(tmp_path: Path) -> None:
    old = Tokenizer(CUSTOM)
    folder = tmp_path / "tok"
    old.save_pretrained(folder)
    # A universe whose gzip is far above the file-size limit set in the child.
    rng = random.Random(12)
    starts = sorted(rng.sample(range(0, 10**9, 10), 40_000))
    big = tmp_path / "big.bed"
    big.write_text("".join(f"chr1\t{s}\t{s + rng.randint(1, 9)}\n" for s in starts))
    code = textwrap.dedent(
        f"""
        import resource, signal
        import atacformer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        new = atacformer.Tokenizer({str(big)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))
        try:
            new.save_pretrained({str(folder)!r})
        except atacformer.AtacformerIOError as e:
            print("IO-ERROR", e)
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "IO-ERROR" in p.stdout, p.stdout
    message = p.stdout.split("IO-ERROR", 1)[1]
    assert ".saving-" not in message, message
    assert str(folder / "universe.bed.gz") in message, message
    # The folder still loads as the tokenizer it held, with no leftovers.
    assert same_tokenizer(Tokenizer.from_pretrained(folder), old)
    assert sorted(q.name for q in folder.iterdir()) == ["tokenizer.toml", "universe.bed.gz"]
