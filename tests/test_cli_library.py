"""The library commands through the CLI: --help, --json output, and clean errors with exit 2."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.library import Library
from skillbank.skill import Skill

SKILLBANK = str(Path(sys.executable).parent / "skillbank")


@pytest.fixture
def run(home):
    runner = CliRunner()

    def invoke(*args, code=0):
        result = runner.invoke(app, ["--home", str(home), *map(str, args)])
        assert result.exit_code == code, (result.output, result.stderr, result.exception)
        return result

    return invoke


def run_json(run, *args):
    return json.loads(run(*args, "--json").stdout)


def all_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, (*prefix, name))


def test_every_command_has_help():
    commands = list(all_commands(typer.main.get_command(app)))
    expected = {("base",), ("base", "add"), ("base", "list"), ("import",), ("export",), ("list",),
                ("show",), ("versions",), ("lineage",), ("tag",), ("rm",), ("verify",), ("gc",)}
    assert expected <= set(commands)
    runner = CliRunner()
    for cmd in commands:
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, (cmd, result.output)
        assert "Usage:" in result.stdout and "--help" in result.stdout


def test_library_commands(run, home, tiny_llama_dir, peft_adapter_dir, make_adapter, tmp_path):
    b = run_json(run, "base", "add", "tiny", "--from", tiny_llama_dir)
    assert b["name"] == "tiny" and b["kind"] == "causal" and len(b["fingerprint"]) == 64
    assert run_json(run, "base", "list") == [b]
    assert b["fingerprint"][:12] in run("base", "list").stdout

    m = run_json(run, "import", peft_adapter_dir, "--name", "qv", "--base", "tiny")
    assert (m["name"], m["version"], m["kind"], m["base"], m["new"]) == (
        "qv", 1, "lora", b["fingerprint"], True)
    assert m["config"]["r"] == 4 and len(m["tensors"]) == 8
    # the same content again: said so, and no new version
    again = run("import", peft_adapter_dir, "--name", "qv", "--base", "tiny").stdout
    assert "already holds this content" in again and "qv@1" in again
    again = run_json(run, "import", peft_adapter_dir, "--name", "qv", "--base", "tiny")
    assert again["new"] is False and again["version"] == 1
    other = tmp_path / "adapter2"
    make_adapter(tiny_llama_dir, other, seed=5)
    assert "imported qv@2" in run("import", other, "--name", "qv", "--base", "tiny").stdout

    rows = run_json(run, "list")
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("name", "version", "kind", "base", "tags")} == {
        "name": "qv", "version": 2, "kind": "lora", "base": b["fingerprint"], "tags": []}
    assert rows[0]["size"] > 0 and rows[0]["created"]

    assert "qv@stable -> version 1" in run("tag", "qv@1", "stable").stdout
    show = run_json(run, "show", "qv@stable")
    assert (show["version"], show["tags"], show["recipe"]["method"]) == (1, ["stable"], "import")
    assert show["content_hash"] == m["content_hash"] and show["size"] > 0
    assert run_json(run, "show", "qv")["version"] == 2
    assert "qv@1" in run("show", "qv@1").stdout
    versions = run_json(run, "versions", "qv")
    assert [(v["version"], v["tags"]) for v in versions] == [(1, ["stable"]), (2, [])]

    with Library.open(home) as lib:
        lib.add(Skill("child", "delta", b["fingerprint"], {"w": torch.ones(1)},
                      lineage=["qv@1", "gone@4"], recipe={"method": "merge"}))
    lineage = run_json(run, "lineage", "child")
    assert [(x["depth"], x["ref"]) for x in lineage] == [(0, "child@1"), (1, "qv@1"), (1, "gone@4")]
    assert lineage[0]["recipe"] == {"method": "merge"} and lineage[2]["recipe"] == {"missing": True}
    text = run("lineage", "child").stdout
    assert "merge" in text and "(not in library)" in text

    out = tmp_path / "exported"
    assert "exported qv@1" in run("export", "qv@stable", out).stdout
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()

    assert run_json(run, "verify") == {"ok": True, "problems": []}
    assert "verified" in run("verify").stdout
    assert "removed qv@2" in run("rm", "qv@2").stdout
    assert run_json(run, "gc") == {"blobs_removed": 1, "bytes_freed": versions[1]["size"], "left": []}
    assert "removed child@1" in run("rm", "child").stdout
    assert [r["name"] for r in run_json(run, "list")] == ["qv"]
    assert "removed 1 blobs" in run("gc").stdout


def test_home_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SKILLBANK_HOME", str(tmp_path / "envhome"))
    result = CliRunner().invoke(app, ["list", "--json"])  # a read never makes a home
    assert result.exit_code != 0 and "no library at" in str(result.exception)
    assert str(tmp_path / "envhome") in str(result.exception)
    assert not (tmp_path / "envhome").exists()
    Library.open(tmp_path / "envhome").close()
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []


ERRORS = {
    "unknown skill": (["show", "nope"], "no skill named 'nope'"),
    "bad name": (["show", "a b"], "invalid skill name 'a b'"),
    "path trick": (["versions", "../x"], "invalid skill name"),
    "reserved alias": (["tag", "s@1", "latest"], "reserved"),
    "unknown base": (["import", "/nonexistent", "--name", "x", "--base", "tiny"],
                     "no base named 'tiny'"),
    "unregistered base": (["export", "s", "/nonexistent/out"], "needs base 000000000000"),
}


@pytest.fixture
def home_with_skill(home):
    with Library.open(home) as lib:
        lib.add(Skill("s", "delta", "0" * 64, {"w": torch.ones(1)}))
    return home


def check_error(code, stdout, stderr, message):
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_in_process(case, home_with_skill, capsys, monkeypatch):
    """`skillbank.cli.main` turns library errors into one `error: ...` line and exit 2."""
    from skillbank.cli import main

    args, message = ERRORS[case]
    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(home_with_skill), *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    check_error(e.value.code, captured.out, captured.err, message)


def test_errors_exit_2_real_process(home_with_skill):
    """The installed console script, in real processes (run side by side to save time)."""
    cases = ["unknown skill", "bad name"]
    procs = [subprocess.Popen([SKILLBANK, "--home", str(home_with_skill), *ERRORS[c][0]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cases]
    for case, proc in zip(cases, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=60)
        check_error(proc.returncode, stdout, stderr, ERRORS[case][1])


@pytest.mark.parametrize("raised, message", [
    (PermissionError(13, "Permission denied", "/lib/home/catalog.sqlite"),
     "error: Permission denied: /lib/home/catalog.sqlite"),
    (sqlite3.DatabaseError("file is not a database"),
     "error: the library catalog cannot be used (file is not a database); run `skillbank verify`"),
])
def test_os_and_sqlite_errors_are_one_line(raised, message, home_with_skill, capsys, monkeypatch):
    from skillbank.cli import main

    def broken(*_args, **_kwargs):
        raise raised

    monkeypatch.setattr("skillbank.library.Library.list", broken)
    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(home_with_skill), "list"])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    check_error(e.value.code, captured.out, captured.err, message)


def test_json_never_prints_nan(capsys):
    from skillbank.cli.core import emit

    emit({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}, "e": 0.5})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [1.0, None], "c": {"d": None},
                                                   "e": 0.5}
