"""The skill library: a SQLite catalog plus content-addressed safetensors blobs.

Layout of a home directory::

    catalog.sqlite        skills, versions, aliases, bases, results (WAL mode; rollback
                          journal on a network file system, see ``journal.journal_mode``)
    blobs/ab/abcd…        tensors of a skill, named by the sha256 of the file's bytes
    bases/<fingerprint>/  registered base model directories
    tmp/                  files being written (pid in the name; `gc` clears dead ones)

A write puts the blob in place first (temp file, fsync, rename, fsync of the directory)
and only then commits the catalog row in one transaction, so a crash at any point leaves
no visible half-written skill: at worst an unreferenced blob that ``gc`` removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .basestore import BaseStore, LibraryError, _fsync_dir, _now
from .journal import journal_mode
from .skill import Skill, canonical_json, check_name, check_tensors, content_hash

SCHEMA_VERSION = 1
RESERVED_ALIASES = {"latest"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS skills (
    name TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL, base TEXT NOT NULL,
    blob TEXT NOT NULL, content_hash TEXT NOT NULL, size INTEGER NOT NULL,
    manifest TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (name, version), UNIQUE (name, content_hash));
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS bases (
    name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, kind TEXT NOT NULL,
    meta TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS base_files (
    fingerprint TEXT NOT NULL, file TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (fingerprint, file));
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL, world TEXT NOT NULL,
    task TEXT NOT NULL, metrics TEXT NOT NULL, spec TEXT NOT NULL, created TEXT NOT NULL);
"""


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


class Library(BaseStore):
    """``Library.open(home)``; every write is one transaction, safe across processes."""

    def __init__(self, home: Path, conn: sqlite3.Connection):
        self.home = home
        self.conn = conn
        self.journal = "wal"  # the catalog's SQLite journal mode (set by `open`)

    # -- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, home: str | Path | None = None, journal: str | None = None) -> Library:
        """Open (creating if needed) the library at ``home``; ``journal`` overrides the
        catalog's journal mode (see ``journal.journal_mode``)."""
        home = Path(home) if home is not None else default_home()
        try:
            for sub in ("blobs", "bases", "tmp"):
                (home / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"cannot create library home {home}: {e.strerror}") from None
        conn = sqlite3.connect(home / "catalog.sqlite", timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        mode = journal_mode(home, journal)
        got = conn.execute(f"PRAGMA journal_mode = {mode.upper()}").fetchone()[0]
        if got.lower() != mode:
            conn.close()
            raise LibraryError(f"library {home}: cannot switch the catalog to journal mode {mode} "
                               f"(it is {got}; another process has it open?)")
        conn.execute("PRAGMA synchronous = FULL")
        lib = cls(home, conn)
        lib.journal = mode
        with lib._tx():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise LibraryError(
                    f"library {home} has schema {row[0]}, newer than this skillbank ({SCHEMA_VERSION})"
                )
        return lib

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- blobs ---------------------------------------------------------------------
    def blob_path(self, sha: str) -> Path:
        return self.home / "blobs" / sha[:2] / sha

    def _write_atomic(self, final: Path, data: bytes) -> None:
        tmp = self.home / "tmp" / f"{os.getpid()}-{final.name}.part"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    def put_blob(self, tensors: dict[str, torch.Tensor]) -> tuple[str, bytes]:
        data = st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
        sha = hashlib.sha256(data).hexdigest()
        if not self.blob_path(sha).exists():
            self._write_atomic(self.blob_path(sha), data)
        return sha, data

    def read_blob(self, sha: str, what: str) -> dict[str, torch.Tensor]:
        path = self.blob_path(sha)
        if not path.exists():
            raise LibraryError(f"{what}: blob {sha[:12]} is missing; run `skillbank verify`")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise LibraryError(f"{what}: blob {sha[:12]} is damaged (sha256 mismatch); run `skillbank verify`")
        return st_load(data)

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
            if not self.blob_path(sha).exists():  # a concurrent `gc` took it: write it again
                self._write_atomic(self.blob_path(sha), data)
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
        return [Row(*r[:7], json.loads(r[7]), r[8]) for r in rows]

    def resolve(self, ref: str) -> Row:
        """Find the catalog row for ``name[@version|@alias]`` (default: latest)."""
        name, sel = parse_ref(ref)
        if sel is None or sel == "latest":
            rows = self._rows("WHERE name=?", (name,))
            if not rows:
                raise LibraryError(f"no skill named {name!r} in {self.home}")
            return rows[-1]
        if sel.isdigit():
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
        if alias in RESERVED_ALIASES or alias.isdigit():
            raise LibraryError(f"alias {alias!r} is reserved (latest moves by itself; numbers are versions)")
        row = self.resolve(ref)
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO aliases VALUES (?,?,?)", (row.name, alias, row.version))
        return row

    def rm(self, ref: str) -> list[Row]:
        """Remove one version, or every version when no version is given. Blobs stay for ``gc``."""
        name, sel = parse_ref(ref)
        rows = [self.resolve(ref)] if sel else self.versions(name)
        with self._tx() as c:
            for r in rows:
                c.execute("DELETE FROM skills WHERE name=? AND version=?", (r.name, r.version))
                c.execute("DELETE FROM aliases WHERE name=? AND version=?", (r.name, r.version))
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
        """Re-hash every blob and re-fingerprint every base; return problems (empty when the
        library is sound)."""
        problems = self.verify_bases()
        check = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            problems.append({"what": "catalog", "problem": check})
        for r in self._rows():
            path = self.blob_path(r.blob)
            if not path.exists():
                problems.append({"what": f"{r.name}@{r.version}", "problem": f"blob {r.blob[:12]} missing"})
            elif hashlib.sha256(path.read_bytes()).hexdigest() != r.blob:
                problems.append({"what": f"{r.name}@{r.version}", "problem": f"blob {r.blob[:12]} damaged"})
        return problems

    def gc(self) -> dict[str, int]:
        """Delete blobs no skill references and temp files of dead writers."""
        removed, freed = 0, 0
        with self._tx():  # holds the write lock, so no `add` commits a blob we delete
            used = {r.blob for r in self._rows()}
            for path in (self.home / "blobs").glob("*/*"):
                if path.name not in used:
                    freed += path.stat().st_size
                    path.unlink()
                    removed += 1
        for path in (self.home / "tmp").iterdir():
            pid = path.name.split("-", 1)[0]
            if not (pid.isdigit() and _alive(int(pid))):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return {"blobs_removed": removed, "bytes_freed": freed}

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
