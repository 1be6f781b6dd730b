"""Skill tensors on disk: content-addressed safetensors blobs the catalog keeps a record of.

``Library`` inherits this. A blob is ``blobs/<sha[:2]>/<sha>``, named by the sha256 of its
bytes. The catalog's ``blobs`` table lists every blob this catalog wrote, with the pid of
the writer while the skill that holds it is not yet committed. That record is what makes
``gc`` safe: it deletes only a blob the catalog wrote, that no skill references and whose
writer is gone — never a file it did not make, never anything behind a symbolic link, and
nothing at all while ``verify`` finds a problem (a catalog that was emptied or replaced
knows none of the blobs beside it, and says so instead of taking them for garbage).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .basestore import LibraryError, _fsync_dir

SHA_RE = re.compile(r"^[0-9a-f]{64}$")
TMP_RE = re.compile(r"^(\d+)-.+")  # every temp entry skillbank makes: `<pid>-<what>`


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str | None:
    try:
        return sha256_bytes(path.read_bytes())
    except OSError:
        return None


def blob_files(home: Path) -> tuple[dict[str, Path], list[Path]]:
    """``({sha: path} of well-formed blob files, [every other entry under blobs/])`` of the
    home; symbolic links are never followed and count as other entries."""
    blobs, other = {}, []
    root = home / "blobs"
    for shard in sorted(root.iterdir()) if root.is_dir() else []:
        if shard.is_symlink() or not shard.is_dir():
            other.append(shard)
            continue
        for path in sorted(shard.iterdir()):
            ok = SHA_RE.fullmatch(path.name) and path.name[:2] == shard.name
            if ok and not path.is_symlink() and path.is_file():
                blobs[path.name] = path
            else:
                other.append(path)
    return blobs, other


class BlobStore:
    """The blob half of :class:`~skillbank.library.Library` (its ``home``, ``conn``, ``_tx``)."""

    def blob_path(self, sha: str) -> Path:
        return self.home / "blobs" / sha[:2] / sha

    def _write_atomic(self, final: Path, data: bytes) -> None:
        tmp = self.home / "tmp" / f"{os.getpid()}-{final.name}.part"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)

    def _ensure_blob(self, sha: str, data: bytes) -> None:
        """The blob file holds ``data``: written when missing, rewritten when damaged (a
        store of good content heals a blob whose bytes no longer match their name)."""
        path = self.blob_path(sha)
        if path.is_symlink() or (path.exists() and _file_sha(path) != sha):
            path.unlink()
        if not path.exists():
            self._write_atomic(path, data)

    def put_blob(self, tensors: dict[str, torch.Tensor]) -> tuple[str, bytes]:
        """Stage the tensors' blob: recorded as being written by this process, then on
        disk. :meth:`_commit_blob` (inside the transaction that references it) finishes."""
        self._need_write()
        data = st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
        sha = sha256_bytes(data)
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (sha, os.getpid()))
        self._ensure_blob(sha, data)
        return sha, data

    def _commit_blob(self, sha: str, data: bytes) -> None:
        """Inside the write transaction that references ``sha``: the file is there (a
        concurrent ``gc`` may have taken it) and the blob is no longer a writer's."""
        if not self.blob_path(sha).exists():
            self._write_atomic(self.blob_path(sha), data)
        self.conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, NULL)", (sha,))

    def read_blob(self, sha: str, what: str) -> dict[str, torch.Tensor]:
        path = self.blob_path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LibraryError(f"{what}: blob {sha[:12]} is missing; run `skillbank verify`") from None
        if sha256_bytes(data) != sha:
            raise LibraryError(f"{what}: blob {sha[:12]} is damaged (sha256 mismatch); run `skillbank verify`")
        try:
            return st_load(data)
        except Exception as e:  # the right bytes but not safetensors: never written by us
            raise LibraryError(f"{what}: blob {sha[:12]} is not a safetensors file ({e})") from None

    # -- what is on disk ---------------------------------------------------------------
    def blob_files(self) -> tuple[dict[str, Path], list[Path]]:
        return blob_files(self.home)

    def known_blobs(self) -> dict[str, int | None]:
        """``{sha: writer pid or None}`` for every blob this catalog wrote."""
        if self.legacy:  # a schema-1 catalog opened read-only: it kept no record
            return dict.fromkeys(self.blob_files()[0])
        return dict(self.conn.execute("SELECT sha, writer FROM blobs").fetchall())

    def blob_problems(self, referenced: list[tuple[str, str]]) -> list[dict[str, str]]:
        """Problems with the blobs: a referenced blob (``[(sha, what)]``) missing or
        damaged (each file hashed once), and blob files the catalog never wrote."""
        out = []
        files, _ = self.blob_files()
        hashed: dict[str, str | None] = {}
        for sha, what in referenced:
            if sha not in files:
                out.append({"what": what, "problem": f"blob {sha[:12]} missing"})
                continue
            if sha not in hashed:
                hashed[sha] = _file_sha(files[sha])
            if hashed[sha] != sha:
                out.append({"what": what, "problem": f"blob {sha[:12]} damaged"})
        known = self.known_blobs()
        strangers = sorted(sha for sha in files if sha not in known)
        if strangers:
            out.append({"what": "catalog", "problem": (
                f"{len(strangers)} blob(s) in blobs/ were not written by this catalog (first "
                f"{strangers[0][:12]}): was catalog.sqlite replaced or emptied? gc will not run")})
        return out

    def _home_dirs_problem(self) -> str | None:
        for sub in ("blobs", "tmp"):
            path = self.home / sub
            if path.is_symlink() or not path.is_dir():
                return f"{path} is a symbolic link or not a directory"
        return None

    # -- gc ------------------------------------------------------------------------
    def gc(self) -> dict[str, Any]:
        """Delete blobs this catalog wrote that no skill references (and whose writer has
        exited), and temp entries of writers that have exited. Refuses while ``verify``
        finds a problem or when ``blobs/`` or ``tmp/`` is a symbolic link; entries it did
        not make are left and listed under ``left``."""
        self._need_write()
        where = self._home_dirs_problem()
        if where:
            raise LibraryError(f"gc refused: {where}; gc deletes only inside a home it owns")
        problems = self.verify()
        if problems:
            first = problems[0]
            raise LibraryError(f"gc refused: `skillbank verify` finds {len(problems)} problem(s) "
                               f"(first: {first['what']}: {first['problem']}); gc deletes only what "
                               "a sound catalog proves unreferenced")
        removed, freed = 0, 0
        with self._tx() as c:  # holds the write lock, so no `add` commits a blob we delete
            used = {r[0] for r in c.execute("SELECT blob FROM skills UNION SELECT blob FROM attachments")}
            files, other = self.blob_files()
            for sha, writer in self.known_blobs().items():
                if sha in used or (writer is not None and _alive(writer)):
                    continue
                if sha in files:
                    freed += files[sha].stat().st_size
                    files[sha].unlink()
                    removed += 1
                c.execute("DELETE FROM blobs WHERE sha=?", (sha,))
        tmp_left = []
        for path in sorted((self.home / "tmp").iterdir()):
            m = TMP_RE.match(path.name)
            if not m or path.is_symlink():
                tmp_left.append(path)
            elif not _alive(int(m.group(1))):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        left = [str(p.relative_to(self.home)) for p in other + tmp_left]
        return {"blobs_removed": removed, "bytes_freed": freed, "left": left}
