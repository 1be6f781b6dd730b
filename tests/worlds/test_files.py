"""The files world: JSONL and CSV, both kinds, splits, and every bad-file error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skillbank.worlds import Example, FilesWorld, get_world, split_of


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GEN_ROWS = [{"task": "greet", "input": f"hello {i}", "target": f"hi {i}"} for i in range(40)] + [
    {"task": "echo", "input": "x y", "target": "x y"}
]


@pytest.fixture
def gen_world(tmp_path: Path) -> FilesWorld:
    return FilesWorld(write_jsonl(tmp_path / "data.jsonl", GEN_ROWS))


def test_jsonl_generation(gen_world: FilesWorld) -> None:
    assert gen_world.kind == "generation"
    assert gen_world.tasks() == ["echo", "greet"]
    both = gen_world.examples("greet", 0, seed=0, split="train") + gen_world.examples(
        "greet", -1, seed=0, split="eval"
    )
    assert sorted(e.prompt for e in both) == sorted(f"hello {i}" for i in range(40))
    for ex in both:
        assert ex.task == "greet"
        assert ex.target == "hi " + ex.prompt.split()[1]  # prompt is the input, unchanged
    assert gen_world.max_target_len("greet") == 5
    assert set("hello 0123456789hi xy") <= set(gen_world.charset())
    assert gen_world.charset() == "".join(sorted(set(gen_world.charset())))


def test_split_by_hash_of_input(gen_world: FilesWorld) -> None:
    evals = gen_world.examples("greet", 0, seed=0, split="eval")
    train = gen_world.examples("greet", 0, seed=0, split="train")
    assert {e.prompt for e in evals} == {
        f"hello {i}" for i in range(40) if split_of(f"hello {i}") == "eval"
    }
    assert not {e.prompt for e in evals} & {e.prompt for e in train}


def test_seed_shuffles_and_n_truncates(gen_world: FilesWorld) -> None:
    a = gen_world.examples("greet", 10, seed=1)
    assert len(a) == 10
    assert a == gen_world.examples("greet", 10, seed=1)
    assert gen_world.examples("greet", 0, seed=1) != gen_world.examples("greet", 0, seed=2)
    assert len(gen_world.examples("greet", 1000, seed=1)) == len(
        gen_world.examples("greet", 0, seed=1)
    )


def test_grade(gen_world: FilesWorld) -> None:
    ex = Example("greet", "hello 3", "hi 3")
    assert gen_world.grade(ex, "hi 3\n") and not gen_world.grade(ex, "hi 4")


def test_csv_classification(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    lines = ["task,text,label,extra"] + [
        f"sentiment,review number {i},{'pos' if i % 3 else 'neg'},z" for i in range(30)
    ]
    lines.append('topic,"a, quoted text",sports,')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    world = get_world("files", path=str(path))
    assert isinstance(world, FilesWorld) and world.kind == "classification"
    assert world.tasks() == ["sentiment", "topic"]
    assert world.labels("sentiment") == ["neg", "pos"]
    assert world.labels("topic") == ["sports"]
    topic = world.examples("topic", 0, seed=0, split=split_of("a, quoted text"))
    assert topic == [Example("topic", "a, quoted text", "sports")]
    assert world.max_target_len("sentiment") == 3


def test_jsonl_numbers_become_strings(tmp_path: Path) -> None:
    rows = [{"task": "t", "text": f"item {i}", "label": i % 2} for i in range(20)]
    world = FilesWorld(write_jsonl(tmp_path / "n.jsonl", rows))
    assert world.labels("t") == ["0", "1"]


def test_labels_needs_classification(gen_world: FilesWorld) -> None:
    with pytest.raises(ValueError, match="classification"):
        gen_world.labels("greet")


def test_unknown_task_and_split(gen_world: FilesWorld) -> None:
    with pytest.raises(ValueError, match="known tasks: echo, greet"):
        gen_world.examples("nope", 1, seed=0)
    with pytest.raises(ValueError, match="split"):
        gen_world.examples("greet", 1, seed=0, split="test")


def one_line_error(path: Path) -> str:
    with pytest.raises(ValueError) as info:
        FilesWorld(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in one_line_error(tmp_path / "absent.jsonl")


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello\n")
    assert "unknown extension '.txt'" in one_line_error(path)


def test_missing_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [GEN_ROWS[0], {"task": "greet", "input": "hey"}])
    msg = one_line_error(path)
    assert "line 2" in msg and "missing column(s) target" in msg
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("task,text\nsentiment,great\n")
    msg = one_line_error(csv_path)
    assert "line 2" in msg and "label" in msg


@pytest.mark.parametrize(
    ("name", "content"),
    [("e.jsonl", ""), ("b.jsonl", "\n\n"), ("e.csv", ""), ("h.csv", "task,input,target\n")],
)
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert "empty file" in one_line_error(path)


def test_mixed_kinds(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mix.jsonl", [GEN_ROWS[0], GEN_ROWS[1], {"task": "c", "text": "t", "label": "l"}]
    )
    msg = one_line_error(path)
    assert "mixed kinds" in msg and "line 3" in msg


def test_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GEN_ROWS[0]) + "\n{not json\n")
    assert "line 2: invalid JSON" in one_line_error(path)
    path.write_text("[1, 2]\n")
    assert "line 1: expected a JSON object" in one_line_error(path)
    write_jsonl(path, [{"task": "t", "input": "i", "target": "x", "text": "i", "label": "x"}])
    assert "ambiguous" in one_line_error(path)
    write_jsonl(path, [{"task": "", "input": "i", "target": "x"}])
    assert "empty task" in one_line_error(path)
    write_jsonl(path, [{"task": "t", "input": ["i"], "target": "x"}])
    assert "'input' must be a string" in one_line_error(path)


def test_registry_needs_path() -> None:
    with pytest.raises(ValueError, match="path"):
        get_world("files")
