"""``base family`` and ``eval --metric pass-until`` through the CLI: JSON, re-use by recipe,
and one-line errors for bad sizes, caps and metrics."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.library import Library

FAMILY = ["base", "family", "f", "--sizes", "8x1,16x1", "--steps", "2"]


def _invoke(home, *args):
    r = CliRunner().invoke(app, ["--home", str(home), *map(str, args)])
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads(r.stdout)


def test_family_then_pass_until(home):
    made = _invoke(home, *FAMILY, "--json")
    assert [m["base"] for m in made["members"]] == ["f-8x1", "f-16x1"]
    assert all(m["trained"] for m in made["members"]) and made["members"][0]["steps"] == 2
    again = _invoke(home, *FAMILY, "--json")
    assert not any(m["trained"] for m in again["members"])
    args = ["eval", "--base", "f-8x1", "--tasks", "rev,copy", "--metric", "pass-until", "--cap", 5,
            "--n", 2, "--json"]
    first = _invoke(home, *args)
    cell = first["base:f-8x1"]["rev"]
    assert set(cell) >= {"pass_rate", "pass_rate_stderr", "ci90", "draws", "config"}
    assert cell["draws"] <= 2 * 5 and cell["config"]["cap"] == 5
    with Library.open(home) as lib:
        rows = len(lib.results("base:f-8x1"))
    assert _invoke(home, *args) == first          # found again, not sampled again
    with Library.open(home) as lib:
        assert len(lib.results("base:f-8x1")) == rows == 2


@pytest.mark.parametrize("args, message", [
    (["base", "family", "f", "--sizes", "16x1,8x1"], "sizes must increase"),
    (["base", "family", "f", "--sizes", "16x1"], "at least two sizes"),
    (["base", "family", "f", "--sizes", "16x1,20x1"], "multiple of 8"),
    (["base", "family", "f", "--tasks", "nope"], "unknown task"),
    (["base", "family", "f", "--token-exponent", "2"], "token exponent"),
])
def test_family_errors_one_line(args, message, home, capsys, monkeypatch):
    _one_line(args, message, home, capsys, monkeypatch)


def test_eval_errors_one_line(home, capsys, monkeypatch):
    _invoke(home, *FAMILY, "--json")
    base = ["eval", "--base", "f-8x1", "--tasks", "rev", "--metric"]
    _one_line([*base, "pass-until", "--cap", "0"], "cap must be at least 1", home, capsys, monkeypatch)
    _one_line([*base, "pass-until", "--passes", "0"], "passes must be", home, capsys, monkeypatch)
    _one_line([*base, "bogus"], "unknown metric 'bogus'", home, capsys, monkeypatch)
    predict = ["base", "predict", "f", "--task", "rev", "--cap", "3", "--n", "2", "--size"]
    _one_line([*predict, "32x2"], "at least 3 members", home, capsys, monkeypatch)
    _one_line([*predict, "33x2"], "multiple of 8", home, capsys, monkeypatch)
    _one_line(["base", "predict", "g", "--task", "rev", "--size", "32x2"], "no family 'g'", home,
              capsys, monkeypatch)


def _one_line(args, message, home, capsys, monkeypatch):
    from skillbank.cli import main

    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(home), *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    assert e.value.code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err


@pytest.mark.parametrize("args, message", [
    (["--samples", "0"], "--samples must be at least 1"),
    (["--band", "x"], "--band takes LOW,HIGH"),
    (["--band", "0.9,0.1"], "band must satisfy"),
    (["--evaluator", "oracle"], "unknown evaluator"),
    (["--tasks", "nope"], "unknown task"),
    (["--start", "nope"], "no skill named"),
])
def test_practice_errors_one_line(args, message, home, capsys, monkeypatch):
    _invoke(home, *FAMILY, "--json")
    base = ["practice", "p", "--base", "f-8x1", "--rounds", "1"]
    if "--tasks" not in args:
        base += ["--tasks", "rev"]
    _one_line([*base, *args], message, home, capsys, monkeypatch)
