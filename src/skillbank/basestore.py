"""Registered bases: copied into the library home, fingerprinted, their files recorded.

``Library`` inherits this: ``add_base``, ``base``, ``bases``, ``base_of`` and the base half
of ``verify`` (``basefiles`` says what is checked when).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from . import basefiles
from .base import (
    FINGERPRINT_VERSION,
    KINDS,
    Base,
    detect_kind,
    fingerprint,
    read_config,
    weight_files,
)
from .skill import SkillError, check_name

FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")


class LibraryError(SkillError):
    """A library operation failed; the message is one line for the user."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class BaseStore:
    """The base half of :class:`~skillbank.library.Library` (its ``home``, ``conn``, ``_tx``)."""

    def add_base(self, name: str, path: str | Path, kind: str | None = None,
                 meta: dict[str, Any] | None = None) -> Base:
        """Copy a local model directory into the library and register it under ``name``."""
        check_name(name, "base name")
        if FINGERPRINT_RE.fullmatch(name):
            raise LibraryError(f"invalid base name {name!r}: it looks like a fingerprint, and "
                               "bases are found by name or fingerprint")
        src = Path(path)
        if not src.is_dir():
            raise LibraryError(f"{src}: no such directory")
        basefiles.model_files(src)  # links that lead outside refused before anything is read
        config = read_config(src)
        weight_files(src)
        fp = fingerprint(src)
        existing = self.conn.execute("SELECT fingerprint, kind, meta FROM bases WHERE name=?",
                                     (name,)).fetchone()
        version = FINGERPRINT_VERSION
        if existing and existing[0] != fp and _fp_version(existing[2]) < FINGERPRINT_VERSION \
                and fingerprint(src, _fp_version(existing[2])) == existing[0]:
            fp, version = existing[0], _fp_version(existing[2])  # the same model, added before
        kind = kind or (existing[1] if existing else detect_kind(config))
        if kind not in KINDS:
            raise LibraryError(f"base kind must be causal, encoder or policy, not {kind!r}")
        if existing and existing[0] != fp:
            raise LibraryError(
                f"base {name!r} is already registered with fingerprint {existing[0][:12]}; "
                f"this model is {fp[:12]}: choose another name"
            )
        if existing and existing[1] != kind:
            raise LibraryError(f"base {name!r} is registered as {existing[1]}, not {kind}: every "
                               "skill on it depends on that; register it under another name")
        if existing and meta is None:
            meta = json.loads(existing[2])  # re-adding the same model keeps what it recorded
        dest = self.home / "bases" / fp
        if dest.exists() and basefiles.problems(dest, self._files(fp), hashes=True):
            # damaged in the library, intact at the source (same fingerprint): heal it
            aside = self.home / "tmp" / f"{os.getpid()}-damaged-{fp[:12]}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(dest, aside)
            shutil.rmtree(aside, ignore_errors=True)
            self._record_files(fp, None)
        if not dest.exists():
            tmp = self.home / "tmp" / f"{os.getpid()}-base-{fp[:12]}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                basefiles.copy_model(src, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            try:
                os.replace(tmp, dest)
            except OSError:
                if not dest.exists():
                    raise
                shutil.rmtree(tmp)  # another process registered the same model first
            _fsync_dir(dest.parent)
        if not self._files(fp):
            self._record_files(fp, dest)
        probe = Base(name, dest, fp, kind, files=self._files(fp))
        meta = {**(meta or {}), "arch": probe.arch.as_dict(),  # read off the model, recorded
                "fingerprint_version": version}
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO bases VALUES (?,?,?,?,?)",
                      (name, fp, kind, json.dumps(meta), _now()))
        return self.base(name)

    def base(self, name_or_fp: str, check: bool = True) -> Base:
        """The registered base by name or fingerprint; with ``check`` (the default) every
        recorded file must be there with its size (``BaseDamaged`` otherwise)."""
        row = self.conn.execute(  # a name first; a fingerprint finds any base with it
            "SELECT name, fingerprint, kind, meta FROM bases WHERE name=? OR fingerprint=? "
            "ORDER BY name=? DESC, name LIMIT 1", (name_or_fp, name_or_fp, name_or_fp),
        ).fetchone()
        if row is None:
            raise LibraryError(f"no base named {name_or_fp!r}; register one with `skillbank base add`")
        base = Base(row[0], self.home / "bases" / row[1], row[1], row[2], json.loads(row[3]),
                    files=self._files(row[1]))
        if check:
            base.check(hashes=False)  # cheap: every recorded file there, with its size
        return base

    def bases(self) -> list[Base]:
        """Every registered base, unchecked (loading one checks it; ``verify`` checks all)."""
        names = self.conn.execute("SELECT name FROM bases ORDER BY name").fetchall()
        return [self.base(n, check=False) for (n,) in names]

    def base_of(self, skill: Any) -> Base:
        """The registered base a skill was made on (any name with that fingerprint)."""
        try:
            return self.base(skill.base)
        except LibraryError:
            raise LibraryError(
                f"skill {skill.name}@{skill.version} needs base {skill.base[:12]}, not registered here"
            ) from None


    def _record_files(self, fp: str, root: Path | None) -> None:
        """Record the files under ``root`` as base ``fp``'s (None: forget them)."""
        records = basefiles.file_records(root) if root is not None else {}
        with self._tx() as c:
            c.execute("DELETE FROM base_files WHERE fingerprint=?", (fp,))
            c.executemany("INSERT INTO base_files VALUES (?,?,?,?)",
                          [(fp, rel, size, sha) for rel, (size, sha) in records.items()])

    def _files(self, fp: str) -> dict[str, tuple[int, str]]:
        rows = self.conn.execute("SELECT file, size, sha256 FROM base_files WHERE fingerprint=?",
                                 (fp,)).fetchall()
        return {f: (size, sha) for f, size, sha in rows}

    def verify_bases(self) -> list[dict[str, str]]:
        """Every base re-fingerprinted from its weights and its files re-hashed."""
        out = []
        for b in self.bases():
            what = f"base {b.name}"
            found = basefiles.problems(b.path, b.files, hashes=True)
            if not found:
                try:
                    if fingerprint(b.path, b.meta.get("fingerprint_version", 1)) != b.fingerprint:
                        found = ["weights differ from the recorded fingerprint"]
                    elif not b.files and not self.readonly:  # registered before files were recorded: adopt them
                        self._record_files(b.fingerprint, b.path)
                except (OSError, ValueError) as e:
                    found = [f"cannot be fingerprinted ({str(e).splitlines()[0]})"]
            out += [{"what": what, "problem": p} for p in found]
        return out


def _fp_version(meta_json: str) -> int:
    """The fingerprint version a base was registered with (1 before it was recorded)."""
    return json.loads(meta_json).get("fingerprint_version", 1)
