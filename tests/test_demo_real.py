"""`skillbank demo --profile real`, quick, on a tiny BERT registered as the library's
`minilm` base with the shipped Debian data: the summary has the embedded demo's sections,
the matrix marks what a skill cannot answer, the report is written."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.demo_real import RealDemoConfig, run_real_demo
from skillbank.library import Library
from tinyskills import tiny_encoder


class QuietUi:
    def bar(self, *a, **k):
        from contextlib import nullcontext
        return nullcontext(lambda *a: None)

    jobs = bar

    def say(self, *a):
        pass


def test_quick_real_demo(tmp_path):
    home = tmp_path / "home"
    with Library.open(home) as lib:
        lib.add_base("minilm", tiny_encoder(tmp_path / "enc"))
        cfg = RealDemoConfig(tasks=("media", "net"), n_eval=8, graft_steps=2, workers=None,
                             quick=True)
        summary = run_real_demo(lib, tmp_path / "out", cfg, QuietUi())
    assert {"skills", "matrix", "composition", "localization", "wall_seconds"} <= set(summary)
    assert summary["matrix"]["debian-media@1"]["net"] is None
    assert summary["matrix"]["debian-net@1"]["net"] is not None
    media = summary["skills"]["debian-media"]
    assert media["meets_target"] == (media["accuracy"] >= media["probe"])
    assert set(summary["localization"]["skills"]) == {"debian-media", "debian-net"}
    assert summary["localization"]["overlap"]["matrix"][0][0] == 1.0
    assert "heads only (no ΔW)" in summary["composition"]["methods"]
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["profile"] == "real"
    assert "Composition" in (tmp_path / "out" / "report.html").read_text()


def test_cli_real_demo_refuses_unknown_profile_and_task(tmp_path):
    r = CliRunner().invoke(app, ["--home", str(tmp_path / "h"), "demo", "--profile", "huge"])
    assert r.exit_code != 0 and "unknown profile" in str(r.exception)
    r = CliRunner().invoke(app, ["--home", str(tmp_path / "h"), "demo", "--profile", "real",
                                 "--tasks", "nope"])
    assert r.exit_code != 0 and "unknown task 'nope'" in str(r.exception)


def test_the_composition_reuses_the_matrix_diagonal_as_members_alone(tmp_path):
    from skillbank.compose.measure import score_by_task

    home = tmp_path / "home"
    with Library.open(home) as lib:
        lib.add_base("minilm", tiny_encoder(tmp_path / "enc"))
        cfg = RealDemoConfig(tasks=("media", "net"), n_eval=8, workers=None, quick=True,
                             localization=False)
        summary = run_real_demo(lib, tmp_path / "out", cfg, QuietUi())
        base = lib.base("minilm")
        for name, task in (("debian-media", "media"), ("debian-net", "net")):
            measured = score_by_task(base, [lib.get(name)], "debian", [task], 8, 0)[task]
            assert summary["composition"]["alone"][task] == measured
