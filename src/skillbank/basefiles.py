"""What a registered base's directory held when it was added, and the checks against it.

``Library.add_base`` records every file of the copied model directory (path, size,
sha256). Opening a base checks that each recorded file is there with its size; loading it
(``Base.load_model`` / ``load_tokenizer``) also checks each file's sha256 once per process
and file state; ``Library.verify`` recomputes the base's fingerprint from its weights. A
base that fails refuses to load, so a damaged base can never silently change the skills on
it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .skill import SkillError

Records = dict[str, tuple[int, str]]  # relative path → (size, sha256)
_hashed: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) → sha256


class BaseDamaged(SkillError):
    """A registered base's files are missing or differ from what was recorded."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_records(root: Path) -> Records:
    """Every regular file under ``root`` (symlinks refused: a base holds its own files)."""
    out: Records = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise SkillError(f"{path}: a symlink inside a registered base")
        if path.is_file():
            out[path.relative_to(root).as_posix()] = (path.stat().st_size, sha256_file(path))
    return out


MODEL_FILES = ("config.json", "generation_config.json")  # beside weights and tokenizer files
TOKENIZER_FILES = {"special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja"}


def is_tokenizer_file(name: str) -> bool:
    """Whether a model directory's file ``name`` is one of its tokenizer's (Hugging Face's names)."""
    return name.startswith("tokenizer") or name in TOKENIZER_FILES


def model_files(src: Path) -> list[tuple[str, Path]]:
    """``[(name, real file)]``: the files of a model directory a base needs — its config,
    safetensors weights (and their index) and tokenizer files, top level only. A symbolic
    link is followed when it leads to a regular file inside the directory or, as in a
    Hugging Face cache snapshot, into the cache's ``blobs/``; any other link is refused."""
    root = src.resolve()
    cache_blobs = [p / "blobs" for p in root.parents if p.name.startswith(("models--", "datasets--"))]
    out = []
    for entry in sorted(src.iterdir(), key=lambda p: p.name):
        name = entry.name
        wanted = name in MODEL_FILES or name.endswith((".safetensors", ".safetensors.index.json")) \
            or is_tokenizer_file(name)
        if not wanted:
            continue
        real = entry
        if entry.is_symlink():
            try:
                real = entry.resolve(strict=True)
            except (OSError, RuntimeError):
                raise SkillError(f"{entry}: a broken or looping symbolic link") from None
            inside = real.is_relative_to(root) or any(real.is_relative_to(b) for b in cache_blobs)
            if not inside or not real.is_file():
                raise SkillError(f"{entry}: a symbolic link to {real}, outside the model "
                                 "directory; copy the file in instead")
        if not real.is_file():
            raise SkillError(f"{entry}: not a regular file")
        out.append((name, real))
    return out


def copy_model(src: Path, dest: Path) -> None:
    """Copy :func:`model_files` of ``src`` into the new directory ``dest`` (links resolved)."""
    import shutil

    files = model_files(src)
    dest.mkdir(parents=True)
    for name, real in files:
        shutil.copyfile(real, dest / name)


def _hash_cached(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def problems(root: Path, records: Records, hashes: bool) -> list[str]:
    """What differs between ``root`` and ``records`` (sizes; with ``hashes`` also sha256)."""
    if not records:
        return []
    if not root.is_dir():
        return [f"directory {root} is missing"]
    out = []
    for rel, (size, sha) in sorted(records.items()):
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            out.append(f"file {rel} is missing")
            continue
        if st.st_size != size:
            out.append(f"file {rel} changed size ({st.st_size} bytes, recorded {size})")
        elif hashes and _hash_cached(path, st) != sha:
            out.append(f"file {rel} is damaged (sha256 mismatch)")
    return out


def check(name: str, root: Path, records: Records, hashes: bool) -> None:
    """``BaseDamaged`` naming the first problem, if any."""
    found = problems(root, records, hashes)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise BaseDamaged(f"base {name}: {found[0]}{more}; it refuses to load "
                          "(run `skillbank verify`; re-register it with `skillbank base add`)")
