"""A damaged catalog: every command says so in one line, `verify` names what is damaged; odd
references and names are refused, not misread."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from skillbank.library import Library, LibraryError
from skillbank.skill import Skill, SkillError, check_name

from .faults_helpers import cli, lost, one_line_error, snapshot

FP = "0" * 64


@pytest.fixture
def lib_home(home):
    with Library.open(home) as lib:
        lib.add(Skill("a", "delta", FP, {"w": torch.arange(6.0)}))
        lib.add(Skill("a", "delta", FP, {"w": torch.arange(7.0)}))
    return home


@pytest.mark.parametrize("damage", ["garbage", "truncated", "meta page zeroed"])
def test_a_damaged_catalog_gives_one_line_everywhere_and_verify_diagnoses_it(lib_home, damage):
    catalog = lib_home / "catalog.sqlite"
    good = catalog.read_bytes()
    page = 4096
    catalog.write_bytes({"garbage": b"x" * len(good), "truncated": good[: len(good) // 2],
                         "meta page zeroed": good[:page] + bytes(page) + good[2 * page:]}[damage])
    before = snapshot(lib_home)
    for cmd in (["list"], ["show", "a"], ["versions", "a"], ["gc"], ["rm", "a"], ["tag", "a@1", "x"],
                ["base", "list"]):
        code, out, err = cli("--home", lib_home, *cmd)
        assert one_line_error(code, err), (cmd, code, err)
        assert "catalog.sqlite cannot be read" in err
    code, out, err = cli("--home", lib_home, "verify")
    assert code == 1 and "catalog" in out and err == ""
    if damage == "meta page zeroed":
        assert "catalog row 1 of meta" in out  # the damaged row, named
    assert lost(before, snapshot(lib_home)) == []


def test_a_manifest_missing_a_key_is_named_by_verify_and_refused_in_one_line(lib_home):
    con = sqlite3.connect(lib_home / "catalog.sqlite")
    con.execute("""UPDATE skills SET manifest='{"name": "a"}' WHERE version=1""")
    con.commit()
    con.close()
    with Library.open(lib_home) as lib:
        problems = lib.verify()
        assert problems == [{"what": "catalog row a@1",
                             "problem": "its manifest lacks config, recipe, lineage, metrics"}]
        with pytest.raises(LibraryError, match="catalog row a@1: its manifest lacks config"):
            lib.get("a@1")
        assert lib.get("a@2").version == 2
    code, out, err = cli("--home", lib_home, "show", "a@1")
    assert one_line_error(code, err) and "lacks config" in err


def test_references_that_only_look_like_versions(lib_home):
    with Library.open(lib_home) as lib:
        for ref, message in [("a@99999999999999999999999", "no version 99999999999999999999999"),
                             ("a@\u0663", "has no version or alias"),  # Arabic-Indic three
                             ("a@-1", "has no version or alias")]:
            with pytest.raises(LibraryError, match=message):
                lib.resolve(ref)
        for alias in ("LATEST", "Latest", "-1", "2"):
            with pytest.raises(SkillError):
                lib.tag("a@1", alias)
    code, out, err = cli("--home", lib_home, "show", "a@99999999999999999999999")
    assert one_line_error(code, err)


@pytest.mark.parametrize("name", ["-x", "--help", "a\u0663", "caf\u00e9", "a\n", "", ".", ".."])
def test_odd_names_are_refused(name):
    with pytest.raises(SkillError, match="invalid"):
        check_name(name)


def test_a_base_named_like_a_fingerprint_is_refused(home, tiny_llama_dir):
    with Library.open(home) as lib:
        b = lib.add_base("tiny", tiny_llama_dir)
        with pytest.raises(LibraryError, match="looks like a fingerprint"):
            lib.add_base("f" * 64, tiny_llama_dir)
        assert lib.base(b.fingerprint).name == "tiny"


def test_a_mistyped_home_is_an_error_for_reads_and_is_not_created(tmp_path):
    missing = tmp_path / "no-such-home"
    for cmd in (["list"], ["show", "a"], ["verify"], ["gc"], ["base", "list"], ["export", "a", tmp_path / "x"]):
        code, out, err = cli("--home", missing, *cmd)
        assert one_line_error(code, err) and "no library at" in err, (cmd, err)
    assert not missing.exists()
