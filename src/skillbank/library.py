"""The skill library: a SQLite catalog plus content-addressed safetensors blobs.

Layout of a home directory::

    catalog.sqlite        skills, versions, aliases, bases, blobs, results (WAL mode; rollback
                          journal on a network file system, see ``journal.journal_mode``)
    blobs/ab/abcd…        tensors of a skill, named by the sha256 of the file's bytes
    bases/<fingerprint>/  registered base model directories
    tmp/                  files being written (`<pid>-…`; `gc` clears those of dead writers)

A write puts the blob in place first (temp file, fsync, rename, fsync of the directory)
and only then commits the catalog row in one transaction, so a crash at any point leaves
no visible half-written skill: at worst an unreferenced blob that ``gc`` removes
(``blobstore`` says what ``gc`` may delete). A home that cannot be written (a read-only
mount, no permission) opens read-only: every read works, every write is refused in one line.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import catalog
from .basestore import BaseStore, LibraryError, _now
from .blobstore import BlobStore, blob_files
from .catalog import diagnose
from .skill import Skill, canonical_json, check_name, check_tensors, content_hash

RESERVED_ALIASES = {"latest"}
MANIFEST_KEYS = ("config", "recipe", "lineage", "metrics")
MAX_VERSION = 2**62


def default_home() -> Path:
    return Path(os.environ.get("SKILLBANK_HOME") or Path.home() / ".skillbank")


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name``, ``name@3`` or ``name@alias`` → (name, version-or-alias or None)."""
    name, _, sel = ref.partition("@")
    check_name(name, "skill name")
    if "@" in ref and not sel:
        raise LibraryError(f"invalid skill reference {ref!r}: nothing after '@'")
    return name, sel or None


@dataclass
class Row:
    """A catalog entry, without loading tensors."""

    name: str
    version: int
    kind: str
    base: str
    blob: str
    content_hash: str
    size: int
    manifest: dict[str, Any]
    created: str


class Library(BaseStore, BlobStore):
    """``Library.open(home)``; every write is one transaction, safe across processes."""

    def __init__(self, home: Path, conn: sqlite3.Connection, readonly: bool = False):
        self.home = home
        self.conn = conn
        self.journal = "wal"  # the catalog's SQLite journal mode (set by `open`)
        self.readonly = readonly
        self.legacy = False  # a schema-1 catalog opened read-only (no record of its blobs)

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, home: str | Path | None = None, journal: str | None = None,
             create: bool = True) -> Library:
        """Open the library at ``home`` (creating it if needed, unless ``create`` is
        False); ``journal`` overrides the catalog's journal mode (``journal.journal_mode``).
        A home that cannot be written opens read-only."""
        home = Path(home) if home is not None else default_home()
        c = catalog.path(home)
        if not c.is_file() and (not create or c.exists()):
            what = "is not a file" if c.exists() else "does not exist"
            raise LibraryError(f"no library at {home} ({c.name} {what}); check --home "
                               "or SKILLBANK_HOME")
        if home.is_dir() and not catalog.writable(home):
            conn, legacy = catalog.connect_readonly(home)
            lib = cls(home, conn, readonly=True)
            lib.legacy, lib.journal = legacy, conn.execute("PRAGMA journal_mode").fetchone()[0]
            return lib
        try:
            for sub in ("blobs", "bases", "tmp"):
                (home / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"cannot create library home {home}: {e.strerror}") from None
        conn, mode = catalog.connect(home, journal, lambda: blob_files(home)[0])
        lib = cls(home, conn)
        lib.journal = mode
        return lib

    def _need_write(self) -> None:
        if self.readonly:
            raise LibraryError(f"library {self.home} is read-only (a read-only mount or no "
                               "write permission): reads work, this command writes")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._need_write()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- skills --------------------------------------------------------------------
    def add(self, skill: Skill) -> Skill:
        """Store a new version of ``skill`` (or return the existing one with the same
        content); ``skill`` itself is left as it was. See :meth:`store`."""
        return self.store(skill)[0]

    def store(self, skill: Skill) -> tuple[Skill, bool]:
        """``(stored skill, new)``: the version now in the library and whether this call
        made it (False when a version with the same content was already there, which is
        then returned as it was stored: versions never change)."""
        check_name(skill.name)
        check_tensors(skill)
        sha, data = self.put_blob(skill.tensors)
        size = len(data)
        chash = content_hash(skill.kind, skill.base, skill.config, sha)
        with self._tx() as c:
            self._commit_blob(sha, data)
            row = c.execute(
                "SELECT version, manifest, created FROM skills WHERE name=? AND content_hash=?",
                (skill.name, chash),
            ).fetchone()
            if row is not None:
                stored = json.loads(row[1])
                return replace(skill, version=row[0], content_hash=chash, created=row[2],
                               recipe=stored["recipe"], lineage=stored["lineage"],
                               metrics=stored["metrics"]), False
            last = c.execute("SELECT last_version FROM names WHERE name=?", (skill.name,)).fetchone()
            version = (last[0] if last else 0) + 1
            made = replace(skill, version=version, content_hash=chash)
            c.execute(
                "INSERT INTO skills VALUES (?,?,?,?,?,?,?,?,?)",
                (made.name, version, made.kind, made.base, sha, chash, size,
                 json.dumps(made.manifest()), made.created),
            )
            c.execute("INSERT OR REPLACE INTO names VALUES (?, ?)", (made.name, version))
        return made, True

    def _rows(self, where: str = "", args: tuple = ()) -> list[Row]:
        q = "SELECT name, version, kind, base, blob, content_hash, size, manifest, created FROM skills"
        rows = self.conn.execute(f"{q} {where} ORDER BY name, version", args).fetchall()
        return [_row(r) for r in rows]

    def resolve(self, ref: str) -> Row:
        """Find the catalog row for ``name[@version|@alias]`` (default: latest)."""
        name, sel = parse_ref(ref)
        if sel is None or sel == "latest":
            rows = self._rows("WHERE name=?", (name,))
            if not rows:
                raise LibraryError(f"no skill named {name!r} in {self.home}")
            return rows[-1]
        if sel.isascii() and sel.isdigit():
            if int(sel) > MAX_VERSION:
                raise LibraryError(f"no version {sel} of skill {name!r}")
            rows = self._rows("WHERE name=? AND version=?", (name, int(sel)))
            if not rows:
                raise LibraryError(f"no version {sel} of skill {name!r}")
            return rows[0]
        row = self.conn.execute(
            "SELECT version FROM aliases WHERE name=? AND alias=?", (name, sel)
        ).fetchone()
        if row is None:
            raise LibraryError(f"skill {name!r} has no version or alias {sel!r}")
        return self.resolve(f"{name}@{row[0]}")

    def get(self, ref: str) -> Skill:
        """Load a skill with its tensors; the blob's hash is checked on every read."""
        row = self.resolve(ref)
        tensors = self.read_blob(row.blob, f"{row.name}@{row.version}")
        m = row.manifest
        return Skill(
            name=row.name, kind=row.kind, base=row.base, tensors=tensors, config=m["config"],
            recipe=m["recipe"], lineage=m["lineage"], metrics=m["metrics"], version=row.version,
            created=row.created, content_hash=row.content_hash, tags=self.tags(row.name, row.version),
            made_by=m.get("made_by", ""),
        )

    def list(self) -> list[Row]:
        """The latest version of every skill."""
        latest: dict[str, Row] = {}
        for r in self._rows():
            latest[r.name] = r
        return list(latest.values())

    def versions(self, name: str) -> list[Row]:
        check_name(name, "skill name")
        rows = self._rows("WHERE name=?", (name,))
        if not rows:
            raise LibraryError(f"no skill named {name!r} in {self.home}")
        return rows

    def find(self, name: str, base: str, recipe: dict[str, Any],
             where: Callable[[dict[str, Any]], bool] | None = None) -> str | None:
        """The ref of the latest version of ``name`` made on base ``base`` (a fingerprint) by
        exactly ``recipe`` (compared as canonical JSON) and whose manifest passes ``where``,
        or None: how a step re-uses what an earlier run already made."""
        try:
            rows = self.versions(name)
        except LibraryError:
            return None
        want = canonical_json(recipe)
        for row in reversed(rows):
            if row.base == base and canonical_json(row.manifest.get("recipe", {})) == want \
                    and (where is None or where(row.manifest)):
                return f"{row.name}@{row.version}"
        return None

    def tags(self, name: str, version: int | None = None) -> list[str]:
        rows = self.conn.execute(
            "SELECT alias, version FROM aliases WHERE name=? ORDER BY alias", (name,)
        ).fetchall()
        return [a for a, v in rows if version is None or v == version]

    def tag(self, ref: str, alias: str) -> Row:
        """Point ``alias`` at one version; aliases move, versions never change."""
        check_name(alias, "alias")
        if alias.lower() in RESERVED_ALIASES or alias.lstrip("-").isdigit():
            raise LibraryError(f"alias {alias!r} is reserved (latest moves by itself; numbers are versions)")
        row = self.resolve(ref)
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO aliases VALUES (?,?,?)", (row.name, alias, row.version))
        return row

    def rm(self, ref: str) -> list[Row]:
        """Remove one version, or every version when no version is given. Blobs stay for ``gc``."""
        name, sel = parse_ref(ref)
        rows = [self.resolve(ref)] if sel else self.versions(name)
        gone = {f"{r.name}@{r.version}" for r in rows}
        for other in self._rows("WHERE kind IN ('router', 'chain')"):
            needs = gone & set(other.manifest.get("config", {}).get("members", []))
            if needs and f"{other.name}@{other.version}" not in gone:
                raise LibraryError(f"{other.kind} {other.name}@{other.version} applies "
                                   f"{', '.join(sorted(needs))} at run time: remove it first")
        with self._tx() as c:
            for r in rows:
                for table in ("skills", "aliases", "attachments"):
                    c.execute(f"DELETE FROM {table} WHERE name=? AND version=?", (r.name, r.version))
        return rows

    def lineage(self, ref: str) -> list[tuple[int, str, dict[str, Any]]]:
        """Depth-first ancestry: ``[(depth, ref, recipe)]``; parents not in the library show ``{}``."""
        out: list[tuple[int, str, dict[str, Any]]] = []
        seen: set[str] = set()

        def walk(r: str, depth: int) -> None:
            try:
                row = self.resolve(r)
            except LibraryError:
                out.append((depth, r, {"missing": True}))
                return
            key = f"{row.name}@{row.version}"
            out.append((depth, key, row.manifest.get("recipe", {})))
            if key in seen:
                return
            seen.add(key)
            for parent in row.manifest.get("lineage", []):
                walk(parent, depth + 1)

        walk(ref, 0)
        return out

    # -- integrity -----------------------------------------------------------------
    def verify(self) -> list[dict[str, str]]:
        """Check everything the library holds; return the problems (empty when sound): the
        catalog (SQLite's integrity check, every row readable with a whole manifest), every
        referenced blob re-hashed, blob files the catalog never wrote, every base
        re-fingerprinted."""
        problems = self.verify_bases() + diagnose(self.conn)
        referenced: list[tuple[str, str]] = []
        try:
            ids = [r[0] for r in self.conn.execute("SELECT rowid FROM skills ORDER BY rowid")]
        except sqlite3.DatabaseError:
            return problems  # diagnose has named the table
        for rowid in ids:
            try:
                r = self.conn.execute("SELECT name, version, kind, base, blob, content_hash, size, "
                                      "manifest, created FROM skills WHERE rowid=?", (rowid,)).fetchone()
                row = _row(r)
            except sqlite3.DatabaseError:
                continue  # named by diagnose
            except RowDamaged as e:
                problems.append({"what": e.what, "problem": e.problem})
                continue
            referenced.append((row.blob, f"{row.name}@{row.version}"))
        try:
            referenced += [(blob, f"{n}@{v} {key}") for n, v, key, blob in self.conn.execute(
                "SELECT name, version, key, blob FROM attachments ORDER BY name, version, key")]
        except sqlite3.DatabaseError:
            pass  # named by diagnose
        return problems + self.blob_problems(referenced)

    # -- attachments: derived data kept with one version (statistics for merges) -----
    def attach(self, ref: str, key: str, tensors: dict[str, torch.Tensor],
               meta: dict[str, Any] | None = None) -> None:
        """Keep ``tensors`` (and ``meta``) under ``key`` with the version ``ref`` names, in a
        blob like a skill's: data derived from that version (a merge's statistics of it),
        which the version itself never changes for. Re-attaching a key replaces it."""
        row = self.resolve(ref)
        if not key or len(key) > 200 or any(ch in key for ch in "\n\r\0"):
            raise LibraryError(f"invalid attachment key {key!r}")
        check_tensors(Skill(row.name, "delta", row.base, tensors))
        sha, data = self.put_blob(tensors)
        with self._tx() as c:
            self._commit_blob(sha, data)
            c.execute("INSERT OR REPLACE INTO attachments VALUES (?,?,?,?,?)",
                      (row.name, row.version, key, sha, json.dumps(meta or {})))

    def attachment(self, ref: str, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """``(tensors, meta)`` attached to ``ref`` under ``key``, or None; the blob's hash is
        checked like a skill's."""
        row = self.resolve(ref)
        try:
            got = self.conn.execute("SELECT blob, meta FROM attachments WHERE name=? AND "
                                    "version=? AND key=?", (row.name, row.version, key)).fetchone()
        except sqlite3.OperationalError:  # a read-only catalog from before attachments
            return None
        if got is None:
            return None
        return self.read_blob(got[0], f"{row.name}@{row.version} {key}"), json.loads(got[1])

    # -- results -------------------------------------------------------------------
    def add_result(self, subject: str, world: str, task: str, metrics: dict[str, Any],
                   spec: dict[str, Any] | None = None) -> int:
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO results (subject, world, task, metrics, spec, created) VALUES (?,?,?,?,?,?)",
                (subject, world, task, json.dumps(metrics), json.dumps(spec or {}), _now()),
            )
            return int(cur.lastrowid)

    def results(self, subject: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT id, subject, world, task, metrics, spec, created FROM results"
        rows = self.conn.execute(q + (" WHERE subject=?" if subject else "") + " ORDER BY id",
                                 (subject,) if subject else ()).fetchall()
        return [{"id": r[0], "subject": r[1], "world": r[2], "task": r[3],
                 "metrics": json.loads(r[4]), "spec": json.loads(r[5]), "created": r[6]} for r in rows]


class RowDamaged(LibraryError):
    """A catalog row that cannot be a skill's: ``what`` names it, ``problem`` says why."""

    def __init__(self, what: str, problem: str):
        super().__init__(f"{what}: {problem}; run `skillbank verify`")
        self.what, self.problem = what, problem


def _row(r: tuple) -> Row:
    """A catalog row, checked: a manifest that is not JSON or lacks a key is named."""
    what = f"catalog row {r[0]}@{r[1]}"
    try:
        manifest = json.loads(r[7])
    except (TypeError, ValueError):
        raise RowDamaged(what, "its manifest is not JSON") from None
    missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise RowDamaged(what, f"its manifest lacks {', '.join(missing)}")
    if not isinstance(r[1], int) or not isinstance(r[4], str):
        raise RowDamaged(what, "damaged (version or blob of the wrong type)")
    return Row(*r[:7], manifest, r[8])
