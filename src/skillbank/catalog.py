"""The catalog file, ``catalog.sqlite``: its schema, opening it (writable, with the schema
created or migrated, or read-only) and diagnosing it when it is damaged.

A catalog that cannot be opened (its schema page damaged, the file truncated or overwritten)
is still diagnosed read-only by ``skillbank verify``, table by table and row by row, so
the user learns what is damaged instead of a SQLite error.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from .basestore import LibraryError
from .journal import journal_mode

SCHEMA_VERSION = 3  # 2: the `blobs` table (what gc may delete); 3: `attachments`
RESERVED_ALIASES = {"latest"}
MANIFEST_KEYS = ("config", "recipe", "lineage", "metrics")
MAX_VERSION = 2**62

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS blobs (sha TEXT PRIMARY KEY, writer INTEGER);
CREATE TABLE IF NOT EXISTS attachments (
    name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL, blob TEXT NOT NULL,
    meta TEXT NOT NULL, PRIMARY KEY (name, version, key));
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL, world TEXT NOT NULL,
    task TEXT NOT NULL, metrics TEXT NOT NULL, spec TEXT NOT NULL, created TEXT NOT NULL);
"""


class CatalogDamaged(LibraryError):
    """The catalog file cannot be read as a skillbank catalog."""


def path(home: Path) -> Path:
    return home / "catalog.sqlite"


def writable(home: Path) -> bool:
    """Whether this process may write the home (not a read-only mount, permission to write)."""
    try:
        if os.statvfs(home).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    c = path(home)
    return os.access(home, os.W_OK) and (not c.exists() or os.access(c, os.W_OK))


def _schema_version(home: Path, row: tuple | None) -> int | None:
    if row is None:
        return None
    if not str(row[0]).isdigit():
        raise CatalogDamaged(f"library {home}: its schema version {row[0]!r} is not a number")
    if int(row[0]) > SCHEMA_VERSION:
        raise LibraryError(f"library {home} has schema {row[0]}, newer than this "
                           f"skillbank ({SCHEMA_VERSION})")
    return int(row[0])


def _damaged(home: Path, e: sqlite3.DatabaseError) -> LibraryError:
    """The error for a catalog SQLite refused: damage (``CatalogDamaged``), or — for an
    OperationalError (I/O, a full disk, no access) — the home's circumstances, which no
    restore from a backup would fix."""
    if isinstance(e, sqlite3.OperationalError):
        import shutil

        try:
            full = shutil.disk_usage(home).free < 1 << 20
        except OSError:
            full = False
        why = "the disk holding it is full" if full else "check the disk and permissions"
        return LibraryError(f"library {home}: the catalog cannot be opened ({e}): {why}")
    return CatalogDamaged(f"library {home}: catalog.sqlite cannot be read ({e}); run "
                          "`skillbank verify` and restore the catalog from a backup")


def connect(home: Path, journal: str | None,
            blob_shas: Callable[[], Iterable[str]]) -> tuple[sqlite3.Connection, str]:
    """``(connection, journal mode)`` on a writable home, the schema created or migrated: a
    new catalog knows no blob (any beside it are strangers to ``gc``); a schema-1 catalog,
    from before blobs were recorded, adopts the blob files ``blob_shas()`` lists."""
    try:
        conn = sqlite3.connect(path(home), timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        mode = journal_mode(home, journal)
        got = conn.execute(f"PRAGMA journal_mode = {mode.upper()}").fetchone()[0]
        if got.lower() != mode:
            conn.close()
            raise LibraryError(f"library {home}: cannot switch the catalog to journal mode "
                               f"{mode} (it is {got}; another process has it open?)")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = _schema_version(home, row)
            if version is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif version < 2:
                conn.executemany("INSERT OR IGNORE INTO blobs VALUES (?, NULL)",
                                 [(sha,) for sha in blob_shas()])
                conn.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                             (str(SCHEMA_VERSION),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise _damaged(home, e) from None
    return conn, mode


def connect_readonly(home: Path) -> tuple[sqlite3.Connection, bool]:
    """``(read-only connection, legacy)``: ``legacy`` for a schema-1 catalog, which kept no
    record of its blobs (and cannot be migrated read-only)."""
    wal = home / "catalog.sqlite-wal"
    pending = wal.exists() and wal.stat().st_size > 0
    # a WAL catalog on a read-only mount cannot make its shared-memory index: with nothing
    # left in the WAL, the file alone is the whole catalog and is read as immutable
    for options in ("mode=ro", "mode=ro&immutable=1") if not pending else ("mode=ro",):
        try:
            conn = sqlite3.connect(f"file:{quote(str(path(home)))}?{options}", uri=True,
                                   timeout=60, isolation_level=None)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            return conn, (_schema_version(home, row) or 0) < 2
        except sqlite3.OperationalError as e:
            error = e
        except sqlite3.DatabaseError as e:
            raise _damaged(home, e) from None
    if pending:
        raise LibraryError(f"library {home} is read-only and its catalog has changes not yet "
                           f"folded in ({wal.name}; {error}): open it once where it can be "
                           "written")
    raise _damaged(home, error)


TABLES = ("meta", "names", "skills", "aliases", "bases", "base_files", "blobs", "attachments",
          "results")
MAX_ROWS_NAMED = 20  # a wrecked table is summarised after this many unreadable rows


def _label(conn: sqlite3.Connection, table: str, rowid: int) -> str:
    if table == "skills":
        try:
            name, version = conn.execute("SELECT name, version FROM skills WHERE rowid=?",
                                         (rowid,)).fetchone()
            return f"catalog row {rowid} of skills ({name}@{version})"
        except (sqlite3.DatabaseError, TypeError):
            pass
    return f"catalog row {rowid} of {table}"


def diagnose(conn: sqlite3.Connection) -> list[dict[str, str]]:
    """Problems SQLite finds in the catalog, then every row of every table that cannot be
    read, named by table and rowid (and skill, where its name can still be read)."""
    try:
        conn.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as e:
        return [{"what": "catalog", "problem": f"cannot be read at all ({e}): restore "
                 "catalog.sqlite from a backup"}]
    try:
        lines = [r[0] for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    except sqlite3.DatabaseError as e:
        lines = [f"stopped ({e})"]
    out = []
    if lines != ["ok"]:
        more = f" (+{len(lines) - 3} more)" if len(lines) > 3 else ""
        out.append({"what": "catalog", "problem": "SQLite integrity check: "
                    + "; ".join(lines[:3]) + more})
    for table in TABLES:
        try:
            ids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table}")]  # noqa: S608
        except sqlite3.DatabaseError as e:
            if "no such table" not in str(e):
                out.append({"what": f"catalog table {table}", "problem": f"cannot be read ({e})"})
            continue
        bad = 0
        for rowid in ids:
            try:
                conn.execute(f"SELECT * FROM {table} WHERE rowid=?", (rowid,)).fetchone()  # noqa: S608
            except sqlite3.DatabaseError as e:
                bad += 1
                if bad <= MAX_ROWS_NAMED:
                    out.append({"what": _label(conn, table, rowid), "problem": f"cannot be read ({e})"})
        if bad > MAX_ROWS_NAMED:
            out.append({"what": f"catalog table {table}",
                        "problem": f"{bad - MAX_ROWS_NAMED} more rows cannot be read"})
    return out


def diagnose_file(path: Path) -> list[dict[str, str]]:
    """:func:`diagnose` on a catalog file that ``Library.open`` refused, opened read-only."""
    if not path.is_file():
        return [{"what": "catalog", "problem": f"{path} is missing"}]
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return [{"what": "catalog", "problem": f"cannot be opened ({e})"}]
    try:
        return diagnose(conn) or [{"what": "catalog", "problem": "reads, but not as a "
                                   "skillbank catalog"}]
    finally:
        conn.close()
