"""Rebuild ``src/skillbank/worlds/data/debian.jsonl.gz`` from Debian's archive metadata.

Run on a Debian machine after ``apt-get update``::

    apt-cache dumpavail > dump.txt && python dev/build_debian.py dump.txt

(``-`` reads the dump from standard input.) The file's provenance and licence are in
``src/skillbank/worlds/data/debian.md``; this script is the exact rule:

1. Every record with a ``Package``, a ``Section`` and a ``Description``; the text is the
   ``Description`` field's first line (the synopsis: the Packages index carries only that,
   long descriptions live in the separate Translation files), whitespace collapsed; the
   label is the section without its area prefix (``contrib/games`` -> ``games``); the group
   is the source package (``Source``, else the package name), so a library's ``-dev`` and
   ``-doc`` siblings land in the same split.
2. Each task is a group of sections (:data:`TASKS`). Within a task a text seen in two
   sections is dropped (its label is ambiguous), and exact duplicates are kept once.
3. Each class keeps at most :data:`PER_CLASS` texts, the ones whose sha256 is smallest
   (a deterministic, seed-free sample).
4. Rows are written sorted by (task, label, text), gzip with mtime 0: the same dump gives
   the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import sys
from pathlib import Path

TASKS: dict[str, tuple[str, ...]] = {
    "media": ("graphics", "sound", "video"),
    "science": ("electronics", "gnu-r", "math", "science"),
    "net": ("database", "mail", "net", "web"),
    "desktop": ("games", "gnome", "kde", "x11"),
    "writing": ("editors", "fonts", "tex", "text"),
    "system": ("admin", "devel", "libs", "utils"),
}
PER_CLASS = 400
OUT = Path(__file__).resolve().parent.parent / "src/skillbank/worlds/data/debian.jsonl.gz"


def records(dump: str):
    """(package, source, section, synopsis) of every complete record in a dumpavail text."""
    for block in dump.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): ?(.*)$", block, flags=re.M))
        if {"Package", "Section", "Description"} <= fields.keys():
            source = fields.get("Source", fields["Package"]).split()[0]
            text = " ".join(fields["Description"].split())
            if text:
                yield fields["Package"], source, fields["Section"].split("/")[-1], text


def build(dump: str) -> list[dict]:
    section_task = {s: t for t, sections in TASKS.items() for s in sections}
    seen: dict[tuple[str, str], dict] = {}     # (task, text) -> row
    ambiguous: set[tuple[str, str]] = set()
    for package, source, section, text in sorted(records(dump)):
        task = section_task.get(section)
        if task is None:
            continue
        row = seen.get((task, text))
        if row is None:
            seen[task, text] = {"task": task, "text": text, "label": section,
                                "group": source, "package": package}
        elif row["label"] != section:
            ambiguous.add((task, text))
    rows = [r for k, r in seen.items() if k not in ambiguous]
    out = []
    for task, sections in TASKS.items():
        for label in sections:
            pool = [r for r in rows if r["task"] == task and r["label"] == label]
            pool.sort(key=lambda r: hashlib.sha256(r["text"].encode()).hexdigest())
            out += pool[:PER_CLASS]
    return sorted(out, key=lambda r: (r["task"], r["label"], r["text"]))


def write(rows: list[dict], path: Path) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python dev/build_debian.py DUMP  (apt-cache dumpavail output, or -)",
              file=sys.stderr)
        return 2
    src = sys.stdin if argv[0] == "-" else open(argv[0], encoding="utf-8", errors="replace")
    with src:
        rows = build(src.read())
    write(rows, OUT)
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[r["task"], r["label"]] = counts.get((r["task"], r["label"]), 0) + 1
    for (task, label), n in sorted(counts.items()):
        print(f"{task:8} {label:12} {n}")
    print(f"{len(rows)} rows -> {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
