"""What `gc` may delete: only blobs this catalog wrote that no skill references — never while
`verify` finds a problem, never through a symbolic link, never a file a user put there."""

from __future__ import annotations

import os
import sqlite3

import pytest
import torch

from skillbank.library import Library, LibraryError
from skillbank.skill import Skill

from .faults_helpers import cli, snapshot

FP = "0" * 64


def two_skills(home):
    """A closed library at ``home`` holding `a` and `b`; returns their blob paths."""
    with Library.open(home) as lib:
        lib.add(Skill("a", "delta", FP, {"w": torch.arange(6.0)}))
        lib.add(Skill("b", "delta", FP, {"w": torch.arange(9.0)}))
        return [lib.blob_path(lib.resolve(n).blob) for n in ("a", "b")]


def test_an_emptied_catalog_is_not_taken_for_a_new_library(home):
    blobs = two_skills(home)
    (home / "catalog.sqlite").write_bytes(b"")  # emptied by accident (0 bytes)
    with Library.open(home) as lib:
        problems = lib.verify()
        assert [p["what"] for p in problems] == ["catalog"]
        assert "2 blob(s) in blobs/ were not written by this catalog" in problems[0]["problem"]
        with pytest.raises(LibraryError, match="gc refused: `skillbank verify` finds 1 problem"):
            lib.gc()
    assert all(p.is_file() for p in blobs)
    code, out, err = cli("--home", home, "verify")
    assert code == 1 and "not written by this catalog" in out
    code, out, err = cli("--home", home, "gc")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: gc refused")
    assert all(p.is_file() for p in blobs)


def test_a_damaged_blob_reference_stops_gc_from_deleting_the_intact_blob(home):
    blobs = two_skills(home)
    con = sqlite3.connect(home / "catalog.sqlite")
    con.execute("UPDATE skills SET blob=? WHERE name='a'", ("f" * 64,))
    con.commit()
    con.close()
    with Library.open(home) as lib:
        assert lib.verify() == [{"what": "a@1", "problem": f"blob {'f' * 12} missing"}]
        with pytest.raises(LibraryError, match="gc refused"):
            lib.gc()
    assert all(p.is_file() for p in blobs)


def test_gc_refuses_a_symlinked_blobs_directory_and_leaves_the_other_home_alone(tmp_path):
    other = tmp_path / "other"
    kept = two_skills(other)
    home = tmp_path / "home"
    Library.open(home).close()
    (home / "blobs").rmdir()
    (home / "blobs").symlink_to(other / "blobs")
    with Library.open(home) as lib, pytest.raises(LibraryError, match="symbolic link"):
        lib.gc()
    assert all(p.is_file() for p in kept)
    with Library.open(other) as lib:
        assert lib.verify() == []


def test_gc_deletes_only_what_it_made(home):
    blobs = two_skills(home)
    # a user's files inside the home: an export into blobs/ and tmp/, a note, a link
    (home / "blobs" / "ab" / "export").mkdir(parents=True)
    (home / "blobs" / "ab" / "export" / "adapter.safetensors").write_bytes(b"mine")
    (home / "blobs" / "notes.txt").write_text("mine")
    (home / "tmp" / "my-export").mkdir()
    (home / "tmp" / "my-export" / "README.md").write_text("mine")
    (home / "tmp" / "999999999-link").symlink_to(blobs[0])
    (home / "tmp" / "999999999-dead.part").write_bytes(b"ours, of a dead writer")
    before = snapshot(home)
    with Library.open(home) as lib:
        assert lib.verify() == []
        result = lib.gc()
    assert result["blobs_removed"] == 0
    assert sorted(result["left"]) == ["blobs/ab/export", "blobs/notes.txt", "tmp/999999999-link",
                                      "tmp/my-export"]
    after = snapshot(home)
    assert set(before) - set(after) == {"tmp/999999999-dead.part"}
    assert all(p.is_file() for p in blobs)


def test_gc_removes_unreferenced_blobs_and_keeps_a_live_writers_staged_blob(home):
    blobs = two_skills(home)
    with Library.open(home) as lib:
        lib.rm("b")
        staged = lib.blob_path("c" * 64)
        lib._ensure_blob("c" * 64, b"being written")  # staged by a live writer (this process)
        with lib._tx() as c:
            c.execute("INSERT INTO blobs VALUES (?, ?)", ("c" * 64, os.getpid()))
        # the staged file's bytes do not hash to its name, as a half-written one would not;
        # it is a writer's, so neither verify nor gc counts it as damage or garbage
        result = lib.gc()
        assert result["blobs_removed"] == 1 and not blobs[1].exists() and blobs[0].exists()
        assert staged.exists()
        with lib._tx() as c:
            c.execute("UPDATE blobs SET writer=999999999 WHERE sha=?", ("c" * 64,))
        assert lib.gc()["blobs_removed"] == 1 and not staged.exists()
        assert lib.verify() == []


def test_storing_good_content_heals_a_damaged_blob(home):
    blobs = two_skills(home)
    blobs[0].write_bytes(b"damaged")
    with Library.open(home) as lib:
        assert lib.verify() == [{"what": "a@1", "problem": f"blob {blobs[0].name[:12]} damaged"}]
        again, new = lib.store(Skill("a", "delta", FP, {"w": torch.arange(6.0)}))
        assert not new and again.version == 1
        assert lib.verify() == []
        assert torch.equal(lib.get("a").tensors["w"], torch.arange(6.0))


def test_a_catalog_from_before_blobs_were_recorded_adopts_its_files(home):
    blobs = two_skills(home)
    with Library.open(home) as lib:
        lib.rm("b")
    con = sqlite3.connect(home / "catalog.sqlite")  # as schema 1 left it
    con.execute("DROP TABLE blobs")
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    with Library.open(home) as lib:
        assert lib.verify() == []
        assert lib.gc()["blobs_removed"] == 1
    assert blobs[0].exists() and not blobs[1].exists()
