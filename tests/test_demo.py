"""The whole pipeline through the CLI on a tiny configuration: `demo`, `base train`, `train`,
`eval`; the demo's re-use of base and skills; its report in headless Chromium."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillbank.cli import app
from skillbank.library import Library

DEMO = ["demo", "--size", "tiny", "--base-steps", "30", "--steps", "10", "--n", "8",
        "--tasks", "rot,shift"]
METRIC_KEYS = {"n"} | {f"{m}{s}" for m in ("exact_match", "edit_distance", "token_accuracy",
                                           "mean_logprob") for s in ("", "_stderr")}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def cli(home: Path, *args, code: int = 0):
    result = CliRunner().invoke(app, ["--home", str(home), *map(str, args)])
    assert result.exit_code == code, (result.output, result.stderr, result.exception)
    return result


def png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])[0]


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def img_srcs(page: str) -> list[str]:
    parser = _Imgs()
    parser.feed(page)
    return parser.srcs


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
    assert "base tiny" in result.stderr and "skill strings-rot" in result.stderr   # bars
    assert f"wall time {summary['wall_seconds']} s" in result.stdout

    page = (out / "report.html").read_text(encoding="utf-8")
    srcs = img_srcs(page)
    assert set(srcs) == {"matrix.png", "training.png", "base_training.png"}
    assert all(png_width(out / s) > 100 for s in srcs)

    with Library.open(home) as lib:
        assert [b.fingerprint for b in lib.bases()] == [summary["base"]["fingerprint"]]
        assert sorted(r.name for r in lib.list()) == ["strings-rot", "strings-shift"]
        rows = lib.results()
        assert len(rows) == 3 * 2                       # (base + 2 skills) × 2 tasks
        assert all(set(r["metrics"]) == METRIC_KEYS for r in rows)


def test_second_demo_reuses_base_and_skills(demo, tmp_path, monkeypatch):
    home, out, _ = demo
    first = json.loads((out / "summary.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("skillbank.acquire.pretrain.train_base_dir", no_training)
    monkeypatch.setattr("skillbank.demo.train_lora", no_training)
    result = cli(home, *DEMO, "--out", tmp_path / "again")
    second = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert "re-used (same recipe)" in result.stdout and "(0 trained now)" in result.stdout
    assert "base tiny" not in result.stderr and "skill strings-rot" not in result.stderr
    assert second["base"] == first["base"]
    assert second["skills"] == first["skills"]          # same skills, same held-out numbers
    assert second["matrix"] == first["matrix"]
    with Library.open(home) as lib:
        assert len(lib.bases()) == 1
        assert [r.version for r in lib.versions("strings-rot")] == [1]


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found; `apt-get install -y chromium` to run the browser test")
    return CHROMIUM


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


_PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>probe</title></head><body>
{imgs}
<script>
window.addEventListener("load", function () {{
  var w = [];
  for (var i = 0; i < document.images.length; i++) w.push(document.images[i].naturalWidth);
  var out = document.createElement("pre");
  out.textContent = "WIDTHS=" + w.join(",") + ";";
  document.body.appendChild(out);
}});
</script>
</body></html>
"""


def test_demo_report_renders_in_chromium(demo, chromium, tmp_path):
    _, out, _ = demo
    report = out / "report.html"
    srcs = img_srcs(report.read_text(encoding="utf-8"))
    res = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert img_srcs(res.stdout) == srcs
    assert "strings-rot" in res.stdout and "Skill × task matrix" in res.stdout
    # every image decodes: a probe page beside the report (its srcs + one missing image)
    # reports each naturalWidth after window load (0 = failed to load)
    probe = out / "probe.html"
    imgs = "\n".join(f'<img src="{s}">' for s in [*srcs, "missing.png"])
    probe.write_text(_PROBE.format(imgs=imgs), encoding="utf-8")
    try:
        res = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r"WIDTHS=([0-9,]*);", res.stdout)
    assert m, f"probe script did not run; DOM was:\n{res.stdout[-2000:]}"
    widths = [int(w) for w in m.group(1).split(",")]
    assert widths[-1] == 0, "a missing image must report width 0, else the check is vacuous"
    assert widths[:-1] == [png_width(out / s) for s in srcs]


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
