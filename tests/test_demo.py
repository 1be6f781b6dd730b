"""The whole pipeline through the CLI on a tiny configuration: `demo`, `base train`, `train`,
`eval`; the demo's re-use of base and skills; its report in headless Chromium."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reportcheck import browser_image_widths, img_srcs, need_chromium, png_size, run_chromium
from skillbank.cli import app
from skillbank.library import Library

DEMO = ["demo", "--size", "tiny", "--base-steps", "30", "--steps", "10", "--n", "8",
        "--tasks", "rot,shift", "--graft-steps", "10", "--router-steps", "20", "--workers", "1"]
METRIC_KEYS = {"n"} | {f"{m}{s}" for m in ("exact_match", "edit_distance", "token_accuracy",
                                           "mean_logprob") for s in ("", "_stderr")}

def cli(home: Path, *args, code: int = 0):
    result = CliRunner().invoke(app, ["--home", str(home), *map(str, args)])
    assert result.exit_code == code, (result.output, result.stderr, result.exception)
    return result


def png_width(path: Path) -> int:
    return png_size(path)[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    home, out = root / "home", root / "out"
    result = cli(home, *DEMO, "--out", out)
    return home, out, result


def test_demo_writes_summary_and_report(demo):
    home, out, result = demo
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wall_seconds"] > 0
    assert set(summary["base"]) >= {"name", "fingerprint"}
    assert summary["base"]["name"] == "strings-tiny"
    assert re.fullmatch(r"[0-9a-f]{64}", summary["base"]["fingerprint"])
    assert set(summary["skills"]) == {"strings-rot", "strings-shift"}
    for name, s in summary["skills"].items():
        assert set(s) >= {"task", "exact_match", "base_exact_match", "stderr"}
        assert s["task"] == name.removeprefix("strings-")
        assert 0 <= s["exact_match"] <= 1 and 0 <= s["base_exact_match"] <= 1 and s["stderr"] >= 0
        assert s["meets_target"] == (s["exact_match"] >= 0.9 and s["base_exact_match"] <= 0.2)
    assert set(summary["matrix"]) == {"base:strings-tiny", "strings-rot@1", "strings-shift@1"}
    assert all(set(row) == {"rot", "shift"} for row in summary["matrix"].values())

    assert "trained" in result.stdout and "(2 trained now)" in result.stdout
    assert "base tiny" in result.stderr and "skills (local × 1)" in result.stderr   # bars
    assert f"wall time {summary['wall_seconds']} s" in result.stdout

    page = (out / "report.html").read_text(encoding="utf-8")
    srcs = img_srcs(page)
    assert set(srcs) == {"matrix.png", "training.png", "base_training.png",
                         "composition_normalised.png", "graft_overlap.png"}
    assert all(png_width(out / s) > 100 for s in srcs)

    with Library.open(home) as lib:
        assert [b.fingerprint for b in lib.bases()] == [summary["base"]["fingerprint"]]
        names = sorted(r.name for r in lib.list())
        assert names == ["composition-router", "strings-rot", "strings-rot-graft-0.01",
                         "strings-shift", "strings-shift-graft-0.01"]
        rows = [r for r in lib.results() if r["subject"].startswith(("base:", "strings-"))]
        assert len(rows) == 3 * 2                       # (base + 2 skills) × 2 tasks
        assert all(set(r["metrics"]) == METRIC_KEYS for r in rows)

    # the composition and localization sections: every method on every task, each skill's graft
    comp, loc = summary["composition"], summary["localization"]
    assert {"linear", "ties-peft", "cat", "router"} <= set(comp["methods"])
    assert all(set(m["exact_match"]) == {"rot", "shift"} for m in comp["methods"].values())
    assert comp["methods"]["cat"]["stored_error"] == 0.0
    assert set(loc["skills"]) == {"strings-rot", "strings-shift"}
    assert all(0.009 <= s["fraction"] <= 0.011 for s in loc["skills"].values())
    assert len(loc["overlap"]["matrix"]) == 2 and loc["overlap"]["matrix"][0][0] == 1.0
    assert "composition" in result.stdout and "localization" in result.stdout


def test_second_demo_reuses_base_and_skills(demo, tmp_path, monkeypatch):
    home, out, _ = demo
    first = json.loads((out / "summary.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("skillbank.acquire.pretrain.train_base_dir", no_training)
    monkeypatch.setattr("skillbank.acquire.jobs.train_lora", no_training)
    monkeypatch.setattr("skillbank.compose.jobs.train_router", no_training)
    monkeypatch.setattr("skillbank.localize.jobs.localize", no_training)
    result = cli(home, *DEMO, "--out", tmp_path / "again")
    second = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert "re-used (same recipe)" in result.stdout and "(0 trained now)" in result.stdout
    assert "base tiny" not in result.stderr and "skill strings-rot" not in result.stderr
    assert second["base"] == first["base"]
    assert second["skills"] == first["skills"]          # same skills, same held-out numbers
    assert second["matrix"] == first["matrix"]
    assert second["composition"] == first["composition"] | {"methods": {
        m: r | {"seconds": second["composition"]["methods"][m]["seconds"]}
        for m, r in first["composition"]["methods"].items()}}         # router re-used, same figures
    with Library.open(home) as lib:
        assert len(lib.bases()) == 1
        assert [r.version for r in lib.versions("strings-rot")] == [1]
        assert [r.version for r in lib.versions("composition-router")] == [1]


@pytest.fixture
def chromium():
    return need_chromium()


def test_demo_report_renders_in_chromium(demo, chromium, tmp_path):
    _, out, _ = demo
    report = out / "report.html"
    srcs = img_srcs(report.read_text(encoding="utf-8"))
    res = run_chromium(tmp_path, "--dump-dom", report.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert img_srcs(res.stdout) == srcs
    assert "strings-rot" in res.stdout and "Skill × task matrix" in res.stdout
    # every image decodes in the browser at its PNG width
    assert browser_image_widths(report, tmp_path) == [png_width(out / s) for s in srcs]


# ----------------------------------------------------------------- base train, train, eval


def test_cli_base_train_train_eval(tmp_path):
    home = tmp_path / "home"
    base_args = ["base", "train", "tb", "--size", "tiny", "--steps", "5", "--tasks", "copy,rev"]
    b = json.loads(cli(home, *base_args, "--json").stdout)
    assert b["name"] == "tb" and b["trained"] is True and b["recipe"]["steps"] == 5
    again = json.loads(cli(home, *base_args, "--json").stdout)
    assert again["trained"] is False and again["fingerprint"] == b["fingerprint"]

    m = json.loads(cli(home, "train", "rs", "--base", "tb", "--task", "rev+sort", "--steps", "4",
                       "--batch-size", "8", "--rank", "2", "--json").stdout)
    assert (m["name"], m["version"], m["kind"], m["base"]) == ("rs", 1, "lora", b["fingerprint"])
    assert m["recipe"]["task"] == "rev+sort" and m["recipe"]["steps"] == 4
    assert m["recipe"]["rank"] == 2 and m["recipe"]["alpha"] == 4
    assert m["config"]["r"] == 2
    assert m["metrics"]["train"]["curve"][-1][0] == 4
    assert "model.layers.0.self_attn.q_proj.lora_A.weight" in m["tensors"]

    same = ["train", "rs", "--base", "tb", "--task", "rev+sort", "--steps", "4",
            "--batch-size", "8", "--rank", "2"]
    # same recipe and seed: the same tensors, so the library keeps the one version
    assert cli(home, *same).stdout.startswith("stored rs@1: final loss ")
    assert cli(home, *same, "--seed", "1").stdout.startswith("stored rs@2: final loss ")
    assert not (home / "checkpoints").exists() or not list((home / "checkpoints").iterdir())

    matrix = json.loads(cli(home, "eval", "rs@1", "rs@2", "--tasks", "rev+sort,rot", "--n", "4",
                            "--json").stdout)
    assert list(matrix) == ["base:tb", "rs@1", "rs@2"]
    for row in matrix.values():
        assert list(row) == ["rev+sort", "rot"]
        assert all(set(cell) == METRIC_KEYS and cell["n"] == 4 for cell in row.values())
    assert matrix["rs@1"]["rot"]["mean_logprob"] != matrix["rs@2"]["rot"]["mean_logprob"]
    # default tasks: the skills' own
    default = json.loads(cli(home, "eval", "rs", "--n", "2", "--json").stdout)
    assert list(default) == ["base:tb", "rs@2"] and list(default["rs@2"]) == ["rev+sort"]
    table = cli(home, "eval", "rs@1", "--n", "2").stdout
    assert "base:tb" in table and "rs@1" in table


def test_cli_train_unknown_task_one_line_error(tmp_path, capsys, monkeypatch):
    from skillbank.cli import main

    monkeypatch.setattr(sys, "argv", ["skillbank", "--home", str(tmp_path / "home"), "train", "x",
                                      "--base", "nobase", "--task", "nope"])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    assert e.value.code == 2
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith("error: unknown task 'nope'") and captured.err.count("\n") == 1


def test_the_composition_reuses_the_matrix_diagonal_as_members_alone(demo):
    """The composition takes its members-alone figures from the matrix's diagonal (no second
    evaluation of each member: no "members alone" bar), and they are what the composition's
    own scorer measures."""
    from skillbank.repro.composition import _exact_match

    home, out, result = demo
    summary = json.loads((out / "summary.json").read_text())
    assert "merges" in result.stderr and "members alone" not in result.stderr
    with Library.open(home) as lib:
        base = lib.base("strings-tiny")
        for task in ("rot", "shift"):
            skill = lib.get(f"strings-{task}")
            alone = summary["composition"]["alone"][task]
            assert alone == summary["matrix"][skill.ref][task]
            assert alone == _exact_match(base.load_model([skill]), base, [task], 8, 0)[task]
