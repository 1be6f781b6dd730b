"""The ``files`` world: a user's own examples, read from a JSONL or CSV file.

Every row names its task and is one of two kinds (a file holds one kind only):

- generation:     ``{"task": ..., "input": ..., "target": ...}``
- classification: ``{"task": ..., "text": ..., "label": ...}``

JSONL (``.jsonl``) has one JSON object per line (blank lines are skipped); CSV (``.csv``)
has a header row naming the columns. Extra columns are ignored. JSON numbers and booleans
are turned into their JSON text (``1`` -> ``"1"``, ``true`` -> ``"true"``).

The prompt is the input (or text) exactly as given, the target the target (or label).
``examples(task, n, seed, split)`` keeps the rows of ``task`` whose input hashes into
``split`` (the rule of :func:`~skillbank.worlds.base.split_of`), shuffles them with ``seed``
and returns the first ``n`` (all of them if there are fewer, or if ``n <= 0``).

A bad file (missing, unknown extension, invalid row, missing columns, no rows, mixed kinds)
raises ValueError with a one-line message naming the file and, where it applies, the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from .base import Example, World, check_split, make_rng, split_of

KINDS: dict[str, tuple[str, str, str]] = {
    "generation": ("task", "input", "target"),
    "classification": ("task", "text", "label"),
}


def _read_jsonl(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise ValueError(f"{path}: line {lineno}: nested too deeply") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: line {lineno}: expected a JSON object")
        records.append((lineno, obj))
    return records


def _read_csv(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return [(reader.line_num, row) for row in reader if any(v for v in row.values())]
    except csv.Error as e:
        raise ValueError(f"{path}: line {reader.line_num}: invalid CSV ({e})") from None


def read_records(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], str]:
    """(line number, row) pairs of a .jsonl or .csv file and the sha256 of its bytes;
    ValueError on a bad file."""
    if path.suffix not in (".jsonl", ".csv"):
        raise ValueError(f"{path}: unknown extension {path.suffix!r} (expected .jsonl or .csv)")
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    records = _read_jsonl(path, text) if path.suffix == ".jsonl" else _read_csv(path, text)
    if not records:
        raise ValueError(f"{path}: empty file (no rows)")
    return records, hashlib.sha256(data).hexdigest()


def _value(where: str, column: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise ValueError(f"{where}: column {column!r} must be a string or a number")


def _kind_of(where: str, row: dict[str, Any]) -> str:
    present = {k for k, v in row.items() if isinstance(k, str) and v is not None}
    kinds = [kind for kind, cols in KINDS.items() if set(cols) <= present]
    if len(kinds) == 1:
        return kinds[0]
    if kinds:
        raise ValueError(f"{where}: ambiguous row: has both input/target and text/label columns")
    best = min(KINDS, key=lambda kind: len(set(KINDS[kind]) - present))
    missing = ", ".join(c for c in KINDS[best] if c not in present)
    raise ValueError(
        f"{where}: missing column(s) {missing} (a {best} row needs {', '.join(KINDS[best])}; "
        "or use task, input, target / task, text, label)"
    )


class FilesWorld(World):
    """A user's examples from a JSONL or CSV file (see the module docstring)."""

    name = "files"

    def __init__(self, path: str | os.PathLike[str], sha256: str | None = None):
        self.path = Path(path)
        self.kind = ""
        self._rows: dict[str, list[tuple[str, str]]] = {}
        first_line = 0
        records, self.sha256 = read_records(self.path)
        if sha256 is not None and sha256 != self.sha256:
            raise ValueError(f"{self.path}: the data file changed since the recipe naming it was "
                             f"made (sha256 {self.sha256[:12]}, recipe {str(sha256)[:12]})")
        for lineno, row in records:
            where = f"{self.path}: line {lineno}"
            kind = _kind_of(where, row)
            if not self.kind:
                self.kind, first_line = kind, lineno
            elif kind != self.kind:
                raise ValueError(
                    f"{where}: mixed kinds: this row is {kind} but line {first_line} is {self.kind}"
                )
            task_col, input_col, target_col = KINDS[kind]
            task = _value(where, task_col, row[task_col])
            if not task:
                raise ValueError(f"{where}: empty task name")
            pair = (
                _value(where, input_col, row[input_col]),
                _value(where, target_col, row[target_col]),
            )
            self._rows.setdefault(task, []).append(pair)

    def identity(self) -> dict:
        return {"sha256": self.sha256}

    def tasks(self) -> list[str]:
        return sorted(self._rows)

    def _task_rows(self, task: str) -> list[tuple[str, str]]:
        if task not in self._rows:
            raise self.unknown_task(task)
        return self._rows[task]

    def labels(self, task: str) -> list[str]:
        """The sorted distinct labels of a classification task."""
        if self.kind != "classification":
            raise ValueError(
                f"{self.path}: labels() needs a classification file; this one is {self.kind}"
            )
        return sorted({label for _, label in self._task_rows(task)})

    def charset(self) -> str:
        chars = {c for rows in self._rows.values() for pair in rows for part in pair for c in part}
        return "".join(sorted(chars))

    def max_target_len(self, task: str) -> int:
        return max(len(target) for _, target in self._task_rows(task))

    def examples(self, task: str, n: int, seed: int, split: str = "train") -> list[Example]:
        rows = self._task_rows(task)
        check_split(split)
        picked = [
            Example(task, prompt, target) for prompt, target in rows if split_of(prompt) == split
        ]
        make_rng(self.name, task, seed, split).shuffle(picked)
        return picked if n <= 0 else picked[:n]

    def __repr__(self) -> str:
        return f"FilesWorld(path={str(self.path)!r}, kind={self.kind!r}, tasks={len(self._rows)})"
