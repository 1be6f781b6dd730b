"""The LEGO world: prompts are parsed and resolved independently of the generator."""

from __future__ import annotations

import re

import pytest

from skillbank.worlds import Example, LegoWorld, get_world, split_of

W = LegoWorld()
PROMPT_RE = re.compile(r"^Input: (.*) \. Output: ([a-z]) = val $")
ROOT_RE = re.compile(r"^([a-z]) = val ([01])$")
CHILD_RE = re.compile(r"^([a-z]) = (val|not) ([a-z])$")


def resolve(prompt: str) -> tuple[str, list[str], dict[str, int]]:
    """(queried variable, variables in chain order, value of every variable)."""
    m = PROMPT_RE.match(prompt)
    assert m, prompt
    clauses, query = m.group(1).split(" , "), m.group(2)
    roots = [ROOT_RE.match(c) for c in clauses if ROOT_RE.match(c)]
    assert len(roots) == 1
    children = {}
    for c in clauses:
        if not ROOT_RE.match(c):
            cm = CHILD_RE.match(c)
            assert cm, c
            children[cm.group(3)] = (cm.group(1), cm.group(2))
    order = [roots[0].group(1)]
    values = {order[0]: int(roots[0].group(2))}
    while order[-1] in children:
        child, op = children[order[-1]]
        values[child] = values[order[-1]] if op == "val" else 1 - values[order[-1]]
        order.append(child)
    assert len(order) == len(clauses) == len(set(order))
    return query, order, values


def test_tasks_and_charset() -> None:
    assert W.tasks() == ["1", "2", "3", "4", "5"]
    assert LegoWorld(k=3).tasks() == ["1", "2", "3"]
    cs = W.charset()
    assert cs == "".join(sorted(set(cs)))
    assert set(" ,.:=01IO") | set("abcdefghijklmnopqrstuvwxyz") == set(cs)


def test_hand_resolved_prompt() -> None:
    prompt = "Input: c = not q , q = val 1 , z = val c . Output: z = val "
    assert resolve(prompt) == ("z", ["q", "c", "z"], {"q": 1, "c": 0, "z": 0})


@pytest.mark.parametrize("task", ["1", "2", "3", "4", "5"])
def test_targets_are_right(task: str) -> None:
    exs = W.examples(task, 200, seed=11)
    assert len({e.prompt for e in exs}) == 200
    for ex in exs:
        query, order, values = resolve(ex.prompt)
        assert len(order) == 5
        assert order.index(query) == int(task) - 1  # skill i = i-th variable, root is 1
        assert ex.target == str(values[query])
        assert ex.task == task
        assert set(ex.prompt + ex.target) <= set(W.charset())
        assert len(ex.target) <= W.max_target_len(task)


def test_targets_and_clause_forms_are_varied() -> None:
    exs = W.examples("5", 300, seed=0)
    assert {e.target for e in exs} == {"0", "1"}
    text = " ".join(e.prompt for e in exs)
    assert " = not " in text and re.search(r"[a-z] = val [a-z]", text)
    first = {e.prompt[len("Input: ") :].split(" , ")[0][0] for e in exs}
    assert len(first) > 5  # clauses are shuffled, names random


def test_other_k() -> None:
    w = LegoWorld(k=3)
    for ex in w.examples("3", 50, seed=0):
        query, order, values = resolve(ex.prompt)
        assert len(order) == 3 and order[2] == query and ex.target == str(values[query])


def test_grade() -> None:
    ex = Example("2", "Input: a = val 1 , b = not a . Output: b = val ", "0")
    assert W.grade(ex, "0") and W.grade(ex, " 0\n")
    assert not W.grade(ex, "1") and not W.grade(ex, "00")


def test_determinism_and_seeds() -> None:
    a = W.examples("3", 40, seed=5)
    assert a == LegoWorld().examples("3", 40, seed=5)
    assert a != W.examples("3", 40, seed=6)


def clause_string(prompt: str) -> str:
    m = PROMPT_RE.match(prompt)
    assert m
    return m.group(1)


def test_train_eval_disjoint() -> None:
    train = {clause_string(e.prompt) for t in ("1", "5") for e in W.examples(t, 500, 0, "train")}
    evals = {clause_string(e.prompt) for t in ("1", "5") for e in W.examples(t, 500, 0, "eval")}
    assert not train & evals
    assert all(split_of(c) == "eval" for c in evals)
    assert all(split_of(c) == "train" for c in train)


@pytest.mark.parametrize("task", ["0", "6", "a", "", "1+2"])
def test_unknown_task(task: str) -> None:
    with pytest.raises(ValueError, match="known tasks: 1, 2, 3, 4, 5"):
        W.examples(task, 1, seed=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LegoWorld(k=0)
    with pytest.raises(ValueError):
        LegoWorld(k=27)
    with pytest.raises(ValueError, match="split"):
        W.examples("1", 1, seed=0, split="valid")
    assert isinstance(get_world("lego", k=4), LegoWorld)
    assert get_world("lego", k=4).tasks() == ["1", "2", "3", "4"]
