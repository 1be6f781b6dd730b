"""The arith world: exact values, operand widths, negatives, splits."""

from __future__ import annotations

import re

import pytest

from skillbank.worlds import ArithWorld, Example, get_world, split_of
from skillbank.worlds.arith import make_example, parse_task

W = ArithWorld()
PROMPT_RE = re.compile(r"^(\d+)([-+*])(\d+)=$")


@pytest.mark.parametrize(
    ("task", "a", "b", "prompt", "target"),
    [
        ("add2", 12, 34, "12+34=", "46"),
        ("add1", 9, 9, "9+9=", "18"),
        ("add3", 999, 999, "999+999=", "1998"),
        ("sub2", 12, 34, "12-34=", "-22"),
        ("sub1", 3, 7, "3-7=", "-4"),
        ("sub2", 50, 50, "50-50=", "0"),
        ("sub3", 700, 123, "700-123=", "577"),
        ("mul3", 123, 456, "123*456=", "56088"),
        ("mul1", 0, 7, "0*7=", "0"),
        ("mul2", 99, 99, "99*99=", "9801"),
    ],
)
def test_exact_values(task: str, a: int, b: int, prompt: str, target: str) -> None:
    assert make_example(task, a, b) == Example(task, prompt, target)


def test_tasks_and_parsing() -> None:
    expected = [
        "add1",
        "add2",
        "add3",
        "add4",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "mul1",
        "mul2",
        "mul3",
    ]
    assert W.tasks() == expected
    assert parse_task("add6") == ("add", 6)
    assert parse_task("mul1") == ("mul", 1)
    assert W.charset() == "*+-0123456789="


@pytest.mark.parametrize("task", ["add0", "add7", "div2", "add", "Add2", "add12", "", "rev"])
def test_unknown_task(task: str) -> None:
    with pytest.raises(ValueError, match="known tasks: add1, add2"):
        W.examples(task, 1, seed=0)


@pytest.mark.parametrize(
    ("task", "bound"), [("add1", 2), ("add4", 5), ("sub2", 3), ("mul1", 2), ("mul3", 6)]
)
def test_max_target_len(task: str, bound: int) -> None:
    assert W.max_target_len(task) == bound


@pytest.mark.parametrize("task", [*ArithWorld().tasks(), "add6", "sub5", "mul4"])
def test_generated_examples_are_exact(task: str) -> None:
    d = int(task[3:])
    exs = W.examples(task, 100, seed=2)
    assert len(exs) == 100
    for ex in exs:
        m = PROMPT_RE.match(ex.prompt)
        assert m, ex.prompt
        a_s, sym, b_s = m.groups()
        assert sym == {"add": "+", "sub": "-", "mul": "*"}[task[:3]]
        for operand in (a_s, b_s):
            assert len(operand) == d
            assert d == 1 or operand[0] != "0"
        a, b = int(a_s), int(b_s)
        value = a + b if sym == "+" else a - b if sym == "-" else a * b
        assert ex.target == str(value)
        assert len(ex.target) <= W.max_target_len(task)
        assert W.grade(ex, f" {value} ")
        assert not W.grade(ex, str(value + 1))
    if d > 1:
        assert len({e.prompt for e in exs}) == 100


def test_sub_has_negatives() -> None:
    targets = [e.target for e in W.examples("sub3", 200, seed=0)]
    assert any(t.startswith("-") for t in targets) and any(not t.startswith("-") for t in targets)


def test_determinism_and_seeds() -> None:
    for task in ("add2", "mul3"):
        a = W.examples(task, 30, seed=1)
        assert a == ArithWorld().examples(task, 30, seed=1)
        assert a != W.examples(task, 30, seed=2)


@pytest.mark.parametrize("task", ["sub2", "add3"])
def test_train_eval_disjoint(task: str) -> None:
    train = {e.prompt for e in W.examples(task, 500, seed=0, split="train")}
    evals = {e.prompt for e in W.examples(task, 500, seed=0, split="eval")}
    assert len(train) == len(evals) == 500
    assert not train & evals
    assert all(split_of(p) == "eval" for p in evals)


def test_small_space_covers_the_split_then_repeats() -> None:
    space = {f"{a}+{b}=" for a in range(10) for b in range(10)}
    eval_space = {p for p in space if split_of(p) == "eval"}
    exs = W.examples("add1", 50, seed=0, split="eval")
    assert len(exs) == 50
    assert {e.prompt for e in exs} == eval_space
    train = W.examples("add1", len(space) - len(eval_space), seed=0)
    assert {e.prompt for e in train} == space - eval_space


def test_registry() -> None:
    assert isinstance(get_world("arith"), ArithWorld)
    with pytest.raises(ValueError, match="split"):
        W.examples("add2", 1, seed=0, split="dev")
