"""The shipped Debian text world, the build rule that makes it, and the files-world features
it relies on (gzip, groups, few-shot subsets, refused rows)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from skillbank.worlds import FilesWorld, get_world, pinned_args, split_of
from skillbank.worlds.files import DEBIAN_DATA

ROOT = Path(__file__).resolve().parents[2]


def load_builder():
    spec = importlib.util.spec_from_file_location("build_debian", ROOT / "dev/build_debian.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_file_is_small_real_and_as_documented() -> None:
    assert DEBIAN_DATA.stat().st_size <= 2 * 2**20
    rows = [json.loads(line) for line in gzip.open(DEBIAN_DATA, "rt", encoding="utf-8")]
    assert len(rows) == 8178
    world = get_world("debian")
    assert world.tasks() == ["desktop", "media", "net", "science", "system", "writing"]
    assert world.labels("media") == ["graphics", "sound", "video"]
    counts = Counter((r["task"], r["label"]) for r in rows)
    assert len(counts) == 23 and all(3 <= n for n in Counter(t for t, _ in counts).values())
    assert counts["media", "sound"] == 400 and counts["writing", "tex"] == 144
    # at least 300 per class where the archive has them: the capped classes hold 400
    assert sum(n >= 300 for n in counts.values()) >= 17
    for task in world.tasks():   # exact duplicates removed within a task
        texts = [r["text"] for r in rows if r["task"] == task]
        assert len(texts) == len(set(texts))
    # every row's split follows its source package, so siblings never straddle the split
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(split_of(r["group"]))
    assert all(len(s) == 1 for s in by_group.values())
    train = world.examples("net", 0, seed=0, split="train")
    held = world.examples("net", 0, seed=0, split="eval")
    assert not {e.prompt for e in train} & {e.prompt for e in held}
    assert len(held) == 159 and len(train) == 1244


def test_few_shot_subsets_are_fixed_per_label() -> None:
    full = get_world("debian")
    for k in (16, 64):
        w = get_world("debian", shots=k)
        train = w.examples("science", 0, seed=0, split="train")
        assert Counter(e.target for e in train) == {lab: k for lab in w.labels("science")}
        # the same subset for every seed (only the order changes)
        assert sorted(e.prompt for e in w.examples("science", 0, seed=5, split="train")) == \
            sorted(e.prompt for e in train)
        # the eval split is never cut
        assert w.examples("science", 0, 0, "eval") == full.examples("science", 0, 0, "eval")
    # the subset is the k smallest sha256 of each label's train texts (by hand, for one label)
    pool = [e.prompt for e in full.examples("media", 0, 0, "train") if e.target == "video"]
    want = sorted(pool, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:16]
    got = [e.prompt for e in get_world("debian", shots=16).examples("media", 0, 0, "train")
           if e.target == "video"]
    assert sorted(got) == sorted(want)
    # recipes name the shipped data by content
    assert pinned_args("debian", {"shots": 16}) == {
        "shots": 16, "sha256": hashlib.sha256(DEBIAN_DATA.read_bytes()).hexdigest()}
    with pytest.raises(ValueError, match="changed since the recipe"):
        get_world("debian", sha256="0" * 64)
    with pytest.raises(ValueError, match="shots must be"):
        get_world("debian", shots=-1)


DUMP = """Package: gimp
Source: gimp
Section: graphics
Description: GNU Image   Manipulation Program

Package: gimp-data
Source: gimp
Section: graphics
Description: Data files for GIMP

Package: sox
Section: sound
Description: Swiss army knife of sound processing

Package: sox-twin
Section: contrib/sound
Description: Swiss army knife of sound processing

Package: clash
Section: video
Description: Data files for GIMP

Package: nosection
Description: dropped: no section

Package: other
Section: perl
Description: dropped: not a section of any task
"""


def test_build_rule_by_hand(tmp_path: Path) -> None:
    b = load_builder()
    rows = b.build(DUMP)
    # "Data files for GIMP" is under graphics and video in one task: dropped;
    # sox and sox-twin (contrib/sound -> sound) share a text: kept once
    assert [(r["label"], r["text"], r["group"]) for r in rows] == [
        ("graphics", "GNU Image Manipulation Program", "gimp"),
        ("sound", "Swiss army knife of sound processing", "sox"),
    ]
    b.write(rows, tmp_path / "d.jsonl.gz")
    first = (tmp_path / "d.jsonl.gz").read_bytes()
    b.write(rows, tmp_path / "d.jsonl.gz")
    assert (tmp_path / "d.jsonl.gz").read_bytes() == first   # byte-for-byte reproducible
    w = FilesWorld(tmp_path / "d.jsonl.gz")
    assert w.tasks() == ["media"]


def test_groups_decide_the_split(tmp_path: Path) -> None:
    rows = [{"task": "t", "text": f"text {i}", "label": "ab"[i % 2], "group": f"g{i // 4}"}
            for i in range(400)]
    p = tmp_path / "g.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = FilesWorld(p)
    held = {e.prompt for e in w.examples("t", 0, 0, "eval")}
    want = {r["text"] for r in rows if split_of(r["group"]) == "eval"}
    assert held == want and 0 < len(held) < 400


@pytest.mark.parametrize("rows, message", [
    ([{"task": "t", "text": "  ", "label": "a"}], "line 1: empty text"),
    ([{"task": "t", "text": "x", "label": ""}], "line 1: empty label"),
])
def test_refused_rows(tmp_path: Path, rows, message) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=message):
        FilesWorld(p)


def test_label_only_in_eval_is_refused(tmp_path: Path) -> None:
    texts = [f"row {i}" for i in range(200)]
    held = next(t for t in texts if split_of(t) == "eval")
    rows = [{"task": "t", "text": t, "label": "only-eval" if t == held else "ab"[i % 2]}
            for i, t in enumerate(texts)]
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="'only-eval' appear only in the eval split"):
        FilesWorld(p).labels("t")


def test_gzip_damage_and_bom(tmp_path: Path) -> None:
    bad = tmp_path / "d.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        FilesWorld(bad)
    csv_bom = tmp_path / "d.csv"
    csv_bom.write_bytes("\ufefftask,text,label\nt,hello,a\n".encode())
    assert FilesWorld(csv_bom).examples("t", 0, 0, split_of("hello"))[0].prompt == "hello"
    latin = tmp_path / "l.csv"
    latin.write_bytes("task,text,label\nt,caf\xe9,a\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text"):
        FilesWorld(latin)
