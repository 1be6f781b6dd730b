"""The ``files`` world: a user's own examples, read from a JSONL or CSV file.

Every row names its task and is one of two kinds (a file holds one kind only):

- generation:     ``{"task": ..., "input": ..., "target": ...}``
- classification: ``{"task": ..., "text": ..., "label": ...}``

JSONL (``.jsonl``, or gzip-compressed ``.jsonl.gz``) has one JSON object per line (blank
lines are skipped); CSV (``.csv``) has a header row naming the columns. Extra columns are
ignored, except an optional ``group``. JSON numbers and booleans are turned into their JSON
text (``1`` -> ``"1"``, ``true`` -> ``"true"``). Empty texts and labels are refused.

The prompt is the input (or text) exactly as given, the target the target (or label).
``examples(task, n, seed, split)`` keeps the rows of ``task`` whose split key hashes into
``split`` (the rule of :func:`~skillbank.worlds.base.split_of`), shuffles them with ``seed``
and returns the first ``n`` (all of them if there are fewer, or if ``n <= 0``). The split
key is the row's ``group`` when it has one (rows of one group — a package and its
documentation, one author's texts — always share a split), else its input.

``shots=k`` keeps a fixed few-shot subset of the train split: per label (per task, for a
generation file) the ``k`` rows whose input has the smallest sha256, the same for every
seed. The eval split is never cut.

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

_PARSED: dict[tuple[str, str], tuple[str, dict]] = {}   # (path, sha256) -> (kind, rows)

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


def _load(path: Path) -> tuple[bytes, str]:
    """The file's bytes and their sha256; ValueError on a missing or unreadable file."""
    gz = path.name.endswith(".jsonl.gz")
    if path.suffix not in (".jsonl", ".csv") and not gz:
        raise ValueError(f"{path}: unknown extension {path.suffix!r} "
                         "(expected .jsonl, .jsonl.gz or .csv)")
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror})") from None
    return data, hashlib.sha256(data).hexdigest()


def _records(path: Path, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = (_gunzip(path, data) if path.name.endswith(".gz") else data).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    records = _read_csv(path, text) if path.suffix == ".csv" else _read_jsonl(path, text)
    if not records:
        raise ValueError(f"{path}: empty file (no rows)")
    return records


def read_records(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], str]:
    """(line number, row) pairs of a .jsonl, .jsonl.gz or .csv file and the sha256 of its
    bytes; ValueError on a bad file."""
    data, sha = _load(path)
    return _records(path, data), sha


MAX_TEXT_BYTES = 256 * 2**20   # a decompressed data file larger than this is refused


def _gunzip(path: Path, data: bytes) -> bytes:
    import gzip
    import zlib

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(MAX_TEXT_BYTES + 1)
    except (OSError, EOFError, zlib.error):
        raise ValueError(f"{path}: not a valid gzip file") from None
    if len(out) > MAX_TEXT_BYTES:
        raise ValueError(f"{path}: more than {MAX_TEXT_BYTES // 2**20} MiB of text once "
                         "decompressed")
    return out


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

    def __init__(self, path: str | os.PathLike[str], sha256: str | None = None, shots: int = 0):
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
            raise ValueError(f"shots must be a non-negative int, got {shots!r}")
        self.path = Path(path)
        self.shots = shots
        data, self.sha256 = _load(self.path)
        if sha256 is not None and sha256 != self.sha256:
            raise ValueError(f"{self.path}: the data file changed since the recipe naming it was "
                             f"made (sha256 {self.sha256[:12]}, recipe {str(sha256)[:12]})")
        key = (str(self.path.resolve()), self.sha256)
        if key not in _PARSED:   # the same bytes parse to the same rows: parse once
            if len(_PARSED) >= 8:
                _PARSED.pop(next(iter(_PARSED)))
            _PARSED[key] = self._parse(_records(self.path, data))
        self.kind, self._rows = _PARSED[key]

    def _parse(self, records) -> tuple[str, dict[str, tuple[tuple[str, str, str], ...]]]:
        kind_seen, first_line = "", 0
        rows: dict[str, list[tuple[str, str, str]]] = {}
        for lineno, row in records:
            where = f"{self.path}: line {lineno}"
            kind = _kind_of(where, row)
            if not kind_seen:
                kind_seen, first_line = kind, lineno
            elif kind != kind_seen:
                raise ValueError(
                    f"{where}: mixed kinds: this row is {kind} but line {first_line} is {kind_seen}"
                )
            task_col, input_col, target_col = KINDS[kind]
            task = _value(where, task_col, row[task_col])
            if not task:
                raise ValueError(f"{where}: empty task name")
            prompt = _value(where, input_col, row[input_col])
            target = _value(where, target_col, row[target_col])
            if kind == "classification" and not prompt.strip():
                raise ValueError(f"{where}: empty text")
            if kind == "classification" and not target.strip():
                raise ValueError(f"{where}: empty label")
            group = row.get("group")
            key = prompt if group in (None, "") else _value(where, "group", group)
            rows.setdefault(task, []).append((prompt, target, key))
        return kind_seen, {t: tuple(r) for t, r in rows.items()}

    def identity(self) -> dict:
        return {"sha256": self.sha256}

    def _split_rows(self, task: str, split: str) -> list[tuple[str, str, str]]:
        rows = [r for r in self._task_rows(task) if split_of(r[2]) == split]
        if split != "train" or not self.shots:
            return rows
        ranked = sorted(rows, key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())
        kept: dict[str, int] = {}
        out = []
        for r in ranked:
            label = r[1] if self.kind == "classification" else ""
            if kept.get(label, 0) < self.shots:
                kept[label] = kept.get(label, 0) + 1
                out.append(r)
        return out

    def tasks(self) -> list[str]:
        return sorted(self._rows)

    def _task_rows(self, task: str) -> tuple[tuple[str, str, str], ...]:
        if task not in self._rows:
            raise self.unknown_task(task)
        return self._rows[task]

    def labels(self, task: str) -> list[str]:
        """The sorted distinct labels of a classification task."""
        if self.kind != "classification":
            raise ValueError(
                f"{self.path}: labels() needs a classification file; this one is {self.kind}"
            )
        labels = sorted({label for _, label, _ in self._task_rows(task)})
        trained = {label for _, label, _ in self._split_rows(task, "train")}
        unseen = [label for label in labels if label not in trained]
        if unseen:
            raise ValueError(f"{self.path}: task {task!r}: label(s) "
                             f"{', '.join(map(repr, unseen))} appear only in the eval split, "
                             "never in training")
        return labels

    def charset(self) -> str:
        chars = {c for rows in self._rows.values() for r in rows for part in r[:2] for c in part}
        return "".join(sorted(chars))

    def max_target_len(self, task: str) -> int:
        return max(len(target) for _, target, _ in self._task_rows(task))

    def examples(self, task: str, n: int, seed: int, split: str = "train") -> list[Example]:
        check_split(split)
        picked = [Example(task, prompt, target) for prompt, target, _ in self._split_rows(task, split)]
        make_rng(self.name, task, seed, split).shuffle(picked)
        return picked if n <= 0 else picked[:n]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path={str(self.path)!r}, kind={self.kind!r}, "
                f"tasks={len(self._rows)}, shots={self.shots})")


DEBIAN_DATA = Path(__file__).resolve().parent / "data" / "debian.jsonl.gz"


class DebianWorld(FilesWorld):
    """Real human-written text: Debian package synopses labelled by archive section.

    Six classification tasks of 3–4 sections each (``media``: graphics / sound / video, …),
    8,178 rows, built by ``dev/build_debian.py`` from ``apt-cache dumpavail`` and shipped
    with the package (``worlds/data/debian.md``: provenance, licence, the counts). Rows are
    grouped by source package for the split. ``shots=16`` or ``64`` gives the few-shot
    training subsets.
    """

    name = "debian"

    def __init__(self, shots: int = 0, sha256: str | None = None):
        super().__init__(DEBIAN_DATA, sha256=sha256, shots=shots)
