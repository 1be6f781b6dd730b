"""Static HTML report: PNG plots, the HTML writer, and a headless-Chromium load check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reportcheck import browser_image_widths, img_tags, need_chromium, png_size, run_chromium
from skillbank.report.html import Section, format_cell, write_report
from skillbank.report.plots import curves, heatmap

# ----------------------------------------------------------------------------------- plots


def test_heatmap_writes_png(tmp_path):
    out = heatmap([[0.1, 0.9, 0.5], [1.0, 0.0, float("nan")]], ["arith", "strings"],
                  ["a", "b", "c"], tmp_path / "sub" / "heat.png", "accuracy")
    assert out == tmp_path / "sub" / "heat.png"
    w, h = png_size(out)
    assert w > 100 and h > 100
    assert out.stat().st_size > 2000


def test_heatmap_annotations_depend_on_values(tmp_path):
    a = heatmap([[0.11]], ["r"], ["c"], tmp_path / "a.png", "t")
    b = heatmap([[0.12]], ["r"], ["c"], tmp_path / "b.png", "t")  # same colour, other label
    assert a.read_bytes() != b.read_bytes()


@pytest.mark.parametrize("matrix, rows, cols", [
    ([[0.1, 0.2]], ["r"], ["c"]),            # too many columns
    ([[0.1], [0.2]], ["r"], ["c"]),          # too many rows
    ([], [], []),                            # empty
])
def test_heatmap_rejects_bad_shapes(tmp_path, matrix, rows, cols):
    with pytest.raises(ValueError):
        heatmap(matrix, rows, cols, tmp_path / "x.png", "t")


@pytest.mark.parametrize("logy", [False, True])
def test_curves_writes_png(tmp_path, logy):
    series = {"arith": [(s, 2.0 / (s + 1)) for s in range(0, 100, 10)],
              "strings": [(30, 0.5), (0, 1.5), (60, 0.2)],   # unsorted on purpose
              "empty": []}
    out = curves(series, tmp_path / "loss.png", "training loss", "step", "loss", logy=logy)
    w, h = png_size(out)
    assert w > 100 and h > 100
    assert out.stat().st_size > 2000


def test_curves_with_no_data(tmp_path):
    png_size(curves({}, tmp_path / "none.png", "t", "x", "y"))


# ------------------------------------------------------------------------------------ html


@pytest.mark.parametrize("value, text, numeric", [
    (0.123456, "0.123", True),
    (1, "1", True),
    (400, "400", True),
    (2.0, "2.000", True),
    (float("nan"), "nan", True),
    (True, "True", False),
    (None, "", False),
    ("arith", "arith", False),
])
def test_format_cell(value, text, numeric):
    assert format_cell(value) == (text, numeric)


def test_format_cell_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert format_cell(np.float32(0.5)) == ("0.500", True)
    assert format_cell(np.int64(7)) == ("7", True)


def _build_report(out_dir: Path) -> tuple[Path, list[Section]]:
    heatmap([[0.9, 0.2], [0.3, 0.8]], ["arith", "strings"], ["arith", "strings"],
            out_dir / "heatmap.png", "transfer accuracy")
    curves({"arith": [(0, 2.0), (10, 1.0), (20, 0.5)]}, out_dir / "loss.png",
           "training loss", "step", "loss", logy=True)
    sections = [
        Section("Overview", text="Skills & worlds <b>bold?</b>\n\nSecond paragraph."),
        Section("Injection", text="<script>"),
        Section("Scores", table=(["skill", "accuracy", "n"],
                                 [["arith", 0.91234, 400], ["<strings>", 0.5, 12]])),
        Section("Plots", images=["heatmap.png", "loss.png"]),
    ]
    return write_report(out_dir, "skillbank <report>", sections), sections


def test_write_report_contents(tmp_path):
    path, sections = _build_report(tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for s in sections:
        assert f"<h2>{s.title}</h2>" in page
    assert "<title>skillbank &lt;report&gt;</title>" in page
    # all caller text escaped; the only tags are the report's own
    assert "&lt;script&gt;" in page
    assert "<script" not in page.lower()      # and therefore no JavaScript at all
    assert "Skills &amp; worlds &lt;b&gt;bold?&lt;/b&gt;" in page
    assert "<b>" not in page
    assert "<p>Second paragraph.</p>" in page
    # table: 3 decimals for reals, integers exact, text escaped
    assert '<td class="num">0.912</td>' in page
    assert '<td class="num">0.500</td>' in page
    assert '<td class="num">400</td>' in page
    assert "<td>&lt;strings&gt;</td>" in page
    # one <img> per image, relative src, with alt text
    imgs = img_tags(page)
    assert [i["src"] for i in imgs] == ["heatmap.png", "loss.png"]
    assert all(i.get("alt") for i in imgs)
    # self-contained: no external URLs; links are in-page anchors, srcs relative paths
    assert "http://" not in page and "https://" not in page
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
    assert all(":" not in s and not s.startswith("/") for s in re.findall(r'src="([^"]*)"', page))


def test_write_report_missing_image_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path, "t", [Section("s", images=["nope.png"])])
    assert not (tmp_path / "report.html").exists()
    write_report(tmp_path, "t", [Section("s", images=["nope.png"])], check_images=False)
    assert (tmp_path / "report.html").exists()


@pytest.mark.parametrize("name", ["/etc/x.png", "../x.png", "http://example.com/x.png", ""])
def test_write_report_rejects_non_relative_images(tmp_path, name):
    with pytest.raises(ValueError):
        write_report(tmp_path, "t", [Section("s", images=[name])], check_images=False)


def test_write_report_image_names_are_url_encoded(tmp_path):
    heatmap([[0.5]], ["r"], ["c"], tmp_path / "my plot.png", "t")
    page = write_report(tmp_path, "t", [Section("s", images=["my plot.png"])]).read_text()
    assert [i["src"] for i in img_tags(page)] == ["my%20plot.png"]


def test_write_report_bad_table_row(tmp_path):
    with pytest.raises(ValueError):
        write_report(tmp_path, "t", [Section("s", table=(["a", "b"], [[1]]))])


def test_section_images_default_not_shared():
    a, b = Section("a"), Section("b")
    a.images.append("x.png")
    assert b.images == []


# --------------------------------------------------------------------------------- browser

@pytest.fixture
def chromium():
    return need_chromium()


def test_report_images_load_in_chromium(chromium, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    report, _ = _build_report(out_dir)
    srcs = [i["src"] for i in img_tags(report.read_text(encoding="utf-8"))]
    assert srcs == ["heatmap.png", "loss.png"]

    # 1. the report itself renders: screenshot written, <img> elements in the live DOM
    shot = tmp_path / "shot.png"
    res = run_chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={shot}",
                    report.as_uri())
    assert shot.exists(), res.stderr[-2000:]
    assert png_size(shot) == (1200, 2000)
    res = run_chromium(tmp_path, "--dump-dom", report.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert [i["src"] for i in img_tags(res.stdout)] == srcs
    assert "&lt;script&gt;" in res.stdout

    # 2. every image decodes at its PNG width
    widths = browser_image_widths(report, tmp_path)
    assert widths == [png_size(out_dir / s)[0] for s in srcs]
    assert all(w > 0 for w in widths)
