"""The reproduction contract (skillbank.repro): the JSON object of docs/methods.md
("Reproductions"), the report, the library record, and the CLI's one-line error for an
unknown name."""

from __future__ import annotations

import json
import sys
import types

from repro_helpers import SCHEMA
from typer.testing import CliRunner

import skillbank.repro as repro
from skillbank.cli import app
from skillbank.library import Library
from skillbank.report.html import Section


def _fake(monkeypatch, holds: bool):
    mod = types.ModuleType("skillbank.repro.fake")
    mod.PAPER, mod.CLAIM = "A Paper (2024)", "two is more than one"

    def run(lib, ui, out_dir, seed, quick):
        figures = {"one": 1.0, "two": 2.0 + seed}
        return repro.Outcome(figures=figures, holds=holds and figures["two"] > figures["one"],
                             table=(["figure", "value"], [[k, v] for k, v in figures.items()]),
                             sections=[Section("detail", text="more")])

    mod.run = run
    monkeypatch.setitem(sys.modules, "skillbank.repro.fake", mod)
    monkeypatch.setattr(repro, "available", lambda: ["fake"])


def test_run_repro_writes_json_report_and_result(monkeypatch, tmp_path):
    _fake(monkeypatch, holds=True)
    with Library.open(tmp_path / "home") as lib:
        res, outcome = repro.run_repro("fake", lib, tmp_path / "out", ui=None, seed=3)
        assert SCHEMA <= set(res)
        assert res["figures"] == {"one": 1.0, "two": 5.0} and res["holds"] is True and res["seed"] == 3
        assert json.loads((tmp_path / "out" / "fake.json").read_text()) == json.loads(json.dumps(res))
        page = (tmp_path / "out" / "report.html").read_text()
        assert "two is more than one" in page and "holds" in page and "detail" in page
        [row] = lib.results("repro:fake")
        assert row["metrics"]["figures"]["two"] == 5.0


def test_cli_repro_json_and_unknown(monkeypatch, tmp_path):
    _fake(monkeypatch, holds=False)
    runner = CliRunner()
    r = runner.invoke(app, ["--home", str(tmp_path / "h"), "repro", "fake", "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["holds"] is False and res["claim"] == "two is more than one"
    r = runner.invoke(app, ["--home", str(tmp_path / "h"), "repro", "fake", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0 and "does NOT hold" in r.stdout
    r = runner.invoke(app, ["repro", "list", "--json"])
    assert json.loads(r.stdout) == {"reproductions": ["fake"], "profiles": {"fake": ["embedded"]}}
    r = runner.invoke(app, ["--home", str(tmp_path / "h"), "repro", "fake", "--profile", "real"])
    assert r.exit_code != 0 and "repro fake has no real profile" in str(r.exception)


def test_unknown_reproduction_is_one_line_error(tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, "-c", "from skillbank.cli import main; main()",
                        "--home", str(tmp_path / "h"), "repro", "no-such-claim"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown reproduction 'no-such-claim'") and r.stderr.count("\n") == 1


def test_prepare_runs_on_the_executor_first_and_only_where_defined(monkeypatch, tmp_path):
    from skillbank.run import get_executor

    _fake(monkeypatch, holds=True)
    runner = CliRunner()
    args = ["--home", str(tmp_path / "h"), "repro", "fake", "--out", str(tmp_path / "o"), "--workers", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code != 0 and "repro fake runs in-process only" in str(r.exception)
    calls = []
    mod = sys.modules["skillbank.repro.fake"]
    mod.prepare = lambda lib, ui, seed, quick, executor: calls.append((seed, quick, executor.name))
    with Library.open(tmp_path / "home") as lib, get_executor("local") as ex:
        res, _ = repro.run_repro("fake", lib, tmp_path / "out", ui=None, seed=2, quick=True, executor=ex)
    assert calls == [(2, True, "local")] and res["figures"]["two"] == 4.0
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 2 and json.loads(r.stdout)["holds"] is True
