"""The strings world: hand-computed primitives and chains, sampling rules, splits."""

from __future__ import annotations

import pytest

from skillbank.worlds import PRIMITIVES, Example, StringsWorld, get_world, split_of

W = StringsWorld()


@pytest.mark.parametrize(
    ("name", "inp", "expected"),
    [
        ("copy", "abcde", "abcde"),
        ("rev", "abcde", "edcba"),
        ("rev", "hgab", "bagh"),
        ("sort", "dbca", "abcd"),
        ("sort", "hgfedcba", "abcdefgh"),
        ("sort", "bab", "abb"),
        ("rot", "abcd", "bcda"),
        ("rot", "hab", "abh"),
        ("shift", "abcde", "bcdef"),
        ("shift", "ghha", "haab"),
        ("dedup", "abcab", "abc"),
        ("dedup", "hhgh", "hg"),
        ("drop", "abcde", "bcd"),
        ("drop", "eaeh", "h"),
        ("swap", "abcde", "badce"),
        ("swap", "abcd", "badc"),
        ("swap", "hg", "gh"),
        ("dup", "abc", "aabbcc"),
        ("dup", "h", "hh"),
    ],
)
def test_primitive(name: str, inp: str, expected: str) -> None:
    assert PRIMITIVES[name](inp) == expected
    assert W.apply(name, inp) == expected


@pytest.mark.parametrize(
    ("task", "inp", "expected"),
    [
        ("rev+sort", "dcab", "abcd"),
        ("shift+dup", "abh", "bbccaa"),
        ("dup+shift", "ah", "bbaa"),
        ("rev+rot", "abcd", "cbad"),
        ("drop+rev", "abcde", "dcb"),
        ("sort+dedup", "cabca", "abc"),
        ("swap+swap", "abcde", "abcde"),
        ("rot+shift+rev", "abch", "badc"),
    ],
)
def test_chain(task: str, inp: str, expected: str) -> None:
    assert W.apply(task, inp) == expected


def test_custom_alphabet_shift_and_sort() -> None:
    w = StringsWorld(alphabet="zyx", min_len=2, max_len=3)
    assert w.apply("shift", "zyx") == "yxz"
    assert w.apply("sort", "xzy") == "zyx"
    assert set(w.charset()) >= set("zyx:=+")
    for ex in w.examples("rev", 20, seed=0):
        assert set(ex.prompt[4:-1]) <= set("zyx")


def test_tasks_and_charset() -> None:
    assert W.tasks() == ["copy", "rev", "sort", "rot", "shift", "dedup", "drop", "swap", "dup"]
    cs = W.charset()
    assert cs == "".join(sorted(set(cs)))
    assert set(cs) == set("abcdefgh") | set("".join(W.tasks())) | set(":=+")
    assert not set(cs) & set("ABCDEFGH")


@pytest.mark.parametrize("task", [*PRIMITIVES, "rev+sort", "shift+dup", "drop+swap"])
def test_examples_are_well_formed(task: str) -> None:
    exs = W.examples(task, 200, seed=3)
    assert len(exs) == 200
    assert len({e.prompt for e in exs}) == 200
    allowed = set(W.charset())
    for ex in exs:
        assert ex.task == task
        assert ex.prompt.startswith(f"{task}:") and ex.prompt.endswith("=")
        s = ex.prompt[len(task) + 1 : -1]
        assert 4 <= len(s) <= 8 and set(s) <= set("abcdefgh")
        assert ex.target == W.apply(task, s)
        assert ex.target and len(ex.target) <= W.max_target_len(task)
        assert set(ex.prompt + ex.target) <= allowed
        if task != "copy":
            assert ex.target != s  # copying the input never solves a non-identity task


def test_dedup_and_drop_inputs_need_the_skill() -> None:
    for ex in W.examples("dedup", 200, seed=1):
        s = ex.prompt[len("dedup:") : -1]
        assert len(set(s)) < len(s)
    for ex in W.examples("drop", 200, seed=1):
        s = ex.prompt[len("drop:") : -1]
        assert "a" in s or "e" in s


@pytest.mark.parametrize("task", ["copy", "rev+rev", "swap+swap"])
def test_identity_tasks_still_generate(task: str) -> None:
    exs = W.examples(task, 50, seed=0)
    assert all(e.target == e.prompt[len(task) + 1 : -1] for e in exs)


@pytest.mark.parametrize(
    ("task", "bound"), [("rev", 8), ("dup", 16), ("dup+dup", 32), ("dup+rev+dup", 32)]
)
def test_max_target_len(task: str, bound: int) -> None:
    assert W.max_target_len(task) == bound


def test_grade() -> None:
    ex = Example("rev", "rev:abcde=", "edcba")
    assert W.grade(ex, "edcba")
    assert W.grade(ex, " edcba\n")
    assert not W.grade(ex, "edcb")
    assert not W.grade(ex, "EDCBA")
    assert not W.grade(ex, "edcbaa")


def test_determinism_and_seeds() -> None:
    a = W.examples("rev+sort", 50, seed=7)
    assert a == W.examples("rev+sort", 50, seed=7)
    assert a == StringsWorld().examples("rev+sort", 50, seed=7)
    assert a != W.examples("rev+sort", 50, seed=8)
    assert W.examples("rev", 50, seed=7, split="eval") == W.examples(
        "rev", 50, seed=7, split="eval"
    )


@pytest.mark.parametrize("task", ["rev", "dedup", "shift+dup"])
def test_train_eval_disjoint(task: str) -> None:
    train = {e.prompt for e in W.examples(task, 500, seed=0, split="train")}
    evals = {e.prompt for e in W.examples(task, 500, seed=0, split="eval")}
    assert len(train) == len(evals) == 500
    assert not train & evals
    assert all(split_of(p[len(task) + 1 : -1]) == "eval" for p in evals)
    assert all(split_of(p[len(task) + 1 : -1]) == "train" for p in train)


def test_small_space_repeats_instead_of_hanging() -> None:
    w = StringsWorld(alphabet="ab", min_len=2, max_len=2)
    exs = w.examples("rev", 20, seed=0)
    assert len(exs) == 20
    assert {e.prompt for e in exs} <= {"rev:ab=", "rev:ba="}


@pytest.mark.parametrize("task", ["upper", "rev+", "", "+rev", "rev+upper", "REV"])
def test_unknown_task(task: str) -> None:
    with pytest.raises(ValueError, match="known tasks: copy, rev"):
        W.examples(task, 1, seed=0)
    with pytest.raises(ValueError, match="unknown task"):
        W.max_target_len(task)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        W.examples("rev", 1, seed=0, split="test")
    with pytest.raises(ValueError, match="non-negative"):
        W.examples("rev", -1, seed=0)
    assert W.examples("rev", 0, seed=0) == []
    for kwargs in (
        {"alphabet": "a"},
        {"alphabet": "abca"},
        {"alphabet": "ab:"},
        {"min_len": 5, "max_len": 4},
    ):
        with pytest.raises(ValueError):
            StringsWorld(**kwargs)


def test_registry() -> None:
    assert isinstance(get_world(), StringsWorld)
    assert get_world("strings", alphabet="abcd").alphabet == "abcd"
    with pytest.raises(ValueError, match="known worlds: strings, lego, arith, files"):
        get_world("nope")
    with pytest.raises(ValueError, match="bad arguments"):
        get_world("strings", colour="red")
